"""The core's stat cache (``_core.StatCache``) and shared counter, on both cores.

The fallback is the storage layer's real statter on a real filesystem root, so
every invalidation is caused the way it happens in production: files removed,
renamed or rewritten by ``os`` calls (another program), not by the cache's API.
"""

from __future__ import annotations

import gc
import multiprocessing
import os
import re
import shutil
import sys
from collections import OrderedDict
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ocistore import _core
from ocistore.descriptor import Descriptor
from ocistore.digest import Digest
from ocistore.driver import FilesystemDriver
from ocistore.errors import BlobUnknown, DigestInvalid, PathNotFound
from ocistore.storage import paths
from ocistore.storage.hotcache import new_stat_cache
from ocistore.storage.statter import GlobalBlobStatter, LinkedBlobStatter, read_link

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="inotify is Linux")


class Counting:
    """A fallback that counts the stats that reach it."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.calls = 0
        self.cleared: list[Digest] = []
        self.set: list[Digest] = []

    def stat(self, digest: Digest | str) -> Descriptor:
        self.calls += 1
        desc: Descriptor = self.inner.stat(digest)
        return desc

    def set_descriptor(self, digest: Digest | str, desc: Descriptor) -> None:
        self.set.append(Digest(digest))

    def clear(self, digest: Digest | str) -> None:
        self.cleared.append(Digest(digest))


class Root:
    """A storage root with helpers to put blobs and links and to damage them with ``os``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.driver = FilesystemDriver(path)

    def blob(self, data: bytes) -> Descriptor:
        d = Digest.from_bytes(data)
        self.driver.put_content(paths.path_for(paths.BlobData(d)), data)
        return Descriptor(d, len(data), "application/octet-stream")

    def link(self, name: str, digest: Digest, target: Digest | None = None) -> None:
        path = paths.path_for(paths.LayerLink(name, digest))
        self.driver.put_content(path, str(target or digest).encode())

    def os_path(self, spec: paths.PathSpec) -> Path:
        return Path(self.driver.full_path(paths.path_for(spec)))

    def link_dir(self, name: str) -> str:
        return self.driver.full_path(paths.path_for(paths.Layers(name)))


@pytest.fixture
def root(tmp_path: Path) -> Root:
    return Root(tmp_path / "root")


def global_scope(cache: Any, root: Root) -> tuple[Any, Counting]:
    fallback = Counting(GlobalBlobStatter(root.driver))
    return cache.scope(fallback), fallback


def repo_scope(cache: Any, root: Root, name: str = "lib/a") -> tuple[Any, Counting]:
    fallback = Counting(LinkedBlobStatter(root.driver, GlobalBlobStatter(root.driver), name))
    link = paths.link_template(root.link_dir(name))
    return cache.scope(fallback, scope=f"layers:{name}", link=link), fallback


# --- shared counter -------------------------------------------------------------------------


def test_counter_counts_and_is_shared(tmp_path: Path) -> None:
    path = tmp_path / "generation"
    one = _core.SharedCounter(path)
    two = _core.SharedCounter(str(path))
    try:
        assert one.value() == two.value() == 0
        assert one.bump() == 1
        assert two.value() == 1
        assert two.bump() == 2
        assert one.value() == 2
        assert path.stat().st_size == 8
        assert "generation" in repr(one) and one.path == str(path)
    finally:
        one.close()
        two.close()
    with pytest.raises(ValueError, match="closed"):
        one.value()
    with pytest.raises(ValueError, match="closed"):
        one.bump()
    one.close()  # twice is fine


def test_counter_cores_share_one_file(tmp_path: Path) -> None:
    path = tmp_path / "generation"
    native = _core.load("native").SharedCounter(path)
    pure = _core.load("pure").SharedCounter(path)
    try:
        native.bump()
        pure.bump()
        assert native.value() == pure.value() == 2
    finally:
        native.close()
        pure.close()


def test_counter_extends_a_short_file_and_keeps_a_value(tmp_path: Path) -> None:
    path = tmp_path / "generation"
    path.write_bytes(b"\x01")
    c = _core.SharedCounter(path)
    try:
        assert c.value() == int.from_bytes(b"\x01" + bytes(7), sys.byteorder)  # zero extended
    finally:
        c.close()
    path.write_bytes((41).to_bytes(8, sys.byteorder) + b"more")
    c = _core.SharedCounter(path)
    try:
        assert c.bump() == 42
        assert path.read_bytes()[8:] == b"more"
    finally:
        c.close()


