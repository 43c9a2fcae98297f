"""Host hooks: the host's own authorization, and the registry's events.

A host that embeds the app (:func:`~ocistore.server.app.create_app`) passes

- ``authorize(scope, access) -> Decision``: called before every routed
  request with the ASGI scope and the :class:`Access` records the request
  needs (distribution's token-auth resource scopes); sync or async. It
  returns :meth:`Decision.allow`, :meth:`Decision.unauthorized` (401 with a
  ``WWW-Authenticate`` challenge) or :meth:`Decision.forbidden` (403).
  A hook that raises, returns anything else, or runs past its timeout
  refuses the request with 503 UNAVAILABLE: a broken hook never lets a
  request through.
- ``on_event(event)``: called with an :class:`Event` (distribution's
  notification record) after each push, pull, mount and delete; sync or
  async. It runs off the request path, fed by a bounded queue: a hook that
  raises is logged, one that blocks lets the queue fill, and events that do
  not fit are dropped (logged); the requests never wait for it.

Without hooks the app does none of this work.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import logging
import queue
import socket
import threading
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Final, Literal

from ocistore.server.ctxpool import ContextThreadPool
from ocistore.server.routes import Route

__all__ = [
    "Access",
    "Authorize",
    "Decision",
    "Event",
    "EventActor",
    "EventRequest",
    "EventSource",
    "EventTarget",
    "Hooks",
    "OnEvent",
    "access_for",
]

log = logging.getLogger("ocistore.server.hooks")


@dataclass(frozen=True, slots=True)
class Access:
    """One thing a request needs: ``action`` on resource ``type``:``name``.

    Distribution's token-auth scope, e.g. ``repository:library/alpine:pull``
    or ``registry:catalog:*``.
    """

    type: Literal["repository", "registry"]
    name: str
    action: Literal["pull", "push", "delete", "*"]

    def __str__(self) -> str:
        return f"{self.type}:{self.name}:{self.action}"


@dataclass(frozen=True, slots=True)
class Decision:
    """What ``authorize`` answers: allow, or refuse with 401 (and a challenge) or 403.

    Build one with :meth:`allow`, :meth:`unauthorized` or :meth:`forbidden`.
    ``actor`` (allowed requests) names who made the request in events.
    """

    allowed: bool
    status: int = 200
    challenge: str | None = None
    message: str | None = None
    actor: str | None = None

    @classmethod
    def allow(cls, actor: str | None = None) -> Decision:
        return cls(True, actor=actor)

    @classmethod
    def unauthorized(cls, challenge: str, message: str | None = None) -> Decision:
        """401 UNAUTHORIZED with ``WWW-Authenticate: <challenge>`` (no or bad credentials).

        ``challenge`` is e.g. ``Basic realm="my registry"`` or a Bearer
        challenge naming the host's token service; clients need it to retry.
        """
        if not isinstance(challenge, str) or not challenge.strip():
            raise ValueError(f"a 401 needs a WWW-Authenticate challenge, got {challenge!r}")
        return cls(False, 401, challenge=challenge, message=message)

    @classmethod
    def forbidden(cls, message: str | None = None) -> Decision:
        """403 DENIED: the credentials are good but do not grant the access."""
        return cls(False, 403, message=message)


Authorize = Callable[[dict[str, Any], Sequence[Access]], "Decision | Awaitable[Decision]"]
OnEvent = Callable[["Event"], "Awaitable[None] | None"]


def access_for(route: Route, method: str, query: Callable[[str], str | None]) -> list[Access]:
    """The access a request needs, as distribution asks its token service for it.

    The base route (``/v2/``) needs none: ``authorize`` still sees it, with no
    access, and answers whether the client is authenticated at all. Reads
    (GET/HEAD) need pull, writes (POST/PUT/PATCH) pull and push, DELETE
    delete; the catalog needs ``registry:catalog:*``; a cross-repository
    mount also needs pull on the source repository.
    """
    out = list(_access(route.kind, route.name, method))
    if route.kind == "upload_start" and method == "POST":
        source = query("from")
        if source and query("mount"):
            out.append(Access("repository", source, "pull"))
    return out


@functools.lru_cache(maxsize=4096)
def _access(kind: str, name: str, method: str) -> tuple[Access, ...]:
    """:func:`access_for` without the mount's source (cached: clients repeat their requests)."""
    if kind == "base":
        return ()
    if kind == "catalog":
        return (Access("registry", "catalog", "*"),)
    if method in ("GET", "HEAD"):
        return (Access("repository", name, "pull"),)
    if method == "DELETE":
        return (Access("repository", name, "delete"),)
    return (Access("repository", name, "pull"), Access("repository", name, "push"))


# --- events -------------------------------------------------------------------------


