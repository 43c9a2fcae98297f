"""What only the LMDB provider promises: persistence, several processes, fork, corrupt values.

The shared behaviour is checked by the conformance suite (test_cache.py); here
the cache is reopened, shared with other processes (subprocesses and forks),
fed junk written straight into its sub-databases, filled up, and left behind
by a writer killed in the middle of a transaction.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lmdb
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ocistore.cache import CachedBlobStatter, LMDBDescriptorCache, codec
from ocistore.cache.codec import CorruptEntry
from ocistore.descriptor import Descriptor
from ocistore.digest import Digest
from ocistore.errors import BlobUnknown, CacheError
from suites.cache_suite import JSON, LAYER, OCTET, DictBackend, desc, dg

MAP = 1 << 30


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "cache"


@pytest.fixture
def cache(path: Path) -> Iterator[LMDBDescriptorCache]:
    c = LMDBDescriptorCache(path, map_size=MAP)
    yield c
    c.close()


PRELUDE = """
import json, os, sys, time
from ocistore.cache import LMDBDescriptorCache
from ocistore.descriptor import Descriptor
from ocistore.errors import BlobUnknown
cache = LMDBDescriptorCache(sys.argv[1], map_size=1 << 30)
def show(d):
    return [str(d.digest), d.size, d.media_type]
"""


def run_child(path: Path, code: str, *, timeout: float = 120) -> Any:
    """Run ``code`` in a new interpreter with ``cache`` opened on ``path``; return its JSON output."""
    out = subprocess.run(
        [sys.executable, "-c", PRELUDE + textwrap.dedent(code), str(path)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout) if out.stdout.strip() else None


def poke(cache: LMDBDescriptorCache, db: bytes, key: bytes, value: bytes) -> None:
    """Write raw bytes into one of the cache's sub-databases (as another program could)."""
    env = cache._h().env
    with env.begin(write=True) as txn:
        txn.put(key, value, db=env.open_db(db, txn=txn))


def show(d: Descriptor) -> list[object]:
    return [str(d.digest), d.size, d.media_type]


# --- persistence ----------------------------------------------------------------------------


def test_persists_across_reopen(path: Path) -> None:
    d = desc("persist", media_type=LAYER)
    alias = dg("blake3", "persist")
    with LMDBDescriptorCache(path, map_size=MAP) as cache:
        cache.repository_scoped("foo/bar").set_descriptor(alias, d.with_(media_type=JSON))
        other = desc("other")
        cache.set_descriptor(other.digest, other)
        cache.clear(other.digest)
        generation = cache.generation()
    with LMDBDescriptorCache(path, map_size=MAP) as cache:
        assert cache.repository_scoped("foo/bar").stat(alias) == d.with_(media_type=JSON)
        assert cache.stat(alias) == d.with_(media_type=JSON)
        assert cache.stat(d.digest) == d.with_(media_type=JSON)
        with pytest.raises(BlobUnknown):
            cache.stat(other.digest)
        assert cache.generation() == generation
        assert cache.stats()["entries"] == 2
        assert cache.stats()["repository_entries"] == 2
        assert len(cache) == 4


def test_the_directory_is_created(tmp_path: Path) -> None:
    where = tmp_path / "a" / "b" / "cache"
    with LMDBDescriptorCache(where, map_size=MAP) as cache:
        assert cache.path == str(where)
    assert (where / "data.mdb").is_file() and (where / "lock.mdb").is_file()


def test_closed_cache_raises_cache_error(path: Path) -> None:
    cache = LMDBDescriptorCache(path, map_size=MAP)
    scope = cache.repository_scoped("foo/bar")
    cache.close()
    cache.close()  # idempotent
    d = desc("closed")
    for call in (
        lambda: cache.stat(d.digest),
        lambda: cache.set_descriptor(d.digest, d),
        lambda: cache.clear(d.digest),
        lambda: cache.generation(),
        lambda: scope.set_descriptor(d.digest, d),
    ):
        with pytest.raises(CacheError, match="closed"):
            call()


def test_other_format_is_refused(path: Path) -> None:
    with LMDBDescriptorCache(path, map_size=MAP) as cache:
        poke(cache, b"meta", b"format", b"something-else/9")
    with pytest.raises(CacheError) as info:
        LMDBDescriptorCache(path, map_size=MAP)
    assert str(path) in str(info.value) and "something-else" in info.value.reason
    # and the failed open released the environment: the directory can be opened raw
    lmdb.open(str(path), max_dbs=8).close()


