"""The API's error codes and the mapping from ocistore's exceptions to them.

Every error response is ``{"errors": [{"code", "message", "detail"}]}`` (OCI
Distribution Spec v1.1, "Error Codes"), with the status distribution gives the
code (``registry/api/errcode/register.go``). Handlers raise :class:`ApiError`
or let a :class:`~ocistore.errors.RegistryError` escape; :func:`api_errors`
turns either into the list the app sends, so the mapping lives in one place.
"""

from __future__ import annotations

import errno
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ocistore import errors as E

__all__ = [
    "CODES",
    "MAX_LISTED_BLOBS",
    "ApiError",
    "ErrorCode",
    "api_errors",
    "digest_invalid",
    "error_body",
]

MAX_LISTED_BLOBS = 100
"""MANIFEST_BLOB_UNKNOWN errors in one answer: the first unknown blobs in the manifest's
order, then one more whose detail counts the rest (``{"omitted": n}``), so that a
manifest naming thousands of missing blobs gets a small answer."""


@dataclass(frozen=True, slots=True)
class ErrorCode:
    """One registered code: its wire value, default message and HTTP status."""

    value: str
    message: str
    status: int


_TABLE = (
    # The spec's fourteen.
    ErrorCode("BLOB_UNKNOWN", "blob unknown to registry", 404),
    ErrorCode("BLOB_UPLOAD_INVALID", "blob upload invalid", 404),
    ErrorCode("BLOB_UPLOAD_UNKNOWN", "blob upload unknown to registry", 404),
    ErrorCode("DIGEST_INVALID", "provided digest did not match uploaded content", 400),
    ErrorCode("MANIFEST_BLOB_UNKNOWN", "blob unknown to registry", 400),
    ErrorCode("MANIFEST_INVALID", "manifest invalid", 400),
    ErrorCode("MANIFEST_UNKNOWN", "manifest unknown", 404),
    ErrorCode("NAME_INVALID", "invalid repository name", 400),
    ErrorCode("NAME_UNKNOWN", "repository name not known to registry", 404),
    ErrorCode("SIZE_INVALID", "provided length did not match content length", 400),
    ErrorCode("UNAUTHORIZED", "authentication required", 401),
    ErrorCode("DENIED", "requested access to the resource is denied", 403),
    ErrorCode("UNSUPPORTED", "The operation is unsupported.", 405),
    ErrorCode("TOOMANYREQUESTS", "too many requests", 429),
    # distribution's own.
    ErrorCode("RANGE_INVALID", "invalid content range", 416),
    ErrorCode("PAGINATION_NUMBER_INVALID", "invalid number of results requested", 400),
    ErrorCode("TAG_INVALID", "manifest tag did not match URI", 400),
    ErrorCode("UNAVAILABLE", "service unavailable", 503),
    ErrorCode("UNKNOWN", "unknown error", 500),
)
CODES: dict[str, ErrorCode] = {c.value: c for c in _TABLE}


class ApiError(Exception):
    """An error response: a code, an optional detail, and optionally another status/headers.

    ``status`` overrides the code's own status where the spec asks for another
    one (413 for a body over the limit, 507 for a full disk); ``headers`` are
    sent with the error (a 416 carries the upload's current ``Range``).
    """

    def __init__(
        self,
        code: str,
        detail: Any = None,
        *,
        message: str | None = None,
        status: int | None = None,
        headers: Sequence[tuple[str, str]] = (),
    ) -> None:
        self.code = CODES[code]
        self.detail = detail
        self.message = message or self.code.message
        self.status = status or self.code.status
        self.headers = list(headers)
        super().__init__(f"{self.code.value}: {self.message}" + (f" ({detail})" if detail else ""))

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"code": self.code.value, "message": self.message}
        if self.detail is not None:
            out["detail"] = self.detail
        return out


def _no_space(exc: BaseException) -> bool:
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, OSError) and cur.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        cur = cur.__cause__ or cur.__context__
    return False


def api_errors(exc: BaseException) -> list[ApiError]:
    """The API errors that report ``exc`` (one per unknown blob for MANIFEST_BLOB_UNKNOWN)."""
    if isinstance(exc, ApiError):
        return [exc]
    if _no_space(exc):
        return [
            ApiError(
                "UNAVAILABLE",
                "no space left on device",
                message="insufficient storage",
                status=507,
            )
        ]
    if isinstance(exc, E.ManifestBlobUnknown):
        return _blobs_unknown(exc.digests)
    return [_one(exc)]


