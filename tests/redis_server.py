"""A `redis-server` of a test's own, on a free loopback port, with AOF so a restart keeps the
queue, and optionally a password and TLS (certificates the test generates)."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import redis

from tests.waits import FLOOR_SECONDS, wait_until


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class RedisServer:
    def __init__(
        self, directory: Path, password: str | None = None, tls: dict[str, str] | None = None
    ) -> None:
        self.directory = directory
        self.password = password
        self.tls = tls
        """{"cert": path, "key": path, "ca": path}: serve TLS only."""
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        scheme = "rediss" if self.tls else "redis"
        return f"{scheme}://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        self.directory.mkdir(parents=True, exist_ok=True)
        command = [
            "redis-server",
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.directory),
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
            "--save",
            "",
            "--logfile",
            str(self.directory / "redis.log"),
        ]
        if self.tls:
            command += [
                "--port",
                "0",
                "--tls-port",
                str(self.port),
                "--tls-cert-file",
                self.tls["cert"],
                "--tls-key-file",
                self.tls["key"],
                "--tls-ca-cert-file",
                self.tls["ca"],
                "--tls-auth-clients",
                "no",
            ]
        else:
            command += ["--port", str(self.port)]
        if self.password:
            command += ["--requirepass", self.password]
        self.process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
        )
        self._wait_ready()
        return self

    def client(self) -> redis.Redis:
        options: dict = {"password": self.password, "socket_timeout": 2}
        if self.tls:
            options.update(ssl=True, ssl_ca_certs=self.tls["ca"], ssl_cert_reqs="required")
        return redis.Redis(host="127.0.0.1", port=self.port, **options)

    def _wait_ready(self, timeout: float = FLOOR_SECONDS) -> None:
        """Until it answers PING (milliseconds when idle; `timeout` is for a loaded machine)."""

        def answers() -> bool:
            assert self.process is not None and self.process.poll() is None, (
                (self.directory / "redis.log").read_text()
                if (self.directory / "redis.log").exists()
                else "redis-server exited"
            )
            try:
                return bool(self.client().ping())
            except redis.RedisError:
                return False

        wait_until(answers, timeout, "redis-server to answer", poll=0.05)

    def stop(self) -> None:
        """SIGTERM: Redis flushes its AOF and exits."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=20)
        self.process = None

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
