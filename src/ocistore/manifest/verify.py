"""Checking that a manifest's references exist before it is stored.

What distribution's handlers do in ``verifyManifest`` (``registry/storage``
``ocimanifesthandler.go``, ``schema2manifesthandler.go``, ``manifestlisthandler.go``),
as one function over two callables so that it needs no storage object:

Image manifests (OCI and schema 2): the config and every layer must exist in the
repository, with these exceptions for layers that live elsewhere:

- schema 2 foreign layers (``...rootfs.foreign.diff.tar.gzip``) need ``urls`` and are
  never looked up;
- OCI non-distributable layers with ``urls`` are not looked up (without ``urls`` they
  must exist);
- OCI plain layers may carry ``urls`` too; they are checked and the layer must still
  exist. (distribution lists tar and tar+gzip; ocistore adds the tar+zstd variants,
  which the image spec defines alongside.)

Each URL must parse, use http or https, have no fragment, match an allow pattern and
no deny pattern. With neither allow nor deny patterns nothing is allowed
(distribution's default: foreign URLs are refused unless configured); with only deny
patterns everything not denied is allowed. A reference whose media type is an image
manifest must also exist as a manifest.

Indexes and manifest lists: every child must exist as a manifest of the repository
(``validate_index_children``); with ``index_platforms`` only children whose platform
matches one of them (architecture and os) must exist.

Errors: invalid URLs raise :class:`~ocistore.errors.ManifestInvalid` naming each layer
and URL; otherwise every missing reference is listed, once, in one
:class:`~ocistore.errors.ManifestBlobUnknown`. Digests were already checked by
:func:`~ocistore.manifest.parse_manifest`. Blob existence is asked in one batch.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from urllib.parse import urlsplit

from ocistore.descriptor import Descriptor
from ocistore.digest import Digest
from ocistore.errors import ManifestBlobUnknown, ManifestInvalid
from ocistore.manifest import mediatypes
from ocistore.manifest.base import Manifest

StatBlobs = Callable[[Sequence[Digest]], Mapping[Digest, Descriptor | None]]
ManifestExists = Callable[[Digest], bool]

_CONTROL = re.compile(r"[\x00-\x20\x7f]")


def verify_manifest(
    m: Manifest,
    *,
    stat_blobs: StatBlobs,
    manifest_exists: ManifestExists,
    urls_allow: Sequence[re.Pattern[str]] | None = None,
    urls_deny: Sequence[re.Pattern[str]] | None = None,
    validate_index_children: bool = True,
    index_platforms: Sequence[Mapping[str, str]] | None = None,
) -> None:
    """Raise if ``m`` references something the repository lacks or a URL it refuses.

    ``stat_blobs`` receives every digest to look up in one call and maps each to its
    descriptor or None; ``manifest_exists`` tells whether a digest is a manifest of the
    repository.
    """
    if m.is_index:
        _verify_children(m, manifest_exists, validate_index_children, index_platforms)
        return
    policy = _URLPolicy(urls_allow, urls_deny)
    oci = m.media_type == mediatypes.OCI_MANIFEST
    bad_urls: list[str] = []
    must_exist: list[Digest] = []
    must_be_manifest: list[Digest] = []
    for desc in m.references():
        check_urls, stat = _layer_rule(desc, oci=oci)
        if check_urls:
            problems = policy.problems(desc)
            if problems:
                bad_urls.extend(problems)
                continue
        if stat:
            must_exist.append(desc.digest)
        if desc.media_type in (mediatypes.OCI_MANIFEST, mediatypes.DOCKER_MANIFEST):
            must_be_manifest.append(desc.digest)
    if bad_urls:
        raise ManifestInvalid("invalid URL on layer: " + "; ".join(bad_urls))
    wanted = list(dict.fromkeys(must_exist))
    found = stat_blobs(wanted) if wanted else {}
    missing = {d for d in must_be_manifest if not manifest_exists(d)}
    missing.update(d for d in wanted if found.get(d) is None)
    if missing:
        in_order = dict.fromkeys(r.digest for r in m.references() if r.digest in missing)
        raise ManifestBlobUnknown(list(in_order))


def _layer_rule(desc: Descriptor, *, oci: bool) -> tuple[bool, bool]:
    """(check the URLs?, look the blob up?) for one config or layer descriptor."""
    mt = desc.media_type
    if oci:
        if mt in mediatypes.OCI_DISTRIBUTABLE_LAYERS:
            return True, True
        if mt in mediatypes.OCI_NONDISTRIBUTABLE_LAYERS:
            return True, not desc.urls
        return False, True
    if mt == mediatypes.DOCKER_FOREIGN_LAYER:
        return True, False
    return False, True


class _URLPolicy:
    """distribution's URL rule for layers that may be fetched from elsewhere."""

    __slots__ = ("_allow", "_deny")

    def __init__(
        self,
        allow: Sequence[re.Pattern[str]] | None,
        deny: Sequence[re.Pattern[str]] | None,
    ) -> None:
        self._allow: tuple[re.Pattern[str], ...] | None = tuple(allow) if allow else None
        self._deny: tuple[re.Pattern[str], ...] = tuple(deny) if deny else ()
        if self._allow is None and not self._deny:
            # registry/handlers/app.go: "If Allow and Deny are empty, allow nothing."
            self._allow = ()

    def problems(self, desc: Descriptor) -> list[str]:
        if not desc.urls:
            if desc.media_type == mediatypes.DOCKER_FOREIGN_LAYER:
                return [f"{desc.digest}: missing URL on foreign layer"]
            return []
        out = []
        for url in desc.urls:
            reason = self._reason(url)
            if reason:
                out.append(f"{desc.digest}: {url!r} {reason}")
        return out

    def _reason(self, url: str) -> str:
        if _CONTROL.search(url):
            return "contains spaces or control characters"
        try:
            parts = urlsplit(url)
            parts.port  # noqa: B018 - raises ValueError on a malformed port
        except ValueError as exc:
            return f"does not parse ({exc})"
        if parts.scheme not in ("http", "https"):
            return "is not http or https"
        if parts.fragment:
            return "has a fragment"
        if self._allow is not None and not any(p.search(url) for p in self._allow):
            return "is not allowed (no allow pattern matches)"
        if any(p.search(url) for p in self._deny):
            return "is denied"
        return ""


def _verify_children(
    m: Manifest,
    manifest_exists: ManifestExists,
    validate: bool,
    platforms: Sequence[Mapping[str, str]] | None,
) -> None:
    if not validate:
        return
    missing = [
        child.digest
        for child in m.manifests
        if _platform_must_exist(child, platforms) and not manifest_exists(child.digest)
    ]
    if missing:
        raise ManifestBlobUnknown(list(dict.fromkeys(missing)))


def _platform_must_exist(child: Descriptor, platforms: Sequence[Mapping[str, str]] | None) -> bool:
    """distribution's ``platformMustExist``: no platform list means every child."""
    if not platforms:
        return True
    platform = child.platform or {}
    arch = platform.get("architecture", "")
    os_ = platform.get("os", "")
    return any(p.get("architecture", "") == arch and p.get("os", "") == os_ for p in platforms)
