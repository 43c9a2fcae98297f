"""An upload, from its creation to its commit (distribution ``blobwriter.go``).

An upload lives in ``_uploads/<id>/`` (``startedat``, ``data`` and, with
resumable digests, ``hashstates/sha256/<offset>``) until it is committed into
``blobs/`` or cancelled. A :class:`BlobWriter` is one session on it, in this
order:

- ``create`` writes ``startedat`` and opens ``data``; ``resume`` reopens an
  upload and goes on hashing from the stored state covering all of its data
  (:mod:`.blobwriter_resumable`), or stops hashing when there is none;
- ``write`` hashes the bytes on the calling thread while the core's
  ``WriteBehind`` appends them to the file on a thread of the upload's own
  (drivers without a file descriptor are written through): hashing and the
  copy into the page cache cost about the same, and overlapped they keep up
  with a client the receiving thread alone could not;
- ``close`` makes the data durable, then stores the state covering it, so a
  state never vouches for bytes not on disk (``close_deferring_state``
  leaves that last step to its caller);
- ``commit`` checks the size and the digest (reading the upload back once
  when the running hash does not cover it, as distribution does), fsyncs the
  data, renames it into ``blobs/`` and only then links it into the
  repository: a process killed anywhere leaves no partial blob visible;
- ``cancel`` removes the upload.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import IO, TYPE_CHECKING, Any, Final, Protocol

from ocistore import _core
from ocistore.descriptor import OCTET_STREAM, Descriptor
from ocistore.digest import CANONICAL, Digest, digester
from ocistore.driver.base import Buffer, FileWriter
from ocistore.driver.buffers import byte_view
from ocistore.driver.durable import close_later
from ocistore.errors import (
    BlobInvalidDigest,
    BlobInvalidLength,
    BlobUploadInvalid,
    BlobUploadUnknown,
    PathNotFound,
    WriterClosed,
)
from ocistore.storage import blobwriter_resumable as resumable
from ocistore.storage import paths
from ocistore.storage.blobwriter_resumable import Hasher
from ocistore.storage.wholefiles import read_whole

if TYPE_CHECKING:
    from ocistore.storage.linkedblobstore import LinkedBlobStore

__all__ = [
    "PIECE",
    "READ_CHUNK",
    "BlobWriter",
    "UploadStatus",
    "format_started_at",
    "parse_started_at",
    "upload_status",
]

log = logging.getLogger("ocistore.storage")

READ_CHUNK: Final = 1 << 20
"""Bytes per read when streaming a request body in, or an upload back at commit."""

PIECE: Final = 1 << 20
"""Bytes per piece handed to the write-behind lane: the next one is hashed while it is written."""

EMPTY_SHA256: Final = Digest(
    "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
)

_RFC3339: Final = re.compile(
    r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:Z|[+-]\d{2}:\d{2})"
)


class _Lane(Protocol):
    """The core's ``WriteBehind``."""

    def submit(self, data: Any, offset: int, /) -> None: ...
    def settle(self, in_flight: int = 0) -> None: ...
    def abandon(self) -> None: ...
    def close(self) -> None: ...


class _Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