def test_counter_bad_path(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        _core.SharedCounter(tmp_path / "missing-dir" / "generation")


# --- construction ---------------------------------------------------------------------------


@pytest.mark.parametrize("capacity", [0, -1, 1.5, True, "10"])
def test_bad_capacity(root: Root, capacity: Any) -> None:
    with pytest.raises(ValueError, match="capacity"):
        new_stat_cache(root.path, capacity=capacity)


def test_new_cache_is_empty(root: Root) -> None:
    cache = new_stat_cache(root.path, capacity=7)
    assert len(cache) == 0 and cache.capacity == 7 and cache.watching
    assert cache.root == str(root.path)
    assert cache.stats() == {
        "entries": 0,
        "capacity": 7,
        "hits": 0,
        "misses": 0,
        "fills": 0,
        "invalidations": 0,
        "evictions": 0,
        "resets": 0,
        "watching": 1,
    }
    assert "StatCache" in repr(cache)
    scope, _ = global_scope(cache, root)
    assert "StatCacheScope" in repr(scope) and scope.scope == ""


@pytest.mark.parametrize(
    ("template", "reason"),
    [
        ("relative/{algorithm}/{encoded}/data", "absolute"),
        ("/b/{algorithm}/{hex}/data", "unknown field"),
        ("/b/{algorithm}/{encoded!r}/data", "unknown field"),
        ("/b/{algorithm}/{encoded:x}/data", "unsupported format"),
        ("/b/{algorithm:.2}/{encoded}/data", "unsupported format"),
        ("/b/{algorithm}/{encoded:.0}/data", "unsupported format"),
        ("/b/{algorithm}/{encoded:.2}/data", "must contain {encoded}"),
        ("/b/{algorithm}/{encoded}", "literal file name"),
        ("/b/{algorithm}/{encoded}/", "literal file name"),
        ("/b/{algorithm}/{encoded}/data{", "not a format string"),
    ],
)
def test_blob_path_template_is_checked(root: Root, template: str, reason: str) -> None:
    with pytest.raises(ValueError, match=re.escape(reason)):
        _core.StatCache(root.path, template)


def test_link_template_is_checked(root: Root) -> None:
    cache = _core.StatCache(root.path, paths.BLOB_DATA_TEMPLATE)
    with pytest.raises(ValueError, match="unknown field"):
        cache.scope(Counting(GlobalBlobStatter(root.driver)), link="/x/{name}/link")
    with pytest.raises(ValueError, match="absolute"):
        cache.scope(Counting(GlobalBlobStatter(root.driver)), link="x/{encoded}/link")


def test_bad_key_and_missing(root: Root) -> None:
    with pytest.raises(TypeError, match="key"):
        _core.StatCache(root.path, paths.BLOB_DATA_TEMPLATE, key="Digest")
    with pytest.raises(TypeError, match="missing"):
        _core.StatCache(root.path, paths.BLOB_DATA_TEMPLATE, missing=BlobUnknown("x"))


def test_default_key_is_a_plain_validated_str(root: Root) -> None:
    """Without ``key`` the core validates digests itself and caches plain ``str`` keys."""
    blob = root.blob(b"plain")
    cache = _core.StatCache(root.path, paths.BLOB_DATA_TEMPLATE)
    asked: list[type] = []

    class Fallback(Counting):
        def stat(self, digest: Digest | str) -> Descriptor:
            asked.append(type(digest))
            return super().stat(digest)

    scope = cache.scope(Fallback(GlobalBlobStatter(root.driver)))
    assert scope.stat(blob.digest) == blob  # a Digest is re-validated and passed on as str
    assert [type(k) for k in scope.stat_many([blob.digest])] == [str]
    assert asked == [str]
    with pytest.raises(DigestInvalid):
        scope.stat("sha256:short")
    with pytest.raises(DigestInvalid):
        scope.stat(7)  # type: ignore[arg-type]


class ObjectStore:
    """A fallback over another layout: ``/objects/<alg>/<hex>/blob``, and a custom "absent"."""

    class Gone(Exception):
        pass

    def __init__(self, root: Path) -> None:
        self.root = root
        self.calls = 0

    def path(self, digest: str) -> Path:
        alg, _, enc = digest.partition(":")
        return self.root / "objects" / alg / enc / "blob"

    def put(self, data: bytes) -> Descriptor:
        d = Digest.from_bytes(data)
        self.path(d).parent.mkdir(parents=True, exist_ok=True)
        self.path(d).write_bytes(data)
        return Descriptor(d, len(data), "application/octet-stream")

    def stat(self, digest: str) -> Descriptor:
        self.calls += 1
        try:
            size = self.path(digest).stat().st_size
        except FileNotFoundError:
            raise self.Gone(digest) from None
        return Descriptor(Digest(digest), size, "application/octet-stream")

    def set_descriptor(self, digest: str, desc: Descriptor) -> None:
        raise AssertionError("not used")

    def clear(self, digest: str) -> None:
        raise AssertionError("not used")


def test_layout_is_the_callers(tmp_path: Path) -> None:
    """The core watches whatever tree its template names; it has no layout of its own."""
    store = ObjectStore(tmp_path)
    one, two = store.put(b"one"), store.put(b"two")
    cache = _core.StatCache(
        tmp_path, "/objects/{algorithm}/{encoded}/blob", key=Digest, missing=ObjectStore.Gone
    )
    scope = cache.scope(store)
    assert scope.stat(one.digest) == one and scope.stat(one.digest) == one
    assert store.calls == 1 and len(cache) == 1
    assert scope.stat_many([one.digest, two.digest, Digest.from_bytes(b"none")]) == {
        one.digest: one,
        two.digest: two,
    }
    store.path(one.digest).unlink()  # another program removes the blob
    with pytest.raises(ObjectStore.Gone):
        scope.stat(one.digest)
    assert scope.stat_many([two.digest]) == {two.digest: two}
    shutil.rmtree(tmp_path / "objects")  # a directory above every blob: everything goes
    assert scope.stat_many([two.digest]) == {}
    assert len(cache) == 0


def test_missing_is_the_only_error_stat_many_skips(root: Root) -> None:
    cache = new_stat_cache(root.path)

    class Broken(Counting):
        def stat(self, digest: Digest | str) -> Descriptor:
            raise KeyError(digest)  # not the cache's "missing" (BlobUnknown)

    scope = cache.scope(Broken(GlobalBlobStatter(root.driver)))
    with pytest.raises(KeyError):
        scope.stat_many([Digest.from_bytes(b"x")])


def test_scopes_come_from_the_cache(root: Root) -> None:
    scope, _ = global_scope(new_stat_cache(root.path), root)
    with pytest.raises(TypeError):
        type(scope)()


# --- hits and misses ------------------------------------------------------------------------


def test_miss_fills_then_hits(root: Root) -> None:
    blob = root.blob(b"one")
    cache = new_stat_cache(root.path)
    scope, fallback = global_scope(cache, root)
    first = scope.stat(str(blob.digest))
    assert first == blob
    assert scope.stat(blob.digest) is first  # the cached object, from a Digest or a str
    assert scope.stat(str(blob.digest)) is first
    assert fallback.calls == 1
    stats = cache.stats()
    assert (stats["hits"], stats["misses"], stats["fills"], stats["entries"]) == (2, 1, 1, 1)
    assert type(first.digest) is Digest


def test_unknown_blob_is_not_cached(root: Root) -> None:
    cache = new_stat_cache(root.path)
    scope, fallback = global_scope(cache, root)
    missing = Digest.from_bytes(b"never stored")
    for _ in range(2):
        with pytest.raises(BlobUnknown) as info:
            scope.stat(missing)
        assert info.value.digest == missing
    assert fallback.calls == 2 and len(cache) == 0
    root.blob(b"never stored")
    assert scope.stat(missing).digest == missing  # appears once it exists


@pytest.mark.parametrize(
    "bad", ["", "sha256:abc", "SHA256:" + "a" * 64, None, b"sha256:" + b"a" * 64, 7]
)
def test_invalid_digest(root: Root, bad: Any) -> None:
    scope, fallback = global_scope(new_stat_cache(root.path), root)
    with pytest.raises(DigestInvalid):
        scope.stat(bad)
    with pytest.raises(DigestInvalid):
        scope.stat_many([bad])
    assert fallback.calls == 0


def test_str_subclass_is_validated(root: Root) -> None:
    blob = root.blob(b"sub")
    scope, fallback = global_scope(new_stat_cache(root.path), root)

    class Other(str):
        pass

    assert scope.stat(Other(blob.digest)) == blob
    assert scope.stat(Other(blob.digest)) == blob
    assert fallback.calls == 1  # filled once, then a hit (validated as a Digest first)


def test_scopes_are_separate_and_survive_their_views(root: Root) -> None:
    blob = root.blob(b"shared layer")
    root.link("lib/a", blob.digest)
    cache = new_stat_cache(root.path)
    glob, _ = global_scope(cache, root)
    assert glob.stat(blob.digest) == blob
    first, fallback = repo_scope(cache, root)
    assert first.stat(blob.digest) == blob and fallback.calls == 1
    again, fallback2 = repo_scope(cache, root)  # a new view of the same scope (a new request)
    assert again.stat(blob.digest) == blob and fallback2.calls == 0
    other, _ = repo_scope(cache, root, "lib/b")  # no link there
    with pytest.raises(BlobUnknown):
        other.stat(blob.digest)
    assert len(cache) == 2


def test_lru_evicts_the_least_recently_used(root: Root) -> None:
    blobs = [root.blob(bytes([i])) for i in range(4)]
    cache = new_stat_cache(root.path, capacity=3)
    scope, fallback = global_scope(cache, root)
    for b in blobs[:3]:
        scope.stat(b.digest)
    scope.stat(blobs[0].digest)  # 0 is now the most recent: 1 is the oldest
    scope.stat(blobs[3].digest)  # evicts 1
    assert fallback.calls == 4 and len(cache) == 3 and cache.stats()["evictions"] == 1
    for b in (blobs[0], blobs[2], blobs[3]):
        scope.stat(b.digest)
    assert fallback.calls == 4
    scope.stat(blobs[1].digest)
    assert fallback.calls == 5


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    capacity=st.integers(1, 6),
    ops=st.lists(
        st.tuples(st.sampled_from(["stat", "many", "clear"]), st.integers(0, 9)), max_size=60
    ),
)
def test_lru_matches_a_model(tmp_path: Path, capacity: int, ops: list[tuple[str, int]]) -> None:
    """Whatever the sequence, the entries are exactly those an OrderedDict LRU would hold."""
    root = Root(tmp_path / f"model-{os.urandom(4).hex()}")
    blobs = [root.blob(f"model {i}".encode()) for i in range(10)]
    cache = new_stat_cache(root.path, capacity=capacity)
    scope, fallback = global_scope(cache, root)
    model: OrderedDict[int, None] = OrderedDict()
    for op, i in ops:
        calls = fallback.calls
        if op == "clear":
            scope.clear(blobs[i].digest)
            model.pop(i, None)
            continue
        if op == "stat":
            assert scope.stat(blobs[i].digest) == blobs[i]
        else:
            assert scope.stat_many([blobs[i].digest]) == {blobs[i].digest: blobs[i]}
        assert fallback.calls == calls + (i not in model)
        model[i] = None
        model.move_to_end(i)
        while len(model) > capacity:
            model.popitem(last=False)
        assert len(cache) == len(model)
    shutil.rmtree(root.path)


