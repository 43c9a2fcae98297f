"""The core's API as protocols: what the layers above type against, whichever core is active.

``ocistore._core`` hands out the classes of the selected core; code above the
core annotates with these protocols, never with ``ocistore._core_py`` or
``ocistore._native`` classes, so that either core fits and neither leaks
upwards. The core itself must never import this module (it imports nothing
above ``ocistore._core_py``/``ocistore._native``); mypy checks that both
cores satisfy these protocols (the block at the end).

Values the stat cache holds are opaque to it (``Any``): the storage layer
passes its own key type and descriptors in and gets them back.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Protocol

__all__ = ["Hasher", "LinkCacheScope", "SharedCounter", "StatCache", "StatCacheScope"]


class Hasher(Protocol):
    """A resumable hasher: hashlib's interface plus ``marshal()`` (Go's MarshalBinary state)."""

    @property
    def name(self) -> str: ...
    @property
    def digest_size(self) -> int: ...
    @property
    def block_size(self) -> int: ...
    def update(self, data: Any, /) -> None: ...
    def copy(self) -> Hasher: ...
    def digest(self) -> bytes: ...
    def hexdigest(self) -> str: ...
    def marshal(self) -> bytes: ...


class SharedCounter(Protocol):
    """A 64-bit counter in a small file every process on the host maps."""

    @property
    def path(self) -> str: ...
    def value(self) -> int: ...
    def bump(self) -> int: ...
    def close(self) -> None: ...


class StatCacheScope(Protocol):
    """One scope of a :class:`StatCache`, in front of its fallback statter."""

    def stat(self, digest: str, /) -> Any: ...
    def stat_many(self, digests: Iterable[str], /) -> dict[Any, Any]: ...
    def set_descriptor(self, digest: str, desc: Any, /) -> None: ...
    def clear(self, digest: str, /) -> None: ...


class LinkCacheScope(Protocol):
    """Link files of a :class:`StatCache`'s root, read through a callable and kept true."""

    def read(self, path: str, /) -> Any: ...
    def forget(self, path: str, /) -> None: ...


class StatCache(Protocol):
    """The in-process stat cache of one filesystem root (see ``ocistore._core_py.statcache``)."""

    @property
    def root(self) -> str: ...
    @property
    def capacity(self) -> int: ...
    @property
    def watching(self) -> bool: ...
    def scope(
        self, fallback: Any, *, scope: str = "", link: str | None = None
    ) -> StatCacheScope: ...
    def links(self, read: Callable[[str], Any], *, scope: str = "links") -> LinkCacheScope: ...
    def clear(self) -> None: ...
    def stats(self) -> dict[str, int]: ...
    def __len__(self) -> int: ...
    def close(self) -> None: ...


if TYPE_CHECKING:  # both cores satisfy the protocols (checked by mypy, never run)
    from ocistore import _core_py, _native
    from ocistore._core_py.statcache import Fallback

    def _pure(
        c: _core_py.StatCache, s: _core_py.SharedCounter, h: _core_py.Sha256, f: Fallback
    ) -> None:
        _c: StatCache = c
        _s: SharedCounter = s
        _h: Hasher = h
        _x: StatCacheScope = c.scope(f)
        _l: LinkCacheScope = c.links(str)

    def _compiled(
        c: _native.StatCache, s: _native.SharedCounter, h: _native.Sha256, f: Fallback
    ) -> None:
        _c: StatCache = c
        _s: SharedCounter = s
        _h: Hasher = h
        _x: StatCacheScope = c.scope(f)
        _l: LinkCacheScope = c.links(str)