@dataclass(slots=True)
class EventTarget:
    """What the event is about: a manifest or blob in a repository."""

    mediaType: str  # distribution's JSON names
    digest: str
    size: int
    repository: str
    url: str
    tag: str = ""
    fromRepository: str = ""
    references: list[dict[str, Any]] = field(default_factory=list)
    """A manifest's descriptors (``notifications.events.includereferences``), as distribution."""


@dataclass(slots=True)
class EventRequest:
    id: str
    addr: str
    host: str
    method: str
    useragent: str


@dataclass(slots=True)
class EventActor:
    name: str = ""


@dataclass(slots=True)
class EventSource:
    addr: str
    instanceID: str


@dataclass(slots=True)
class Event:
    """One registry event, shaped like distribution's notification ``Event``.

    ``action`` is ``push``, ``pull``, ``mount`` or ``delete``. :meth:`to_json`
    gives the record distribution sends in a webhook envelope's ``events``.
    """

    id: str
    timestamp: datetime
    action: Literal["push", "pull", "mount", "delete"]
    target: EventTarget
    request: EventRequest
    actor: EventActor
    source: EventSource

    def to_json(self) -> dict[str, Any]:
        """distribution's JSON: empty fields left out as its ``omitempty`` does (``url`` stays)."""
        out = asdict(self)
        out["timestamp"] = self.timestamp.isoformat().replace("+00:00", "Z")
        target = out["target"]
        target["length"] = target["size"]
        for key in ("mediaType", "digest", "size", "length", "tag", "fromRepository", "references"):
            if not target[key]:
                del target[key]
        if not out["actor"]["name"]:
            del out["actor"]["name"]
        return out


# --- the hooks, as the app runs them --------------------------------------------------------


@dataclass(slots=True)
class _Done:
    """A finished request, as recorded on the request path (the event is built later)."""

    when: datetime
    scope: dict[str, Any]
    route: Route
    status: int
    headers: list[tuple[str, str]]
    raw_headers: list[tuple[bytes, bytes]]
    actor: str | None
    untagged: tuple[str, ...] = ()  # the tags a manifest delete removed (one event each)


