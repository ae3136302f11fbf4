"""Servers the UI test starts as a user would (`dagster dev`, the MLflow server) and the browser it drives.

Each server runs in its own process group (so `dagster dev`'s daemon, code server and run workers go
with it), logs to a file the failure messages quote, and is stopped with SIGTERM then SIGKILL.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import httpx

# Chromium flags that work on a closed network: without the background-networking ones Chromium's
# own connections (component updates, sync, QUIC probes) are refused and slow everything down.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage"]


def chromium_path() -> str:
    """Debian's Chromium (scripts/setup_browser.sh installs it; scripts/test.sh runs that), or $ADRAG_CHROMIUM; a clear error when missing."""
    wanted = os.environ.get("ADRAG_CHROMIUM") or "chromium"
    found = shutil.which(wanted)
    if found is None:
        raise RuntimeError(
            f"no Chromium at {wanted!r}: the UI test drives Debian's `chromium` package with Playwright. "
            "Run `bash scripts/setup_browser.sh` (it installs it with apt-get), or `apt-get install -y chromium`, "
            "or set ADRAG_CHROMIUM to a Chromium executable.")
    return found


def free_ports(count: int) -> list[int]:
    """`count` distinct free loopback ports (all held open while choosing, so none repeats)."""
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


class Server:
    """A command run in its own session (process group) with its output in a log file."""

    def __init__(self, name: str, command: Sequence[str], env: dict[str, str], cwd: Path, log_file: Path):
        self.name = name
        self.log_file = log_file
        log_file.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(log_file, "wb")
        self.process = subprocess.Popen(list(command), env=env, cwd=cwd, stdout=self._log,
                                        stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                        start_new_session=True)

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_file.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self, grace_s: float = 20.0) -> None:
        stop_all([self], grace_s)

    def close_log(self) -> None:
        self._log.close()

    def signal_group(self, sig: int) -> None:
        try:
            os.killpg(self.process.pid, sig)
        except ProcessLookupError:
            pass

    def group_alive(self) -> bool:
        """Whether any process of the group still runs (zombies waiting for a reaper do not count)."""
        self.process.poll()  # reap the leader
        proc = Path("/proc")
        if not proc.is_dir():
            try:
                os.killpg(self.process.pid, 0)
                return True
            except ProcessLookupError:
                return False
        for stat in proc.glob("[0-9]*/stat"):
            try:
                # "pid (comm) state ppid pgrp ...": comm may hold spaces, so split after its ")".
                state, _ppid, pgrp = stat.read_text().rsplit(")", 1)[1].split()[:3]
            except (OSError, ValueError):
                continue
            if int(pgrp) == self.process.pid and state != "Z":
                return True
        return False


def processes_with_environment(name: str, value: str) -> list[int]:
    """Live processes (not zombies) whose environment has `name=value`: what a command started, wherever
    in the process tree (or outside its group) it ended up. Needs /proc and the right to read it."""
    wanted = f"{name}={value}".encode()
    found = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if wanted in environ.read_bytes().split(b"\0"):
                state = (environ.parent / "stat").read_text().rsplit(")", 1)[1].split()[0]
                if state != "Z":
                    found.append(int(environ.parent.name))
        except (OSError, ValueError, IndexError):
            continue
    return found


def stop_all(servers: Sequence[Server], grace_s: float = 20.0) -> None:
    """SIGTERM to every server's process group at once, SIGKILL to whatever is left after `grace_s`.

    The whole group: `dagster dev` leaves a daemon, a code server and run workers, the MLflow server
    its web workers; they go even when the group leader has already exited.
    """
    try:
        for server in servers:
            server.signal_group(signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        while any(server.group_alive() for server in servers) and time.monotonic() < deadline:
            time.sleep(0.2)
        for server in servers:
            server.signal_group(signal.SIGKILL)
            try:
                server.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
    finally:
        for server in servers:
            server.close_log()


def wait_for(what: str, check: Callable[[], object], timeout_s: float, server: Server | None = None,
             interval_s: float = 0.5):
    """Poll `check` until it returns something truthy; fail with the server's log if it dies or time runs out."""
    deadline = time.monotonic() + timeout_s
    last_error: BaseException | None = None
    while time.monotonic() < deadline:
        if server is not None and not server.alive():
            raise AssertionError(f"{server.name} exited ({server.process.returncode}) while waiting for {what}:\n"
                                 f"{server.log_tail()}")
        try:
            result = check()
            if result:
                return result
        except Exception as error:  # not up yet: connection refused, 502, ...
            last_error = error
        time.sleep(interval_s)
    log = f"\n{server.name} log:\n{server.log_tail()}" if server is not None else ""
    raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what} (last error: {last_error!r}){log}")


def http_ok(url: str) -> bool:
    return httpx.get(url, timeout=5).status_code == 200
