"""``/v2/<name>/blobs/uploads/``: start (POST), chunks (PATCH), finish (PUT), status, cancel.

Each request that writes takes the upload's lock (:mod:`ocistore.server.locks`),
reopens the writer (``resume``), streams the body in, and closes the writer
again, which makes the bytes durable and stores the hash state; so between
requests an upload is only files, and any worker process (or the Go registry
on the same root) can take the next request. Every answer carries a fresh
``_state`` token in its Location (:mod:`ocistore.server.state`).

Decisions, where the spec leaves room:

- A request without ``_state`` is accepted when the upload exists (the spec
  never makes clients send it); one with a token must carry a valid
  signature, the route's name and uuid (else BLOB_UPLOAD_INVALID, as
  distribution). A token whose Offset differs from the data size is a client
  on a stale Location: a write gets 416 with the current Range (distribution
  cancels the upload instead; a 416 lets the client resume), a GET of the
  status 204 with the current Range and a fresh Location.
- A chunk whose ``Content-Range`` does not start at the current size, or a
  PATCH that finds the upload locked by another request, gets 416
  RANGE_INVALID with the current ``Range``; the upload is untouched.
- A client that disconnects or goes idle mid-body leaves the upload at what
  was written and made durable (resumable); over the size limit, or on a
  failed digest or size check at the end, the upload is cancelled.
"""

from __future__ import annotations

import contextlib
import logging
import time
from datetime import datetime
from typing import TYPE_CHECKING, Final

from ocistore import metrics
from ocistore.descriptor import Descriptor
from ocistore.digest import Digest
from ocistore.errors import (
    BlobInvalidDigest,
    BlobInvalidLength,
    BlobMounted,
    BlobTooLarge,
    BlobUploadInvalid,
    DigestError,
)
from ocistore.server import deferred_state
from ocistore.server.context import Ctx
from ocistore.server.deferred_state import DeferredState
from ocistore.server.errors import ApiError, api_errors, digest_invalid
from ocistore.server.http import ClientGone, ClientIdle, Response
from ocistore.server.locks import UploadLock
from ocistore.server.pump import BodyPump, Then
from ocistore.server.ranges import ByteRange, parse_content_range, upload_range
from ocistore.server.state import (
    UploadState,
    format_go_time,
    pack_upload_state,
    unpack_upload_state,
    upload_start_time,
)
from ocistore.storage.paths import validate_upload_id

if TYPE_CHECKING:
    from ocistore.storage.blobwriter import BlobWriter

__all__ = ["cancel_upload", "finish_upload", "patch_upload", "start_upload", "upload_status"]

log = logging.getLogger("ocistore.server")

OCTET_STREAM: Final = "application/octet-stream"


# --- responses ---------------------------------------------------------------


def _session_headers(
    ctx: Ctx, writer: BlobWriter, started: datetime | int | None = None
) -> list[tuple[str, str]]:
    """Location (with a fresh token), Range and Docker-Upload-UUID of an open upload.

    ``started`` is the upload's start time when the caller knows it more
    precisely than ``writer.started_at`` (a new upload; see :func:`upload_start_time`).
    """
    state = UploadState(
        name=ctx.repo.name,
        uuid=writer.id,
        offset=writer.size,
        started_at=format_go_time(writer.started_at if started is None else started),
    )
    token = pack_upload_state(state, ctx.svc.secret)
    location = ctx.url(f"/v2/{ctx.repo.name}/blobs/uploads/{writer.id}?_state={token}")
    return [
        ("Location", location),
        ("Range", upload_range(writer.size)),
        ("Docker-Upload-UUID", writer.id),
        ("Content-Length", "0"),
    ]


def _created(ctx: Ctx, digest: Digest) -> Response:
    return Response(
        201,
        [
            ("Location", ctx.url(f"/v2/{ctx.repo.name}/blobs/{digest}")),
            ("Docker-Content-Digest", str(digest)),
            ("Content-Length", "0"),
        ],
    )


def _range_error(size: int, upload_id: str, detail: object) -> ApiError:
    return ApiError(
        "RANGE_INVALID",
        detail,
        headers=[("Range", upload_range(size)), ("Docker-Upload-UUID", upload_id)],
    )


# --- body streaming ----------------------------------------------------------


async def _stream_into(ctx: Ctx, writer: BlobWriter, *, then: Then | None = None) -> int:
    """Copy the request body into ``writer``; return the bytes received.

    Receiving overlaps with hashing and writing, which run on a thread of
    their own (:class:`~ocistore.server.pump.BodyPump`); memory stays bounded
    whatever the client sends. What did arrive is kept when the client goes
    away or falls idle (the upload resumes after the last byte received).
    ``then`` (closing the writer) runs on the same thread after the last
    write, only when the whole body was received and written.
    """
    limit = ctx.svc.max_blob_size
    base = writer.size
    pump = BodyPump(writer.write, ctx.svc.executor)
    received = 0
    try:
        async with contextlib.aclosing(ctx.req.stream(ctx.svc.idle_timeout)) as body:
            async for chunk in body:
                received += len(chunk)
                if limit and base + received > limit:
                    raise BlobTooLarge(base + received, limit)
                await pump.put(chunk)
    except (ClientGone, ClientIdle):
        await pump.finish()
        raise
    except BaseException:
        await pump.abort()
        raise
    await pump.finish(then=then)
    return received


