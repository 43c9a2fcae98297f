"""Upload sessions: create, write, close, resume, commit, cancel; on both cores and drivers."""

from __future__ import annotations

import io
import itertools
import re
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ocistore import _core
from ocistore.descriptor import Descriptor
from ocistore.digest import Digest
from ocistore.driver import InMemoryDriver, StorageDriver
from ocistore.errors import BlobUploadInvalid, BlobUploadUnknown, WriterClosed
from ocistore.storage import Registry
from ocistore.storage import paths as p
from ocistore.storage.blobwriter import format_started_at, parse_started_at
from storage_fixtures import blob_files

pytestmark = pytest.mark.aio_facade  # also through ocistore.aio (aio_adapter.py)


def test_create_writes_startedat_like_go(plain_registry: Registry) -> None:
    before = datetime.now(UTC).replace(microsecond=0)
    writer = plain_registry.repository("a/b").blobs.create()
    after = datetime.now(UTC)
    raw = plain_registry.driver.get_content(p.path_for(p.UploadStartedAt("a/b", writer.id)))
    # time.Now().UTC().Format(time.RFC3339): seconds, "Z", no newline
    assert re.fullmatch(rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", raw), raw
    assert before <= writer.started_at <= after
    assert parse_started_at(raw.decode()) == writer.started_at
    assert plain_registry.driver.stat(p.path_for(p.UploadData("a/b", writer.id))).size == 0
    assert re.fullmatch(
        r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", writer.id
    )
    writer.cancel()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-27T18:38:05Z", datetime(2026, 11, 27, 18, 38, 5, tzinfo=UTC)),
        ("2026-11-27T19:38:05+01:00", datetime(2026, 11, 27, 18, 38, 5, tzinfo=UTC)),
        ("2026-11-27T18:38:05.123456789Z", datetime(2026, 11, 27, 18, 38, 5, 123456, tzinfo=UTC)),
    ],
)
def test_parse_started_at(text: str, expected: datetime) -> None:
    assert parse_started_at(text) == expected


@pytest.mark.parametrize("text", ["", "2026-11-27", "2026-11-27T18:38:05Z\n", "yesterday"])
def test_parse_started_at_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_started_at(text)


def test_format_started_at() -> None:
    when = datetime(2026, 11, 27, 19, 38, 5, 999, tzinfo=timezone(timedelta(hours=1)))
    assert format_started_at(when) == "2026-11-27T18:38:05Z"


@pytest.mark.parametrize(
    "upload_id",
    ["", "..", "../x", "a/b", "0f1e2d3c-0000-4000-8000-000000000000", "x" * 200],
)
def test_resume_unknown_ids(plain_registry: Registry, upload_id: str) -> None:
    with pytest.raises(BlobUploadUnknown) as unknown:
        plain_registry.repository("a").blobs.resume(upload_id)
    assert unknown.value.upload_id == upload_id


@pytest.mark.parametrize("upload_id", ["", "../x", "0f1e2d3c-0000-4000-8000-000000000000"])
def test_upload_status_of_unknown_ids(plain_registry: Registry, upload_id: str) -> None:
    with pytest.raises(BlobUploadUnknown):
        plain_registry.repository("a").blobs.upload_status(upload_id)


def test_upload_status_reads_without_writing(plain_registry: Registry) -> None:
    blobs = plain_registry.repository("a").blobs
    writer = blobs.create()
    writer.write(b"x" * 1000)
    writer.close()
    driver = plain_registry.driver
    upload_dir = p.path_for(p.Upload("a", writer.id))
    before = sorted((i.path, i.size, i.mod_time) for i in driver.walk(upload_dir))
    status = blobs.upload_status(writer.id)
    assert (status.id, status.size, status.started_at) == (writer.id, 1000, writer.started_at)
    assert sorted((i.path, i.size, i.mod_time) for i in driver.walk(upload_dir)) == before
    blobs.resume(writer.id).cancel()
    with pytest.raises(BlobUploadUnknown):
        blobs.upload_status(writer.id)


