"""Referrers: manifests with a ``subject``, the on-disk index and its rebuild."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from manifest_helpers import index_payload, oci_image, push_oci_image
from ocistore import cli
from ocistore.descriptor import Descriptor
from ocistore.digest import Digest
from ocistore.driver import FilesystemDriver, StorageDriver
from ocistore.manifest import mediatypes as mt
from ocistore.storage import Registry, Repository
from ocistore.storage.catalog import repositories
from ocistore.storage.referrers_record import (
    HEADER,
    Record,
    fingerprint,
    format_record,
    parse_record,
)

V2 = "/docker/registry/v2"
SIG_TYPE = "application/vnd.example.signature.v1"
SBOM_TYPE = "application/vnd.example.sbom.v1"


@pytest.fixture
def repo(plain_registry: Registry) -> Repository:
    return plain_registry.repository("app/web")


def _subject(payload: bytes) -> dict[str, object]:
    return {
        "mediaType": mt.OCI_MANIFEST,
        "digest": str(Digest.from_bytes(payload)),
        "size": len(payload),
    }


def _artifact(repo: Repository, subject: bytes, **extra: object) -> bytes:
    return oci_image(
        repo, layers=1, config=b"{}", config_type=mt.OCI_EMPTY, subject=_subject(subject), **extra
    )


def test_referrer_accepted_before_its_subject(repo: Repository) -> None:
    image = oci_image(repo)  # blobs pushed, manifest not yet
    sig = _artifact(repo, image, artifactType=SIG_TYPE, annotations={"k": "v"})
    sig_digest = repo.manifests.put(sig)
    image_digest = Digest.from_bytes(image)
    assert not repo.manifests.exists(image_digest)
    assert repo.manifests.referrers(image_digest) == [
        Descriptor(
            digest=sig_digest,
            size=len(sig),
            media_type=mt.OCI_MANIFEST,
            artifact_type=SIG_TYPE,
            annotations={"k": "v"},
        )
    ]
    repo.manifests.put(image)
    assert [d.digest for d in repo.manifests.referrers(str(image_digest))] == [sig_digest]


def test_artifact_type_falls_back_to_config_and_filters(repo: Repository) -> None:
    image = push_oci_image(repo)
    subject = Digest.from_bytes(image)
    sig = repo.manifests.put(_artifact(repo, image, artifactType=SIG_TYPE))
    sbom = repo.manifests.put(
        oci_image(repo, layers=1, config=b'{"x":1}', config_type=SBOM_TYPE, subject=_subject(image))
    )
    idx = repo.manifests.put(index_payload([], subject=_subject(image), artifactType=SIG_TYPE))
    found = repo.manifests.referrers(subject)
    assert [d.digest for d in found] == sorted([sig, sbom, idx])
    by_digest = {d.digest: d for d in found}
    assert by_digest[sbom].artifact_type == SBOM_TYPE  # the config's media type
    assert by_digest[idx].media_type == mt.OCI_INDEX
    assert by_digest[sbom].annotations is None
    assert {d.digest for d in repo.manifests.referrers(subject, SIG_TYPE)} == {sig, idx}
    assert [d.digest for d in repo.manifests.referrers(subject, SBOM_TYPE)] == [sbom]
    assert repo.manifests.referrers(subject, "application/none") == []


def test_no_referrers(repo: Repository) -> None:
    image = push_oci_image(repo)
    assert repo.manifests.referrers(Digest.from_bytes(image)) == []
    assert repo.manifests.referrers("sha256:" + "f" * 64) == []


def test_layout_on_disk(repo: Repository, plain_registry: Registry) -> None:
    drv = plain_registry.driver
    image = oci_image(repo)
    subject = Digest.from_bytes(image)
    sig = repo.manifests.put(_artifact(repo, image, artifactType=SIG_TYPE))
    entry = f"{V2}/repositories/app/web/_referrers/sha256/{subject.encoded}/sha256/{sig.encoded}"
    assert drv.get_content(f"{entry}/link") == str(sig).encode()
    stored = json.loads(drv.get_content(f"{entry}/descriptor"))
    assert stored == {
        "artifactType": SIG_TYPE,
        "digest": str(sig),
        "mediaType": mt.OCI_MANIFEST,
        "size": repo.manifests.stat(sig).size,
    }
    # distribution's catalog rule never mistakes the index for a repository
    assert repositories(drv, 10) == ["app/web"]


def test_deleting_a_referrer_unlists_it(repo: Repository) -> None:
    image = push_oci_image(repo)
    subject = Digest.from_bytes(image)
    keep = repo.manifests.put(_artifact(repo, image, artifactType=SIG_TYPE))
    gone = repo.manifests.put(_artifact(repo, image, artifactType=SBOM_TYPE))
    repo.manifests.delete(gone)
    assert [d.digest for d in repo.manifests.referrers(subject)] == [keep]
    # deleting the subject keeps its referrers (as registries do; GC may clean up)
    repo.manifests.delete(subject)
    assert [d.digest for d in repo.manifests.referrers(subject)] == [keep]


def test_manifest_removed_behind_our_back_is_not_listed(
    repo: Repository, driver: StorageDriver
) -> None:
    image = push_oci_image(repo)
    subject = Digest.from_bytes(image)
    sig = repo.manifests.put(_artifact(repo, image))
    # another program (distribution's tooling) unlinks the revision
    driver.delete(f"{V2}/repositories/app/web/_manifests/revisions/sha256/{sig.encoded}")
    assert repo.manifests.referrers(subject) == []


def test_entry_without_link_is_ignored(repo: Repository, driver: StorageDriver) -> None:
    image = push_oci_image(repo)
    subject = Digest.from_bytes(image)
    sig = repo.manifests.put(_artifact(repo, image))
    entry = f"{V2}/repositories/app/web/_referrers/sha256/{subject.encoded}/sha256/{sig.encoded}"
    # put died between descriptor and link: the revision link (written after) never came
    driver.delete(f"{entry}/link")
    driver.delete(f"{V2}/repositories/app/web/_manifests/revisions/sha256/{sig.encoded}")
    assert repo.manifests.referrers(subject) == []


def test_lost_entry_link_of_an_indexed_revision_is_restored_by_rebuild(
    repo: Repository, driver: StorageDriver
) -> None:
    image = push_oci_image(repo)
    subject = Digest.from_bytes(image)
    sig = repo.manifests.put(_artifact(repo, image))
    assert [d.digest for d in repo.manifests.referrers(subject)] == [sig]  # recorded as seen
    entry = f"{V2}/repositories/app/web/_referrers/sha256/{subject.encoded}/sha256/{sig.encoded}"
    driver.delete(f"{entry}/link")  # damage behind the index's back
    assert repo.manifests.referrers(subject) == []
    assert repo.manifests.rebuild_referrers_index() == 1
    assert [d.digest for d in repo.manifests.referrers(subject)] == [sig]


@pytest.mark.parametrize("damage", [b"", b"{", b"[]", b'{"digest": 5}', b"\x80\x04pickle"])
def test_damaged_descriptor_is_recomputed(
    repo: Repository, driver: StorageDriver, damage: bytes
) -> None:
    image = push_oci_image(repo)
    subject = Digest.from_bytes(image)
    sig = repo.manifests.put(_artifact(repo, image, artifactType=SIG_TYPE))
    expected = repo.manifests.referrers(subject)
    entry = f"{V2}/repositories/app/web/_referrers/sha256/{subject.encoded}/sha256/{sig.encoded}"
    driver.put_content(f"{entry}/descriptor", damage)
    assert repo.manifests.referrers(subject) == expected


def test_descriptor_naming_another_digest_is_recomputed(
    repo: Repository, driver: StorageDriver
) -> None:
    image = push_oci_image(repo)
    subject = Digest.from_bytes(image)
    sig = repo.manifests.put(_artifact(repo, image, artifactType=SIG_TYPE))
    expected = repo.manifests.referrers(subject)
    entry = f"{V2}/repositories/app/web/_referrers/sha256/{subject.encoded}/sha256/{sig.encoded}"
    forged = {"digest": "sha256:" + "1" * 64, "size": 1, "mediaType": mt.OCI_MANIFEST}
    driver.put_content(f"{entry}/descriptor", json.dumps(forged).encode())
    assert repo.manifests.referrers(subject) == expected


def test_rebuild_from_revisions(repo: Repository, driver: StorageDriver) -> None:
    image = push_oci_image(repo)
    other = push_oci_image(repo)
    subject, other_subject = Digest.from_bytes(image), Digest.from_bytes(other)
    sigs = sorted(
        repo.manifests.put(_artifact(repo, image, artifactType=SIG_TYPE)) for _ in range(3)
    )
    on_other = repo.manifests.put(_artifact(repo, other))
    before = repo.manifests.referrers(subject)
    driver.delete(f"{V2}/repositories/app/web/_referrers")
    assert repo.manifests.rebuild_referrers_index() == 4
    assert repo.manifests.referrers(subject) == before
    assert [d.digest for d in before] == sigs
    assert [d.digest for d in repo.manifests.referrers(other_subject)] == [on_other]


def test_lost_index_is_recreated_by_the_next_query(repo: Repository, driver: StorageDriver) -> None:
    image = push_oci_image(repo)
    subject = Digest.from_bytes(image)
    sig = repo.manifests.put(_artifact(repo, image, artifactType=SIG_TYPE))
    before = repo.manifests.referrers(subject)
    driver.delete(f"{V2}/repositories/app/web/_referrers")  # the record goes with it
    assert repo.manifests.referrers(subject) == before
    assert [d.digest for d in before] == [sig]


def test_rebuild_removes_stale_entries(repo: Repository, driver: StorageDriver) -> None:
    image = push_oci_image(repo)
    subject = Digest.from_bytes(image)
    sig = repo.manifests.put(_artifact(repo, image))
    # a stale entry claiming that the image refers to itself
    stale = (
        f"{V2}/repositories/app/web/_referrers/sha256/{subject.encoded}/sha256/{subject.encoded}"
    )
    driver.put_content(f"{stale}/link", str(subject).encode())
    assert {d.digest for d in repo.manifests.referrers(subject)} == {sig, subject}
    assert repo.manifests.rebuild_referrers_index() == 1
    assert [d.digest for d in repo.manifests.referrers(subject)] == [sig]
    with pytest.raises(FileNotFoundError):
        driver.get_content(f"{stale}/link")


def test_rebuild_of_empty_repository(plain_registry: Registry) -> None:
    assert plain_registry.repository("empty").manifests.rebuild_referrers_index() == 0


def test_referrers_are_per_repository(plain_registry: Registry) -> None:
    one, two = plain_registry.repository("one"), plain_registry.repository("two")
    image = push_oci_image(one)
    one.manifests.put(_artifact(one, image))
    assert two.manifests.referrers(Digest.from_bytes(image)) == []


# --- manifests written by another program on the same root (the Go registry) -------


class CountingDriver:
    """Wraps a driver; counts reads of blob data, listings and writes under ``_referrers``."""

    def __init__(self, inner: StorageDriver) -> None:
        self.inner = inner
        self.name = inner.name
        self.data_reads: list[str] = []
        self.lists: list[str] = []
        self.index_writes: list[str] = []

    def get_content(self, path: str) -> bytes:
        if path.startswith(f"{V2}/blobs/"):
            self.data_reads.append(path.rsplit("/", 2)[1])
        return self.inner.get_content(path)

    def list(self, path: str) -> list[str]:
        self.lists.append(path)
        return self.inner.list(path)

    def put_content(self, path: str, data: bytes) -> None:
        if "/_referrers/" in path:
            self.index_writes.append(path)
        self.inner.put_content(path, data)

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)

    def reset(self) -> None:
        self.data_reads.clear()
        self.lists.clear()
        self.index_writes.clear()


def _blob_data(dgst: Digest) -> str:
    return f"{V2}/blobs/sha256/{dgst.encoded[:2]}/{dgst.encoded}/data"


def _revision(name: str, dgst: Digest) -> str:
    return f"{V2}/repositories/{name}/_manifests/revisions/sha256/{dgst.encoded}"


def go_put_manifest(driver: StorageDriver, name: str, payload: bytes) -> Digest:
    """Store a manifest as the Go registry does: blob data, then the revision link only."""
    dgst = Digest.from_bytes(payload)
    driver.put_content(_blob_data(dgst), payload)
    driver.put_content(f"{_revision(name, dgst)}/link", str(dgst).encode())
    return dgst


def go_delete_manifest(driver: StorageDriver, name: str, dgst: Digest) -> None:
    """The Go registry's manifest DELETE: the link goes, the revision directory stays."""
    driver.delete(f"{_revision(name, dgst)}/link")


