"""The ASGI application: routing, dispatch, error responses and the purge task.

:class:`RegistryApp` is a plain ASGI callable over a
:class:`~ocistore.storage.registry.Registry`, so tests drive it in-process
and any ASGI server can run it. :func:`create_app` is the public factory
(a config, a config file or keyword options); :func:`build_app` is what
``ocistore serve`` calls with a :class:`~ocistore.server.config.ServerConfig`.
The app never needs a server extension: it uses ``zerocopysend`` only when
the server offers it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import fields
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

from ocistore import metrics
from ocistore.cache.redis import RedisOptions
from ocistore.driver.base import StorageDriver
from ocistore.metrics import HANDLER_NAMES, UPLOAD_ROUTES
from ocistore.proxy.config import ProxyConfig
from ocistore.server import blobs, front, listing, manifests, referrers, uploads
from ocistore.server.auth import AccessController, build_access_controller
from ocistore.server.config import (
    ConfigError,
    GcSchedule,
    ServerConfig,
    UploadPurging,
    apply_overrides,
    load_config,
)
from ocistore.server.context import Ctx, RepositoryCache, Services
from ocistore.server.ctxpool import ContextThreadPool
from ocistore.server.errors import ApiError, api_errors, error_body
from ocistore.server.health import HealthGate
from ocistore.server.hooks import (
    Access,
    Authorize,
    Decision,
    Event,
    Hooks,
    OnEvent,
    _awaited,
    access_for,
    reference_json,
)
from ocistore.server.http import ClientGone, Receive, Request, Response, Scope, Send, send_response
from ocistore.server.locks import UploadLocks
from ocistore.server.logs import REQUEST_ID, access_line, request_id_from
from ocistore.server.maintenance import PurgeSchedule
from ocistore.server.notifications import Notifier, include_references, parse_endpoints
from ocistore.server.routes import Route, match
from ocistore.server.sendbound import bounded_send
from ocistore.storage.registry import Registry
from ocistore.storage.taglocks import FileTagLocks, TagLocks

if TYPE_CHECKING:
    from ocistore.proxy.service import Proxy

__all__ = ["API_VERSION", "APP_OPTIONS", "RegistryApp", "build_app", "build_registry", "create_app"]

log = logging.getLogger("ocistore.server")
access_log = logging.getLogger("ocistore.access")

API_VERSION: Final = ("Docker-Distribution-API-Version", "registry/2.0")
CHUNK_MIN_LENGTH: Final = 1 << 20
_ZEROCOPY: Final = "http.response.zerocopysend"
_WRITES: Final = frozenset({"POST", "PATCH", "PUT"})

APP_OPTIONS: Final = (
    "root",
    "secret",
    "delete_enabled",
    "cache",
    "cache_dir",
    "relative_urls",
    "idle_timeout",
    "max_blob_size",
    "access_log",
    "upload_purging",
    "redis",
    "s3",
    "redirect_disable",
    "redirect_expiry",
    "upload_locks",
    "upload_lock_ttl",
    "notifications",
    "notifications_dir",
    "notifications_max_events",
    "proxy",
    "readonly",
    "auth",
    "gc",
)
"""The :class:`~ocistore.server.config.ServerConfig` fields :func:`create_app` takes as options.

