"""Prometheus metrics for ``ocistore serve``, aggregated over every worker process.

``prometheus_client`` in multiprocess mode does the storage (one mmap file
per process and metric type in the directory named by
``PROMETHEUS_MULTIPROC_DIR``) and the exposition (the debug server's
``MultiProcessCollector``). Its values take a lock and write the mmap on
every update, which is too dear for a request that costs tens of
microseconds; so the request path only adds to plain per-process counters
(:class:`Recorder`, touched by the event loop's thread alone), and a flusher
thread in each worker writes the differences into the library's metrics
every :data:`FLUSH_INTERVAL` seconds (and once more when the worker stops).
A scrape is therefore up to that interval behind, and a worker killed with
SIGKILL loses what it had not flushed yet.

Names follow distribution's where it has them (``registry_http_*``,
``registry_storage_action_seconds``, ``registry_storage_cache_*``); what
distribution lacks is ``ocistore_*``. Everything here is a no-op in a
process where :func:`enable` was not called, so library users and the
``gc`` command pay nothing.
"""

from __future__ import annotations

import bisect
import collections
import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, Final

__all__ = [
    "DURATION_BUCKETS",
    "ENV_DIR",
    "FLUSH_INTERVAL",
    "Recorder",
    "enable",
    "enabled",
    "record_maintenance_run",
    "record_notification",
    "recorder",
]

log = logging.getLogger("ocistore.metrics")

ENV_DIR: Final = "PROMETHEUS_MULTIPROC_DIR"
"""Where the worker processes keep their metric files (prometheus_client's variable)."""

FLUSH_INTERVAL: Final = 1.0
"""Seconds between two flushes of a worker's batched counters into the shared files."""

DURATION_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 60)
"""distribution's buckets for ``registry_http_request_duration_seconds``."""

ACTION_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
"""Prometheus' default buckets, which distribution's storage timers use."""

_find: Final = bisect.bisect_left
_BOUNDS: Final = DURATION_BUCKETS
_ROW: Final = len(DURATION_BUCKETS) + 5  # count, buckets (+Inf included), seconds, rx, tx
_SECONDS: Final = _ROW - 3
_RECEIVED: Final = _ROW - 2
_SENT: Final = _ROW - 1

UPLOAD_ROUTES: Final = frozenset({"upload_start", "upload"})

# ocistore's route kinds under distribution's route names (its handler label).
HANDLER_NAMES: Final = {
    "base": "base",
    "catalog": "catalog",
    "tags": "tags",
    "manifest": "manifest",
    "blob": "blob",
    "upload_start": "blob_upload",
    "upload": "blob_upload_chunk",
    "referrers": "referrers",
}

_recorder: Recorder | None = None
_enable_lock = threading.Lock()


def enabled() -> bool:
    """Whether this process records metrics (``ocistore serve`` with prometheus on)."""
    return _recorder is not None


def recorder() -> Recorder | None:
    """This process's :class:`Recorder`, or None when metrics are off."""
    return _recorder


def enable(directory: str | None = None) -> Recorder:
    """Record metrics in this process into the multiprocess ``directory``.

    ``directory`` defaults to ``$PROMETHEUS_MULTIPROC_DIR``; it must be set
    before ``prometheus_client`` is first imported, which this checks.
    Idempotent; call it in each worker after the fork.
    """
    global _recorder
    with _enable_lock:
        if _recorder is not None:
            return _recorder
        directory = directory or os.environ.get(ENV_DIR)
        if not directory or not os.path.isdir(directory):
            raise ValueError(f"metrics directory {directory!r}: not an existing directory")
        os.environ[ENV_DIR] = directory
        from prometheus_client import values

        if "Mmaped" not in values.ValueClass.__name__:
            raise RuntimeError(
                "prometheus_client was imported before PROMETHEUS_MULTIPROC_DIR was set: "
                "its values would stay in this process"
            )
        _recorder = Recorder()
        return _recorder


