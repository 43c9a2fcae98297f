"""Tag store: distribution's tagstore_test.go (tag, untag, all, lookup, indexes) and the layout."""

from __future__ import annotations

import string

import pytest

from manifest_helpers import push_schema2_image
from ocistore.descriptor import Descriptor
from ocistore.digest import Digest
from ocistore.driver import StorageDriver
from ocistore.errors import DigestInvalid, NameUnknown, TagInvalid, TagUnknown, Unsupported
from ocistore.storage import Registry, Repository

A = Digest("sha256:" + "a" * 64)
B = Digest("sha256:" + "b" * 64)
ZERO = Digest("sha256:" + "0" * 64)
TAGS = "/docker/registry/v2/repositories/a/b/_manifests/tags"


@pytest.fixture
def repo(plain_registry: Registry) -> Repository:
    return plain_registry.repository("a/b")


def test_tag_get_and_overwrite(repo: Repository) -> None:
    tags = repo.tags
    with pytest.raises(DigestInvalid):
        tags.tag("latest", "")
    tags.tag("latest", Descriptor(digest=A))
    assert tags.get("latest") == Descriptor(digest=A)
    tags.tag("latest", B)  # a digest is accepted as well as a descriptor
    assert tags.get("latest").digest == B


def test_tag_layout_is_distributions(repo: Repository, plain_registry: Registry) -> None:
    drv: StorageDriver = plain_registry.driver
    repo.tags.tag("v1", A)
    repo.tags.tag("v1", B)
    assert drv.get_content(f"{TAGS}/v1/current/link") == str(B).encode()
    assert len(drv.get_content(f"{TAGS}/v1/current/link")) == 71
    for dgst in (A, B):
        link = f"{TAGS}/v1/index/sha256/{dgst.encoded}/link"
        assert drv.get_content(link) == str(dgst).encode()


def test_untag(repo: Repository) -> None:
    tags = repo.tags
    with pytest.raises(TagUnknown) as info:
        tags.untag("latest")
    assert info.value.tag == "latest"
    tags.tag("latest", B)
    tags.untag("latest")
    with pytest.raises(TagUnknown):
        tags.get("latest")
    assert tags.all() == []


def test_untag_needs_delete_enabled(driver: StorageDriver) -> None:
    repo = Registry(driver, delete_enabled=False).repository("a/b")
    with pytest.raises(Unsupported):
        repo.tags.untag("latest")
    repo.tags.tag("latest", A)
    with pytest.raises(Unsupported):
        repo.tags.untag("latest")
    assert repo.tags.get("latest").digest == A


def test_all_sorted_and_after_untag(repo: Repository) -> None:
    tags = repo.tags
    with pytest.raises(NameUnknown):
        tags.all()  # distribution: ErrRepositoryUnknown before any tag
    for c in reversed(string.ascii_lowercase):
        tags.tag(c, Digest("sha256:" + "e" * 64))
    assert tags.all() == list(string.ascii_lowercase)
    tags.untag("a")
    assert tags.all() == list(string.ascii_lowercase[1:])


def test_all_sorts_bytewise(repo: Repository) -> None:
    for tag in ("b", "B", "_x", "1.0", "1.0-rc", "a.b"):
        repo.tags.tag(tag, A)
    assert repo.tags.all() == sorted(["b", "B", "_x", "1.0", "1.0-rc", "a.b"])


def test_lookup(repo: Repository) -> None:
    tags = repo.tags
    assert tags.lookup(Descriptor(digest=A)) == []
    tags.tag("a", A)
    tags.tag("b", A)
    tags.tag("0", ZERO)
    tags.tag("1", ZERO)
    assert tags.lookup(Descriptor(digest=A)) == ["a", "b"]
    assert tags.lookup(ZERO) == ["0", "1"]
    tags.tag("b", ZERO)  # lookup follows the current link, not the index
    assert tags.lookup(A) == ["a"]
    assert tags.lookup(str(ZERO)) == ["0", "1", "b"]


def test_indexes(repo: Repository) -> None:
    t1, t2 = set(), set()
    order = []
    for i in range(5):
        payload = push_schema2_image(repo)
        dgst = Digest.from_bytes(payload)
        order.append(dgst)
        if i < 3:
            repo.tags.tag("t1", repo.manifests.stat(dgst))
            t1.add(dgst)
        else:
            repo.tags.tag("t2", dgst)
            t2.add(dgst)
    assert set(repo.tags.manifest_digests("t1")) == t1
    assert set(repo.tags.manifest_digests("t2")) == t2
    # an indexed revision that is no longer a manifest of the repository is left out
    gone = order[0]  # t1 no longer points at it, so deleting it keeps the tag
    repo.manifests.delete(gone)
    assert set(repo.tags.manifest_digests("t1")) == t1 - {gone}
    # deleting the manifest a tag points at removes the tag with its index
    repo.manifests.delete(order[2])
    with pytest.raises(TagUnknown):
        repo.tags.manifest_digests("t1")
    with pytest.raises(TagUnknown):
        repo.tags.manifest_digests("nope")


def test_manifest_digests_skip_unlinked_revisions(repo: Repository) -> None:
    payload = push_schema2_image(repo)
    dgst = Digest.from_bytes(payload)
    repo.tags.tag("keep", dgst)
    repo.tags.tag("keep", A)  # A is not a manifest here
    assert repo.tags.manifest_digests("keep") == [dgst]


def test_list_pagination(repo: Repository) -> None:
    for tag in ("a", "b", "c", "d", "e"):
        repo.tags.tag(tag, A)
    assert repo.tags.list() == ["a", "b", "c", "d", "e"]
    assert repo.tags.list(2) == ["a", "b"]
    assert repo.tags.list(2, "b") == ["c", "d"]
    assert repo.tags.list(10, "d") == ["e"]
    assert repo.tags.list(10, "e") == []
    assert repo.tags.list(0) == []
    assert repo.tags.list(last="bb") == ["c", "d", "e"]
    with pytest.raises(ValueError):
        repo.tags.list(-1)


def test_invalid_tags_raise(repo: Repository) -> None:
    for bad in ("", ".hidden", "-x", "a/b", "x" * 129, "a b"):
        with pytest.raises(TagInvalid):
            repo.tags.tag(bad, A)
        with pytest.raises(TagInvalid):
            repo.tags.get(bad)


def test_half_written_and_corrupt_tags(repo: Repository, plain_registry: Registry) -> None:
    drv = plain_registry.driver
    repo.tags.tag("good", A)
    # a crash between the index entry and the current link: not a tag
    drv.put_content(f"{TAGS}/half/index/sha256/{A.encoded}/link", str(A).encode())
    # a stray file that is no tag name
    drv.put_content(f"{TAGS}/.tmp-0123", b"x")
    # a damaged current link reads as unknown, not as an error
    drv.put_content(f"{TAGS}/bad/current/link", str(A).encode() + b"\n")
    assert repo.tags.all() == ["bad", "good"]
    with pytest.raises(TagUnknown):
        repo.tags.get("half")
    with pytest.raises(TagUnknown):
        repo.tags.get("bad")
    assert repo.tags.lookup(A) == ["good"]
    repo.tags.tag("bad", B)  # tagging again repairs it
    assert repo.tags.get("bad").digest == B


def test_tags_are_per_repository(plain_registry: Registry) -> None:
    one, two = plain_registry.repository("one"), plain_registry.repository("one/two")
    one.tags.tag("x", A)
    two.tags.tag("y", B)
    assert one.tags.all() == ["x"]
    assert two.tags.all() == ["y"]
    with pytest.raises(TagUnknown):
        one.tags.get("y")