The others (``addr``, ``workers``, ``stack``, the ``log_*`` fields, the debug
server and health checks, ``tls``, ``limits``) belong to the server that runs the app.
"""

Handler = Callable[[Ctx], Awaitable[Response]]


async def _base(ctx: Ctx) -> Response:
    return Response(200, [("Content-Type", "application/json")], body=b"{}")


_HANDLERS: Final[dict[str, dict[str, Handler]]] = {
    "base": {"GET": _base, "HEAD": _base},
    "catalog": {"GET": listing.get_catalog},
    "tags": {"GET": listing.get_tags},
    "manifest": {
        "GET": manifests.get_manifest,
        "HEAD": manifests.get_manifest,
        "PUT": manifests.put_manifest,
        "DELETE": manifests.delete_manifest,
    },
    "upload_start": {"POST": uploads.start_upload},
    "upload": {
        "GET": uploads.upload_status,
        "HEAD": uploads.upload_status,
        "PATCH": uploads.patch_upload,
        "PUT": uploads.finish_upload,
        "DELETE": uploads.cancel_upload,
    },
    "blob": {"GET": blobs.get_blob, "HEAD": blobs.get_blob, "DELETE": blobs.delete_blob},
    "referrers": {"GET": referrers.get_referrers},
}

_READ_METHODS: Final = frozenset({"GET", "HEAD"})


def _read_only(
    handlers: Mapping[str, Mapping[str, Handler]],
) -> dict[str, dict[str, Handler]]:
    """The routes in read-only mode: distribution registers no write handler then (405)."""
    return {
        kind: {m: h for m, h in methods.items() if m in _READ_METHODS}
        for kind, methods in handlers.items()
    }


class RegistryApp:
    """An OCI Distribution Spec v1.1 registry as an ASGI application."""

    def __init__(
        self,
        registry: Registry,
        *,
        secret: str,
        lock_dir: str,
        locks: UploadLocks | None = None,
        idle_timeout: float = 60.0,
        max_blob_size: int = 0,
        relative_urls: bool = False,
        access_log: bool = False,
        upload_purging: UploadPurging | None = None,
        gc_schedule: GcSchedule | None = None,
        threads: int = 16,
        hooks: Hooks | None = None,
        recorder: metrics.Recorder | None = None,
        health: HealthGate | None = None,
        proxy: ProxyConfig | None = None,
        auth: AccessController | None = None,
        readonly: bool = False,
    ) -> None:
        if not secret:
            raise ValueError("a secret is needed to sign upload state tokens")
        self.executor = ContextThreadPool(max_workers=threads, thread_name_prefix="ocistore-io")
        self.services = Services(
            registry=registry,
            executor=self.executor,
            secret=secret,
            locks=locks if locks is not None else UploadLocks(lock_dir),
            idle_timeout=idle_timeout,
            max_blob_size=max_blob_size,
            relative_urls=relative_urls,
            chunk_min_length=CHUNK_MIN_LENGTH,
            repositories=RepositoryCache(registry),
            events=hooks is not None and hooks.on_event is not None,
        )
        self.access_log = access_log
        self.hooks = hooks if hooks is not None and (hooks.authorize or hooks.on_event) else None
        if self.hooks is not None and self.hooks.on_event is not None:
            self.hooks.resolve_size = self._blob_size
        self.upload_purging = upload_purging
        self.notifier: Notifier | None = None  # set by build_app; closed with the app
        self._purge_task: asyncio.Task[None] | None = None
        self.recorder = recorder
        """Batched metrics of this process (:mod:`ocistore.metrics`); None: off."""
        self.health = health
        """The server's health verdict; while failing every request answers 503."""
        # Proxy mode (ocistore.proxy): read routes backed by upstreams, write routes 405.
        self.proxy: Proxy | None = None
        writable: Mapping[str, Mapping[str, Handler]] = _HANDLERS
        if proxy is not None:
            from ocistore.proxy.service import Proxy

            self.proxy = Proxy(proxy, registry, lock_dir, self.executor)
            writable = self.proxy.handlers(_HANDLERS)
        self._expiry_task: asyncio.Task[None] | None = None
        self.auth = auth
        self._guarded = self.hooks is not None or auth is not None
        self._writable = writable
        self._read_only = _read_only(writable)
        self.handlers = writable
        """The route table in use: ``_HANDLERS`` (or the proxy's), or its read-only part."""
        self.readonly = readonly
        self.gc_schedule = gc_schedule
        self._gc_task: asyncio.Task[None] | None = None
        self.send_timeout: float | None = None
        """Seconds each send of a response may wait for the client (None: the server's business).

        Set under granian, which has no send timeout of its own (:mod:`ocistore.server.sendbound`).
        """

    @property
    def readonly(self) -> bool:
        """Read-only mode (``storage.maintenance.readonly``): writes answer 405 UNSUPPORTED.

        Settable while serving (``ocistore serve`` does on SIGHUP); a request
        already past routing finishes as it began.
        """
        return self.handlers is self._read_only

    @readonly.setter
    def readonly(self, value: bool) -> None:
        self.handlers = self._read_only if value else self._writable

    def set_auth(self, auth: AccessController | None) -> None:
        """Replace the access controller (None: no authentication) while serving."""
        self.auth = auth
        self._guarded = self.hooks is not None or auth is not None

    # --- ASGI ----------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self.handle(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        rec = self.recorder
        start = time.monotonic() if self.access_log or rec is not None else 0.0
        req = Request(scope, receive)
        rid = request_id_from(req.header("x-request-id"))
        REQUEST_ID.set(rid)  # each request runs in a task of its own: no reset needed
        route = resp = None
        handler, upload = "", False
        if rec is not None:
            route = match(req.path)
            handler = HANDLER_NAMES[route.kind] if route is not None else "unknown"
            upload = route is not None and route.kind in UPLOAD_ROUTES and req.method in _WRITES
            rec.request_started(handler, upload)
        try:
            refused = _screen(scope, req)
            if refused is not None:
                resp = self._error_response([refused])
            elif self.health is not None and self.health.failing:
                resp = self._unhealthy()
            elif not self._guarded:
                resp = await self._respond(req, route)
            elif self.hooks is None and (auth := self.auth) is not None:
                resp = await self._respond_authed(req, auth)
            else:
                resp = await self._respond_hooked(req, self.hooks)
            if resp is None:
                return  # the client went away mid-body: nobody to answer
            if front.must_close(scope, req.raw_headers):
                resp.headers.append(("Connection", "close"))
            resp.headers.append(API_VERSION)
            resp.headers.append(("X-Request-Id", rid))
            if self.send_timeout is not None:
                send = bounded_send(send, self.send_timeout)
            try:
                await send_response(
                    send,
                    resp,
                    head=req.method == "HEAD",
                    read=self._read,
                    zerocopy=_ZEROCOPY in (scope.get("extensions") or ()),
                )
            except (OSError, RuntimeError) as exc:
                log.info("%s %s: response not completed: %s", req.method, req.path, exc)
        finally:
            if rec is not None:
                sent = 0 if resp is None else _body_length(req.method, resp)
                status = 499 if resp is None else resp.status
                seconds = time.monotonic() - start
                rec.request_done(handler, req.method, status, seconds, req.received, sent, upload)
                if status == 202 and route is not None and route.kind == "upload_start":
                    rec.count("uploads_started")
        if self.access_log and resp is not None:
            self._log_access(req, resp, time.monotonic() - start)

    def _unhealthy(self) -> Response:
        err = ApiError("UNAVAILABLE", "health check failed: please see /debug/health")
        return self._error_response([err], 503)

    def _log_access(self, req: Request, resp: Response, seconds: float) -> None:
        line, fields = access_line(
            req.scope,
            req.method,
            req.path,
            resp.status,
            _body_length(req.method, resp),
            seconds,
            req.header("referer"),
            req.header("user-agent"),
        )
        access_log.info("%s", line, extra=fields)

    async def _read(self, reader: Any, pos: int, n: int) -> bytes:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, blobs.read_at, reader, pos, n)

    async def _respond_hooked(self, req: Request, hooks: Hooks | None) -> Response | None:
        """:meth:`_respond` behind ``auth:`` and the host's ``authorize``, ``on_event`` told after."""
        route = match(req.path)
        actor = None
        auth = self.auth
        host_auth = hooks is not None and hooks.authorize is not None
        if route is not None and (auth is not None or host_auth):
            if req.method not in self._writable[route.kind]:
                return await self._respond(req)  # 405: nothing to authorize
            access = access_for(route, req.method, req.arg)
            if auth is not None:
                decision = auth.cached(req, access)
                if decision is None:
                    decision, access = await self._authenticate(auth, req, route, access)
                    if not decision.allowed:
                        return self._refused(decision, access, with_class=True)
                actor = decision.actor
            if hooks is not None and host_auth:
                decision = await hooks.check(req.scope, access)
                if not decision.allowed:
                    return self._refused(decision, access)
                actor = decision.actor or actor
        resp = await self._respond(req, route)
        if hooks is None:
            return resp
        if resp is not None and route is not None and hooks.on_event is not None:
            hooks.record(
                req.scope, route, resp.status, resp.headers, resp.raw_headers, actor, resp.untagged
            )
        return resp

    async def _respond_authed(self, req: Request, auth: AccessController) -> Response | None:
        """:meth:`_respond_hooked` for ``auth:`` alone (no host hooks): the same answers.

        The common case of a server with authentication: the controller's
        cached decision is checked on every request, without the actor and
        event bookkeeping only host hooks need.
        """
        route = match(req.path)
        if route is not None and req.method in self._writable[route.kind]:
            access = access_for(route, req.method, req.arg)
            if auth.cached(req, access) is None:
                decision, access = await self._authenticate(auth, req, route, access)
                if not decision.allowed:
                    return self._refused(decision, access, with_class=True)
        return await self._respond(req, route)

    @staticmethod
    async def _authenticate(
        auth: AccessController, req: Request, route: Any, access: list[Access]
    ) -> tuple[Decision, list[Access]]:
        """The controller's decision, and the access the request goes on with.

        A cross-repository mount whose credentials grant push on the target
        but not pull on the source becomes an ordinary upload start (202):
        the OCI spec's answer of a registry that cannot mount, which tells
        the client nothing about the source repository.
        """
        decision = await auth.authorized(req, access)
        if decision.allowed or route.kind != "upload_start" or len(access) < 3:
            return decision, access
        plain = access[:2]
        fallback = await auth.authorized(req, plain)
        if not fallback.allowed:
            return decision, access
        req.query.pop("mount", None)
        req.query.pop("from", None)
        return fallback, plain

    def _refused(self, decision: Decision, access: list[Any], with_class: bool = False) -> Response:
        detail: list[dict[str, str]] | None = [
            {
                "Type": a.type,
                **({"Class": ""} if with_class else {}),
                "Name": a.name,
                "Action": a.action,
            }
            for a in access
        ] or None
        if decision.status == 401:
            err = ApiError("UNAUTHORIZED", detail, message=decision.message)
            return self._error_response(
                [err], 401, [("WWW-Authenticate", decision.challenge or "")]
            )
        if decision.status == 403:
            extra = [("WWW-Authenticate", decision.challenge)] if decision.challenge else []
            err = ApiError("DENIED", detail, message=decision.message)
            return self._error_response([err], 403, extra)
        return self._error_response([ApiError("UNAVAILABLE", message=decision.message)], 503)

    def _manifest_references(self, name: str, digest: str) -> list[dict[str, Any]]:
        """A manifest's references for an event (called by the event worker, off the request path)."""
        manifest = self.services.registry.repository(name).manifests.get(digest)
        return [reference_json(d) for d in manifest.references()]

    def _blob_size(self, name: str, digest: str) -> int:
        """A blob's size for an event (called by the event worker, off the request path)."""
        return self.services.registry.repository(name).blobs.blobstore.stat(digest).size

    async def _respond(self, req: Request, route: Route | None = None) -> Response | None:
        if route is None:
            route = match(req.path)
        if route is None:
            return self._error_response([ApiError("UNSUPPORTED", f"no route for {req.path}")], 404)
        methods = self.handlers[route.kind]
        handler = methods.get(req.method)
        if handler is None:
            allow = ", ".join(sorted(methods))
            why = "this resource"
            if req.method in _HANDLERS[route.kind]:
                why = "a registry in read-only mode"
            err = ApiError("UNSUPPORTED", f"{req.method} not allowed on {why}")
            return self._error_response([err], 405, [("Allow", allow)])
        ctx = Ctx(self.services, req, route)
        try:
            return await handler(ctx)
        except ClientGone:
            log.info("%s %s: client disconnected mid-body", req.method, req.path)
            return None
        except Exception as exc:
            errs = api_errors(exc)
            if errs[0].status >= 500:
                log.error("%s %s: %s", req.method, req.path, exc, exc_info=exc)
            else:
                log.debug("%s %s: %s", req.method, req.path, exc)
            if not req.body_done and req.method in ("PUT", "PATCH", "POST"):
                # The body was not (fully) read: close the connection rather than
                # read what may be gigabytes only to drop them.
                errs[0].headers.append(("Connection", "close"))
            return self._error_response(errs)

    @staticmethod
    def _error_response(
        errs: list[ApiError],
        status: int | None = None,
        headers: list[tuple[str, str]] | None = None,
    ) -> Response:
        extra = [h for e in errs for h in e.headers]
        return Response(
            status or errs[0].status,
            [("Content-Type", "application/json"), *extra, *(headers or [])],
            body=error_body(errs),
        )

    # --- lifespan and upload purging -----------------------------------------------------

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            msg = await receive()
            if msg["type"] == "lifespan.startup":
                self.start_background()
                await send({"type": "lifespan.startup.complete"})
            elif msg["type"] == "lifespan.shutdown":
                await self.stop_background()
                await send({"type": "lifespan.shutdown.complete"})
                return

    def start_background(self) -> None:
        if self.recorder is not None:
            self.recorder.start()
        p = self.upload_purging
        if p is not None and p.enabled and self._purge_task is None:
            self._purge_task = asyncio.get_running_loop().create_task(self._purge_loop(p))
        if self.proxy is not None and self._expiry_task is None:
            from ocistore.proxy.schedule import expiry_loop

            self._expiry_task = asyncio.get_running_loop().create_task(
                expiry_loop(self.proxy, self.services.locks.lock_dir)
            )
        g = self.gc_schedule
        if g is not None and g.enabled and self._gc_task is None:
            from ocistore.server.gc_schedule import gc_loop

            driver = self.services.registry.driver
            self._gc_task = asyncio.get_running_loop().create_task(
                gc_loop(driver, g, self.executor)
            )

    async def stop_background(self) -> None:
        task, self._purge_task = self._purge_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        task, self._expiry_task = self._expiry_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.proxy is not None:
            await self.proxy.close()
        gc_task, self._gc_task = self._gc_task, None
        if gc_task is not None:
            gc_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await gc_task
        if self.hooks is not None:
            await self.hooks.close()
        if self.notifier is not None:
            await asyncio.get_running_loop().run_in_executor(None, self.notifier.close)
        if self.recorder is not None:
            self.recorder.stop()  # a last flush: a worker stopping loses no counts
        self.executor.shutdown(wait=False)

    async def _purge_loop(self, p: UploadPurging) -> None:
        """distribution's schedule: a first purge after a random delay, then every interval."""
        from ocistore.storage.purge import purge_uploads

        loop = asyncio.get_running_loop()
        schedule = PurgeSchedule(self.services.locks.lock_dir, interval=p.interval)
        driver = self.services.registry.driver

        def purge() -> tuple[list[str], list[Exception]]:
            older = datetime.now(UTC) - timedelta(seconds=p.age)
            began = time.monotonic()
            try:
                deleted, errs = purge_uploads(driver, older, p.dryrun)
            except Exception:
                metrics.record_maintenance_run("purge", seconds=time.monotonic() - began, ok=False)
                raise
            metrics.record_maintenance_run(
                "purge",
                seconds=time.monotonic() - began,
                removed=len(deleted),
                errors=len(errs),
                ok=not errs,
            )
            return deleted, errs

        # Spread the first run; whichever worker is due first purges for all of them.
        await asyncio.sleep(min(p.interval, 60.0) * (0.5 + (os.getpid() % 97) / 194))
        while True:
            if self.readonly:  # a write: left to the next interval after read-only mode
                await asyncio.sleep(max(p.interval, 1.0))
                continue
            try:
                done = await loop.run_in_executor(self.executor, schedule.run_if_due, purge)
                if done is not None:
                    deleted, errs = done
                    log.info("upload purge: %d removed, %d errors", len(deleted), len(errs))
            except Exception as exc:
                log.warning("upload purge failed: %s", exc)
            await asyncio.sleep(max(p.interval, 1.0))


