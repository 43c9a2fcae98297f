"""What only the async facade has: streaming both ways, its bounded pool, its bad input.

Everything else it shares with the sync API is tested by running the library
tests through it (``aio_facade`` modules, tests/aio_adapter.py).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from ocistore.aio import AsyncRegistry
from ocistore.descriptor import Descriptor
from ocistore.digest import Digest
from ocistore.storage import Registry


async def _chunks(data: bytes, size: int) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


def test_stream_a_blob_in_and_out(plain_registry: Registry) -> None:
    data = bytes(range(256)) * 1000

    async def run() -> list[bytes]:
        async with AsyncRegistry(plain_registry, max_workers=2) as reg:
            blobs = reg.repository("a/b").blobs
            async with await blobs.create() as writer:
                assert await writer.write_from(_chunks(data, 10_000)) == len(data)
                desc = await writer.commit(Descriptor(Digest.from_bytes(data), len(data)))
            async with await blobs.open(desc.digest, chunk_size=64 * 1024) as reader:
                return [chunk async for chunk in reader]

    chunks = asyncio.run(run())
    assert [len(c) for c in chunks] == [65536, 65536, 65536, 59392]
    assert b"".join(chunks) == data


def test_the_pool_is_bounded(plain_registry: Registry) -> None:
    threads: set[str] = set()
    real = plain_registry.repositories

    def repositories(n: int = 100, last: str | None = None) -> list[str]:
        threads.add(threading.current_thread().name)
        return real(n, last)

    plain_registry.repositories = repositories  # type: ignore[method-assign]

    async def run() -> None:
        async with AsyncRegistry(plain_registry, max_workers=2) as reg:
            await asyncio.gather(*(reg.repositories() for _ in range(20)))

    asyncio.run(run())
    assert 1 <= len(threads) <= 2 and all(t.startswith("ocistore-aio") for t in threads)


def test_a_host_executor_is_used_and_left_open(plain_registry: Registry) -> None:
    with ThreadPoolExecutor(1, thread_name_prefix="host") as pool:

        async def run() -> str:
            async with AsyncRegistry(plain_registry, executor=pool) as reg:
                await reg.repository("a/b").blobs.put("", b"x")
                return await asyncio.get_running_loop().run_in_executor(
                    pool, lambda: threading.current_thread().name
                )

        assert asyncio.run(run()).startswith("host")  # still open after aclose()


def test_bad_input(plain_registry: Registry) -> None:
    with pytest.raises(ValueError, match="max_workers=0: expected a positive integer"):
        AsyncRegistry(plain_registry, max_workers=0)

    async def run() -> None:
        reg = AsyncRegistry(plain_registry, max_workers=1)
        blobs = reg.repository("a/b").blobs
        desc = await blobs.put("", b"x")
        with pytest.raises(ValueError, match="chunk_size=0: expected a positive integer"):
            await blobs.open(desc.digest, chunk_size=0)
        await reg.aclose()

    asyncio.run(run())
