"""Resumable hashers: new ones by algorithm name, old ones from a stored state.

A hasher here is what hashlib's are (``update``, ``digest``, ``hexdigest``,
``copy``) plus ``marshal()``, which exports the state in Go's MarshalBinary
format, the bytes distribution keeps beside an upload (see
:class:`ocistore.storage.paths.UploadHashState`). ``restore_hasher`` turns such a
state back into a hasher, so an upload resumes in O(1) instead of reading
everything it received again.

Both functions use the core active at call time (``ocistore._core``): on the
native core states work; on the pure core ``marshal()`` and
``restore_hasher`` raise :class:`~ocistore.errors.HashStateUnsupported`
(after validating the state, so a malformed one is always
:class:`~ocistore.errors.HashStateInvalid`). Check :func:`hash_states_supported`
to know beforehand.

States come from storage: never trust them more than this module's parser
does, and never pickle hashers (they refuse).
"""

from __future__ import annotations

from typing import Any, Final

from ocistore import _core
from ocistore._core_types import Hasher
from ocistore.errors import BlobDigestUnsupported

__all__ = ["ALGORITHMS", "Hasher", "hash_states_supported", "new_hasher", "restore_hasher"]

ALGORITHMS: Final = ("sha256", "sha512")


def new_hasher(algorithm: str = "sha256") -> Hasher:
    """A fresh hasher for ``algorithm`` ("sha256" or "sha512") from the active core.

    Any other name raises :class:`BlobDigestUnsupported` (blake3 has no
    resumable state here; ``ocistore.digest.digester`` hashes it).
    """
    if algorithm == "sha256":
        return _core.Sha256()
    if algorithm == "sha512":
        return _core.Sha512()
    raise BlobDigestUnsupported(algorithm, algorithm)


def restore_hasher(state: Any) -> Hasher:
    """The hasher a Go MarshalBinary ``state`` describes; its magic names the algorithm.

    Raises :class:`HashStateInvalid` for a malformed state (wrong magic,
    length or count, data past the buffered bytes) on either core, and
    :class:`HashStateUnsupported` on the pure core for a valid one.
    """
    return _core.restore_hasher(state)


def hash_states_supported() -> bool:
    """Whether the active core can export and resume hash states."""
    return bool(_core.HASH_STATES)