def _screen(scope: Scope, req: Request) -> ApiError | None:
    """The refusal owed before routing (:mod:`ocistore.server.front`), if any."""
    refused = front.unimplemented_coding(scope, req.raw_headers)
    if refused is None:
        route = match(req.path)
        if route is not None:
            refused = front.encoded_name(scope, req.path, route)
    return refused


def _body_length(method: str, resp: Response) -> int:
    """Body bytes a response carries (none for HEAD, 204 and 304)."""
    if method == "HEAD" or resp.status in (204, 304):
        return 0
    return resp.blob.length if resp.blob is not None else len(resp.body)


def build_driver(cfg: ServerConfig) -> StorageDriver:
    """The configured driver: S3 when ``storage.s3`` is set, else the filesystem at ``cfg.root``."""
    params = cfg.s3_params
    if params is not None:
        from ocistore.driver.s3 import S3Driver
        from ocistore.driver.s3_options import parse_s3_options

        return S3Driver(parse_s3_options(params))
    from ocistore.driver.filesystem import FilesystemDriver

    return FilesystemDriver(cfg.root)


def check_storage(cfg: ServerConfig) -> str | None:
    """Why the storage cannot be used (S3: bucket, credentials, endpoint), in one line; else None."""
    if cfg.s3_params is None:
        return None
    from ocistore.driver.s3 import S3Driver, S3Unusable

    driver = build_driver(cfg)
    assert isinstance(driver, S3Driver)
    try:
        driver.check()
    except S3Unusable as exc:
        return str(exc)
    return None


