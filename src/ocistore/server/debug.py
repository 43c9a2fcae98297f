"""The debug monitor of ``ocistore serve``: ``/metrics``, ``/debug/health`` and the health checks.

``ocistore serve`` forks this process before it forks the workers, and it
serves ``http.debug.addr`` (distribution's debug server) on its own
threads: it shares no event loop, no thread and no GIL with the workers, so
workers that are busy (or stopped) cannot delay a scrape. ``/metrics``
(``http.debug.prometheus.path``) is prometheus_client's exposition of
every worker's metric files (:mod:`ocistore.metrics`); ``/debug/health``
the failing checks of :mod:`ocistore.server.health`, which also run here.
The process leaves when its parent does.
"""

from __future__ import annotations

import contextlib
import glob
import json
import logging
import os
import shutil
import signal
import socket
import tempfile
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Final

from ocistore.server.health import (
    HEALTH_FILE,
    HealthMonitor,
    create_health_file,
)

__all__ = ["RunDir", "start_monitor"]

log = logging.getLogger("ocistore.server")

METRICS_DIRNAME: Final = "metrics"
_FILE_HEADER: Final = 8
"""Bytes at the start of a prometheus_client value file that say how much of it is used."""


@dataclass(frozen=True, slots=True)
class RunDir:
    """What one ``ocistore serve`` shares between its processes (removed when it stops)."""

    path: str

    @classmethod
    def create(cls) -> RunDir:
        path = tempfile.mkdtemp(prefix="ocistore-run-")
        os.mkdir(os.path.join(path, METRICS_DIRNAME))
        create_health_file(os.path.join(path, HEALTH_FILE))
        return cls(path)

    @property
    def metrics_dir(self) -> str:
        return os.path.join(self.path, METRICS_DIRNAME)

    @property
    def health_file(self) -> str:
        return os.path.join(self.path, HEALTH_FILE)

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


def start_monitor(
    cfg: Any, run: RunDir, sock: socket.socket | None, listener: socket.socket | None = None
) -> int:
    """Fork the monitor; returns its pid. Call before any thread starts (it forks).

    ``listener`` (the API's socket) is closed in the monitor, which never serves it.
    """
    parent = os.getpid()
    pid = os.fork()
    if pid:
        return pid
    status = 0
    try:
        if listener is not None:
            listener.close()
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)  # a reload is for the workers
        signal.pthread_sigmask(signal.SIG_SETMASK, set())
        _monitor_main(cfg, run, sock, parent)
    except BaseException as exc:  # the child must never return into the parent's code
        log.error("debug monitor failed: %s", exc, exc_info=exc)
        status = 1
    finally:
        os._exit(status)


def _monitor_main(cfg: Any, run: RunDir, sock: socket.socket | None, parent: int) -> None:
    from ocistore.server.app import build_cache, build_driver

    health = HealthMonitor(run.health_file)
    driver = build_driver(cfg)
    cache = build_cache(cfg) if cfg.health.enabled else None
    health.add_configured(cfg, cfg.health, driver, cache)
    health.start()
    server = None
    if sock is not None:
        server = _DebugServer(sock, health, cfg.prometheus_path if cfg.prometheus else None, run)
        threading.Thread(target=server.serve_forever, name="debug-http", daemon=True).start()
    # Leave with the parent (SIGKILLed or not): it is our only reason to exist.
    stop = threading.Event()
    while os.getppid() == parent and not stop.wait(0.5):
        pass
    health.stop()
    if server is not None:
        server.shutdown()


class _DebugServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self,
        sock: socket.socket,
        health: HealthMonitor,
        metrics_path: str | None,
        run: RunDir,
    ) -> None:
        super().__init__(sock.getsockname()[:2], _Handler, bind_and_activate=False)
        self.socket.close()
        sock.setblocking(True)
        self.socket = sock
        self.health = health
        self.metrics_path = metrics_path
        self.run = run
        self._scrape_lock = threading.Lock()

    def exposition(self) -> tuple[bytes, str]:
        with self._scrape_lock:
            return exposition(self.run.metrics_dir)


def exposition(directory: str) -> tuple[bytes, str]:
    """Every worker's metric files in ``directory``, merged, in Prometheus' text format."""
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
    from prometheus_client.multiprocess import mark_process_dead

    _forget_dead(directory, mark_process_dead)
    registry = CollectorRegistry()
    registry.register(_StartedFiles(directory))
    return generate_latest(registry), CONTENT_TYPE_LATEST


class _StartedFiles:
    """prometheus_client's multiprocess merge over the files that workers have finished creating.

    A worker creates its file empty and then sizes it: read in between, it
    has no header and prometheus_client's reader fails on it (the scrape
    would fail while a worker starts). It holds no value yet, so it is left
    out of this scrape.
    """

    def __init__(self, directory: str) -> None:
        self.directory = directory

    def collect(self) -> Any:
        from prometheus_client.multiprocess import MultiProcessCollector

        files = [f for f in glob.glob(os.path.join(self.directory, "*.db")) if _started(f)]
        return MultiProcessCollector.merge(files, accumulate=True)  # type: ignore[no-untyped-call]


def _started(path: str) -> bool:
    try:
        return os.stat(path).st_size >= _FILE_HEADER
    except FileNotFoundError:
        return False  # a dead worker's live gauge, removed since the glob


def _forget_dead(directory: str, mark_process_dead: Any) -> None:
    """Drop the live gauges of workers that died (their counters stay: they were counted)."""
    for path in glob.glob(os.path.join(directory, "gauge_live*_*.db")):
        pid = int(os.path.basename(path).rsplit("_", 1)[1].split(".")[0])
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            mark_process_dead(pid, directory)
        except PermissionError:
            pass


class _Handler(BaseHTTPRequestHandler):
    server: _DebugServer
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        try:
            status, body, ctype = self._answer(self.path.split("?", 1)[0])
        except Exception as exc:  # a scrape gets an answer, never a dropped connection
            log.error("debug server: GET %s failed: %s", self.path, exc, exc_info=exc)
            status, body = 500, f"{type(exc).__name__}: {exc}\n".encode()
            ctype = "text/plain; charset=utf-8"
        self._send(status, body, ctype)

    def _answer(self, path: str) -> tuple[int, bytes, str]:
        if path == "/debug/health":
            failing = self.server.health.status()
            return 503 if failing else 200, json.dumps(failing).encode(), "application/json"
        if self.server.metrics_path is not None and path == self.server.metrics_path:
            return 200, *self.server.exposition()
        return 404, b"404 page not found\n", "text/plain; charset=utf-8"

    def _send(self, status: int, body: bytes, ctype: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        with contextlib.suppress(OSError):
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("debug server: " + format, *args)
