"""Webhook notifications: distribution's ``notifications.endpoints``, delivered at least once.

Each event (:class:`~ocistore.server.hooks.Event`, built off the request path
by :class:`~ocistore.server.hooks.Hooks`) is appended to one on-disk queue per
endpoint (SQLite, under ``ocistore.notificationsdir``), so events survive a
restart. One sender per endpoint and host delivers them in order, one event
per envelope as distribution does, and deletes each only after the endpoint
answered 2xx or 3xx: a crash between the answer and the delete sends that
event again (at least once; receivers deduplicate by ``id``). Failed attempts
are retried at once until ``threshold`` failures in a row, then every
``backoff`` (distribution's retrying sink). The senders of all worker
processes on a host agree through an ``flock``: one delivers, the others
only append. A queue holds at most ``maxevents``; a full one drops its
oldest events, counted (``ocistore_notifications_events``) and logged,
never the request's time or memory.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import re
import sqlite3
import threading
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from ocistore import metrics
from ocistore.server.hooks import Event

__all__ = [
    "ENVELOPE_MEDIA_TYPE",
    "DiskQueue",
    "Endpoint",
    "NotificationsError",
    "Notifier",
    "include_references",
    "parse_endpoints",
]

log = logging.getLogger("ocistore.server.notifications")

ENVELOPE_MEDIA_TYPE: Final = "application/vnd.docker.distribution.events.v1+json"
DEFAULT_MAX_EVENTS: Final = 100_000
_ACTIONS: Final = frozenset({"push", "pull", "mount", "delete"})
_POLL: Final = 0.25  # how often an idle sender looks for events other processes queued


class NotificationsError(ValueError):
    """A ``notifications`` setting that cannot be used: ``key`` names it."""

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"{key}: {reason}")
        self.key = key
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One ``notifications.endpoints`` entry, with distribution's defaults."""

    name: str
    url: str
    headers: Mapping[str, Sequence[str]] = field(default_factory=dict)
    timeout: float = 1.0
    threshold: int = 10
    backoff: float = 1.0
    ignored_media_types: frozenset[str] = frozenset()
    ignored_actions: frozenset[str] = frozenset()
    disabled: bool = False

    def wants(self, event: Event) -> bool:
        """False for an event this endpoint ignores (by target media type or by action)."""
        return (
            event.target.mediaType not in self.ignored_media_types
            and event.action not in self.ignored_actions
        )


def parse_endpoints(section: object, key: str = "notifications") -> list[Endpoint]:
    """The endpoints of a parsed ``notifications`` section (disabled ones left out).

    Raises :class:`NotificationsError` naming the key and the reason for any
    value distribution would refuse.
    """
    from ocistore.server.config import ConfigError, parse_duration

    if not isinstance(section, Mapping):
        raise NotificationsError(key, f"expected a mapping, got {section!r}")
    raw = section.get("endpoints") or []
    if not isinstance(raw, list):
        raise NotificationsError(f"{key}.endpoints", f"expected a list, got {raw!r}")
    out: list[Endpoint] = []
    names: set[str] = set()
    for i, entry in enumerate(raw):
        k = f"{key}.endpoints[{i}]"
        if not isinstance(entry, Mapping):
            raise NotificationsError(k, f"expected a mapping, got {entry!r}")
        name, url = entry.get("name"), entry.get("url")
        if not isinstance(name, str) or not name:
            raise NotificationsError(f"{k}.name", f"expected a non-empty string, got {name!r}")
        if name in names:
            raise NotificationsError(f"{k}.name", f"{name!r} names two endpoints")
        names.add(name)
        if not isinstance(url, str) or not re.match(r"https?://[^/\s]+", url):
            raise NotificationsError(f"{k}.url", f"expected an http(s) URL, got {url!r}")
        try:
            timeout = parse_duration(entry["timeout"], f"{k}.timeout") if "timeout" in entry else 0
            backoff = parse_duration(entry["backoff"], f"{k}.backoff") if "backoff" in entry else 0
        except ConfigError as exc:
            raise NotificationsError(exc.key, exc.reason) from None
        threshold = entry.get("threshold", 0)
        if not isinstance(threshold, int) or isinstance(threshold, bool) or threshold < 0:
            raise NotificationsError(f"{k}.threshold", f"expected a count, got {threshold!r}")
        disabled = entry.get("disabled", False)
        if not isinstance(disabled, bool):
            raise NotificationsError(f"{k}.disabled", f"expected true or false, got {disabled!r}")
        ignore = entry.get("ignore") or {}
        if not isinstance(ignore, Mapping):
            raise NotificationsError(f"{k}.ignore", f"expected a mapping, got {ignore!r}")
        media = _strings(entry.get("ignoredmediatypes"), f"{k}.ignoredmediatypes")
        media += _strings(ignore.get("mediatypes"), f"{k}.ignore.mediatypes")
        actions = _strings(ignore.get("actions"), f"{k}.ignore.actions")
        if bad := [a for a in actions if a not in _ACTIONS]:
            raise NotificationsError(
                f"{k}.ignore.actions", f"{bad[0]!r} is not one of {sorted(_ACTIONS)}"
            )
        if disabled:
            continue
        out.append(
            Endpoint(
                name=name,
                url=url,
                headers=_headers(entry.get("headers"), f"{k}.headers"),
                timeout=timeout or 1.0,  # distribution: zero means its default
                threshold=threshold or 10,
                backoff=backoff or 1.0,
                ignored_media_types=frozenset(media),
                ignored_actions=frozenset(actions),
            )
        )
    return out