def _digests(repo: Repository, subject: Digest, artifact_type: str | None = None) -> list[Digest]:
    return [d.digest for d in repo.manifests.referrers(subject, artifact_type)]


@pytest.mark.parametrize("queried_before", [False, True])
def test_referrer_written_by_another_program_is_listed(
    repo: Repository, driver: StorageDriver, queried_before: bool
) -> None:
    image = push_oci_image(repo)
    subject = Digest.from_bytes(image)
    if queried_before:  # the index has a record of the revisions already
        assert _digests(repo, subject) == []
    payload = _artifact(repo, image, artifactType=SIG_TYPE, annotations={"k": "v"})
    sig = go_put_manifest(driver, "app/web", payload)
    assert repo.manifests.referrers(subject) == [
        Descriptor(
            digest=sig,
            size=len(payload),
            media_type=mt.OCI_MANIFEST,
            artifact_type=SIG_TYPE,
            annotations={"k": "v"},
        )
    ]
    assert _digests(repo, subject, SIG_TYPE) == [sig]
    assert _digests(repo, subject, SBOM_TYPE) == []
    # ... and the entry is ocistore's usual one
    entry = f"{V2}/repositories/app/web/_referrers/sha256/{subject.encoded}/sha256/{sig.encoded}"
    assert driver.get_content(f"{entry}/link") == str(sig).encode()


