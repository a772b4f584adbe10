"""A real S3 server for tests: moto's server mode, run as a subprocess on loopback.

    with S3Server() as server:          # starts `python -m moto.server -H 127.0.0.1 -p PORT`
        server.endpoint                 # "http://127.0.0.1:PORT"
        server.stop()                   # S3 goes away (connections are refused) ...
        server.start()                  # ... and comes back on the same port

moto keeps its state in memory: a restart loses every bucket and object. A test that takes S3
down and brings it back must create its bucket again (or expect NoSuchBucket) after `start()`.
It speaks real HTTP, so boto3 reaches it through its own endpoint resolution
(`AWS_ENDPOINT_URL_S3`), exactly like a MinIO server in production. moto accepts any credentials
unless IAM authentication is switched on (`enable_auth`, see below).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from tests.waits import FLOOR_SECONDS, wait_until


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


class S3Server:
    """One moto server process; `start()` and `stop()` may be called any number of times."""

    def __init__(self, port: int | None = None, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = port or free_port(host)
        self.endpoint = f"http://{host}:{self.port}"
        self._process: subprocess.Popen | None = None
        self._log_dir = Path(tempfile.mkdtemp(prefix="ablate-moto-"))
        self.log_path = self._log_dir / "moto.log"

    @property
    def command(self) -> list[str]:
        return [sys.executable, "-m", "moto.server", "-H", self.host, "-p", str(self.port)]

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self, timeout: float = FLOOR_SECONDS) -> str:
        """Start the server and wait until it answers HTTP; return the endpoint URL."""
        if self.running:
            return self.endpoint
        env = dict(os.environ)
        env.pop("INITIAL_NO_AUTH_ACTION_COUNT", None)
        env["MOTO_PORT"] = str(self.port)
        # The log is a file, not a pipe: werkzeug logs every request, and an unread pipe would
        # fill up and stall the server.
        with open(self.log_path, "ab") as log:
            self._process = subprocess.Popen(
                self.command,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
            )
        process = self._process

        def answers() -> bool:
            if process.poll() is not None:
                raise RuntimeError(
                    f"moto server exited with {process.returncode}:\n{self.log_tail()}")
            return self._answers()

        try:
            what = f"the moto server to answer on {self.endpoint}"
            wait_until(answers, timeout, what, self.log_tail, poll=0.05)
        except AssertionError:
            self.stop()
            raise
        return self.endpoint

    def stop(self, timeout: float = 10.0) -> None:
        """Terminate the server (SIGTERM, then SIGKILL) and wait until it has exited."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout)

    def enable_auth(self) -> None:
        """Switch on moto's IAM authentication from the next request: unknown access keys get
        InvalidAccessKeyId, a wrong secret SignatureDoesNotMatch, missing permissions AccessDenied.
        Affects every client of this server, so use it only on a server of your own."""
        request = urllib.request.Request(
            f"{self.endpoint}/moto-api/reset-auth",
            data=b"0",
            method="POST",
            headers={"Content-Type": "text/plain"},  # not a form: moto reads the raw body
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            response.read()

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def _answers(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.endpoint}/moto-api/", timeout=1) as response:
                response.read()
            return True
        except urllib.error.HTTPError:
            return True  # any HTTP answer means it is up
        except OSError:
            return False

    def __enter__(self) -> S3Server:
        self.start()
        return self

    def close(self) -> None:
        """Stop the server for good and remove its log."""
        self.stop()
        shutil.rmtree(self._log_dir, ignore_errors=True)

    def __exit__(self, *exc_info: object) -> None:
        self.close()


@contextlib.contextmanager
def running_s3_server(port: int | None = None) -> Iterator[S3Server]:
    """Start a moto S3 server, yield it (`.endpoint`, `.stop()`, `.start()`), stop it on exit."""
    server = S3Server(port)
    server.start()
    try:
        yield server
    finally:
        server.close()
