"""A real S3 API on loopback: moto's server in a child process, for the object-storage tests and benchmark.

    with S3Server() as s3:            # picks a free port on 127.0.0.1, waits until it answers
        s3.create_bucket("lake")
        env = s3.environment()         # AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, ... for the libraries

or run it by hand: `python tests/s3_server.py [port]`.

Why a child process and not moto's in-process mock: delta-rs, LanceDB and pyarrow talk to S3 from
Rust/C++ over real HTTP, which an in-process `mock_aws` cannot intercept; and a server in its own
process does not compete with the code under test for the GIL.

Why mutating requests are serialised: moto checks a conditional write's precondition
(`If-None-Match: *`, `If-Match`) and stores the object in two steps, so two racing PUTs of one key
could both pass the check; real S3 (and MinIO) decide them atomically. Delta's commit protocol and
the lake's leases rely on exactly that atomicity, so the server runs every PUT/POST/DELETE under
one lock; reads stay concurrent.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

ACCESS_KEY = "adrag-test"
SECRET_KEY = "adrag-test-secret"
REGION = "us-east-1"


def serve(port: int, host: str = "127.0.0.1") -> None:
    """Serve moto's S3 (and every other moto service) until killed."""
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
    from werkzeug.serving import make_server

    app = DomainDispatcherApplication(create_backend_app)
    writes = threading.Lock()

    def atomic_writes(environ, start_response):
        if environ.get("REQUEST_METHOD") in ("PUT", "POST", "DELETE"):
            with writes:
                return list(app(environ, start_response))  # the body is produced under the lock too
        return app(environ, start_response)

    server = make_server(host, port, atomic_writes, threaded=True)
    print(f"moto S3 on http://{host}:{port}", flush=True)
    server.serve_forever()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class S3Server:
    """A moto S3 server in a child process on a free loopback port; `stop()` (or leaving the `with`) ends it."""

    def __init__(self, port: int | None = None, start_timeout_s: float = 30.0):
        self.port = port or free_port()
        self.endpoint_url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(__file__).parent),
                                                                           os.environ.get("PYTHONPATH", "")]))}
        for name in [n for n in env if n.startswith("AWS_")]:  # the server needs none; do not leak a user's
            del env[name]
        self._process = subprocess.Popen([sys.executable, "-c", f"import s3_server; s3_server.serve({self.port})"],
                                         env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + start_timeout_s
        while True:
            if self._process.poll() is not None:
                raise RuntimeError(f"moto server exited with code {self._process.returncode} on start")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"moto server did not listen on port {self.port} within {start_timeout_s:.0f}s")
                time.sleep(0.05)

    def environment(self) -> dict[str, str]:
        """The standard AWS variables that point every library (delta-rs, LanceDB, boto3/MLflow) here."""
        return {"AWS_ENDPOINT_URL": self.endpoint_url, "AWS_ACCESS_KEY_ID": ACCESS_KEY,
                "AWS_SECRET_ACCESS_KEY": SECRET_KEY, "AWS_REGION": REGION, "AWS_DEFAULT_REGION": REGION,
                "AWS_ALLOW_HTTP": "true", "MLFLOW_S3_ENDPOINT_URL": self.endpoint_url}

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint_url, aws_access_key_id=ACCESS_KEY,
                            aws_secret_access_key=SECRET_KEY, region_name=REGION)

    def create_bucket(self, name: str) -> str:
        self.client().create_bucket(Bucket=name)
        return name

    def stop(self) -> None:
        if self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()

    def __enter__(self) -> "S3Server":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


try:
    import pytest
except ImportError:  # the benchmark imports this module without the test extras
    pytest = None

if pytest is not None:
    @pytest.fixture(scope="session")
    def s3_server():
        """One moto S3 server for the test session (import this fixture into a test module to use it)."""
        with S3Server() as server:
            yield server


if __name__ == "__main__":
    serve(int(sys.argv[1]) if len(sys.argv) > 1 else 5000)
