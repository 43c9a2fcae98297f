"""Health checks: storage reachable and writable, the descriptor cache, and registered extras.

distribution's ``health.storagedriver: {enabled, interval, threshold}``:
every ``interval`` the storage is checked (its root stat'ed, a probe file
written and read back); after ``threshold`` failures in a row the check is
failing, and it passes again at the first success. With any check failing,
``/debug/health`` answers 503 with ``{check: error}`` and every registry
request answers 503 UNAVAILABLE, so a load balancer drains this host.

The checks run in one process for the whole server (the debug monitor,
:mod:`ocistore.server.debug`), which publishes one byte, failing or not, in
a shared mapped file; each worker's :class:`HealthGate` reads that byte per
request (no system call). Other parts add checks with :func:`register_check`
(the proxy's upstream, say); a check is a callable that raises when unhealthy.
"""

from __future__ import annotations

import contextlib
import logging
import mmap
import os
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

__all__ = [
    "HEALTH_FILE",
    "Check",
    "CheckFactory",
    "HealthGate",
    "HealthMonitor",
    "StorageDriverHealth",
    "register_check",
]

log = logging.getLogger("ocistore.health")

HEALTH_FILE: Final = "health"
"""The one-byte file (in the server's run directory) the monitor writes and workers map."""

PROBE_DIR: Final = "/ocistore-health"

Check = Callable[[], None]
"""Raises (any exception, its text is the reason) when unhealthy."""

CheckFactory = Callable[[Any], "Check | None"]
"""Given the :class:`~ocistore.server.config.ServerConfig`, a check (or None: not applicable)."""


@dataclass(frozen=True, slots=True)
class StorageDriverHealth:
    """distribution's ``health.storagedriver`` (its defaults: off, every 10 s, failing at the first error)."""

    enabled: bool = False
    interval: float = 10.0
    threshold: int = 1


@dataclass(frozen=True, slots=True)
class _Registered:
    name: str
    factory: CheckFactory
    interval: float | None
    threshold: int | None


_EXTRA: list[_Registered] = []


def register_check(
    name: str,
    factory: CheckFactory,
    *,
    interval: float | None = None,
    threshold: int | None = None,
) -> None:
    """Add a check to every server started afterwards (``interval``/``threshold``: the storage's).

    ``factory(cfg)`` runs in the monitor process and returns the check, or
    None when it does not apply to that configuration (no upstream, say).
    """
    if any(r.name == name for r in _EXTRA):
        raise ValueError(f"health check {name!r} is already registered")
    _EXTRA.append(_Registered(name, factory, interval, threshold))


def storage_check(driver: Any) -> Check:
    """The storage answers and takes writes: stat its root, write a probe file, read it back."""
    from ocistore.errors import PathNotFound

    probe = f"{PROBE_DIR}/probe-{socket.gethostname()}"

    def check() -> None:
        with contextlib.suppress(PathNotFound):
            driver.stat("/")
        token = os.urandom(16).hex().encode()
        driver.put_content(probe, token)
        if driver.get_content(probe) != token:
            raise OSError(f"probe {probe} read back different bytes")

    return check


def cache_check(cache: Any) -> Check:
    """The descriptor cache answers: a lookup of a digest nobody stores must say "unknown"."""
    from ocistore.digest import Digest
    from ocistore.errors import BlobUnknown

    absent = Digest.parse("sha256:" + "0" * 64)

    def check() -> None:
        with contextlib.suppress(BlobUnknown):
            cache.stat(absent)

    return check


class HealthMonitor:
    """Runs the checks on threads of their own and keeps (and publishes) their state."""

    def __init__(self, path: str | None = None) -> None:
        self._checks: list[tuple[str, Check, float, int]] = []
        self._failures: dict[str, int] = {}
        self._errors: dict[str, str] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._map: mmap.mmap | None = None
        if path is not None:
            with open(path, "r+b") as f:
                self._map = mmap.mmap(f.fileno(), 1)

    def add(self, name: str, check: Check, *, interval: float, threshold: int) -> None:
        self._checks.append((name, check, max(interval, 0.05), max(threshold, 1)))

    def add_configured(
        self, cfg: Any, storage: StorageDriverHealth, driver: Any, cache: Any
    ) -> None:
        """The storage and cache checks when enabled, then every registered extra that applies."""
        if storage.enabled:
            kind = "s3" if cfg.s3_params is not None else "filesystem"
            self.add(
                f"storagedriver_{kind}",
                storage_check(driver),
                interval=storage.interval,
                threshold=storage.threshold,
            )
            if cache is not None:
                self.add(
                    f"cache_{cfg.cache}",
                    cache_check(cache),
                    interval=storage.interval,
                    threshold=storage.threshold,
                )
        for r in _EXTRA:
            check = r.factory(cfg)
            if check is not None:
                self.add(
                    r.name,
                    check,
                    interval=r.interval or storage.interval,
                    threshold=r.threshold or storage.threshold,
                )

    def start(self) -> None:
        for name, check, interval, threshold in self._checks:
            t = threading.Thread(
                target=self._run,
                args=(name, check, interval, threshold),
                name=f"health-{name}",
                daemon=True,
            )
            t.start()
            self._threads.append(t)

    def stop(self) -> None:
        self._stop.set()

    def status(self) -> dict[str, str]:
        """The failing checks and why (empty: healthy)."""
        with self._lock:
            return dict(self._errors)

    def run_once(self, name: str, check: Check, threshold: int) -> None:
        try:
            check()
        except Exception as exc:
            reason = str(exc) or type(exc).__name__
            with self._lock:
                n = self._failures[name] = self._failures.get(name, 0) + 1
                if n >= threshold:
                    if name not in self._errors:
                        log.error("health check %s failing: %s", name, reason)
                    self._errors[name] = reason
                self._publish()
        else:
            with self._lock:
                self._failures[name] = 0
                if self._errors.pop(name, None) is not None:
                    log.warning("health check %s passes again", name)
                self._publish()

    def _run(self, name: str, check: Check, interval: float, threshold: int) -> None:
        while not self._stop.is_set():
            self.run_once(name, check, threshold)
            self._stop.wait(interval)

    def _publish(self) -> None:
        if self._map is not None:
            self._map[0] = 1 if self._errors else 0


class HealthGate:
    """A worker's view of the monitor's verdict: one byte of a shared mapping."""

    __slots__ = ("_map",)

    def __init__(self, path: str) -> None:
        with open(path, "rb") as f:
            self._map = mmap.mmap(f.fileno(), 1, prot=mmap.PROT_READ)

    @property
    def failing(self) -> bool:
        return self._map[0] != 0


def create_health_file(path: str) -> None:
    """The shared byte, healthy until the first check says otherwise."""
    with open(path, "wb") as f:
        f.write(b"\0")
