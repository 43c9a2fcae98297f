"""Proxy mode: the registry's read routes backed by upstreams, its write routes refused.

:class:`Proxy` holds one :class:`~ocistore.proxy.client.UpstreamClient` per
configured upstream, the worker's :class:`~ocistore.proxy.fill.Fills` and the
:class:`~ocistore.proxy.expiry.Holds`, and gives the app its route table
(:meth:`Proxy.handlers`): uploads, manifest PUT and DELETE and blob DELETE
are absent, so the app answers them 405 UNSUPPORTED, as distribution does in
proxy mode.

- A manifest by tag: HEAD at the upstream for the tag's digest; the local copy
  is served when it has that digest (the tag moved locally if needed), else
  the manifest is fetched by digest, checked against it, stored (without
  checking its references, which are fetched when pulled) and served. An
  upstream that cannot be reached (connection, timeout, 5xx, 429) leaves the
  last known manifest to be served, and says so in the log. A manifest by
  digest is served locally once stored.
- A blob: served from the store when this repository links it; else joined to
  (or started as) the one fill of its digest (:mod:`~ocistore.proxy.fill`), or
  followed when another worker of the host runs it (:mod:`~ocistore.proxy.host`).
  HEAD starts the fill too, so a proxy in front of this one finds the blob.
  Blobs up to :data:`VERIFY_FIRST` bytes are answered after the commit, so
  any upstream fault on them is a clean OCI error; larger ones stream.
- Tag lists and referrers come from the upstream, local ones when it is down.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from concurrent.futures import Executor
from contextlib import asynccontextmanager
from typing import Any, Final

from ocistore.descriptor import Descriptor
from ocistore.digest import Digest
from ocistore.errors import (
    BlobInvalidDigest,
    BlobInvalidLength,
    BlobUnknown,
    DigestError,
    ManifestInvalid,
    ManifestUnknown,
    NameUnknown,
    TagUnknown,
)
from ocistore.manifest import HANDLERS, MAX_MANIFEST_SIZE
from ocistore.proxy.client import UpstreamClient, UpstreamError, UpstreamResponse, read_limited
from ocistore.proxy.config import ProxyConfig, Upstream
from ocistore.proxy.expiry import Holds, expire
from ocistore.proxy.fill import Fill, FillFailed, Fills
from ocistore.proxy.host import HostFills, RemoteFill
from ocistore.reference import validate_tag
from ocistore.server import blobs, listing, manifests, referrers
from ocistore.server.context import Ctx
from ocistore.server.errors import ApiError
from ocistore.server.http import RawHeaders, Response
from ocistore.server.ranges import RangeNotSatisfiable, parse_range
from ocistore.storage.registry import Registry

__all__ = ["EXPIRY_STAMP", "VERIFY_FIRST", "Proxy"]

log = logging.getLogger("ocistore.proxy")

VERIFY_FIRST: Final = 1 << 20
"""Blobs up to this size are verified and stored before the first byte is sent."""
EXPIRY_STAMP: Final = "proxy-expiry.stamp"
_UPSTREAM_ONLY: Final = frozenset({"upload_start", "upload"})
_READ_METHODS: Final = frozenset({"GET", "HEAD"})

Handler = Callable[[Ctx], Awaitable[Response]]


def _accept() -> str:
    return ", ".join(sorted(HANDLERS))


def _failure(exc: BaseException, what: str) -> ApiError:
    """The OCI error a client gets when the upstream failed us (never with credentials)."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, UpstreamError):
        status = 503 if exc.status == 0 else 502
        return ApiError(
            "UNAVAILABLE", {"upstream": str(exc)}, message=f"{what}: {exc}", status=status
        )
    if isinstance(exc, BlobInvalidDigest):
        return ApiError(
            "UNAVAILABLE",
            {"digest": str(exc.digest), "computed": str(exc.computed)},
            message=f"{what}: the upstream sent content that does not match the digest",
            status=502,
        )
    if isinstance(exc, BlobInvalidLength | FillFailed | ManifestInvalid):
        return ApiError("UNAVAILABLE", message=f"{what}: {exc}", status=502)
    raise exc


