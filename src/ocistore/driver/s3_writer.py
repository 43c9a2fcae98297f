"""The S3 driver's appendable writer: a multipart upload plus a small tail, resumable anywhere.

A file being written lives in the bucket in one of two shapes:

- **small** (no part uploaded yet): a plain object at the file's key, holding
  every byte; reopening for append reads it back (it is smaller than a part);
- **in progress**: an open multipart upload at the file's key holding whole
  parts of ``chunksize`` bytes, plus a *state object* beside the key
  (``<key>~upload``; ``~`` never occurs in a driver path) that records the
  upload id, each part's ETag and size, and carries the tail that is not yet
  a part. ``close``/``commit`` store that object (one PUT), so any instance
  can resume the file from the bucket, and no byte is uploaded twice.

Nothing is read back to finish a file: reading or moving an in-progress file
*materializes* it, uploading the tail as the last part and completing the
multipart upload (S3 assembles the object server-side). A materialized file
that is appended to again becomes a new multipart upload whose first part is
copied server-side from the object (UploadPartCopy) when it is at least a
part long.

When the object and the state object both exist (a crash between two steps),
the larger wins; in the two windows where their sizes are equal their bytes
are equal too. ``cancel`` aborts the multipart upload and removes both.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import Future
from types import TracebackType
from typing import TYPE_CHECKING, Final

from ocistore.driver.base import Buffer
from ocistore.driver.buffers import byte_view
from ocistore.driver.s3_options import MAX_PART, MIN_PART
from ocistore.errors import DriverError

if TYPE_CHECKING:
    from ocistore.driver.s3 import S3Driver

__all__ = ["STATE_SUFFIX", "S3Writer", "UploadState", "decode_state", "encode_state"]

STATE_SUFFIX: Final = "~upload"
"""Appended to a file's key to name its upload state object."""

IN_FLIGHT: Final = 3
"""Parts one writer may have on their way to S3 while it takes more data (memory: that many chunks)."""

_MAGIC: Final = b"ocistore-s3-upload 1\n"


class UploadState:
    """What the state object records: the multipart upload, its parts and the tail bytes."""

    __slots__ = ("mtime", "parts", "size", "tail", "upload_id")

    def __init__(
        self, upload_id: str, parts: list[tuple[str, int]], tail: bytes, mtime: float
    ) -> None:
        self.upload_id = upload_id
        self.parts = parts
        self.tail = tail
        self.mtime = mtime
        self.size = sum(size for _, size in parts) + len(tail)


def encode_state(state: UploadState) -> bytes:
    header = {
        "upload_id": state.upload_id,
        "parts": [[etag, size] for etag, size in state.parts],
        "size": state.size,
        "tail": len(state.tail),
        "mtime": state.mtime,
    }
    return _MAGIC + json.dumps(header, separators=(",", ":")).encode() + b"\n" + state.tail


def decode_state(raw: bytes, path: str, driver: str) -> UploadState:
    """Parse a state object strictly; a damaged one is a DriverError naming the path."""

    def bad(reason: str) -> DriverError:
        return DriverError(path, driver, f"damaged upload state: {reason}")

    if not raw.startswith(_MAGIC):
        raise bad("unknown format")
    end = raw.find(b"\n", len(_MAGIC))
    if end < 0:
        raise bad("no header")
    try:
        header = json.loads(raw[len(_MAGIC) : end])
    except ValueError as exc:
        raise bad(f"header is not JSON ({exc})") from None
    if not isinstance(header, dict):
        raise bad("header is not an object")
    upload_id, parts, size, tail_len, mtime = (
        header.get(k) for k in ("upload_id", "parts", "size", "tail", "mtime")
    )
    if not isinstance(upload_id, str) or not upload_id:
        raise bad("no upload id")
    if not isinstance(parts, list) or not all(
        isinstance(p, list)
        and len(p) == 2
        and isinstance(p[0], str)
        and isinstance(p[1], int)
        and p[1] > 0
        for p in parts
    ):
        raise bad("malformed parts")
    if not isinstance(mtime, int | float) or not isinstance(tail_len, int):
        raise bad("malformed header")
    tail = raw[end + 1 :]
    if len(tail) != tail_len:
        raise bad(f"tail has {len(tail)} bytes, header says {tail_len}")
    state = UploadState(upload_id, [(p[0], p[1]) for p in parts], tail, float(mtime))
    if state.size != size:
        raise bad(f"parts and tail hold {state.size} bytes, header says {size}")
    return state


