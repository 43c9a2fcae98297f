"""``ocistore serve``: the app on ocistore's own HTTP/1.1 server (the default) or on granian.

Why an own server (:mod:`ocistore.server.h1`): a blob GET is a file range,
and an ASGI server that takes bodies only as ``bytes`` (granian, uvicorn)
costs a copy of every pulled byte out of the page cache plus its own copy;
``ocistore.server.h1`` writes the range from a mapping of the file
(BENCHMARKS.md, "HTTP: the server stack"). granian remains selectable
(``--stack granian``, ``ocistore.stack``); the app is plain ASGI on both,
and runs under any other ASGI server through
:func:`ocistore.server.create_app`.

The parent binds the socket itself, without ``SO_REUSEPORT``, so an address
already in use fails loudly (:class:`AddressInUse`), then the supervisor
forks the workers, which all accept on that one socket; each worker builds
its own app after the fork. The configuration (with the upload-token secret,
generated once here when none is configured) is therefore the same in every
worker. granian instead starts its workers from an import string, so for it
the configuration travels as JSON in one environment variable.
"""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import os
import signal
import socket
from collections.abc import Callable
from typing import Any, Final

from ocistore.server.app import RegistryApp, build_app
from ocistore.server.config import ServerConfig
from ocistore.server.h1 import H1Settings, run_worker
from ocistore.server.h1.supervisor import supervise
from ocistore.server.memory import tune_allocator
from ocistore.server.reload import ConfigHolder, forward_to_children, reload_app

__all__ = [
    "ENV_CONFIG",
    "HTTP1_BUFFER",
    "AddressInUse",
    "bind_listener",
    "check_address_free",
    "h1_settings",
    "serve",
    "worker_app",
]

ENV_CONFIG: Final = "OCISTORE_SERVE_CONFIG"

HTTP1_BUFFER: Final = 2 << 20
"""granian's HTTP/1 read buffer limit (``--stack granian``) (its default is 408 KiB).

Blob bodies reach the app in pieces of at most this size: larger pieces
mean fewer socket reads and loop wake-ups per pushed GiB, and the allocator
keeps their memory (:mod:`ocistore.server.memory`); BENCHMARKS.md, "HTTP:
the server's tuning". A connection's buffer only grows that large while it
carries large bodies (hyper grows it only when reads fill it).
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
    with _socket(host) as probe:
        _bind(probe, host, port)


def _socket(host: str) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return socket.socket(family, socket.SOCK_STREAM)


def _bind(sock: socket.socket, host: str, port: int) -> None:
    """Bind with ``SO_REUSEADDR`` (not ``SO_REUSEPORT``); :class:`AddressInUse` if taken."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise AddressInUse(host, port) from None
        raise


def bind_listener(host: str, port: int, *, backlog: int = 2048) -> socket.socket:
    """A listening TCP socket on ``host:port``; :class:`AddressInUse` when that is taken.

    ``SO_REUSEADDR`` only (a previous run's connections in TIME_WAIT do not
    block a restart); never ``SO_REUSEPORT``, which would let two servers
    share the port silently.
    """
    sock = _socket(host)
    try:
        _bind(sock, host, port)
        sock.listen(backlog)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def h1_settings(cfg: ServerConfig) -> H1Settings:
    """The HTTP/1.1 server's limits for this configuration.

    A request's headers get the idle timeout (at least 1 s, at most 60 s, as
    granian's header read timeout had); a client that stops reading a
    response is given up after the idle timeout too.
    """
    header = min(max(cfg.idle_timeout, 1.0), 60.0)
    return H1Settings(
        header_timeout=header,
        keepalive_timeout=max(75.0, header),
        send_timeout=max(cfg.idle_timeout, 1.0),
    )


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


def serve(cfg: ServerConfig, reload: Callable[[], ServerConfig] | None = None) -> int:
    """Serve until SIGINT/SIGTERM; returns the exit status.

    ``reload`` reads the configuration again (the file and the same flags):
    with it, SIGHUP applies what can change while serving
    (:mod:`ocistore.server.reload`) on the default stack.
    Raises :class:`AddressInUse` before starting anything when the address is taken.
    """
    if cfg.stack == "granian":
        _serve_granian(cfg)
        return 0
    cfg = cfg.with_secret()
    _configure_logging(cfg.log_level)
    os.makedirs(cfg.root, exist_ok=True)
    sock = bind_listener(cfg.host, cfg.port)
    _log_start(cfg)
    settings = h1_settings(cfg)
    holder = ConfigHolder(cfg, reload) if reload is not None else None

    def make_app() -> RegistryApp:
        tune_allocator()
        app = build_app(holder.cfg if holder is not None else cfg)
        if holder is not None:  # called in the worker's running event loop
            loop = asyncio.get_running_loop()
            loop.add_signal_handler(signal.SIGHUP, reload_app, app, holder)
        return app

    def worker_main(listener: socket.socket) -> None:
        run_worker(make_app, listener, settings)

    previous: Any = None
    if holder is not None and cfg.workers > 1:
        # The parent: new settings for the workers it starts later, and the signal
        # passed on to those running (each re-reads the file itself).
        def on_hup(signum: int, frame: object) -> None:
            holder.reload()
            n = forward_to_children(signal.SIGHUP)
            logging.getLogger("ocistore.server").info("SIGHUP: passed on to %d workers", n)

        previous = signal.signal(signal.SIGHUP, on_hup)
    try:
        return supervise(sock, cfg.workers, worker_main, grace=settings.shutdown_grace)
    finally:
        sock.close()
        if previous is not None:
            signal.signal(signal.SIGHUP, previous)


def _log_start(cfg: ServerConfig) -> None:
    logging.getLogger("ocistore.server").info(
        "ocistore serving %s on http://%s (%d worker%s, cache %s, %s)",
        _storage_name(cfg),
        cfg.addr,
        cfg.workers,
        "s" if cfg.workers > 1 else "",
        cfg.cache,
        cfg.stack,
    )


def _storage_name(cfg: ServerConfig) -> str:
    """Where the blobs are: the root directory, or ``s3://bucket/rootdirectory``."""
    params = cfg.s3_params
    if params is None:
        return os.path.abspath(cfg.root)
    root = str(params.get("rootdirectory") or "").strip("/")
    return f"s3://{params.get('bucket')}/{root}"


def _serve_granian(cfg: ServerConfig) -> None:
    """Serve under granian (it handles the signals and stops the workers)."""
    from granian import Granian
    from granian.constants import Interfaces
    from granian.http import HTTP1Settings

    cfg = cfg.with_secret()
    _configure_logging(cfg.log_level)
    check_address_free(cfg.host, cfg.port)
    os.makedirs(cfg.root, exist_ok=True)
    os.environ[ENV_CONFIG] = json.dumps(cfg.to_env())
    header_timeout_ms = int(h1_settings(cfg).header_timeout * 1000)
    _log_start(cfg)
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