# --- invalidation by other programs ---------------------------------------------------------


def hot(root: Root, cache: Any) -> tuple[Descriptor, Any, Any]:
    """A blob linked in lib/a, hot in the global and the repository scope."""
    blob = root.blob(os.urandom(32))
    root.link("lib/a", blob.digest)
    glob, _ = global_scope(cache, root)
    repo, _ = repo_scope(cache, root)
    for _ in range(2):
        assert glob.stat(blob.digest) == blob
        assert repo.stat(blob.digest) == blob
    assert len(cache) == 2
    return blob, glob, repo


def assert_unknown(blob: Descriptor, *scopes: Any) -> None:
    for scope in scopes:
        with pytest.raises(BlobUnknown):
            scope.stat(blob.digest)
        assert scope.stat_many([blob.digest]) == {}


def test_blob_directory_removed_like_gos_garbage_collect(root: Root) -> None:
    cache = new_stat_cache(root.path)
    blob, glob, repo = hot(root, cache)
    shutil.rmtree(root.os_path(paths.Blob(blob.digest)))  # the link stays, as after a GC
    assert_unknown(blob, glob, repo)
    assert len(cache) == 0 and cache.stats()["invalidations"] == 2


def test_data_file_removed(root: Root) -> None:
    cache = new_stat_cache(root.path)
    blob, glob, repo = hot(root, cache)
    os.remove(root.os_path(paths.BlobData(blob.digest)))
    assert_unknown(blob, glob, repo)


