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
import contextlib
import errno
import json
import logging
import os
import signal
import socket
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

from ocistore import metrics
from ocistore.server.app import RegistryApp, build_app
from ocistore.server.config import ServerConfig, split_addr
from ocistore.server.debug import RunDir, start_monitor
from ocistore.server.h1 import H1Settings, run_worker
from ocistore.server.h1.supervisor import supervise
from ocistore.server.health import HealthGate
from ocistore.server.memory import tune_allocator
from ocistore.server.reload import ConfigHolder, forward_to_children, reload_app
from ocistore.server.tls import server_context

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
ENV_RUN: Final = "OCISTORE_SERVE_RUN"
"""The run directory (metrics files, health byte) of the serving ``ocistore serve``."""

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

    ``ocistore.limits`` (:mod:`ocistore.server.limits`); a timeout it leaves
    out follows the idle timeout: a request's headers get it (at least 1 s,
    at most 60 s, as granian's header read timeout had), and a client that
    stops reading a response is given up after it too.
    """
    limits = cfg.limits
    header = min(max(cfg.idle_timeout, 1.0), 60.0)
    if limits.header_timeout is not None:
        header = limits.header_timeout
    return H1Settings(
        header_timeout=header,
        keepalive_timeout=(
            limits.keepalive_timeout if limits.keepalive_timeout is not None else max(75.0, header)
        ),
        send_timeout=(
            limits.send_timeout if limits.send_timeout is not None else max(cfg.idle_timeout, 1.0)
        ),
        max_header_bytes=limits.max_header_bytes,
        max_headers=limits.max_headers,
        max_request_line=limits.max_request_line,
        max_connections=limits.max_connections,
    )


def _configure_logging(cfg: ServerConfig) -> None:
    from ocistore.server.logs import configure_logging

    fields = json.loads(cfg.log_fields) if cfg.log_fields else None
    configure_logging(_GRANIAN_LEVELS[cfg.log_level], cfg.log_formatter, fields)


def worker_app() -> RegistryApp:
    """The factory each worker calls: the app built from the parent's configuration."""
    raw = os.environ.get(ENV_CONFIG)
    if raw is None:
        raise RuntimeError(f"{ENV_CONFIG} is not set: start workers with `ocistore serve`")
    cfg = ServerConfig.from_env(json.loads(raw))
    _configure_logging(cfg)
    tune_allocator()
    run = os.environ.get(ENV_RUN)
    app = _observed_app(cfg, RunDir(run) if run else None)
    app.send_timeout = h1_settings(cfg).send_timeout  # granian has none of its own
    return app


def serve(cfg: ServerConfig, reload: Callable[[], ServerConfig] | None = None) -> int:
    """Serve until SIGINT/SIGTERM; returns the exit status.

    ``reload`` reads the configuration again (the file and the same flags):
    with it, SIGHUP applies what can change while serving
    (:mod:`ocistore.server.reload`), on either stack.
    Raises :class:`AddressInUse` before starting anything when the address is taken.
    """
    if cfg.stack == "granian":
        _serve_granian(cfg, reload)
        return 0
    cfg = cfg.with_secret()
    _configure_logging(cfg)
    os.makedirs(cfg.root, exist_ok=True)
    parent = os.getpid()
    sock = bind_listener(cfg.host, cfg.port)
    try:
        debug_sock = bind_listener(*split_addr(cfg.debug_addr)) if cfg.debug_addr else None
    except BaseException:
        sock.close()
        raise
    _log_start(cfg)
    settings = h1_settings(cfg)
    run, monitor = _start_monitor(cfg, debug_sock, sock)
    holder = ConfigHolder(cfg, reload) if reload is not None else None

    def make_app() -> RegistryApp:
        tune_allocator()
        app = _observed_app(holder.cfg if holder is not None else cfg, run)
        if holder is not None:  # called in the worker's running event loop
            loop = asyncio.get_running_loop()
            loop.add_signal_handler(signal.SIGHUP, reload_app, app, holder)
        return app

    def worker_main(listener: socket.socket) -> None:
        tls = server_context(cfg.tls) if cfg.tls is not None else None
        run_worker(make_app, listener, settings, tls=tls)

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
        if monitor is not None and os.getpid() == parent:
            _stop_monitor(monitor)
        if run is not None and os.getpid() == parent:
            run.remove()