class Proxy:
    """The upstreams, fills and holds of one worker (see the module docstring)."""

    def __init__(
        self, config: ProxyConfig, registry: Registry, lock_dir: str, executor: Executor | None
    ) -> None:
        self.config = config
        self.registry = registry
        self.lock_dir = lock_dir
        self.executor = executor
        self.clients = {
            up.prefix: UpstreamClient(
                up, timeout=config.timeout, connect_timeout=config.connect_timeout
            )
            for up in config.upstreams
        }
        self.fills = Fills(os.path.join(lock_dir, "proxy-spool"))
        self.host = HostFills(lock_dir)
        self.holds = Holds(registry)

    async def close(self) -> None:
        for client in self.clients.values():
            await client.close()

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, functools.partial(fn, *args))

    def _upstream(self, name: str) -> tuple[Upstream, UpstreamClient, str]:
        up = self.config.upstream_for(name)
        if up is None:
            raise ApiError(
                "NAME_UNKNOWN", {"name": name}, message=f"no upstream is configured for {name}"
            )
        return up, self.clients[up.prefix], up.remote_name(name)

    async def _hold(self, name: str, kind: str, digest: Digest, ttl: float) -> None:
        try:
            await self.run(self.holds.touch, name, kind, digest, ttl)
        except OSError as exc:  # a hold not refreshed only shortens the cache life
            log.warning("proxy: hold of %s in %s not written: %s", digest, name, exc)

    # --- the route table ---------------------------------------------------------------

    def handlers(self, base: Mapping[str, Mapping[str, Handler]]) -> dict[str, dict[str, Handler]]:
        """``base`` with the read routes proxied and every write route left out (405)."""
        table: dict[str, dict[str, Handler]] = {}
        for kind, methods in base.items():
            if kind in _UPSTREAM_ONLY:
                table[kind] = {}
                continue
            table[kind] = {m: h for m, h in methods.items() if m in _READ_METHODS}
        table["manifest"] = {"GET": self.get_manifest, "HEAD": self.get_manifest}
        table["blob"] = {"GET": self.get_blob, "HEAD": self.get_blob}
        table["tags"] = {"GET": self.get_tags}
        table["referrers"] = {"GET": self.get_referrers}
        return table

    # --- manifests ---------------------------------------------------------------------

    async def get_manifest(self, ctx: Ctx) -> Response:
        repo = ctx.repo
        up, client, remote = self._upstream(repo.name)
        ref = ctx.route.reference
        if ":" in ref:
            try:
                dgst = Digest.parse(ref)
            except DigestError as exc:
                raise ApiError("DIGEST_INVALID", str(exc)) from None
            if not repo.manifests.exists(dgst):
                await self._fetch_manifest(client, up, repo.name, remote, dgst, dgst, None)
            else:
                await self._hold(repo.name, "manifest", dgst, up.ttl)
            return await manifests.get_manifest(ctx)
        tag = validate_tag(ref)
        try:
            remote_digest = await self._head_manifest(client, remote, tag)
        except UpstreamError as exc:
            if exc.status == 404:
                raise ManifestUnknown(repo.name, tag) from None
            if not exc.unreachable:
                raise _failure(exc, f"manifest {repo.name}:{tag}") from None
            log.warning("proxy: %s; serving the last known manifest of %s:%s", exc, repo.name, tag)
            return await manifests.get_manifest(ctx)
        if remote_digest is not None and repo.manifests.exists(remote_digest):
            try:
                current: Digest | None = repo.tags.resolve(tag)
            except TagUnknown:
                current = None
            if current != remote_digest:
                await self.run(repo.tags.tag, tag, remote_digest)
            await self._hold(repo.name, "manifest", remote_digest, up.ttl)
        else:
            await self._fetch_manifest(client, up, repo.name, remote, remote_digest, None, tag)
        return await manifests.get_manifest(ctx)

    async def _head_manifest(self, client: UpstreamClient, remote: str, tag: str) -> Digest | None:
        path = f"/v2/{remote}/manifests/{tag}"
        async with client.request(
            "HEAD", path, scope=f"repository:{remote}:pull", headers={"Accept": _accept()}
        ) as resp:
            if resp.status != 200:
                raise UpstreamError(
                    f"{client.upstream.host} answered {resp.status} for manifest {remote}:{tag}",
                    resp.status,
                )
            raw = resp.header("Docker-Content-Digest")
        if raw is None:
            return None
        try:
            return Digest.parse(raw)
        except DigestError:
            return None

    async def _fetch_manifest(
        self,
        client: UpstreamClient,
        up: Upstream,
        name: str,
        remote: str,
        expect: Digest | None,
        by_digest: Digest | None,
        tag: str | None,
    ) -> Digest:
        ref = str(by_digest or expect or tag)
        what = f"manifest {name}@{ref}" if ":" in ref else f"manifest {name}:{ref}"
        try:
            async with client.request(
                "GET",
                f"/v2/{remote}/manifests/{ref}",
                scope=f"repository:{remote}:pull",
                headers={"Accept": _accept()},
            ) as resp:
                if resp.status == 404:
                    raise ManifestUnknown(name, ref)
                if resp.status != 200:
                    raise UpstreamError(
                        f"{client.upstream.host} answered {resp.status}", resp.status
                    )
                payload = await read_limited(
                    resp, MAX_MANIFEST_SIZE, "the manifest", client.upstream.host
                )
                media_type = (resp.header("Content-Type") or "").split(";", 1)[0].strip() or None
                header = resp.header("Docker-Content-Digest")
            expected = expect or _parse_digest(header)
            algorithm = expected.algorithm if expected is not None else "sha256"
            computed = _digest_of(payload, algorithm)
            if expected is not None and computed != expected:
                raise UpstreamError(
                    f"{client.upstream.host} sent a manifest hashing to {computed}, not {expected}",
                    502,
                )
            repo = self.registry.repository(name)
            try:
                dgst: Digest = await self.run(
                    functools.partial(repo.manifests.put, payload, media_type, tag, verify=False)
                )
            except ManifestInvalid as exc:
                raise UpstreamError(
                    f"{client.upstream.host} sent an invalid manifest: {exc.reason}", 502
                ) from None
        except (UpstreamError, ManifestInvalid) as exc:
            raise _failure(exc, what) from None
        await self._hold(name, "manifest", dgst, up.ttl)
        return dgst

    # --- blobs -------------------------------------------------------------------------

    async def get_blob(self, ctx: Ctx) -> Response:
        repo = ctx.repo
        up, client, remote = self._upstream(repo.name)
        try:
            dgst = Digest.parse(ctx.route.digest)
        except DigestError as exc:
            raise ApiError("DIGEST_INVALID", str(exc)) from None
        try:
            repo.blobs.stat(dgst)
        except BlobUnknown:
            pass
        else:
            await self._hold(repo.name, "blob", dgst, up.ttl)
            return await blobs.get_blob(ctx)
        what = f"blob {repo.name}@{dgst}"
        fill: Fill | RemoteFill | None = None
        for _ in range(4):
            fill = self.fills.get(dgst)
            if fill is not None:
                fill.names.add(repo.name)
                break
            if dgst.algorithm == "sha256" and await self.run(self.registry.blobs.exists, dgst):
                return await self._link_known(ctx, client, up, remote, dgst)
            fill = self._lead(dgst, repo, client, up, remote)
            if fill is not None:
                break
            # Another worker on this host fills it: follow that fill.
            following = RemoteFill(
                self.host,
                dgst,
                functools.partial(self.registry.blobs.exists, dgst),
                functools.partial(self._lead, dgst, repo, client, up, remote),
                functools.partial(self.registry.blobs.open, dgst),
            )
            deadline = asyncio.get_running_loop().time() + self.config.timeout + 30
            try:
                outcome = await following.open(deadline)
            except FillFailed as exc:
                raise _failure(exc, what) from None
            if outcome == "follow":
                fill = following
                break
            fill = None  # committed meanwhile (linked next round) or orphaned (led next round)
        if fill is None:
            raise _failure(FillFailed(f"no worker could fetch {dgst}"), what)
        try:
            await fill.started()
        except BlobUnknown:
            raise
        except Exception as exc:
            raise _failure(exc, what) from None
        assert fill.size is not None
        size = fill.size
        head = _blob_headers(dgst)
        if ctx.req.method == "HEAD":
            if isinstance(fill, RemoteFill):
                fill.close()
            return Response(
                200,
                raw_headers=[
                    *head,
                    (b"content-type", b"application/octet-stream"),
                    (b"content-length", b"%d" % size),
                ],
            )
        if size <= VERIFY_FIRST:
            try:
                await fill.finished()
            except BlobUnknown:
                raise
            except Exception as exc:
                raise _failure(exc, what) from None
            if isinstance(fill, RemoteFill):  # committed by another worker, linked there
                return await self._link_known(ctx, client, up, remote, dgst)
            return await blobs.get_blob(ctx)
        if fill.ended:  # committed (or failed) meanwhile: the store answers
            try:
                await fill.finished()
            except Exception as exc:
                raise _failure(exc, what) from None
            return await blobs.get_blob(ctx)
        return self._follow(ctx, fill, size, head)

    def _lead(
        self, dgst: Digest, repo: Any, client: UpstreamClient, up: Upstream, remote: str
    ) -> Fill | None:
        """Start this worker's fill of ``dgst`` if no worker on the host runs one."""
        fill = self.fills.get(dgst)
        if fill is not None:
            return fill
        lock = self.host.try_lead(dgst)
        if lock is None:
            return None
        if self.registry.blobs.exists(dgst):  # committed just before we locked
            self.host.release(dgst, lock)
            return None
        return self.fills.start(
            dgst,
            repo.name,
            functools.partial(self._open_blob, client, remote, dgst),
            repo.blobs,
            self.run,
            functools.partial(self._committed, up),
            lead=(self.host, lock),
        )

    def _follow(self, ctx: Ctx, fill: Fill | RemoteFill, size: int, head: RawHeaders) -> Response:
        """A response that streams the running fill (not a coroutine: the fill must still be running)."""
        range_header = ctx.req.header("range")
        first, length, status = 0, size, 200
        headers = [*head, (b"content-type", b"application/octet-stream")]
        if range_header:
            try:
                rng = parse_range(range_header, size)
            except RangeNotSatisfiable:
                return Response(
                    416,
                    [("Content-Range", f"bytes */{size}")],
                    raw_headers=[*head, (b"content-length", b"0")],
                )
            if rng is not None:
                first, length, status = rng.first, rng.length, 206
                headers.append((b"content-range", rng.content_range(size).encode("ascii")))
        headers.append((b"content-length", b"%d" % length))
        if length == 0:
            return Response(status, raw_headers=headers)
        return Response(status, raw_headers=headers, stream=fill.body(first, length, self.run))

    async def _link_known(
        self, ctx: Ctx, client: UpstreamClient, up: Upstream, remote: str, dgst: Digest
    ) -> Response:
        """The store has the bytes (another repository's): link them once the upstream agrees."""
        repo = ctx.repo
        try:
            async with client.request(
                "HEAD", f"/v2/{remote}/blobs/{dgst}", scope=f"repository:{remote}:pull"
            ) as resp:
                if resp.status == 404:
                    raise BlobUnknown(dgst)
                if resp.status != 200:
                    raise UpstreamError(
                        f"{client.upstream.host} answered {resp.status}", resp.status
                    )
        except UpstreamError as exc:
            raise _failure(exc, f"blob {repo.name}@{dgst}") from None
        desc = await self.run(self.registry.blobs.stat, dgst)
        await self.run(repo.blobs.link_blob, desc)
        await self._hold(repo.name, "blob", dgst, up.ttl)
        return await blobs.get_blob(ctx)

    @asynccontextmanager
    async def _open_blob(
        self, client: UpstreamClient, remote: str, dgst: Digest
    ) -> AsyncIterator[UpstreamResponse]:
        async with client.request(
            "GET", f"/v2/{remote}/blobs/{dgst}", scope=f"repository:{remote}:pull"
        ) as resp:
            if resp.status == 404:
                raise BlobUnknown(dgst)
            if resp.status != 200:
                raise UpstreamError(
                    f"{client.upstream.host} answered {resp.status} for blob {dgst}", resp.status
                )
            yield resp

    async def _committed(self, up: Upstream, desc: Descriptor, names: set[str]) -> None:
        for name in sorted(names):
            repo = self.registry.repository(name)
            await self.run(repo.blobs.link_blob, desc.with_(media_type="application/octet-stream"))
            await self._hold(name, "blob", desc.digest, up.ttl)

    # --- tags and referrers --------------------------------------------------------------

    async def get_tags(self, ctx: Ctx) -> Response:
        repo = ctx.repo
        _, client, remote = self._upstream(repo.name)
        query = {k: v for k in ("n", "last") if (v := ctx.req.arg(k))}
        path = f"/v2/{remote}/tags/list" + (
            "?" + "&".join(f"{k}={v}" for k, v in query.items()) if query else ""
        )
        try:
            async with client.request("GET", path, scope=f"repository:{remote}:pull") as resp:
                if resp.status == 404:
                    raise NameUnknown(repo.name)
                if resp.status != 200:
                    raise UpstreamError(
                        f"{client.upstream.host} answered {resp.status}", resp.status
                    )
                body = await read_limited(resp, 16 << 20, "the tag list", client.upstream.host)
            doc = json.loads(body)
            tags = doc.get("tags") or [] if isinstance(doc, dict) else None
            if not isinstance(tags, list):
                raise UpstreamError(f"{client.upstream.host} sent a tag list that is not one", 502)
        except (UpstreamError, ValueError) as exc:
            if isinstance(exc, UpstreamError) and not exc.unreachable:
                raise _failure(exc, f"tags of {repo.name}") from None
            log.warning("proxy: %s; listing the local tags of %s", exc, repo.name)
            return await listing.get_tags(ctx)
        return Response(
            200,
            [("Content-Type", "application/json")],
            body=json.dumps({"name": repo.name, "tags": tags}).encode(),
        )

    async def get_referrers(self, ctx: Ctx) -> Response:
        repo = ctx.repo
        _, client, remote = self._upstream(repo.name)
        path = f"/v2/{remote}/referrers/{ctx.route.digest}"
        if (artifact_type := ctx.req.arg("artifactType")) is not None:
            path += f"?artifactType={artifact_type}"
        try:
            async with client.request("GET", path, scope=f"repository:{remote}:pull") as resp:
                if resp.status >= 500:
                    raise UpstreamError(
                        f"{client.upstream.host} answered {resp.status}", resp.status
                    )
                body = await read_limited(
                    resp, MAX_MANIFEST_SIZE, "the referrers", client.upstream.host
                )
                headers = [
                    (k, v)
                    for k in ("Content-Type", "OCI-Filters-Applied")
                    if (v := resp.header(k)) is not None
                ]
                # Relayed as is: a 404 tells the client to use the referrers tag schema.
                return Response(resp.status, headers, body=body)
        except UpstreamError as exc:
            if not exc.unreachable:
                raise _failure(exc, f"referrers in {repo.name}") from None
            log.warning("proxy: %s; listing the local referrers in %s", exc, repo.name)
            return await referrers.get_referrers(ctx)

    # --- expiry ----------------------------------------------------------------------------

    def expire(self) -> Any:
        """One expiry run over the whole store (called through the schedule's stamp)."""
        return expire(self.registry)


def _parse_digest(raw: str | None) -> Digest | None:
    if not raw:
        return None
    try:
        return Digest.parse(raw)
    except DigestError:
        return None


def _digest_of(payload: bytes, algorithm: str) -> Digest:
    if algorithm == "sha256":
        return Digest.from_parts("sha256", hashlib.sha256(payload).hexdigest())
    return Digest.from_bytes(payload, algorithm)


def _blob_headers(dgst: Digest) -> RawHeaders:
    d = str(dgst).encode("ascii")
    return [
        (b"docker-content-digest", d),
        (b"etag", b'"' + d + b'"'),
        (b"accept-ranges", b"bytes"),
    ]
