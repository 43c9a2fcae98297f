"""Tag store: distribution's tagstore_test.go (tag, untag, all, lookup, indexes) and the layout."""

from __future__ import annotations

import os
import shutil
import string
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import core_env
from manifest_helpers import push_schema2_image
from ocistore import _core
from ocistore.cache import MemoryDescriptorCache
from ocistore.descriptor import Descriptor
from ocistore.digest import Digest
from ocistore.driver import FilesystemDriver, StorageDriver
from ocistore.errors import DigestInvalid, NameUnknown, TagInvalid, TagUnknown, Unsupported
from ocistore.storage import Registry, Repository

pytestmark = pytest.mark.aio_facade  # also through ocistore.aio (aio_adapter.py)

A = Digest("sha256:" + "a" * 64)
B = Digest("sha256:" + "b" * 64)
ZERO = Digest("sha256:" + "0" * 64)
TAGS = "/docker/registry/v2/repositories/a/b/_manifests/tags"


@pytest.fixture(params=["plain", "stat-cache"])
def repo(request: pytest.FixtureRequest, plain_registry: Registry) -> Iterator[Repository]:
    """The repository, without a cache, or with one (and the stat cache on a filesystem root)."""
    if request.param == "plain":
        yield plain_registry.repository("a/b")
        return
    cache = MemoryDescriptorCache()
    yield Registry(plain_registry.driver, cache=cache, delete_enabled=True).repository("a/b")
    cache.close()


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


# --- the tag -> digest resolution through the stat cache ------------------------------------


@pytest.fixture
def hot_root(tmp_path: Path) -> Iterator[tuple[Registry, Path]]:
    """A registry whose tag reads go through the stat cache, and its root."""
    root = tmp_path / "root"
    cache = MemoryDescriptorCache()
    reg = Registry(FilesystemDriver(root), cache=cache, delete_enabled=True)
    assert reg.stat_cache is not None
    yield reg, root
    cache.close()


def _warm(reg: Registry, tag: str, dgst: Digest) -> Repository:
    repo = reg.repository("a/b")
    repo.tags.tag(tag, dgst)
    assert repo.tags.get(tag).digest == dgst
    assert repo.tags.resolve(tag) == dgst
    assert reg.stat_cache is not None
    hits = reg.stat_cache.stats()["hits"]
    assert repo.tags.resolve(tag) == dgst
    assert reg.stat_cache.stats()["hits"] == hits + 1  # answered from the cache
    return repo


def test_resolve_is_get_without_a_descriptor(repo: Repository) -> None:
    repo.tags.tag("v1", A)
    assert repo.tags.resolve("v1") == A and type(repo.tags.resolve("v1")) is Digest
    with pytest.raises(TagUnknown):
        repo.tags.resolve("v2")
    with pytest.raises(TagInvalid):
        repo.tags.resolve("-bad")


_OTHER_PROCESS = textwrap.dedent(
    """
    import sys
    from ocistore.cache import MemoryDescriptorCache
    from ocistore.driver import FilesystemDriver
    from ocistore.storage import Registry
    root, action, tag, digest = sys.argv[1:]
    repo = Registry(FilesystemDriver(root), cache=MemoryDescriptorCache(),
                    delete_enabled=True).repository("a/b")
    repo.tags.get(tag)  # warm in this process too
    if action == "tag":
        repo.tags.tag(tag, digest)
    else:
        repo.tags.untag(tag)
    """
)


def test_tag_moved_and_deleted_by_another_process(hot_root: tuple[Registry, Path]) -> None:
    reg, root = hot_root
    repo = _warm(reg, "latest", A)
    for action, expected in (("tag", B), ("untag", None)):
        subprocess.run(
            [sys.executable, "-c", _OTHER_PROCESS, str(root), action, "latest", str(B)],
            env=core_env(_core.BACKEND),
            check=True,
            capture_output=True,
        )
        if expected is None:
            with pytest.raises(TagUnknown):
                repo.tags.resolve("latest")
            assert repo.tags.lookup(B) == []
        else:
            assert repo.tags.resolve("latest") == expected
            assert repo.tags.get("latest").digest == expected


def _link(root: Path, tag: str) -> Path:
    return root / TAGS.lstrip("/") / tag / "current" / "link"


def test_tag_replaced_on_disk_is_seen_at_once(hot_root: tuple[Registry, Path]) -> None:
    reg, root = hot_root
    repo = _warm(reg, "latest", A)
    link = _link(root, "latest")
    tmp = link.with_name("link.new")
    tmp.write_text(str(B))
    os.replace(tmp, link)  # a rename over the link (ocistore, distribution 3)
    assert repo.tags.resolve("latest") == B
    assert repo.tags.resolve("latest") == B
    with open(link, "r+b") as f:  # rewritten in place (distribution 2.8.2: truncate, write)
        f.truncate(0)
        f.write(str(ZERO).encode())
    assert repo.tags.resolve("latest") == ZERO
    shutil.rmtree(link.parent.parent)  # the tag's directory removed
    with pytest.raises(TagUnknown):
        repo.tags.resolve("latest")
    repo.tags.tag("latest", A)
    assert repo.tags.resolve("latest") == A


def test_tag_and_untag_in_this_process_are_seen_at_once(hot_root: tuple[Registry, Path]) -> None:
    reg, _ = hot_root
    repo = _warm(reg, "latest", A)
    other = reg.repository("a/b")  # a second view shares the cache
    other.tags.tag("latest", B)
    assert repo.tags.resolve("latest") == B
    other.tags.untag("latest")
    with pytest.raises(TagUnknown):
        repo.tags.resolve("latest")


def test_repository_removed_drops_its_tags(hot_root: tuple[Registry, Path]) -> None:
    reg, _ = hot_root
    repo = _warm(reg, "latest", A)
    reg.remove("a/b")
    with pytest.raises(TagUnknown):
        repo.tags.resolve("latest")


def test_unknown_tags_and_manifests_are_not_remembered(hot_root: tuple[Registry, Path]) -> None:
    """Made-up tags or digests asked by clients leave nothing behind in the stores' memos."""
    reg, _ = hot_root
    repo = _warm(reg, "latest", A)
    for i in range(50):
        with pytest.raises(TagUnknown):
            repo.tags.resolve(f"made-up-{i}")
        assert not repo.manifests.exists(Digest.from_bytes(b"%d" % i))
    assert list(repo.tags._current_paths) == ["latest"]
    assert repo.manifests._revision_paths == {}