def test_referrers_from_both_registries_together(repo: Repository, driver: StorageDriver) -> None:
    image = oci_image(repo)
    subject = go_put_manifest(driver, "app/web", image)
    theirs = [
        go_put_manifest(driver, "app/web", _artifact(repo, image, artifactType=SBOM_TYPE))
        for _ in range(2)
    ]
    ours = repo.manifests.put(_artifact(repo, image, artifactType=SIG_TYPE))
    assert _digests(repo, subject) == sorted([*theirs, ours])
    late = go_put_manifest(driver, "app/web", _artifact(repo, image))
    assert _digests(repo, subject) == sorted([*theirs, ours, late])
    assert sorted(_digests(repo, subject, SBOM_TYPE)) == sorted(theirs)


def test_deleted_by_another_program_drops_out_and_comes_back(
    repo: Repository, driver: StorageDriver
) -> None:
    image = push_oci_image(repo)
    subject = Digest.from_bytes(image)
    payload = _artifact(repo, image)
    sig = go_put_manifest(driver, "app/web", payload)
    assert _digests(repo, subject) == [sig]
    go_delete_manifest(driver, "app/web", sig)
    assert _digests(repo, subject) == []
    go_put_manifest(driver, "app/web", payload)  # the same bytes pushed again
    assert _digests(repo, subject) == [sig]


