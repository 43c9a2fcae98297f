"""Digests for the pure core: hashlib underneath, no exportable state.

``hashlib`` cannot export or import its internal state, so the pure core
cannot write or resume from hash states (``HASH_STATES`` is False): its
``marshal()`` raises :class:`HashStateUnsupported`, and :func:`restore_hasher`
validates the state (so malformed input is reported the same way on both
cores) and then raises :class:`HashStateUnsupported`. The storage layer
then falls back to distribution's behaviour: restart the hasher and read the
upload once more at commit.

Go's ``encoding.BinaryMarshaler`` format (crypto/sha256, crypto/sha512)::

    sha256: "sha\\x03" | h[8] as big-endian uint32 | block[64] | len as big-endian uint64  = 108 bytes
    sha512: "sha\\x07" | h[8] as big-endian uint64 | block[128] | len as big-endian uint64 = 204 bytes

``block`` holds the ``len % blocksize`` unprocessed bytes, zero padded. Go
itself checks only the magic and the length; ocistore also refuses a count
whose bit length overflows (``len >= 2**61``) and nonzero bytes past the
buffered ones, because Go never writes either and states come from storage.
The native core (``native/_hashing.pyx``) raises the same errors with the
same reasons, in the same order of checks.
"""

from __future__ import annotations

import hashlib
from typing import Any, Final, Protocol

from ocistore._core_py.errors import HashStateInvalid, HashStateUnsupported

HASH_STATES: Final = False

SHA256_MAGIC: Final = b"sha\x03"
SHA512_MAGIC: Final = b"sha\x07"
SHA256_STATE_SIZE: Final = 4 + 32 + 64 + 8
SHA512_STATE_SIZE: Final = 4 + 64 + 128 + 8
MAX_COUNT: Final = 1 << 61


class Hasher(Protocol):
    name: str
    digest_size: int
    block_size: int

    def update(self, data: Any, /) -> None: ...
    def copy(self) -> Hasher: ...
    def digest(self) -> bytes: ...
    def hexdigest(self) -> str: ...
    def marshal(self) -> bytes: ...


class _HashlibHasher:
    __slots__ = ("_h",)
    name: str = ""
    digest_size: int = 0
    block_size: int = 0

    def __init__(self, data: Any = b"", *, _h: Any = None) -> None:
        self._h = _h if _h is not None else hashlib.new(self.name)
        if data:
            self._h.update(data)

    def update(self, data: Any, /) -> None:
        self._h.update(data)

    def copy(self) -> _HashlibHasher:
        return type(self)(_h=self._h.copy())

    def digest(self) -> bytes:
        return bytes(self._h.digest())

    def hexdigest(self) -> str:
        return str(self._h.hexdigest())

    def marshal(self) -> bytes:
        raise HashStateUnsupported("the pure core cannot export a hash state (hashlib hides it)")

    @classmethod
    def unmarshal(cls, state: Any) -> Hasher:
        """Rebuild a hasher of this algorithm from a Go state (the pure core validates, then refuses)."""
        algorithm = check_state(state)
        if algorithm != cls.name:
            raise HashStateInvalid(f"expected a {cls.name} state, got a {algorithm} state")
        raise HashStateUnsupported(f"the pure core cannot resume a {algorithm} state")


class Sha256(_HashlibHasher):
    __slots__ = ()
    name = "sha256"
    digest_size = 32
    block_size = 64


class Sha512(_HashlibHasher):
    __slots__ = ()
    name = "sha512"
    digest_size = 64
    block_size = 128


def check_state(state: Any) -> str:
    """Validate a Go MarshalBinary state; return its algorithm. Raises HashStateInvalid."""
    if isinstance(state, str):
        raise HashStateInvalid("expected bytes, got str")
    try:
        raw = bytes(memoryview(state))
    except TypeError:
        raise HashStateInvalid(f"expected bytes, got {type(state).__name__}") from None
    magic = raw[:4]
    if magic == SHA256_MAGIC:
        size, block, algorithm = SHA256_STATE_SIZE, 64, "sha256"
    elif magic == SHA512_MAGIC:
        size, block, algorithm = SHA512_STATE_SIZE, 128, "sha512"
    else:
        raise HashStateInvalid(f"unknown magic {magic!r} (expected sha256 or sha512 state)")
    if len(raw) != size:
        raise HashStateInvalid(f"{algorithm} state must be {size} bytes, got {len(raw)}")
    count = int.from_bytes(raw[-8:], "big")
    if count >= MAX_COUNT:
        raise HashStateInvalid(f"{algorithm} state byte count {count} is out of range (>= 2**61)")
    tail = count % block
    buffered = raw[size - 8 - block : size - 8]
    if any(buffered[tail:]):
        raise HashStateInvalid(
            f"{algorithm} state has data past its {tail} buffered bytes (count {count})"
        )
    return algorithm


def restore_hasher(state: Any) -> Hasher:
    """Rebuild a hasher from a Go state (native core only; the pure core validates and refuses)."""
    algorithm = check_state(state)
    raise HashStateUnsupported(f"the pure core cannot resume a {algorithm} state")