class S3Writer:
    """A :class:`~ocistore.driver.base.FileWriter` on S3 (see the module docstring)."""

    def __init__(
        self,
        driver: S3Driver,
        path: str,
        *,
        state: UploadState | None = None,
        base_size: int = 0,
        object_exists: bool = False,
        new: bool = False,
    ) -> None:
        self._driver = driver
        self._path = path
        self._key = driver.key(path)
        self._chunk = driver.options.chunksize
        self._upload_id: str | None = state.upload_id if state else None
        self._parts: list[tuple[str, int]] = list(state.parts) if state else []
        self._tail = bytearray(state.tail) if state else bytearray()
        self._size = state.size if state else base_size
        # bytes held by the plain object and not yet taken into parts or tail
        self._base = 0 if state else base_size
        self._object_exists = object_exists
        self._state_exists = state is not None
        self._dirty = new  # a new file exists once closed, even if empty
        self.mod_time = state.mtime if state else time.time()
        self._done: str | None = None
        # parts being uploaded on the driver's pool: (index into _parts, future ETag)
        self._pending: list[tuple[int, Future[str]]] = []
        self._failed: BaseException | None = None

    # --- FileWriter -------------------------------------------------------------------

    @property
    def size(self) -> int:
        return self._size

    def fileno(self) -> int | None:
        return None

    def write(self, data: Buffer) -> int:
        view = byte_view(data)
        with view:
            self._check_open()
            n = view.nbytes
            if n == 0:
                return 0
            if self._base:
                self._adopt_base()
            self._tail += view
        self._size += n
        self._dirty = True
        self.mod_time = time.time()
        while len(self._tail) >= self._chunk:
            with memoryview(self._tail) as tail:
                self._submit_part(bytes(tail[: self._chunk]))
            del self._tail[: self._chunk]
        return n

    def commit(self) -> None:
        self._check_open()
        try:
            self._persist()
        except BaseException:
            self._end("failed")
            raise
        self._end("committed")

    def close(self) -> None:
        if self._done is not None:
            return
        try:
            self._persist()
        finally:
            self._end("closed")

    def cancel(self) -> None:
        if self._done != "failed":  # a spoilt writer can still remove what it left
            self._check_open()
        self._end("cancelled")
        self._drain()
        if self._upload_id is not None:
            self._driver.abort_upload(self._path, self._key, self._upload_id)
        self._driver.delete_keys(self._path, [self._key, self._key + STATE_SUFFIX])

    def __enter__(self) -> S3Writer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # --- what the driver asks of an open writer --------------------------------------

    def materialize(self) -> None:
        """Make the object at the key hold every byte written so far (the writer stays open)."""
        if self._upload_id is None:
            self._persist()
            return
        self._settle()
        if self._tail:
            self._upload_part(bytes(self._tail))
            self._tail = bytearray()
        self._driver.complete_upload(self._path, self._key, self._upload_id, self._parts)
        self._object_exists = True
        self._upload_id, self._parts = None, []
        if self._state_exists:
            self._driver.delete_keys(self._path, [self._key + STATE_SUFFIX])
            self._state_exists = False
        self._base = self._size
        self._dirty = False

    # --- internals --------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._done is not None:
            raise ValueError(f"writer for {self._path} is {self._done}")

    def _end(self, how: str) -> None:
        self._done = how
        self._driver.forget_writer(self._path, self)

    def _submit_part(self, body: bytes) -> None:
        """Upload ``body`` as the next part on the driver's pool (at most IN_FLIGHT at once)."""
        if self._failed is not None:
            raise DriverError(self._path, self._driver.name, f"a part failed: {self._failed}")
        if self._upload_id is None:
            self._upload_id = self._driver.create_upload(self._path, self._key)
        index = len(self._parts)
        self._parts.append(("", len(body)))
        future = self._driver.submit_part(self._path, self._key, self._upload_id, index + 1, body)
        self._pending.append((index, future))
        while len(self._pending) > IN_FLIGHT:
            self._settle_one()

    def _settle_one(self) -> None:
        index, future = self._pending.pop(0)
        try:
            etag = future.result()
        except BaseException as exc:
            self._failed = exc
            self._drain()
            self._end("failed")  # no longer answers for the file: the bucket does
            raise
        self._parts[index] = (etag, self._parts[index][1])

    def _settle(self) -> None:
        """Wait for every part in flight; the first failure is raised (and the writer is spoilt)."""
        if self._failed is not None:
            raise DriverError(self._path, self._driver.name, f"a part failed: {self._failed}")
        while self._pending:
            self._settle_one()

    def _drain(self) -> None:
        """Wait for the parts in flight, ignoring their outcome (the upload is being dropped)."""
        pending, self._pending = self._pending, []
        for _, future in pending:
            future.exception()

    def _upload_part(self, body: bytes) -> None:
        if self._upload_id is None:
            self._upload_id = self._driver.create_upload(self._path, self._key)
        number = len(self._parts) + 1
        etag = self._driver.upload_part(self._path, self._key, self._upload_id, number, body)
        self._parts.append((etag, len(body)))

    def _adopt_base(self) -> None:
        """Before appending to a plain object: take its bytes in as the tail or as copied parts."""
        base, self._base = self._base, 0
        if base < MIN_PART:
            self._tail = bytearray(self._driver.read_object(self._path, self._key))
            if len(self._tail) != base:
                raise DriverError(self._path, self._driver.name, "file changed while appending")
            return
        self._upload_id = self._driver.create_upload(self._path, self._key)
        for number, start in enumerate(range(0, base, MAX_PART), 1):
            end = min(base, start + MAX_PART) - 1
            etag = self._driver.copy_part(
                self._path, self._key, self._upload_id, number, self._key, start, end
            )
            self._parts.append((etag, end - start + 1))
        self._store_state()

    def _store_state(self) -> None:
        assert self._upload_id is not None
        self._settle()
        state = UploadState(self._upload_id, self._parts, bytes(self._tail), self.mod_time)
        self._driver.put_object(self._path, self._key + STATE_SUFFIX, encode_state(state))
        self._state_exists = True
        if self._object_exists:
            self._driver.delete_keys(self._path, [self._key])
            self._object_exists = False

    def _persist(self) -> None:
        if not self._dirty:
            return
        if self._upload_id is None:
            self._driver.put_object(self._path, self._key, bytes(self._tail), mtime=self.mod_time)
            self._object_exists = True
            if self._state_exists:
                self._driver.delete_keys(self._path, [self._key + STATE_SUFFIX])
                self._state_exists = False
        else:
            self._store_state()
        self._dirty = False

    def __repr__(self) -> str:
        return f"<S3Writer {self._path} size={self._size} {self._done or 'open'}>"
