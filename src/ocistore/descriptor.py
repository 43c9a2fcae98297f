"""The :class:`Descriptor`: what a blob or manifest is, as the OCI image spec describes it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from ocistore.digest import Digest, as_digest

OCTET_STREAM = "application/octet-stream"


@dataclass(frozen=True, slots=True)
class Descriptor:
    """A content descriptor (OCI image-spec ``descriptor.md``; distribution ``distribution.Descriptor``).

    ``digest`` accepts a :class:`Digest` or its string form and is always stored as a
    :class:`Digest`. ``size`` is -1 when unknown (a provisional descriptor).
    """

    digest: Digest
    size: int = -1
    media_type: str = ""
    urls: tuple[str, ...] = ()
    annotations: Mapping[str, str] | None = None
    platform: Mapping[str, Any] | None = None
    artifact_type: str = ""

    def __post_init__(self) -> None:
        if type(self.digest) is not Digest:
            object.__setattr__(self, "digest", as_digest(self.digest))
        if not isinstance(self.size, int) or isinstance(self.size, bool):
            raise TypeError(f"descriptor size must be an int, got {self.size!r}")
        if self.size < -1:
            raise ValueError(f"descriptor size must be >= 0 (or -1 for unknown), got {self.size}")
        if not isinstance(self.urls, tuple):
            object.__setattr__(self, "urls", tuple(self.urls))

    def with_(self, **changes: Any) -> Descriptor:
        """A copy with some fields replaced."""
        return replace(self, **changes)

    def to_json(self) -> dict[str, Any]:
        """The OCI JSON form (camelCase keys, empty fields left out)."""
        out: dict[str, Any] = {}
        if self.media_type:
            out["mediaType"] = self.media_type
        out["digest"] = str(self.digest)
        out["size"] = self.size
        if self.urls:
            out["urls"] = list(self.urls)
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        if self.platform:
            out["platform"] = dict(self.platform)
        if self.artifact_type:
            out["artifactType"] = self.artifact_type
        return out

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> Descriptor:
        """Parse an OCI descriptor object; raises ValueError/TypeError/DigestError on bad fields."""
        size = obj.get("size", -1)
        urls = obj.get("urls") or ()
        return cls(
            digest=obj["digest"],
            size=size,
            media_type=obj.get("mediaType", "") or "",
            urls=tuple(urls),
            annotations=obj.get("annotations"),
            platform=obj.get("platform"),
            artifact_type=obj.get("artifactType", "") or "",
        )
