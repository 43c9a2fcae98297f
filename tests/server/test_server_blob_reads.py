"""GET blob bodies: read from the event loop when the page cache has them, else in the pool.

Blob bodies go out in ``SEND_CHUNK`` messages; each is read with
``_core.pread_nowait`` (no wait for the disk) and, when that cannot answer,
with a blocking ``pread`` in the thread pool (``blobs.read_at``). Whatever
path each chunk takes, the bytes and the headers are the same, for whole
blobs and ranges, on the filesystem and the in-memory driver.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, BinaryIO

import pytest

from ocistore import _core
from ocistore.cache import MemoryDescriptorCache
from ocistore.driver import InMemoryDriver
from ocistore.server import blobs, http
from ocistore.server.app import RegistryApp
from ocistore.server.http import Request
from ocistore.storage.registry import Registry

from .asgi_client import Client
from .conftest import SECRET, sha256
from .helpers import push_blob

REPO = "library/reads"
CHUNK = 64 << 10
DATA = os.urandom(5 * CHUNK + 1234)

RANGES = [
    (0, len(DATA) - 1),
    (0, 0),
    (CHUNK - 1, CHUNK),  # across a chunk boundary
    (CHUNK, 2 * CHUNK - 1),  # exactly one chunk
    (100, 3 * CHUNK + 7),
    (len(DATA) - 1, len(DATA) - 1),
]


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """A few chunks per blob without pushing megabytes."""
    monkeypatch.setattr(http, "SEND_CHUNK", CHUNK)


@pytest.fixture
def pool_reads(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    """Every read that went to the thread pool, as (offset, length)."""
    calls: list[tuple[int, int]] = []
    real = blobs.read_at

    def counting(reader: BinaryIO, pos: int, n: int) -> bytes:
        calls.append((pos, n))
        return real(reader, pos, n)

    monkeypatch.setattr(blobs, "read_at", counting)
    return calls


def check_reads(client: Client, dgst: str) -> None:
    r = client.get(f"/v2/{REPO}/blobs/{dgst}")
    assert (r.status, r.header("Content-Length"), r.body == DATA) == (200, str(len(DATA)), True)
    r = client.head(f"/v2/{REPO}/blobs/{dgst}")
    assert (r.status, r.header("Content-Length"), r.body) == (200, str(len(DATA)), b"")
    for first, last in RANGES:
        r = client.get(f"/v2/{REPO}/blobs/{dgst}", headers={"Range": f"bytes={first}-{last}"})
        assert r.status == 206
        assert r.body == DATA[first : last + 1]
        assert r.header("Content-Length") == str(last + 1 - first)
        assert r.header("Content-Range") == f"bytes {first}-{last}/{len(DATA)}"
    r = client.get(f"/v2/{REPO}/blobs/{dgst}", headers={"Range": f"bytes=-{CHUNK + 3}"})
    assert (r.status, r.body) == (206, DATA[-(CHUNK + 3) :])


def test_cached_blob_is_read_on_the_loop(client: Client, pool_reads: list[Any]) -> None:
    dgst = push_blob(client, REPO, DATA)
    check_reads(client, dgst)
    with open(__file__, "rb") as f:
        nowait_works = _core.pread_nowait(f.fileno(), 1, 0) is not None
    if nowait_works:
        assert pool_reads == []  # every chunk came from the page cache (RWF_NOWAIT works here)


@pytest.mark.parametrize("cache", ["cold", "half"])
def test_uncached_chunks_go_to_the_pool(
    client: Client, pool_reads: list[tuple[int, int]], monkeypatch: pytest.MonkeyPatch, cache: str
) -> None:
    """Chunks the page cache cannot give at once are read in the pool; short reads continue."""
    dgst = push_blob(client, REPO, DATA)
    real = _core.pread_nowait

    def fake(fd: int, n: int, pos: int) -> bytes | None:
        if cache == "cold":
            return None
        return real(fd, max(1, n // 2), pos)  # only the first half of each chunk is cached

    monkeypatch.setattr(_core, "pread_nowait", fake)
    check_reads(client, dgst)
    if cache == "cold":
        assert pool_reads and all(n <= CHUNK for _, n in pool_reads)
        assert sum(n for pos, n in pool_reads[: len(DATA) // CHUNK + 1]) == len(DATA)


def test_in_memory_driver_reads_through_the_pool(
    tmp_path: Path, pool_reads: list[tuple[int, int]]
) -> None:
    registry = Registry(InMemoryDriver(), cache=MemoryDescriptorCache(), delete_enabled=True)
    app = RegistryApp(registry, secret=SECRET, lock_dir=str(tmp_path / "locks"))
    try:
        client = Client(app)
        dgst = push_blob(client, REPO, DATA)
        assert dgst == sha256(DATA)
        check_reads(client, dgst)
        assert pool_reads  # no file descriptor: every chunk is read off the loop
    finally:
        app.executor.shutdown(wait=True)


def test_request_header_lookup() -> None:
    """Raw lookups (names lower case, as ASGI requires) agree with the decoded headers."""
    scope = {
        "method": "GET",
        "path": "/v2/",
        "headers": [
            (b"accept", b"application/json"),
            (b"x-many", b"one"),
            (b"host", b"registry.test"),
            (b"x-many", b"two"),
            (b"x-latin", "caf\u00e9".encode("latin-1")),
        ],
    }

    async def receive() -> dict[str, Any]:
        return {"type": "http.disconnect"}

    for decode_first in (False, True):
        req = Request(scope, receive)
        if decode_first:
            assert req.headers["x-many"] == "one, two"
        assert req.header("accept") == "application/json"
        assert req.header("x-many") == "one, two"
        assert req.header("x-latin") == "caf\u00e9"
        assert req.header("absent") is None


HEAP_CHECK = """
import asyncio, ctypes, json, os, sys
from pathlib import Path

