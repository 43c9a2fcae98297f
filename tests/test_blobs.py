"""Blob stores: distribution's blob_test, blobstore_test and linkedblobstore_test, ported.

Every test runs on both cores, both drivers and (where it takes ``registry``)
without a cache, with the memory cache and with LMDB.
"""

from __future__ import annotations

import io
import logging
import os
import random
import threading

import pytest

from ocistore.descriptor import OCTET_STREAM, Descriptor
from ocistore.digest import Digest
from ocistore.driver import FilesystemDriver, StorageDriver
from ocistore.errors import (
    BlobInvalidDigest,
    BlobInvalidLength,
    BlobMounted,
    BlobTooLarge,
    BlobUnknown,
    BlobUploadUnknown,
    NameInvalid,
    Unsupported,
)
from ocistore.storage import MAX_GET_SIZE, Registry
from ocistore.storage import paths as p
from storage_fixtures import blob_files, link_files, upload

pytestmark = pytest.mark.aio_facade  # also through ocistore.aio (aio_adapter.py)

EMPTY = Digest("sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")


def random_bytes(n: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(n)


def data_path(d: Digest) -> str:
    return p.path_for(p.BlobData(d))


# --- blob_test.go: TestSimpleBlobUpload ---------------------------------------------


def test_simple_upload_cancel_resume_commit_delete(registry: Registry) -> None:
    blobs = registry.repository("foo/bar").blobs
    driver = registry.driver
    data = random_bytes(70_000, seed=1)
    dgst = Digest.from_bytes(data)

    # Cancel: the upload disappears and can no longer be resumed.
    writer = blobs.create()
    writer.write(data[:100])
    writer.cancel()
    with pytest.raises(BlobUploadUnknown):
        blobs.resume(writer.id)
    with pytest.raises(FileNotFoundError):
        driver.stat(p.path_for(p.Upload("foo/bar", writer.id)))

    # Upload through read_from, close, resume and commit.
    writer = blobs.create()
    assert writer.read_from(io.BytesIO(data[:30_000])) == 30_000
    writer.close()
    resumed = blobs.resume(writer.id)
    assert resumed.size == 30_000
    assert resumed.started_at == writer.started_at
    resumed.write(data[30_000:])
    desc = resumed.commit(Descriptor(digest=dgst, size=len(data)))
    assert desc == Descriptor(digest=dgst, size=len(data), media_type=OCTET_STREAM)
    with pytest.raises(BlobUploadUnknown):
        blobs.resume(writer.id)
    with pytest.raises(FileNotFoundError):
        driver.stat(p.path_for(p.Upload("foo/bar", writer.id)))

    assert blobs.stat(dgst) == desc
    assert blobs.get(dgst) == data
    with blobs.open(dgst) as f:
        assert f.read() == data

    # Delete removes the link only; the blob stays until garbage collection.
    blobs.delete(dgst)
    with pytest.raises(BlobUnknown):
        blobs.stat(dgst)
    with pytest.raises(BlobUnknown):
        blobs.open(dgst)
    with pytest.raises(BlobUnknown):
        blobs.delete(dgst)
    assert registry.blobs.exists(dgst)

    # Re-uploading restores access.
    assert upload(blobs, data) == desc
    assert blobs.get(dgst) == data


def test_commit_wrong_size_and_digest(plain_registry: Registry) -> None:
    blobs = plain_registry.repository("a").blobs
    data = b"some layer bytes"
    writer = blobs.create()
    writer.write(data)
    with pytest.raises(BlobInvalidLength) as length:
        writer.commit(Descriptor(digest=Digest.from_bytes(data), size=len(data) + 1))
    assert (length.value.expected, length.value.actual) == (len(data) + 1, len(data))

    writer = blobs.resume(writer.id)
    wrong = Digest.from_bytes(b"other")
    with pytest.raises(BlobInvalidDigest) as bad:
        writer.commit(Descriptor(digest=wrong))
    assert bad.value.digest == wrong
    assert bad.value.computed == Digest.from_bytes(data)
    assert not plain_registry.blobs.exists(Digest.from_bytes(data))
    writer.cancel()
    assert blob_files(plain_registry.driver) == []


def test_unknown_size_is_accepted(plain_registry: Registry) -> None:
    blobs = plain_registry.repository("a").blobs
    with blobs.create() as writer:
        writer.write(b"xyz")
        desc = writer.commit(Descriptor(digest=Digest.from_bytes(b"xyz"), media_type="x/y"))
    assert (desc.size, desc.media_type) == (3, "x/y")


def test_write_accepts_any_buffer(plain_registry: Registry) -> None:
    import array

    blobs = plain_registry.repository("a").blobs
    parts: list[object] = [
        b"bytes",
        bytearray(b"bytearray"),
        memoryview(b"0123456789")[2:7],
        array.array("I", [1, 2, 3]),
    ]
    expected = b"".join(bytes(memoryview(x).cast("B")) for x in parts)  # type: ignore[arg-type]
    with blobs.create() as writer:
        for part in parts:
            writer.write(part)  # type: ignore[arg-type]
        desc = writer.commit(Descriptor(digest=Digest.from_bytes(expected)))
    assert blobs.get(desc.digest) == expected


# --- TestSimpleBlobRead / TestWriteSeek --------------------------------------------


def test_read_and_seek(plain_registry: Registry) -> None:
    blobs = plain_registry.repository("a").blobs
    data = random_bytes(300_000, seed=2)
    desc = upload(blobs, data)
    rng = random.Random(3)
    with blobs.open(desc.digest) as f:
        assert f.seekable()
        for _ in range(50):
            offset = rng.randrange(0, len(data) + 10)
            n = rng.randrange(0, 5000)
            assert f.seek(offset) == offset
            assert f.read(n) == data[offset : offset + n]
        assert f.seek(-10, io.SEEK_END) == len(data) - 10
        assert f.read() == data[-10:]


def test_get_is_limited_open_is_not(plain_registry: Registry) -> None:
    blobs = plain_registry.repository("a").blobs
    data = random_bytes(MAX_GET_SIZE + 1, seed=4)
    desc = upload(blobs, data)
    with pytest.raises(BlobTooLarge) as big:
        blobs.get(desc.digest)
    assert big.value.size == len(data)
    with blobs.open(desc.digest) as f:
        assert f.read() == data
    exact = random_bytes(MAX_GET_SIZE, seed=5)
    assert blobs.get(upload(blobs, exact).digest) == exact


# --- TestLayerUploadZeroLength ------------------------------------------------------


def test_zero_length_blob(registry: Registry) -> None:
    blobs = registry.repository("a").blobs
    with blobs.create() as writer:
        desc = writer.commit(Descriptor(digest=EMPTY, size=0))
    assert desc.digest == EMPTY and desc.size == 0
    assert blobs.stat(EMPTY).size == 0
    assert blobs.get(EMPTY) == b""
    assert registry.driver.get_content(data_path(EMPTY)) == b""
    # Again through put, which must not rewrite it.
    assert blobs.put("", b"").digest == EMPTY


# --- TestBlobMount --------------------------------------------------------------------


def test_mount(registry: Registry) -> None:
    source = registry.repository("a/source").blobs
    target = registry.repository("b/target").blobs
    data = random_bytes(5000, seed=6)
    desc = upload(source, data)

    with pytest.raises(BlobUnknown):
        target.stat(desc.digest)
    mounted = target.mount("a/source", desc.digest)
    assert mounted.digest == desc.digest and mounted.size == len(data)
    assert target.get(desc.digest) == data
    assert len(blob_files(registry.driver)) == 1

    # create(mount_from=...) reports a successful mount instead of starting an upload.
    with pytest.raises(BlobMounted) as ok:
        registry.repository("c").blobs.create(mount_from="a/source", digest=str(desc.digest))
    assert ok.value.descriptor == mounted
    assert registry.repository("c").blobs.exists(desc.digest)

    # The source must link the blob: no mounting by guessing digests.
    with pytest.raises(BlobUnknown):
        registry.repository("d").blobs.mount("e/empty", desc.digest)
    with pytest.raises(NameInvalid):
        registry.repository("d").blobs.mount("Bad//Name", desc.digest)
    # ... and a failed mount falls back to a fresh upload.
    writer = registry.repository("d").blobs.create(mount_from="e/empty", digest=desc.digest)
    writer.cancel()


def test_mount_of_alias(plain_registry: Registry) -> None:
    source = plain_registry.repository("src").blobs
    data = b"mount me by sha512"
    d512 = Digest.from_bytes(data, "sha512")
    with source.create() as writer:
        writer.write(data)
        canonical = writer.commit(Descriptor(digest=d512))
    target = plain_registry.repository("dst").blobs
    assert target.mount("src", d512) == canonical
    assert target.stat(d512) == canonical
    assert target.stat(canonical.digest) == canonical


# --- delete disabled ---------------------------------------------------------------


def test_delete_disabled(registry_no_delete: Registry) -> None:
    blobs = registry_no_delete.repository("a").blobs
    desc = upload(blobs, b"keep me")
    with pytest.raises(Unsupported):
        blobs.delete(desc.digest)
    assert blobs.get(desc.digest) == b"keep me"


# --- blobstore_test.go ------------------------------------------------------------------


class CountingDriver:
    """Wraps a driver and counts put_content/move calls whose path is blob data."""

    def __init__(self, inner: StorageDriver) -> None:
        self.inner = inner
        self.name = inner.name
        self.blob_writes = 0

    def put_content(self, path: str, data: object) -> None:
        if "/blobs/" in path:
            self.blob_writes += 1
        self.inner.put_content(path, data)  # type: ignore[arg-type]

    def move(self, source: str, dest: str) -> None:
        if "/blobs/" in dest:
            self.blob_writes += 1
        self.inner.move(source, dest)

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)