def test_resume_in_another_repository_is_unknown(plain_registry: Registry) -> None:
    writer = plain_registry.repository("a").blobs.create()
    writer.close()
    with pytest.raises(BlobUploadUnknown):
        plain_registry.repository("b").blobs.resume(writer.id)


def test_resume_with_unreadable_startedat(plain_registry: Registry) -> None:
    writer = plain_registry.repository("a").blobs.create()
    writer.close()
    plain_registry.driver.put_content(p.path_for(p.UploadStartedAt("a", writer.id)), b"garbage")
    with pytest.raises(BlobUploadInvalid) as bad:
        plain_registry.repository("a").blobs.resume(writer.id)
    assert "startedat" in bad.value.reason


def test_resume_after_commit_and_cancel(plain_registry: Registry) -> None:
    blobs = plain_registry.repository("a").blobs
    committed = blobs.create()
    committed.write(b"abc")
    committed.commit(Descriptor(digest=Digest.from_bytes(b"abc")))
    cancelled = blobs.create()
    cancelled.cancel()
    for writer in (committed, cancelled):
        with pytest.raises(BlobUploadUnknown):
            blobs.resume(writer.id)


def test_context_manager_closes_never_cancels(plain_registry: Registry) -> None:
    blobs = plain_registry.repository("a").blobs
    with pytest.raises(RuntimeError), blobs.create() as writer:
        writer.write(b"half")
        raise RuntimeError("client went away")
    resumed = blobs.resume(writer.id)
    assert resumed.size == 4
    resumed.write(b" done")
    desc = resumed.commit(Descriptor(digest=Digest.from_bytes(b"half done")))
    assert blobs.get(desc.digest) == b"half done"


def test_closed_writer_refuses_work(plain_registry: Registry) -> None:
    blobs = plain_registry.repository("a").blobs
    writer = blobs.create()
    writer.close()
    writer.close()  # idempotent
    with pytest.raises(WriterClosed):
        writer.write(b"x")
    with pytest.raises(WriterClosed):
        writer.commit(Descriptor(digest=Digest.from_bytes(b"")))
    committed = blobs.create()
    committed.commit(Descriptor(digest=Digest.from_bytes(b"")))
    committed.close()  # a no-op after commit
    with pytest.raises(WriterClosed):
        committed.commit(Descriptor(digest=Digest.from_bytes(b"")))
    with pytest.raises(WriterClosed):
        committed.cancel()
    # cancelling a closed (not committed) writer removes the upload
    writer.cancel()
    with pytest.raises(BlobUploadUnknown):
        blobs.resume(writer.id)


def test_read_from_streams_without_readinto(plain_registry: Registry) -> None:
    class Plain:
        def __init__(self, data: bytes) -> None:
            self._f = io.BytesIO(data)

        def read(self, n: int = -1) -> bytes:
            return self._f.read(min(n, 777))

    data = bytes(range(256)) * 100
    with plain_registry.repository("a").blobs.create() as writer:
        assert writer.read_from(Plain(data)) == len(data)
        assert writer.read_from(io.BytesIO(data), chunk_size=1000) == len(data)
        desc = writer.commit(Descriptor(digest=Digest.from_bytes(data + data)))
    assert desc.size == 2 * len(data)


def test_commit_of_fresh_writer_needs_no_reread(plain_registry: Registry) -> None:
    data = b"straight through" * 1000
    with plain_registry.repository("a").blobs.create() as writer:
        writer.write(data)
        writer.commit(Descriptor(digest=Digest.from_bytes(data)))
    assert writer.reread_bytes == 0