def test_deleted_before_ever_indexed_then_pushed_again(
    repo: Repository, driver: StorageDriver
) -> None:
    """Go pushes, deletes and collects a referrer before ocistore looks, then pushes it again."""
    image = push_oci_image(repo)
    subject = Digest.from_bytes(image)
    payload = _artifact(repo, image)
    sig = go_put_manifest(driver, "app/web", payload)
    go_delete_manifest(driver, "app/web", sig)
    driver.delete(_blob_data(sig).rsplit("/", 1)[0])  # swept by garbage collection
    assert _digests(repo, subject) == []  # listed revision, data gone: pending
    assert _digests(repo, subject) == []
    go_put_manifest(driver, "app/web", payload)  # same listing as before: only the data is back
    assert _digests(repo, subject) == [sig]


def test_collected_revision_is_not_listed(repo: Repository, driver: StorageDriver) -> None:
    image = push_oci_image(repo)
    subject = Digest.from_bytes(image)
    gone, swept = (go_put_manifest(driver, "app/web", _artifact(repo, image)) for _ in range(2))
    assert _digests(repo, subject) == sorted([gone, swept])
    driver.delete(_revision("app/web", gone))  # distribution's vacuum removes the directory
    driver.delete(_blob_data(swept).rsplit("/", 1)[0])  # the link stays, the data is swept
    assert _digests(repo, subject) == []


def test_entry_whose_revision_is_gone_is_not_listed(
    repo: Repository, driver: StorageDriver
) -> None:
    image = push_oci_image(repo)
    subject = Digest.from_bytes(image)
    payload = _artifact(repo, image)
    never = Digest.from_bytes(payload)  # its blob is there, it was never a manifest here
    repo.blobs.put(mt.OCI_MANIFEST, payload)
    entry = f"{V2}/repositories/app/web/_referrers/sha256/{subject.encoded}/sha256/{never.encoded}"
    driver.put_content(f"{entry}/link", str(never).encode())
    assert _digests(repo, subject) == []