def test_put_skips_existing_content(driver: StorageDriver) -> None:
    counting = CountingDriver(driver)
    reg = Registry(counting)  # type: ignore[arg-type]
    blobs = reg.repository("a").blobs
    first = blobs.put("application/json", b"{}")
    assert counting.blob_writes == 1
    assert first.media_type == "application/json"
    second = reg.repository("b").blobs.put("application/json", b"{}")
    assert second == first
    assert counting.blob_writes == 1
    # A commit of the same content keeps the existing blob too.
    upload(reg.repository("c").blobs, b"{}")
    assert counting.blob_writes == 1


def test_put_after_gc_with_stale_cache(registry: Registry) -> None:
    blobs = registry.repository("a").blobs
    desc = blobs.put("", b"content collected behind the cache's back")
    assert blobs.stat(desc.digest).size == desc.size  # fills the caches
    assert registry.blob_statter.stat(desc.digest).size == desc.size
    # Garbage collection (ours or distribution's) removes the data directly.
    registry.driver.delete(p.path_for(p.Blob(desc.digest)))
    with pytest.raises(BlobUnknown):
        blobs.stat(desc.digest)
    with pytest.raises(BlobUnknown):
        registry.blob_statter.stat(desc.digest)
    again = blobs.put("", b"content collected behind the cache's back")
    assert again.digest == desc.digest
    assert blobs.get(desc.digest) == b"content collected behind the cache's back"


