"""Awaitable storage for hosts on an event loop: the library's operations, off the loop.

:class:`AsyncRegistry` wraps a :class:`~ocistore.storage.registry.Registry`;
its repositories, blob stores, uploads, manifest and tag stores have the
same methods as the sync ones, as coroutines that run the blocking work in
a bounded thread pool (``max_workers`` threads, or an executor of the
host's). Blob data streams both ways without holding a whole blob:
:meth:`AsyncBlobStore.open` gives an :class:`AsyncBlobReader` (``async for
chunk in reader``, ``await reader.read(n)``) and an :class:`AsyncBlobWriter`
takes chunks (``await writer.write(chunk)``, ``await writer.write_from(chunks)``).
Each object keeps its sync counterpart as ``.sync``.
"""

from __future__ import annotations

import asyncio
import builtins
import functools
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable
from concurrent.futures import Executor, ThreadPoolExecutor
from types import TracebackType
from typing import IO, TYPE_CHECKING, Any, BinaryIO, Final, Protocol, TypeVar

from ocistore.storage.blobwriter import READ_CHUNK

if TYPE_CHECKING:
    from ocistore.descriptor import Descriptor
    from ocistore.digest import Digest
    from ocistore.driver.base import Buffer
    from ocistore.manifest import Manifest
    from ocistore.storage.blobwriter import BlobWriter, UploadStatus
    from ocistore.storage.linkedblobstore import LinkedBlobStore
    from ocistore.storage.manifeststore import ManifestStore
    from ocistore.storage.registry import Registry, Repository
    from ocistore.storage.tagstore import TagStore

__all__ = [
    "CHUNK_SIZE",
    "AsyncBlobReader",
    "AsyncBlobStore",
    "AsyncBlobWriter",
    "AsyncManifestStore",
    "AsyncRegistry",
    "AsyncRepository",
    "AsyncTagStore",
]

T = TypeVar("T")

CHUNK_SIZE: Final = 1 << 20
"""Bytes per chunk an :class:`AsyncBlobReader` yields by default."""


class _Reader(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


class _Pool:
    """Where the blocking calls run: the host's executor or a bounded one of our own."""

    def __init__(self, executor: Executor | None, max_workers: int) -> None:
        if executor is None:
            if not isinstance(max_workers, int) or isinstance(max_workers, bool) or max_workers < 1:
                raise ValueError(f"max_workers={max_workers!r}: expected a positive integer")
            executor = ThreadPoolExecutor(max_workers, thread_name_prefix="ocistore-aio")
            self.owned = True
        else:
            self.owned = False
        self.executor = executor

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, functools.partial(fn, *args, **kwargs))


class AsyncRegistry:
    """A :class:`~ocistore.storage.registry.Registry` for coroutines.

    ``max_workers`` bounds the threads of the pool it makes; pass ``executor``
    to share one of the host's instead (it is then not shut down by
    :meth:`aclose`).
    """

    def __init__(
        self, registry: Registry, *, max_workers: int = 8, executor: Executor | None = None
    ) -> None:
        self.sync = registry
        self._pool = _Pool(executor, max_workers)

    def repository(self, name: str) -> AsyncRepository:
        """Repository ``name`` (no I/O); raises NameInvalid like the sync one."""
        return AsyncRepository(self.sync.repository(name), self._pool)

    async def repositories(self, n: int = 100, last: str | None = None) -> list[str]:
        return await self._pool.run(self.sync.repositories, n, last)

    async def enumerate(self) -> list[str]:
        """Every repository name, in catalog order (a walk of the whole tree)."""
        return await self._pool.run(lambda: list(self.sync.enumerate()))

    async def remove(self, name: str) -> None:
        await self._pool.run(self.sync.remove, name)

    async def aclose(self) -> None:
        """Shut down the pool this registry made (waiting for the calls in flight)."""
        if self._pool.owned:
            await asyncio.get_running_loop().run_in_executor(None, self._pool.executor.shutdown)

    async def __aenter__(self) -> AsyncRegistry:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