def build_registry(cfg: ServerConfig) -> Registry:
    """The configured driver (filesystem at ``cfg.root`` or S3) with the descriptor cache.

    Local state (LMDB cache, locks) stays under ``cfg.root`` whichever driver
    holds the blobs; cache hits are validated against the driver, and the
    in-process stat cache is filesystem-only (:mod:`ocistore.storage.hotcache`).
    """
    os.makedirs(cfg.root, exist_ok=True)
    return Registry(
        build_driver(cfg),
        cache=build_cache(cfg),
        delete_enabled=cfg.delete_enabled,
        # distribution's EnableRedirect: on unless disabled; only a driver with
        # url_for (S3) ever redirects, so the filesystem serves as before.
        redirect=not cfg.redirect_disable,
        redirect_expiry=cfg.redirect_expiry,
        # A caching proxy stores no hash states (distribution's DisableDigestResumption).
        resumable_digest=not cfg.proxy,
        tag_locks=build_tag_locks(cfg),
    )


def build_cache(cfg: ServerConfig) -> Any:
    """The configured descriptor cache (None for ``none``)."""
    cache: Any = None
    if cfg.cache == "lmdb":
        from ocistore.cache.lmdb import LMDBDescriptorCache

        os.makedirs(cfg.cache_path, exist_ok=True)
        cache = LMDBDescriptorCache(cfg.cache_path)
    elif cfg.cache == "inmemory":
        from ocistore.cache.memory import MemoryDescriptorCache

        cache = MemoryDescriptorCache()
    elif cfg.cache == "redis":
        from ocistore.cache.redis import RedisDescriptorCache

        if cfg.redis is None:
            raise ConfigError("redis.addr", "storage.cache.blobdescriptor is redis: set redis.addr")
        cache = RedisDescriptorCache(cfg.redis)
    return cache