# --- resolving an upload -----------------------------------------------------


def _check_token(ctx: Ctx) -> UploadState | None:
    token = ctx.req.arg("_state")
    if token is None:
        return None
    state = unpack_upload_state(token, ctx.svc.secret)
    if state.name != ctx.repo.name:
        raise BlobUploadInvalid(f"_state names repository {state.name!r}, not {ctx.repo.name!r}")
    if state.uuid != ctx.route.uuid:
        raise BlobUploadInvalid(f"_state names upload {state.uuid!r}, not {ctx.route.uuid!r}")
    return state


def _check_content_type(ctx: Ctx) -> None:
    ct = ctx.req.header("content-type")
    if ct is None:
        return
    base = ct.split(";", 1)[0].strip().lower()
    if base not in ("", OCTET_STREAM):
        raise ApiError(
            "BLOB_UPLOAD_INVALID",
            f"Content-Type {ct!r}: blob data must be sent as {OCTET_STREAM}",
            status=415,
        )


def _declared_chunk(ctx: Ctx, size: int, upload_id: str) -> ByteRange | None:
    """The chunk's Content-Range, checked to start at ``size`` and to match Content-Length."""
    raw = ctx.req.header("content-range")
    if raw is None:
        return None
    try:
        rng = parse_content_range(raw)
    except ValueError as exc:
        raise _range_error(size, upload_id, str(exc)) from None
    if rng.first != size:
        raise _range_error(
            size, upload_id, f"chunk starts at {rng.first}, the upload holds {size} bytes"
        )
    try:
        length = ctx.req.content_length
    except ValueError as exc:
        raise ApiError("SIZE_INVALID", str(exc)) from None
    if length is not None and length != rng.length:
        raise ApiError(
            "SIZE_INVALID", f"Content-Length {length} but Content-Range {raw!r} is {rng.length}"
        )
    return rng


def _check_length_limit(ctx: Ctx, size: int) -> None:
    try:
        length = ctx.req.content_length
    except ValueError as exc:
        raise ApiError("SIZE_INVALID", str(exc)) from None
    limit = ctx.svc.max_blob_size
    if limit and length is not None and size + length > limit:
        raise BlobTooLarge(size + length, limit)


async def _open(ctx: Ctx, *, stale_ok: bool = False) -> tuple[BlobWriter, UploadLock]:
    """Check the token, take the lock, resume the writer and check the offset.

    ``stale_ok``: a token whose offset is not the upload's size is accepted (a
    status request, which is how the client on a stale Location learns where to go on).
    """
    upload_id = validate_upload_id(ctx.route.uuid)
    state = _check_token(ctx)
    lock = ctx.svc.locks.try_lock(upload_id)
    if lock is None:
        offset = state.offset if state is not None else 0
        raise _range_error(offset, upload_id, "another request is writing to this upload")
    try:
        writer = await ctx.run(deferred_state.resume, ctx.svc.locks, ctx.repo.blobs, upload_id)
    except BaseException:
        lock.release()
        raise
    if state is not None and state.offset != writer.size and not stale_ok:
        size = writer.size
        await _close(ctx, writer, lock)
        raise _range_error(
            size, upload_id, f"stale _state: it says {state.offset} bytes, the upload holds {size}"
        )
    return writer, lock


async def _close(ctx: Ctx, writer: BlobWriter, lock: UploadLock | None) -> None:
    """Close the writer (durable data, hash state) and release the lock, whatever happens."""
    try:
        await ctx.run(writer.close)
    except Exception as exc:  # the bytes written before are still on disk
        log.warning("upload %s: closing failed: %s", writer.id, exc)
    finally:
        if lock is not None:
            lock.release()


async def _cancel(ctx: Ctx, writer: BlobWriter, lock: UploadLock | None) -> None:
    try:
        await ctx.run(writer.cancel)
    except Exception as exc:
        log.warning("upload %s: cancelling failed: %s", writer.id, exc)
    finally:
        if lock is not None:
            lock.release(remove=True)


async def _receive(
    ctx: Ctx, writer: BlobWriter, lock: UploadLock | None, *, then: Then | None = None
) -> None:
    """Stream the body into an open upload, mapping failures to what the upload becomes.

    Too large: cancelled. Client gone or idle, or a storage error (a full disk,
    or a failed ``then``): closed at what was written, so the client can resume.
    """
    try:
        await _stream_into(ctx, writer, then=then)
    except BlobTooLarge:
        await _cancel(ctx, writer, lock)
        raise
    except ClientGone:
        raise
    except ClientIdle as exc:
        raise ApiError(
            "BLOB_UPLOAD_INVALID",
            str(exc),
            status=408,
            headers=[("Connection", "close"), ("Docker-Upload-UUID", writer.id)],
        ) from None
    except Exception as exc:
        errs = api_errors(exc)
        raise errs[0] from exc


# --- handlers ----------------------------------------------------------------


