"""The exceptions ocistore raises, named after distribution's errors.

Every exception derives from :class:`RegistryError` and carries the fields of
its Go twin as attributes, so that a caller (or the HTTP layer) can map it to a
response without parsing messages.

Hierarchy::

    RegistryError
    ├─ DigestError
    │  ├─ DigestInvalid(value, reason)
    │  └─ BlobDigestUnsupported(value, algorithm)
    ├─ NameInvalid(name, reason)             also: NameUnknown(name)
    ├─ TagInvalid(tag, reason)               also: TagUnknown(tag)
    ├─ BlobError
    │  ├─ BlobUnknown(digest)
    │  ├─ BlobInvalidDigest(digest, reason, computed)
    │  ├─ BlobInvalidLength(reason, expected, actual)
    │  ├─ BlobTooLarge(size, limit)
    │  ├─ BlobMounted(digest, source)      (not an error: the mount succeeded)
    │  ├─ BlobUploadUnknown(upload_id)
    │  ├─ BlobUploadInvalid(reason)
    │  └─ WriterClosed(upload_id)
    ├─ ManifestError
    │  ├─ ManifestUnknown(name, reference)
    │  ├─ ManifestInvalid(reason)
    │  ├─ ManifestBlobUnknown(digests)
    │  └─ ManifestTooLarge(size, limit)
    ├─ Unsupported(operation)
    ├─ HashStateInvalid(reason)
    ├─ HashStateUnsupported(reason)
    ├─ FileTruncated(expected, size)      a file cut short while it was read (also an OSError)
    ├─ CacheError(reason)
    │  └─ CacheUnavailable(reason)       the cache's server cannot be reached
    └─ DriverError(path, driver)             never leaves the storage layer
       ├─ PathNotFound
       ├─ InvalidPath
       ├─ InvalidOffset(offset)
       └─ StorageUnavailable                retryable backend failure (503)

The classes the core raises (the digest and hash-state errors and their
bases) are defined in :mod:`ocistore._core_py.errors`, which imports nothing
above the core, and re-exported here.
"""

from __future__ import annotations

from collections.abc import Sequence

from ocistore._core_py.errors import BlobDigestUnsupported as BlobDigestUnsupported
from ocistore._core_py.errors import DigestError as DigestError
from ocistore._core_py.errors import DigestInvalid as DigestInvalid
from ocistore._core_py.errors import FileTruncated as FileTruncated
from ocistore._core_py.errors import HashStateInvalid as HashStateInvalid
from ocistore._core_py.errors import HashStateUnsupported as HashStateUnsupported
from ocistore._core_py.errors import RegistryError as RegistryError

# --- names and tags ------------------------------------------------------------


class NameInvalid(RegistryError, ValueError):
    """A repository name does not match distribution's grammar (ErrRepositoryNameInvalid)."""

    def __init__(self, name: object, reason: str) -> None:
        self.name = name
        self.reason = reason
        super().__init__(f"invalid repository name {name!r}: {reason}")


