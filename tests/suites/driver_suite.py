"""Conformance suite every storage driver must pass (distribution's ``driver/testsuites``).

Subclass :class:`DriverSuite` in a test module that provides a function-scoped
``driver`` fixture returning a fresh, empty driver; every test below then runs
against it. The cases follow distribution's ``testsuites.go`` (root, paths,
round trips, offsets, appends, list, move, delete, stat, concurrency) plus
what ocistore adds: ``.``/``..`` refused, writer commit/cancel/close
semantics, ``walk`` order with ``start_after``, and errors carrying the path.
"""

from __future__ import annotations

import random
import threading
import time
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ocistore.digest import Digest
from ocistore.driver import FileInfo, FileWriter, StorageDriver
from ocistore.driver.base import DEFAULT_URL_EXPIRY, URLForDriver
from ocistore.driver.durable import write_all
from ocistore.driver.pathcheck import PATH_PATTERN, check_path, walk_key
from ocistore.errors import DriverError, InvalidOffset, InvalidPath, PathNotFound
from ocistore.storage.blobstore import BlobStore
from waiting import wait_until

MiB = 1024 * 1024

VALID_PATHS = [
    "/a",
    "/2",
    "/aa",
    "/a.a",
    "/0-9/abcdefg",
    "/abcdefg/z.75",
    "/abc/1.2.3.4.5-6_zyx/123.z/4",
    "/docker/docker-registry",
    "/123.abc",
    "/abc./abc",
    "/.abc",
    "/a--b",
    "/a-.b",
    "/_.abc",
    "/Docker/docker-registry",
    "/Abc/Cba",
    "/...",
    "/a/..b/c..",
]

INVALID_PATHS = [
    "",
    "/",
    "abc",
    "123.abc",
    "//bcd",
    "/abc_123/",
    "/.",
    "/..",
    "/a/../b",
    "/a/./b",
    "/a/..",
    "/a b",
    "/caf\u00e9",
    "/a\x00b",
    "/a\\b",
    "/a:b",
    "/a//b",
]

WALK_FILES = [
    "/file1",
    "/folder1-suffix/file1",
    "/folder1/file1",
    "/folder2/file1",
    "/folder3/subfolder1/subfolder1/file1",
    "/folder3/subfolder2/subfolder1/file1",
    "/folder4/file1",
]

# Depth first, each directory's children sorted: "/folder1" sorts before
# "/folder1-suffix", so its subtree comes first (distribution's WalkFallback).
WALK_ALL = [
    "/file1",
    "/folder1",
    "/folder1/file1",
    "/folder1-suffix",
    "/folder1-suffix/file1",
    "/folder2",
    "/folder2/file1",
    "/folder3",
    "/folder3/subfolder1",
    "/folder3/subfolder1/subfolder1",
    "/folder3/subfolder1/subfolder1/file1",
    "/folder3/subfolder2",
    "/folder3/subfolder2/subfolder1",
    "/folder3/subfolder2/subfolder1/file1",
    "/folder4",
    "/folder4/file1",
]


def _stamps_after(driver: Any, when: float) -> None:
    """Return once a write to ``driver`` gets a modification time later than ``when``.

    File systems stamp with a coarse clock, so a write right after another may
    carry the same time; a probe file, written until its time moves on, waits
    just as long as that takes (it is deleted again).
    """

    def later() -> bool:
        driver.put_content("/clock-probe", b"")
        return bool(driver.stat("/clock-probe").mod_time > when)

    wait_until(later, "the driver's clock moved on")
    driver.delete("/clock-probe")


