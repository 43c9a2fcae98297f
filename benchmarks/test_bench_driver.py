"""Storage-driver benchmarks: streamed writes, stat and list, implementations compared by name.

Run: ``.venv/bin/pytest benchmarks/test_bench_driver.py`` (``make bench`` runs every
suite). The file size defaults to 128 MiB so the suite stays short; set
``OCISTORE_BENCH_DRIVER_SIZE=1GiB`` for the issue's figure, or use
``benchmarks/driver_ratios.py`` for interleaved rounds and the medians of the
driver / plain ratio the target (>= 0.95) is stated in.

Groups and rows:

- ``write-<chunk>`` (1, 4, 16 MiB chunks): ``driver-writer`` streams through
  ``FilesystemDriver.writer()`` and commits; ``plain-open-fsync`` does
  ``open().write()`` per chunk, ``fsync`` and a directory fsync (the same
  durability). Each round writes a new file; the file is checked after every round.
- ``stat``: ``FilesystemDriver.stat``, ``os.stat``, ``InMemoryDriver.stat``.
- ``list-1000``: ``FilesystemDriver.list``, ``sorted(os.listdir())``, ``InMemoryDriver.list``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import pytest

from driver_ratios import CHUNKS, WRITERS, check_file, chunk_buffer, parse_size
from ocistore.driver import FilesystemDriver, InMemoryDriver

SIZE = parse_size(os.environ.get("OCISTORE_BENCH_DRIVER_SIZE", "128MiB"))
ENTRIES = 1000


@pytest.fixture(scope="module")
def fs(tmp_path_factory: pytest.TempPathFactory) -> FilesystemDriver:
    driver = FilesystemDriver(tmp_path_factory.mktemp("driver-bench"))
    driver.put_content("/bench/.keep", b"")
    return driver


@pytest.mark.parametrize("chunk", list(CHUNKS))
@pytest.mark.parametrize("impl", list(WRITERS))
def test_write(benchmark: Any, fs: FilesystemDriver, impl: str, chunk: str) -> None:
    benchmark.group = f"write-{chunk}"
    benchmark.extra_info["bytes"] = SIZE
    buf = chunk_buffer(CHUNKS[chunk])
    count = max(1, SIZE // len(buf))
    path = f"/bench/{impl}-{chunk}"
    full = fs.full_path(path)
    write = WRITERS[impl]

    def fresh() -> None:
        os.sync()  # the previous round's writeback stays out of this one

    def check_and_remove(*_: Any) -> None:
        check_file(full, buf, count)
        os.unlink(full)

    benchmark.pedantic(
        write,
        args=(fs, path, buf, count),
        setup=fresh,
        teardown=check_and_remove,
        rounds=5,
        iterations=1,
        warmup_rounds=1,
    )


@pytest.fixture(scope="module")
def populated(fs: FilesystemDriver) -> tuple[FilesystemDriver, InMemoryDriver]:
    mem = InMemoryDriver()
    for d in (fs, mem):
        d.put_content("/meta/file", b"x" * 4096)
        for i in range(ENTRIES):
            d.put_content(f"/meta/dir/{i:06d}", b"")
    return fs, mem


def _stat_cases(fs: FilesystemDriver, mem: InMemoryDriver) -> dict[str, Callable[[], Any]]:
    full = fs.full_path("/meta/file")
    return {
        "filesystem": lambda: fs.stat("/meta/file").size,
        "os.stat": lambda: os.stat(full).st_size,
        "inmemory": lambda: mem.stat("/meta/file").size,
    }


def _list_cases(fs: FilesystemDriver, mem: InMemoryDriver) -> dict[str, Callable[[], Any]]:
    full = fs.full_path("/meta/dir")
    return {
        "filesystem": lambda: fs.list("/meta/dir"),
        "os.listdir+sort": lambda: sorted(os.listdir(full)),
        "inmemory": lambda: mem.list("/meta/dir"),
    }


@pytest.mark.parametrize("impl", ["filesystem", "os.stat", "inmemory"])
def test_stat(
    benchmark: Any, populated: tuple[FilesystemDriver, InMemoryDriver], impl: str
) -> None:
    benchmark.group = "stat"
    fn = _stat_cases(*populated)[impl]
    assert benchmark(fn) == 4096


@pytest.mark.parametrize("impl", ["filesystem", "os.listdir+sort", "inmemory"])
def test_list(
    benchmark: Any, populated: tuple[FilesystemDriver, InMemoryDriver], impl: str
) -> None:
    benchmark.group = f"list-{ENTRIES}"
    fn = _list_cases(*populated)[impl]
    assert len(benchmark(fn)) == ENTRIES
