"""Conformance suite every descriptor-cache provider must pass.

A port of distribution's ``registry/storage/cache/cachecheck/suite.go`` (empty
repository, set and read across scopes and algorithms, repository-local media
type, clear) with ocistore's additions: sha512 and blake3 aliases of a sha256
descriptor, errors carrying the value and the reason, clear semantics of both
scopes, the generation counter, batch calls, threads, the caching statter over
the provider, and a hypothesis model check against a plain-dict reference.

Subclass :class:`CacheSuite` in a test module that provides a function-scoped
``make_provider`` fixture: a callable returning a fresh, empty provider (the
fixture closes what it made).
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ocistore.cache import (
    BlobDescriptorCacheProvider,
    BlobDescriptorService,
    CachedBlobStatter,
    GenerationalCache,
)
from ocistore.descriptor import Descriptor
from ocistore.digest import Digest
from ocistore.errors import BlobDigestUnsupported, BlobUnknown, DigestInvalid, NameInvalid

OCTET = "application/octet-stream"
JSON = "application/json"
LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"

MakeProvider = Callable[[], Any]

_LENGTHS = {"sha256": 32, "sha512": 64, "blake3": 32}


def dg(algorithm: str, seed: object) -> Digest:
    """A well-formed digest of ``algorithm`` derived from ``seed`` (no content behind it)."""
    raw = hashlib.sha512(f"{algorithm}/{seed}".encode()).digest()[: _LENGTHS[algorithm]]
    return Digest(f"{algorithm}:{raw.hex()}")


def desc(seed: object, size: int = 10, media_type: str = OCTET) -> Descriptor:
    return Descriptor(dg("sha256", seed), size, media_type)


INVALID_DIGESTS: list[tuple[object, type[Exception]]] = [
    ("", DigestInvalid),
    ("sha256", DigestInvalid),
    ("sha256:", DigestInvalid),
    (":" + "a" * 64, DigestInvalid),
    ("sha256:abc", DigestInvalid),
    ("sha256:" + "A" * 64, DigestInvalid),
    ("SHA256:" + "a" * 64, DigestInvalid),
    ("sha256:" + "g" * 64, DigestInvalid),
    ("sha512:" + "a" * 64, DigestInvalid),
    ("sha256:" + "a" * 64 + "\n", DigestInvalid),
    (None, DigestInvalid),
    (b"sha256:" + b"a" * 64, DigestInvalid),
    ("sha384:" + "a" * 96, BlobDigestUnsupported),
    ("md5:" + "a" * 32, BlobDigestUnsupported),
]

INVALID_NAMES: list[object] = [
    "",
    "Foo",
    "foo//bar",
    "foo/",
    "/foo",
    "-foo",
    "foo/../bar",
    "a" * 256,
    "caf\u00e9",
    None,
    b"foo",
]


def check_digest_error(exc: BaseException, value: object) -> None:
    assert exc.value == value  # type: ignore[attr-defined]
    reason = getattr(exc, "reason", None) or getattr(exc, "algorithm", None)
    assert isinstance(reason, str) and reason


def _operations() -> st.SearchStrategy[tuple[Any, ...]]:
    return st.tuples(
        st.sampled_from(["set", "set", "stat", "stat", "clear"]),
        st.sampled_from([None, "r/one", "r/two"]),
        st.sampled_from(["sha256", "sha512", "blake3"]),
        st.integers(0, 3),
        st.sampled_from([OCTET, JSON, LAYER]),
    )


class CacheSuite:
    """The tests; a subclass supplies the ``make_provider`` fixture."""

    @pytest.fixture
    def provider(self, make_provider: MakeProvider) -> Any:
        return make_provider()

    # --- distribution's cachecheck -------------------------------------------------

    def test_implements_protocols(self, provider: Any) -> None:
        assert isinstance(provider, BlobDescriptorCacheProvider)
        assert isinstance(provider, GenerationalCache)
        assert isinstance(provider.repository_scoped("foo/bar"), BlobDescriptorService)

    def test_empty_repository(self, provider: Any) -> None:
        local = dg("sha512", "abc")
        with pytest.raises(BlobUnknown) as unknown:
            provider.stat(local)
        assert unknown.value.digest == local

        with pytest.raises(NameInvalid) as bad_name:
            provider.repository_scoped("")
        assert bad_name.value.name == "" and bad_name.value.reason

        cache = provider.repository_scoped("foo/bar")
        with pytest.raises(DigestInvalid) as bad:
            cache.set_descriptor("", Descriptor(dg("sha256", "abc"), 10, OCTET))
        check_digest_error(bad.value, "")
        with pytest.raises(ValueError):  # a descriptor without a media type
            cache.set_descriptor(local, Descriptor(dg("sha256", "abc"), 10, ""))
        with pytest.raises(DigestInvalid) as bad:
            cache.stat("")
        check_digest_error(bad.value, "")
        with pytest.raises(BlobUnknown):
            cache.stat(dg("sha512", "cba"))
        with pytest.raises(BlobUnknown):
            cache.stat(local)

    @pytest.mark.parametrize("alias_algorithm", ["sha512", "blake3"])
    def test_set_and_read(self, provider: Any, alias_algorithm: str) -> None:
        local = dg(alias_algorithm, "abc")
        expected = desc("abc")
        cache = provider.repository_scoped("foo/bar")
        cache.set_descriptor(local, expected)

        assert cache.stat(local) == expected
        assert cache.stat(expected.digest) == expected  # the canonical key too
        assert provider.stat(local) == expected  # the global scope got the alias
        assert provider.stat(expected.digest) == expected  # and the canonical mapping

        # A repository-local media type does not change the global one.
        local_type = expected.with_(media_type=JSON)
        cache.set_descriptor(local, local_type)
        assert cache.stat(local) == local_type
        assert provider.stat(local) == expected

    def test_clear(self, provider: Any) -> None:
        local = dg("sha512", "def")
        expected = desc("def")
        cache = provider.repository_scoped("foo/bar")
        cache.set_descriptor(local, expected)
        assert cache.stat(local) == expected

        cache.clear(local)
        with pytest.raises(BlobUnknown):
            cache.stat(local)

    # --- scopes ---------------------------------------------------------------------------

    def test_returns_digest_instances(self, provider: Any) -> None:
        d = desc("types")
        provider.set_descriptor(str(d.digest), d)
        got = provider.stat(str(d.digest))
        assert type(got.digest) is Digest and got == d

    def test_global_set_is_not_visible_in_a_repository(self, provider: Any) -> None:
        d = desc("global-only")
        provider.set_descriptor(d.digest, d)
        assert provider.stat(d.digest) == d
        with pytest.raises(BlobUnknown):
            provider.repository_scoped("foo/bar").stat(d.digest)

    def test_repositories_are_isolated(self, provider: Any) -> None:
        d = desc("iso")
        provider.repository_scoped("foo/bar").set_descriptor(d.digest, d)
        for other in ["foo/bar2", "foo/ba", "foo", "bar/foo/bar", "foo/bar/baz"]:
            with pytest.raises(BlobUnknown):
                provider.repository_scoped(other).stat(d.digest)
        assert provider.repository_scoped("foo/bar").stat(d.digest) == d

    def test_repository_scopes_are_views(self, provider: Any) -> None:
        """Two views of one name see the same entries (they are not private maps)."""
        d = desc("views")
        provider.repository_scoped("a/b").set_descriptor(d.digest, d)
        assert provider.repository_scoped("a/b").stat(d.digest) == d

    def test_domain_names(self, provider: Any) -> None:
        d = desc("domain")
        scope = provider.repository_scoped("Registry.Example.com:5000/team/app")
        scope.set_descriptor(d.digest, d)
        assert scope.stat(d.digest) == d

    def test_repository_needs_the_global_descriptor(self, provider: Any) -> None:
        """A repository entry is membership plus media type: no global entry, no answer."""
        d = desc("membership")
        scope = provider.repository_scoped("foo/bar")
        scope.set_descriptor(d.digest, d)
        provider.clear(d.digest)
        with pytest.raises(BlobUnknown):
            scope.stat(d.digest)
        provider.set_descriptor(d.digest, d.with_(media_type=LAYER))
        assert scope.stat(d.digest) == d  # membership and local media type were kept

    def test_first_global_media_type_wins(self, provider: Any) -> None:
        d = desc("first")
        provider.set_descriptor(d.digest, d)
        provider.set_descriptor(d.digest, d.with_(media_type=JSON, size=11))
        assert provider.stat(d.digest) == d.with_(size=11)
        provider.repository_scoped("x/y").set_descriptor(d.digest, d.with_(media_type=LAYER))
        assert provider.stat(d.digest).media_type == OCTET
        assert provider.repository_scoped("x/y").stat(d.digest).media_type == LAYER

    def test_repository_media_types_are_per_repository(self, provider: Any) -> None:
        d = desc("per-repo")
        provider.repository_scoped("a/one").set_descriptor(d.digest, d.with_(media_type=JSON))
        provider.repository_scoped("a/two").set_descriptor(d.digest, d.with_(media_type=LAYER))
        assert provider.repository_scoped("a/one").stat(d.digest).media_type == JSON
        assert provider.repository_scoped("a/two").stat(d.digest).media_type == LAYER
        assert provider.stat(d.digest).media_type == JSON

    @pytest.mark.parametrize("alias_algorithm", ["sha512", "blake3"])
    def test_global_alias_sets_canonical(self, provider: Any, alias_algorithm: str) -> None:
        local = dg(alias_algorithm, "galias")
        d = desc("galias")
        provider.set_descriptor(local, d)
        assert provider.stat(local) == d
        assert provider.stat(d.digest) == d

    def test_sha512_and_blake3_aliases_together(self, provider: Any) -> None:
        d = desc("both")
        scope = provider.repository_scoped("foo/bar")
        s512, b3 = dg("sha512", "both"), dg("blake3", "both")
        scope.set_descriptor(s512, d)
        scope.set_descriptor(b3, d)
        for key in (s512, b3, d.digest):
            assert scope.stat(key) == d
            assert provider.stat(key) == d
        scope.clear(s512)
        with pytest.raises(BlobUnknown):
            scope.stat(s512)
        assert scope.stat(b3) == d and scope.stat(d.digest) == d

    def test_keeps_only_what_a_stat_answers(self, provider: Any) -> None:
        rich = Descriptor(
            dg("sha256", "rich"),
            5,
            LAYER,
            urls=("https://example.com/x",),
            annotations={"a": "b"},
            platform={"os": "linux"},
            artifact_type="application/x",
        )
        provider.repository_scoped("foo/bar").set_descriptor(rich.digest, rich)
        plain = Descriptor(rich.digest, 5, LAYER)
        assert provider.stat(rich.digest) == plain
        assert provider.repository_scoped("foo/bar").stat(rich.digest) == plain

    @pytest.mark.parametrize(
        "media_type",
        [
            "a/b",
            "application/vnd.docker.image.rootfs.diff.tar.gzip",
            "text/plain; charset=utf-8",
            "application/x-\u00e9\u4e2d\U0001f600",
            "application/" + "x" * 300,
            "application/" + "y" * (0xFFFF - len("application/")),
        ],
    )
    def test_media_types_round_trip(self, provider: Any, media_type: str) -> None:
        d = desc(media_type, media_type=media_type)
        provider.repository_scoped("m/t").set_descriptor(d.digest, d)
        assert provider.stat(d.digest) == d
        assert provider.repository_scoped("m/t").stat(d.digest) == d

    @pytest.mark.parametrize("size", [0, 1, 2**32, 2**63 - 1])
    def test_sizes_round_trip(self, provider: Any, size: int) -> None:
        d = desc(f"size{size}", size=size)
        provider.set_descriptor(d.digest, d)
        assert provider.stat(d.digest).size == size

    # --- clear --------------------------------------------------------------------------------

    def test_clear_absent_raises_blob_unknown(self, provider: Any) -> None:
        d = dg("sha256", "absent")
        with pytest.raises(BlobUnknown) as info:
            provider.clear(d)
        assert info.value.digest == d
        with pytest.raises(BlobUnknown):
            provider.repository_scoped("foo/bar").clear(d)

    def test_repository_clear_keeps_other_scopes(self, provider: Any) -> None:
        d = desc("keep")
        provider.repository_scoped("a/one").set_descriptor(d.digest, d)
        provider.repository_scoped("a/two").set_descriptor(d.digest, d)
        provider.repository_scoped("a/one").clear(d.digest)
        with pytest.raises(BlobUnknown):
            provider.repository_scoped("a/one").stat(d.digest)
        with pytest.raises(BlobUnknown):
            provider.repository_scoped("a/one").clear(d.digest)
        assert provider.repository_scoped("a/two").stat(d.digest) == d
        assert provider.stat(d.digest) == d

    def test_global_clear_hides_the_blob_from_every_repository(self, provider: Any) -> None:
        d = desc("gone")
        for name in ("a/one", "a/two"):
            provider.repository_scoped(name).set_descriptor(d.digest, d)
        provider.clear(d.digest)
        for name in ("a/one", "a/two"):
            with pytest.raises(BlobUnknown):
                provider.repository_scoped(name).stat(d.digest)
        with pytest.raises(BlobUnknown):
            provider.clear(d.digest)

    def test_set_after_clear(self, provider: Any) -> None:
        d = desc("again")
        provider.set_descriptor(d.digest, d)
        provider.clear(d.digest)
        provider.set_descriptor(d.digest, d.with_(media_type=JSON))
        assert provider.stat(d.digest).media_type == JSON

    def test_generation_moves_on_every_clear(self, provider: Any) -> None:
        d = desc("gen")
        start = provider.generation()
        provider.set_descriptor(d.digest, d)
        provider.repository_scoped("g/r").set_descriptor(d.digest, d)
        assert provider.generation() == start  # sets do not move it
        provider.repository_scoped("g/r").clear(d.digest)
        g1 = provider.generation()
        assert g1 > start
        provider.clear(d.digest)
        g2 = provider.generation()
        assert g2 > g1
        with pytest.raises(BlobUnknown):
            provider.clear(d.digest)
        assert provider.generation() > g2  # even a clear of nothing: a local copy may exist

    # --- errors carry value and reason ---------------------------------------------------

    @pytest.mark.parametrize(("value", "error"), INVALID_DIGESTS)
    def test_invalid_digests(self, provider: Any, value: object, error: type[Exception]) -> None:
        good = desc("good")
        scope = provider.repository_scoped("foo/bar")
        calls: list[Callable[[], object]] = []
        for target in (provider, scope):
            calls += [
                lambda t=target: t.stat(value),
                lambda t=target: t.set_descriptor(value, good),
                lambda t=target: t.clear(value),
            ]
        for call in calls:
            with pytest.raises(error) as info:
                call()
            check_digest_error(info.value, value)
        assert len(provider) == 0  # nothing was written

    @pytest.mark.parametrize("name", INVALID_NAMES)
    def test_invalid_names(self, provider: Any, name: object) -> None:
        with pytest.raises(NameInvalid) as info:
            provider.repository_scoped(name)
        assert info.value.name == name
        assert isinstance(info.value.reason, str) and info.value.reason

    @pytest.mark.parametrize(
        "bad",
        [
            Descriptor(dg("sha256", "x"), -1, OCTET),
            Descriptor(dg("sha256", "x"), 1, ""),
            Descriptor(dg("sha256", "x"), 1, "bad\ud800surrogate"),
            Descriptor(dg("sha256", "x"), 1, "a/" + "b" * 0xFFFF),
        ],
        ids=["unknown-size", "no-media-type", "not-text", "too-long"],
    )
    def test_invalid_descriptors(self, provider: Any, bad: Descriptor) -> None:
        for target in (provider, provider.repository_scoped("foo/bar")):
            with pytest.raises(ValueError) as info:
                target.set_descriptor(bad.digest, bad)
            assert str(bad.digest) in str(info.value)
        assert len(provider) == 0

    def test_same_algorithm_aliases_are_refused(self, provider: Any) -> None:
        """Two sha256 digests cannot name one blob (distribution's redis check)."""
        d = desc("one")
        for target in (provider, provider.repository_scoped("foo/bar")):
            with pytest.raises(ValueError, match="algorithm"):
                target.set_descriptor(dg("sha256", "two"), d)
        assert len(provider) == 0

    def test_non_descriptor_is_refused(self, provider: Any) -> None:
        with pytest.raises(TypeError):
            provider.set_descriptor(dg("sha256", "t"), {"digest": "x"})

    # --- batches and threads ----------------------------------------------------------------

    def test_set_many_and_stat_many(self, provider: Any) -> None:
        items = [(dg("sha512", i), desc(i, size=i)) for i in range(50)]
        scope = provider.repository_scoped("batch/repo")
        scope.set_many(items)
        provider.set_many([(d.digest, d) for _, d in items[:5]])
        wanted = [k for k, _ in items] + [dg("sha256", "missing")]
        assert provider.stat_many(wanted) == {k: d for k, d in items}
        assert scope.stat_many(wanted) == {k: d for k, d in items}
        assert provider.repository_scoped("batch/other").stat_many(wanted) == {}

    def test_set_many_is_validated_before_writing(self, provider: Any) -> None:
        items = [(dg("sha256", 1), desc(1)), ("junk", desc(2))]
        with pytest.raises(DigestInvalid):
            provider.set_many(items)
        with pytest.raises(BlobUnknown):
            provider.stat(dg("sha256", 1))

    def test_threads(self, provider: Any) -> None:
        names = [f"t/r{i}" for i in range(4)]

        def work(worker: int) -> None:
            scope = provider.repository_scoped(names[worker % len(names)])
            for i in range(100):
                d = desc((worker, i), size=i)
                scope.set_descriptor(d.digest, d)
                assert scope.stat(d.digest) == d
                assert provider.stat(d.digest) == d
                if i % 3 == 0:
                    scope.clear(d.digest)
                    with pytest.raises(BlobUnknown):
                        scope.stat(d.digest)

        with ThreadPoolExecutor(max_workers=8) as pool:
            for future in [pool.submit(work, w) for w in range(8)]:
                future.result()
        assert provider.repository_scoped(names[0]).stat(desc((0, 1)).digest) == desc((0, 1), 1)

    # --- the caching statter over this provider -----------------------------------------

    def test_cached_statter_fills_and_validates(self, provider: Any) -> None:
        d = desc("statter", media_type=LAYER)
        alias = dg("sha512", "statter")
        backend = DictBackend({d.digest: d, alias: d})
        present: set[str] = {str(d.digest)}
        statter = CachedBlobStatter(
            provider.repository_scoped("foo/bar"),
            backend,
            validate=lambda _key, found: str(found.digest) in present,
        )
        assert statter.stat(alias) == d  # miss, filled
        assert statter.stat(alias) == d  # hit
        assert statter.stat(d.digest) == d  # the canonical key was filled with the alias
        assert backend.calls == 1
        assert statter.metrics.snapshot() == {
            "hits": 2,
            "misses": 1,
            "errors": 0,
            "invalidations": 0,
        }

        # The blob is deleted behind the cache's back: never served again.
        present.clear()
        del backend.blobs[d.digest], backend.blobs[alias]
        for key in (alias, d.digest):
            with pytest.raises(BlobUnknown):
                statter.stat(key)
        assert statter.metrics.invalidations == 2
        with pytest.raises(BlobUnknown):
            provider.repository_scoped("foo/bar").stat(alias)

        # Pushed again: found and cached again.
        present.add(str(d.digest))
        backend.blobs[alias] = d
        assert statter.stat(alias) == d
        assert provider.repository_scoped("foo/bar").stat(alias) == d

    # --- a model check ---------------------------------------------------------------------

    @settings(
        max_examples=40,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(ops=st.lists(_operations(), max_size=30))
    def test_matches_the_model(
        self, make_provider: MakeProvider, ops: list[tuple[Any, ...]]
    ) -> None:
        provider = make_provider()
        model = Model()
        for op in ops:
            kind, scope, key_alg, seed, media_type = op
            key = dg(key_alg, seed)
            target = provider if scope is None else provider.repository_scoped(scope)
            if kind == "set":
                value = desc(seed, size=seed, media_type=media_type)
                target.set_descriptor(key, value)
                model.set(scope, key, value)
                continue
            expected = model.stat(scope, key) if kind == "stat" else model.clear(scope, key)
            if expected is None:
                with pytest.raises(BlobUnknown):
                    target.stat(key) if kind == "stat" else target.clear(key)
            elif kind == "stat":
                assert target.stat(key) == expected
            else:
                target.clear(key)


class Model:
    """The reference semantics in plain dicts (see ocistore.cache.memory's docstring)."""

    def __init__(self) -> None:
        self.blobs: dict[str, Descriptor] = {}
        self.members: dict[tuple[str, str], str] = {}

    def set_global(self, key: Digest, value: Descriptor) -> None:
        if key != value.digest:
            self.set_global(value.digest, value)
        known = self.blobs.get(key)
        media_type = known.media_type if known is not None else value.media_type
        self.blobs[key] = value.with_(media_type=media_type)

    def set(self, scope: str | None, key: Digest, value: Descriptor) -> None:
        if scope is None:
            self.set_global(key, value)
            return
        if key != value.digest:
            self.set(scope, value.digest, value)
        self.set_global(key, value)
        self.members[scope, key] = value.media_type

    def stat(self, scope: str | None, key: Digest) -> Descriptor | None:
        found = self.blobs.get(key)
        if scope is None or found is None:
            return found
        media_type = self.members.get((scope, key))
        return None if media_type is None else found.with_(media_type=media_type)

    def clear(self, scope: str | None, key: Digest) -> Descriptor | None:
        if scope is None:
            return self.blobs.pop(key, None)
        media_type = self.members.pop((scope, key), None)
        return None if media_type is None else desc("cleared")


class DictBackend:
    """A backend statter over a dict, counting its stats."""

    def __init__(self, blobs: dict[Digest, Descriptor]) -> None:
        self.blobs = blobs
        self.calls = 0
        self.lock = threading.Lock()

    def stat(self, digest: Digest | str) -> Descriptor:
        with self.lock:
            self.calls += 1
        try:
            return self.blobs[Digest(digest)]
        except KeyError:
            raise BlobUnknown(digest) from None