def test_resume_without_state_rereads_once(driver: StorageDriver) -> None:
    reg = Registry(driver, resumable_digest=False)
    blobs = reg.repository("a").blobs
    data = b"0123456789" * 10_000
    writer = blobs.create()
    writer.write(data[:50_000])
    writer.close()
    assert driver.list(p.path_for(p.Upload("a", writer.id))) == [
        p.path_for(p.UploadData("a", writer.id)),
        p.path_for(p.UploadStartedAt("a", writer.id)),
    ]
    resumed = blobs.resume(writer.id)
    assert not resumed.resumed_from_state and not resumed.hashing
    resumed.write(data[50_000:])
    resumed.commit(Descriptor(digest=Digest.from_bytes(data), size=len(data)))
    assert resumed.reread_bytes == len(data)


# --- property: any split into writes and resumes commits to the digest of the whole ---


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    data=st.binary(max_size=5000),
    cuts=st.lists(st.integers(min_value=0, max_value=5000), max_size=8),
    resumes=st.lists(st.booleans(), max_size=9),
    algorithm=st.sampled_from(["sha256", "sha256", "sha512", "blake3"]),
)
def test_any_split_commits_to_digest_of_whole(
    driver: StorageDriver, data: bytes, cuts: list[int], resumes: list[bool], algorithm: str
) -> None:
    reg = Registry(driver)
    blobs = reg.repository("prop").blobs
    bounds = sorted({0, len(data), *(min(c, len(data)) for c in cuts)})
    writer = blobs.create()
    for i, (start, end) in enumerate(itertools.pairwise(bounds)):
        if i < len(resumes) and resumes[i]:
            writer.close()
            writer = blobs.resume(writer.id)
            assert writer.size == start
        writer.write(memoryview(data)[start:end])
    if resumes and resumes[-1]:
        writer.close()
        writer = blobs.resume(writer.id)
    desc = writer.commit(Descriptor(digest=Digest.from_bytes(data, algorithm), size=len(data)))
    assert desc.digest == Digest.from_bytes(data)
    assert blobs.get(desc.digest) == data
    assert blobs.stat(Digest.from_bytes(data, algorithm)) == desc


# --- cross-core: begun on one core, finished on the other -----------------------------


@pytest.mark.native_only
@pytest.mark.parametrize(("first", "second"), [("native", "pure"), ("pure", "native")])
def test_upload_begun_on_one_core_finished_on_the_other(
    driver: StorageDriver, first: str, second: str
) -> None:
    data = bytes(range(256)) * 3000
    try:
        _core.use(first)
        reg = Registry(driver)
        writer = reg.repository("x").blobs.create()
        writer.write(data[:300_000])
        writer.close()
        _core.use(second)
        resumed = Registry(driver).repository("x").blobs.resume(writer.id)
        resumed.write(data[300_000:])
        desc = resumed.commit(Descriptor(digest=Digest.from_bytes(data), size=len(data)))
    finally:
        _core.use("native")
    assert desc.digest == Digest.from_bytes(data)
    # Only a native -> native resume may skip the re-read; every other pair reads once.
    assert resumed.reread_bytes == len(data)
    assert len(blob_files(driver)) == 1


def test_two_registries_one_upload_same_process(driver: StorageDriver) -> None:
    """A resume from another Registry object (another process in an HTTP deployment)."""
    data = b"spread over requests " * 500
    writer = Registry(driver).repository("a").blobs.create()
    for i in range(0, len(data), 1000):
        writer.write(data[i : i + 1000])
        writer.close()
        writer = Registry(driver).repository("a").blobs.resume(writer.id)
    desc = writer.commit(Descriptor(digest=Digest.from_bytes(data)))
    assert Registry(driver).repository("a").blobs.get(desc.digest) == data


def test_inmemory_upload_with_no_fileno() -> None:
    reg = Registry(InMemoryDriver())
    with reg.repository("a").blobs.create() as writer:
        writer.write(b"no fd here")
        desc = writer.commit(Descriptor(digest=Digest.from_bytes(b"no fd here")))
    assert writer.reread_bytes == 0
    assert reg.repository("a").blobs.get(desc.digest) == b"no fd here"
