"""A real ``redis-server`` (Debian package ``redis-server``) for the tests, on 127.0.0.1.

Each server gets a free port and a directory of its own, keeps nothing on
disk (``--save '' --appendonly no``), and is ready when it answers PING
(polled with a deadline). The fixtures stop what they started; a missing
``redis-server`` skips on a laptop and fails in CI (``OCISTORE_REQUIRE_PEERS=1``).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REDIS_SERVER = "redis-server"
START_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def need_redis() -> str:
    """The path of ``redis-server``; skip (laptop) or fail (CI) without it."""
    binary = shutil.which(REDIS_SERVER)
    if binary is None:
        message = f"{REDIS_SERVER} is not installed (Debian package: redis-server)"
        if os.environ.get("OCISTORE_REQUIRE_PEERS") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return binary


def ping(port: int, timeout: float = 1.0, tls: ssl.SSLContext | None = None) -> bool:
    """True when a Redis server on ``port`` answers PING with PONG (over TLS with ``tls``)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as raw:
            s = tls.wrap_socket(raw, server_hostname="127.0.0.1") if tls is not None else raw
            s.sendall(b"PING\r\n")
            return s.recv(64).startswith(b"+PONG")
    except OSError:
        return False


@dataclass(frozen=True)
class TLSFiles:
    """A throwaway CA and a server certificate for 127.0.0.1 it signed (made with openssl)."""

    ca: Path
    cert: Path
    key: Path

    @classmethod
    def make(cls, directory: Path) -> TLSFiles:
        openssl = shutil.which("openssl")
        if openssl is None:
            pytest.fail("openssl is not installed (Debian package: openssl)")
        ca, ca_key = directory / "ca.pem", directory / "ca.key"
        cert, key, csr = (
            directory / "server.pem",
            directory / "server.key",
            directory / "server.csr",
        )
        ext = directory / "san.ext"
        ext.write_text("subjectAltName=IP:127.0.0.1\n")
        new_key = ("-newkey", "rsa:2048", "-nodes", "-keyout")
        for argv in (
            ["req", "-x509", *new_key, ca_key, "-out", ca, "-days", "2", "-subj", "/CN=test CA"],
            ["req", *new_key, key, "-out", csr, "-subj", "/CN=127.0.0.1"],
            [
                *("x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial"),
                *("-out", cert, "-days", "2", "-extfile", ext),
            ],
        ):
            subprocess.run([openssl, *map(str, argv)], check=True, capture_output=True)
        return cls(ca, cert, key)


class RedisServer:
    """One ``redis-server`` process; ``addr`` is ``127.0.0.1:PORT``."""

    def __init__(
        self, workdir: Path, *, port: int | None = None, tls: TLSFiles | None = None
    ) -> None:
        self.binary = need_redis()
        self.tls = tls
        self.port = port if port is not None else free_port()
        self.dir = workdir / f"redis-{self.port}"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.dir / "redis.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> RedisServer:
        argv = [
            self.binary,
            "--bind",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--dir",
            str(self.dir),
            "--save",
            "",
            "--appendonly",
            "no",
            "--protected-mode",
            "yes",
            "--logfile",
            str(self.log_path),
        ]
        context = None
        if self.tls is not None:
            argv[argv.index("--port") + 1] = "0"  # no plain-text port
            argv += [
                *("--tls-port", str(self.port), "--tls-auth-clients", "no"),
                *("--tls-cert-file", str(self.tls.cert), "--tls-key-file", str(self.tls.key)),
                *("--tls-ca-cert-file", str(self.tls.ca)),
            ]
            context = ssl.create_default_context(cafile=str(self.tls.ca))
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, start_new_session=True
        )
        deadline = time.monotonic() + START_TIMEOUT
        while not ping(self.port, tls=context):
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"redis-server exited with {self.proc.returncode}:\n{self.log()}"
                )
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"redis-server did not answer PING in time:\n{self.log()}")
            time.sleep(0.02)
        return self

    def kill(self) -> None:
        """SIGKILL and reap: the server is gone at once, as a crashed one."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait(STOP_TIMEOUT)

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.wait(STOP_TIMEOUT)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return ""


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One Redis for the session (tests that share it flush their database first)."""
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture
def start_redis(tmp_path: Path) -> Iterator[Callable[..., RedisServer]]:
    """Factory: ``start_redis()`` starts a Redis of this test's own; all stop at teardown."""
    need_redis()
    started: list[RedisServer] = []

    def start(*, port: int | None = None, tls: TLSFiles | None = None) -> RedisServer:
        server = RedisServer(tmp_path, port=port, tls=tls)
        started.append(server)
        return server.start()

    yield start
    for server in reversed(started):
        server.stop()
