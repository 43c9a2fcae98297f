"""Checking that a manifest's references exist before it is stored.

Each handler's ``verify(manifest, ctx)`` (see :mod:`ocistore.manifest.handlers`)
calls one of the rules below with a :class:`VerifyContext`: what it may ask of
the repository (two callables, so nothing here needs a storage object) and the
registry's options. The rules are distribution's ``verifyManifest``
(``registry/storage`` ``ocimanifesthandler.go``, ``schema2manifesthandler.go``,
``manifestlisthandler.go``):

:func:`verify_image` (OCI and schema 2 image manifests): the config and every
layer must exist in the repository, with these exceptions for layers that live
elsewhere:

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

:func:`verify_children` (indexes and manifest lists): every child must exist as a
manifest of the repository (``validate_index_children``); with ``index_platforms``
only children whose platform matches one of them (architecture and os) must exist.

:func:`verify_references` (the default of registered types): every reference must
exist, as a manifest for an index type, as a blob otherwise.

Errors: invalid URLs raise :class:`~ocistore.errors.ManifestInvalid` naming each layer
and URL; otherwise every missing reference is listed, once, in one
:class:`~ocistore.errors.ManifestBlobUnknown`. Digests were already checked by
:func:`~ocistore.manifest.parse_manifest`. Blob existence is asked in one batch.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from ocistore.descriptor import Descriptor
from ocistore.digest import Digest
from ocistore.errors import ManifestBlobUnknown, ManifestInvalid
from ocistore.manifest import mediatypes

if TYPE_CHECKING:
    from ocistore.manifest.base import Manifest

StatBlobs = Callable[[Sequence[Digest]], Mapping[Digest, Descriptor | None]]
ManifestExists = Callable[[Digest], bool]

_CONTROL = re.compile(r"[\x00-\x20\x7f]")


@dataclass(frozen=True, slots=True)
class VerifyContext:
    """What a handler's ``verify`` may ask of the repository, and the registry's options.

    ``stat_blobs`` receives every digest to look up in one call and maps each to its
    descriptor or None (or leaves it out); ``manifest_exists`` tells whether a digest
    is a manifest of the repository. The other fields are the registry's options.
    """

    stat_blobs: StatBlobs
    manifest_exists: ManifestExists
    urls_allow: Sequence[re.Pattern[str]] | None = None
    urls_deny: Sequence[re.Pattern[str]] | None = None
    validate_index_children: bool = True
    index_platforms: Sequence[Mapping[str, str]] | None = None

    def missing_blobs(self, digests: Sequence[Digest]) -> list[Digest]:
        """Those of ``digests`` the repository lacks as blobs, once each, in order (one batch)."""
        wanted = list(dict.fromkeys(digests))
        found = self.stat_blobs(wanted) if wanted else {}
        return [d for d in wanted if found.get(d) is None]


def verify_image(m: Manifest, ctx: VerifyContext, *, oci: bool) -> None:
    """The image-manifest rule: config and layers exist, layer URLs allowed (module docstring).

    ``oci`` selects the OCI layer rules (non-distributable layers), else schema 2's
    (foreign layers).
    """
    policy = _URLPolicy(ctx.urls_allow, ctx.urls_deny)
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
    missing = set(ctx.missing_blobs(must_exist))
    missing.update(d for d in must_be_manifest if not ctx.manifest_exists(d))
    _raise_missing(m, missing)


def verify_children(m: Manifest, ctx: VerifyContext) -> None:
    """The index rule: children exist as manifests (unless switched off or other platforms)."""
    if not ctx.validate_index_children:
        return
    platforms = ctx.index_platforms
    missing = [
        child.digest
        for child in m.manifests
        if _platform_must_exist(child, platforms) and not ctx.manifest_exists(child.digest)
    ]
    if missing:
        raise ManifestBlobUnknown(list(dict.fromkeys(missing)))


def verify_references(m: Manifest, ctx: VerifyContext) -> None:
    """The default rule of a registered type: every ``m.references()`` exists.

    As manifests of the repository for an index type (``is_index``), as blobs
    otherwise; URLs are not consulted (a handler with foreign layers writes its own
    ``verify``).
    """
    refs = [d.digest for d in m.references()]
    if m.is_index:
        missing = {d for d in refs if not ctx.manifest_exists(d)}
    else:
        missing = set(ctx.missing_blobs(refs))
    _raise_missing(m, missing)


def layer_must_exist(desc: Descriptor, *, oci: bool) -> bool:
    """Whether an image manifest's config or layer ``desc`` must be in the repository."""
    return _layer_rule(desc, oci=oci)[1]


def _raise_missing(m: Manifest, missing: set[Digest]) -> None:
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


def _platform_must_exist(child: Descriptor, platforms: Sequence[Mapping[str, str]] | None) -> bool:
    """distribution's ``platformMustExist``: no platform list means every child."""
    if not platforms:
        return True
    platform = child.platform or {}
    arch = platform.get("architecture", "")
    os_ = platform.get("os", "")
    return any(p.get("architecture", "") == arch and p.get("os", "") == os_ for p in platforms)
