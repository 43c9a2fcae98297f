"""The stat fast path through the storage layer: when it is on, and that it never shows a deleted blob.

Deletions come from outside the registry object under test: ``os`` calls (Go's
``garbage-collect`` removes ``blobs/<alg>/<xx>/<hex>``; ``rm``), the driver
directly, or another process using ocistore on the same root and LMDB cache.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import core_env
from ocistore import _core
from ocistore.cache import (
    CachedBlobStatter,
    LMDBDescriptorCache,
    MemoryDescriptorCache,
)
from ocistore.descriptor import Descriptor
from ocistore.digest import Digest
from ocistore.driver import FilesystemDriver, InMemoryDriver
from ocistore.errors import BlobUnknown, CacheError, ManifestBlobUnknown
from ocistore.manifest import mediatypes as mt
from ocistore.storage import Registry, hotcache, paths
from storage_fixtures import upload
from suites.cache_suite import DictBackend, desc, dg

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="inotify is Linux")


@pytest.fixture(params=["memory", "lmdb"])
def cache(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    c: Any = (
        MemoryDescriptorCache()
        if request.param == "memory"
        else LMDBDescriptorCache(tmp_path / "cache")
    )
    yield c
    c.close()


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "root"


def blob_dir(root: Path, digest: Digest) -> Path:
    return root / paths.path_for(paths.Blob(digest)).lstrip("/")


def warm(reg: Registry, name: str, data: bytes) -> Descriptor:
    blobs = reg.repository(name).blobs
    d = upload(blobs, data)
    for _ in range(2):
        assert reg.blobs.stat(str(d.digest)).size == len(data)
        assert blobs.stat(d.digest).digest == d.digest
    return d


# --- when it is on ----------------------------------------------------------------------------


def test_on_for_a_local_filesystem_with_a_cache(root: Path, cache: Any) -> None:
    reg = Registry(FilesystemDriver(root), cache=cache)
    assert reg.stat_cache is not None and reg.stat_cache.watching
    assert reg.stat_cache.capacity == hotcache.DEFAULT_SIZE
    d = warm(reg, "lib/a", b"hot")
    before = reg.stat_cache.stats()
    for _ in range(5):
        reg.blobs.stat(d.digest)
        reg.repository("lib/a").blobs.stat(str(d.digest))
    after = reg.stat_cache.stats()
    assert after["hits"] - before["hits"] == 10 and after["misses"] == before["misses"]


def test_off_without_a_cache_or_a_plain_filesystem_driver(root: Path, cache: Any) -> None:
    assert Registry(FilesystemDriver(root)).stat_cache is None
    assert Registry(InMemoryDriver(), cache=cache).stat_cache is None
    assert Registry(FilesystemDriver(root), cache=cache, stat_cache_size=0).stat_cache is None

    class Subclass(FilesystemDriver):
        pass

    assert Registry(Subclass(root), cache=cache).stat_cache is None


def test_size_option(root: Path, cache: Any) -> None:
    reg = Registry(FilesystemDriver(root), cache=cache, stat_cache_size=3)
    assert reg.stat_cache is not None and reg.stat_cache.capacity == 3


def unavailable(monkeypatch: pytest.MonkeyPatch, how: str) -> None:
    if how == "network filesystem":
        monkeypatch.setattr(hotcache, "filesystem_type", lambda path: "nfs4")
    elif how == "unknown filesystem":
        monkeypatch.setattr(hotcache, "filesystem_type", lambda path: None)
    else:

        def no_inotify(*args: object, **kwargs: object) -> None:
            raise OSError(24, "Too many open files")

        monkeypatch.setattr(_core, "StatCache", no_inotify)


@pytest.mark.parametrize("how", ["network filesystem", "unknown filesystem", "no inotify"])
def test_without_a_watcher_every_hit_is_validated(
    root: Path, cache: Any, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    unavailable(monkeypatch, how)
    reg = Registry(FilesystemDriver(root), cache=cache, delete_enabled=True)
    assert reg.stat_cache is None
    d = warm(reg, "lib/a", b"validated per hit")
    os.remove(blob_dir(root, d.digest) / "data")
    with pytest.raises(BlobUnknown):
        reg.blobs.stat(d.digest)
    with pytest.raises(BlobUnknown):
        reg.repository("lib/a").blobs.stat(d.digest)


def test_filesystem_type_reads_mountinfo(tmp_path: Path) -> None:
    info = tmp_path / "mountinfo"
    info.write_text(
        "22 1 8:1 / / rw - ext4 /dev/sda1 rw\n"
        "30 22 0:40 / /srv/reg\\040istry rw - nfs4 server:/x rw\n"
        "31 30 0:41 / /srv/reg\\040istry/local rw shared:1 - tmpfs tmpfs rw\n"
        "garbage line\n"
    )
    assert hotcache.filesystem_type("/var/lib", str(info)) == "ext4"
    assert hotcache.filesystem_type("/srv/reg istry/data", str(info)) == "nfs4"
    assert hotcache.filesystem_type("/srv/reg istry/local/x", str(info)) == "tmpfs"
    assert hotcache.filesystem_type("/srv/reg istryx", str(info)) == "ext4"
    assert hotcache.filesystem_type("/x", str(tmp_path / "missing")) is None


# --- deletions are seen, hot or not ---------------------------------------------------------------


def test_garbage_collected_blob_is_unknown_though_hot_in_both_caches(
    root: Path, cache: Any
) -> None:
    reg = Registry(FilesystemDriver(root), cache=cache, delete_enabled=True)
    d = warm(reg, "lib/a", b"collected by Go")
    assert cache.stat(d.digest).digest == d.digest  # the descriptor cache holds it too
    assert len(reg.stat_cache or ()) == 2
    shutil.rmtree(blob_dir(root, d.digest))  # what distribution's garbage-collect does
    for stat in (reg.blobs.stat, reg.blob_statter.stat, reg.repository("lib/a").blobs.stat):
        with pytest.raises(BlobUnknown):
            stat(d.digest)
    with pytest.raises(BlobUnknown):
        reg.repository("lib/a").blobs.open(d.digest)
    assert not reg.repository("lib/a").blobs.exists(d.digest)


def test_link_removed_on_disk(root: Path, cache: Any) -> None:
    reg = Registry(FilesystemDriver(root), cache=cache)
    d = warm(reg, "lib/a", b"unlinked by Go's DELETE")
    os.remove(root / paths.path_for(paths.LayerLink("lib/a", d.digest)).lstrip("/"))
    with pytest.raises(BlobUnknown):
        reg.repository("lib/a").blobs.stat(d.digest)
    assert reg.blobs.stat(d.digest).size == d.size  # the blob is still in blobs/


def test_manifest_revision_link_removed_on_disk(root: Path, cache: Any) -> None:
    from manifest_helpers import push_oci_image

    reg = Registry(FilesystemDriver(root), cache=cache)
    repo = reg.repository("lib/a")
    payload = push_oci_image(repo)
    digest = Digest.from_bytes(payload)
    assert repo.manifests.exists(digest) and repo.manifests.exists(digest)
    os.remove(root / paths.path_for(paths.ManifestRevisionLink("lib/a", digest)).lstrip("/"))
    assert not repo.manifests.exists(digest)


@pytest.mark.parametrize(
    "damage", ["blob-collected", "link-rewritten", "link-corrupt", "repository-moved"]
)
def test_hot_manifest_changed_on_disk(root: Path, cache: Any, damage: str) -> None:
    """``manifests.exists`` answers from the link cache and the stat cache, never stale."""
    from manifest_helpers import push_oci_image

    reg = Registry(FilesystemDriver(root), cache=cache)
    repo = reg.repository("lib/a")
    digest = Digest.from_bytes(push_oci_image(repo))
    other = Digest.from_bytes(push_oci_image(repo))  # random layers: another manifest
    assert reg.stat_cache is not None
    for _ in range(2):
        assert repo.manifests.exists(digest) and repo.manifests.exists(other)
    hits = reg.stat_cache.stats()["hits"]
    assert repo.manifests.exists(digest)
    assert reg.stat_cache.stats()["hits"] == hits + 2  # the link, then the blob
    link = root / paths.path_for(paths.ManifestRevisionLink("lib/a", digest)).lstrip("/")
    if damage == "blob-collected":
        shutil.rmtree(blob_dir(root, digest))
    elif damage == "link-rewritten":  # in place, pointing at a blob that is not there
        link.write_text(str(Digest.from_bytes(b"no such blob")))
    elif damage == "link-corrupt":
        link.write_text(str(digest) + "\n")
    else:
        repo_dir = root / paths.path_for(paths.RepositoryRoot("lib/a")).lstrip("/")
        os.rename(repo_dir, repo_dir.with_name("a-moved"))
    assert not repo.manifests.exists(digest)
    assert repo.manifests.exists(other) == (damage != "repository-moved")


def test_delete_and_repush_through_this_registry(root: Path, cache: Any) -> None:
    reg = Registry(FilesystemDriver(root), cache=cache, delete_enabled=True)
    blobs = reg.repository("lib/a").blobs
    d = warm(reg, "lib/a", b"deleted here")
    blobs.delete(d.digest)
    with pytest.raises(BlobUnknown):
        blobs.stat(d.digest)
    assert reg.blobs.stat(d.digest).size == d.size
    upload(blobs, b"deleted here")
    assert blobs.stat(d.digest).size == d.size


def test_alias_digest(root: Path, cache: Any) -> None:
    reg = Registry(FilesystemDriver(root), cache=cache)
    blobs = reg.repository("lib/a").blobs
    data = b"pushed as sha512"
    alias = Digest.from_bytes(data, "sha512")
    with blobs.create() as w:
        w.write(data)
        canonical = w.commit(Descriptor(alias, len(data))).digest
    for _ in range(2):
        assert blobs.stat(alias).digest == canonical
    shutil.rmtree(blob_dir(root, canonical))
    with pytest.raises(BlobUnknown):
        blobs.stat(alias)


_OTHER_PROCESS = textwrap.dedent(
    """
    import json, sys
    from ocistore.cache import LMDBDescriptorCache
    from ocistore.driver import FilesystemDriver
    from ocistore.storage import Registry
    root, cache_dir, digest, manifest = sys.argv[1:]
    cache = LMDBDescriptorCache(cache_dir)
    reg = Registry(FilesystemDriver(root), cache=cache, delete_enabled=True)
    repo = reg.repository("lib/a")
    repo.blobs.delete(digest)
    repo.manifests.delete(manifest)
    cache.close()
    print(json.dumps("done"))
    """
)


def test_another_process_deleting_through_ocistore(root: Path, tmp_path: Path) -> None:
    from manifest_helpers import push_oci_image

    cache = LMDBDescriptorCache(tmp_path / "shared-cache")
    try:
        reg = Registry(FilesystemDriver(root), cache=cache, delete_enabled=True)
        assert reg.stat_cache is not None
        repo = reg.repository("lib/a")
        d = warm(reg, "lib/a", b"deleted by another worker")
        payload = push_oci_image(repo)
        manifest = Digest.from_bytes(payload)
        assert repo.manifests.exists(manifest) and repo.manifests.exists(manifest)
        resets = reg.stat_cache.stats()["resets"]
        env = core_env(_core.BACKEND)
        out = subprocess.run(
            [
                sys.executable,
                "-c",
                _OTHER_PROCESS,
                str(root),
                str(tmp_path / "shared-cache"),
                d.digest,
                manifest,
            ],
            capture_output=True,
            text=True,
            env=env,
            check=True,
        )
        assert json.loads(out.stdout) == "done"
        with pytest.raises(BlobUnknown):
            repo.blobs.stat(d.digest)
        assert not repo.manifests.exists(manifest)
        assert reg.stat_cache.stats()["resets"] > resets  # the shared counter moved
        assert reg.blobs.stat(d.digest).size == d.size  # only the links went
    finally:
        cache.close()


# --- batches for manifest verification -------------------------------------------------------------


def test_manifest_verification_lists_every_missing_reference_in_one_batch(
    root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = LMDBDescriptorCache(tmp_path / "cache")
    try:
        reg = Registry(FilesystemDriver(root), cache=cache)
        repo = reg.repository("lib/a")
        present = [repo.blobs.put(mt.OCI_LAYER_GZIP, os.urandom(32)) for _ in range(2)]
        repo.blobs.stat(present[0].digest)  # one hot, one only in LMDB
        config = repo.blobs.put(mt.OCI_CONFIG, b"{}")
        missing = [dg("sha256", f"missing {i}") for i in range(3)]
        layers = [
            present[0].digest,
            missing[0],
            present[1].digest,
            missing[1],
            missing[2],
            missing[0],
        ]
        doc = {
            "schemaVersion": 2,
            "mediaType": mt.OCI_MANIFEST,
            "config": {"mediaType": mt.OCI_CONFIG, "digest": config.digest, "size": config.size},
            "layers": [{"mediaType": mt.OCI_LAYER_GZIP, "digest": d, "size": 32} for d in layers],
        }
        batches: list[list[Digest]] = []
        scope_type = type(cache.repository_scoped("lib/a"))
        real = scope_type.stat_many

        def spy(self: Any, digests: Any) -> Any:
            digests = list(digests)
            batches.append(digests)
            return real(self, digests)

        monkeypatch.setattr(scope_type, "stat_many", spy)
        with pytest.raises(ManifestBlobUnknown) as info:
            repo.manifests.put(json.dumps(doc).encode())
        assert list(info.value.digests) == missing
        assert len(batches) == 1 and present[0].digest not in batches[0]  # the hot one was a hit
        assert set(batches[0]) == {config.digest, present[1].digest, *missing}
    finally:
        cache.close()


def test_linked_stat_many_without_stat_cache(root: Path) -> None:
    for reg in (Registry(FilesystemDriver(root)), Registry(InMemoryDriver())):
        blobs = reg.repository("lib/a").blobs
        d = upload(blobs, b"batch")
        absent = dg("sha256", "absent")
        assert blobs.stat_many([d.digest, str(absent)]) == {d.digest: blobs.stat(d.digest)}


# --- CachedBlobStatter.stat_many ----------------------------------------------------------------------


def test_cached_statter_stat_many_validates_hits_and_fills_misses() -> None:
    gone, kept, fresh = desc("gone"), desc("kept"), desc("fresh")
    backend = DictBackend({kept.digest: kept, fresh.digest: fresh})
    cache = MemoryDescriptorCache()
    cache.set_many([(gone.digest, gone), (kept.digest, kept)])
    statter = CachedBlobStatter(cache, backend, validate=lambda k, d: d.digest in backend.blobs)
    got = statter.stat_many([gone.digest, str(kept.digest), fresh.digest, kept.digest])
    assert got == {kept.digest: kept, fresh.digest: fresh}
    assert statter.metrics.snapshot() == {"hits": 1, "misses": 2, "errors": 0, "invalidations": 1}
    assert cache.stat(fresh.digest) == fresh  # filled
    with pytest.raises(BlobUnknown):
        cache.stat(gone.digest)  # cleared
    assert statter.stat_many([]) == {}


def test_cached_statter_stat_many_with_a_broken_cache() -> None:
    d = desc("x")

    class Broken:
        def stat_many(self, digests: Any) -> Any:
            raise CacheError("down")

        def stat(self, digest: Any) -> Any:
            raise CacheError("down")

        def set_descriptor(self, digest: Any, desc: Any) -> None:
            raise AssertionError("no fill after a cache error")

        def clear(self, digest: Any) -> None:
            raise CacheError("down")

    statter = CachedBlobStatter(Broken(), DictBackend({d.digest: d}))
    assert statter.stat_many([d.digest, dg("sha256", "no")]) == {d.digest: d}
    assert statter.metrics.errors == 1


def test_cached_statter_stat_many_without_provider_batch() -> None:
    d, e = desc("a"), desc("b")

    class NoBatch:
        def __init__(self) -> None:
            self.inner = MemoryDescriptorCache()

        def stat(self, digest: Any) -> Any:
            return self.inner.stat(digest)

        def set_descriptor(self, digest: Any, desc: Any) -> None:
            self.inner.set_descriptor(digest, desc)

        def clear(self, digest: Any) -> None:
            self.inner.clear(digest)

    cache = NoBatch()
    cache.set_descriptor(d.digest, d)
    statter = CachedBlobStatter(cache, DictBackend({d.digest: d, e.digest: e}))
    assert statter.stat_many([d.digest, e.digest]) == {d.digest: d, e.digest: e}
    assert cache.stat(e.digest) == e


# --- the LMDB counter ----------------------------------------------------------------------------------


def test_lmdb_clears_bump_the_shared_counter(tmp_path: Path) -> None:
    cache = LMDBDescriptorCache(tmp_path / "cache")
    try:
        counter = _core.SharedCounter(cache.counter_path)
        assert Path(cache.counter_path).parent == tmp_path / "cache"
        start = counter.value()
        d = desc("c")
        cache.set_descriptor(d.digest, d)
        assert counter.value() == start  # sets do not
        cache.clear(d.digest)
        with pytest.raises(BlobUnknown):
            cache.clear(d.digest)  # a clear of nothing still counts (as the generation does)
        scope = cache.repository_scoped("lib/a")
        scope.set_descriptor(d.digest, d)
        scope.clear(d.digest)
        cache.purge()
        assert counter.value() == start + 4
        counter.close()
    finally:
        cache.close()