def record_maintenance_run(
    kind: str, *, seconds: float, removed: int = 0, errors: int = 0, ok: bool = True
) -> None:
    """Count one maintenance run (``purge``, ``gc``) and what it removed.

    Rare, so written straight through; a no-op when metrics are off.
    """
    rec = _recorder
    if rec is None:
        return
    m = rec.families
    m.maintenance_runs.labels(kind, "ok" if ok else "error").inc()
    if removed:
        m.maintenance_removed.labels(kind).inc(removed)
    if errors:
        m.maintenance_errors.labels(kind).inc(errors)
    m.maintenance_seconds.labels(kind).set(seconds)
    m.maintenance_last.labels(kind).set(time.time())


def record_notification(endpoint: str, outcome: str, n: int = 1) -> None:
    """Count webhook events of ``endpoint`` by ``outcome``: queued, delivered, failed, dropped.

    ``failed`` counts delivery attempts that failed (each is retried); ``dropped``
    the events a full queue gave up. Off the request path; a no-op when metrics are off.
    """
    rec = _recorder
    if rec is None or n <= 0:
        return
    rec.families.notifications.labels(endpoint, outcome).inc(n)


class _Families:
    """The prometheus_client metric families (created once per process, after the fork)."""

    def __init__(self) -> None:
        from prometheus_client import Counter, Gauge, Histogram

        self.requests = Counter(
            "registry_http_requests_total",
            "Total number of HTTP requests made.",
            ["code", "method", "handler"],
        )
        self.duration = Histogram(
            "registry_http_request_duration_seconds",
            "The HTTP request latencies in seconds.",
            ["method", "handler"],
            buckets=DURATION_BUCKETS,
        )
        self.in_flight = Gauge(
            "registry_http_in_flight_requests",
            "The in-flight HTTP requests",
            ["handler"],
            multiprocess_mode="livesum",
        )
        self.received = Counter(
            "ocistore_http_received_bytes",
            "Request body bytes received.",
            ["handler"],
        )
        self.sent = Counter(
            "ocistore_http_sent_bytes",
            "Response body bytes sent.",
            ["handler"],
        )
        self.uploads = Gauge(
            "ocistore_uploads_in_progress",
            "Upload requests (POST, PATCH, PUT of a blob upload) receiving data now.",
            multiprocess_mode="livesum",
        )
        self.uploads_started = Counter(
            "ocistore_uploads_started", "Blob upload sessions started (POST, mounts excluded)."
        )
        self.uploads_completed = Counter(
            "ocistore_uploads_completed", "Blob uploads committed (the final PUT)."
        )
        self.resumes = Counter(
            "ocistore_hashstate_resumes",
            "Upload commits whose digest continued from a stored hash state.",
        )
        self.rereads = Counter(
            "ocistore_hashstate_rereads",
            "Upload commits that read the data again to hash it (no usable hash state).",
        )
        self.reread_bytes = Counter(
            "ocistore_hashstate_reread_bytes", "Bytes read again to hash uploads at commit."
        )
        self.action = Histogram(
            "registry_storage_action_seconds",
            "The number of seconds that the storage action takes",
            ["driver", "action"],
            buckets=ACTION_BUCKETS,
        )
        self.cache_requests = Counter(
            "registry_storage_cache_requests", "The number of cache request received"
        )
        self.cache_hits = Counter("registry_storage_cache_hits", "The number of cache request hits")
        self.cache_errors = Counter(
            "registry_storage_cache_errors", "The number of cache request errors"
        )
        self.layer_lookups = Counter(
            "ocistore_cache_lookups",
            "Lookups per cache layer (statcache, lmdb, inmemory, redis) and result (hit, miss).",
            ["layer", "result"],
        )
        self.notifications = Counter(
            "ocistore_notifications_events",
            "Webhook events per endpoint: queued, delivered, failed (attempts), dropped.",
            ["endpoint", "outcome"],
        )
        self.maintenance_runs = Counter(
            "ocistore_maintenance_runs",
            "Maintenance runs (purge, gc) by outcome.",
            ["kind", "outcome"],
        )
        self.maintenance_removed = Counter(
            "ocistore_maintenance_removed", "Things removed by maintenance runs.", ["kind"]
        )
        self.maintenance_errors = Counter(
            "ocistore_maintenance_errors", "Errors met by maintenance runs.", ["kind"]
        )
        self.maintenance_seconds = Gauge(
            "ocistore_maintenance_last_duration_seconds",
            "How long the last maintenance run took.",
            ["kind"],
            multiprocess_mode="mostrecent",
        )
        self.maintenance_last = Gauge(
            "ocistore_maintenance_last_run_timestamp_seconds",
            "When the last maintenance run finished (Unix time).",
            ["kind"],
            multiprocess_mode="max",
        )


