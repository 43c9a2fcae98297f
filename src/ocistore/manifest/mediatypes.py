"""Media type names the manifest handlers dispatch on.

Kept apart from the handlers so that the storage layer and the HTTP layer can
name a media type without importing a parser. Values are those of the OCI image
spec (``specs-go/v1/mediatype.go``) and of distribution's ``manifest/schema2``
and ``manifest/manifestlist`` packages.
"""

from __future__ import annotations

from typing import Final

# --- manifests ------------------------------------------------------------------------

OCI_MANIFEST: Final = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX: Final = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST: Final = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST: Final = "application/vnd.docker.distribution.manifest.list.v2+json"

#: Docker image manifest schema 1, unsigned and signed: refused (distribution 3 dropped them).
DOCKER_SCHEMA1: Final = "application/vnd.docker.distribution.manifest.v1+json"
DOCKER_SCHEMA1_SIGNED: Final = "application/vnd.docker.distribution.manifest.v1+prettyjws"
SCHEMA1_TYPES: Final = frozenset({DOCKER_SCHEMA1, DOCKER_SCHEMA1_SIGNED})

MANIFEST_TYPES: Final = frozenset({OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST})
INDEX_TYPES: Final = frozenset({OCI_INDEX, DOCKER_MANIFEST_LIST})

# --- configs ------------------------------------------------------------------------------

OCI_CONFIG: Final = "application/vnd.oci.image.config.v1+json"
OCI_EMPTY: Final = "application/vnd.oci.empty.v1+json"
DOCKER_CONFIG: Final = "application/vnd.docker.container.image.v1+json"

# --- layers ---------------------------------------------------------------------------------

OCI_LAYER: Final = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP: Final = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_ZSTD: Final = "application/vnd.oci.image.layer.v1.tar+zstd"
OCI_LAYER_NONDISTRIBUTABLE: Final = "application/vnd.oci.image.layer.nondistributable.v1.tar"
OCI_LAYER_NONDISTRIBUTABLE_GZIP: Final = (
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
)
OCI_LAYER_NONDISTRIBUTABLE_ZSTD: Final = (
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd"
)
DOCKER_LAYER: Final = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_LAYER_UNCOMPRESSED: Final = "application/vnd.docker.image.rootfs.diff.tar"
DOCKER_FOREIGN_LAYER: Final = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"

#: OCI layers whose ``urls`` are checked against the allow/deny patterns and that must
#: still exist in the repository (distribution's ocimanifesthandler: plain layers).
OCI_DISTRIBUTABLE_LAYERS: Final = frozenset({OCI_LAYER, OCI_LAYER_GZIP, OCI_LAYER_ZSTD})
#: OCI layers that need not exist in the repository when they carry ``urls``.
OCI_NONDISTRIBUTABLE_LAYERS: Final = frozenset(
    {OCI_LAYER_NONDISTRIBUTABLE, OCI_LAYER_NONDISTRIBUTABLE_GZIP, OCI_LAYER_NONDISTRIBUTABLE_ZSTD}
)


def normalize(media_type: str) -> str:
    """The bare, lower-case type of a Content-Type value (parameters dropped).

    Go's ``mime.ParseMediaType`` does the same before distribution looks a handler up,
    so ``application/vnd.oci.image.manifest.v1+json; charset=utf-8`` names the OCI
    manifest handler.
    """
    return media_type.split(";", 1)[0].strip().lower()
