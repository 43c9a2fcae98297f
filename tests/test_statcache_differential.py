"""Both cores' stat caches, driven side by side, give the filesystem's answer at every step.

A hypothesis state machine makes one real storage root and puts a pure and a
native :class:`StatCache` on it, each wired the way the storage layer wires
them (:mod:`ocistore.storage.hotcache` in front of the real statters). Its
rules change the tree as other programs do (``os`` calls: blob data written,
replaced, truncated, removed; blob directories removed as Go's
garbage-collect does; repository and tag links written by rename or in
place and removed; any directory on the way moved away and back or
re-created; the shared counter bumped by another process) or use the
cache's own API (clear, forget, set_descriptor). After every rule each
query (global stat, repository stat, ``stat_many``, tag read) is asked of
both caches and of the uncached statters, and all three answers must be
equal; so must the caches' entry counts and counters, which pins that both
cores hit, miss, fill, invalidate and evict alike.

Blob data sizes change with every write, so an answer served stale from a
cache shows as a wrong size. The capacity is small, so eviction runs too.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from ocistore import _core
from ocistore.descriptor import OCTET_STREAM, Descriptor
from ocistore.digest import Digest
from ocistore.driver import FilesystemDriver
from ocistore.storage import hotcache, paths
from ocistore.storage.statter import GlobalBlobStatter, LinkedBlobStatter, read_link

pytestmark = [
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="inotify is Linux"),
    pytest.mark.one_core,  # drives both cores itself
]

CAPACITY = 8
REPOS = ("lib/a", "lib/b")
TAGS = ("latest", "v1")
BLOBS = tuple(Digest(f"sha256:{hashlib.sha256(b'blob %d' % i).hexdigest()}") for i in range(3))
ALIASES = {
    Digest(f"sha512:{hashlib.sha512(b'blob %d' % i).hexdigest()}"): BLOBS[i] for i in range(2)
}
"""sha512 digests linked in a repository to the sha256 blob they name (a push by sha512)."""
KEYS = (*BLOBS, *ALIASES)

V2 = paths.ROOT


def _data(blob: Digest) -> str:
    return paths.path_for(paths.BlobData(blob))


def _blob_dir(blob: Digest) -> str:
    return _data(blob).rpartition("/")[0]


def _layer_link(repo: str, key: Digest) -> str:
    return paths.path_for(paths.LayerLink(repo, key))


def _tag_link(repo: str, tag: str) -> str:
    return paths.path_for(paths.ManifestTagCurrent(repo, tag))


def _directories() -> list[str]:
    """Every directory whose move or removal a cache must notice (driver paths)."""
    out = {V2, V2.rpartition("/")[0], V2.rsplit("/", 2)[0], paths.BLOBS, paths.REPOSITORIES}
    for blob in BLOBS:  # blobs/<alg>, its fan-out directory, the blob's own
        blob_dir = _blob_dir(blob)
        out |= {blob_dir, blob_dir.rpartition("/")[0], blob_dir.rsplit("/", 2)[0]}
    for repo in REPOS:
        repository = paths.path_for(paths.RepositoryRoot(repo))
        out |= {repository, repository.rpartition("/")[0]}  # repositories/lib too
        for key in KEYS:  # _layers, _layers/<alg>, _layers/<alg>/<hex>
            link_dir = _layer_link(repo, key).rpartition("/")[0]
            out |= {link_dir, link_dir.rpartition("/")[0], link_dir.rsplit("/", 2)[0]}
        for tag in TAGS:  # _manifests, _manifests/tags, tags/<tag>, tags/<tag>/current
            current = _tag_link(repo, tag).rpartition("/")[0]
            out |= {current, *(current.rsplit("/", n)[0] for n in (1, 2, 3))}
    return sorted(out)


DIRECTORIES = _directories()

Question = tuple[str, str, str]
QUESTIONS: tuple[Question, ...] = (
    *(("global", "", key) for key in KEYS),
    *(("repository", repo, key) for repo in REPOS for key in KEYS),
    *(("tag", repo, tag) for repo in REPOS for tag in TAGS),
)
"""Everything a cache answers: (kind, repository, digest or tag)."""


def _outcome(call: Callable[[], Any]) -> tuple[str, Any]:
    """A call's answer, or the name of the error it raised (the message may name a path)."""
    try:
        return ("ok", call())
    except Exception as exc:
        return ("error", type(exc).__name__)