class Recorder:
    """One process's batched counters and the thread that flushes them.

    ``request_*`` are called on the event loop's thread only; storage timings
    come from executor threads through a deque (whose append is atomic).
    Sources of counters kept elsewhere (cache layers) are sampled at flush time.
    """

    def __init__(self) -> None:
        self.families = _Families()
        # (handler, method, status) -> [count, duration bucket counts..., seconds, received, sent]
        self.rows: dict[tuple[str, str, int], list[float]] = {}
        self.in_flight: dict[str, int] = dict.fromkeys([*HANDLER_NAMES.values(), "unknown"], 0)
        self.uploads = 0
        self.counts: dict[str, int] = {
            "uploads_started": 0,
            "uploads_completed": 0,
            "resumes": 0,
            "rereads": 0,
            "reread_bytes": 0,
        }
        self.actions: collections.deque[tuple[str, str, float]] = collections.deque()
        self._sources: list[Callable[[], dict[tuple[str, str], int]]] = []
        self._flushed: dict[Any, Any] = {}
        self._flush_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- the request path (event loop thread) -----------------------------------------

    def request_started(self, handler: str, upload: bool) -> None:
        self.in_flight[handler] += 1
        if upload:
            self.uploads += 1

    def request_done(
        self,
        handler: str,
        method: str,
        status: int,
        seconds: float,
        received: int,
        sent: int,
        upload: bool,
    ) -> None:
        self.in_flight[handler] -= 1
        if upload:
            self.uploads -= 1
        row = self.rows.get((handler, method, status))
        if row is None:
            row = self.rows[(handler, method, status)] = [0.0] * _ROW
        row[0] += 1
        row[1 + _find(_BOUNDS, seconds)] += 1
        row[-3] += seconds  # _SECONDS, _RECEIVED, _SENT: constants are cheaper than globals
        if received:
            row[-2] += received
        if sent:
            row[-1] += sent

    def count(self, name: str, n: int = 1) -> None:
        """Add ``n`` to one of :attr:`counts` (loop thread)."""
        self.counts[name] += n

    # --- executor threads ---------------------------------------------------------------

    def storage_action(self, driver: str, action: str, seconds: float) -> None:
        self.actions.append((driver, action, seconds))

    def add_source(self, source: Callable[[], dict[tuple[str, str], int]]) -> None:
        """A function returning cumulative ``{(layer, result): count}``, sampled at each flush."""
        self._sources.append(source)

    # --- flushing -----------------------------------------------------------------------

    def start(self, interval: float = FLUSH_INTERVAL) -> None:
        """Start the flusher thread (in the worker, after the fork)."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, args=(interval,), name="ocistore-metrics", daemon=True
            )
            self._thread.start()

    def stop(self) -> None:
        """Stop the flusher and flush what is left."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join()
        self.flush()

    def _run(self, interval: float) -> None:
        while not self._stop.wait(interval):
            try:
                self.flush()
            except Exception as exc:  # a metrics failure must never take the worker down
                log.warning("metrics flush failed: %s", exc)

    def flush(self) -> None:
        """Write what changed since the last flush into the shared metric files."""
        with self._flush_lock:
            self._flush()

    def _flush(self) -> None:
        f = self.families
        for (handler, method, status), row in list(self.rows.items()):
            now = list(row)  # one copy: the loop thread may add to the row meanwhile
            before = self._flushed.get(("row", handler, method, status)) or [0.0] * _ROW
            if now == before:
                continue
            self._flushed[("row", handler, method, status)] = now
            d = [a - b for a, b in zip(now, before, strict=True)]
            if d[0]:
                f.requests.labels(str(status), method, handler).inc(d[0])
            # prometheus_client has no public "add n observations to a bucket":
            # its histogram child keeps one value per bucket and one for the sum.
            child = f.duration.labels(method, handler)
            for i in range(len(DURATION_BUCKETS) + 1):
                if d[1 + i]:
                    child._buckets[i].inc(d[1 + i])
            if d[_SECONDS]:
                child._sum.inc(d[_SECONDS])
            if d[_RECEIVED]:
                f.received.labels(handler).inc(d[_RECEIVED])
            if d[_SENT]:
                f.sent.labels(handler).inc(d[_SENT])
        for handler, n in dict(self.in_flight).items():
            if n or ("flight", handler) in self._flushed:
                self._flushed[("flight", handler)] = n
                f.in_flight.labels(handler).set(n)
        f.uploads.set(self.uploads)
        for name, n in _deltas(self._flushed, "count", dict(self.counts)):
            getattr(f, name).inc(n)
        # Storage calls, as bucket counts per (driver, action): one write per bucket.
        actions: dict[tuple[str, str], list[float]] = {}
        find = bisect.bisect_left
        with contextlib.suppress(IndexError):
            while True:
                driver, action, seconds = self.actions.popleft()
                counts = actions.get((driver, action))
                if counts is None:
                    counts = actions[(driver, action)] = [0.0] * (len(ACTION_BUCKETS) + 2)
                counts[find(ACTION_BUCKETS, seconds)] += 1
                counts[-1] += seconds
        for key, counts in actions.items():
            child = f.action.labels(*key)
            for i, count in enumerate(counts[:-1]):
                if count:
                    child._buckets[i].inc(count)
            child._sum.inc(counts[-1])
        for source in self._sources:
            for (layer, result), n in _deltas(self._flushed, "src", source()):
                f.layer_lookups.labels(layer, result).inc(n)
                if layer == "statcache":
                    continue
                if result == "error":
                    f.cache_errors.inc(n)
                else:
                    f.cache_requests.inc(n)
                    if result == "hit":
                        f.cache_hits.inc(n)


