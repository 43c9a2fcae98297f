"""Manifests: one handler per media type, parsing, reference verification and builders.

- :func:`register_manifest_type` (``handlers.py``) gives a media type its handler (a
  :class:`ManifestHandler`); the built-in types register the same way:
  :class:`OCIManifest` (``oci.py``), :class:`OCIIndex` and :class:`ManifestList`
  (``index.py``), :class:`Schema2Manifest` (``schema2.py``);
- :func:`parse_manifest` (``parse.py``) picks the handler and checks the payload;
- :func:`verify_manifest` checks, through the handler, that what a manifest
  references exists (the rules are in ``verify.py``);
- builders (``builders.py``) make manifests and indexes from content a repository holds;
- :func:`referrer_descriptor` (``base.py``) is what the referrers API lists.

Docker schema 1 is refused. The storage layer (``ocistore.storage.manifeststore``)
combines these with the repository's blob and manifest stores.
"""

from __future__ import annotations

from ocistore.manifest import mediatypes
from ocistore.manifest.base import MAX_MANIFEST_SIZE, Manifest, referrer_descriptor
from ocistore.manifest.builders import (
    BlobSource,
    ManifestListBuilder,
    ManifestSource,
    OCIIndexBuilder,
    OCIManifestBuilder,
    Schema2ManifestBuilder,
)
from ocistore.manifest.handlers import (
    HANDLERS,
    ManifestHandler,
    manifest_handler,
    register_manifest_type,
    unregister_manifest_type,
    verify_manifest,
)
from ocistore.manifest.index import ManifestList, OCIIndex
from ocistore.manifest.oci import OCIManifest
from ocistore.manifest.parse import parse_manifest
from ocistore.manifest.schema2 import Schema2Manifest
from ocistore.manifest.verify import VerifyContext

__all__ = [
    "HANDLERS",
    "MAX_MANIFEST_SIZE",
    "BlobSource",
    "Manifest",
    "ManifestHandler",
    "ManifestList",
    "ManifestListBuilder",
    "ManifestSource",
    "OCIIndex",
    "OCIIndexBuilder",
    "OCIManifest",
    "OCIManifestBuilder",
    "Schema2Manifest",
    "Schema2ManifestBuilder",
    "VerifyContext",
    "manifest_handler",
    "mediatypes",
    "parse_manifest",
    "referrer_descriptor",
    "register_manifest_type",
    "unregister_manifest_type",
    "verify_manifest",
]