def test_durable_mode(path: Path) -> None:
    d = desc("durable")
    with LMDBDescriptorCache(path, map_size=MAP, durable=True) as cache:
        cache.set_descriptor(d.digest, d)
    with LMDBDescriptorCache(path, map_size=MAP) as cache:
        assert cache.stat(d.digest) == d


def test_purge_keeps_repository_ids(cache: LMDBDescriptorCache) -> None:
    d = desc("purge")
    names = ["p/one", "p/two", "p/three"]
    for name in names:
        cache.repository_scoped(name).set_descriptor(d.digest, d)
    ids = {name: cache._repo_id(name, create=False) for name in names}
    assert sorted(ids.values()) == [1, 2, 3]  # a name table, not a hash of the name
    before = cache.generation()
    cache.purge()
    assert cache.generation() > before
    assert len(cache) == 0
    assert cache.stats()["repositories"] == 3
    with pytest.raises(BlobUnknown):
        cache.repository_scoped("p/one").stat(d.digest)
    cache.repository_scoped("p/four").set_descriptor(d.digest, d)
    assert cache._repo_id("p/four", create=False) == 4
    assert cache.repository_scoped("p/four").stat(d.digest) == d


def test_media_types_share_a_table(cache: LMDBDescriptorCache) -> None:
    for i in range(100):
        d = desc(i, media_type=(OCTET, JSON, LAYER)[i % 3])
        cache.repository_scoped("m/t").set_descriptor(d.digest, d)
    assert cache.stats()["media_types"] == 3
    long_type = "application/" + "z" * 400  # longer ones are stored inline
    d = desc("long", media_type=long_type)
    cache.set_descriptor(d.digest, d)
    assert cache.stats()["media_types"] == 3
    assert cache.stat(d.digest).media_type == long_type


def test_full_map_is_a_cache_error(tmp_path: Path) -> None:
    with LMDBDescriptorCache(tmp_path / "small", map_size=256 * 1024) as cache:
        items = [(dg("sha512", i), desc(i)) for i in range(5000)]
        with pytest.raises(CacheError, match="MapFull"):
            cache.set_many(items)  # one transaction: all or nothing
        assert len(cache) == 0
        with pytest.raises(CacheError, match="MapFull"):
            for key, value in items:
                cache.set_descriptor(key, value)
        # A caching statter over the full cache answers anyway, counting the failed fills.
        statter = CachedBlobStatter(cache, DictBackend(dict(items)))
        for key, value in items[-50:]:
            assert statter.stat(key) == value
        assert statter.metrics.errors > 0  # (a few may fit in pages freed since)


# --- several processes -------------------------------------------------------------------------


def test_two_processes_share_entries_and_generation(cache: LMDBDescriptorCache, path: Path) -> None:
    mine = desc("mine", media_type=LAYER)
    alias = dg("sha512", "mine")
    cache.repository_scoped("foo/bar").set_descriptor(alias, mine)

    got = run_child(
        path,
        f"""
        print(json.dumps([show(cache.repository_scoped("foo/bar").stat("{alias}")),
                          show(cache.stat("{mine.digest}")), cache.generation()]))
        """,
    )
    assert got == [show(mine), show(mine), cache.generation()]

    theirs = desc("theirs", media_type=JSON)
    run_child(
        path,
        f"""
        cache.repository_scoped("foo/baz").set_descriptor(
            "{theirs.digest}", Descriptor("{theirs.digest}", {theirs.size}, "{JSON}"))
        """,
    )
    assert cache.repository_scoped("foo/baz").stat(theirs.digest) == theirs
    assert cache.stats()["repositories"] == 2

    # One clears, the other sees the generation move and the entry go.
    before = cache.generation()
    run_child(path, f'cache.repository_scoped("foo/bar").clear("{alias}")')
    assert cache.generation() > before
    with pytest.raises(BlobUnknown):
        cache.repository_scoped("foo/bar").stat(alias)

    before = cache.generation()
    cache.clear(mine.digest)
    got = run_child(
        path,
        f"""
        try:
            cache.stat("{mine.digest}")
            print(json.dumps(["found", cache.generation()]))
        except BlobUnknown:
            print(json.dumps(["unknown", cache.generation()]))
        """,
    )
    assert got == ["unknown", before + 1]