def build_tag_locks(cfg: ServerConfig) -> TagLocks:
    """Tag locks in this host's lock directory, and in Redis when upload locks are there."""
    local = FileTagLocks(os.path.join(cfg.lock_dir, "tags"))
    if cfg.redis_upload_locks and cfg.redis is not None:
        from ocistore.server.locks import RedisTagLocks, RedisUploadLocks

        return RedisTagLocks(
            RedisUploadLocks(cfg.lock_dir, cfg.redis, ttl=cfg.upload_lock_ttl), local
        )
    return local


def build_locks(cfg: ServerConfig) -> UploadLocks:
    """Upload locks in Redis when instances share a bucket (:mod:`ocistore.server.locks`), else local."""
    if cfg.redis_upload_locks:
        from ocistore.server.locks import RedisUploadLocks

        if cfg.redis is None:
            raise ConfigError("redis.addr", "upload locks in redis: set redis.addr")
        return RedisUploadLocks(cfg.lock_dir, cfg.redis, ttl=cfg.upload_lock_ttl)
    return UploadLocks(cfg.lock_dir)


def build_app(
    cfg: ServerConfig,
    hooks: Hooks | None = None,
    *,
    recorder: metrics.Recorder | None = None,
    health: HealthGate | None = None,
) -> RegistryApp:
    """The app ``ocistore serve`` runs in each worker (and :func:`create_app` returns).

    ``recorder`` (this process's metrics) and ``health`` (the server's health
    verdict) are what ``ocistore serve`` passes when they are configured.
    """
    cfg = cfg.with_secret()
    notifier = build_notifier(cfg)
    if notifier is not None:
        hooks = _with_notifier(hooks, notifier)
    registry = build_registry(cfg)
    if recorder is not None:
        metrics.time_driver(registry.driver, recorder, "s3" if cfg.s3 else "filesystem")
        recorder.add_source(metrics.cache_source(registry, cfg.cache))
    app = RegistryApp(
        registry,
        secret=cfg.secret,
        lock_dir=cfg.lock_dir,
        locks=build_locks(cfg),
        idle_timeout=cfg.idle_timeout,
        max_blob_size=cfg.max_blob_size,
        relative_urls=cfg.relative_urls,
        access_log=cfg.access_log,
        upload_purging=cfg.upload_purging,
        gc_schedule=cfg.gc,
        hooks=hooks,
        recorder=recorder,
        health=health,
        proxy=ProxyConfig.from_json(cfg.proxy) if cfg.proxy else None,
        auth=build_access_controller(cfg.auth),
        readonly=cfg.readonly,
    )
    app.notifier = notifier
    if notifier is not None and notifier.include_references and app.hooks is not None:
        app.hooks.resolve_references = app._manifest_references
    return app