def _start_monitor(
    cfg: ServerConfig, debug_sock: socket.socket | None, listener: socket.socket | None
) -> tuple[RunDir | None, int | None]:
    """The run directory and the debug monitor's pid, when the debug server or health is on."""
    if debug_sock is None and not cfg.health.enabled:
        return None, None
    run = RunDir.create()
    if cfg.prometheus:
        os.environ[metrics.ENV_DIR] = run.metrics_dir  # before any import of prometheus_client
    os.environ[ENV_RUN] = run.path
    logging.getLogger("ocistore.server").info(
        "debug server on %s, health checks %s, shared state in %s",
        cfg.debug_addr or "(none)",
        "on" if cfg.health.enabled else "off",
        run.path,
    )
    monitor = start_monitor(cfg, run, debug_sock, listener)
    if debug_sock is not None:
        debug_sock.close()  # the monitor has it
    return run, monitor


def _observed_app(cfg: ServerConfig, run: RunDir | None) -> RegistryApp:
    """A worker's app, with its metrics recorder and health gate when they are configured."""
    if run is None:
        return build_app(cfg)
    recorder = metrics.enable() if cfg.prometheus else None
    health = HealthGate(run.health_file) if cfg.health.enabled else None
    return build_app(cfg, recorder=recorder, health=health)


def _stop_monitor(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)


def _log_start(cfg: ServerConfig) -> None:
    logging.getLogger("ocistore.server").info(
        "ocistore serving %s on %s://%s (%d worker%s, cache %s, %s)",
        _storage_name(cfg),
        "https" if cfg.tls is not None else "http",
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


def _serve_granian(cfg: ServerConfig, reload: Callable[[], ServerConfig] | None = None) -> None:
    """Serve under granian (it handles the signals and stops the workers).

    On SIGHUP granian calls its reload hooks in this process, then replaces
    every worker (each new one starts, then the old one stops gracefully).
    The hook re-reads the configuration (:class:`ConfigHolder`: only what can
    change while serving) and puts it in the environment the new workers
    read, so they start with it; a file that does not load leaves the
    environment, and so the workers' configuration, as it was.
    """
    from granian import Granian
    from granian.constants import Interfaces
    from granian.http import HTTP1Settings

    cfg = cfg.with_secret()
    _configure_logging(cfg)
    check_address_free(cfg.host, cfg.port)
    debug_sock = bind_listener(*split_addr(cfg.debug_addr)) if cfg.debug_addr else None
    os.makedirs(cfg.root, exist_ok=True)
    parent = os.getpid()
    run, monitor = _start_monitor(cfg, debug_sock, None)
    os.environ[ENV_CONFIG] = json.dumps(cfg.to_env())
    settings = h1_settings(cfg)
    header_timeout_ms = int(settings.header_timeout * 1000)
    _log_start(cfg)
    server = Granian(
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
        backpressure=settings.max_connections,
        **_granian_tls(cfg),
    )
    if reload is not None:
        holder = ConfigHolder(cfg, reload)

        def on_reload() -> None:
            new = holder.reload()
            if new is not None:
                os.environ[ENV_CONFIG] = json.dumps(new.to_env())
                logging.getLogger("ocistore.server").info(
                    "SIGHUP: configuration reloaded (read-only %s); granian replaces its workers",
                    "on" if new.readonly else "off",
                )

        server.on_reload(on_reload)
    try:
        server.serve()
    finally:
        if monitor is not None and os.getpid() == parent:
            _stop_monitor(monitor)
        if run is not None and os.getpid() == parent:
            run.remove()


def _granian_tls(cfg: ServerConfig) -> dict[str, Any]:
    """granian's TLS arguments for ``http.tls`` (none without it).

    granian takes one CA file: several ``clientcas`` are joined into one, in a
    private temporary file that lives as long as the server. Its default
    floor is TLS 1.3, so the configured one is always passed.
    """
    tls = cfg.tls
    if tls is None:
        return {}
    from granian.constants import SSLProtocols

    args: dict[str, Any] = {
        "ssl_cert": Path(tls.certificate),
        "ssl_key": Path(tls.key),
        "ssl_protocol_min": SSLProtocols(tls.minimumtls),
    }
    if tls.clientcas:
        ca = tls.clientcas[0]
        if len(tls.clientcas) > 1:
            fd, ca = tempfile.mkstemp(prefix="ocistore-clientcas-", suffix=".pem")
            with os.fdopen(fd, "wb") as out:
                for path in tls.clientcas:
                    with open(path, "rb") as f:
                        out.write(f.read().rstrip(b"\n") + b"\n")
        args["ssl_ca"] = Path(ca)
        args["ssl_client_verify"] = True
    return args
