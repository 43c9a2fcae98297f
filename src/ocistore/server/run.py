"""Running the app under granian, in one or several worker processes.

Why granian: measured against uvicorn (httptools + uvloop) and aiohttp with
the same trivial handlers (``benchmarks/http/stack_compare.py``), granian's
ASGI interface answered small requests 1.4-5 x faster (its HTTP/1 parsing and
keep-alive handling are in Rust, and it keeps ``ab -k``'s HTTP/1.0
keep-alive), took streamed uploads at least as fast, and runs N worker
processes on one shared socket by itself. The app stays plain ASGI, so
uvicorn can run it as well.

The resolved configuration travels to the workers as JSON in one environment
variable, including the upload-token secret: generated once here when none
is configured, so every worker signs and checks tokens alike.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import socket
from typing import Final

from ocistore.server.app import RegistryApp, build_app
from ocistore.server.config import ServerConfig
from ocistore.server.memory import tune_allocator

__all__ = [
    "ENV_CONFIG",
    "HTTP1_BUFFER",
    "AddressInUse",
    "check_address_free",
    "serve",
    "worker_app",
]

ENV_CONFIG: Final = "OCISTORE_SERVE_CONFIG"

HTTP1_BUFFER: Final = 2 << 20
"""granian's HTTP/1 read buffer limit (its default is 408 KiB).

Blob bodies reach the app in pieces of at most this size. 1 MiB made a
1 GiB push about 15% faster than the default, monolithic and in 16 MiB
chunks (fewer socket reads and loop wake-ups: the server's Rust thread used
half the CPU). 2 MiB was slower then, while each new piece was written into
freshly faulted pages; since the allocator keeps that memory
(:mod:`ocistore.server.memory`), 2 MiB beats 1 MiB by 5-10% chunked and ~7%
monolithic, 4 MiB no more (``benchmarks/http/registry_compare.py``,
paired interleaved runs). A connection's buffer only grows that large while
it carries large bodies (hyper grows it only when reads fill it).
"""

_GRANIAN_LEVELS: Final = {
    "debug": "debug",
    "info": "info",
    "warn": "warning",
    "warning": "warning",
    "error": "error",
    "critical": "critical",
}


class AddressInUse(OSError):
    """Another process listens on the address ``ocistore serve`` was asked to use."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        super().__init__(
            errno.EADDRINUSE,
            f"{host}:{port} is already in use by another process "
            "(stop it, or choose another address with --addr or http.addr)",
        )


def check_address_free(host: str, port: int) -> None:
    """Raise :class:`AddressInUse` if something already listens on ``host:port``.

    granian binds its socket with ``SO_REUSEPORT`` (that is how its workers
    share one port), so a second ``ocistore serve`` on a busy port would not
    fail: the kernel would quietly split connections between the two servers,
    which have different upload-token secrets, so uploads fail at random. A
    probe bind *without* ``SO_REUSEPORT`` collides with any listener, while
    ``SO_REUSEADDR`` lets it ignore connections of a previous run still in
    TIME_WAIT. Port 0 (any free port) needs no check.
    """
    if port == 0:
        return
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise AddressInUse(host, port) from None
            raise


def _configure_logging(level: str) -> None:
    logging.basicConfig(
        level=_GRANIAN_LEVELS[level].upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def worker_app() -> RegistryApp:
    """The factory each worker calls: the app built from the parent's configuration."""
    raw = os.environ.get(ENV_CONFIG)
    if raw is None:
        raise RuntimeError(f"{ENV_CONFIG} is not set: start workers with `ocistore serve`")
    cfg = ServerConfig.from_env(json.loads(raw))
    _configure_logging(cfg.log_level)
    tune_allocator()
    return build_app(cfg)


def serve(cfg: ServerConfig) -> None:
    """Serve until SIGINT/SIGTERM (granian handles the signals and stops the workers).

    Raises :class:`AddressInUse` before starting anything when the address is taken.
    """
    from granian import Granian
    from granian.constants import Interfaces
    from granian.http import HTTP1Settings

    cfg = cfg.with_secret()
    _configure_logging(cfg.log_level)
    check_address_free(cfg.host, cfg.port)
    os.makedirs(cfg.root, exist_ok=True)
    os.environ[ENV_CONFIG] = json.dumps(cfg.to_env())
    header_timeout_ms = int(min(max(cfg.idle_timeout, 1.0), 60.0) * 1000)
    logging.getLogger("ocistore.server").info(
        "ocistore serving %s on http://%s (%d worker%s, cache %s)",
        os.path.abspath(cfg.root),
        cfg.addr,
        cfg.workers,
        "s" if cfg.workers > 1 else "",
        cfg.cache,
    )
    Granian(
        "ocistore.server.run:worker_app",
        factory=True,
        address=cfg.host,
        port=cfg.port,
        interface=Interfaces.ASGI,
        workers=cfg.workers,
        websockets=False,
        log_enabled=True,
        log_level=_GRANIAN_LEVELS[cfg.log_level],  # type: ignore[arg-type]
        log_access=False,
        http1_settings=HTTP1Settings(
            header_read_timeout=header_timeout_ms, max_buffer_size=HTTP1_BUFFER
        ),
    ).serve()