def build_notifier(cfg: ServerConfig) -> Notifier | None:
    """The webhook notifier of ``notifications.endpoints`` (None without enabled endpoints)."""
    if not cfg.notifications:
        return None
    section = json.loads(cfg.notifications)
    endpoints = parse_endpoints(section)
    if not endpoints:
        return None
    return Notifier(
        endpoints,
        cfg.notifications_path,
        max_events=cfg.notifications_max_events,
        include_references=include_references(section),
    )


def _with_notifier(hooks: Hooks | None, notifier: Notifier) -> Hooks:
    """``hooks`` whose ``on_event`` also queues every event for the notifier."""
    if hooks is None:
        return Hooks(on_event=notifier)
    host = hooks.on_event
    on_event: OnEvent
    if host is None:
        on_event = notifier
    elif hooks._events_async:

        async def on_event(event: Event) -> None:
            notifier(event)
            await _awaited(host(event))

    else:

        def on_event(event: Event) -> None:
            notifier(event)
            host(event)

    return Hooks(hooks.authorize, on_event, timeout=hooks.timeout, queue_size=hooks.queue_size)


def create_app(
    config: ServerConfig | str | os.PathLike[str] | None = None,
    /,
    *,
    authorize: Authorize | None = None,
    on_event: OnEvent | None = None,
    hook_timeout: float = 10.0,
    event_queue_size: int = 1024,
    **options: Any,
) -> RegistryApp:
    """The registry as an ASGI application, for the ASGI server you already run.

    ``config`` is a :class:`~ocistore.server.config.ServerConfig`, the path of
    a ``config.yml`` (the keys ``ocistore serve`` reads; unknown ones are
    logged), or None for the defaults. ``options`` override its fields by
    name (:data:`APP_OPTIONS`: ``root``, ``secret``, ``delete_enabled``,
    ``cache``, ``s3``, ``redirect_disable``, ``redirect_expiry``, ``proxy``:
    the ``proxy:`` section as a mapping or a ProxyConfig, ``readonly``,
    ``auth``: the ``auth:`` section as a mapping, ...),
    checked as ``ocistore serve``'s flags are; the address, workers and
    logging are the server's, and naming them is a TypeError.

    Without a secret one is generated, which is only right for a single
    process: give every worker process (and every registry on the same root)
    the same ``secret``, or an upload begun on one fails on another.

    ``authorize`` and ``on_event`` are the host's hooks
    (:mod:`ocistore.server.hooks`): ``authorize(scope, access)`` returns a
    :class:`~ocistore.server.hooks.Decision` for each request (a hook that
    raises or takes longer than ``hook_timeout`` seconds refuses it with
    503); ``on_event(event)`` gets an :class:`~ocistore.server.hooks.Event`
    per push, pull, mount and delete, off the request path (at most
    ``event_queue_size`` waiting). Mounted under a prefix (ASGI
    ``root_path``), the app routes and makes its URLs under that prefix.
    """
    hooks = None
    if authorize is not None or on_event is not None:
        hooks = Hooks(authorize, on_event, timeout=hook_timeout, queue_size=event_queue_size)
    if config is None:
        cfg = ServerConfig()
    elif isinstance(config, ServerConfig):
        cfg = config
    elif isinstance(config, str | os.PathLike):
        cfg, unknown = load_config(config)
        if unknown:
            log.warning(
                "%s: unknown configuration keys, ignored: %s", os.fspath(config), ", ".join(unknown)
            )
    else:
        raise TypeError(
            f"create_app() takes a ServerConfig, a config file path or None, "
            f"not {type(config).__name__}"
        )
    known = {f.name for f in fields(ServerConfig)}
    for name in options:
        if name not in known:
            raise TypeError(
                f"create_app() got an unknown option {name!r}; options: {', '.join(APP_OPTIONS)}"
            )
        if name not in APP_OPTIONS:
            raise TypeError(
                f"create_app() option {name!r} belongs to the server that runs the app, "
                f"not to the app; options: {', '.join(APP_OPTIONS)}"
            )
        _check_option(name, options[name])
    if "root" in options:
        options["root"] = os.fspath(options["root"])
    cfg = apply_overrides(cfg, **options)
    if not cfg.secret:
        log.warning(
            "no secret configured: generated one for this process only; "
            "several processes serving one root need the same secret"
        )
    return build_app(cfg, hooks)