class AsyncRepository:
    """One repository: ``blobs``, ``manifests``, ``tags`` (and ``manifest_blobs``)."""

    def __init__(self, repo: Repository, pool: _Pool) -> None:
        self.sync = repo
        self.name = repo.name
        self.blobs = AsyncBlobStore(repo.blobs, pool)
        self.manifest_blobs = AsyncBlobStore(repo.manifest_blobs, pool)
        self.manifests = AsyncManifestStore(repo.manifests, pool)
        self.tags = AsyncTagStore(repo.tags, pool)


class AsyncBlobStore:
    """A repository's linked blob store; uploads start with :meth:`create`."""

    def __init__(self, store: LinkedBlobStore, pool: _Pool) -> None:
        self.sync = store
        self._pool = pool

    async def stat(self, digest: Digest | str) -> Descriptor:
        return await self._pool.run(self.sync.stat, digest)

    async def stat_many(self, digests: Iterable[Digest | str]) -> dict[Digest, Descriptor]:
        return await self._pool.run(self.sync.stat_many, list(digests))

    async def exists(self, digest: Digest | str) -> bool:
        return await self._pool.run(self.sync.exists, digest)

    async def get(self, digest: Digest | str) -> bytes:
        """The whole blob in memory (small blobs: configs); stream big ones with :meth:`open`."""
        return await self._pool.run(self.sync.get, digest)

    async def open(self, digest: Digest | str, chunk_size: int = CHUNK_SIZE) -> AsyncBlobReader:
        """The blob to read in ``chunk_size`` chunks (checked before anything is opened)."""
        _check_chunk_size(chunk_size)
        return AsyncBlobReader(await self._pool.run(self.sync.open, digest), self._pool, chunk_size)

    async def redirect_url(self, digest: Digest | str, method: str = "GET") -> str | None:
        return await self._pool.run(self.sync.redirect_url, digest, method)

    async def enumerate(self) -> list[Digest]:
        return await self._pool.run(lambda: list(self.sync.enumerate()))

    async def put(self, media_type: str, data: Buffer) -> Descriptor:
        return await self._pool.run(self.sync.put, media_type, data)

    async def link_blob(self, canonical: Descriptor, *aliases: Digest) -> None:
        await self._pool.run(self.sync.link_blob, canonical, *aliases)

    async def mount(self, source_repo: str, digest: Digest | str) -> Descriptor:
        return await self._pool.run(self.sync.mount, source_repo, digest)

    async def delete(self, digest: Digest | str) -> None:
        await self._pool.run(self.sync.delete, digest)

    async def create(
        self, *, mount_from: str | None = None, digest: Digest | str | None = None
    ) -> AsyncBlobWriter:
        """Start an upload (a successful mount raises BlobMounted, as the sync one)."""
        writer = await self._pool.run(self.sync.create, mount_from=mount_from, digest=digest)
        return AsyncBlobWriter(writer, self._pool)

    async def resume(self, upload_id: str) -> AsyncBlobWriter:
        return AsyncBlobWriter(await self._pool.run(self.sync.resume, upload_id), self._pool)

    async def upload_status(self, upload_id: str) -> UploadStatus:
        return await self._pool.run(self.sync.upload_status, upload_id)


def _check_chunk_size(chunk_size: int) -> None:
    if not isinstance(chunk_size, int) or isinstance(chunk_size, bool) or chunk_size < 1:
        raise ValueError(f"chunk_size={chunk_size!r}: expected a positive integer")


class AsyncBlobReader:
    """An open blob, read in the pool: ``async for chunk in reader`` or ``await read(n)``."""

    def __init__(self, reader: BinaryIO, pool: _Pool, chunk_size: int = CHUNK_SIZE) -> None:
        _check_chunk_size(chunk_size)
        self.sync = reader
        self._pool = pool
        self.chunk_size = chunk_size

    async def read(self, n: int = -1) -> bytes:
        """Up to ``n`` bytes (all the rest when ``n`` < 0: the whole blob in memory)."""
        return await self._pool.run(self.sync.read, n)

    async def seek(self, offset: int, whence: int = 0) -> int:
        return await self._pool.run(self.sync.seek, offset, whence)

    def tell(self) -> int:
        return self.sync.tell()

    def seekable(self) -> bool:
        return self.sync.seekable()

    async def __anext__(self) -> bytes:
        chunk = await self.read(self.chunk_size)
        if not chunk:
            raise StopAsyncIteration
        return chunk

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self

    async def aclose(self) -> None:
        await self._pool.run(self.sync.close)

    async def __aenter__(self) -> AsyncBlobReader:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


