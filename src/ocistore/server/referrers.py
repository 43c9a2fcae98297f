"""``/v2/<name>/referrers/<digest>``: the manifests whose ``subject`` is a digest.

The answer is always an OCI image index (200, never 404, as the spec asks of
a registry that supports the API), listing what the storage layer's
referrers index holds plus what older clients recorded with the *referrers
tag schema*: a tag ``<alg>-<hex>`` (hex cut to 64 characters) holding an
index of referrers. ``?artifactType=`` filters, and the answer then says so
with ``OCI-Filters-Applied: artifactType``.
"""

from __future__ import annotations

import json
import logging

from ocistore.descriptor import Descriptor
from ocistore.digest import Digest
from ocistore.errors import NameUnknown, RegistryError
from ocistore.manifest import mediatypes
from ocistore.server.context import Ctx
from ocistore.server.http import Response
from ocistore.storage.registry import Repository

__all__ = ["fallback_tag", "get_referrers"]

log = logging.getLogger("ocistore.server")


def fallback_tag(subject: Digest) -> str:
    """The referrers tag schema's tag for ``subject`` (``sha256-<hex>``)."""
    return f"{subject.algorithm}-{subject.encoded[:64]}"


def _tag_schema_referrers(repo: Repository, subject: Digest) -> list[Descriptor]:
    """Descriptors from the fallback tag's index, if there is one (else none)."""
    try:
        target = repo.tags.get(fallback_tag(subject)).digest
        m = repo.manifests.get(target)
    except (NameUnknown, RegistryError, ValueError):
        return []
    if m.media_type not in mediatypes.INDEX_TYPES:
        return []
    return list(m.manifests)


def _artifact_type(desc: Descriptor) -> str:
    return desc.artifact_type


async def get_referrers(ctx: Ctx) -> Response:
    subject = Digest.parse(ctx.route.digest)
    artifact_type = ctx.req.arg("artifactType")
    repo = ctx.repo
    try:
        found = repo.manifests.referrers(subject)
    except NameUnknown:
        found = []
    seen = {d.digest for d in found}
    for desc in _tag_schema_referrers(repo, subject):
        if desc.digest not in seen:
            seen.add(desc.digest)
            found.append(desc)
    headers = [("Content-Type", mediatypes.OCI_INDEX)]
    if artifact_type:
        found = [d for d in found if _artifact_type(d) == artifact_type]
        headers.append(("OCI-Filters-Applied", "artifactType"))
    body = {
        "schemaVersion": 2,
        "mediaType": mediatypes.OCI_INDEX,
        "manifests": [d.to_json() for d in found],
    }
    return Response(200, headers, body=json.dumps(body, separators=(",", ":")).encode())