# --- caches never make a deleted blob visible --------------------------------------


def test_deleted_link_behind_the_cache(registry: Registry) -> None:
    blobs = registry.repository("a").blobs
    desc = upload(blobs, b"linked")
    assert blobs.exists(desc.digest)
    registry.driver.delete(p.path_for(p.LayerLink("a", desc.digest)))
    with pytest.raises(BlobUnknown):
        blobs.stat(desc.digest)
    with pytest.raises(BlobUnknown):
        blobs.get(desc.digest)


def test_deleted_blob_files_on_disk(tmp_path: object, descriptor_cache: object) -> None:
    """Delete blob files with ``os`` (another program), not through any driver."""
    from pathlib import Path

    root = Path(str(tmp_path)) / "root"
    reg = Registry(FilesystemDriver(root), cache=descriptor_cache, delete_enabled=True)  # type: ignore[arg-type]
    blobs = reg.repository("a").blobs
    data = b"rm -rf behind our back"
    desc = upload(blobs, data)
    assert blobs.get(desc.digest) == data
    assert reg.blob_statter.stat(desc.digest).size == len(data)
    os.remove(root / data_path(desc.digest).lstrip("/"))
    with pytest.raises(BlobUnknown):
        blobs.stat(desc.digest)
    with pytest.raises(BlobUnknown):
        reg.blob_statter.stat(desc.digest)
    with pytest.raises(BlobUnknown):
        blobs.open(desc.digest)