def contents(size: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(size)


def check_error(exc: BaseException, kind: type[DriverError], path: str, driver: Any) -> None:
    """distribution's checks: the right type, carrying the path, naming the driver."""
    assert isinstance(exc, kind), f"{exc!r} is not a {kind.__name__}"
    assert exc.path == path
    assert exc.driver == driver.name
    assert driver.name in str(exc)


def read_all(driver: Any, path: str, offset: int = 0) -> bytes:
    with driver.reader(path, offset) as r:
        data: bytes = r.read()
    return data


def stream_write(driver: Any, path: str, data: bytes, *, append: bool = False) -> None:
    with driver.writer(path, append=append) as w:
        assert w.write(data) == len(data)
        w.commit()


def is_valid_path(path: str) -> bool:
    try:
        check_path(path, "test")
    except InvalidPath:
        return False
    return True


def run_threads(count: int, fn: Callable[[int], None]) -> None:
    with ThreadPoolExecutor(max_workers=count) as pool:
        for future in [pool.submit(fn, i) for i in range(count)]:
            future.result()


class DriverSuite:
    """The tests; a subclass supplies the ``driver`` fixture."""

    # --- the root ----------------------------------------------------------------

    def test_root_exists(self, driver: Any) -> None:
        assert driver.list("/") == []
        root = driver.stat("/")
        assert root.is_dir and root.path == "/" and root.size == 0

    def test_implements_protocols(self, driver: Any) -> None:
        assert isinstance(driver, StorageDriver)
        assert isinstance(driver.name, str) and driver.name
        with driver.writer("/w") as w:
            assert isinstance(w, FileWriter)

    # --- paths -------------------------------------------------------------------

    @pytest.mark.parametrize("path", VALID_PATHS)
    def test_valid_paths(self, driver: Any, path: str) -> None:
        data = contents(64)
        driver.put_content(path, data)
        assert driver.get_content(path) == data
        assert driver.stat(path).path == path

    @pytest.mark.parametrize("path", INVALID_PATHS)
    def test_invalid_paths(self, driver: Any, path: str) -> None:
        calls: list[Callable[[], object]] = [
            lambda: driver.put_content(path, b"x"),
            lambda: driver.get_content(path),
            lambda: driver.reader(path),
            lambda: driver.writer(path),
            lambda: driver.delete(path),
            lambda: driver.move(path, "/ok"),
            lambda: driver.move("/src", path),
        ]
        if isinstance(driver, URLForDriver):
            calls.append(lambda: driver.url_for(path))
        if path != "/":
            calls += [
                lambda: driver.stat(path),
                lambda: driver.list(path),
                lambda: driver.walk(path),
                lambda: driver.walk("/", start_after=path),
            ]
        driver.put_content("/src", b"source")
        for call in calls:
            with pytest.raises(InvalidPath) as info:
                call()
            assert info.value.path == path
            assert driver.name in str(info.value)
            assert info.value.detail  # the reason
        assert driver.list("/") == ["/src"]  # nothing was written or moved
        assert driver.get_content("/src") == b"source"

    @pytest.mark.parametrize("path", [None, 42, b"/a"])
    def test_non_string_paths(self, driver: Any, path: object) -> None:
        with pytest.raises(InvalidPath):
            driver.get_content(path)
        with pytest.raises(InvalidPath):
            driver.put_content(path, b"x")

    @settings(
        max_examples=60,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(path=st.text(alphabet="/.ab_-\\ \x00\u00e9", max_size=10))
    def test_any_path_is_refused_or_stays_inside(self, driver: Any, path: str) -> None:
        try:
            driver.put_content(path, b"x")
        except InvalidPath:
            assert driver.list("/") == []
            return
        assert PATH_PATTERN.fullmatch(path)
        assert "." not in path.split("/") and ".." not in path.split("/")
        assert driver.get_content(path) == b"x"
        assert driver.stat(path).size == 1
        driver.delete("/" + path.split("/")[1])
        assert driver.list("/") == []

    # --- round trips -------------------------------------------------------------

    ROUND_TRIPS = [
        pytest.param(b"a", id="one-byte"),
        pytest.param("\u00df".encode(), id="unicode"),
        pytest.param(contents(32), id="32B"),
        pytest.param(contents(MiB, 1), id="1MiB"),
        pytest.param(b"\x80\x80\x80\x80", id="non-utf8"),
        pytest.param(b"\x00" * 17, id="nul-bytes"),
        pytest.param(b"", id="empty"),
    ]

    @pytest.mark.parametrize("data", ROUND_TRIPS)
    def test_put_get(self, driver: Any, data: bytes) -> None:
        driver.put_content("/dir/sub/file", data)
        assert driver.get_content("/dir/sub/file") == data
        assert driver.stat("/dir/sub/file").size == len(data)

    @pytest.mark.parametrize("data", ROUND_TRIPS)
    def test_stream_round_trip(self, driver: Any, data: bytes) -> None:
        stream_write(driver, "/dir/sub/file", data)
        assert read_all(driver, "/dir/sub/file") == data
        assert driver.get_content("/dir/sub/file") == data

    @pytest.mark.parametrize(
        "make", [bytes, bytearray, memoryview], ids=["bytes", "bytearray", "memoryview"]
    )
    def test_any_buffer_is_accepted(self, driver: Any, make: Callable[[bytes], Any]) -> None:
        data = contents(1000)
        driver.put_content("/put", make(data))
        with driver.writer("/stream") as w:
            view = memoryview(make(data))
            assert w.write(view[:300]) == 300
            assert w.write(view[300:]) == 700
            w.commit()
        assert driver.get_content("/put") == data
        assert driver.get_content("/stream") == data

    def test_non_byte_buffers_count_bytes(self, driver: Any) -> None:
        import array

        words = array.array("I", range(10))
        driver.put_content("/put", words)
        with driver.writer("/stream") as w:
            assert w.write(words) == 40
            w.commit()
        assert driver.get_content("/put") == words.tobytes()
        assert driver.get_content("/stream") == words.tobytes()

    def test_bytearray_is_resizable_after_write(self, driver: Any) -> None:
        buf = bytearray(b"abc")
        driver.put_content("/p", buf)
        with driver.writer("/s") as w:
            w.write(buf)
            buf += b"def"  # no view of ours may still pin it
            w.write(buf)
            w.commit()
        assert driver.get_content("/s") == b"abcabcdef"

    def test_non_buffer_data_is_refused(self, driver: Any) -> None:
        with pytest.raises(TypeError):
            driver.put_content("/p", "text")
        with driver.writer("/s") as w, pytest.raises(TypeError):
            w.write(5)

    def test_truncate(self, driver: Any) -> None:
        driver.put_content("/f", contents(MiB))
        small = contents(1024, 2)
        driver.put_content("/f", small)
        assert driver.get_content("/f") == small
        stream_write(driver, "/f", contents(4096, 3))
        stream_write(driver, "/f", b"xy")  # append=False truncates
        assert driver.get_content("/f") == b"xy"

    def test_put_content_repeatedly(self, driver: Any) -> None:
        for i, size in enumerate([4096, 2048, 0, 10, 4096]):
            data = contents(size, i)
            driver.put_content("/f", data)
            assert driver.get_content("/f") == data
        assert driver.list("/") == ["/f"]  # no temporary files left behind

    # --- missing paths -----------------------------------------------------------

    def test_read_nonexistent(self, driver: Any) -> None:
        for call in (
            lambda: driver.get_content("/no/such"),
            lambda: driver.reader("/no/such"),
            lambda: driver.reader("/no/such", 64),
            lambda: driver.stat("/no/such"),
            lambda: driver.list("/no/such"),
            lambda: driver.walk("/no/such"),
            lambda: driver.delete("/no/such"),
            lambda: driver.move("/no/such", "/x"),
        ):
            with pytest.raises(PathNotFound) as info:
                call()
            check_error(info.value, PathNotFound, "/no/such", driver)

    def test_file_is_not_a_directory(self, driver: Any) -> None:
        driver.put_content("/file", b"x")
        for call in (
            lambda: driver.get_content("/file/child"),
            lambda: driver.stat("/file/child"),
            lambda: driver.list("/file"),
            lambda: driver.walk("/file"),
        ):
            with pytest.raises(PathNotFound):
                call()
        for call in (
            lambda: driver.put_content("/file/child", b"y"),
            lambda: driver.writer("/file/child"),
        ):
            with pytest.raises(DriverError) as info:
                call()
            assert info.value.path == "/file/child"
        assert driver.get_content("/file") == b"x"

    def test_directory_is_not_a_file(self, driver: Any) -> None:
        driver.put_content("/dir/file", b"x")
        with pytest.raises(PathNotFound):
            driver.get_content("/dir")
        with pytest.raises(PathNotFound):
            driver.reader("/dir")
        for call in (
            lambda: driver.put_content("/dir", b"y"),
            lambda: driver.writer("/dir"),
            lambda: driver.move("/dir", "/elsewhere"),
        ):
            with pytest.raises(DriverError) as info:
                call()
            assert info.value.path == "/dir"
        driver.put_content("/f", b"z")
        with pytest.raises(DriverError) as info:
            driver.move("/f", "/dir")
        assert info.value.path == "/dir"
        assert driver.get_content("/dir/file") == b"x"
        assert driver.get_content("/f") == b"z"

    # --- readers -------------------------------------------------------------------

    def test_reader_with_offset(self, driver: Any) -> None:
        chunk = 32
        c1, c2, c3 = contents(chunk, 1), contents(chunk, 2), contents(chunk, 3)
        driver.put_content("/f", c1 + c2 + c3)
        assert read_all(driver, "/f") == c1 + c2 + c3
        assert read_all(driver, "/f", chunk) == c2 + c3
        assert read_all(driver, "/f", chunk * 2) == c3

        with pytest.raises(InvalidOffset) as info:
            driver.reader("/f", -1)
        check_error(info.value, InvalidOffset, "/f", driver)
        assert info.value.offset == -1

        with driver.reader("/f", chunk * 3) as r:  # at EOF: empty reads
            assert r.read(chunk) == b""
        with driver.reader("/f", chunk * 3 + 100) as r:  # past EOF: empty too
            assert r.read() == b""
        with driver.reader("/f", chunk * 3 - 1) as r:  # N-1: one byte, then nothing
            assert r.read(chunk) == c3[-1:]
            assert r.read(chunk) == b""
            assert r.read() == b""

    def test_reader_is_seekable(self, driver: Any) -> None:
        data = contents(1000)
        driver.put_content("/f", data)
        with driver.reader("/f", 10) as r:
            assert r.seekable() and r.readable()
            assert r.tell() == 10
            assert r.read(5) == data[10:15]
            assert r.seek(0) == 0
            assert r.read(3) == data[:3]
            assert r.seek(-4, 2) == 996
            assert r.read() == data[996:]
            assert r.seek(10, 1) == 1010
            assert r.read(1) == b""
            buf = bytearray(8)
            r.seek(100)
            assert r.readinto(buf) == 8
            assert bytes(buf) == data[100:108]

    def test_reader_keeps_old_content_after_put(self, driver: Any) -> None:
        driver.put_content("/f", b"old content")
        with driver.reader("/f") as r:
            driver.put_content("/f", b"new")
            assert r.read() == b"old content"
        assert driver.get_content("/f") == b"new"

    # --- writers -------------------------------------------------------------------

    @pytest.mark.parametrize("chunk", [10 * MiB, 32], ids=["large", "small"])
    def test_continue_stream_append(self, driver: Any, chunk: int) -> None:
        c1, c2, c3 = contents(chunk, 1), contents(chunk, 2), contents(chunk, 3)
        full = c1 + c2 + c3

        w = driver.writer("/f")
        assert w.write(c1) == chunk
        w.close()
        assert w.size == chunk

        w = driver.writer("/f", append=True)
        assert w.size == chunk
        assert w.write(c2) == chunk
        w.close()
        assert w.size == 2 * chunk

        w = driver.writer("/f", append=True)
        assert w.size == 2 * chunk
        assert w.write(memoryview(full)[2 * chunk :]) == chunk
        w.commit()
        assert w.size == 3 * chunk
        assert driver.get_content("/f") == full

    def test_zero_byte_write_then_append(self, driver: Any) -> None:
        w = driver.writer("/f")
        assert w.write(b"") == 0
        w.close()
        assert w.size == 0
        assert driver.get_content("/f") == b""
        w = driver.writer("/f", append=True)
        assert w.size == 0
        w.write(b"after")
        w.commit()
        assert driver.get_content("/f") == b"after"

    def test_zero_byte_put_then_append(self, driver: Any) -> None:
        driver.put_content("/f", b"")
        with driver.writer("/f", append=True) as w:
            assert w.size == 0
            w.write(b"more")
            w.commit()
        assert driver.get_content("/f") == b"more"

    def test_append_creates_missing_file(self, driver: Any) -> None:
        with driver.writer("/new/file", append=True) as w:
            assert w.size == 0
            w.write(b"x")
            w.commit()
        assert driver.get_content("/new/file") == b"x"

    def test_writer_data_visible_before_commit(self, driver: Any) -> None:
        with driver.writer("/f") as w:
            w.write(b"partial")
            assert w.size == 7
            assert driver.stat("/f").size == 7
            assert driver.get_content("/f") == b"partial"
            w.commit()

    def test_writer_cancel_removes_file(self, driver: Any) -> None:
        driver.put_content("/f", b"old")
        w = driver.writer("/f", append=True)
        w.write(b"new")
        w.cancel()
        with pytest.raises(PathNotFound):
            driver.stat("/f")
        with pytest.raises(ValueError):
            w.write(b"x")
        w.close()  # closing a finished writer is harmless

    def test_writer_close_keeps_contents(self, driver: Any) -> None:
        with driver.writer("/f") as w:
            w.write(b"kept")
        assert driver.get_content("/f") == b"kept"
        assert w.size == 4
        with pytest.raises(ValueError):
            w.write(b"x")
        with pytest.raises(ValueError):
            w.commit()
        with pytest.raises(ValueError):
            w.cancel()
        w.close()  # idempotent

    def test_context_manager_closes_without_cancelling_on_error(self, driver: Any) -> None:
        with pytest.raises(RuntimeError), driver.writer("/f") as w:
            w.write(b"half")
            raise RuntimeError("client went away")
        assert driver.get_content("/f") == b"half"

    def test_writer_commit_ends_writer(self, driver: Any) -> None:
        with driver.writer("/f") as w:
            w.write(b"done")
            w.commit()
            with pytest.raises(ValueError):
                w.write(b"x")
            with pytest.raises(ValueError):
                w.commit()
            with pytest.raises(ValueError):
                w.cancel()
        assert w.size == 4
        assert driver.get_content("/f") == b"done"

    def test_writer_fileno_writes_count(self, driver: Any) -> None:
        """Bytes written through ``fileno()`` (the blob writer's write-behind lane) count in size."""
        data = contents(100_000)
        with driver.writer("/f", append=True) as w:
            w.write(data[:10])
            fd = w.fileno()
            if fd is None:
                w.write(data[10:])
            else:
                assert write_all(fd, memoryview(data)[10:]) == len(data) - 10
            assert w.size == len(data)
            w.commit()
        assert driver.get_content("/f") == data

    # --- list ------------------------------------------------------------------------

    def test_list(self, driver: Any) -> None:
        rng = random.Random(7)
        root = "/root-dir"
        with pytest.raises(PathNotFound) as info:
            driver.list(root + "/nonexistent")
        check_error(info.value, PathNotFound, root + "/nonexistent", driver)

        parent = root + "/parent.dir"
        children = sorted({f"{parent}/{rng.randbytes(6).hex()}" for _ in range(50)})
        for child in children:
            driver.put_content(child, contents(32))
        driver.put_content(children[0] + "-sub/deeper", b"x")  # a grandchild is not listed

        assert driver.list("/") == [root]
        assert driver.list(root) == [parent]
        assert driver.list(parent) == sorted([*children, children[0] + "-sub"])

    def test_list_empty_directory(self, driver: Any) -> None:
        driver.put_content("/d/f", b"x")
        driver.delete("/d/f")
        assert driver.list("/d") == []

    # --- move ------------------------------------------------------------------------

    def test_move(self, driver: Any) -> None:
        data = contents(32)
        driver.put_content("/src/file", data)
        driver.move("/src/file", "/dst/deep/file")
        assert driver.get_content("/dst/deep/file") == data
        with pytest.raises(PathNotFound) as info:
            driver.get_content("/src/file")
        check_error(info.value, PathNotFound, "/src/file", driver)

    def test_move_overwrite(self, driver: Any) -> None:
        driver.put_content("/src", contents(32, 1))
        driver.put_content("/dst", contents(64, 2))
        driver.move("/src", "/dst")
        assert driver.get_content("/dst") == contents(32, 1)
        with pytest.raises(PathNotFound):
            driver.get_content("/src")

    def test_move_nonexistent(self, driver: Any) -> None:
        driver.put_content("/dst", b"keep")
        with pytest.raises(PathNotFound) as info:
            driver.move("/missing", "/dst")
        check_error(info.value, PathNotFound, "/missing", driver)
        assert driver.get_content("/dst") == b"keep"

    def test_move_invalid(self, driver: Any) -> None:
        driver.put_content("/notadir", b"file")
        with pytest.raises(PathNotFound):
            driver.move("/notadir/foo", "/notadir/bar")
        assert driver.get_content("/notadir") == b"file"

    def test_move_onto_itself(self, driver: Any) -> None:
        driver.put_content("/f", b"same")
        driver.move("/f", "/f")
        assert driver.get_content("/f") == b"same"

    # --- delete ----------------------------------------------------------------------

    def test_delete(self, driver: Any) -> None:
        driver.put_content("/d/f", b"x")
        driver.delete("/d/f")
        with pytest.raises(PathNotFound) as info:
            driver.get_content("/d/f")
        check_error(info.value, PathNotFound, "/d/f", driver)
        assert driver.stat("/d").is_dir  # the parent stays

    def test_delete_nonexistent(self, driver: Any) -> None:
        with pytest.raises(PathNotFound) as info:
            driver.delete("/nothing/here")
        check_error(info.value, PathNotFound, "/nothing/here", driver)

    def test_delete_folder(self, driver: Any) -> None:
        files = ["/dir/a", "/dir/b", "/dir/sub/c"]
        for f in files:
            driver.put_content(f, b"x")
        driver.delete("/dir/a")
        with pytest.raises(PathNotFound):
            driver.get_content("/dir/a")
        assert driver.get_content("/dir/b") == b"x"
        driver.delete("/dir")
        for f in files:
            with pytest.raises(PathNotFound):
                driver.get_content(f)
        assert driver.list("/") == []

    def test_delete_only_deletes_subpaths(self, driver: Any) -> None:
        driver.put_content("/d/file", b"1")
        driver.put_content("/d/filesuffix", b"2")
        driver.put_content("/d/d/file", b"3")
        driver.put_content("/d/dsuffix/file", b"4")
        driver.delete("/d/file")
        with pytest.raises(PathNotFound):
            driver.get_content("/d/file")
        assert driver.get_content("/d/filesuffix") == b"2"
        driver.delete("/d/d")
        with pytest.raises(PathNotFound):
            driver.get_content("/d/d/file")
        assert driver.get_content("/d/dsuffix/file") == b"4"

    # --- stat ------------------------------------------------------------------------

    def test_stat(self, driver: Any) -> None:
        data = contents(4096)
        for missing in ("/dir/x", "/dir/x/file"):
            with pytest.raises(PathNotFound) as info:
                driver.stat(missing)
            check_error(info.value, PathNotFound, missing, driver)

        driver.put_content("/dir/x/file", data)
        fi = driver.stat("/dir/x/file")
        assert isinstance(fi, FileInfo)
        assert (fi.path, fi.size, fi.is_dir) == ("/dir/x/file", 4096, False)
        assert isinstance(fi.mod_time, float)
        assert abs(fi.mod_time - time.time()) < 3600  # seconds since the epoch, not ns

        created = fi.mod_time
        _stamps_after(driver, created)
        driver.put_content("/dir/x/file", contents(10))
        fi = driver.stat("/dir/x/file")
        assert fi.mod_time > created
        assert fi.size == 10

        d = driver.stat("/dir/x")
        assert (d.path, d.size, d.is_dir) == ("/dir/x", 0, True)

    def test_stat_mtime_advances_on_append(self, driver: Any) -> None:
        driver.put_content("/f", b"a")
        before = driver.stat("/f").mod_time
        _stamps_after(driver, before)
        with driver.writer("/f", append=True) as w:
            w.write(b"b")
            w.commit()
        assert driver.stat("/f").mod_time > before

    def test_url_for(self, driver: Any) -> None:
        """A driver with url_for hands out URLs that serve the file; one without never redirects."""
        data = bytes(range(256)) * 4
        driver.put_content("/d/f", data)
        if not isinstance(driver, URLForDriver):
            blobs = BlobStore(driver, redirect_expiry=DEFAULT_URL_EXPIRY)
            assert not blobs.redirects
            assert blobs.redirect_url(Digest.from_bytes(data)) is None
            return
        with urllib.request.urlopen(driver.url_for("/d/f"), timeout=10) as resp:
            assert resp.read() == data
        ranged = urllib.request.Request(driver.url_for("/d/f"), headers={"Range": "bytes=10-19"})
        with urllib.request.urlopen(ranged, timeout=10) as resp:
            assert (resp.status, resp.read()) == (206, data[10:20])
        head = urllib.request.Request(driver.url_for("/d/f", method="HEAD"), method="HEAD")
        with urllib.request.urlopen(head, timeout=10) as resp:
            assert resp.headers["Content-Length"] == str(len(data))
        for bad in ({"method": "PUT"}, {"expiry": 0}, {"expiry": 8 * 24 * 3600}):
            with pytest.raises(ValueError, match=str(next(iter(bad.values())))):
                driver.url_for("/d/f", **bad)

    # --- concurrency -----------------------------------------------------------------

    def test_concurrent_stream_reads(self, driver: Any) -> None:
        data = contents(4 * MiB)
        driver.put_content("/f", data)

        def read(i: int) -> None:
            offset = random.Random(i).randrange(len(data))
            assert read_all(driver, "/f", offset) == data[offset:]

        run_threads(10, read)

    def test_concurrent_file_streams(self, driver: Any) -> None:
        def stream(i: int) -> None:
            data = contents(256 * 1024 + i, i)
            path = f"/streams/{i}/file"
            with driver.writer(path) as w:
                view = memoryview(data)
                for start in range(0, len(data), 10_000):
                    w.write(view[start : start + 10_000])
                w.commit()
            assert read_all(driver, path) == data

        run_threads(16, stream)
        assert len(driver.list("/streams")) == 16

    def test_put_content_is_atomic_for_readers(self, driver: Any) -> None:
        versions = [bytes([i]) * (64 * 1024) for i in range(8)]
        driver.put_content("/f", versions[0])
        stop = threading.Event()
        seen: list[bytes] = []

        def writer(_: int) -> None:
            try:
                for _round in range(5):
                    for v in versions:
                        driver.put_content("/f", v)
            finally:
                stop.set()

        def reader(_: int) -> None:
            while not stop.is_set():
                got = driver.get_content("/f")
                assert got in versions, "a reader saw a torn or partial file"
                seen.append(got[:1])

        run_threads(4, lambda i: writer(i) if i == 0 else reader(i))
        assert driver.list("/") == ["/f"]

    def test_concurrent_directory_creation(self, driver: Any) -> None:
        def put(i: int) -> None:
            driver.put_content(f"/shared/deep/tree/{i}", bytes([i]))

        run_threads(12, put)
        assert driver.list("/shared/deep/tree") == sorted(
            f"/shared/deep/tree/{i}" for i in range(12)
        )

    # --- walk ------------------------------------------------------------------------

    @pytest.fixture
    def walk_tree(self, driver: Any) -> Any:
        for p in WALK_FILES:
            driver.put_content(p, ("content " + p).encode())
        return driver

    def test_walk_all(self, walk_tree: Any) -> None:
        infos = list(walk_tree.walk("/"))
        assert [i.path for i in infos] == WALK_ALL
        by_path = {i.path: i for i in infos}
        assert by_path["/folder1"].is_dir and by_path["/folder1"].size == 0
        assert not by_path["/file1"].is_dir
        assert by_path["/file1"].size == len(b"content /file1")

    @pytest.mark.parametrize(
        ("start", "start_after", "expected"),
        [
            pytest.param("/folder1", None, ["/folder1/file1"], id="from-folder"),
            pytest.param(
                "/",
                "/folder3/subfolder1/subfolder1/file1",
                [
                    "/folder3/subfolder2",
                    "/folder3/subfolder2/subfolder1",
                    "/folder3/subfolder2/subfolder1/file1",
                    "/folder4",
                    "/folder4/file1",
                ],
                id="start-late-without-from",
            ),
            pytest.param(
                "/folder3",
                "/folder3/subfolder1/subfolder1/file1",
                [
                    "/folder3/subfolder2",
                    "/folder3/subfolder2/subfolder1",
                    "/folder3/subfolder2/subfolder1/file1",
                ],
                id="start-late-with-from",
            ),
            pytest.param("/folder1", "/folder2", [], id="start-after-from"),
            pytest.param("/folder3", "/folder3", WALK_ALL[8:14], id="start-matches-from"),
            pytest.param(
                "/folder3", "/folder3/notafolder/notafile", WALK_ALL[8:14], id="start-doesnt-exist"
            ),
            pytest.param("/", "/folder1", WALK_ALL[2:], id="start-at-directory-walks-into-it"),
            pytest.param("/", "/folder1/file1", WALK_ALL[3:], id="start-at-last-child"),
            pytest.param("/", "/folder0", WALK_ALL[1:], id="start-between-siblings"),
            pytest.param("/", "/", WALK_ALL, id="start-at-root"),
            pytest.param("/", "/a", WALK_ALL, id="start-before-everything"),
            pytest.param("/", "/z", [], id="start-after-everything"),
        ],
    )
    def test_walk_start_after(
        self, walk_tree: Any, start: str, start_after: str | None, expected: list[str]
    ) -> None:
        assert [i.path for i in walk_tree.walk(start, start_after=start_after)] == expected

    def test_walk_resumes_where_it_stopped(self, walk_tree: Any) -> None:
        """Paginating with the last path seen visits everything exactly once, in order."""
        seen: list[str] = []
        last: str | None = None
        for _ in range(len(WALK_ALL)):  # bounded: a walk that repeats itself must fail, not hang
            page = []
            for info in walk_tree.walk("/", start_after=last):
                page.append(info.path)
                if len(page) == 3:
                    break
            if not page:
                break
            seen += page
            last = page[-1]
        assert seen == WALK_ALL

    def test_walk_empty_and_missing(self, driver: Any) -> None:
        assert list(driver.walk("/")) == []
        driver.put_content("/d/f", b"x")
        driver.delete("/d/f")
        assert list(driver.walk("/d")) == []
        with pytest.raises(PathNotFound) as info:
            driver.walk("/missing")
        check_error(info.value, PathNotFound, "/missing", driver)

    def test_walk_tolerates_deletion_while_walking(self, walk_tree: Any) -> None:
        """A subtree removed mid-walk is not entered (distribution skips vanished paths)."""
        walked = []
        for info in walk_tree.walk("/"):
            walked.append(info.path)
            if info.path == "/folder2":
                walk_tree.delete("/folder3")
        assert walked[:7] == WALK_ALL[:7]
        assert walked[-2:] == ["/folder4", "/folder4/file1"]
        assert not [p for p in walked if p.startswith("/folder3/")]

    @settings(
        max_examples=25,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(
        files=st.sets(
            st.lists(
                st.text(alphabet="ab-._", min_size=1, max_size=3).filter(
                    lambda s: s not in (".", "..")
                ),
                min_size=1,
                max_size=3,
            ).map(tuple),
            min_size=1,
            max_size=8,
        ),
        data=st.data(),
    )
    def test_walk_order_property(
        self, driver: Any, files: set[tuple[str, ...]], data: st.DataObject
    ) -> None:
        # A path cannot be both a file and a directory: drop files that are prefixes of others.
        leaves = {f for f in files if not any(g[: len(f)] == f and g != f for g in files)}
        base = "/walk"
        for leaf in leaves:
            driver.put_content(base + "/" + "/".join(leaf), b"x")
        entries = {leaf[:n] for leaf in leaves for n in range(1, len(leaf) + 1)}
        expected = [base + "/" + "/".join(e) for e in sorted(entries)]
        try:
            assert [i.path for i in driver.walk(base)] == expected
            hint = data.draw(
                st.sampled_from(expected)
                | st.text(alphabet="ab-._/", min_size=1, max_size=8)
                .map(lambda s: f"{base}/{s}")
                .filter(is_valid_path)
            )
            after = [p for p in expected if walk_key(p) > walk_key(hint)]
            assert [i.path for i in driver.walk(base, start_after=hint)] == after
        finally:
            driver.delete(base)
