"""The :class:`Manifest` value every handler returns, and what a referrer looks like.

A manifest is kept as the exact bytes received (``payload``); its digest is the
sha256 of those bytes and never of a re-serialisation, so a client that computed the
digest itself finds it again. The parsed fields are read-only views for verification,
for the referrers index and for whatever must keep the referenced content
(``references()``).

The built-in handlers are subclasses whose classmethods ``from_document`` and
``verify`` make the class itself a :class:`~ocistore.manifest.handlers.ManifestHandler`;
a registered type may do the same (override ``from_document``, keep or override
``verify`` and ``references``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from ocistore.descriptor import Descriptor
from ocistore.digest import Digest
from ocistore.manifest import document
from ocistore.manifest.document import EMPTY_ANNOTATIONS
from ocistore.manifest.verify import VerifyContext, verify_references

#: distribution's ``maxManifestBodySize`` (4 MiB): larger payloads are refused.
MAX_MANIFEST_SIZE = 4 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Manifest:
    """A parsed manifest of a registered media type.

    ``media_type`` is the type the manifest was accepted as (explicit, declared in the
    payload or sniffed); ``declared_media_type`` is the payload's own ``mediaType``
    field ("" when absent, as OCI allows). ``references()`` lists what must exist in the
    repository before the manifest is accepted, and what it keeps alive.
    """

    media_type: str
    payload: bytes = field(repr=False)
    digest: Digest
    config: Descriptor | None = None
    layers: tuple[Descriptor, ...] = ()
    manifests: tuple[Descriptor, ...] = ()
    subject: Descriptor | None = None
    artifact_type: str = ""
    annotations: Mapping[str, str] = field(default_factory=lambda: EMPTY_ANNOTATIONS)
    declared_media_type: str = ""
    schema_version: int = 2

    #: True for image indexes and manifest lists (children are manifests, not blobs).
    is_index: ClassVar[bool] = False

    def __hash__(self) -> int:
        return hash((type(self), self.digest))

    def references(self) -> tuple[Descriptor, ...]:
        """What must exist for this manifest: config and layers, or the children."""
        if self.is_index:
            return self.manifests
        head = (self.config,) if self.config is not None else ()
        return head + self.layers

    @property
    def size(self) -> int:
        return len(self.payload)

    def descriptor(self) -> Descriptor:
        """This manifest as a plain descriptor (media type, digest, size)."""
        return Descriptor(digest=self.digest, size=len(self.payload), media_type=self.media_type)

    @classmethod
    def from_document(cls, doc: dict[str, Any], payload: bytes) -> Manifest:
        """Build the handler's manifest from the decoded ``doc`` (each handler overrides)."""
        raise NotImplementedError(f"{cls.__name__} is not a manifest handler")

    @classmethod
    def verify(cls, manifest: Manifest, ctx: VerifyContext) -> None:
        """Raise unless ``manifest``'s references exist (default: every reference, no URLs).

        :func:`~ocistore.manifest.verify.verify_references`; the built-in handlers
        override it with distribution's rules.
        """
        verify_references(manifest, ctx)


def referrer_descriptor(m: Manifest) -> Descriptor:
    """The descriptor the referrers API lists for ``m`` (OCI distribution-spec v1.1).

    ``artifactType`` is the manifest's own, else (image manifests only) its config's
    media type; annotations are the manifest's top-level annotations.
    """
    artifact_type = m.artifact_type
    if not artifact_type and not m.is_index and m.config is not None:
        artifact_type = m.config.media_type
    return Descriptor(
        digest=m.digest,
        size=len(m.payload),
        media_type=m.media_type,
        annotations=m.annotations or None,
        artifact_type=artifact_type,
    )


def manifest_fields(doc: dict[str, Any], *, image: bool) -> dict[str, Any]:
    """The fields every OCI-shaped handler reads: descriptors and annotations.

    ``image`` selects config + layers (image manifests) or manifests (indexes).
    """
    out: dict[str, Any] = {
        "annotations": document.get_annotations(doc, "annotations", ""),
        "artifact_type": document.get_str(doc, "artifactType", ""),
        "subject": document.get_descriptor(doc, "subject"),
    }
    if image:
        config = doc.get("config")
        # Go reads a missing config as the zero descriptor, whose empty digest fails.
        out["config"] = document.parse_descriptor(config if config is not None else {}, "config")
        out["layers"] = document.get_descriptors(doc, "layers")
    else:
        out["manifests"] = document.get_descriptors(doc, "manifests")
    return out
