"""Referrers: manifests with a ``subject``, the on-disk index and its rebuild."""

from __future__ import annotations

import json

import pytest

from manifest_helpers import index_payload, oci_image, push_oci_image
from ocistore.descriptor import Descriptor
from ocistore.digest import Digest
from ocistore.driver import StorageDriver
from ocistore.manifest import mediatypes as mt
from ocistore.storage import Registry, Repository
from ocistore.storage.catalog import repositories

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


def test_deleting_a_referrer_removes_its_entry(repo: Repository) -> None:
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
