"""Manifest handlers: parsing, media-type rules and reference verification.

Ports distribution's handler tests (registry/storage ocimanifesthandler_test.go,
schema2manifesthandler_test.go, the index cases of manifeststore_test.go) to
:func:`parse_manifest` + :func:`verify_manifest` over an in-memory fake repository,
plus the media-type matrix of registry/handlers/api_test.go.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ocistore.descriptor import Descriptor
from ocistore.digest import Digest
from ocistore.errors import ManifestBlobUnknown, ManifestInvalid, ManifestTooLarge
from ocistore.manifest import (
    MAX_MANIFEST_SIZE,
    Manifest,
    ManifestList,
    OCIIndex,
    OCIManifest,
    Schema2Manifest,
    mediatypes,
    parse_manifest,
    referrer_descriptor,
    verify_manifest,
)

MT = mediatypes
FOREIGN_DIGEST = "sha256:463435349086340864309863409683460843608348608934092322395278926a"


def blob_digest(data: bytes) -> Digest:
    return Digest.from_bytes(data)


class FakeRepo:
    """Blobs and manifests by digest; counts the batched stat calls."""

    def __init__(self) -> None:
        self.blobs: dict[Digest, Descriptor] = {}
        self.manifests: set[Digest] = set()
        self.stat_calls: list[list[Digest]] = []

    def put_blob(self, data: bytes, media_type: str = "application/octet-stream") -> Descriptor:
        desc = Descriptor(digest=blob_digest(data), size=len(data), media_type=media_type)
        self.blobs[desc.digest] = desc
        return desc

    def put_manifest(self, m: Manifest) -> None:
        self.blobs[m.digest] = m.descriptor()
        self.manifests.add(m.digest)

    def stat_blobs(self, digests: Sequence[Digest]) -> Mapping[Digest, Descriptor | None]:
        self.stat_calls.append(list(digests))
        return {d: self.blobs.get(d) for d in digests}

    def manifest_exists(self, dgst: Digest) -> bool:
        return dgst in self.manifests

    def verify(self, m: Manifest, **options: Any) -> None:
        verify_manifest(
            m, stat_blobs=self.stat_blobs, manifest_exists=self.manifest_exists, **options
        )


ALLOW = [re.compile(r"^https?://foo")]
DENY = [re.compile(r"^https?://foo/nope")]


def desc_json(desc: Descriptor, **extra: Any) -> dict[str, Any]:
    out = desc.to_json()
    out.update(extra)
    return out


def oci_bytes(config: dict[str, Any], layers: list[dict[str, Any]], **extra: Any) -> bytes:
    doc: dict[str, Any] = {"schemaVersion": 2, "mediaType": MT.OCI_MANIFEST, "config": config}
    doc["layers"] = layers
    doc.update(extra)
    return json.dumps(doc, indent=3).encode()


def schema2_bytes(config: dict[str, Any], layers: list[dict[str, Any]]) -> bytes:
    doc = {"schemaVersion": 2, "mediaType": MT.DOCKER_MANIFEST, "config": config, "layers": layers}
    return json.dumps(doc, indent=3).encode()


def index_bytes(children: list[dict[str, Any]], media_type: str = MT.OCI_INDEX) -> bytes:
    doc: dict[str, Any] = {"schemaVersion": 2, "manifests": children}
    if media_type:
        doc["mediaType"] = media_type
    return json.dumps(doc).encode()


@pytest.fixture
def repo() -> FakeRepo:
    return FakeRepo()


# --- distribution: TestVerifyOCIManifestNonDistributableLayer ---------------------------

NONDIST = {"digest": FOREIGN_DIGEST, "size": 6323, "mediaType": MT.OCI_LAYER_NONDISTRIBUTABLE_GZIP}


@pytest.mark.parametrize(
    ("urls", "outcome"),
    [
        (None, "unknown"),
        (["file:///local/file"], "url"),
        (["http://foo/bar#baz"], "url"),
        ([""], "url"),
        (["https://foo/bar", ""], "url"),
        (["", "https://foo/bar"], "url"),
        (["http://nope/bar"], "url"),
        (["http://foo/nope"], "url"),
        (["http://foo/bar"], "ok"),
        (["https://foo/bar"], "ok"),
    ],
)
def test_oci_nondistributable_layer(repo: FakeRepo, urls: list[str] | None, outcome: str) -> None:
    config = repo.put_blob(b"", MT.OCI_CONFIG)
    layer = dict(NONDIST)
    if urls is not None:
        layer["urls"] = urls
    m = parse_manifest(oci_bytes(config.to_json(), [layer]))
    _expect(repo, m, outcome, FOREIGN_DIGEST, allow=ALLOW, deny=DENY)


def test_oci_plain_layer_with_allowed_url_must_still_exist(repo: FakeRepo) -> None:
    config = repo.put_blob(b"", MT.OCI_CONFIG)
    layer = repo.put_blob(b"layer", MT.OCI_LAYER_GZIP)
    m = parse_manifest(oci_bytes(config.to_json(), [desc_json(layer, urls=["http://foo/bar"])]))
    repo.verify(m, urls_allow=ALLOW, urls_deny=DENY)
    missing = Descriptor(digest=FOREIGN_DIGEST, size=3, media_type=MT.OCI_LAYER_GZIP)
    m = parse_manifest(oci_bytes(config.to_json(), [desc_json(missing, urls=["http://foo/bar"])]))
    _expect(repo, m, "unknown", FOREIGN_DIGEST, allow=ALLOW, deny=DENY)
    m = parse_manifest(oci_bytes(config.to_json(), [desc_json(layer, urls=["http://foo/nope"])]))
    _expect(repo, m, "url", layer.digest, allow=ALLOW, deny=DENY)


def _expect(
    repo: FakeRepo,
    m: Manifest,
    outcome: str,
    digest: str,
    *,
    allow: list[re.Pattern[str]] | None,
    deny: list[re.Pattern[str]] | None,
) -> None:
    if outcome == "ok":
        repo.verify(m, urls_allow=allow, urls_deny=deny)
    elif outcome == "unknown":
        with pytest.raises(ManifestBlobUnknown) as info:
            repo.verify(m, urls_allow=allow, urls_deny=deny)
        assert info.value.digests == [digest]
    else:
        with pytest.raises(ManifestInvalid, match="invalid URL on layer") as exc:
            repo.verify(m, urls_allow=allow, urls_deny=deny)
        assert digest in exc.value.reason


# --- distribution: TestVerifyManifestForeignLayer (schema 2) ---------------------------

FOREIGN = {"digest": FOREIGN_DIGEST, "size": 6323, "mediaType": MT.DOCKER_FOREIGN_LAYER}


@pytest.mark.parametrize(
    ("urls", "outcome"),
    [
        (None, "url"),  # errMissingURL
        (["file:///local/file"], "url"),
        (["http://foo/bar#baz"], "url"),
        ([""], "url"),
        (["https://foo/bar", ""], "url"),
        (["", "https://foo/bar"], "url"),
        (["http://nope/bar"], "url"),
        (["http://foo/nope"], "url"),
        (["http://foo/bar"], "ok"),
        (["https://foo/bar"], "ok"),
    ],
)
def test_schema2_foreign_layer(repo: FakeRepo, urls: list[str] | None, outcome: str) -> None:
    config = repo.put_blob(b"", MT.DOCKER_CONFIG)
    layer = dict(FOREIGN)
    if urls is not None:
        layer["urls"] = urls
    m = parse_manifest(schema2_bytes(config.to_json(), [layer]), MT.DOCKER_MANIFEST)
    _expect(repo, m, outcome, FOREIGN_DIGEST, allow=ALLOW, deny=DENY)
    # a foreign layer is never looked up (bad URLs are refused before any lookup)
    assert repo.stat_calls == ([[config.digest]] if outcome == "ok" else [])


def test_schema2_regular_layer_may_have_foreign_urls(repo: FakeRepo) -> None:
    config = repo.put_blob(b"", MT.DOCKER_CONFIG)
    layer = repo.put_blob(b"", MT.DOCKER_LAYER)
    m = parse_manifest(schema2_bytes(config.to_json(), [desc_json(layer, urls=["http://x/y"])]))
    repo.verify(m, urls_allow=ALLOW, urls_deny=DENY)


def test_missing_foreign_url_message(repo: FakeRepo) -> None:
    config = repo.put_blob(b"", MT.DOCKER_CONFIG)
    m = parse_manifest(schema2_bytes(config.to_json(), [dict(FOREIGN)]))
    with pytest.raises(ManifestInvalid, match="missing URL"):
        repo.verify(m, urls_allow=ALLOW)


# --- URL policy defaults ----------------------------------------------------------------


def test_foreign_urls_refused_by_default(repo: FakeRepo) -> None:
    config = repo.put_blob(b"", MT.DOCKER_CONFIG)
    m = parse_manifest(schema2_bytes(config.to_json(), [dict(FOREIGN, urls=["https://foo/a"])]))
    with pytest.raises(ManifestInvalid, match="not allowed"):
        repo.verify(m)
    with pytest.raises(ManifestInvalid, match="not allowed"):
        repo.verify(m, urls_allow=[], urls_deny=[])
    repo.verify(m, urls_allow=[re.compile(r"^https://foo/")])


def test_deny_only_allows_everything_else(repo: FakeRepo) -> None:
    config = repo.put_blob(b"", MT.DOCKER_CONFIG)
    ok = parse_manifest(schema2_bytes(config.to_json(), [dict(FOREIGN, urls=["https://a/b"])]))
    repo.verify(ok, urls_deny=[re.compile("evil")])
    bad = parse_manifest(schema2_bytes(config.to_json(), [dict(FOREIGN, urls=["https://evil/"])]))
    with pytest.raises(ManifestInvalid, match="denied"):
        repo.verify(bad, urls_deny=[re.compile("evil")])


def test_several_allow_patterns_any_matches(repo: FakeRepo) -> None:
    config = repo.put_blob(b"", MT.DOCKER_CONFIG)
    allow = [re.compile("^https://a/"), re.compile("^https://b/")]
    m = parse_manifest(
        schema2_bytes(config.to_json(), [dict(FOREIGN, urls=["https://a/1", "https://b/2"])])
    )
    repo.verify(m, urls_allow=allow)


@pytest.mark.parametrize(
    "url",
    [
        "ftp://foo/bar",
        "foo/bar",
        "https://foo/ba r",
        "https://foo/\x00",
        "https://foo:99999999/x",
        "https://foo:port/x",
        "http://[::1/x",
    ],
)
def test_malformed_urls_refused(repo: FakeRepo, url: str) -> None:
    config = repo.put_blob(b"", MT.DOCKER_CONFIG)
    m = parse_manifest(schema2_bytes(config.to_json(), [dict(FOREIGN, urls=[url])]))
    with pytest.raises(ManifestInvalid, match="invalid URL"):
        repo.verify(m, urls_allow=[re.compile("")])


def test_url_scheme_is_case_insensitive(repo: FakeRepo) -> None:
    config = repo.put_blob(b"", MT.DOCKER_CONFIG)
    m = parse_manifest(schema2_bytes(config.to_json(), [dict(FOREIGN, urls=["HTTPS://foo/x"])]))
    repo.verify(m, urls_allow=[re.compile("")])


# --- distribution: TestVerify{OCI,}ManifestBlobLayerAndConfig ------------------------------


@pytest.mark.parametrize("kind", ["oci", "schema2"])
def test_blob_layer_and_config(repo: FakeRepo, kind: str) -> None:
    config_type = MT.OCI_CONFIG if kind == "oci" else MT.DOCKER_CONFIG
    layer_type = MT.OCI_LAYER_GZIP if kind == "oci" else MT.DOCKER_LAYER
    build = oci_bytes if kind == "oci" else schema2_bytes
    config = repo.put_blob(b"", config_type)
    layer = repo.put_blob(b"", layer_type)

    def put(cfg: dict[str, Any], lyr: dict[str, Any]) -> None:
        repo.verify(parse_manifest(build(cfg, [lyr])), urls_allow=ALLOW, urls_deny=DENY)

    # empty descriptor, with or without URLs: invalid digest
    for bad in ({"urls": ["http://foo/bar"]}, {}, {"mediaType": layer_type}):
        with pytest.raises(ManifestInvalid, match=r"layers\[0\]\.digest"):
            put(config.to_json(), bad)
    with pytest.raises(ManifestInvalid, match=r"layers\[0\]\.digest"):
        put(config.to_json(), {"mediaType": layer_type, "digest": "invalid"})
    # unknown media type, but the blob is present
    put(config.to_json(), {"digest": layer.digest, "size": 0})
    put(config.to_json(), {"digest": layer.digest, "size": 0, "urls": ["http://foo/bar"]})
    # a normal uploaded layer
    put(config.to_json(), layer.to_json())
    put(config.to_json(), desc_json(layer, urls=["https://foo/bar"]))
    # config: valid, then invalid digests
    with pytest.raises(ManifestInvalid, match=r"config\.digest"):
        put({"mediaType": config_type, "urls": ["https://foo/bar"]}, layer.to_json())
    with pytest.raises(ManifestInvalid, match=r"config\.digest"):
        put({"mediaType": config_type, "digest": "invalid"}, layer.to_json())


@pytest.mark.parametrize("kind", ["oci", "schema2"])
def test_missing_config_is_listed(repo: FakeRepo, kind: str) -> None:
    build = oci_bytes if kind == "oci" else schema2_bytes
    layer = repo.put_blob(b"present")
    config = Descriptor(digest=blob_digest(b"absent config"), size=13, media_type=MT.OCI_CONFIG)
    m = parse_manifest(build(config.to_json(), [layer.to_json()]))
    with pytest.raises(ManifestBlobUnknown) as info:
        repo.verify(m)
    assert info.value.digests == [config.digest]


def test_every_missing_blob_is_listed_in_order_in_one_batch(repo: FakeRepo) -> None:
    config = repo.put_blob(b"{}", MT.DOCKER_CONFIG)
    layers = [
        {"mediaType": MT.DOCKER_LAYER, "digest": f"sha256:{i:064d}", "size": 100}
        for i in range(1, 51)
    ]
    layers.insert(10, repo.put_blob(b"here", MT.DOCKER_LAYER).to_json())
    m = parse_manifest(schema2_bytes(config.to_json(), layers))
    with pytest.raises(ManifestBlobUnknown) as info:
        repo.verify(m)
    assert info.value.digests == [f"sha256:{i:064d}" for i in range(1, 51)]
    assert len(repo.stat_calls) == 1
    assert len(repo.stat_calls[0]) == 52


def test_duplicate_layers_are_looked_up_and_reported_once(repo: FakeRepo) -> None:
    config = repo.put_blob(b"{}", MT.OCI_CONFIG)
    absent = {"mediaType": MT.OCI_LAYER, "digest": FOREIGN_DIGEST, "size": 1}
    m = parse_manifest(oci_bytes(config.to_json(), [absent, absent]))
    with pytest.raises(ManifestBlobUnknown) as info:
        repo.verify(m)
    assert info.value.digests == [FOREIGN_DIGEST]
    assert repo.stat_calls == [[config.digest, FOREIGN_DIGEST]]


def test_zero_size_layer_with_real_digest_must_exist(repo: FakeRepo) -> None:
    config = repo.put_blob(b"{}", MT.OCI_EMPTY)
    layer = {"mediaType": MT.OCI_LAYER, "digest": blob_digest(b"x"), "size": 0}
    m = parse_manifest(oci_bytes(config.to_json(), [layer]))
    with pytest.raises(ManifestBlobUnknown):
        repo.verify(m)
    repo.put_blob(b"x")
    repo.verify(m)


def test_empty_config_must_exist_like_any_config(repo: FakeRepo) -> None:
    empty = {"mediaType": MT.OCI_EMPTY, "digest": blob_digest(b"{}"), "size": 2}
    m = parse_manifest(oci_bytes(empty, [], artifactType="application/vnd.example+type"))
    with pytest.raises(ManifestBlobUnknown):
        repo.verify(m)
    repo.put_blob(b"{}", MT.OCI_EMPTY)
    repo.verify(m)


def test_reference_typed_as_manifest_must_be_a_manifest(repo: FakeRepo) -> None:
    child = parse_manifest(oci_bytes(repo.put_blob(b"{}", MT.OCI_CONFIG).to_json(), []))
    config = repo.put_blob(b"{}", MT.OCI_CONFIG)
    as_layer = child.descriptor().to_json()
    m = parse_manifest(oci_bytes(config.to_json(), [as_layer]))
    repo.blobs[child.digest] = child.descriptor()  # a blob, but not a manifest
    with pytest.raises(ManifestBlobUnknown) as info:
        repo.verify(m)
    assert info.value.digests == [child.digest]
    repo.put_manifest(child)
    repo.verify(m)


def test_subject_need_not_exist(repo: FakeRepo) -> None:
    config = repo.put_blob(b"{}", MT.OCI_EMPTY)
    subject = {"mediaType": MT.OCI_MANIFEST, "digest": FOREIGN_DIGEST, "size": 10}
    m = parse_manifest(oci_bytes(config.to_json(), [], subject=subject))
    repo.verify(m)
    assert m.subject is not None and m.subject.digest == FOREIGN_DIGEST
    assert FOREIGN_DIGEST not in [d for call in repo.stat_calls for d in call]


# --- indexes: manifeststore_test index cases ----------------------------------------------


def _image(repo: FakeRepo, seed: bytes) -> Manifest:
    config = repo.put_blob(b"{}", MT.OCI_CONFIG)
    layer = repo.put_blob(seed, MT.OCI_LAYER)
    return parse_manifest(oci_bytes(config.to_json(), [layer.to_json()]))


def _child(m: Manifest, arch: str, os_: str) -> dict[str, Any]:
    return desc_json(m.descriptor(), platform={"architecture": arch, "os": os_})


@pytest.mark.parametrize("media_type", [MT.OCI_INDEX, ""])
def test_index_needs_its_children(repo: FakeRepo, media_type: str) -> None:
    image = _image(repo, b"one")
    index = parse_manifest(index_bytes([_child(image, "atari2600", "CP/M")], media_type))
    assert isinstance(index, OCIIndex)
    assert index.media_type == MT.OCI_INDEX
    with pytest.raises(ManifestBlobUnknown) as info:
        repo.verify(index)
    assert info.value.digests == [image.digest]
    repo.put_manifest(image)
    repo.verify(index)


def test_index_without_child_check(repo: FakeRepo) -> None:
    image = _image(repo, b"one")
    index = parse_manifest(index_bytes([_child(image, "atari2600", "CP/M")]))
    repo.verify(index, validate_index_children=False)
    child = _child(image, "atari2600", "CP/M")
    child["mediaType"] = MT.DOCKER_MANIFEST
    listing = parse_manifest(index_bytes([child], MT.DOCKER_MANIFEST_LIST))
    assert isinstance(listing, ManifestList)
    repo.verify(listing, validate_index_children=False)
    with pytest.raises(ManifestBlobUnknown):
        repo.verify(listing)


def test_index_with_selective_platforms(repo: FakeRepo) -> None:
    amd, arm, atari = (_image(repo, s) for s in (b"amd", b"arm", b"atari"))
    index = parse_manifest(
        index_bytes(
            [
                _child(amd, "amd64", "linux"),
                _child(arm, "arm", "plan9"),
                _child(atari, "atari2600", "CP/M"),
            ]
        )
    )
    platforms = [{"architecture": "amd64", "os": "linux"}]
    with pytest.raises(ManifestBlobUnknown) as info:
        repo.verify(index, index_platforms=platforms)
    assert info.value.digests == [amd.digest]
    repo.put_manifest(atari)
    with pytest.raises(ManifestBlobUnknown):
        repo.verify(index, index_platforms=platforms)
    repo.put_manifest(amd)
    repo.verify(index, index_platforms=platforms)
    with pytest.raises(ManifestBlobUnknown) as info:
        repo.verify(index)  # without a platform list every child must exist
    assert info.value.digests == [arm.digest]


def test_child_without_platform_matches_no_listed_platform(repo: FakeRepo) -> None:
    image = _image(repo, b"x")
    index = parse_manifest(index_bytes([image.descriptor().to_json()]))
    repo.verify(index, index_platforms=[{"architecture": "amd64", "os": "linux"}])
    with pytest.raises(ManifestBlobUnknown):
        repo.verify(index)


def test_index_references_are_its_children(repo: FakeRepo) -> None:
    image = _image(repo, b"x")
    index = parse_manifest(index_bytes([_child(image, "amd64", "linux")]))
    assert index.references() == index.manifests
    assert index.manifests[0].platform == {"architecture": "amd64", "os": "linux"}
    assert index.config is None and index.layers == ()


# --- schema 1 refused -------------------------------------------------------------------

SCHEMA1 = {
    "schemaVersion": 1,
    "name": "library/hello",
    "tag": "latest",
    "architecture": "amd64",
    "fsLayers": [{"blobSum": FOREIGN_DIGEST}],
    "history": [{"v1Compatibility": "{}"}],
}
SIGNED = dict(
    SCHEMA1, signatures=[{"header": {"alg": "ES256"}, "signature": "x", "protected": "y"}]
)


@pytest.mark.parametrize("doc", [SCHEMA1, SIGNED], ids=["unsigned", "signed"])
@pytest.mark.parametrize(
    "media_type",
    [None, MT.DOCKER_SCHEMA1, MT.DOCKER_SCHEMA1_SIGNED, MT.OCI_MANIFEST, MT.DOCKER_MANIFEST],
)
def test_schema1_is_unsupported(doc: dict[str, Any], media_type: str | None) -> None:
    with pytest.raises(ManifestInvalid, match="schema 1 is unsupported"):
        parse_manifest(json.dumps(doc).encode(), media_type)


def test_schema1_media_type_with_schema2_body_is_unsupported() -> None:
    body = json.dumps({"schemaVersion": 2, "mediaType": MT.DOCKER_SCHEMA1_SIGNED}).encode()
    with pytest.raises(ManifestInvalid, match="schema 1 is unsupported"):
        parse_manifest(body)
    with pytest.raises(ManifestInvalid, match="schema 1 is unsupported"):
        parse_manifest(oci_bytes({}, []), MT.DOCKER_SCHEMA1)


# --- schema version --------------------------------------------------------------------


@pytest.mark.parametrize("version", [0, 3, -1, None])
@pytest.mark.parametrize("media_type", [MT.OCI_MANIFEST, MT.DOCKER_MANIFEST])
def test_schema_version_must_be_two(version: int | None, media_type: str) -> None:
    doc: dict[str, Any] = {
        "mediaType": media_type,
        "config": {"digest": FOREIGN_DIGEST, "size": 1},
        "layers": [],
    }
    if version is not None:
        doc["schemaVersion"] = version
    expected = 0 if version is None else version
    with pytest.raises(ManifestInvalid, match=f"unrecognized manifest schema version {expected}"):
        parse_manifest(json.dumps(doc).encode())


@pytest.mark.parametrize("media_type", [MT.OCI_INDEX, MT.DOCKER_MANIFEST_LIST])
def test_index_schema_version_must_be_two(media_type: str) -> None:
    doc = {"schemaVersion": 3, "mediaType": media_type, "manifests": []}
    with pytest.raises(ManifestInvalid, match="schema version 3"):
        parse_manifest(json.dumps(doc).encode())


# --- media types: api_test.go matrix and sniffing -------------------------------------------

CONFIG = {"mediaType": MT.DOCKER_CONFIG, "digest": FOREIGN_DIGEST, "size": 7}
UNKNOWN = "application/vnd.foo.manifest.v1+json"


def _image_body(payload_type: str) -> bytes:
    doc: dict[str, Any] = {"schemaVersion": 2, "config": CONFIG, "layers": []}
    if payload_type:
        doc["mediaType"] = payload_type
    return json.dumps(doc).encode()


@pytest.mark.parametrize(
    ("payload_type", "content_type", "expected"),
    [
        (MT.DOCKER_MANIFEST, MT.DOCKER_MANIFEST, Schema2Manifest),
        (MT.DOCKER_MANIFEST, None, Schema2Manifest),
        ("", MT.DOCKER_MANIFEST, "no mediaType in manifest"),
        (MT.OCI_MANIFEST, MT.OCI_MANIFEST, OCIManifest),
        (MT.OCI_MANIFEST, None, OCIManifest),
        ("", MT.OCI_MANIFEST, OCIManifest),
        ("", None, OCIManifest),
        (
            MT.DOCKER_MANIFEST,
            MT.OCI_MANIFEST,
            f"if present, mediaType in manifest should be '{MT.OCI_MANIFEST}' "
            f"not '{MT.DOCKER_MANIFEST}'",
        ),
        (
            MT.OCI_MANIFEST,
            MT.DOCKER_MANIFEST,
            f"mediaType in manifest should be '{MT.DOCKER_MANIFEST}' not '{MT.OCI_MANIFEST}'",
        ),
        (UNKNOWN, MT.DOCKER_MANIFEST, f"should be '{MT.DOCKER_MANIFEST}' not '{UNKNOWN}'"),
        (UNKNOWN, MT.OCI_MANIFEST, f"should be '{MT.OCI_MANIFEST}' not '{UNKNOWN}'"),
        (UNKNOWN, UNKNOWN, "unsupported manifest media type"),
        (UNKNOWN, None, "unrecognized manifest content type"),
        (MT.DOCKER_MANIFEST, "application/json", "unsupported manifest media type"),
    ],
)
def test_image_media_type_matrix(
    payload_type: str, content_type: str | None, expected: type[Manifest] | str
) -> None:
    body = _image_body(payload_type)
    if isinstance(expected, str):
        with pytest.raises(ManifestInvalid) as info:
            parse_manifest(body, content_type)
        assert expected in info.value.reason
    else:
        m = parse_manifest(body, content_type)
        assert type(m) is expected
        assert m.declared_media_type == payload_type


@pytest.mark.parametrize(
    ("payload_type", "content_type", "expected"),
    [
        (MT.DOCKER_MANIFEST_LIST, MT.DOCKER_MANIFEST_LIST, ManifestList),
        (MT.DOCKER_MANIFEST_LIST, None, ManifestList),
        ("", MT.DOCKER_MANIFEST_LIST, "no mediaType in manifest list"),
        (MT.OCI_INDEX, MT.OCI_INDEX, OCIIndex),
        (MT.OCI_INDEX, None, OCIIndex),
        ("", MT.OCI_INDEX, OCIIndex),
        ("", None, OCIIndex),
        (MT.DOCKER_MANIFEST_LIST, MT.OCI_INDEX, "if present, mediaType in image index should be"),
        (MT.OCI_INDEX, MT.DOCKER_MANIFEST_LIST, "mediaType in manifest list should be"),
        (MT.OCI_INDEX, MT.OCI_MANIFEST, "expected manifest but found index"),
        ("", MT.OCI_MANIFEST, "expected manifest but found index"),
    ],
)
def test_index_media_type_matrix(
    payload_type: str, content_type: str | None, expected: type[Manifest] | str
) -> None:
    body = index_bytes([{"digest": FOREIGN_DIGEST, "size": 1}], payload_type)
    if isinstance(expected, str):
        with pytest.raises(ManifestInvalid) as info:
            parse_manifest(body, content_type)
        assert expected in info.value.reason
    else:
        assert type(parse_manifest(body, content_type)) is expected


def test_image_body_sent_as_index_is_refused() -> None:
    with pytest.raises(ManifestInvalid, match="expected index but found manifest"):
        parse_manifest(_image_body(""), MT.OCI_INDEX)


def test_content_type_parameters_and_case_are_ignored() -> None:
    m = parse_manifest(_image_body(""), "Application/VND.oci.image.manifest.v1+json; charset=utf-8")
    assert m.media_type == MT.OCI_MANIFEST


def test_sniffing_rules() -> None:
    # mediaType field wins
    assert isinstance(parse_manifest(_image_body(MT.DOCKER_MANIFEST)), Schema2Manifest)
    # a "manifests" key means an index, even an empty one
    assert isinstance(parse_manifest(b'{"schemaVersion":2,"manifests":[]}'), OCIIndex)
    # a null "manifests" is absent (Go reads null as nil)
    sniffed = parse_manifest(b'{"schemaVersion":2,"manifests":null,"config":' + _cfg() + b"}")
    assert isinstance(sniffed, OCIManifest)
    # config/layers, or nothing at all: an OCI image manifest
    assert isinstance(parse_manifest(b'{"schemaVersion":2,"config":' + _cfg() + b"}"), OCIManifest)


def _cfg() -> bytes:
    return json.dumps(CONFIG).encode()


# --- payload, digest, limits -----------------------------------------------------------------


def test_exact_bytes_and_digest_are_kept() -> None:
    body = b'  {"schemaVersion":2,\n"config":' + _cfg() + b',"layers":[]}\n\n'
    m = parse_manifest(body)
    assert m.payload == body
    assert m.digest == Digest.from_bytes(body)
    assert m.size == len(body)
    assert m.descriptor() == Descriptor(digest=m.digest, size=len(body), media_type=MT.OCI_MANIFEST)
    assert parse_manifest(memoryview(bytearray(body))).payload == body


def test_four_mib_limit() -> None:
    head = b'{"schemaVersion":2,"config":' + _cfg() + b"}"
    exact = head + b" " * (MAX_MANIFEST_SIZE - len(head))
    assert len(parse_manifest(exact).payload) == MAX_MANIFEST_SIZE
    with pytest.raises(ManifestTooLarge) as info:
        parse_manifest(exact + b" ")
    assert info.value.size == MAX_MANIFEST_SIZE + 1
    assert info.value.limit == MAX_MANIFEST_SIZE
    assert isinstance(info.value, ManifestInvalid)


_LAYERS = b'{"schemaVersion": 2, "config": {"digest": "%s"}, "layers": ' % FOREIGN_DIGEST.encode()


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"", "invalid JSON"),
        (b"{", "invalid JSON"),
        (b"[]", "must be a JSON object"),
        (b'"x"', "must be a JSON object"),
        (b"null", "must be a JSON object"),
        (b"\xff\xfe{}", "not UTF-8"),
        (b"\xef\xbb\xbf{}", "invalid JSON"),
        (b'{"schemaVersion": NaN}', "not a JSON number"),
        (b'{"schemaVersion": 2.0}', "schemaVersion: expected an integer"),
        (b'{"schemaVersion": "2"}', "schemaVersion: expected an integer"),
        (b'{"schemaVersion": true}', "schemaVersion: expected an integer"),
        (b'{"schemaVersion": 2, "mediaType": 5}', "mediaType: expected a string"),
        (b"[" * 100000 + b"]" * 100000, "invalid JSON"),
        (b'{"schemaVersion": 2, "config": {}, "layers": []}', "config.digest: missing"),
        (b'{"schemaVersion": 2}', "config.digest: missing"),
        (b'{"schemaVersion": 2, "config": {"digest": "sha256:x"}}', "config.digest: invalid"),
        (_LAYERS + b"{}}", "layers: expected an array"),
        (_LAYERS + b"[1]}", r"layers[0]: expected a descriptor"),
        (b'{"schemaVersion": 2, "manifests": [{}]}', "manifests[0].digest: missing"),
        (b'{"schemaVersion": 2, "manifests": {}}', "manifests: expected an array"),
        (b'{"schemaVersion": 2, "config": []}', "config: expected a descriptor"),
    ],
)
def test_invalid_payloads(body: bytes, reason: str) -> None:
    with pytest.raises(ManifestInvalid) as info:
        parse_manifest(body)
    assert reason in info.value.reason


def _with_layer(**layer: Any) -> bytes:
    return json.dumps(
        {"schemaVersion": 2, "config": CONFIG, "layers": [{"digest": FOREIGN_DIGEST, **layer}]}
    ).encode()


@pytest.mark.parametrize(
    ("layer", "reason"),
    [
        ({"size": -1}, "layers[0].size: must be >= 0"),
        ({"size": 1.5}, "layers[0].size: expected an integer"),
        ({"size": "1"}, "layers[0].size: expected an integer"),
        ({"size": 1 << 63}, "does not fit in 64 bits"),
        ({"mediaType": ["x"]}, "layers[0].mediaType: expected a string"),
        ({"urls": "https://x"}, "layers[0].urls: expected an array"),
        ({"urls": [1]}, "layers[0].urls[0]: expected a string"),
        ({"annotations": []}, "layers[0].annotations: expected an object"),
        ({"annotations": {"a": 1}}, "layers[0].annotations['a']: expected a string"),
        ({"platform": "linux"}, "layers[0].platform: expected an object"),
        ({"platform": {"os": 1}}, "layers[0].platform.os: expected a string"),
        ({"platform": {"os.features": "x"}}, "layers[0].platform.os.features: expected an array"),
        ({"artifactType": 1}, "layers[0].artifactType: expected a string"),
        ({"digest": 7}, "layers[0].digest: expected a string"),
        ({"digest": None}, "layers[0].digest: missing"),
        ({"digest": "sha256:" + "A" * 64}, "layers[0].digest"),
        ({"digest": "sha256:abc"}, "layers[0].digest"),
        ({"digest": "md5:" + "a" * 32}, "unsupported digest algorithm"),
    ],
)
def test_invalid_descriptor_fields(layer: dict[str, Any], reason: str) -> None:
    with pytest.raises(ManifestInvalid) as info:
        parse_manifest(_with_layer(**layer))
    assert reason in info.value.reason


def test_missing_size_reads_as_zero_and_other_algorithms_parse() -> None:
    m = parse_manifest(_with_layer(digest="sha512:" + "b" * 128))
    assert m.layers[0].size == 0
    assert m.layers[0].digest.algorithm == "sha512"


def test_unknown_fields_are_ignored() -> None:
    body = json.dumps(
        {"schemaVersion": 2, "config": dict(CONFIG, extra={"x": [1]}), "whatever": None}
    ).encode()
    assert parse_manifest(body).config == Descriptor(
        digest=FOREIGN_DIGEST, size=7, media_type=MT.DOCKER_CONFIG
    )


def test_invalid_subject_and_annotations() -> None:
    with pytest.raises(ManifestInvalid, match=r"subject\.digest"):
        parse_manifest(oci_bytes(CONFIG, [], subject={"digest": "nope"}))
    with pytest.raises(ManifestInvalid, match="annotations"):
        parse_manifest(oci_bytes(CONFIG, [], annotations={"a": None}))
    with pytest.raises(ManifestInvalid, match="artifactType"):
        parse_manifest(oci_bytes(CONFIG, [], artifactType=3))


# --- subject, artifactType, referrer descriptors -------------------------------------------


def test_referrer_descriptor_artifact_type_falls_back_to_config() -> None:
    subject = {"mediaType": MT.OCI_MANIFEST, "digest": FOREIGN_DIGEST, "size": 10}
    sig_config = {"mediaType": "application/vnd.example.sig.config", "digest": FOREIGN_DIGEST}
    m = parse_manifest(oci_bytes(sig_config, [], subject=subject, annotations={"k": "v"}))
    desc = referrer_descriptor(m)
    assert desc == Descriptor(
        digest=m.digest,
        size=len(m.payload),
        media_type=MT.OCI_MANIFEST,
        annotations={"k": "v"},
        artifact_type="application/vnd.example.sig.config",
    )
    explicit = parse_manifest(
        oci_bytes(sig_config, [], subject=subject, artifactType="application/vnd.example.sbom")
    )
    assert referrer_descriptor(explicit).artifact_type == "application/vnd.example.sbom"
    assert referrer_descriptor(explicit).annotations is None


def test_index_with_subject_and_artifact_type() -> None:
    doc = {
        "schemaVersion": 2,
        "mediaType": MT.OCI_INDEX,
        "artifactType": "application/vnd.example.bundle",
        "manifests": [],
        "subject": {"mediaType": MT.OCI_MANIFEST, "digest": FOREIGN_DIGEST, "size": 3},
        "annotations": {"org.opencontainers.image.created": "2026-11-27T18:38:05Z"},
    }
    m = parse_manifest(json.dumps(doc).encode())
    assert m.subject is not None and m.subject.digest == FOREIGN_DIGEST
    assert referrer_descriptor(m).artifact_type == "application/vnd.example.bundle"
    assert dict(m.annotations) == doc["annotations"]
    no_type = parse_manifest(json.dumps({"schemaVersion": 2, "manifests": []}).encode())
    assert referrer_descriptor(no_type).artifact_type == ""


def test_schema2_has_no_subject() -> None:
    body = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": MT.DOCKER_MANIFEST,
            "config": CONFIG,
            "layers": [],
            "subject": {"digest": FOREIGN_DIGEST, "size": 1},
        }
    ).encode()
    m = parse_manifest(body)
    assert m.subject is None
    assert referrer_descriptor(m).artifact_type == MT.DOCKER_CONFIG


def test_manifest_values_are_frozen_and_hashable() -> None:
    m = parse_manifest(_image_body(""))
    with pytest.raises(AttributeError):
        m.media_type = "x"  # type: ignore[misc]
    with pytest.raises(TypeError):
        m.annotations["x"] = "y"  # type: ignore[index]
    assert m == parse_manifest(_image_body(""))
    assert len({m, parse_manifest(_image_body(""))}) == 1
    assert "payload" not in repr(m)


# --- properties ----------------------------------------------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(1 << 70), max_value=1 << 70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)

KEYS = st.sampled_from(
    [
        "schemaVersion",
        "mediaType",
        "config",
        "layers",
        "manifests",
        "subject",
        "artifactType",
        "annotations",
        "digest",
        "size",
        "urls",
        "platform",
    ]
)
manifest_like = st.recursive(
    st.sampled_from([2, 1, 0, FOREIGN_DIGEST, MT.OCI_MANIFEST, MT.OCI_INDEX, MT.DOCKER_MANIFEST])
    | json_values,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(KEYS, children, max_size=6),
    max_leaves=25,
)
content_types = st.none() | st.sampled_from(sorted(mediatypes.MANIFEST_TYPES)) | st.text(max_size=8)


def _parse_or_invalid(body: bytes, media_type: str | None) -> None:
    try:
        m = parse_manifest(body, media_type)
    except ManifestInvalid as exc:
        assert exc.reason
        return
    assert m.payload == bytes(body)
    assert m.media_type in mediatypes.MANIFEST_TYPES
    assert m.schema_version == 2
    referrer_descriptor(m)


@settings(max_examples=300, deadline=None)
@given(doc=json_values, media_type=content_types)
def test_random_json_never_crashes(doc: Any, media_type: str | None) -> None:
    _parse_or_invalid(json.dumps(doc).encode(), media_type)


@settings(max_examples=300, deadline=None)
@given(doc=manifest_like, media_type=content_types)
def test_manifest_shaped_json_never_crashes(doc: Any, media_type: str | None) -> None:
    _parse_or_invalid(json.dumps(doc).encode(), media_type)


@settings(max_examples=200, deadline=None)
@given(body=st.binary(max_size=200), media_type=content_types)
def test_random_bytes_never_crash(body: bytes, media_type: str | None) -> None:
    _parse_or_invalid(body, media_type)


@settings(max_examples=200, deadline=None)
@given(doc=manifest_like)
def test_verification_of_anything_parsed_raises_only_documented_errors(doc: Any) -> None:
    try:
        m = parse_manifest(json.dumps(doc).encode())
    except ManifestInvalid:
        return
    with contextlib.suppress(ManifestInvalid, ManifestBlobUnknown):
        FakeRepo().verify(m, urls_allow=[re.compile("")])
