"""Hash states on disk: written on close, resumed from, never trusted beyond what they cover.

Tests marked ``native_only`` exercise what only a core with exportable hash
states can do (resume without reading the upload again); the others hold on
both cores.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ocistore import _core
from ocistore.descriptor import Descriptor
from ocistore.digest import Digest
from ocistore.driver import FilesystemDriver, FileWriter, StorageDriver
from ocistore.errors import BlobInvalidDigest, PathNotFound
from ocistore.storage import Registry
from ocistore.storage import paths as p
from ocistore.storage.blobwriter import format_started_at
from storage_fixtures import record_fsyncs

LOGGER = "ocistore.storage"


def states(driver: StorageDriver, name: str, upload_id: str) -> list[str]:
    try:
        listed = driver.list(p.path_for(p.UploadHashStates(name, upload_id, "sha256")))
    except PathNotFound:
        return []
    return [path.rsplit("/", 1)[-1] for path in listed]


def state_path(name: str, upload_id: str, offset: int) -> str:
    return p.path_for(p.UploadHashState(name, upload_id, "sha256", offset))


def go_stream(n: int) -> bytes:
    """The data rule of ../shared/vectors/go-hashstates.json."""
    return bytes((i * 131 + (i // 256) * 7 + 11) % 256 for i in range(n))


# Two states written by Go's crypto/sha256 MarshalBinary (from go-hashstates.json).
GO_STATES = {
    1000: "73686103f635c127f80b94e913d9755144faaf41ec7d661c5f56612321c1b053f1aad5a860e366e96cef72f578fb7e0184078a0d901396199c1fa225a82bae31b437ba3dc043c649cc4fd25500000000000000000000000000000000000000000000000000000000000003e8",
    100000: "7368610349bd54de6e822f4bb01ab1ac3d1e3dbc4c4cbd0aae41e7f020037412d037e2d835b83bbe41c447ca4dd053d659dc5fe265e86bee71f477fa7d008306890c8f12000000000000000000000000000000000000000000000000000000000000000000000000000186a0",
}


# --- native: states are written, pruned and used ------------------------------------


@pytest.mark.native_only
def test_close_stores_state_and_resume_uses_it(driver: StorageDriver) -> None:
    reg = Registry(driver)
    blobs = reg.repository("a").blobs
    data = go_stream(300_000)
    writer = blobs.create()
    writer.close()
    assert states(driver, "a", writer.id) == ["0"]  # as Go writes one on POST
    for start in range(0, len(data), 64_000):
        writer = blobs.resume(writer.id)
        assert writer.resumed_from_state == (start > 0)
        writer.write(data[start : start + 64_000])
        writer.close()
        offset = min(start + 64_000, len(data))
        assert states(driver, "a", writer.id) == [str(offset)]  # older ones pruned
        state = driver.get_content(state_path("a", writer.id, offset))
        assert len(state) == 108 and state[:4] == b"sha\x03"
        assert int.from_bytes(state[-8:], "big") == offset
    writer = blobs.resume(writer.id)
    assert writer.resumed_from_state and writer.hashing
    desc = writer.commit(Descriptor(digest=Digest.from_bytes(data), size=len(data)))
    assert writer.reread_bytes == 0  # no second read: the state carried the hash
    assert desc.digest == Digest.from_bytes(data)


@pytest.mark.native_only
@pytest.mark.parametrize("offset", sorted(GO_STATES))
def test_resume_from_state_written_by_go(driver: StorageDriver, offset: int) -> None:
    """An upload the Go registry began (data + startedat + its hash state) resumes here."""
    name, upload_id = "from/go", "1b4c7b8e-8d5c-4a55-9a5e-3f2a54b7c001"
    data = go_stream(150_000)
    driver.put_content(p.path_for(p.UploadStartedAt(name, upload_id)), b"2026-11-27T18:38:05Z")
    driver.put_content(p.path_for(p.UploadData(name, upload_id)), data[:offset])
    driver.put_content(state_path(name, upload_id, offset), bytes.fromhex(GO_STATES[offset]))
    writer = Registry(driver).repository(name).blobs.resume(upload_id)
    assert writer.resumed_from_state
    writer.write(data[offset:])
    desc = writer.commit(Descriptor(digest=Digest.from_bytes(data), size=len(data)))
    assert desc.digest == "sha256:" + hashlib.sha256(data).hexdigest()
    assert writer.reread_bytes == 0


# --- fallbacks: never a wrong digest -------------------------------------------------


def _sha512_state(data: bytes) -> bytes:
    h = _core.Sha512()
    h.update(data)
    return h.marshal()


def _sha256_state(data: bytes) -> bytes:
    h = _core.Sha256()
    h.update(data)
    return h.marshal()


Spoil = Callable[[StorageDriver, str, bytes], None]


def _missing(driver: StorageDriver, upload_id: str, data: bytes) -> None:
    driver.delete(state_path("a", upload_id, len(data)))


def _truncated(driver: StorageDriver, upload_id: str, data: bytes) -> None:
    path = state_path("a", upload_id, len(data))
    driver.put_content(path, driver.get_content(path)[:50])


def _garbage(driver: StorageDriver, upload_id: str, data: bytes) -> None:
    driver.put_content(state_path("a", upload_id, len(data)), b"\xff" * 108)


def _bad_padding(driver: StorageDriver, upload_id: str, data: bytes) -> None:
    path = state_path("a", upload_id, len(data))
    state = bytearray(driver.get_content(path))
    state[-9] ^= 0x01  # a byte past the buffered tail: malformed
    driver.put_content(path, bytes(state))


def _other_algorithm(driver: StorageDriver, upload_id: str, data: bytes) -> None:
    driver.put_content(state_path("a", upload_id, len(data)), _sha512_state(data))


def _wrong_count(driver: StorageDriver, upload_id: str, data: bytes) -> None:
    # a well-formed sha256 state, but of fewer bytes than the file holds
    driver.put_content(state_path("a", upload_id, len(data)), _sha256_state(data[:-1]))


def _lying_state(driver: StorageDriver, upload_id: str, data: bytes) -> None:
    # well formed and the right count, but of other bytes: only content checks catch it
    driver.put_content(state_path("a", upload_id, len(data)), _sha256_state(b"\x00" * len(data)))


def _stale(driver: StorageDriver, upload_id: str, data: bytes) -> None:
    # the data grew behind the state's back (a crash after writing, before the state)
    path = p.path_for(p.UploadData("a", upload_id))
    driver.put_content(path, driver.get_content(path) + b"!")


SPOILERS: dict[str, Spoil] = {
    "missing": _missing,
    "truncated": _truncated,
    "garbage": _garbage,
    "bad-padding": _bad_padding,
    "other-algorithm": _other_algorithm,
    "wrong-count": _wrong_count,
    "stale": _stale,
}


@pytest.mark.native_only
@pytest.mark.parametrize("spoil", list(SPOILERS), ids=list(SPOILERS))
def test_unusable_state_falls_back_with_warning(
    driver: StorageDriver, spoil: str, caplog: pytest.LogCaptureFixture
) -> None:
    reg = Registry(driver)
    blobs = reg.repository("a").blobs
    head = go_stream(70_000)
    writer = blobs.create()
    writer.write(head)
    writer.close()
    assert states(driver, "a", writer.id) == [str(len(head))]
    SPOILERS[spoil](driver, writer.id, head)
    on_disk = driver.get_content(p.path_for(p.UploadData("a", writer.id)))
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        resumed = blobs.resume(writer.id)
    assert not resumed.resumed_from_state and not resumed.hashing
    assert writer.id in caplog.text and "re-read" in caplog.text
    assert states(driver, "a", writer.id) == []  # unusable states are pruned
    resumed.write(b"tail")
    whole = on_disk + b"tail"
    desc = resumed.commit(Descriptor(digest=Digest.from_bytes(whole), size=len(whole)))
    assert desc.digest == Digest.from_bytes(whole)
    assert resumed.reread_bytes == len(whole)


@pytest.mark.native_only
def test_lying_state_is_caught_by_a_reread(
    driver: StorageDriver, caplog: pytest.LogCaptureFixture
) -> None:
    """A forged state with the right shape hashes wrong: commit re-reads before judging."""
    blobs = Registry(driver).repository("a").blobs
    head = go_stream(10_000)
    writer = blobs.create()
    writer.write(head)
    writer.close()
    _lying_state(driver, writer.id, head)
    resumed = blobs.resume(writer.id)
    assert resumed.resumed_from_state
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        desc = resumed.commit(Descriptor(digest=Digest.from_bytes(head)))
    assert desc.digest == Digest.from_bytes(head)
    assert resumed.reread_bytes == len(head)
    assert "stored hash state was wrong" in caplog.text


@pytest.mark.native_only
def test_wrong_client_digest_on_a_good_state_is_no_storage_warning(
    driver: StorageDriver, caplog: pytest.LogCaptureFixture
) -> None:
    """A client naming the wrong digest is refused; a sound state is not reported as damage."""
    blobs = Registry(driver).repository("a").blobs
    head = go_stream(10_000)
    writer = blobs.create()
    writer.write(head)
    writer.close()
    resumed = blobs.resume(writer.id)
    assert resumed.resumed_from_state
    with caplog.at_level(logging.WARNING, logger=LOGGER), pytest.raises(BlobInvalidDigest):
        resumed.commit(Descriptor(digest=Digest.from_bytes(b"something else")))
    assert caplog.text == ""


@pytest.mark.native_only
def test_resumable_digest_off_writes_no_states(driver: StorageDriver) -> None:
    blobs = Registry(driver, resumable_digest=False).repository("a").blobs
    writer = blobs.create()
    writer.write(b"x" * 1000)
    writer.close()
    assert states(driver, "a", writer.id) == []
    resumed = blobs.resume(writer.id)
    resumed.write(b"y")
    resumed.commit(Descriptor(digest=Digest.from_bytes(b"x" * 1000 + b"y")))
    assert resumed.reread_bytes == 1001


# --- the pure core ignores states ------------------------------------------------------


@pytest.fixture
def pure_core() -> Iterator[None]:
    previous = _core.BACKEND
    _core.use("pure")
    yield
    _core.use(previous)


@pytest.mark.usefixtures("pure_core")
def test_pure_core_writes_no_states_and_ignores_others(
    driver: StorageDriver, caplog: pytest.LogCaptureFixture
) -> None:
    blobs = Registry(driver).repository("a").blobs
    writer = blobs.create()
    writer.write(go_stream(1000))
    writer.close()
    assert states(driver, "a", writer.id) == []
    # A state another registry left (Go, or the native core) is left alone.
    driver.put_content(state_path("a", writer.id, 1000), bytes.fromhex(GO_STATES[1000]))
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        resumed = blobs.resume(writer.id)
    assert not resumed.resumed_from_state
    assert caplog.text == ""
    resumed.close()
    assert states(driver, "a", writer.id) == ["1000"]
    resumed = blobs.resume(writer.id)
    resumed.commit(Descriptor(digest=Digest.from_bytes(go_stream(1000))))
    assert resumed.reread_bytes == 1000


# --- durability order: a state never vouches for bytes not on disk ----------------------


class RecordingWriter:
    def __init__(self, inner: FileWriter, path: str, log: list[tuple[str, str]]) -> None:
        self._inner = inner
        self._path = path
        self._log = log

    def write(self, data: object) -> int:
        return self._inner.write(data)  # type: ignore[arg-type]

    @property
    def size(self) -> int:
        return self._inner.size

    def fileno(self) -> int | None:
        return self._inner.fileno()

    def commit(self) -> None:
        self._inner.commit()
        self._log.append(("durable", self._path))

    def close(self) -> None:
        self._inner.close()
        self._log.append(("close", self._path))

    def cancel(self) -> None:
        self._inner.cancel()


class RecordingDriver:
    def __init__(self, inner: StorageDriver) -> None:
        self.inner = inner
        self.name = inner.name
        self.log: list[tuple[str, str]] = []

    def writer(self, path: str, append: bool = False) -> RecordingWriter:
        return RecordingWriter(self.inner.writer(path, append), path, self.log)

    def put_content(self, path: str, data: object) -> None:
        self.inner.put_content(path, data)  # type: ignore[arg-type]
        self.log.append(("put", path))

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)


@pytest.mark.native_only
def test_state_is_written_only_after_data_is_durable(driver: StorageDriver) -> None:
    rec = RecordingDriver(driver)
    blobs = Registry(rec).repository("a").blobs  # type: ignore[arg-type]
    writer = blobs.create()
    writer.write(b"z" * 5000)
    writer.close()
    data = p.path_for(p.UploadData("a", writer.id))
    state = state_path("a", writer.id, 5000)
    assert rec.log.index(("durable", data)) < rec.log.index(("put", state))
    assert ("close", data) not in rec.log  # durable via commit(), not a plain close


def test_started_at_format_roundtrip_from_go_file(driver: StorageDriver) -> None:
    """An upload created by Go (startedat written by Go, no data file yet) resumes on both cores."""
    name, upload_id = "go/lazy", "0b4c7b8e-8d5c-4a55-9a5e-3f2a54b7c002"
    driver.put_content(p.path_for(p.UploadStartedAt(name, upload_id)), b"2026-11-27T18:38:05Z")
    writer = Registry(driver).repository(name).blobs.resume(upload_id)
    assert format_started_at(writer.started_at) == "2026-11-27T18:38:05Z"
    assert writer.size == 0
    writer.write(b"abc")
    assert writer.commit(Descriptor(digest=Digest.from_bytes(b"abc"))).size == 3


# --- what a crash can leave in hashstates/ (filesystem driver) ----------------------


@pytest.mark.native_only
def test_leftovers_of_a_crash_are_pruned_or_ignored(tmp_path: Path) -> None:
    """A lost newest state, an older state and a temporary file: re-hash, never a wrong digest."""
    driver = FilesystemDriver(tmp_path / "root")
    blobs = Registry(driver).repository("a").blobs
    data = go_stream(200_000)
    writer = blobs.create()
    writer.write(data[:100_000])
    writer.close()
    writer = blobs.resume(writer.id)
    writer.write(data[100_000:])
    writer.close()
    upload_id = writer.id
    directory = tmp_path / "root" / p.path_for(p.UploadHashStates("a", upload_id, "sha256"))[1:]
    # as after a crash that lost the last rename and the prune, mid-way through a third write
    (directory / "200000").unlink()
    (directory / "100000").write_bytes(_sha256_state(data[:100_000]))
    (directory / ".tmp-200000-1-2").write_bytes(b"sha\x03" + b"\x00" * 10)
    writer = blobs.resume(upload_id)
    assert not writer.resumed_from_state  # no state at the data's size: the hasher starts over
    assert sorted(x.name for x in directory.iterdir()) == []  # the rest is pruned
    desc = writer.commit(Descriptor(digest=Digest.from_bytes(data), size=len(data)))
    assert writer.reread_bytes == len(data)
    assert desc.digest == Digest.from_bytes(data)


@pytest.mark.native_only
def test_state_store_syncs_no_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Per PATCH: the data and the state's content are fsynced, the hashstates directory is not."""
    driver = FilesystemDriver(tmp_path / "root")
    blobs = Registry(driver).repository("a").blobs
    writer = blobs.create()
    writer.write(b"x" * 1000)
    writer.close()
    synced = record_fsyncs(monkeypatch)
    writer = blobs.resume(writer.id)
    writer.write(b"y" * 1000)
    writer.close()
    monkeypatch.undo()
    root = str(tmp_path / "root")
    data = root + p.path_for(p.UploadData("a", writer.id))
    assert synced[0] == data
    assert len(synced) == 2 and "/hashstates/sha256/.tmp-2000-" in synced[1]
    assert states(driver, "a", writer.id) == ["2000"]