def _write(full: str, data: bytes, *, in_place: bool) -> None:
    """Write a file as another program would: by rename (ocistore) or in place (Go 2.8 links)."""
    os.makedirs(os.path.dirname(full), exist_ok=True)
    if in_place:
        fd = os.open(full, os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            os.ftruncate(fd, 0)
            os.write(fd, data)
        finally:
            os.close(fd)
        return
    tmp = f"{full}.tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, full)


def _cores() -> dict[str, Any]:
    try:
        return {"pure": _core.load("pure"), "native": _core.load("native")}
    except ImportError:
        if _core.REQUIRE_EXTENSIONS:
            raise
        pytest.skip("native core not built")


class Cached:
    """One core's stat cache on the root, with the scopes the storage layer would make."""

    def __init__(self, core: str, driver: FilesystemDriver, counter: str) -> None:
        active = _core.BACKEND
        _core.use(core)  # the storage layer's own constructor, on this core
        try:
            self.cache = hotcache.new_stat_cache(
                driver.root, capacity=CAPACITY, counter_path=counter
            )
        finally:
            _core.use(active)
        global_statter = GlobalBlobStatter(driver)
        self.glob = hotcache.front(self.cache, global_statter)
        self.repos = {
            repo: hotcache.front_linked(
                self.cache,
                driver,
                LinkedBlobStatter(driver, self.glob, repo),
                scope=f"layers:{repo}",
                root_path=paths.path_for(paths.Layers(repo)),
            )
            for repo in REPOS
        }
        links = hotcache.front_links(self.cache, driver)
        assert links is not None
        self.links = links


class StatCachesAgree(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        cores = _cores()
        self.tmp = tempfile.mkdtemp(prefix="ocistore-differential-")
        self.driver = FilesystemDriver(os.path.join(self.tmp, "root"))
        os.makedirs(self.driver.full_path(V2))
        counter_path = os.path.join(self.tmp, "generation")
        self.counter = cores["pure"].SharedCounter(counter_path)
        self.sides = {name: Cached(name, self.driver, counter_path) for name in cores}
        self.truth_glob = GlobalBlobStatter(self.driver)
        self.truth_repos = {
            repo: LinkedBlobStatter(self.driver, self.truth_glob, repo) for repo in REPOS
        }
        self.writes = 0

    def teardown(self) -> None:
        for side in self.sides.values():
            side.cache.close()
        self.counter.close()
        shutil.rmtree(self.tmp)

    def full(self, path: str) -> str:
        return self.driver.full_path(path)

    # --- the same question to both caches and to the filesystem ---------------------------------

    def agree(self, ask: Callable[[Any], Any], truth: Callable[[], Any]) -> None:
        expected = _outcome(truth)
        answers = {name: _outcome(lambda side=side: ask(side)) for name, side in self.sides.items()}
        assert answers == {name: expected for name in self.sides}

    def ask(self, question: Question) -> None:
        kind, where, what = question
        if kind == "global":
            self.agree(lambda s: s.glob.stat(what), lambda: self.truth_glob.stat(what))
        elif kind == "repository":
            self.agree(
                lambda s: s.repos[where].stat(what), lambda: self.truth_repos[where].stat(what)
            )
        else:
            path = _tag_link(where, what)
            self.agree(lambda s: s.links.read(path), lambda: read_link(self.driver, path))

    @rule(questions=st.lists(st.sampled_from(QUESTIONS), min_size=1, max_size=12))
    def ask_in_turn(self, questions: list[Question]) -> None:
        """Stats of blobs (global, repository) and tag reads, in any order and repeated."""
        for question in questions:
            self.ask(question)

    @rule(
        repo=st.sampled_from(REPOS),
        keys=st.lists(st.sampled_from(KEYS), min_size=1, max_size=len(KEYS)),
    )
    def stat_many(self, repo: str, keys: list[Digest]) -> None:
        def truth() -> dict[Digest, Descriptor]:
            return hotcache.stat_many(self.truth_repos[repo], keys)

        self.agree(lambda s: hotcache.stat_many(s.repos[repo], keys), truth)

    # --- other programs change the tree --------------------------------------------------------

    @initialize()
    def populate(self) -> None:
        """Every blob, layer link and tag present, so that most questions can hit."""
        for blob in BLOBS:
            self.write_blob(blob, in_place=False)
        for repo in REPOS:
            for key in KEYS:
                self.write_layer_link(repo, key, in_place=False)
            for i, tag in enumerate(TAGS):
                self.write_tag(repo, tag, BLOBS[i], in_place=False)

    @rule()
    def recreate_everything(self) -> None:
        """What was removed comes back (new blob sizes); what was moved away stays away."""
        self.populate()

    @rule(blob=st.sampled_from(BLOBS), in_place=st.booleans())
    def write_blob(self, blob: Digest, in_place: bool) -> None:
        self.writes += 1  # a new size every time: a stale size cannot pass for the truth
        _write(self.full(_data(blob)), b"x" * self.writes, in_place=in_place)

    @rule(blob=st.sampled_from(BLOBS))
    def truncate_blob(self, blob: Digest) -> None:
        full = self.full(_data(blob))
        if os.path.isfile(full):
            os.truncate(full, os.path.getsize(full) // 2)

    @rule(blob=st.sampled_from(BLOBS))
    def remove_blob_data(self, blob: Digest) -> None:
        full = self.full(_data(blob))
        if os.path.isfile(full):
            os.remove(full)

    @rule(repo=st.sampled_from(REPOS), key=st.sampled_from(KEYS), in_place=st.booleans())
    def write_layer_link(self, repo: str, key: Digest, in_place: bool) -> None:
        target = ALIASES.get(key, key)
        _write(self.full(_layer_link(repo, key)), str(target).encode(), in_place=in_place)

    @rule(repo=st.sampled_from(REPOS), key=st.sampled_from(KEYS))
    def remove_layer_link(self, repo: str, key: Digest) -> None:
        full = self.full(_layer_link(repo, key))
        if os.path.isfile(full):
            os.remove(full)

    @rule(
        repo=st.sampled_from(REPOS),
        tag=st.sampled_from(TAGS),
        names=st.sampled_from(BLOBS),
        in_place=st.booleans(),
    )
    def write_tag(self, repo: str, tag: str, names: Digest, in_place: bool) -> None:
        _write(self.full(_tag_link(repo, tag)), str(names).encode(), in_place=in_place)

    @rule(repo=st.sampled_from(REPOS), tag=st.sampled_from(TAGS))
    def remove_tag_link(self, repo: str, tag: str) -> None:
        full = self.full(_tag_link(repo, tag))
        if os.path.isfile(full):
            os.remove(full)

    @rule(directory=st.sampled_from(DIRECTORIES))
    def remove_directory(self, directory: str) -> None:
        """As Go's garbage-collect removes a blob's directory, or ``rm -rf`` anything."""
        shutil.rmtree(self.full(directory), ignore_errors=True)

    @rule(directory=st.sampled_from(DIRECTORIES))
    def move_directory_away(self, directory: str) -> None:
        full = self.full(directory)
        if os.path.isdir(full):
            shutil.rmtree(f"{full}.away", ignore_errors=True)
            os.rename(full, f"{full}.away")

    @rule(directory=st.sampled_from(DIRECTORIES))
    def move_directory_back(self, directory: str) -> None:
        """Back to where it was, replacing what was made there since."""
        full = self.full(directory)
        if os.path.isdir(f"{full}.away") and os.path.isdir(os.path.dirname(full)):
            shutil.rmtree(full, ignore_errors=True)
            os.rename(f"{full}.away", full)

    @rule()
    def another_process_clears(self) -> None:
        """The LMDB cache of another worker was cleared: it bumped the shared counter."""
        self.counter.bump()

    # --- the caches' own API ------------------------------------------------------------

    @rule()
    def clear_caches(self) -> None:
        for side in self.sides.values():
            side.cache.clear()

    @rule(repo=st.sampled_from(REPOS), tag=st.sampled_from(TAGS))
    def forget_tag(self, repo: str, tag: str) -> None:
        for side in self.sides.values():
            side.links.forget(_tag_link(repo, tag))

    @precondition(lambda self: self.writes > 0)
    @rule(blob=st.sampled_from(BLOBS))
    def set_descriptor(self, blob: Digest) -> None:
        """What a commit does: the global statter records nothing, the entry is dropped."""
        desc = Descriptor(blob, self.writes, OCTET_STREAM)
        for side in self.sides.values():
            side.glob.set_descriptor(blob, desc)

    # --- after every step ---------------------------------------------------------------

    @invariant()
    def same_entries_and_counters(self) -> None:
        pure, native = (self.sides[n].cache for n in ("pure", "native"))
        assert len(native) == len(pure) <= CAPACITY
        assert native.stats() == pure.stats()


def test_stat_caches_agree() -> None:
    _cores()  # skips (or fails under OCISTORE_REQUIRE_EXTENSIONS=1) before any example
    run_state_machine_as_test(
        StatCachesAgree,
        settings=settings(
            max_examples=int(os.environ.get("OCISTORE_DIFFERENTIAL_EXAMPLES", "60")),
            stateful_step_count=40,
            deadline=None,
        ),
    )


def test_directories_cover_the_tree() -> None:
    """The moved and removed directories include each level from v2 down to a link's own."""
    assert {"/docker", V2, paths.BLOBS, _blob_dir(BLOBS[0])} <= set(DIRECTORIES)
    assert paths.path_for(paths.ManifestRevisions("lib/a")).rsplit("/", 1)[0] in DIRECTORIES
    assert _tag_link("lib/a", "v1").rsplit("/", 2)[0] in DIRECTORIES
    assert Path(_layer_link("lib/b", next(iter(ALIASES)))).parent.as_posix() in DIRECTORIES