class BlobWriter:
    """One upload session. Use :meth:`LinkedBlobStore.create` / :meth:`LinkedBlobStore.resume`.

    ``write`` takes any buffer and does not copy it; ``close`` leaves the
    upload resumable (``with`` closes, never cancels); ``commit`` verifies and
    publishes it; ``cancel`` removes it.
    """

    def __init__(
        self,
        store: LinkedBlobStore,
        upload_id: str,
        started_at: datetime,
        writer: FileWriter | None,
        *,
        hasher: Hasher | None = None,
        resumed_from_state: bool = False,
    ) -> None:
        self._store = store
        self._driver = store.registry.driver
        self.id = upload_id
        self.started_at = started_at
        self._writer: FileWriter | None = writer
        # None: a new upload on a driver that opens ``data`` at the first byte
        self._lazy = writer is None
        self._fd = writer.fileno() if writer is not None else None
        self._size = writer.size if writer is not None else 0
        # The core is captured now, so a writer keeps one core for its life.
        self._write_behind_lane: Callable[[int, bool], _Lane] = _core.WriteBehind
        self._lane: _Lane | None = None  # started by the first write to a file descriptor
        self._states = resumable.enabled(store.registry)
        # The running sha256 covers all the data iff ``_hasher`` is not None.
        if hasher is None and self._size == 0:
            hasher = _core.Sha256()
        self._hasher: Hasher | None = hasher
        self._done: str | None = None  # "closed", "committed", "cancelled", "failed"
        self.resumed_from_state = resumed_from_state
        """True when ``resume`` restored a stored hash state (no re-read at commit)."""
        self.reread_bytes = 0
        """Bytes ``commit`` read back from storage to hash (0 if the running hash sufficed)."""

    # --- opening ----------------------------------------------------------------

    @classmethod
    def create(cls, store: LinkedBlobStore) -> BlobWriter:
        """Start a new upload: write ``startedat``, open ``data``.

        A driver whose files cost requests to open (``lazy_upload_data``:
        S3) opens ``data`` only when the first byte comes; until then the
        upload is one without data, which every reader of uploads takes as
        empty (as one begun by another registry).
        """
        upload_id = str(uuid.uuid4())
        started = datetime.now(UTC).replace(microsecond=0)
        name = store.name
        driver = store.registry.driver
        driver.put_content(
            paths.path_for(paths.UploadStartedAt(name, upload_id)),
            format_started_at(started).encode("ascii"),
        )
        if getattr(driver, "lazy_upload_data", False):
            return cls(store, upload_id, started, None)
        writer = driver.writer(paths.path_for(paths.UploadData(name, upload_id)), append=False)
        return cls(store, upload_id, started, writer)

    @classmethod
    def resume(cls, store: LinkedBlobStore, upload_id: str) -> BlobWriter:
        """Reopen an upload; :class:`BlobUploadUnknown` if it does not exist (any more)."""
        started = _read_started_at(store, upload_id)
        driver = store.registry.driver
        writer = driver.writer(paths.path_for(paths.UploadData(store.name, upload_id)), append=True)
        try:
            hasher = resumable.restore_state(store, upload_id, writer.size)
        except BaseException:
            writer.close()
            raise
        return cls(
            store, upload_id, started, writer, hasher=hasher, resumed_from_state=hasher is not None
        )

    # --- state ------------------------------------------------------------------

    @property
    def size(self) -> int:
        """Bytes received so far (some may still be on their way to the file until ``close``)."""
        return self._size

    @property
    def hashing(self) -> bool:
        """Whether the running sha256 covers every byte (else commit re-reads the data)."""
        return self._hasher is not None

    def fileno(self) -> int | None:
        """The upload data's file descriptor (None for a driver without one).

        The bytes of a ``write`` of anything but ``bytes`` are in that file once it
        returned, so another reader may follow the upload there (the proxy's fill).
        """
        return self._fd

    def running_digest(self) -> Digest | None:
        """The sha256 of every byte written so far, or None when the running hash does not
        cover them (after a failed write, or a resume without a state: commit re-reads).

        What ``commit`` will check, known before its fsync: a pull-through cache
        finishes its clients' responses on it while the commit makes the data durable.
        """
        if self._hasher is None or self.resumed_from_state:
            return None
        return Digest.from_parts(CANONICAL, self._hasher.hexdigest())

    def _open_writer(self) -> FileWriter:
        if self._done is not None:
            raise WriterClosed(self.id)
        if self._writer is None:
            if not self._lazy:
                raise WriterClosed(self.id)
            self._lazy = False
            data = paths.path_for(paths.UploadData(self._store.name, self.id))
            self._writer = self._driver.writer(data, append=False)
            self._fd = self._writer.fileno()
        return self._writer

    # --- writing ----------------------------------------------------------------

    def write(self, data: Buffer) -> int:
        """Append ``data`` (any buffer; not copied) and return its length.

        The bytes are hashed here while the write-behind lane appends them,
        in pieces of :data:`PIECE`, one piece ahead of the hashing; the lane
        also starts their writeback, so the fsync that ``close`` and
        ``commit`` must do finds little left. Immutable ``bytes`` (what a
        server receives) may still be in flight when this returns; any other
        buffer is written when it returns, so the caller may reuse it. A
        failed write is raised by this call or the next one (or by
        ``close``/``commit``); the hasher is then dropped and the size is
        the file's.
        """
        writer = self._open_writer()
        with byte_view(data) as view:
            if not view.nbytes:
                return 0
            if self._fd is None:
                return self._write_through(writer, view)
            return self._write_behind(writer, self._fd, view, settle=not isinstance(data, bytes))

    def _write_behind(self, writer: FileWriter, fd: int, view: memoryview, *, settle: bool) -> int:
        lane = self._lane
        if lane is None:
            lane = self._lane = self._write_behind_lane(fd, True)
        hasher = self._hasher
        accepted = 0
        try:
            for start in range(0, view.nbytes, PIECE):
                piece = view[start : start + PIECE]
                lane.submit(piece, self._size + accepted)
                if hasher is not None:
                    hasher.update(piece)
                accepted += piece.nbytes
                lane.settle(in_flight=1)
            if settle:
                lane.settle()
        except BaseException:
            self._lane = None
            lane.abandon()
            self._lost_track(writer)
            raise
        self._size += accepted
        return accepted

    def write_from(self, src: int, length: int, buffer: Buffer, wait: float) -> tuple[int, bool]:
        """Append up to ``length`` bytes arriving on the stream ``src``; ``(copied, ended)``.

        Each read goes through ``buffer`` (reused) into the hash and the file
        on this thread, in one step of the core (:func:`ocistore._core.copy_hashed`:
        no GIL on the native core), with no other copy: how the proxy stores
        an upstream body. Returns early with what came when ``src`` ends
        (``ended``) or ``wait`` seconds passed. The bytes counted
        are in the file when this returns. Only for a driver with a file
        descriptor (:meth:`fileno`): else ValueError. A failed read or write
        is raised; the hasher is then dropped and the size is the file's.
        """
        writer = self._open_writer()
        fd = self._fd
        if fd is None:
            raise ValueError(f"upload {self.id} has no file descriptor to copy a stream into")
        self._settle(writer)  # the bytes of earlier writes go first
        hasher = self._hasher if self._hasher is not None else _core.Sha256()
        try:
            copied, ended = _core.copy_hashed(hasher, src, fd, length, buffer, wait)
        except BaseException:
            self._lost_track(writer)
            raise
        self._size += copied
        return copied, ended

    def _write_through(self, writer: FileWriter, view: memoryview) -> int:
        """Hash and write ``view`` on this thread (a driver without a file descriptor)."""
        try:
            if self._hasher is not None:
                self._hasher.update(view)
            n = writer.write(view)
        except BaseException:
            self._lost_track(writer)
            raise
        self._size += n
        return n

    def _settle(self, writer: FileWriter) -> None:
        """Wait for the writes still in flight; a failed one is raised (and the hasher dropped)."""
        lane, self._lane = self._lane, None
        if lane is None:
            return
        try:
            lane.close()
        except BaseException:
            self._lost_track(writer)
            raise

    def _lost_track(self, writer: FileWriter) -> None:
        """After a failed write the hash and the file may disagree: trust only the file."""
        self._hasher = None
        self._size = writer.size

    def read_from(self, stream: IO[bytes] | _Readable, chunk_size: int = READ_CHUNK) -> int:
        """Copy ``stream`` to the upload in chunks through one reused buffer; return the bytes copied."""
        total = 0
        readinto = getattr(stream, "readinto", None)
        if readinto is None:
            while chunk := stream.read(chunk_size):
                total += self.write(chunk)
            return total
        buffer = bytearray(chunk_size)
        with memoryview(buffer) as view:
            while n := readinto(view):
                total += self.write(view[:n])
        return total

    # --- closing ----------------------------------------------------------------

    def close(self) -> None:
        """Stop writing and keep the upload resumable (a no-op once committed or cancelled).

        With hash states, the data is made durable first and then the state
        covering it is stored: a state never vouches for bytes not on disk.
        """
        store = self.close_deferring_state()
        if store is not None:
            store()

    def close_deferring_state(self) -> Callable[[], None] | None:
        """Like :meth:`close`, but return the call that stores the hash state instead of making it.

        The data is durable when this returns (an error here means it may
        not be). The returned callable (None when no state is due) stores the
        state covering exactly those bytes and prunes the older ones; it may
        run later and on any thread, but until it has, a :meth:`resume` finds
        no state at the upload's size and falls back to re-hashing at commit.
        So whoever defers it must make the next resume wait for it (the
        server's state lock, :mod:`ocistore.server.deferred_state`). Never
        calling it is safe, only slower.
        """
        if self._done is not None:
            return None
        if self._lazy:  # nothing was written: nothing to store
            self._done = "closed"
            return None
        writer = self._open_writer()
        self._settle(writer)
        self._done = "closed"
        self._writer = None
        if self._states and self._hasher is not None:
            writer.commit()
            return functools.partial(self._store_state, self._hasher)
        writer.close()
        return None

    def __enter__(self) -> BlobWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _store_state(self, hasher: Hasher) -> None:
        """Store the state after ``size`` bytes (data already durable) and prune the others."""
        resumable.store_state(self._store, self.id, self._size, hasher)

    # --- committing -------------------------------------------------------------

    def commit(self, provisional: Descriptor) -> Descriptor:
        """Verify the upload against ``provisional`` and publish it; return the canonical descriptor.

        ``provisional.size`` (unless -1) must equal the bytes received, else
        :class:`BlobInvalidLength`; the data must hash to ``provisional.digest``
        (sha256, sha512 or blake3), else :class:`BlobInvalidDigest` carrying the
        expected and computed digests. The blob is stored under its sha256
        digest (kept if already there) and linked under both digests; the
        upload directory is removed. After a failed check the upload is left
        in place for ``cancel`` (or another ``resume``).
        """
        writer = self._open_writer()
        self._settle(writer)
        self._writer = None
        self._done = "failed"
        # When the blob exists already, the upload's data is unlinked below;
        # freeing its blocks waits for the last descriptor: this duplicate,
        # closed in the background (close_later), so the client does not wait.
        keep = os.dup(self._fd) if self._fd is not None else None
        try:
            writer.commit()  # fsync: the data is durable before it is renamed
            data_path = paths.path_for(paths.UploadData(self._store.name, self.id))
            size = self._stat_size(data_path)
            if provisional.size >= 0 and provisional.size != size:
                raise BlobInvalidLength(
                    f"upload {self.id} holds {size} bytes, commit says {provisional.size}",
                    expected=provisional.size,
                    actual=size,
                )
            canonical = self._verify(provisional.digest, data_path, size)
            self._move(data_path, canonical, size)
            stored = Descriptor(digest=canonical, size=size, media_type=OCTET_STREAM)
            self._store.link_blob(stored, provisional.digest)
            self._remove_upload()
        finally:
            if keep is not None:
                close_later(keep)
        self._done = "committed"
        return provisional.with_(
            digest=canonical, size=size, media_type=provisional.media_type or OCTET_STREAM
        )

    def _stat_size(self, data_path: str) -> int:
        try:
            info = self._driver.stat(data_path)
        except PathNotFound:
            # No data file at all (an upload another registry began lazily):
            # only the empty blob can come of it, as in distribution.
            return 0
        if info.is_dir:
            raise BlobUploadInvalid(f"unexpected directory at upload location {data_path}")
        if info.size != self._size:
            # Someone else appended (two writers on one upload): hash from storage.
            self._hasher = None
        return info.size

    def _verify(self, expected: Digest, data_path: str, size: int) -> Digest:
        """Return the sha256 of the upload, checking it also hashes to ``expected``."""
        sha256 = self._hasher
        other = digester(expected.algorithm) if expected.algorithm != CANONICAL else None
        if sha256 is None or other is not None:
            # A pass over the data is due anyway: let it also give the sha256,
            # unless the running hash was computed entirely by this process
            # (a restored state is only as good as the file it came from).
            trust_running = sha256 is not None and not self.resumed_from_state
            again = None if trust_running else _core.Sha256()
            self._reread(data_path, size, [h for h in (again, other) if h is not None])
            if again is not None:
                sha256 = again
        assert sha256 is not None
        canonical = Digest.from_parts(CANONICAL, sha256.hexdigest())
        computed = (
            canonical if other is None else Digest.from_parts(expected.algorithm, other.hexdigest())
        )
        if computed != expected and self.resumed_from_state and self.reread_bytes == 0:
            # The running hash came from a stored state: before refusing the
            # upload, make sure the state did not lie (states live on disk).
            # Usually the client named the wrong digest, so this is not (yet) a warning.
            log.info("upload %s: digest mismatch on a state-derived hash; re-reading", self.id)
            self._hasher = None
            try:
                result = self._verify(expected, data_path, size)
            except BlobInvalidDigest as exc:
                if exc.computed != canonical:
                    log.warning(
                        "upload %s: stored hash state was wrong (%s; the data hashes to %s)",
                        self.id,
                        canonical,
                        exc.computed,
                    )
                raise
            log.warning("upload %s: stored hash state was wrong; the data matches", self.id)
            return result
        if computed != expected:
            log.info("upload %s: content hashes to %s, not %s", self.id, computed, expected)
            raise BlobInvalidDigest(expected, "content does not match digest", computed)
        return canonical

    def _reread(self, data_path: str, size: int, hashers: list[Any]) -> None:
        if size == 0:
            return
        try:
            reader = self._driver.reader(data_path, 0)
        except PathNotFound:
            raise BlobUploadUnknown(self.id) from None
        buffer = bytearray(min(size, 4 * READ_CHUNK))
        readinto: Callable[[memoryview], int | None] = getattr(reader, "readinto")  # noqa: B009
        with reader, memoryview(buffer) as view:
            while n := readinto(view):
                chunk = view[:n]
                for h in hashers:
                    h.update(chunk)
                self.reread_bytes += n
        if self.reread_bytes != size:
            raise BlobUploadInvalid(f"upload {self.id} changed while it was being verified")

    def _move(self, data_path: str, canonical: Digest, size: int) -> None:
        """Rename the data into ``blobs/`` unless the blob is there already (then keep that one)."""
        blobs = self._store.blobstore
        self._store.registry.gc_fence.protect((canonical,))  # a collection may be sweeping it
        if blobs.exists(canonical):
            return  # content addressed: the same bytes; the upload goes with _remove_upload
        target = blobs.data_path(canonical)
        try:
            self._driver.move(data_path, target)
        except PathNotFound:
            if canonical == EMPTY_SHA256 and size == 0:
                self._driver.put_content(target, b"")
            elif not blobs.exists(canonical):
                raise BlobUploadUnknown(self.id) from None

    # --- cancelling -------------------------------------------------------------

    def cancel(self) -> None:
        """Abandon the upload and remove everything it stored."""
        if self._done in ("committed", "cancelled"):
            raise WriterClosed(self.id)
        lane, self._lane = self._lane, None
        if lane is not None:
            lane.abandon()
        writer, self._writer = self._writer, None
        self._done = "cancelled"
        if writer is not None:
            writer.cancel()
        self._remove_upload()

    def _remove_upload(self) -> None:
        with contextlib.suppress(PathNotFound):
            self._driver.delete(paths.path_for(paths.Upload(self._store.name, self.id)))