def test_data_file_renamed(root: Root) -> None:
    cache = new_stat_cache(root.path)
    blob, glob, _ = hot(root, cache)
    data = root.os_path(paths.BlobData(blob.digest))
    os.rename(data, data.with_name("data.bak"))
    assert_unknown(blob, glob)


def test_data_file_truncated(root: Root) -> None:
    cache = new_stat_cache(root.path)
    blob, glob, _ = hot(root, cache)
    os.truncate(root.os_path(paths.BlobData(blob.digest)), 3)
    assert glob.stat(blob.digest).size == 3  # asked again, not served from the cache


@pytest.mark.parametrize("above", ["fanout", "sha256", "blobs", "v2", "root"])
def test_directory_above_moved_away(root: Root, above: str) -> None:
    cache = new_stat_cache(root.path)
    blob, glob, repo = hot(root, cache)
    fanout = root.os_path(paths.Blob(blob.digest)).parent
    target = {
        "fanout": fanout,
        "sha256": fanout.parent,
        "blobs": fanout.parent.parent,
        "v2": fanout.parent.parent.parent,
        "root": root.path,
    }[above]
    moved = target.with_name(target.name + ".moved")
    os.rename(target, moved)
    if above in ("v2", "root"):
        assert_unknown(blob, glob, repo)
    else:
        assert_unknown(blob, glob)
    assert len(cache) == 0 and cache.stats()["resets"] >= 1
    os.rename(moved, target)  # back: served again, and watched again
    assert glob.stat(blob.digest) == blob
    assert glob.stat(blob.digest) == blob
    shutil.rmtree(root.os_path(paths.Blob(blob.digest)))
    assert_unknown(blob, glob)


def test_whole_blob_store_removed(root: Root) -> None:
    cache = new_stat_cache(root.path)
    blob, glob, repo = hot(root, cache)
    shutil.rmtree(root.os_path(paths.BlobsRoot()))
    assert_unknown(blob, glob, repo)


def test_link_removed_is_seen_per_hit(root: Root) -> None:
    cache = new_stat_cache(root.path)
    blob, glob, repo = hot(root, cache)
    os.remove(root.os_path(paths.LayerLink("lib/a", blob.digest)))
    assert_unknown(blob, repo)
    assert glob.stat(blob.digest) == blob  # the blob itself is still there
    root.link("lib/a", blob.digest)
    assert repo.stat(blob.digest) == blob


def test_link_replaced_by_a_directory(root: Root) -> None:
    cache = new_stat_cache(root.path)
    blob, _, repo = hot(root, cache)
    link = root.os_path(paths.LayerLink("lib/a", blob.digest))
    os.remove(link)
    os.mkdir(link)
    assert_unknown(blob, repo)


