"""Manifests: one handler per media type, parsing and reference verification.

- :func:`parse_manifest` (``parse.py``) picks the handler and checks the payload;
- handlers: :class:`OCIManifest` (``oci.py``), :class:`OCIIndex` and
  :class:`ManifestList` (``index.py``), :class:`Schema2Manifest` (``schema2.py``);
- :func:`verify_manifest` (``verify.py``) checks that what a manifest references exists;
- :func:`referrer_descriptor` (``base.py``) is what the referrers API lists.

Docker schema 1 is refused. The storage layer (``ocistore.storage.manifeststore``)
combines these with the repository's blob and manifest stores.
"""

from __future__ import annotations

from ocistore.manifest import mediatypes
from ocistore.manifest.base import MAX_MANIFEST_SIZE, Manifest, referrer_descriptor
from ocistore.manifest.index import ManifestList, OCIIndex
from ocistore.manifest.oci import OCIManifest
from ocistore.manifest.parse import HANDLERS, parse_manifest
from ocistore.manifest.schema2 import Schema2Manifest
from ocistore.manifest.verify import verify_manifest

__all__ = [
    "HANDLERS",
    "MAX_MANIFEST_SIZE",
    "Manifest",
    "ManifestList",
    "OCIIndex",
    "OCIManifest",
    "Schema2Manifest",
    "mediatypes",
    "parse_manifest",
    "referrer_descriptor",
    "verify_manifest",
]
