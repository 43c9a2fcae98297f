"""Manifest type registration (``register_manifest_type``), through the library.

The built-in types are registered like any host's; a host's type (the bundle of
``custom_manifest_type``) is parsed, verified, stored, read back and listed as a
referrer; a type nobody registered is refused as before; registration refuses
what would break the table. The HTTP side (oras) is in
``tests/server/test_custom_manifest_types.py``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest

from custom_manifest_type import BUNDLE, Bundle, bundle_payload
from ocistore.descriptor import Descriptor
from ocistore.digest import Digest
from ocistore.errors import ManifestBlobUnknown, ManifestInvalid, ManifestUnknown, NameUnknown
from ocistore.manifest import (
    HANDLERS,
    Manifest,
    ManifestHandler,
    ManifestList,
    OCIIndex,
    OCIManifest,
    Schema2Manifest,
    VerifyContext,
    manifest_handler,
    mediatypes,
    parse_manifest,
    register_manifest_type,
    unregister_manifest_type,
)
from ocistore.storage import Registry

OTHER = "application/vnd.example.other.manifest.v1+json"
# the two types as regular expressions, for pytest.raises(match=...)
RE_BUNDLE = re.escape(BUNDLE)
RE_OTHER = re.escape(OTHER)


@pytest.fixture
def bundle_type() -> Iterator[str]:
    register_manifest_type(BUNDLE, Bundle)
    yield BUNDLE
    unregister_manifest_type(BUNDLE)


@pytest.fixture
def restore_handlers() -> Iterator[None]:
    """Put the table back as it was, whatever the test registered or removed."""
    saved = dict(HANDLERS)
    yield
    for media_type in list(HANDLERS):
        if media_type not in saved:
            unregister_manifest_type(media_type)
    for media_type, handler in saved.items():
        register_manifest_type(media_type, handler, replace=True)


def _parts(registry: Registry, repo_name: str = "host/bundles") -> list[Descriptor]:
    repo = registry.repository(repo_name)
    return [repo.blobs.put("application/octet-stream", f"part {i}".encode()) for i in range(2)]


# -- the table -------------------------------------------------------------------------


def test_builtin_types_are_registered_handlers() -> None:
    assert {t: HANDLERS[t] for t in mediatypes.MANIFEST_TYPES} == {
        mediatypes.OCI_MANIFEST: OCIManifest,
        mediatypes.OCI_INDEX: OCIIndex,
        mediatypes.DOCKER_MANIFEST: Schema2Manifest,
        mediatypes.DOCKER_MANIFEST_LIST: ManifestList,
    }
    assert manifest_handler("Application/VND.oci.image.index.v1+json; charset=utf-8") is OCIIndex
    assert manifest_handler(BUNDLE) is None


def test_registering_a_type_twice_is_refused(bundle_type: str) -> None:
    class Other(Bundle):
        __slots__ = ()

    with pytest.raises(ValueError, match=rf"{RE_BUNDLE}' already has a handler .*replace=True"):
        register_manifest_type(BUNDLE, Other)
    assert HANDLERS[BUNDLE] is Bundle
    with pytest.raises(ValueError, match="already has a handler"):
        register_manifest_type(mediatypes.OCI_MANIFEST, OCIManifest)


def test_replace_swaps_the_handler_and_returns_the_old_one(restore_handlers: None) -> None:
    class StrictOCI(OCIManifest):
        __slots__ = ()

        @classmethod
        def from_document(cls, doc: dict[str, Any], payload: bytes) -> Manifest:
            if not doc.get("annotations"):
                raise ManifestInvalid("annotations: this host requires them")
            return super().from_document(doc, payload)

    previous = register_manifest_type(mediatypes.OCI_MANIFEST, StrictOCI, replace=True)
    assert previous is OCIManifest
    body = json.dumps({"schemaVersion": 2, "config": _config_json(), "layers": []}).encode()
    with pytest.raises(ManifestInvalid, match="this host requires them"):
        parse_manifest(body)  # sniffed payloads go to the registered handler too
    assert register_manifest_type(mediatypes.OCI_MANIFEST, previous, replace=True) is StrictOCI
    assert isinstance(parse_manifest(body), OCIManifest)
    assert register_manifest_type(OTHER, Bundle, replace=True) is None  # new type: nothing replaced


def _config_json() -> dict[str, Any]:
    return {"mediaType": mediatypes.OCI_CONFIG, "digest": str(Digest.from_bytes(b"{}")), "size": 2}


@pytest.mark.parametrize(
    ("media_type", "error", "match"),
    [
        ("Application/Vnd.Example+json", ValueError, "lower-case type/subtype"),
        ("application/vnd.example+json; v=1", ValueError, "without parameters"),
        ("vnd.example", ValueError, "'vnd.example': expected"),
        ("", ValueError, "'': expected"),
        (mediatypes.DOCKER_SCHEMA1_SIGNED, ValueError, "schema 1 is refused"),
        (b"application/x", TypeError, "must be a str, not bytes"),
    ],
)
def test_bad_media_types_are_refused(media_type: Any, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        register_manifest_type(media_type, Bundle)
    assert media_type not in HANDLERS


def test_a_handler_without_verify_is_refused() -> None:
    class ParseOnly:
        def from_document(self, doc: dict[str, Any], payload: bytes) -> Manifest:
            raise AssertionError("never called")

    with pytest.raises(TypeError, match=r"ParseOnly object .* has no verify\(\) method"):
        register_manifest_type(OTHER, ParseOnly())  # type: ignore[arg-type]
    assert OTHER not in HANDLERS


def test_unregistering(restore_handlers: None) -> None:
    with pytest.raises(LookupError, match=f"'{RE_OTHER}' has no handler"):
        unregister_manifest_type(OTHER)
    assert unregister_manifest_type(mediatypes.DOCKER_MANIFEST) is Schema2Manifest
    body = json.dumps({"schemaVersion": 2, "mediaType": mediatypes.DOCKER_MANIFEST}).encode()
    with pytest.raises(ManifestInvalid, match="unrecognized manifest content type"):
        parse_manifest(body)


# -- a host's type through the library -------------------------------------------------


def test_custom_type_put_get_and_referrers(plain_registry: Registry, bundle_type: str) -> None:
    repo = plain_registry.repository("host/bundles")
    parts = _parts(plain_registry)
    target = repo.manifests.put(bundle_payload(parts), media_type=BUNDLE, tag="b1")
    assert repo.tags.resolve("b1") == target

    got = repo.manifests.get(target)
    assert type(got) is Bundle
    assert (got.media_type, got.digest) == (BUNDLE, target)
    assert [d.digest for d in got.references()] == [p.digest for p in parts]

    subject = got.descriptor()
    referrer = bundle_payload(parts[:1], subject=subject)
    dgst = repo.manifests.put(referrer)  # the type declared in the payload selects the handler
    assert [r.digest for r in repo.manifests.referrers(target)] == [dgst]
    assert repo.manifests.referrers(target)[0].media_type == BUNDLE


def test_custom_type_with_a_missing_part_is_refused(
    plain_registry: Registry, bundle_type: str
) -> None:
    repo = plain_registry.repository("host/bundles")
    absent = Descriptor(digest=Digest.from_bytes(b"not pushed"), size=10)
    payload = bundle_payload([*_parts(plain_registry), absent])
    with pytest.raises(ManifestBlobUnknown) as info:
        repo.manifests.put(payload, media_type=BUNDLE, tag="b1")
    assert info.value.digests == [absent.digest]
    assert not repo.manifests.exists(Digest.from_bytes(payload))
    with pytest.raises(NameUnknown):  # no tag was written: not even the tags directory
        repo.tags.all()


def test_custom_type_bad_payloads(plain_registry: Registry, bundle_type: str) -> None:
    parts = _parts(plain_registry)
    with pytest.raises(ManifestInvalid, match=f"no mediaType in manifest .'{RE_BUNDLE}' manifests"):
        parse_manifest(bundle_payload(parts, media_type=None), BUNDLE)
    with pytest.raises(ManifestInvalid, match=f"should be '{RE_BUNDLE}' not '{RE_OTHER}'"):
        parse_manifest(bundle_payload(parts, media_type=OTHER), BUNDLE)
    with pytest.raises(ManifestInvalid, match="parts: a bundle needs at least one part"):
        parse_manifest(bundle_payload([]))
    with pytest.raises(ManifestInvalid, match=r"parts\[0\]\.digest"):
        parse_manifest(
            json.dumps({"mediaType": BUNDLE, "schemaVersion": 2, "parts": [{}]}).encode()
        )


def test_unregistered_type_is_still_refused(plain_registry: Registry) -> None:
    repo = plain_registry.repository("host/bundles")
    payload = bundle_payload(_parts(plain_registry))
    with pytest.raises(ManifestInvalid, match=f"unsupported manifest media type '{RE_BUNDLE}'"):
        repo.manifests.put(payload, media_type=BUNDLE)
    with pytest.raises(ManifestInvalid, match=f"unrecognized manifest content type '{RE_BUNDLE}'"):
        repo.manifests.put(payload)
    assert not repo.manifests.exists(Digest.from_bytes(payload))


def test_reading_back_after_unregistering_names_the_type(
    plain_registry: Registry, restore_handlers: None
) -> None:
    register_manifest_type(BUNDLE, Bundle)
    repo = plain_registry.repository("host/bundles")
    dgst = repo.manifests.put(bundle_payload(_parts(plain_registry)))
    unregister_manifest_type(BUNDLE)
    with pytest.raises(ManifestInvalid, match=f"unrecognized manifest content type '{RE_BUNDLE}'"):
        repo.manifests.get(dgst)
    with pytest.raises(ManifestUnknown):
        repo.manifests.get(Digest.from_bytes(b"never stored"))


# -- handlers that are not Manifest subclasses, and faulty ones ---------------------------


class Recorder:
    """A handler object (not a Manifest subclass) that records the contexts it verified in."""

    def __init__(self, media_type: str) -> None:
        self.media_type = media_type
        self.contexts: list[VerifyContext] = []
        self.existed: list[bool] = []  # whether the manifest existed when it was verified

    def from_document(self, doc: dict[str, Any], payload: bytes) -> Manifest:
        return Manifest(
            media_type=self.media_type, payload=payload, digest=Digest.from_bytes(payload)
        )

    def verify(self, manifest: Manifest, ctx: VerifyContext) -> None:
        self.contexts.append(ctx)
        self.existed.append(ctx.manifest_exists(manifest.digest))


def test_a_handler_object_verifies_with_the_registry_options(
    driver: Any, restore_handlers: None
) -> None:
    recorder = Recorder(OTHER)
    handler: ManifestHandler = recorder
    register_manifest_type(OTHER, handler)
    registry = Registry(driver, validate_index_children=False)
    repo = registry.repository("host/objects")
    dgst = repo.manifests.put(json.dumps({"mediaType": OTHER}).encode())
    assert [c.validate_index_children for c in recorder.contexts] == [False]
    assert recorder.existed == [False]  # verified before anything was written
    assert repo.manifests.exists(dgst)
    assert repo.manifests.get(dgst).media_type == OTHER


@pytest.mark.parametrize(
    ("fault", "error", "match"),
    [
        ("raises", ManifestInvalid, f"{RE_OTHER}: 'parts'"),
        ("wrong-type", TypeError, f"returned a manifest of type '{RE_BUNDLE}'"),
        ("wrong-digest", TypeError, "payload or digest is not the payload's"),
        ("not-a-manifest", TypeError, "returned dict, not a Manifest"),
    ],
)
def test_faulty_handlers(
    restore_handlers: None, fault: str, error: type[Exception], match: str
) -> None:
    class Faulty(Recorder):
        def from_document(self, doc: dict[str, Any], payload: bytes) -> Any:
            if fault == "raises":
                return doc["parts"]  # KeyError: a handler bug on bad input
            if fault == "wrong-type":
                return Manifest(
                    media_type=BUNDLE, payload=payload, digest=Digest.from_bytes(payload)
                )
            if fault == "wrong-digest":
                return Manifest(media_type=OTHER, payload=payload, digest=Digest.from_bytes(b"x"))
            return {}

    register_manifest_type(OTHER, Faulty(OTHER))
    with pytest.raises(error, match=match):
        parse_manifest(json.dumps({"mediaType": OTHER}).encode())


def test_schema_version_1_is_refused_except_for_a_host_type(restore_handlers: None) -> None:
    body = json.dumps({"schemaVersion": 1, "mediaType": OTHER}).encode()
    with pytest.raises(ManifestInvalid, match="schema 1 is unsupported"):
        parse_manifest(body)  # OTHER is not registered yet: read as Docker schema 1
    register_manifest_type(OTHER, Recorder(OTHER))
    assert parse_manifest(body).media_type == OTHER  # a host's type numbers its own versions
    with pytest.raises(ManifestInvalid, match="schema 1 is unsupported"):
        parse_manifest(json.dumps({"schemaVersion": 1}).encode())
    with pytest.raises(ManifestInvalid, match="schema 1 is unsupported"):
        parse_manifest(body, mediatypes.DOCKER_SCHEMA1)