def test_repository_removed(root: Root) -> None:
    cache = new_stat_cache(root.path)
    blob, _, repo = hot(root, cache)
    shutil.rmtree(root.os_path(paths.RepositoryRoot("lib/a")))
    assert_unknown(blob, repo)


def test_alias_key_watches_the_canonical_blob(root: Root) -> None:
    blob = root.blob(b"pushed as sha512")
    alias = Digest.from_bytes(b"pushed as sha512", "sha512")
    root.link("lib/a", alias, target=blob.digest)
    cache = new_stat_cache(root.path)
    repo, fallback = repo_scope(cache, root)
    assert repo.stat(alias) == blob
    assert repo.stat(str(alias)) == blob
    assert fallback.calls == 1
    shutil.rmtree(root.os_path(paths.Blob(blob.digest)))
    assert_unknown(Descriptor(alias, blob.size), repo)


def test_deletion_during_the_fill_is_not_cached(root: Root) -> None:
    """The fallback sees the blob, then it is deleted before the answer is cached."""
    blob = root.blob(b"racing")
    cache = new_stat_cache(root.path)
    inner = GlobalBlobStatter(root.driver)

    class DeletesAfterStat(Counting):
        def stat(self, digest: Digest | str) -> Descriptor:
            desc = super().stat(digest)
            if self.calls == 1:
                shutil.rmtree(root.os_path(paths.Blob(blob.digest)))
            return desc

    fallback = DeletesAfterStat(inner)
    scope = cache.scope(fallback)
    assert scope.stat(blob.digest) == blob  # answered (the stat saw it) ...
    assert len(cache) == 0  # ... but not cached
    with pytest.raises(BlobUnknown):
        scope.stat(blob.digest)


def test_queue_overflow_drops_everything(root: Root) -> None:
    """More events than the kernel queues (IN_Q_OVERFLOW): every entry goes, nothing breaks."""
    cache = new_stat_cache(root.path)
    blob, glob, repo = hot(root, cache)
    limit = int(Path("/proc/sys/fs/inotify/max_queued_events").read_text())
    blob_dir = root.os_path(paths.Blob(blob.digest))
    for i in range(limit + 10):  # each unlink in a watched blob directory queues one event
        noise = blob_dir / f"noise-{i % 2}"  # (the kernel merges identical consecutive events)
        noise.touch()
        noise.unlink()
    assert glob.stat(blob.digest) == blob  # answered again by the fallback ...
    stats = cache.stats()
    assert stats["resets"] >= 1 and stats["entries"] == 1  # ... after everything was dropped
    shutil.rmtree(blob_dir)
    assert_unknown(blob, glob, repo)


def test_many_blobs_sweep_watches_but_keeps_those_in_use(root: Root) -> None:
    """Past the watch budget, watches of evicted blobs go; cached blobs stay watched."""
    cache = new_stat_cache(root.path, capacity=8)
    scope, fallback = global_scope(cache, root)
    blobs = [root.blob(f"many {i}".encode()) for i in range(1100)]
    for b in blobs:
        assert scope.stat(b.digest) == b
    kept = blobs[-8:]
    calls = fallback.calls
    for b in kept:
        assert scope.stat(b.digest) == b
    assert fallback.calls == calls  # all hits
    for b in kept:
        shutil.rmtree(root.os_path(paths.Blob(b.digest)))
    for b in kept:
        with pytest.raises(BlobUnknown):
            scope.stat(b.digest)


# --- local changes, the counter, batches ----------------------------------------------------


def test_clear_and_set_go_to_the_fallback_and_drop_the_entry(root: Root) -> None:
    cache = new_stat_cache(root.path)
    blob, glob, repo = hot(root, cache)
    repo.clear(blob.digest)
    assert repo.fallback.cleared == [blob.digest] and len(cache) == 1
    glob.set_descriptor(str(blob.digest), blob)
    assert glob.fallback.set == [blob.digest] and len(cache) == 0
    with pytest.raises(DigestInvalid):
        glob.clear("sha256:nope")


def test_counter_bump_drops_everything(root: Root, tmp_path: Path) -> None:
    path = tmp_path / "generation"
    other = _core.SharedCounter(path)
    cache = new_stat_cache(root.path, counter_path=path)
    try:
        blob, glob, _ = hot(root, cache)
        other.bump()  # another process cleared its LMDB cache
        assert glob.stat(blob.digest) == blob
        assert cache.stats()["resets"] == 1 and len(cache) == 1
    finally:
        other.close()
        cache.close()
    assert glob.stat(blob.digest) == blob  # closed: still answers


def test_clear_drops_everything(root: Root) -> None:
    cache = new_stat_cache(root.path)
    blob, glob, _ = hot(root, cache)
    cache.clear()
    assert len(cache) == 0
    assert glob.stat(blob.digest) == blob


