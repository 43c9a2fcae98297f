"""One upstream download per blob, teed into the store and to every client that asks meanwhile.

A :class:`Fill` is started by the first GET or HEAD of a blob the store lacks
and lives in :class:`Fills` (per worker) until it ends, so every later
request for the digest joins it instead of asking the upstream again; the
other workers of the host follow it through :mod:`ocistore.proxy.host`. The
fill task copies the upstream body into a
:class:`~ocistore.storage.blobwriter.BlobWriter` (hashing as it goes; resumable
digests are off in proxy mode), whose file the clients read from: from the
connection's socket itself, read, hashed and written on the store's thread in
one step of the core per hop, once aiohttp has parsed the head; through
aiohttp, in pieces, when it cannot (TLS, a chunked body), and also into an
unnamed spool file when the upload has no file descriptor. Then it commits
the upload, which verifies size and digest before the blob becomes visible. The task belongs to no client: a client that
disconnects stops only its own response.

A client's response (:meth:`Fill.body`, any byte range) follows the download:
it sends what has arrived (as ranges of the file, which ocistore's server
sends without copying them through Python), waits for more, and withholds
the last byte of its range until the whole download hashed to the digest (the writer's running
hash, :meth:`~ocistore.storage.blobwriter.BlobWriter.running_digest`; the
commit's fsync then goes on while the clients finish). So no client ever completes a response
from a download that turns out short, long or wrong: when the fill fails, each
response is cut before its end (the server then closes the connection), the
upload is cancelled, nothing is stored, and the next request starts afresh.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import tempfile
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Final

from ocistore.descriptor import Descriptor
from ocistore.digest import Digest
from ocistore.errors import BlobInvalidDigest
from ocistore.server.http import StreamRange

__all__ = ["PIECE", "Fill", "FillFailed", "Fills"]

log = logging.getLogger("ocistore.proxy")

PIECE: Final = 1 << 20
"""Bytes per piece read from the upstream and written to the store and the spool."""
SEND: Final = 2 << 20
"""Most bytes per body message to a client."""
QUEUE: Final = 8
"""Pieces read ahead of the store's writes (the upstream keeps sending meanwhile)."""
STEP: Final = 4 << 20
"""Most bytes per hop to the store's thread when it reads the upstream's socket itself."""
BUFFER: Final = 256 << 10
"""The reused buffer each socket read lands in (small enough to stay in the CPU's cache
between the read, the hash and the write)."""
WAIT: Final = 1.0
"""Seconds one hop lasts at most: the clients see a slow upstream's bytes at least this often,
and the fill sees its timeout."""


class FillFailed(OSError):
    """The upstream download failed; a response following it ends short (never completes)."""


Run = Callable[..., Awaitable[Any]]


class Fill:
    """One blob being fetched: its size once known, the bytes so far, its outcome."""

    def __init__(self, digest: Digest) -> None:
        self.digest = digest
        self.size: int | None = None
        self.progress = 0
        self.done = False
        self.verified = False
        """All bytes arrived and hash to the digest (the commit may still be running)."""
        self.error: BaseException | None = None
        self.fd = -1
        self.names: set[str] = set()
        """Repositories to link the blob into when it is committed."""
        self._changed = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    # --- progress -------------------------------------------------------------------

    def notify(self) -> None:
        ev, self._changed = self._changed, asyncio.Event()
        ev.set()

    @property
    def ended(self) -> bool:
        return self.done or self.error is not None

    async def started(self) -> None:
        """Wait until the upstream answered (the size is known) or the fill failed."""
        while self.size is None and not self.ended:
            await self._changed.wait()
        if self.error is not None:
            raise self.error

    async def finished(self) -> None:
        """Wait for the outcome; raises the fill's error."""
        while not self.ended:
            await self._changed.wait()
        if self.error is not None:
            raise self.error

    # --- a client's response ----------------------------------------------------------

    def body(self, first: int, length: int, read: Run) -> AsyncIterator[StreamRange]:
        """Bytes ``first`` .. ``first + length`` as they arrive; the last one after the commit.

        Yields ranges of the file the fill writes (the server sends each
        without copying it through Python). Takes its own descriptor of it
        now (synchronously), so it can read after the fill closed its own.
        """
        fd = os.dup(self.fd)
        return self._body(fd, first, first + length)

    async def _body(self, fd: int, pos: int, end: int) -> AsyncIterator[StreamRange]:
        try:
            while pos < end:
                if self.error is not None:
                    raise FillFailed(f"upstream download of {self.digest} failed: {self.error}")
                limit = end if self.done or self.verified else min(self.progress, end - 1)
                if pos >= limit:
                    await self._changed.wait()
                    continue
                yield StreamRange(fd, pos, limit - pos)
                pos = limit
        finally:
            os.close(fd)


