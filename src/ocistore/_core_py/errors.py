"""The exceptions both cores raise, defined here so that the core imports nothing above it.

:mod:`ocistore.errors` re-exports every class under the same name and places
it in the one hierarchy users see (``__module__`` says ``ocistore.errors``, so
tracebacks and pickles name the public module). Nothing else belongs here.
"""

from __future__ import annotations

__all__ = [
    "BlobDigestUnsupported",
    "DigestError",
    "DigestInvalid",
    "FileTruncated",
    "HashStateInvalid",
    "HashStateUnsupported",
    "RegistryError",
]

_PUBLIC = "ocistore.errors"


class RegistryError(Exception):
    """Base of every error ocistore raises on purpose."""

    __module__ = _PUBLIC


class DigestError(RegistryError, ValueError):
    """A digest string was not acceptable."""

    __module__ = _PUBLIC


class DigestInvalid(DigestError):
    """The value is not a well-formed digest (distribution: ErrDigestInvalidFormat)."""

    __module__ = _PUBLIC

    def __init__(self, value: object, reason: str) -> None:
        self.value = value
        self.reason = reason
        super().__init__(f"invalid digest {value!r}: {reason}")


class BlobDigestUnsupported(DigestError):
    """Well formed, but an algorithm ocistore does not implement (ErrDigestUnsupported)."""

    __module__ = _PUBLIC

    def __init__(self, value: object, algorithm: str) -> None:
        self.value = value
        self.algorithm = algorithm
        super().__init__(f"unsupported digest algorithm {algorithm!r} in {value!r}")


class HashStateInvalid(RegistryError, ValueError):
    """A stored hash state is malformed (wrong length, magic or count)."""

    __module__ = _PUBLIC

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"invalid hash state: {reason}")


class HashStateUnsupported(RegistryError):
    """This core cannot export or import hash states (the pure core)."""

    __module__ = _PUBLIC

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"hash state unsupported: {reason}")


class FileTruncated(RegistryError, OSError):
    """A file ended before the range being read from it: it was cut short meanwhile.

    ``expected`` is where the range ends; ``size`` is the file's size once the
    shortfall was seen.
    """

    __module__ = _PUBLIC

    def __init__(self, expected: int, size: int) -> None:
        self.expected = expected
        self.size = size
        super().__init__(f"file ended before byte {expected}: it is {size} bytes now")