async def start_upload(ctx: Ctx) -> Response:
    """POST: a mount (201), a monolithic upload with ``?digest=`` (201), or a session (202)."""
    blobs = ctx.repo.blobs
    mount, source = ctx.req.arg("mount"), ctx.req.arg("from")
    digest_arg = ctx.req.arg("digest")
    before_ns = time.time_ns()
    try:
        if mount and source:
            writer = await ctx.run(blobs.create, mount_from=source, digest=mount)
        else:
            writer = await ctx.run(blobs.create)
    except BlobMounted as mounted:
        await ctx.req.drain(ctx.svc.idle_timeout)
        return _created(ctx, Digest.parse(str(mounted.digest)))
    if digest_arg is None:
        await ctx.req.drain(ctx.svc.idle_timeout)
        await ctx.run(writer.close)
        started = upload_start_time(before_ns, writer.started_at)
        return Response(
            202,
            [
                *_session_headers(ctx, writer, started),
                ("OCI-Chunk-Min-Length", str(ctx.svc.chunk_min_length)),
            ],
        )
    return await _complete(ctx, writer, None, digest_arg)


async def patch_upload(ctx: Ctx) -> Response:
    """PATCH: append the body; 202 only once the bytes it acknowledges are durable.

    The writer is closed (fsync) on the body's writer thread right after the
    last write; if that fails, the client gets the error, not a 202, and the
    upload stays at what is on disk. The hash state is stored after the
    answer, under the upload's state lock (:mod:`ocistore.server.deferred_state`).
    """
    _check_content_type(ctx)
    writer, lock = await _open(ctx)
    closing = DeferredState(writer, ctx.svc.locks)
    try:
        _declared_chunk(ctx, writer.size, writer.id)
        _check_length_limit(ctx, writer.size)
        await _receive(ctx, writer, lock, then=closing.close)
    except BaseException:
        closing.schedule()  # closed after all (a cancellation at the very end)
        if lock.held:
            await _close(ctx, writer, lock)
        raise
    closing.schedule()
    lock.release()
    return Response(202, _session_headers(ctx, writer))


async def finish_upload(ctx: Ctx) -> Response:
    """PUT ``?digest=``: the last chunk (optional), then verify and publish."""
    digest_arg = ctx.req.arg("digest")
    if not digest_arg:
        raise ApiError("DIGEST_INVALID", "digest missing", message="digest parameter missing")
    try:
        Digest.parse(digest_arg)
    except DigestError as exc:
        raise digest_invalid(exc) from None
    _check_content_type(ctx)
    writer, lock = await _open(ctx)
    return await _complete(ctx, writer, lock, digest_arg)


async def _complete(
    ctx: Ctx, writer: BlobWriter, lock: UploadLock | None, digest_arg: str
) -> Response:
    """Receive the final body into ``writer`` and commit it (under ``lock`` when given)."""
    try:
        dgst = Digest.parse(digest_arg)
    except DigestError as exc:
        await _cancel(ctx, writer, lock)
        raise digest_invalid(exc) from None
    try:
        chunk = _declared_chunk(ctx, writer.size, writer.id)
        _check_length_limit(ctx, writer.size)
        await _receive(ctx, writer, lock)
    except BaseException:
        if lock is None or lock.held:
            await _close(ctx, writer, lock)
        raise
    size = chunk.last + 1 if chunk is not None else -1
    try:
        desc = await ctx.run(writer.commit, Descriptor(digest=dgst, size=size))
    except (BlobInvalidDigest, BlobInvalidLength, DigestError):
        await _cancel(ctx, writer, lock)
        raise
    except BaseException:
        await _close(ctx, writer, lock)
        raise
    if lock is not None:
        lock.release(remove=True)
    if (rec := metrics.recorder()) is not None:
        _count_commit(rec, writer)
    log.debug("upload %s committed as %s (%d bytes)", writer.id, dgst, desc.size)
    return _created(ctx, dgst)


def _count_commit(rec: metrics.Recorder, writer: BlobWriter) -> None:
    """Whether the commit resumed from a hash state or read the data again (metrics)."""
    rec.count("uploads_completed")
    if writer.reread_bytes:
        rec.count("rereads")
        rec.count("reread_bytes", writer.reread_bytes)
    elif writer.resumed_from_state:
        rec.count("resumes")


async def upload_status(ctx: Ctx) -> Response:
    """GET: 204 with the upload's current Range and a fresh Location.

    This is how a client holding an older Location (a chunk refused with 416
    left its ``_state`` stale) learns where to resume, so the token's offset
    is not compared with the upload's here; the token must still be genuine
    and name this upload. While another request writes to the upload, 416 as
    for a PATCH (its Range would not be final).
    """
    writer, lock = await _open(ctx, stale_ok=True)
    await _close(ctx, writer, lock)
    return Response(204, _session_headers(ctx, writer))


async def cancel_upload(ctx: Ctx) -> Response:
    """DELETE: remove the upload and everything it stored."""
    writer, lock = await _open(ctx)
    await _cancel(ctx, writer, lock)
    return Response(204, [("Docker-Upload-UUID", writer.id), ("Content-Length", "0")])