def test_deleted_through_ocistore_then_pushed_through_go(
    repo: Repository, driver: StorageDriver
) -> None:
    image = push_oci_image(repo)
    subject = Digest.from_bytes(image)
    payload = _artifact(repo, image)
    sig = repo.manifests.put(payload)
    assert _digests(repo, subject) == [sig]  # recorded as seen
    repo.manifests.delete(sig)
    go_put_manifest(driver, "app/web", payload)  # no query in between
    assert _digests(repo, subject) == [sig]
    repo.manifests.delete(sig)
    assert _digests(repo, subject) == []
    go_put_manifest(driver, "app/web", payload)
    assert _digests(repo, subject) == [sig]


def test_only_new_revisions_are_read(driver: StorageDriver) -> None:
    counting = CountingDriver(driver)
    registry = Registry(counting)  # type: ignore[arg-type]
    repo = registry.repository("app/web")
    image = push_oci_image(repo)
    subject = Digest.from_bytes(image)
    first = [go_put_manifest(driver, "app/web", _artifact(repo, image)) for _ in range(3)]
    plain = [go_put_manifest(driver, "app/web", oci_image(repo, layers=1)) for _ in range(2)]
    counting.reset()
    assert _digests(repo, subject) == sorted(first)
    # every revision read once (the image pushed through ocistore too: not recorded yet)
    read = sorted(counting.data_reads)
    assert read == sorted(d.encoded for d in [*first, *plain, subject])

    counting.reset()
    assert _digests(repo, subject) == sorted(first)
    assert counting.data_reads == []  # nothing new: no manifest read ...
    assert counting.index_writes == []  # ... nothing written
    revisions = f"{V2}/repositories/app/web/_manifests/revisions/sha256"
    assert counting.lists.count(revisions) == 1

    second = [go_put_manifest(driver, "app/web", _artifact(repo, image)) for _ in range(2)]
    counting.reset()
    assert _digests(repo, subject) == sorted([*first, *second])
    assert sorted(counting.data_reads) == sorted(d.encoded for d in second)


def test_query_of_a_missing_repository_writes_nothing(plain_registry: Registry) -> None:
    assert plain_registry.repository("nothing/here").manifests.referrers("sha256:" + "a" * 64) == []
    assert repositories(plain_registry.driver, 10) == []


RECORD = f"{V2}/repositories/app/web/_referrers/_record"


@pytest.mark.parametrize("cut", [0, 10, -1, -64])
def test_damaged_record_costs_a_pass_and_loses_nothing(
    repo: Repository, driver: StorageDriver, cut: int
) -> None:
    image = push_oci_image(repo)
    subject = Digest.from_bytes(image)
    sig = go_put_manifest(driver, "app/web", _artifact(repo, image))
    assert _digests(repo, subject) == [sig]
    damage = driver.get_content(RECORD)[:cut] if cut else b"\x80\x04pickle"
    driver.put_content(RECORD, damage)
    later = go_put_manifest(driver, "app/web", _artifact(repo, image))
    assert _digests(repo, subject) == sorted([sig, later])
    assert driver.get_content(RECORD) != damage  # rewritten


def test_record_written_back_by_a_slower_process(repo: Repository, driver: StorageDriver) -> None:
    """Two processes refresh at once and the older record wins: nothing is lost."""
    image = push_oci_image(repo)
    subject = Digest.from_bytes(image)
    sig = go_put_manifest(driver, "app/web", _artifact(repo, image))
    assert _digests(repo, subject) == [sig]
    old = driver.get_content(RECORD)
    later = go_put_manifest(driver, "app/web", _artifact(repo, image))
    assert _digests(repo, subject) == sorted([sig, later])
    driver.put_content(RECORD, old)
    assert _digests(repo, subject) == sorted([sig, later])


def test_stray_and_corrupt_revisions(repo: Repository, driver: StorageDriver) -> None:
    image = push_oci_image(repo)
    subject = Digest.from_bytes(image)
    driver.put_content(f"{V2}/repositories/app/web/_manifests/revisions/sha256/not-hex/link", b"x")
    payload = _artifact(repo, image)
    corrupt = Digest.from_bytes(payload)
    driver.put_content(_blob_data(corrupt), payload.replace(b"schemaVersion", b"schemaversion"))
    driver.put_content(f"{_revision('app/web', corrupt)}/link", str(corrupt).encode())
    sig = go_put_manifest(driver, "app/web", _artifact(repo, image))
    assert _digests(repo, subject) == [sig]