def test_stat_many(root: Root) -> None:
    cache = new_stat_cache(root.path)
    blob, _, repo = hot(root, cache)
    other = root.blob(b"not yet hot")
    root.link("lib/a", other.digest)
    unlinked = root.blob(b"not linked here")
    missing = Digest.from_bytes(b"nowhere")
    got = repo.stat_many([str(blob.digest), other.digest, unlinked.digest, missing, other.digest])
    assert got == {blob.digest: blob, other.digest: other}
    assert all(type(k) is Digest for k in got)
    assert repo.fallback.calls == 1 + 3  # one earlier fill, then the three misses once each
    assert repo.stat_many([other.digest]) == {other.digest: other}
    assert repo.fallback.calls == 4
    assert repo.stat_many([]) == {}


def test_stat_many_uses_the_fallback_batch(root: Root) -> None:
    blob = root.blob(b"batched")

    class Batch(Counting):
        batches: list[list[Digest]] = []

        def stat_many(self, digests: list[Digest]) -> dict[Digest, Descriptor]:
            self.batches.append(list(digests))
            return {d: self.inner.stat(d) for d in digests if d == blob.digest}

    fallback = Batch(GlobalBlobStatter(root.driver))
    scope = new_stat_cache(root.path).scope(fallback)
    missing = Digest.from_bytes(b"absent")
    assert scope.stat_many([blob.digest, missing]) == {blob.digest: blob}
    assert fallback.batches == [[blob.digest, missing]] and fallback.calls == 0
    assert scope.stat(blob.digest) == blob and fallback.calls == 0  # filled by the batch


def test_two_caches_on_one_root(root: Root) -> None:
    one, two = new_stat_cache(root.path), new_stat_cache(root.path)
    blob, g1, _ = hot(root, one)
    g2, _ = global_scope(two, root)
    assert g2.stat(blob.digest) == blob and g2.stat(blob.digest) == blob
    shutil.rmtree(root.os_path(paths.Blob(blob.digest)))
    assert_unknown(blob, g1, g2)


def _child_stats(root: str, digest: str, queue: Any) -> None:
    try:
        cache = new_stat_cache(root)
        scope = cache.scope(GlobalBlobStatter(FilesystemDriver(root)))
        before = scope.stat(digest).size
        shutil.rmtree(root + paths.path_for(paths.Blob(Digest(digest))))
    except BaseException as exc:  # report, never hang the parent
        queue.put(repr(exc))
        return
    try:
        scope.stat(digest)
    except BlobUnknown:
        queue.put(("unknown", before))
    else:
        queue.put(("stale", before))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_forked_child_has_its_own_watches(root: Root) -> None:
    cache = new_stat_cache(root.path)
    blob, glob, _ = hot(root, cache)
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_child_stats, args=(str(root.path), str(blob.digest), queue))
    child.start()
    got = queue.get(timeout=60)
    child.join(60)
    assert got == ("unknown", blob.size)
    assert_unknown(blob, glob)  # the child's deletion is seen here too


def inotify_watches() -> int:
    """Watches held by every inotify instance of this process (from /proc/self/fdinfo)."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}") != "anon_inode:inotify":
                continue
            with open(f"/proc/self/fdinfo/{fd}") as f:
                count += sum(line.startswith("inotify wd:") for line in f)
        except OSError:
            continue
    return count


def test_collected_cache_releases_its_watches(root: Root) -> None:
    gc.collect()  # caches of earlier tests go first
    new_stat_cache(root.path)  # ... and a registration releases their watches
    before = inotify_watches()
    cache = new_stat_cache(root.path)
    hot(root, cache)
    during = inotify_watches()
    assert during >= before + 8  # the blob directory and the seven above it
    keep = new_stat_cache(root.path)  # another cache of the same root keeps them
    del cache
    gc.collect()
    # Collection only queues the root (a weakref callback may run in the middle of the
    # notifier's bookkeeping); the next registration or lookup releases its watches.
    new_stat_cache(root.path)
    assert inotify_watches() == during
    del keep
    gc.collect()
    new_stat_cache(root.path)
    assert inotify_watches() == before


# --- link files (LinkCacheScope: a tag's current/link) ---------------------------------------

TAG_LINK = "/docker/registry/v2/repositories/{repo}/_manifests/tags/{tag}/current/link"


class LinkReads:
    """The fallback of a link scope: ``read_link`` on the driver, counting the reads that reach it."""

    def __init__(self, root: Root) -> None:
        self.driver = root.driver
        self.calls: list[str] = []

    def __call__(self, path: str) -> Digest:
        self.calls.append(path)
        return read_link(self.driver, path)


def tag_link(repo: str = "lib/a", tag: str = "latest") -> str:
    return TAG_LINK.format(repo=repo, tag=tag)


def put_tag(root: Root, digest: Digest, repo: str = "lib/a", tag: str = "latest") -> str:
    path = tag_link(repo, tag)
    root.driver.put_content(path, str(digest).encode())  # temp file + rename, as ocistore does
    return path


def rewrite_in_place(full: str, digest: Digest) -> None:
    """What distribution 2.8.2 does to a tag's current/link: open, truncate, write, close."""
    fd = os.open(full, os.O_WRONLY | os.O_CREAT, 0o666)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, str(digest).encode())
    finally:
        os.close(fd)