def test_delete_seen_by_another_registry_sharing_the_cache(
    driver: StorageDriver, descriptor_cache: object
) -> None:
    one = Registry(driver, cache=descriptor_cache, delete_enabled=True)  # type: ignore[arg-type]
    two = Registry(driver, cache=descriptor_cache, delete_enabled=True)  # type: ignore[arg-type]
    desc = upload(one.repository("a").blobs, b"shared")
    assert two.repository("a").blobs.stat(desc.digest) == one.repository("a").blobs.stat(
        desc.digest
    )
    two.repository("a").blobs.delete(desc.digest)
    with pytest.raises(BlobUnknown):
        one.repository("a").blobs.stat(desc.digest)


# --- linkedblobstore_test.go -----------------------------------------------------------


def test_repositories_do_not_see_each_others_blobs(registry: Registry) -> None:
    desc = upload(registry.repository("a").blobs, b"private")
    other = registry.repository("b").blobs
    for op in (other.stat, other.get, other.open):
        with pytest.raises(BlobUnknown):
            op(desc.digest)
    # The global statter knows it, which is what garbage collection needs.
    assert registry.blob_statter.stat(desc.digest).size == 7


def test_link_to_collected_blob_is_unknown(registry: Registry) -> None:
    blobs = registry.repository("a").blobs
    desc = upload(blobs, b"gone soon")
    registry.driver.delete(data_path(desc.digest))
    with pytest.raises(BlobUnknown) as unknown:
        blobs.stat(desc.digest)
    assert unknown.value.digest == desc.digest
    assert list(blobs.enumerate()) == []


