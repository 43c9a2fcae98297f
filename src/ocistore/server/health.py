"""Health checks: storage reachable and writable, the descriptor cache, and registered extras.

distribution's ``health.storagedriver: {enabled, interval, threshold}``:
every ``interval`` the storage is checked (its root stat'ed, a probe file
written and read back); after ``threshold`` failures in a row the check is
failing, and it passes again at the first success. A check that has not
answered within its ``timeout`` (ocistore's key beside distribution's;
default: the interval) counts as a failure, reported as timed out, so a
stalled filesystem or S3 call drains the host instead of leaving it
answering 200 on the last good verdict. With any check failing,
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
    timeout: float | None = None
    """Seconds a check may take (None: the interval); ocistore's key, distribution has none."""

    @property
    def check_timeout(self) -> float:
        return self.timeout if self.timeout is not None else self.interval


@dataclass(frozen=True, slots=True)
class _Registered:
    name: str
    factory: CheckFactory
    interval: float | None
    threshold: int | None
    timeout: float | None


_EXTRA: list[_Registered] = []


def register_check(
    name: str,
    factory: CheckFactory,
    *,
    interval: float | None = None,
    threshold: int | None = None,
    timeout: float | None = None,
) -> None:
    """Add a check to every server started afterwards (unset ``interval``/``threshold``/``timeout``: the storage's).

    ``factory(cfg)`` runs in the monitor process and returns the check, or
    None when it does not apply to that configuration (no upstream, say).
    """
    if any(r.name == name for r in _EXTRA):
        raise ValueError(f"health check {name!r} is already registered")
    _EXTRA.append(_Registered(name, factory, interval, threshold, timeout))


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


class _Call:
    """One run of a check on a thread of its own, so the caller can stop waiting for it."""

    __slots__ = ("done", "error")

    def __init__(self, name: str, check: Check) -> None:
        self.done = threading.Event()
        self.error: Exception | None = None
        threading.Thread(
            target=self._run, args=(check,), name=f"health-call-{name}", daemon=True
        ).start()

    def _run(self, check: Check) -> None:
        try:
            check()
        except Exception as exc:
            self.error = exc
        finally:
            self.done.set()


class HealthMonitor:
    """Runs the checks on threads of their own and keeps (and publishes) their state."""

    def __init__(self, path: str | None = None) -> None:
        self._checks: list[tuple[str, Check, float, int, float]] = []
        self._calls: dict[str, _Call] = {}
        self._failures: dict[str, int] = {}
        self._errors: dict[str, str] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._map: mmap.mmap | None = None
        if path is not None:
            with open(path, "r+b") as f:
                self._map = mmap.mmap(f.fileno(), 1)

    def add(
        self,
        name: str,
        check: Check,
        *,
        interval: float,
        threshold: int,
        timeout: float | None = None,
    ) -> None:
        """Run ``check`` every ``interval`` seconds, each run bounded by ``timeout`` (default: interval)."""
        interval = max(interval, 0.05)
        limit = interval if timeout is None else max(timeout, 0.01)
        self._checks.append((name, check, interval, max(threshold, 1), limit))

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
                timeout=storage.check_timeout,
            )
            if cache is not None:
                self.add(
                    f"cache_{cfg.cache}",
                    cache_check(cache),
                    interval=storage.interval,
                    threshold=storage.threshold,
                    timeout=storage.check_timeout,
                )
        for r in _EXTRA:
            check = r.factory(cfg)
            if check is not None:
                self.add(
                    r.name,
                    check,
                    interval=r.interval or storage.interval,
                    threshold=r.threshold or storage.threshold,
                    timeout=r.timeout if r.timeout is not None else storage.timeout,
                )

    def start(self) -> None:
        for name, check, interval, threshold, timeout in self._checks:
            t = threading.Thread(
                target=self._run,
                args=(name, check, interval, threshold, timeout),
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

    def run_once(
        self, name: str, check: Check, threshold: int, timeout: float | None = None
    ) -> None:
        """Run ``check`` once and count its outcome (called by one thread per check name).

        With a ``timeout`` the check runs on a thread of its own; one that
        has not answered by then is a failure ("timed out"). A run still
        stuck is not started again: the next round waits for it (up to
        ``timeout`` once more) and takes its outcome when it comes.
        """
        if timeout is None:
            try:
                check()
            except Exception as exc:
                self._failed(name, str(exc) or type(exc).__name__, threshold)
            else:
                self._passed(name)
            return
        call = self._calls.get(name)
        if call is None:
            call = self._calls[name] = _Call(name, check)
        if not call.done.wait(timeout):
            self._failed(name, f"timed out: no answer within {timeout:g}s", threshold)
            return
        del self._calls[name]
        if call.error is not None:
            self._failed(name, str(call.error) or type(call.error).__name__, threshold)
        else:
            self._passed(name)

    def _failed(self, name: str, reason: str, threshold: int) -> None:
        with self._lock:
            n = self._failures[name] = self._failures.get(name, 0) + 1
            if n >= threshold:
                if name not in self._errors:
                    log.error("health check %s failing: %s", name, reason)
                self._errors[name] = reason
            self._publish()

    def _passed(self, name: str) -> None:
        with self._lock:
            self._failures[name] = 0
            if self._errors.pop(name, None) is not None:
                log.warning("health check %s passes again", name)
            self._publish()

    def _run(
        self, name: str, check: Check, interval: float, threshold: int, timeout: float
    ) -> None:
        while not self._stop.is_set():
            self.run_once(name, check, threshold, timeout)
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
