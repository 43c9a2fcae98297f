"""Builders: a manifest or an index made from content a repository already holds.

distribution's ``ManifestBuilder`` (``ocischema/builder.go``, ``schema2/builder.go``),
one class per built-in type, plus index builders::

    b = OCIManifestBuilder(repo.blobs, config_bytes, annotations={...})
    b.append_layer(layer_descriptor)          # as returned by blobs.put / a writer's commit
    repo.manifests.put(b.build(), tag="v1")

``build()`` checks before it writes anything: every layer the manifest's rules say
must be in the repository is there (else :class:`~ocistore.errors.ManifestBlobUnknown`
listing each missing digest), each given size matches the stored blob (else
:class:`~ocistore.errors.ManifestInvalid` naming the layer); a size left unknown
(``-1``) is filled in from the repository. Only then is the config stored, if the
repository lacks it. Index builders do the same for their children with the
repository's manifests (a child may be given as a Manifest, a Descriptor or a
digest; its media type and size come from the stored manifest when not given).

The result is the :class:`~ocistore.manifest.Manifest` parsed from the serialised
payload, ready for ``repo.manifests.put(manifest, tag=...)``, which verifies it
again with the registry's options (URL policy, index platforms). Arguments of the
wrong kind raise TypeError or ValueError when given, naming the value.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, ClassVar, Protocol

from ocistore.descriptor import Descriptor
from ocistore.digest import Digest, as_digest
from ocistore.errors import ManifestBlobUnknown, ManifestInvalid, ManifestUnknown
from ocistore.manifest import mediatypes
from ocistore.manifest.base import Manifest
from ocistore.manifest.parse import parse_manifest
from ocistore.manifest.verify import layer_must_exist

__all__ = [
    "BlobSource",
    "ManifestListBuilder",
    "ManifestSource",
    "OCIIndexBuilder",
    "OCIManifestBuilder",
    "Schema2ManifestBuilder",
]


class BlobSource(Protocol):
    """What an image builder needs of a repository's blobs (``repo.blobs`` is one)."""

    def stat_many(self, digests: Iterable[Digest | str]) -> Mapping[Digest, Descriptor]: ...

    def put(self, media_type: str, data: bytes) -> Descriptor: ...


class ManifestSource(Protocol):
    """What an index builder needs of a repository's manifests (``repo.manifests`` is one)."""

    def get(self, digest: Digest | str) -> Manifest: ...


def _encode(doc: Mapping[str, Any]) -> bytes:
    # distribution serialises built manifests with MarshalIndent("", "   ").
    return json.dumps(doc, indent=3, ensure_ascii=False).encode()


def _check_annotations(annotations: Mapping[str, str] | None, what: str) -> dict[str, str]:
    if annotations is None:
        return {}
    if not isinstance(annotations, Mapping):
        raise TypeError(f"{what} annotations must be a mapping, not {type(annotations).__name__}")
    for key, value in annotations.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise TypeError(f"{what} annotation {key!r}: {value!r}: keys and values must be str")
    return dict(annotations)