@pytest.mark.parametrize(
    "content",
    [
        b"sha256:" + b"a" * 64 + b"\n",
        b"md5:d41d8cd98f00b204e9800998ecf8427e",
        b"\x00\xffgarbage",
        b"",
        b"sha256:" + b"A" * 64,
    ],
    ids=["trailing-newline", "unknown-algorithm", "garbage", "empty", "uppercase"],
)
def test_corrupt_link_is_unknown_with_warning(
    plain_registry: Registry, content: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    blobs = plain_registry.repository("a").blobs
    desc = upload(blobs, b"x" * 64)
    link = p.path_for(p.LayerLink("a", desc.digest))
    plain_registry.driver.put_content(link, content)
    with caplog.at_level(logging.WARNING, logger="ocistore.storage"), pytest.raises(BlobUnknown):
        blobs.stat(desc.digest)
    assert link in caplog.text
    # A later commit of the same content repairs the link.
    upload(blobs, b"x" * 64)
    assert blobs.stat(desc.digest) == desc


def test_directory_at_blob_path_is_unknown(plain_registry: Registry) -> None:
    dgst = Digest.from_bytes(b"dir")
    plain_registry.driver.put_content(data_path(dgst) + "/oops", b"")
    with pytest.raises(BlobUnknown):
        plain_registry.blob_statter.stat(dgst)


def test_enumerate_linked_and_global(registry: Registry) -> None:
    a = registry.repository("a").blobs
    b = registry.repository("b").blobs
    da = {upload(a, bytes([i]) * 10).digest for i in range(5)}
    db = {upload(b, bytes([i]) * 10).digest for i in range(3, 8)}
    assert set(a.enumerate()) == da
    assert set(b.enumerate()) == db
    assert set(registry.blobs.enumerate()) == da | db
    # a stray file in blobs/ is skipped
    registry.driver.put_content("/docker/registry/v2/blobs/sha256/zz/stray/data", b"")
    assert set(registry.blobs.enumerate()) == da | db
    assert list(registry.repository("never").blobs.enumerate()) == []


@pytest.mark.parametrize("algorithm", ["sha512", "blake3"])
def test_commit_under_other_algorithm_writes_alias_link(registry: Registry, algorithm: str) -> None:
    blobs = registry.repository("a").blobs
    data = random_bytes(10_000, seed=7)
    canonical = Digest.from_bytes(data)
    alias = Digest.from_bytes(data, algorithm)
    with blobs.create() as writer:
        writer.write(data)
        desc = writer.commit(Descriptor(digest=alias, size=len(data)))
    assert desc.digest == canonical
    assert writer.reread_bytes == len(data)  # one more pass for the other algorithm
    # Stored once under sha256; both links hold the canonical digest, no newline.
    assert blob_files(registry.driver) == [data_path(canonical)]
    for d in (canonical, alias):
        link = registry.driver.get_content(p.path_for(p.LayerLink("a", d)))
        assert link == str(canonical).encode()
    assert blobs.stat(alias) == desc
    assert blobs.get(alias) == data
    assert set(blobs.enumerate()) == {canonical, alias}
    # A wrong alias digest is refused, naming what the data hashed to.
    writer = blobs.create()
    writer.write(data)
    wrong = Digest.from_bytes(b"nope", algorithm)
    with pytest.raises(BlobInvalidDigest) as bad:
        writer.commit(Descriptor(digest=wrong))
    assert bad.value.computed == alias
    writer.cancel()


def test_on_disk_layout(tmp_path: object) -> None:
    from pathlib import Path

    root = Path(str(tmp_path)) / "root"
    reg = Registry(FilesystemDriver(root))
    data = b"layout"
    desc = upload(reg.repository("library/alpine").blobs, data)
    hex_ = desc.digest.hex
    v2 = root / "docker" / "registry" / "v2"
    assert (v2 / "blobs" / "sha256" / hex_[:2] / hex_ / "data").read_bytes() == data
    link = v2 / "repositories" / "library" / "alpine" / "_layers" / "sha256" / hex_ / "link"
    assert link.read_bytes() == f"sha256:{hex_}".encode()
    assert len(link.read_bytes()) == 71
    assert list((v2 / "repositories" / "library" / "alpine" / "_uploads").iterdir()) == []
    assert sorted(x for x in link_files(reg.driver)) == [
        f"/docker/registry/v2/repositories/library/alpine/_layers/sha256/{hex_}/link"
    ]


def test_redirect_url(driver: StorageDriver) -> None:
    blobs = Registry(driver, redirect=True).repository("a").blobs
    desc = upload(blobs, b"r")
    # Neither local driver has url_for, so the registry serves the blob itself.
    assert not blobs.blobstore.redirects
    assert blobs.redirect_url(desc.digest) is None
    with pytest.raises(BlobUnknown):
        blobs.redirect_url(Digest.from_bytes(b"missing"))


# --- concurrency: two uploads of the same content both succeed -------------------------


def test_two_uploads_of_same_content_interleaved(registry: Registry) -> None:
    data = random_bytes(20_000, seed=8)
    dgst = Digest.from_bytes(data)
    one = registry.repository("a").blobs.create()
    two = registry.repository("b").blobs.create()
    one.write(data)
    two.write(data)
    d1 = one.commit(Descriptor(digest=dgst))
    d2 = two.commit(Descriptor(digest=dgst))
    assert d1 == d2
    assert registry.repository("a").blobs.get(dgst) == data
    assert registry.repository("b").blobs.get(dgst) == data
    assert blob_files(registry.driver) == [data_path(dgst)]


def test_concurrent_uploads_of_same_content_threads(plain_registry: Registry) -> None:
    data = random_bytes(200_000, seed=9)
    dgst = Digest.from_bytes(data)
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def push(i: int) -> None:
        try:
            blobs = plain_registry.repository(f"r{i}").blobs
            with blobs.create() as writer:
                writer.write(data[:1000])
                barrier.wait()
                writer.write(data[1000:])
                writer.commit(Descriptor(digest=dgst, size=len(data)))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=push, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    for i in range(4):
        assert plain_registry.repository(f"r{i}").blobs.get(dgst) == data