D1, D2, D3 = (Digest.from_bytes(bytes([i])) for i in range(3))


def test_link_read_fills_then_hits(root: Root) -> None:
    path = put_tag(root, D1)
    cache = new_stat_cache(root.path)
    reads = LinkReads(root)
    links = cache.links(reads)
    assert links.read(path) == D1
    first = links.read(path)
    assert first == D1 and type(first) is Digest
    assert reads.calls == [path]
    assert cache.links(LinkReads(root)).read(path) is first  # another view of the same scope
    stats = cache.stats()
    assert (stats["hits"], stats["misses"], stats["fills"], stats["entries"]) == (2, 1, 1, 1)
    assert links.scope == "links" and links.fallback is reads
    assert "LinkCacheScope" in repr(links)
    with pytest.raises(TypeError):
        type(links)()


def test_link_errors_are_not_cached(root: Root) -> None:
    cache = new_stat_cache(root.path)
    reads = LinkReads(root)
    links = cache.links(reads)
    path = tag_link()
    for _ in range(2):
        with pytest.raises(PathNotFound):
            links.read(path)
    assert len(reads.calls) == 2 and len(cache) == 0
    root.driver.put_content(path, b"sha256:not-a-digest")
    for _ in range(2):
        with pytest.raises(DigestInvalid):
            links.read(path)
    assert len(reads.calls) == 4 and len(cache) == 0
    put_tag(root, D1)
    assert links.read(path) == D1


@pytest.mark.parametrize(
    "path",
    ["", "relative/link", "/", "/a//link", "/a/./link", "/a/../link", "/a/link/", "/a\0/link", 7],
)
def test_link_path_must_be_a_driver_path(root: Root, path: Any) -> None:
    reads = LinkReads(root)
    links = new_stat_cache(root.path).links(reads)
    with pytest.raises(ValueError, match="driver path"):
        links.read(path)
    assert reads.calls == []


def _replace(root: Root, full: Path, new: Digest) -> None:
    tmp = full.with_name("link.tmp")
    tmp.write_text(str(new))
    os.replace(tmp, full)


def _rename_away_and_back(directory: Path) -> None:
    """Move a directory away, then put a fresh copy at its place holding the new target."""
    moved = directory.with_name(directory.name + ".old")
    os.rename(directory, moved)
    shutil.copytree(moved, directory)


CHANGES = {
    # name: (change the link to point at D2, whether the link exists afterwards)
    "replaced-by-rename": lambda root, full: _replace(root, full, D2),
    "rewritten-in-place": lambda root, full: rewrite_in_place(str(full), D2),
    "deleted": lambda root, full: os.remove(full),
    "renamed-away": lambda root, full: os.rename(full, full.with_name("link.old")),
    "current-dir-removed": lambda root, full: shutil.rmtree(full.parent),
    "tag-dir-removed": lambda root, full: shutil.rmtree(full.parent.parent),
    "repository-removed": lambda root, full: shutil.rmtree(
        root.os_path(paths.RepositoryRoot("lib/a"))
    ),
}


@pytest.mark.parametrize("change", sorted(CHANGES))
def test_link_changed_on_disk_is_seen_at_once(root: Root, change: str) -> None:
    path = put_tag(root, D1)
    full = Path(root.driver.full_path(path))
    cache = new_stat_cache(root.path)
    links = cache.links(LinkReads(root))
    assert links.read(path) == D1 and links.read(path) == D1
    CHANGES[change](root, full)
    if full.exists():
        assert links.read(path) == D2
    else:
        with pytest.raises(PathNotFound):
            links.read(path)
        put_tag(root, D3)  # tagged again: the new directories are watched again
        assert links.read(path) == D3
        assert links.read(path) == D3
        rewrite_in_place(str(full), D2)
    assert links.read(path) == D2


ABOVE = {  # how far above the link file (root/docker/registry/v2/repositories/lib/a/...)
    "current": 0,
    "tag": 1,
    "tags": 2,
    "_manifests": 3,
    "repository": 4,
    "namespace": 5,
    "repositories": 6,
    "v2": 7,
    "root": 10,
}


@pytest.mark.parametrize("directory", list(ABOVE))
def test_link_directory_above_renamed_and_replaced(root: Root, directory: str) -> None:
    """A renamed directory keeps its watches on the inode: the copy put in its place is what counts."""
    path = put_tag(root, D1)
    full = Path(root.driver.full_path(path))
    cache = new_stat_cache(root.path)
    links = cache.links(LinkReads(root))
    assert links.read(path) == D1 and links.read(path) == D1
    target = full.parents[ABOVE[directory]]
    assert (target == root.path) == (directory == "root")
    _rename_away_and_back(target)
    rewrite_in_place(str(full), D2)  # the copy at the old place changes; the moved one does not
    assert links.read(path) == D2
    assert links.read(path) == D2
    rewrite_in_place(str(full), D3)
    assert links.read(path) == D3