class Hooks:
    """``authorize`` and ``on_event`` as the app calls them (see the module docstring).

    ``timeout`` bounds each ``authorize`` call (seconds) and each async
    ``on_event`` call; ``queue_size`` bounds the events waiting for ``on_event``.
    Sync ``authorize`` hooks run in a thread pool of their own (``threads``),
    so a slow account lookup neither blocks the event loop nor takes the
    storage threads.
    """

    def __init__(
        self,
        authorize: Authorize | None = None,
        on_event: OnEvent | None = None,
        *,
        timeout: float = 10.0,
        queue_size: int = 1024,
        threads: int = 8,
        resolve_size: Callable[[str, str], int] | None = None,
    ) -> None:
        for label, hook in (("authorize", authorize), ("on_event", on_event)):
            if hook is not None and not callable(hook):
                raise TypeError(f"{label}={hook!r} is not callable")
        if not (isinstance(timeout, int | float) and not isinstance(timeout, bool)) or timeout <= 0:
            raise ValueError(f"hook timeout {timeout!r}: expected a positive number of seconds")
        if not isinstance(queue_size, int) or isinstance(queue_size, bool) or queue_size < 1:
            raise ValueError(f"event queue_size {queue_size!r}: expected a positive integer")
        self.authorize = authorize
        self.on_event = on_event
        self.timeout = float(timeout)
        self.queue_size = queue_size
        self.resolve_size = resolve_size
        self.resolve_references: Callable[[str, str], list[dict[str, Any]]] | None = None
        """``(name, digest)``: a manifest's references for its push and pull events (None: left out)."""
        self._auth_async = _is_async(authorize)
        self._auth_pool = (
            ContextThreadPool(threads, thread_name_prefix="ocistore-authorize")
            if authorize is not None and not self._auth_async
            else None
        )
        self._events_async = _is_async(on_event)
        self._queue: queue.Queue[_Done | None] | asyncio.Queue[_Done] | None = None
        self._worker: threading.Thread | asyncio.Task[None] | None = None
        self._lock = threading.Lock()
        self._dropped = 0
        self.instance_id = str(uuid.uuid4())
        self.hostname = socket.gethostname()

    # --- authorize ---------------------------------------------------------------------

    async def check(self, scope: dict[str, Any], access: list[Access]) -> Decision:
        """The hook's decision; a 503 decision when it raised, timed out or answered nonsense."""
        hook = self.authorize
        assert hook is not None
        try:
            async with asyncio.timeout(self.timeout):  # no Task per call, unlike wait_for
                if self._auth_async:
                    result = await _awaited(hook(scope, access))
                else:
                    loop = asyncio.get_running_loop()
                    result = await loop.run_in_executor(self._auth_pool, hook, scope, access)
                    if inspect.isawaitable(result):  # e.g. a partial of a coroutine function
                        result = await result
        except TimeoutError:
            log.error("authorize hook timed out after %gs: request refused", self.timeout)
            return _UNAVAILABLE
        except Exception as exc:
            log.error("authorize hook raised: request refused: %r", exc, exc_info=exc)
            return _UNAVAILABLE
        if not isinstance(result, Decision):
            log.error(
                "authorize hook returned %r, not a Decision: request refused", type(result).__name__
            )
            return _UNAVAILABLE
        return result

    # --- events --------------------------------------------------------------------------

    def record(
        self,
        scope: dict[str, Any],
        route: Route,
        status: int,
        headers: list[tuple[str, str]],
        raw_headers: list[tuple[bytes, bytes]] | None,
        actor: str | None,
        untagged: tuple[str, ...] = (),
    ) -> None:
        """Queue a finished request for ``on_event`` if it made an event; never waits."""
        if status >= 300 or (route.kind == "upload_start" and status != 201):
            return  # failed, redirected, or an upload session opened (no blob yet)
        if _action(route.kind, scope["method"], scope) is None:
            return
        done = _Done(
            datetime.now(UTC), scope, route, status, headers, raw_headers or [], actor, untagged
        )
        q = self._queue or self._start()
        try:
            q.put_nowait(done)
        except (queue.Full, asyncio.QueueFull):
            self._dropped += 1
            log.warning(
                "on_event hook is behind (%d events queued): event dropped (%d so far)",
                self.queue_size,
                self._dropped,
            )

    def _start(self) -> queue.Queue[_Done | None] | asyncio.Queue[_Done]:
        with self._lock:
            if self._queue is not None:
                return self._queue
            q: queue.Queue[_Done | None] | asyncio.Queue[_Done]
            if self._events_async:
                aq: asyncio.Queue[_Done] = asyncio.Queue(self.queue_size)
                self._worker = asyncio.get_running_loop().create_task(self._run_async(aq))
                q = aq
            else:
                tq: queue.Queue[_Done | None] = queue.Queue(self.queue_size)
                self._worker = threading.Thread(
                    target=self._run_thread, args=(tq,), name="ocistore-events", daemon=True
                )
                self._worker.start()
                q = tq
            self._queue = q
            return q

    def _run_thread(self, q: queue.Queue[_Done | None]) -> None:
        hook = self.on_event
        assert hook is not None
        while True:
            done = q.get()
            if done is None:
                return  # close(): everything queued before it was handed over
            try:
                for event in self.events(done):
                    hook(event)
            except Exception as exc:
                log.error("on_event hook raised, event skipped: %r", exc, exc_info=exc)

    async def _run_async(self, q: asyncio.Queue[_Done]) -> None:
        hook = self.on_event
        assert hook is not None
        while True:
            done = await q.get()
            try:
                for event in self.events(done):
                    await asyncio.wait_for(_awaited(hook(event)), self.timeout)
            except TimeoutError:
                log.error("on_event hook timed out after %gs, event skipped", self.timeout)
            except Exception as exc:
                log.error("on_event hook raised, event skipped: %r", exc, exc_info=exc)

    async def close(self) -> None:
        """Stop the event worker and the authorize pool.

        A thread worker first hands ``on_event`` what is queued (for at most
        ``timeout`` seconds), so a clean shutdown loses no event.
        """
        worker, self._worker = self._worker, None
        if isinstance(worker, threading.Thread) and isinstance(self._queue, queue.Queue):
            q, thread = self._queue, worker

            def drain() -> None:
                with contextlib.suppress(queue.Full):
                    q.put(None, timeout=self.timeout)
                    thread.join(self.timeout)

            await asyncio.get_running_loop().run_in_executor(None, drain)
        elif isinstance(worker, asyncio.Task):
            worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await worker
        if self._auth_pool is not None:
            self._auth_pool.shutdown(wait=False)

    def events(self, done: _Done) -> list[Event]:
        """The events of a finished request, as distribution sends them.

        A manifest deleted by digest is one event for the manifest, then one
        per tag it removed (target: the repository and the tag only).
        """
        event = self.event(done)
        if event is None:
            return []
        out = [event]
        for tag in done.untagged:
            out.append(
                replace(
                    event,
                    id=str(uuid.uuid4()),
                    target=EventTarget("", "", 0, event.target.repository, "", tag=tag),
                )
            )
        return out

    def event(self, done: _Done) -> Event | None:
        """The :class:`Event` of a finished request (None when it makes none)."""
        scope, route = done.scope, done.route
        method = scope["method"]
        action = _action(route.kind, method, scope)
        if action is None:
            return None
        headers = {k.lower(): v for k, v in done.headers}
        headers.update((k.decode("latin-1"), v.decode("latin-1")) for k, v in done.raw_headers)
        req_headers = {
            k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", ())
        }
        digest = headers.get("docker-content-digest", "")
        media_type = headers.get("content-type", "")
        size = -1
        tag = ""
        if route.kind == "manifest":
            if ":" not in route.reference:
                tag = route.reference
            if method == "PUT":
                media_type = req_headers.get("content-type", "").split(";")[0].strip()
                size = _int(req_headers.get("content-length"))
            elif method == "DELETE":
                digest = route.reference if ":" in route.reference else ""
                media_type = ""
            else:
                size = _int(headers.get("content-length"))
            kind = "manifests"
        else:
            kind = "blobs"
            if route.kind == "blob":
                digest = digest or route.digest
                if method == "GET":
                    media_type = "application/octet-stream"
                    size = _full_size(headers)
            elif not media_type:
                media_type = "application/octet-stream"
        if size < 0 and digest and self.resolve_size is not None and action != "delete":
            try:
                size = self.resolve_size(route.name, digest)
            except Exception:
                size = -1
        references: list[dict[str, Any]] = []
        if route.kind == "manifest" and action != "delete" and digest and self.resolve_references:
            try:
                references = self.resolve_references(route.name, digest)
            except Exception as exc:  # deleted meanwhile, say: the event goes without them
                log.info("event for %s@%s: references not found: %s", route.name, digest, exc)
        host = req_headers.get("x-forwarded-host") or req_headers.get("host") or ""
        scheme = req_headers.get("x-forwarded-proto") or scope.get("scheme", "http")
        root = scope.get("root_path", "")
        ref = digest or tag
        url = (
            f"{scheme}://{host}{root}/v2/{route.name}/{kind}/{ref}"
            if host and action != "delete"
            else ""
        )
        client = scope.get("client")
        server = scope.get("server")
        return Event(
            id=str(uuid.uuid4()),
            timestamp=done.when,
            action=action,
            target=EventTarget(
                mediaType=media_type,
                digest=digest,
                size=max(size, 0),
                repository=route.name,
                url=url,
                tag=tag,
                fromRepository=(_query(scope, "from") or "") if action == "mount" else "",
                references=references,
            ),
            request=EventRequest(
                id=req_headers.get("x-request-id") or str(uuid.uuid4()),
                addr=f"{client[0]}:{client[1]}" if client else "",
                host=host,
                method=method,
                useragent=req_headers.get("user-agent", ""),
            ),
            actor=EventActor(done.actor or ""),
            source=EventSource(
                addr=f"{self.hostname}:{server[1]}" if server else self.hostname,
                instanceID=self.instance_id,
            ),
        )