def test_generation_seen_by_a_waiting_process(cache: LMDBDescriptorCache, path: Path) -> None:
    """A second process polling ``generation()`` (as an in-process LRU would) sees a clear."""
    d = desc("watched")
    cache.set_descriptor(d.digest, d)
    start = cache.generation()
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            PRELUDE
            + textwrap.dedent(
                f"""
                print("ready", flush=True)
                deadline = time.monotonic() + 60  # polling with a deadline: see waiting.py
                while cache.generation() == {start} and time.monotonic() < deadline:
                    time.sleep(0.01)
                print(cache.generation(), flush=True)
                """
            ),
            str(path),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "ready"
        cache.clear(d.digest)
        assert int(child.stdout.readline()) == start + 1
    finally:
        child.wait(timeout=60)
    assert child.returncode == 0


def test_concurrent_processes_allocate_distinct_repository_ids(
    cache: LMDBDescriptorCache, path: Path
) -> None:
    names = [f"race/r{i}" for i in range(40)]
    code = f"""
    import random
    names = {names!r}
    random.seed(os.getpid())
    random.shuffle(names)
    for name in names:
        d = "sha256:" + format(sum(map(ord, name)), "064x")
        cache.repository_scoped(name).set_descriptor(d, Descriptor(d, len(name), "a/b"))
    """
    children = [
        subprocess.Popen([sys.executable, "-c", PRELUDE + textwrap.dedent(code), str(path)])
        for _ in range(3)
    ]
    for child in children:
        assert child.wait(timeout=120) == 0
    ids = {name: cache._repo_id(name, create=False) for name in names}
    assert sorted(i for i in ids.values() if i is not None) == list(range(1, len(names) + 1))
    env = cache._h().env
    with env.begin() as txn:
        table = env.open_db(b"ids", txn=txn)
        for name, rid in ids.items():
            assert rid is not None
            assert txn.get(codec.pack_repo_id(rid), db=table) == name.encode()
    for name in names:
        d = "sha256:" + format(sum(map(ord, name)), "064x")
        assert cache.repository_scoped(name).stat(d).size == len(name)


def test_a_killed_writer_leaves_the_cache_usable(cache: LMDBDescriptorCache, path: Path) -> None:
    kept = desc("kept")
    cache.set_descriptor(kept.digest, kept)
    lost = desc("lost")
    # The child dies holding LMDB's write lock, in the middle of a transaction.
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            PRELUDE
            + textwrap.dedent(
                f"""
                import signal
                cache.set_descriptor("{lost.digest}", Descriptor("{lost.digest}", 1, "a/b"))
                env = cache._h().env
                txn = env.begin(write=True)
                txn.put(b"junk", b"junk", db=env.open_db(b"blobs", txn=txn))
                os.kill(os.getpid(), signal.SIGKILL)
                """
            ),
            str(path),
        ],
        timeout=120,
    )
    assert out.returncode == -signal.SIGKILL
    # Readers never blocked; the next writer recovers the lock (checked in a child
    # with a timeout, so that a regression fails instead of hanging the suite).
    assert cache.stat(kept.digest) == kept
    assert cache.stat(lost.digest).size == 1  # committed before the crash
    fresh = desc("fresh")
    got = run_child(
        path,
        f"""
        cache.set_descriptor("{fresh.digest}", Descriptor("{fresh.digest}", 3, "a/b"))
        env = cache._h().env
        with env.begin() as txn:
            junk = txn.get(b"junk", db=env.open_db(b"blobs", txn=txn))
        print(json.dumps([show(cache.stat("{fresh.digest}")), junk is None]))
        """,
        timeout=60,
    )
    assert got == [[str(fresh.digest), 3, "a/b"], True]
    assert cache.stat(fresh.digest).size == 3


# --- fork ----------------------------------------------------------------------------------------


