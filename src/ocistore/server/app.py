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
import logging
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import fields
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from ocistore.cache.redis import RedisOptions
from ocistore.driver.base import StorageDriver
from ocistore.server import blobs, listing, manifests, referrers, uploads
from ocistore.server.config import (
    ConfigError,
    ServerConfig,
    UploadPurging,
    apply_overrides,
    load_config,
)
from ocistore.server.context import Ctx, RepositoryCache, Services
from ocistore.server.errors import ApiError, api_errors, error_body
from ocistore.server.hooks import Authorize, Decision, Hooks, OnEvent, access_for
from ocistore.server.http import ClientGone, Receive, Request, Response, Scope, Send, send_response
from ocistore.server.locks import UploadLocks
from ocistore.server.maintenance import PurgeSchedule
from ocistore.server.routes import match
from ocistore.storage.registry import Registry
from ocistore.storage.taglocks import FileTagLocks, TagLocks

__all__ = ["API_VERSION", "APP_OPTIONS", "RegistryApp", "build_app", "build_registry", "create_app"]

log = logging.getLogger("ocistore.server")
access_log = logging.getLogger("ocistore.access")

API_VERSION: Final = ("Docker-Distribution-API-Version", "registry/2.0")
CHUNK_MIN_LENGTH: Final = 1 << 20
_ZEROCOPY: Final = "http.response.zerocopysend"

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
)
"""The :class:`~ocistore.server.config.ServerConfig` fields :func:`create_app` takes as options.

The others (``addr``, ``workers``, ``stack``, ``log_level``) belong to the
server that runs the app.
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
        threads: int = 16,
        hooks: Hooks | None = None,
    ) -> None:
        if not secret:
            raise ValueError("a secret is needed to sign upload state tokens")
        self.executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="ocistore-io")
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
        )
        self.access_log = access_log
        self.hooks = hooks if hooks is not None and (hooks.authorize or hooks.on_event) else None
        if self.hooks is not None and self.hooks.on_event is not None:
            self.hooks.resolve_size = self._blob_size
        self.upload_purging = upload_purging
        self._purge_task: asyncio.Task[None] | None = None

    # --- ASGI ----------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self.handle(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        start = time.monotonic() if self.access_log else 0.0
        req = Request(scope, receive)
        if self.hooks is None:
            resp = await self._respond(req)
        else:
            resp = await self._respond_hooked(req, self.hooks)
        if resp is None:
            return  # the client went away mid-body: nobody to answer
        resp.headers.append(API_VERSION)
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
        if self.access_log:
            access_log.info(
                "%s %s %d %.1fms",
                req.method,
                req.path,
                resp.status,
                (time.monotonic() - start) * 1e3,
            )

    async def _read(self, reader: Any, pos: int, n: int) -> bytes:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, blobs.read_at, reader, pos, n)

    async def _respond_hooked(self, req: Request, hooks: Hooks) -> Response | None:
        """:meth:`_respond` behind the host's ``authorize``, with its ``on_event`` told after."""
        route = match(req.path)
        actor = None
        if route is not None and hooks.authorize is not None:
            if req.method not in _HANDLERS[route.kind]:
                return await self._respond(req)  # 405: nothing to authorize
            access = access_for(route, req.method, req.arg)
            decision = await hooks.check(req.scope, access)
            if not decision.allowed:
                return self._refused(decision, access)
            actor = decision.actor
        resp = await self._respond(req)
        if resp is not None and route is not None and hooks.on_event is not None:
            hooks.record(req.scope, route, resp.status, resp.headers, resp.raw_headers, actor)
        return resp

    def _refused(self, decision: Decision, access: list[Any]) -> Response:
        detail = [{"Type": a.type, "Name": a.name, "Action": a.action} for a in access] or None
        if decision.status == 401:
            err = ApiError("UNAUTHORIZED", detail, message=decision.message)
            return self._error_response(
                [err], 401, [("WWW-Authenticate", decision.challenge or "")]
            )
        if decision.status == 403:
            return self._error_response([ApiError("DENIED", detail, message=decision.message)])
        return self._error_response([ApiError("UNAVAILABLE", message=decision.message)], 503)

    def _blob_size(self, name: str, digest: str) -> int:
        """A blob's size for an event (called by the event worker, off the request path)."""
        return self.services.registry.repository(name).blobs.blobstore.stat(digest).size

    async def _respond(self, req: Request) -> Response | None:
        route = match(req.path)
        if route is None:
            return self._error_response([ApiError("UNSUPPORTED", f"no route for {req.path}")], 404)
        methods = _HANDLERS[route.kind]
        handler = methods.get(req.method)
        if handler is None:
            allow = ", ".join(sorted(methods))
            err = ApiError("UNSUPPORTED", f"{req.method} not allowed on this resource")
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
        p = self.upload_purging
        if p is not None and p.enabled and self._purge_task is None:
            self._purge_task = asyncio.get_running_loop().create_task(self._purge_loop(p))

    async def stop_background(self) -> None:
        task, self._purge_task = self._purge_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.hooks is not None:
            await self.hooks.close()
        self.executor.shutdown(wait=False)

    async def _purge_loop(self, p: UploadPurging) -> None:
        """distribution's schedule: a first purge after a random delay, then every interval."""
        from ocistore.storage.purge import purge_uploads

        loop = asyncio.get_running_loop()
        schedule = PurgeSchedule(self.services.locks.lock_dir, interval=p.interval)
        driver = self.services.registry.driver

        def purge() -> tuple[list[str], list[Exception]]:
            older = datetime.now(UTC) - timedelta(seconds=p.age)
            return purge_uploads(driver, older, p.dryrun)

        # Spread the first run; whichever worker is due first purges for all of them.
        await asyncio.sleep(min(p.interval, 60.0) * (0.5 + (os.getpid() % 97) / 194))
        while True:
            try:
                done = await loop.run_in_executor(self.executor, schedule.run_if_due, purge)
                if done is not None:
                    deleted, errs = done
                    log.info("upload purge: %d removed, %d errors", len(deleted), len(errs))
            except Exception as exc:
                log.warning("upload purge failed: %s", exc)
            await asyncio.sleep(max(p.interval, 1.0))


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
    return Registry(
        build_driver(cfg),
        cache=cache,
        delete_enabled=cfg.delete_enabled,
        # distribution's EnableRedirect: on unless disabled; only a driver with
        # url_for (S3) ever redirects, so the filesystem serves as before.
        redirect=not cfg.redirect_disable,
        redirect_expiry=cfg.redirect_expiry,
        tag_locks=build_tag_locks(cfg),
    )


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


def build_app(cfg: ServerConfig, hooks: Hooks | None = None) -> RegistryApp:
    """The app ``ocistore serve`` runs in each worker (and :func:`create_app` returns)."""
    cfg = cfg.with_secret()
    return RegistryApp(
        build_registry(cfg),
        secret=cfg.secret,
        lock_dir=cfg.lock_dir,
        locks=build_locks(cfg),
        idle_timeout=cfg.idle_timeout,
        max_blob_size=cfg.max_blob_size,
        relative_urls=cfg.relative_urls,
        access_log=cfg.access_log,
        upload_purging=cfg.upload_purging,
        hooks=hooks,
    )


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
    ``cache``, ``s3``, ``redirect_disable``, ``redirect_expiry``, ...),
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