def _blobs_unknown(digests: Sequence[object]) -> list[ApiError]:
    """One MANIFEST_BLOB_UNKNOWN per unknown blob, at most :data:`MAX_LISTED_BLOBS` of them."""
    listed = [
        ApiError("MANIFEST_BLOB_UNKNOWN", {"digest": str(d)}) for d in digests[:MAX_LISTED_BLOBS]
    ]
    omitted = len(digests) - len(listed)
    if omitted > 0:
        listed.append(
            ApiError(
                "MANIFEST_BLOB_UNKNOWN",
                {"omitted": omitted},
                message=f"and {omitted} more unknown blobs, not listed",
            )
        )
    return listed or [ApiError("MANIFEST_BLOB_UNKNOWN")]


def digest_invalid(exc: E.DigestError) -> ApiError:
    """DIGEST_INVALID for a digest that is malformed or of an unsupported algorithm.

    The code's default message is about content that did not hash to the digest;
    a digest that cannot even be read says so instead.
    """
    if isinstance(exc, E.BlobDigestUnsupported):
        message = f"digest {exc.value!r} is of an unsupported algorithm {exc.algorithm!r}"
    elif isinstance(exc, E.DigestInvalid):
        message = f"digest {exc.value!r} is malformed: {exc.reason}"
    else:
        message = f"digest is malformed: {exc}"
    return ApiError("DIGEST_INVALID", str(exc), message=message)


def _one(exc: BaseException) -> ApiError:
    """The flat mapping table, most specific classes first."""
    if isinstance(exc, E.DigestError):
        return digest_invalid(exc)
    if isinstance(exc, E.NameInvalid):
        return ApiError("NAME_INVALID", {"name": str(exc.name), "reason": exc.reason})
    if isinstance(exc, E.NameUnknown):
        return ApiError("NAME_UNKNOWN", {"name": exc.name})
    if isinstance(exc, E.TagInvalid):
        return ApiError("TAG_INVALID", {"tag": str(exc.tag), "reason": exc.reason})
    if isinstance(exc, E.TagUnknown):
        return ApiError("MANIFEST_UNKNOWN", {"tag": exc.tag})
    if isinstance(exc, E.BlobUnknown):
        return ApiError("BLOB_UNKNOWN", {"digest": str(exc.digest)})
    if isinstance(exc, E.BlobInvalidDigest):
        return ApiError("DIGEST_INVALID", {"digest": str(exc.digest), "reason": exc.reason})
    if isinstance(exc, E.BlobInvalidLength):
        return ApiError("SIZE_INVALID", {"reason": exc.reason})
    if isinstance(exc, E.BlobTooLarge):
        return ApiError("SIZE_INVALID", {"size": exc.size, "limit": exc.limit}, status=413)
    if isinstance(exc, E.BlobUploadUnknown | E.WriterClosed):
        return ApiError("BLOB_UPLOAD_UNKNOWN", {"uuid": exc.upload_id})
    if isinstance(exc, E.BlobUploadInvalid):
        return ApiError("BLOB_UPLOAD_INVALID", exc.reason)
    if isinstance(exc, E.ManifestUnknown):
        return ApiError("MANIFEST_UNKNOWN", {"name": exc.name, "reference": str(exc.reference)})
    if isinstance(exc, E.ManifestTooLarge):
        return ApiError("MANIFEST_INVALID", {"size": exc.size, "limit": exc.limit}, status=413)
    if isinstance(exc, E.ManifestInvalid):
        return ApiError("MANIFEST_INVALID", exc.reason)
    if isinstance(exc, E.Unsupported):
        return ApiError("UNSUPPORTED", exc.operation)
    if isinstance(exc, E.StorageUnavailable):
        return ApiError(
            "UNAVAILABLE",
            "storage backend unavailable, retry",
            status=503,
            headers=[("Retry-After", "1")],
        )
    return ApiError("UNKNOWN", str(exc) or type(exc).__name__)


def error_body(errs: Sequence[ApiError]) -> bytes:
    return json.dumps({"errors": [e.to_json() for e in errs]}, separators=(",", ":")).encode()