class Fills:
    """The fills running in this worker, by digest."""

    def __init__(self, spool_dir: str) -> None:
        self.spool_dir = spool_dir
        self._fills: dict[Digest, Fill] = {}

    def get(self, digest: Digest) -> Fill | None:
        return self._fills.get(digest)

    def __len__(self) -> int:
        return len(self._fills)

    def start(
        self,
        digest: Digest,
        name: str,
        open_upstream: Callable[[], Any],
        store: Any,
        run: Run,
        on_commit: Callable[[Descriptor, set[str]], Awaitable[None]],
        lead: tuple[Any, int] | None = None,
    ) -> Fill:
        """The running fill of ``digest`` (``name`` joins it), or a new one.

        ``open_upstream()`` is an async context manager yielding the upstream's
        GET response (:class:`~ocistore.proxy.client.UpstreamResponse`, status
        checked by the caller's wrapper); ``store`` is the LinkedBlobStore the
        upload is made in; ``on_commit`` links and holds the blob afterwards.
        ``lead`` is the host-wide lock this worker took for the digest
        (:class:`~ocistore.proxy.host.HostFills` and its descriptor): the fill
        publishes its progress there for the other workers and releases it
        when it ends.
        """
        fill = self._fills.get(digest)
        if fill is not None:
            fill.names.add(name)
            if lead is not None:
                lead[0].release(digest, lead[1])
            return fill
        fill = Fill(digest)
        fill.names.add(name)
        self._fills[digest] = fill
        fill.task = asyncio.get_running_loop().create_task(
            self._run(fill, open_upstream, store, run, on_commit, lead), name=f"proxy-fill-{digest}"
        )
        return fill

    async def _run(
        self,
        fill: Fill,
        open_upstream: Callable[[], Any],
        store: Any,
        run: Run,
        on_commit: Callable[[Descriptor, set[str]], Awaitable[None]],
        lead: tuple[Any, int] | None,
    ) -> None:
        writer: Any = None
        fill_id = uuid.uuid4().hex
        try:
            async with open_upstream() as resp:
                size = resp.content_length
                if size is None:
                    raise FillFailed("the upstream sent no Content-Length")
                writer = await run(store.create)
                fill.fd, spool = self._reading_fd(writer)
                fill.size = size
                if lead is not None:
                    lead[0].publish(fill.digest, fill.fd, size, fill_id, False)
                fill.notify()
                await self._copy(fill, resp, writer, size, run, spool)
            running = writer.running_digest() if fill.digest.algorithm == "sha256" else None
            if running is not None:
                if running != fill.digest:
                    raise BlobInvalidDigest(fill.digest, "content does not match digest", running)
                fill.verified = True
                if lead is not None:
                    lead[0].publish(fill.digest, fill.fd, size, fill_id, True)
                fill.notify()
            desc = await run(writer.commit, Descriptor(digest=fill.digest, size=size))
            writer = None
            await on_commit(desc, fill.names)
            fill.done = True
        except BaseException as exc:
            fill.error = exc
            # Let go before cleaning up: a client whose response was just cut may ask
            # again at once, and must start a new fill, not join this failed one.
            self._let_go(fill, lead)
            lead = None
            if writer is not None:
                with contextlib.suppress(Exception):
                    await run(writer.cancel)
            if not isinstance(exc, Exception):
                raise
            log.warning("proxy: fetching %s failed: %s", fill.digest, exc)
        finally:
            self._let_go(fill, lead)
            if fill.fd >= 0:
                os.close(fill.fd)

    def _let_go(self, fill: Fill, lead: tuple[Any, int] | None) -> None:
        """Forget ``fill`` (unless a newer fill of its digest replaced it), wake its clients,
        and release the host-wide lock if it holds it."""
        if self._fills.get(fill.digest) is fill:
            del self._fills[fill.digest]
        fill.notify()
        if lead is not None:
            lead[0].release(fill.digest, lead[1])

    def _reading_fd(self, writer: Any) -> tuple[int, bool]:
        """Where the clients read: the upload's own file, or a spool when it has no descriptor."""
        fd = writer.fileno()
        if fd is not None:
            # The upload is open for writing only: open the same inode again to read it
            # (it stays readable once committed, renamed, or removed).
            with contextlib.suppress(OSError):
                return os.open(f"/proc/self/fd/{fd}", os.O_RDONLY | os.O_CLOEXEC), False
        os.makedirs(self.spool_dir, exist_ok=True)
        with tempfile.TemporaryFile(dir=self.spool_dir, prefix="fill-") as spool:
            return os.dup(spool.fileno()), True  # unnamed: gone with its last descriptor

    async def _copy(
        self, fill: Fill, resp: Any, writer: Any, size: int, run: Run, spool: bool
    ) -> None:
        """The upstream body into the store (and the spool), ``fill.progress`` following it."""
        detached = None if spool else resp.detach_body()
        if detached is None:
            await self._copy_pieces(fill, resp, writer, size, run, spool)
            return
        held, sock = detached
        try:
            await self._copy_socket(fill, resp, writer, size, run, held, sock)
        finally:
            resp.raw.close()  # aiohttp lost track of the stream: never reuse the connection

    async def _copy_socket(
        self,
        fill: Fill,
        resp: Any,
        writer: Any,
        size: int,
        run: Run,
        held: bytes,
        sock: int | None,
    ) -> None:
        """The body from the upstream's socket itself: read, hashed and written on the store's thread.

        One step of the core per hop (:meth:`BlobWriter.write_from`), no copy
        through Python and no hand-off between a reading and a hashing thread.
        ``held`` is what aiohttp had read already; ``sock`` a duplicate of the
        connection's socket (closed here, once no thread reads it any more).
        """
        got = len(held)
        try:
            if got > size:
                raise FillFailed(f"the upstream sent more than its Content-Length {size}")
            if held:
                await run(_write, -1, writer, held, 0)
                fill.progress = got
                fill.notify()
                await asyncio.sleep(0)
            buf = bytearray(BUFFER)
            idle = 0.0
            timeout = resp.timeout
            while got < size:
                if sock is None:
                    raise FillFailed(f"the upstream body ended after {got} of {size} bytes")
                hop = asyncio.ensure_future(
                    run(writer.write_from, sock, min(STEP, size - got), buf, WAIT)
                )
                try:
                    copied, ended = await asyncio.shield(hop)
                except asyncio.CancelledError:
                    _stop_reading(sock)  # the hop's read returns at once
                    with contextlib.suppress(BaseException):
                        await hop
                    raise
                except OSError as exc:
                    raise FillFailed(
                        f"copying the upstream body failed after {got} of {size} bytes"
                        f" ({exc.strerror or type(exc).__name__})"
                    ) from None
                got += copied
                if copied:
                    idle = 0.0
                    fill.progress = got
                    fill.notify()
                    await asyncio.sleep(0)  # see _copy_pieces
                if got < size and ended:
                    raise FillFailed(f"the upstream body ended after {got} of {size} bytes")
                if not copied and not ended:
                    idle += WAIT
                    if timeout is not None and idle >= timeout:
                        raise FillFailed(
                            f"the upstream body ended after {got} of {size} bytes (TimeoutError)"
                        )
        finally:
            if sock is not None:
                os.close(sock)

    async def _copy_pieces(
        self, fill: Fill, resp: Any, writer: Any, size: int, run: Run, spool: bool
    ) -> None:
        """Pieces from the upstream through aiohttp into the store and the spool, reading ahead
        while writing (an upstream whose socket the fill cannot read itself: TLS, chunked)."""
        import aiohttp

        queue: asyncio.Queue[bytes | None] = asyncio.Queue(QUEUE)

        async def produce() -> None:
            got = 0
            parts: list[bytes] = []
            held = 0
            try:
                # aiohttp hands over what the socket gave, one read at a time (not joined
                # with what else it holds: that would be one more copy); gather a piece,
                # so each hop to the store's thread carries PIECE bytes.
                async for chunk, _ in resp.raw.content.iter_chunks():
                    got += len(chunk)
                    if got > size:
                        raise FillFailed(f"the upstream sent more than its Content-Length {size}")
                    parts.append(chunk)
                    held += len(chunk)
                    if held >= PIECE:
                        await queue.put(parts[0] if len(parts) == 1 else b"".join(parts))
                        parts, held = [], 0
                if parts:
                    await queue.put(b"".join(parts))
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise FillFailed(
                    f"the upstream body ended after {got} of {size} bytes ({type(exc).__name__})"
                ) from None
            if got != size:
                raise FillFailed(f"the upstream body ended after {got} of {size} bytes")
            await queue.put(None)

        reader = asyncio.get_running_loop().create_task(produce())
        try:
            while True:
                get = asyncio.ensure_future(queue.get())
                await asyncio.wait({get, reader}, return_when=asyncio.FIRST_COMPLETED)
                if not get.done():  # the producer ended: with an error, or after its last put
                    failed = reader.exception()
                    if failed is not None:
                        get.cancel()
                        raise failed
                    piece = await get
                else:
                    piece = get.result()
                if piece is None:
                    break
                # Whatever else arrived meanwhile goes in the same hop to the store's thread:
                # fewer hand-offs (each a wake-up to wait for on a busy machine) and fewer
                # wake-ups of the clients.
                pieces, last = [piece], False
                while not queue.empty():
                    more = queue.get_nowait()
                    if more is None:
                        last = True
                        break
                    pieces.append(more)
                await run(_write_all, fill.fd if spool else -1, writer, pieces, fill.progress)
                fill.progress += sum(map(len, pieces))
                fill.notify()
                # Let the woken clients take their ranges (their heads go out) before the
                # fill goes on: a fault found next then cuts responses that have begun.
                await asyncio.sleep(0)
                if last:
                    break
            await reader
        finally:
            if not reader.done():
                reader.cancel()
                with contextlib.suppress(BaseException):
                    await reader


def _stop_reading(sock: int) -> None:
    """Shut ``sock`` for reading: a thread waiting on it wakes and reads its end."""
    with contextlib.suppress(OSError), socket.socket(fileno=os.dup(sock)) as s:
        s.shutdown(socket.SHUT_RD)


def _write_all(spool: int, writer: Any, pieces: list[bytes], offset: int) -> None:
    """Each of ``pieces`` in turn, from ``offset``: all in the upload's file when this returns.

    The writer may still be writing a ``bytes`` piece while it hashes the next
    one; the last goes as a view, which it has written before it returns.
    """
    for i, piece in enumerate(pieces):
        _write(spool, writer, piece, offset, settle=i == len(pieces) - 1)
        offset += len(piece)


def _write(spool: int, writer: Any, piece: bytes, offset: int, *, settle: bool = True) -> None:
    """``piece`` into the upload and into the spool when there is one; with ``settle``
    in the upload's file when this returns (the writer is handed a view, not ``bytes``)."""
    view = memoryview(piece)
    if spool >= 0:
        done = 0
        while done < len(piece):
            done += os.pwrite(spool, view[done:], offset + done)
    writer.write(view if settle else piece)