def _in_child(fn: Any) -> int:
    """Run ``fn`` in a forked child; its exit status (0: passed)."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            signal.alarm(60)
            code = 0 if fn() else 3
        except BaseException:
            import traceback

            traceback.print_exc()
            code = 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def test_usable_after_fork(cache: LMDBDescriptorCache) -> None:
    parents = desc("parent's")
    childs = desc("child's", media_type=JSON)
    cache.repository_scoped("f/k").set_descriptor(parents.digest, parents)
    before = cache.generation()

    def child() -> bool:
        scope = cache.repository_scoped("f/k")
        assert scope.stat(parents.digest) == parents
        scope.set_descriptor(childs.digest, childs)
        scope.clear(parents.digest)
        return scope.stat(childs.digest) == childs

    assert _in_child(child) == 0
    # The parent's own environment still works, and sees the child's writes.
    for _ in range(3):
        assert cache.repository_scoped("f/k").stat(childs.digest) == childs
    with pytest.raises(BlobUnknown):
        cache.repository_scoped("f/k").stat(parents.digest)
    assert cache.generation() == before + 1
    later = desc("later")
    cache.set_descriptor(later.digest, later)
    assert cache.stat(later.digest) == later


def test_fork_while_another_thread_holds_the_lock(cache: LMDBDescriptorCache) -> None:
    """A lock held at fork time (by a thread the child does not have) must not hang the child."""
    d = desc("locked")
    cache.set_descriptor(d.digest, d)
    with cache._lock:
        status = _in_child(lambda: cache.stat(d.digest) == d)
    assert status == 0


def test_multiprocessing_fork_pool(cache: LMDBDescriptorCache) -> None:
    import multiprocessing

    items = [(dg("sha512", i), desc(i, size=i)) for i in range(20)]
    cache.set_many(items)
    global _POOL_CACHE
    _POOL_CACHE = cache
    try:
        with multiprocessing.get_context("fork").Pool(2) as pool:
            sizes = pool.map(_pool_stat, [str(k) for k, _ in items])
    finally:
        _POOL_CACHE = None
    assert sizes == list(range(20))
    assert cache.stat(items[3][0]).size == 3


_POOL_CACHE: LMDBDescriptorCache | None = None


def _pool_stat(key: str) -> int:
    assert _POOL_CACHE is not None
    return _POOL_CACHE.stat(key).size


# --- corrupt values ------------------------------------------------------------------------------

KEY = dg("sha512", "corrupt")
CANON = desc("corrupt", media_type=LAYER)


def _entry(flags: int, size: int, rest: bytes) -> bytes:
    return bytes((flags,)) + size.to_bytes(8, "little") + rest


JUNK_ENTRIES = {
    "empty": b"",
    "one-byte": b"\x11",
    "random": bytes(random.Random(7).randrange(256) for _ in range(40)),
    "version-2": _entry(0x20, 1, (1).to_bytes(4, "little")),
    "unknown-flag": _entry(0x18, 1, (1).to_bytes(4, "little")),
    "truncated-media": _entry(0x10, 1, b"\x01\x00"),
    "unknown-media-id": _entry(0x10, 1, (9999).to_bytes(4, "little")),
    "media-id-0": _entry(0x10, 1, (0).to_bytes(4, "little")),
    "inline-not-utf8": _entry(0x12, 1, b"\x02\x00\xff\xfe"),
    "inline-too-short": _entry(0x12, 1, b"\x09\x00abc"),
    "size-too-large": _entry(0x12, 2**64 - 1, b"\x03\x00a/b"),
    "trailing-bytes": _entry(0x12, 1, b"\x03\x00a/bXX"),
    "alias-missing": _entry(0x13, 1, b"\x03\x00a/b"),
    "alias-short": _entry(0x13, 1, b"\x03\x00a/b\x01" + b"\x00" * 31),
    "alias-unknown-alg": _entry(0x13, 1, b"\x03\x00a/b\x09" + b"\x00" * 32),
    "alias-same-alg": _entry(0x13, 1, b"\x03\x00a/b\x02" + b"\x00" * 64),
}


@pytest.mark.parametrize("junk", list(JUNK_ENTRIES.values()), ids=list(JUNK_ENTRIES))
def test_corrupt_entry_is_a_counted_miss(cache: LMDBDescriptorCache, junk: bytes) -> None:
    poke(cache, b"blobs", codec.digest_key(KEY), junk)
    with pytest.raises(BlobUnknown):
        cache.stat(KEY)
    assert cache.stats()["corrupt"] == 1
    assert cache.stat_many([KEY]) == {}

    statter = CachedBlobStatter(cache, DictBackend({KEY: CANON}))
    assert statter.stat(KEY) == CANON
    assert statter.metrics.snapshot() == {"hits": 0, "misses": 1, "errors": 0, "invalidations": 0}
    assert cache.stat(KEY) == CANON  # the junk was overwritten by the fill
    assert statter.stat(KEY) == CANON
    assert statter.metrics.hits == 1


@pytest.mark.parametrize(
    "junk", [b"", b"\x10", b"\x20\x01\x00\x00\x00", b"\x12\x05\x00a/b", b"\x10\x00\x00\x00\x00"]
)
def test_corrupt_membership_is_a_counted_miss(cache: LMDBDescriptorCache, junk: bytes) -> None:
    scope = cache.repository_scoped("c/m")
    scope.set_descriptor(KEY, CANON)
    rid = cache._repo_id("c/m", create=False)
    assert rid is not None
    poke(cache, b"repos", codec.repository_key(rid, KEY), junk)
    with pytest.raises(BlobUnknown):
        scope.stat(KEY)
    assert cache.stats()["corrupt"] == 1
    statter = CachedBlobStatter(scope, DictBackend({KEY: CANON}))
    assert statter.stat(KEY) == CANON
    assert statter.metrics.errors == 0
    assert scope.stat(KEY) == CANON


def test_junk_written_by_another_process(cache: LMDBDescriptorCache, path: Path) -> None:
    cache.set_descriptor(KEY, CANON)
    run_child(
        path,
        f"""
        env = cache._h().env
        with env.begin(write=True) as txn:
            txn.put(bytes.fromhex("{codec.digest_key(KEY).hex()}"), os.urandom(23),
                    db=env.open_db(b"blobs", txn=txn))
        """,
    )
    statter = CachedBlobStatter(cache, DictBackend({KEY: CANON}))
    assert statter.stat(KEY) == CANON
    assert statter.metrics.misses == 1 and statter.metrics.errors == 0


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(junk=st.binary(max_size=120))
def test_any_stored_bytes_give_a_descriptor_or_a_miss(
    cache: LMDBDescriptorCache, junk: bytes
) -> None:
    poke(cache, b"blobs", codec.digest_key(KEY), junk)
    try:
        got = cache.stat(KEY)
    except BlobUnknown:
        return
    assert isinstance(got, Descriptor) and got.size >= 0 and got.media_type


def test_corrupt_generation(cache: LMDBDescriptorCache) -> None:
    poke(cache, b"meta", b"generation", b"\x01\x02")
    with pytest.raises(CacheError, match="generation"):
        cache.generation()
    d = desc("g")
    cache.set_descriptor(d.digest, d)
    cache.clear(d.digest)  # repairs it, far from any value seen before
    assert cache.generation() > 2**32


def test_corrupt_id_counter_never_reuses_an_id(cache: LMDBDescriptorCache) -> None:
    d = desc("ids")
    for name in ("i/one", "i/two"):
        cache.repository_scoped(name).set_descriptor(d.digest, d)
    poke(cache, b"meta", b"next-repository-id", b"junk!")
    cache.repository_scoped("i/three").set_descriptor(d.digest, d)
    assert cache._repo_id("i/three", create=False) == 3


# --- the binary format ------------------------------------------------------------------------------

digests = st.builds(
    lambda alg, raw: Digest(f"{alg}:{raw.hex()}"),
    st.sampled_from(["sha256", "blake3"]),
    st.binary(min_size=32, max_size=32),
) | st.builds(lambda raw: Digest(f"sha512:{raw.hex()}"), st.binary(min_size=64, max_size=64))
media = st.integers(1, 2**32 - 1) | st.text(min_size=1, max_size=300).filter(
    lambda s: (
        len(s.encode("utf-8", "surrogatepass")) <= 0xFFFF
        and not any(0xD800 <= ord(c) <= 0xDFFF for c in s)
    )
)


@given(dgst=digests, rid=st.integers(1, 2**32 - 1))
def test_keys_round_trip(dgst: Digest, rid: int) -> None:
    key = codec.digest_key(dgst)
    assert len(key) == 1 + len(dgst.encoded) // 2
    assert codec.key_digest(key) == dgst
    scoped = codec.repository_key(rid, dgst)
    assert scoped.startswith(codec.repository_prefix(rid)) and scoped[4:] == key


@given(size=st.integers(0, 2**63 - 1), media_ref=media, alias=st.none() | digests)
def test_entries_round_trip(size: int, media_ref: int | str, alias: Digest | None) -> None:
    packed = codec.pack_entry(size, media_ref, alias)
    assert codec.unpack_entry(packed) == (size, media_ref, alias)
    assert codec.unpack_membership(codec.pack_membership(media_ref)) == media_ref


@given(junk=st.binary(max_size=100))
def test_decoding_junk_raises_only_corrupt_entry(junk: bytes) -> None:
    for decode in (codec.unpack_entry, codec.unpack_membership, codec.key_digest):
        with contextlib.suppress(CorruptEntry):
            decode(junk)


def test_entry_layout_is_pinned() -> None:
    """The bytes on disk: changing them needs a new format version."""
    canonical = Digest("sha256:" + "ab" * 32)
    assert codec.digest_key(canonical) == b"\x01" + b"\xab" * 32
    assert codec.pack_entry(5, 7) == b"\x10" + (5).to_bytes(8, "little") + (7).to_bytes(4, "little")
    assert codec.pack_entry(5, "a/b", canonical) == (
        b"\x13" + (5).to_bytes(8, "little") + b"\x03\x00a/b" + b"\x01" + b"\xab" * 32
    )
    assert codec.pack_membership(2) == b"\x10\x02\x00\x00\x00"
    assert codec.repository_key(1, canonical) == b"\x00\x00\x00\x01" + codec.digest_key(canonical)


def test_threads_share_one_environment(cache: LMDBDescriptorCache) -> None:
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            scope = cache.repository_scoped(f"th/r{n % 3}")
            for i in range(200):
                d = desc((n, i), size=i)
                scope.set_descriptor(d.digest, d)
                assert scope.stat(d.digest) == d
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert cache.stats()["entries"] == 6 * 200


def test_setting_what_is_stored_writes_nothing(cache: LMDBDescriptorCache) -> None:
    """Refilling a known entry takes no write transaction (no writer lock between processes)."""
    alias = dg("sha512", "same")
    d = desc("same", media_type=LAYER)
    scope = cache.repository_scoped("s/t")
    scope.set_descriptor(alias, d)
    cache.set_descriptor(dg("blake3", "same"), d)
    env = cache._h().env
    before = env.info()["last_txnid"]
    scope.set_descriptor(alias, d)
    scope.set_many([(d.digest, d), (alias, d)])
    cache.set_descriptor(alias, d.with_(media_type=JSON))  # globally the first type stays anyway
    cache.set_descriptor(dg("blake3", "same"), d)
    assert env.info()["last_txnid"] == before
    # ... but any difference is written
    scope.set_descriptor(alias, d.with_(media_type=JSON))
    assert env.info()["last_txnid"] == before + 1
    assert scope.stat(alias).media_type == JSON
    cache.set_descriptor(d.digest, d.with_(size=d.size + 1))
    assert env.info()["last_txnid"] == before + 2
    assert cache.stat(d.digest).size == d.size + 1


def test_one_instance_per_directory_and_process(cache: LMDBDescriptorCache, path: Path) -> None:
    with pytest.raises(CacheError, match="already open"):
        LMDBDescriptorCache(path, map_size=MAP)
    assert cache.generation() == 0  # the failed open did not disturb the first


def test_unusable_path_is_a_cache_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_bytes(b"not a directory")
    with pytest.raises(CacheError) as info:
        LMDBDescriptorCache(tmp_path / "file", map_size=MAP)
    assert str(tmp_path / "file") in str(info.value)


def test_child_closing_and_reopening(cache: LMDBDescriptorCache, path: Path) -> None:
    """A forked child may close the inherited cache and open its own on the same directory."""
    d = desc("reopen")
    cache.set_descriptor(d.digest, d)

    def child() -> bool:
        cache.close()
        with LMDBDescriptorCache(path, map_size=MAP) as mine:
            return mine.stat(d.digest) == d

    assert _in_child(child) == 0
    assert cache.stat(d.digest) == d