@dataclass(frozen=True, slots=True)
class UploadStatus:
    """What a status request needs to know of an upload, read without opening it for writing."""

    id: str
    size: int
    started_at: datetime


def upload_status(store: LinkedBlobStore, upload_id: str) -> UploadStatus:
    """Size and start time of an upload; :class:`BlobUploadUnknown` if it does not exist.

    Unlike :meth:`BlobWriter.resume` this writes nothing (no fsync, no hash state).
    """
    started = _read_started_at(store, upload_id)
    data = paths.path_for(paths.UploadData(store.name, upload_id))
    try:
        size = store.registry.driver.stat(data).size
    except PathNotFound:
        size = 0  # begun lazily by another registry: nothing received yet
    return UploadStatus(upload_id, size, started)


def _read_started_at(store: LinkedBlobStore, upload_id: str) -> datetime:
    paths.validate_upload_id(upload_id)
    started_path = paths.path_for(paths.UploadStartedAt(store.name, upload_id))
    try:
        raw = read_whole(store.registry.driver, started_path)
    except PathNotFound:
        raise BlobUploadUnknown(upload_id) from None
    try:
        return parse_started_at(raw.decode("ascii"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise BlobUploadInvalid(f"{started_path}: unreadable start time ({exc})") from None


def format_started_at(when: datetime) -> str:
    """``startedat`` as Go writes it: ``time.Now().UTC().Format(time.RFC3339)``."""
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_started_at(text: str) -> datetime:
    """Parse an RFC 3339 time (Go's ``time.Parse(time.RFC3339, …)``); ValueError if it is not one."""
    if _RFC3339.fullmatch(text) is None:
        raise ValueError(f"not an RFC 3339 time: {text!r}")
    head, dot, rest = text.partition(".")
    if dot:  # Python keeps microseconds: cut the fraction to 6 digits
        digits = re.match(r"\d+", rest)
        assert digits is not None
        frac = digits.group()
        text = f"{head}.{frac[:6]}{rest[len(frac) :]}"
    return datetime.fromisoformat(text).astimezone(UTC)