_UNAVAILABLE: Final = Decision(False, 503, message="authorization is unavailable")

Action = Literal["push", "pull", "mount", "delete"]


def _action(kind: str, method: str, scope: dict[str, Any]) -> Action | None:
    if kind == "manifest" or kind == "blob":
        if method == "GET" or method == "HEAD":  # distribution counts a HEAD as a pull too
            return "pull"
        if method == "DELETE":
            return "delete"
        if method == "PUT":
            return "push"
        return None
    if kind == "upload" and method == "PUT":
        return "push"
    if kind == "upload_start" and method == "POST":
        if _query(scope, "mount") and _query(scope, "from"):
            return "mount"
        return "push"
    return None


def reference_json(desc: Any) -> dict[str, Any]:
    """A manifest's reference as distribution 2.8's ``Descriptor`` JSON (empty fields left out).

    Its ``Descriptor`` has no ``artifactType``, and the ``platform`` of an
    index's entry is not kept in the references, so neither is sent.
    """
    out: dict[str, Any] = {}
    if desc.media_type:
        out["mediaType"] = desc.media_type
    if desc.size > 0:
        out["size"] = desc.size
    out["digest"] = str(desc.digest)
    if desc.urls:
        out["urls"] = list(desc.urls)
    if desc.annotations:
        out["annotations"] = dict(desc.annotations)
    return out


def _query(scope: dict[str, Any], name: str) -> str | None:
    from urllib.parse import parse_qs

    raw: bytes = scope.get("query_string", b"")
    values = parse_qs(raw.decode("latin-1")).get(name)
    return values[0] if values else None


def _int(raw: str | None) -> int:
    try:
        return int(raw) if raw is not None else -1
    except ValueError:
        return -1


def _full_size(headers: dict[str, str]) -> int:
    """The blob's size from a 200's Content-Length or a 206's Content-Range."""
    rng = headers.get("content-range")
    if rng and "/" in rng:
        return _int(rng.rsplit("/", 1)[1])
    return _int(headers.get("content-length"))


def _is_async(fn: object) -> bool:
    if fn is None:
        return False
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
        getattr(fn, "__call__", None)  # noqa: B004
    )


async def _awaited(value: Any) -> Any:
    if inspect.isawaitable(value):
        return await value
    return value