def include_references(section: object, key: str = "notifications") -> bool:
    """``notifications.events.includereferences`` (distribution's default: false)."""
    if not isinstance(section, Mapping):
        return False
    events = section.get("events")
    if events is None:
        return False
    if not isinstance(events, Mapping):
        raise NotificationsError(f"{key}.events", f"expected a mapping, got {events!r}")
    value = events.get("includereferences", False)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise NotificationsError(
            f"{key}.events.includereferences", f"expected true or false, got {value!r}"
        )
    return value


def _strings(value: object, key: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise NotificationsError(key, f"expected a list of strings, got {value!r}")
    return list(value)


def _headers(value: object, key: str) -> dict[str, list[str]]:
    """distribution's ``headers``: a name to a list of values (a single string is accepted)."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise NotificationsError(key, f"expected a mapping, got {value!r}")
    out: dict[str, list[str]] = {}
    for name, values in value.items():
        if isinstance(values, str):
            values = [values]
        if not isinstance(name, str) or not re.fullmatch(r"[!#-'*+.0-9A-Z^-z|~-]+", name):
            raise NotificationsError(key, f"{name!r} is not a header name")
        if not isinstance(values, list) or not all(
            isinstance(v, str) and "\r" not in v and "\n" not in v for v in values
        ):
            raise NotificationsError(f"{key}.{name}", f"expected header values, got {values!r}")
        out[name] = list(values)
    return out


class DiskQueue:
    """A bounded FIFO of envelopes in one SQLite file, shared by the processes of a host."""

    def __init__(self, path: str, max_events: int = DEFAULT_MAX_EVENTS) -> None:
        if max_events < 1:
            raise ValueError(f"max_events {max_events!r}: expected a positive count")
        self.path = path
        self.max_events = max_events
        self.dropped = 0
        self._local = threading.local()
        with self._db() as db:
            db.execute(
                "CREATE TABLE IF NOT EXISTS events"
                " (seq INTEGER PRIMARY KEY AUTOINCREMENT, body BLOB NOT NULL)"
            )

    def _db(self) -> sqlite3.Connection:
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            self._local.db = db
        return db

    def put(self, body: bytes) -> int:
        """Append one envelope; returns how many of the oldest were dropped to make room."""
        db = self._db()
        with _transaction(db):
            seq = db.execute("INSERT INTO events (body) VALUES (?)", (body,)).lastrowid
            assert seq is not None
            dropped = db.execute(
                "DELETE FROM events WHERE seq <= ?", (seq - self.max_events,)
            ).rowcount
        self.dropped += dropped
        return dropped

    def peek(self) -> tuple[int, bytes] | None:
        """The oldest envelope and its sequence number, or None when the queue is empty."""
        row = self._db().execute("SELECT seq, body FROM events ORDER BY seq LIMIT 1").fetchone()
        return (row[0], bytes(row[1])) if row else None

    def remove(self, seq: int) -> None:
        self._db().execute("DELETE FROM events WHERE seq = ?", (seq,))

    def __len__(self) -> int:
        return int(self._db().execute("SELECT COUNT(*) FROM events").fetchone()[0])

    def close(self) -> None:
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None


@contextlib.contextmanager
def _transaction(db: sqlite3.Connection) -> Any:
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def _file_stem(name: str) -> str:
    """A file name for an endpoint: readable, and distinct for distinct names."""
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", name)[:40]
    return f"{safe}-{hashlib.sha256(name.encode()).hexdigest()[:12]}"


class _Sender:
    """Delivers one endpoint's queue while this process holds the endpoint's flock."""

    def __init__(self, endpoint: Endpoint, queue: DiskQueue, lock_path: str) -> None:
        self.endpoint = endpoint
        self.queue = queue
        self.lock_path = lock_path
        self.wake = threading.Event()
        self.stop = threading.Event()
        self.delivered = 0
        self.failures = 0
        self._thread = threading.Thread(
            target=self._run, name=f"ocistore-notify-{endpoint.name}", daemon=True
        )
        self._thread.start()

    def _run(self) -> None:
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            while not self.stop.is_set():
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    self.stop.wait(_POLL)  # another process on this host delivers
                    continue
                try:
                    self._deliver_while_running()
                finally:
                    fcntl.flock(fd, fcntl.LOCK_UN)
        except Exception as exc:  # never let the sender die silently
            log.error("notifications to %s stopped: %r", self.endpoint.name, exc, exc_info=exc)
        finally:
            os.close(fd)
            self.queue.close()

    def _deliver_while_running(self) -> None:
        ep = self.endpoint
        recent = 0  # failures in a row (distribution's breaker)
        while not self.stop.is_set():
            item = self.queue.peek()
            if item is None:
                self.wake.wait(_POLL)
                self.wake.clear()
                continue
            seq, body = item
            if recent >= ep.threshold:
                log.warning("notifications to %s: %d failures, backing off", ep.name, recent)
                if self.stop.wait(ep.backoff):
                    return
            error = self._post(body)
            if error is None:
                metrics.record_notification(ep.name, "delivered")
                self.queue.remove(seq)
                self.delivered += 1
                recent = 0
            else:
                metrics.record_notification(ep.name, "failed")
                recent += 1
                self.failures += 1
                log.error("notifications to %s failed, will retry: %s", ep.name, error)

    def _post(self, body: bytes) -> str | None:
        """None when the endpoint took the envelope (2xx/3xx), else why not."""
        ep = self.endpoint
        req = urllib.request.Request(ep.url, data=body, method="POST")
        for name, values in ep.headers.items():
            for value in values:
                req.add_header(name, value)
        req.add_header("Content-Type", ENVELOPE_MEDIA_TYPE)
        try:
            with _OPENER.open(req, timeout=ep.timeout) as resp:
                resp.read()
                status: int = resp.status
        except urllib.error.HTTPError as exc:
            status = exc.code
            exc.close()
        except (OSError, ValueError) as exc:
            return f"{type(exc).__name__}: {exc}"
        return None if 200 <= status < 400 else f"HTTP {status}"

    def close(self, timeout: float) -> None:
        self.stop.set()
        self.wake.set()
        self._thread.join(timeout)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A 3xx is an answer (distribution counts it a success), not a place to go."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_OPENER: Final = urllib.request.build_opener(_NoRedirect())


class Notifier:
    """The ``on_event`` hook that queues each event for every endpoint that wants it."""

    def __init__(
        self,
        endpoints: Sequence[Endpoint],
        queue_dir: str,
        *,
        max_events: int = DEFAULT_MAX_EVENTS,
        include_references: bool = False,
    ) -> None:
        os.makedirs(queue_dir, exist_ok=True)
        self.endpoints = list(endpoints)
        self.include_references = include_references
        """``notifications.events.includereferences``: manifest events list the manifest's descriptors."""
        self.queues = {
            ep.name: DiskQueue(os.path.join(queue_dir, _file_stem(ep.name) + ".db"), max_events)
            for ep in self.endpoints
        }
        self._senders = {
            ep.name: _Sender(
                ep,
                self.queues[ep.name],
                os.path.join(queue_dir, _file_stem(ep.name) + ".lock"),
            )
            for ep in self.endpoints
        }

    def __call__(self, event: Event) -> None:
        body: bytes | None = None
        for ep in self.endpoints:
            if not ep.wants(event):
                continue
            if body is None:
                body = json.dumps({"events": [event.to_json()]}, separators=(",", ":")).encode()
            queue = self.queues[ep.name]
            metrics.record_notification(ep.name, "queued")
            if dropped := queue.put(body):
                metrics.record_notification(ep.name, "dropped", dropped)
                log.warning(
                    "notifications to %s: queue full (%d events), dropped the %d oldest (%d so far)",
                    ep.name,
                    queue.max_events,
                    dropped,
                    queue.dropped,
                )
            self._senders[ep.name].wake.set()

    def close(self, timeout: float = 5.0) -> None:
        """Stop the senders (what is still queued stays on disk for the next start)."""
        for sender in self._senders.values():
            sender.close(timeout)