class NameUnknown(RegistryError, LookupError):
    """The repository does not exist (ErrRepositoryUnknown)."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"unknown repository {name!r}")


class TagInvalid(RegistryError, ValueError):
    def __init__(self, tag: object, reason: str) -> None:
        self.tag = tag
        self.reason = reason
        super().__init__(f"invalid tag {tag!r}: {reason}")


class TagUnknown(RegistryError, LookupError):
    """distribution: ErrTagUnknown."""

    def __init__(self, tag: str) -> None:
        self.tag = tag
        super().__init__(f"unknown tag {tag!r}")


# --- blobs ---------------------------------------------------------------------


class BlobError(RegistryError):
    pass


class BlobUnknown(BlobError, LookupError):
    def __init__(self, digest: object) -> None:
        self.digest = digest
        super().__init__(f"unknown blob {digest}")


class BlobInvalidDigest(BlobError, ValueError):
    """distribution: ErrBlobInvalidDigest{Digest, Reason}; ``computed`` is what the data hashed to."""

    def __init__(self, digest: object, reason: str, computed: object = None) -> None:
        self.digest = digest
        self.reason = reason
        self.computed = computed
        extra = f" (computed {computed})" if computed is not None else ""
        super().__init__(f"invalid digest for referenced layer {digest}: {reason}{extra}")


class BlobInvalidLength(BlobError, ValueError):
    def __init__(self, reason: str, expected: int | None = None, actual: int | None = None) -> None:
        self.reason = reason
        self.expected = expected
        self.actual = actual
        super().__init__(f"blob invalid length: {reason}")


class BlobTooLarge(BlobError, ValueError):
    def __init__(self, size: int, limit: int) -> None:
        self.size = size
        self.limit = limit
        super().__init__(f"blob of {size} bytes exceeds the limit of {limit} bytes")


class BlobMounted(BlobError):
    """Raised by ``create(mount=...)`` when the mount succeeded instead of an upload."""

    def __init__(self, digest: object, source: str, descriptor: object = None) -> None:
        self.digest = digest
        self.source = source
        self.descriptor = descriptor
        super().__init__(f"blob {digest} mounted from {source}")


class BlobUploadUnknown(BlobError, LookupError):
    def __init__(self, upload_id: str) -> None:
        self.upload_id = upload_id
        super().__init__(f"blob upload unknown: {upload_id!r}")


class BlobUploadInvalid(BlobError, ValueError):
    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"blob upload invalid: {reason}")


class WriterClosed(BlobError):
    def __init__(self, upload_id: str) -> None:
        self.upload_id = upload_id
        super().__init__(f"blob writer {upload_id!r} is closed")


# --- manifests -------------------------------------------------------------------


class ManifestError(RegistryError):
    pass


class ManifestUnknown(ManifestError, LookupError):
    """Covers distribution's ErrManifestUnknown (by tag) and ErrManifestUnknownRevision."""

    def __init__(self, name: str, reference: object) -> None:
        self.name = name
        self.reference = reference
        super().__init__(f"unknown manifest name={name} reference={reference}")


class ManifestInvalid(ManifestError, ValueError):
    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"manifest invalid: {reason}")


class ManifestBlobUnknown(ManifestError, LookupError):
    """Every digest the manifest references that the repository does not have."""

    def __init__(self, digests: Sequence[object]) -> None:
        self.digests = list(digests)
        listed = ", ".join(str(d) for d in self.digests)
        super().__init__(f"manifest references unknown blobs: {listed}")


class ManifestTooLarge(ManifestInvalid):
    def __init__(self, size: int, limit: int) -> None:
        self.size = size
        self.limit = limit
        super().__init__(f"manifest of {size} bytes exceeds the limit of {limit} bytes")


# --- other -------------------------------------------------------------------------


class Unsupported(RegistryError):
    """The operation is disabled or not implemented (distribution: ErrUnsupported)."""

    def __init__(self, operation: str) -> None:
        self.operation = operation
        super().__init__(f"unsupported operation: {operation}")


class CacheError(RegistryError):
    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"descriptor cache: {reason}")


class CacheUnavailable(CacheError):
    """The cache's server (Redis) cannot be reached; requests are answered from storage."""


# --- drivers (translated at the storage boundary) -------------------------------


class DriverError(RegistryError):
    def __init__(self, path: str, driver: str = "", detail: str = "") -> None:
        self.path = path
        self.driver = driver
        self.detail = detail
        super().__init__(self._message())

    def _message(self) -> str:
        return f"{self.driver}: {self.detail or 'driver error'}: {self.path}"


class StorageUnavailable(DriverError):
    """The storage backend failed in a way worth retrying (throttled, 5xx, timed out, unreachable).

    The server answers it as 503 UNAVAILABLE so that clients retry.
    """

    def _message(self) -> str:
        return f"{self.driver}: storage unavailable ({self.detail}): {self.path}"


class PathNotFound(DriverError, FileNotFoundError):
    def _message(self) -> str:
        return f"{self.driver}: path not found: {self.path}"


class InvalidPath(DriverError, ValueError):
    def _message(self) -> str:
        reason = f" ({self.detail})" if self.detail else ""
        return f"{self.driver}: invalid path: {self.path!r}{reason}"


class InvalidOffset(DriverError, ValueError):
    def __init__(self, path: str, offset: int, driver: str = "") -> None:
        self.offset = offset
        super().__init__(path, driver)

    def _message(self) -> str:
        return f"{self.driver}: invalid offset {self.offset} for path {self.path}"