def _check_type_name(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a str, not {type(value).__name__}")
    if "/" not in value or value != value.strip() or not value.split("/", 1)[1]:
        raise ValueError(f"{what} {value!r}: expected a media type such as 'type/subtype'")
    return value


def _as_descriptor(ref: Manifest | Descriptor, what: str) -> Descriptor:
    if isinstance(ref, Manifest):
        return ref.descriptor()
    if not isinstance(ref, Descriptor):
        raise TypeError(f"{what} must be a Descriptor or a Manifest, not {type(ref).__name__}")
    return ref


class _ImageBuilder:
    """Config + layers; what the OCI and the schema 2 builders share."""

    _manifest_type: ClassVar[str]
    _oci: ClassVar[bool]

    def __init__(self, blobs: BlobSource, config: bytes, *, config_media_type: str) -> None:
        if not isinstance(config, bytes | bytearray | memoryview):
            raise TypeError(f"config must be bytes (the config blob), not {type(config).__name__}")
        self._blobs = blobs
        self._config = bytes(config)
        self._config_media_type = _check_type_name(config_media_type, "config_media_type")
        self._layers: list[Descriptor] = []

    def append_layer(self, layer: Descriptor) -> None:
        """Add a layer (a Descriptor with its media type; size -1 means "as stored")."""
        if not isinstance(layer, Descriptor):
            raise TypeError(f"layer must be a Descriptor, not {type(layer).__name__}")
        if not layer.media_type:
            raise ValueError(f"layer {layer.digest}: a layer descriptor needs a media type")
        self._layers.append(layer)

    def references(self) -> list[Descriptor]:
        """The layers appended so far, in order (the config is added by ``build``)."""
        return list(self._layers)

    def build(self) -> Manifest:
        """Check the layers, store the config if missing, return the manifest (module docstring)."""
        config_digest = Digest.from_bytes(self._config)
        found = self._blobs.stat_many([config_digest, *(layer.digest for layer in self._layers)])
        missing = [
            layer.digest
            for layer in self._layers
            if found.get(layer.digest) is None and layer_must_exist(layer, oci=self._oci)
        ]
        if missing:
            raise ManifestBlobUnknown(list(dict.fromkeys(missing)))
        layers = [
            _sized(layer, found.get(layer.digest), f"layers[{i}]")
            for i, layer in enumerate(self._layers)
        ]
        config = Descriptor(
            digest=config_digest, size=len(self._config), media_type=self._config_media_type
        )
        doc = self._document(config, layers)
        manifest = parse_manifest(_encode(doc), self._manifest_type)
        if found.get(config_digest) is None:
            self._blobs.put(self._config_media_type, self._config)
        return manifest

    def _document(self, config: Descriptor, layers: Sequence[Descriptor]) -> dict[str, Any]:
        raise NotImplementedError


def _sized(desc: Descriptor, stored: Descriptor | None, where: str) -> Descriptor:
    """``desc`` with the stored size filled in, or checked against it."""
    if stored is None:
        if desc.size < 0:
            raise ManifestInvalid(
                f"{where} ({desc.digest}): size unknown and the blob is not in the repository"
            )
        return desc
    if desc.size < 0:
        return desc.with_(size=stored.size)
    if desc.size != stored.size:
        raise ManifestInvalid(
            f"{where} ({desc.digest}): size {desc.size}, but the repository's blob "
            f"has {stored.size} bytes"
        )
    return desc


class _OCIFields:
    """What OCI manifests and indexes carry beside their references: subject,
    ``artifactType`` and annotations, in the order image-spec 1.1 lists them."""

    def _init_oci_fields(self, annotations: Mapping[str, str] | None, what: str) -> None:
        self._annotations = _check_annotations(annotations, what)
        self._subject: Descriptor | None = None
        self._artifact_type = ""

    def subject(self, subject: Descriptor | Manifest) -> None:
        """The manifest this one refers to (referrers API); it need not exist yet."""
        desc = _as_descriptor(subject, "subject")
        if not desc.media_type or desc.size < 0:
            raise ValueError(f"subject {desc.digest}: needs its media type and size")
        self._subject = Descriptor(digest=desc.digest, size=desc.size, media_type=desc.media_type)

    def artifact_type(self, artifact_type: str) -> None:
        """The ``artifactType`` (image-spec 1.1)."""
        self._artifact_type = _check_type_name(artifact_type, "artifact_type")

    def _oci_document(self, media_type: str, body: Mapping[str, Any]) -> dict[str, Any]:
        doc: dict[str, Any] = {"schemaVersion": 2, "mediaType": media_type}
        if self._artifact_type:
            doc["artifactType"] = self._artifact_type
        doc.update(body)
        if self._subject is not None:
            doc["subject"] = self._subject.to_json()
        if self._annotations:
            doc["annotations"] = self._annotations
        return doc


class OCIManifestBuilder(_OCIFields, _ImageBuilder):
    """Builds an OCI image manifest (also OCI 1.1 artifacts: set ``artifact_type``).

    ``config_media_type`` is the config blob's type (``application/vnd.oci.empty.v1+json``
    with ``config=b"{}"`` for an artifact, which then needs an artifact type).
    """

    _manifest_type = mediatypes.OCI_MANIFEST
    _oci = True

    def __init__(
        self,
        blobs: BlobSource,
        config: bytes,
        *,
        config_media_type: str = mediatypes.OCI_CONFIG,
        annotations: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(blobs, config, config_media_type=config_media_type)
        self._init_oci_fields(annotations, "manifest")

    def _document(self, config: Descriptor, layers: Sequence[Descriptor]) -> dict[str, Any]:
        if config.media_type == mediatypes.OCI_EMPTY and not self._artifact_type:
            raise ManifestInvalid(
                "artifactType: required when the config is the empty descriptor "
                f"({mediatypes.OCI_EMPTY})"
            )
        body = {"config": config.to_json(), "layers": [layer.to_json() for layer in layers]}
        return self._oci_document(mediatypes.OCI_MANIFEST, body)


class Schema2ManifestBuilder(_ImageBuilder):
    """Builds a Docker schema 2 image manifest (no subject, artifact type or annotations)."""

    _manifest_type = mediatypes.DOCKER_MANIFEST
    _oci = False

    def __init__(
        self,
        blobs: BlobSource,
        config: bytes,
        *,
        config_media_type: str = mediatypes.DOCKER_CONFIG,
    ) -> None:
        super().__init__(blobs, config, config_media_type=config_media_type)

    def _document(self, config: Descriptor, layers: Sequence[Descriptor]) -> dict[str, Any]:
        return {
            "schemaVersion": 2,
            "mediaType": mediatypes.DOCKER_MANIFEST,
            "config": config.to_json(),
            "layers": [layer.to_json() for layer in layers],
        }


class _IndexBuilder:
    """Children that must be manifests of the repository; what both index builders share."""

    _manifest_type: ClassVar[str]

    def __init__(self, manifests: ManifestSource) -> None:
        self._manifests = manifests
        self._children: list[Descriptor] = []

    def append_manifest(
        self,
        manifest: Manifest | Descriptor | Digest | str,
        *,
        platform: Mapping[str, Any] | None = None,
        annotations: Mapping[str, str] | None = None,
    ) -> None:
        """Add a child: a Manifest, a Descriptor or a digest, with its platform if any.

        A descriptor's media type and size may be left empty / -1: ``build`` takes
        them from the stored manifest.
        """
        if isinstance(manifest, Digest | str):
            desc = Descriptor(digest=as_digest(manifest))
        else:
            desc = _as_descriptor(manifest, "manifest")
        if platform is not None:
            desc = desc.with_(platform=self._check_platform(platform, desc.digest))
        else:
            self._check_platform(desc.platform, desc.digest)
        if annotations is not None:
            desc = desc.with_(annotations=_check_annotations(annotations, str(desc.digest)) or None)
        self._children.append(desc)

    def references(self) -> list[Descriptor]:
        """The children appended so far, in order."""
        return list(self._children)

    def _check_platform(
        self, platform: Mapping[str, Any] | None, digest: Digest
    ) -> Mapping[str, Any] | None:
        if platform is None:
            return None
        if not isinstance(platform, Mapping):
            raise TypeError(f"{digest}: platform must be a mapping, not {type(platform).__name__}")
        for key in ("architecture", "os"):
            if not isinstance(platform.get(key), str) or not platform[key]:
                raise ValueError(f"{digest}: platform {dict(platform)!r} needs a str {key!r}")
        return dict(platform)

    def build(self) -> Manifest:
        """Check that every child is a manifest of the repository, return the index."""
        children: list[Descriptor] = []
        missing: list[Digest] = []
        for i, child in enumerate(self._children):
            try:
                stored = self._manifests.get(child.digest)
            except ManifestUnknown:
                missing.append(child.digest)
                continue
            children.append(_matched(child, stored, f"manifests[{i}]"))
        if missing:
            raise ManifestBlobUnknown(list(dict.fromkeys(missing)))
        return parse_manifest(_encode(self._document(children)), self._manifest_type)

    def _document(self, children: Sequence[Descriptor]) -> dict[str, Any]:
        raise NotImplementedError


def _matched(child: Descriptor, stored: Manifest, where: str) -> Descriptor:
    """``child`` with media type and size from ``stored``, or checked against them."""
    if child.media_type and child.media_type != stored.media_type:
        raise ManifestInvalid(
            f"{where} ({child.digest}): media type {child.media_type!r}, but the stored "
            f"manifest is {stored.media_type!r}"
        )
    if child.size >= 0 and child.size != stored.size:
        raise ManifestInvalid(
            f"{where} ({child.digest}): size {child.size}, but the stored manifest "
            f"has {stored.size} bytes"
        )
    return child.with_(media_type=stored.media_type, size=stored.size)


class OCIIndexBuilder(_OCIFields, _IndexBuilder):
    """Builds an OCI image index (multi-platform images, or any set of manifests)."""

    _manifest_type = mediatypes.OCI_INDEX

    def __init__(
        self, manifests: ManifestSource, *, annotations: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(manifests)
        self._init_oci_fields(annotations, "index")

    def _document(self, children: Sequence[Descriptor]) -> dict[str, Any]:
        body = {"manifests": [child.to_json() for child in children]}
        return self._oci_document(mediatypes.OCI_INDEX, body)


class ManifestListBuilder(_IndexBuilder):
    """Builds a Docker manifest list; every child needs a platform (architecture and os)."""

    _manifest_type = mediatypes.DOCKER_MANIFEST_LIST

    def append_manifest(
        self,
        manifest: Manifest | Descriptor | Digest | str,
        *,
        platform: Mapping[str, Any] | None = None,
        annotations: Mapping[str, str] | None = None,
    ) -> None:
        """Add a child with its platform (required here: from ``platform`` or the descriptor)."""
        given = manifest.platform if isinstance(manifest, Descriptor) else None
        if platform is None and given is None:
            name = (
                manifest
                if isinstance(manifest, str | Digest)
                else _as_descriptor(manifest, "manifest").digest
            )
            raise ValueError(f"{name}: a manifest list entry needs a platform")
        super().append_manifest(manifest, platform=platform, annotations=annotations)

    def _document(self, children: Sequence[Descriptor]) -> dict[str, Any]:
        return {
            "schemaVersion": 2,
            "mediaType": mediatypes.DOCKER_MANIFEST_LIST,
            "manifests": [child.to_json() for child in children],
        }