_OPTION_TYPES: Final[dict[str, tuple[type, ...]]] = {
    "root": (str, os.PathLike),
    "secret": (str,),
    "delete_enabled": (bool,),
    "cache": (str,),
    "cache_dir": (str,),
    "relative_urls": (bool,),
    "idle_timeout": (int, float, str),
    "max_blob_size": (int, str),
    "access_log": (bool,),
    "upload_purging": (UploadPurging,),
    "redis": (RedisOptions,),
    "s3": (Mapping,),
    "redirect_disable": (bool,),
    "redirect_expiry": (int, float, str),
    "upload_locks": (str,),
    "upload_lock_ttl": (int, float, str),
    "notifications": (Mapping,),  # the notifications: section, as parsed YAML
    "notifications_dir": (str, os.PathLike),
    "notifications_max_events": (int,),
    "proxy": (Mapping, ProxyConfig),
    "readonly": (bool,),
    "auth": (Mapping,),
    "gc": (GcSchedule,),
}


def _check_option(name: str, value: object) -> None:
    """TypeError naming ``name`` and ``value`` unless it has a type the option takes."""
    if value is None:
        return
    kinds = _OPTION_TYPES[name]
    wrong_bool = isinstance(value, bool) and bool not in kinds
    if wrong_bool or not isinstance(value, kinds):
        raise TypeError(
            f"create_app() option {name}={value!r}: expected "
            + " or ".join(k.__name__ for k in kinds)
        )
