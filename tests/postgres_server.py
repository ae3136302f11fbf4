"""A real PostgreSQL server for the tests: Debian's `postgresql`, a fresh cluster in a temporary folder.

`postgres_server` (session scope) runs initdb in a temp dir, starts the server on 127.0.0.1 at a free
port with password authentication (scram-sha-256) over TCP, and stops it (and removes the folder) when
the session ends. As root (CI), the cluster belongs to the `postgres` user, as initdb and postgres refuse
to run as root. Nothing is skipped: when the server cannot start, the test fails with the reason and
the server's log. scripts/setup_postgres.sh installs the package where it is missing.
"""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

SUPERUSER = "adrag"
START_TIMEOUT_S = 60


def find_bin(name: str) -> str:
    """A PostgreSQL program: on PATH, else the newest in Debian's /usr/lib/postgresql/<version>/bin."""
    if found := shutil.which(name):
        return found
    def version(path: str) -> int:
        folder = Path(path).parent.parent.name  # /usr/lib/postgresql/<version>/bin/<name>
        return int(folder) if folder.isdigit() else 0

    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=version)
    if candidates:
        return candidates[-1]
    pytest.fail(f"PostgreSQL's {name} is not installed: run scripts/setup_postgres.sh (Debian's 'postgresql' "
                f"package) or put the PostgreSQL server's bin folder on PATH", pytrace=False)


@dataclass
class PostgresServer:
    root: Path
    port: int
    password: str
    host: str = "127.0.0.1"
    user: str = SUPERUSER

    def url(self, database: str, password: str | None = None, scheme: str = "postgresql+psycopg2") -> str:
        """The URL adrag is given (SQLAlchemy's, with the driver: 2.1 opens a bare postgresql:// with psycopg 3)."""
        return f"{scheme}://{self.user}:{password or self.password}@{self.host}:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """A new, empty database; returns its URL (with the password)."""
        self.execute("postgres", f'CREATE DATABASE "{name}"', autocommit=True)
        return self.url(name)

    def execute(self, database: str, sql: str, params: tuple = (), autocommit: bool = False) -> list[tuple]:
        import psycopg2

        connection = psycopg2.connect(self.url(database, scheme="postgresql"), connect_timeout=10)  # libpq's URL
        try:
            connection.autocommit = autocommit
            with connection.cursor() as cursor:
                cursor.execute(sql, params)
                rows = cursor.fetchall() if cursor.description else []
            if not autocommit:
                connection.commit()
            return rows
        finally:
            connection.close()

    def dump(self, database: str) -> str:
        """The database as SQL text (pg_dump): every table's rows."""
        done = subprocess.run([find_bin("pg_dump"), "--host", self.host, "--port", str(self.port),
                               "--username", self.user, "--no-password", database],
                              env={**os.environ, "PGPASSWORD": self.password}, capture_output=True, text=True,
                              timeout=120)
        assert done.returncode == 0, done.stderr
        return done.stdout


def _as_cluster_owner() -> tuple[list[str], int | None]:
    """(command prefix, uid) to run initdb and pg_ctl: ourselves, or the `postgres` user when we are root."""
    if os.geteuid() != 0:
        return [], None
    try:
        owner = pwd.getpwnam("postgres")
    except KeyError:
        pytest.fail("running as root, and there is no `postgres` user to own the test cluster (initdb refuses "
                    "root): install Debian's 'postgresql' package (scripts/setup_postgres.sh)", pytrace=False)
    runuser = shutil.which("runuser") or shutil.which("setpriv")
    if runuser is None:
        pytest.fail("running as root without runuser or setpriv to start PostgreSQL as `postgres`", pytrace=False)
    if runuser.endswith("runuser"):
        return [runuser, "-u", "postgres", "--"], owner.pw_uid
    return [runuser, f"--reuid={owner.pw_uid}", f"--regid={owner.pw_gid}", "--init-groups"], owner.pw_uid


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _run(command: list[str], what: str, log: Path | None = None) -> None:
    done = subprocess.run(command, capture_output=True, text=True, timeout=START_TIMEOUT_S + 30)
    if done.returncode != 0:
        server_log = log.read_text()[-3000:] if log and log.exists() else ""
        pytest.fail(f"PostgreSQL {what} failed (exit {done.returncode}): {done.stderr.strip()[-2000:]}\n{server_log}",
                    pytrace=False)


def start_server() -> PostgresServer:
    prefix, uid = _as_cluster_owner()
    initdb, pg_ctl = find_bin("initdb"), find_bin("pg_ctl")
    # As root, under /tmp: the `postgres` user must be able to reach the folder (a root-only TMPDIR would not do).
    root = Path(tempfile.mkdtemp(prefix="adrag-pg-", dir="/tmp" if uid is not None else None))
    if uid is not None:
        os.chown(root, uid, -1)
    password = "pw-" + secrets.token_hex(12)  # distinctive: tests look for it in output and stored data
    password_file = root / "password"
    password_file.write_text(password + "\n")
    if uid is not None:
        os.chown(password_file, uid, -1)
    data, log = root / "data", root / "server.log"
    _run([*prefix, initdb, "--pgdata", str(data), "--username", SUPERUSER, "--pwfile", str(password_file),
          "--auth-local=trust", "--auth-host=scram-sha-256", "--encoding=UTF8", "--locale=C", "--no-sync",
          "--no-instructions"], "initdb")
    password_file.unlink()
    server = PostgresServer(root=root, port=free_port(), password=password)
    options = (f"-c listen_addresses=127.0.0.1 -p {server.port} -k {root} -c fsync=off -c synchronous_commit=off "
               f"-c full_page_writes=off -c max_connections=300")
    _run([*prefix, pg_ctl, "--pgdata", str(data), "--log", str(log), "--wait", f"--timeout={START_TIMEOUT_S}",
          "-o", options, "start"], "server start", log)
    return server


def stop_server(server: PostgresServer) -> None:
    prefix, _ = _as_cluster_owner()
    subprocess.run([*prefix, find_bin("pg_ctl"), "--pgdata", str(server.root / "data"), "--mode=immediate",
                    "--wait", "stop"], capture_output=True, timeout=60)
    shutil.rmtree(server.root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server():
    server = start_server()
    try:
        yield server
    finally:
        stop_server(server)