class AsyncBlobWriter:
    """An upload: write chunks, then :meth:`commit` (or :meth:`cancel`); one call at a time."""

    def __init__(self, writer: BlobWriter, pool: _Pool) -> None:
        self.sync = writer
        self._pool = pool
        self.id = writer.id
        self.started_at = writer.started_at

    @property
    def size(self) -> int:
        return self.sync.size

    async def write(self, data: Buffer) -> int:
        return await self._pool.run(self.sync.write, data)

    async def write_from(self, chunks: AsyncIterable[Buffer]) -> int:
        """Write every chunk of ``chunks`` (e.g. an HTTP body) in order; the bytes written."""
        total = 0
        async for chunk in chunks:
            total += await self.write(chunk)
        return total

    async def read_from(self, stream: IO[bytes] | _Reader, chunk_size: int = READ_CHUNK) -> int:
        """Copy a blocking file-like ``stream`` to its end in the pool; the bytes written."""
        return await self._pool.run(self.sync.read_from, stream, chunk_size)

    async def commit(self, provisional: Descriptor) -> Descriptor:
        return await self._pool.run(self.sync.commit, provisional)

    async def cancel(self) -> None:
        await self._pool.run(self.sync.cancel)

    async def close(self) -> None:
        """Keep the upload for a later :meth:`AsyncBlobStore.resume` and release the writer."""
        await self._pool.run(self.sync.close)

    async def __aenter__(self) -> AsyncBlobWriter:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._pool.run(self.sync.__exit__, exc_type, exc, tb)


class AsyncManifestStore:
    """A repository's manifests."""

    def __init__(self, store: ManifestStore, pool: _Pool) -> None:
        self.sync = store
        self._pool = pool

    async def exists(self, digest: Digest | str) -> bool:
        return await self._pool.run(self.sync.exists, digest)

    async def stat(self, digest: Digest | str) -> Descriptor:
        return await self._pool.run(self.sync.stat, digest)

    async def get(self, digest: Digest | str) -> Manifest:
        return await self._pool.run(self.sync.get, digest)

    async def enumerate(self) -> list[Digest]:
        return await self._pool.run(lambda: list(self.sync.enumerate()))

    async def referrers(
        self, subject: Digest | str, artifact_type: str | None = None
    ) -> list[Descriptor]:
        return await self._pool.run(self.sync.referrers, subject, artifact_type)

    async def rebuild_referrers_index(self) -> int:
        return await self._pool.run(self.sync.rebuild_referrers_index)

    async def put(
        self, payload: bytes | Manifest, media_type: str | None = None, tag: str | None = None
    ) -> Digest:
        return await self._pool.run(self.sync.put, payload, media_type, tag)

    async def delete(self, digest: Digest | str) -> None:
        await self._pool.run(self.sync.delete, digest)


class AsyncTagStore:
    """A repository's tags."""

    def __init__(self, store: TagStore, pool: _Pool) -> None:
        self.sync = store
        self._pool = pool

    async def get(self, tag: str) -> Descriptor:
        return await self._pool.run(self.sync.get, tag)

    async def resolve(self, tag: str) -> Digest:
        return await self._pool.run(self.sync.resolve, tag)

    async def tag(self, tag: str, desc: Descriptor | Digest | str) -> None:
        await self._pool.run(self.sync.tag, tag, desc)

    async def untag(self, tag: str) -> None:
        await self._pool.run(self.sync.untag, tag)

    async def all(self) -> builtins.list[str]:
        return await self._pool.run(self.sync.all)

    async def list(self, n: int | None = None, last: str | None = None) -> builtins.list[str]:
        return await self._pool.run(self.sync.list, n, last)

    async def lookup(self, desc: Descriptor | Digest | str) -> builtins.list[str]:
        return await self._pool.run(self.sync.lookup, desc)

    async def manifest_digests(self, tag: str) -> builtins.list[Digest]:
        return await self._pool.run(self.sync.manifest_digests, tag)