def test_rebuild_records_what_it_indexed(driver: StorageDriver) -> None:
    counting = CountingDriver(driver)
    repo = Registry(counting).repository("app/web")  # type: ignore[arg-type]
    image = push_oci_image(repo)
    subject = Digest.from_bytes(image)
    sig = go_put_manifest(driver, "app/web", _artifact(repo, image))
    assert repo.manifests.rebuild_referrers_index() == 1
    counting.reset()
    assert _digests(repo, subject) == [sig]
    assert counting.data_reads == [] and counting.index_writes == []


# --- the record's format -------------------------------------------------------------

_hexes = st.lists(st.binary(min_size=32, max_size=32).map(bytes.hex), max_size=20, unique=True)


@given(_hexes, _hexes, st.integers(0, 10**18 - 1))
def test_record_round_trips(seen: list[str], pending: list[str], count: int) -> None:
    data = format_record(count, "0" * 32, pending, sorted(seen))
    assert parse_record(data) == Record(count, "0" * 32, frozenset(pending), frozenset(seen))
    assert parse_record(data, with_seen=False) == Record(count, "0" * 32, frozenset(pending))


_SUMMARY = b"sha256 1 " + b"0" * 32


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"ocistore-referrers-record 2\n" + _SUMMARY + b" 0\n",
        HEADER,
        HEADER + b"sha256 01 " + b"0" * 32 + b" 0\n",
        HEADER + b"sha256 1 " + b"0" * 31 + b" 0\n",
        HEADER + b"sha512 1 " + b"0" * 32 + b" 0\n",
        HEADER + _SUMMARY + b" 1\n",  # a pending line announced, none there
        HEADER + _SUMMARY + b" 0\n" + b"a" * 64,  # no newline
        HEADER + _SUMMARY + b" 0\n" + b"A" * 64 + b"\n",
        HEADER + _SUMMARY + b" 0\n" + b"a" * 63 + b"\n\n",
        HEADER + _SUMMARY + b" 0\n" + b"a" * 64 + b"\n" + b"g" * 64 + b"\n",
        HEADER + _SUMMARY + b" 0\n\x80\x04pickle",
    ],
)
def test_damaged_record_is_refused(data: bytes) -> None:
    with pytest.raises(ValueError):
        parse_record(data)


def test_fingerprint_sees_any_change() -> None:
    listing = [f"/r/{i:064x}" for i in range(100)]
    assert fingerprint(listing) == fingerprint(list(listing))
    assert fingerprint(listing) != fingerprint(listing[1:])
    assert fingerprint(listing) != fingerprint([*listing[:50], f"/r/{1000:064x}", *listing[51:]])


# --- ocistore referrers rebuild ------------------------------------------------------


def test_cli_rebuild(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "root"
    driver = FilesystemDriver(root)
    registry = Registry(driver)
    repo, other = registry.repository("app/web"), registry.repository("other")
    image = push_oci_image(repo)
    subject = Digest.from_bytes(image)
    sig = go_put_manifest(driver, "app/web", _artifact(repo, image))
    push_oci_image(other)
    assert cli.main(["referrers", "rebuild", "--root", str(root), "app/web"]) == 0
    assert capsys.readouterr().out == "app/web: 1 referrer\n"
    assert cli.main(["referrers", "rebuild", "--root", str(root)]) == 0
    assert capsys.readouterr().out == "app/web: 1 referrer\nother: 0 referrers\n"
    assert _digests(repo, subject) == [sig]


@pytest.mark.parametrize("args", [["--root", "missing"], ["--root", ".", "Bad/Name!"]])
def test_cli_rebuild_refuses(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    args: list[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    assert cli.main(["referrers", "rebuild", *args]) == 2
    assert "ocistore: " in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_concurrent_queries_while_another_registry_pushes(
    repo: Repository, driver: StorageDriver
) -> None:
    """Several queriers refresh at once (their record writes race); none loses a referrer."""
    image = push_oci_image(repo)
    subject = Digest.from_bytes(image)
    payloads = [_artifact(repo, image) for _ in range(12)]
    errors: list[BaseException] = []
    stop = threading.Event()

    def query() -> None:
        other = Registry(driver).repository("app/web")  # as another process would
        try:
            while not stop.is_set():
                listed = _digests(other, subject)
                assert listed == sorted(listed)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=query) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        pushed = [go_put_manifest(driver, "app/web", p) for p in payloads]
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert errors == []
    assert _digests(repo, subject) == sorted(pushed)