def _deltas(flushed: dict[Any, Any], prefix: str, now: dict[Any, int]) -> Iterator[tuple[Any, int]]:
    for key, n in now.items():
        before = flushed.get((prefix, key), 0)
        if n != before:
            flushed[(prefix, key)] = n
            yield key, n - before


# --- storage driver timing -----------------------------------------------------------------

_TIMED_ACTIONS: Final = (
    "get_content",
    "put_content",
    "reader",
    "writer",
    "stat",
    "list",
    "move",
    "delete",
    "url_for",
)


def time_driver(driver: Any, rec: Recorder, name: str) -> None:
    """Time ``driver``'s calls into ``registry_storage_action_seconds{driver=name}``.

    The bound methods are replaced on the instance, so its type stays what
    the fast paths test for (``type(driver) is FilesystemDriver``).
    """
    for action in _TIMED_ACTIONS:
        method = getattr(driver, action, None)
        if method is not None:
            setattr(driver, action, _timed(method, rec, name, action))


def _timed(method: Callable[..., Any], rec: Recorder, driver: str, action: str) -> Any:
    clock = time.perf_counter
    note = rec.actions.append

    def timed(*args: Any, **kwargs: Any) -> Any:
        start = clock()
        try:
            return method(*args, **kwargs)
        finally:
            note((driver, action, clock() - start))

    timed.__name__ = action
    timed.__doc__ = method.__doc__
    return timed


def cache_source(registry: Any, cache_kind: str) -> Callable[[], dict[tuple[str, str], int]]:
    """Sample the registry's cache layers: the stat cache and the descriptor cache."""

    def sample() -> dict[tuple[str, str], int]:
        out: dict[tuple[str, str], int] = {}
        stat_cache = registry.stat_cache
        if stat_cache is not None:
            s = stat_cache.stats()
            out[("statcache", "hit")] = int(s["hits"])
            out[("statcache", "miss")] = int(s["misses"])
        cm = getattr(registry, "cache_metrics", None)
        if cm is not None and registry.cache is not None:
            snap = cm.snapshot()
            out[(cache_kind, "hit")] = snap["hits"]
            out[(cache_kind, "miss")] = snap["misses"]
            out[(cache_kind, "error")] = snap["errors"]
        return out

    return sample