def test_link_removal_drops_only_what_was_below(root: Root) -> None:
    cache = new_stat_cache(root.path)
    blob, glob, _ = hot(root, cache)
    paths_ = [put_tag(root, D1, tag=t) for t in ("t1", "t2")] + [put_tag(root, D1, repo="lib/b")]
    reads = LinkReads(root)
    links = cache.links(reads)
    for p in paths_:
        links.read(p)
    assert len(reads.calls) == 3
    shutil.rmtree(Path(root.driver.full_path(paths_[0])).parents[1])  # untag t1
    with pytest.raises(PathNotFound):
        links.read(paths_[0])
    for p in paths_[1:]:
        assert links.read(p) == D1
    assert len(reads.calls) == 4  # t1 only was asked again
    stats = cache.stats()
    assert stats["resets"] == 0 and stats["entries"] == 2 + 2  # the blob's two entries stay
    assert glob.stat(blob.digest) == blob


def test_link_change_during_the_fill_is_not_cached(root: Root) -> None:
    path = put_tag(root, D1)
    full = root.driver.full_path(path)

    class MovesAfterRead(LinkReads):
        def __call__(self, p: str) -> Digest:
            got = super().__call__(p)
            if len(self.calls) == 1:
                rewrite_in_place(full, D2)  # another process moves the tag meanwhile
            return got

    cache = new_stat_cache(root.path)
    links = cache.links(MovesAfterRead(root))
    assert links.read(path) == D1  # what was read ...
    assert len(cache) == 0  # ... but not cached
    assert links.read(path) == D2


def test_link_forget(root: Root) -> None:
    path = put_tag(root, D1)
    cache = new_stat_cache(root.path)
    reads = LinkReads(root)
    links = cache.links(reads)
    links.read(path)
    links.forget(path)
    links.forget(tag_link(tag="never-read"))
    assert len(cache) == 0
    assert links.read(path) == D1 and len(reads.calls) == 2


def test_link_clear_and_counter_drop_links_too(root: Root, tmp_path: Path) -> None:
    path = put_tag(root, D1)
    counter = tmp_path / "generation"
    other = _core.SharedCounter(counter)
    cache = new_stat_cache(root.path, counter_path=counter)
    try:
        reads = LinkReads(root)
        links = cache.links(reads)
        links.read(path)
        cache.clear()
        links.read(path)
        other.bump()
        links.read(path)
        assert len(reads.calls) == 3
    finally:
        other.close()
        cache.close()


def test_many_links_sweep_watches_but_keep_those_in_use(root: Root) -> None:
    cache = new_stat_cache(root.path, capacity=8)
    reads = LinkReads(root)
    links = cache.links(reads)
    tags = [put_tag(root, D1, tag=f"t{i}") for i in range(1100)]
    for p in tags:  # past the watch budget (when no larger cache is alive): a sweep
        assert links.read(p) == D1
    kept = tags[-8:]
    calls = len(reads.calls)
    for p in kept:
        assert links.read(p) == D1
    assert len(reads.calls) == calls  # all hits, still watched
    for p in kept:
        rewrite_in_place(root.driver.full_path(p), D2)
    for p in kept:
        assert links.read(p) == D2


OPS = st.lists(
    st.tuples(
        st.sampled_from(["read", "rename-over", "in-place", "untag", "move-repo", "forget"]),
        st.integers(0, 3),
        st.integers(0, 2),
    ),
    max_size=40,
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(ops=OPS)
def test_links_always_read_what_is_on_disk(tmp_path: Path, ops: list[tuple[str, int, int]]) -> None:
    """Whatever other programs do to the tags, a read answers what a fresh read of the file would."""
    root = Root(tmp_path / f"links-{os.urandom(4).hex()}")
    digests = [D1, D2, D3]
    cache = new_stat_cache(root.path, capacity=3)
    links = cache.links(LinkReads(root))
    named = [("lib/a" if i < 2 else "lib/b", f"t{i}") for i in range(4)]
    tags = [put_tag(root, D1, repo=repo, tag=tag) for repo, tag in named]
    for op, i, j in ops:
        path = tags[i]
        full = root.driver.full_path(path)
        if op == "rename-over":
            root.driver.put_content(path, str(digests[j]).encode())
        elif op == "in-place":
            os.makedirs(os.path.dirname(full), exist_ok=True)
            rewrite_in_place(full, digests[j])
        elif op == "untag":
            shutil.rmtree(Path(full).parents[1], ignore_errors=True)
        elif op == "move-repo":
            repo_dir = Path(full).parents[4]
            if repo_dir.exists():
                moved = repo_dir.with_name(repo_dir.name + "-moved")
                os.rename(repo_dir, moved)
                shutil.copytree(moved, repo_dir)
                shutil.rmtree(moved)
        elif op == "forget":
            links.forget(path)
        for p in tags:
            try:
                truth: Digest | None = read_link(root.driver, p)
            except PathNotFound:
                truth = None
            try:
                got: Digest | None = links.read(p)
            except PathNotFound:
                got = None
            assert got == truth, (op, i, j, p)
    shutil.rmtree(root.path)