sys.path.insert(0, sys.argv[2])
from ocistore.server import http
from ocistore.server.memory import tune_allocator
from server.asgi_client import Client
from server.conftest import make_app
from server.helpers import push_blob


class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd",
        "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]


libc = ctypes.CDLL(None)
libc.mallinfo2.restype = MallInfo2
assert tune_allocator()
app = make_app(Path(sys.argv[1]))
data = os.urandom(2 * http.SEND_CHUNK + 1)
digest = push_blob(Client(app), "heap/check", data)
path = f"/v2/heap/check/blobs/{digest}"
scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
         "method": "GET", "scheme": "http", "path": path, "raw_path": path.encode(),
         "query_string": b"", "headers": [(b"host", b"registry.test")],
         "server": ("127.0.0.1", 5000), "client": ("127.0.0.1", 40000)}
seen = []


async def receive():
    return {"type": "http.request", "body": b"", "more_body": False}


async def send(msg):
    if msg["type"] == "http.response.body" and msg["body"]:
        seen.append([len(msg["body"]), libc.mallinfo2().hblks])


before = libc.mallinfo2().hblks
asyncio.run(app(scope, receive, send))
app.executor.shutdown(wait=True)
print(json.dumps({"send_chunk": http.SEND_CHUNK, "mapped_before": before, "bodies": seen}))
"""


@pytest.mark.one_core
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc (Linux)")
def test_messages_stay_inside_mallocs_heap(tmp_path: Path) -> None:
    """In a tuned worker, no body message gets a mapping of its own from malloc.

    A message mapped and unmapped per send would be faulted in page by page
    (see ``ocistore.server.memory``). Run in a child, as the tuning is the
    whole process's; ``mallinfo2().hblks`` counts malloc's mapped chunks.
    """
    tests = Path(__file__).resolve().parents[1]
    out = subprocess.run(
        [sys.executable, "-c", HEAP_CHECK, str(tmp_path), str(tests)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    chunk, before = got["send_chunk"], got["mapped_before"]
    assert [n for n, _ in got["bodies"]] == [chunk, chunk, 1]  # real, full-size messages
    assert [mapped for _, mapped in got["bodies"]] == [before] * 3
