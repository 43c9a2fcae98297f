"""ocistore: a container-registry blob store with a native hashing core.

The design's public API is importable from here::

    from ocistore import Registry, Descriptor, Digest

``import ocistore`` selects the core (and fails as documented when
``OCISTORE_REQUIRE_EXTENSIONS=1`` cannot be met) but never loads the storage
layer or the server: :class:`Registry` and :class:`Repository` are imported
on first use (a module ``__getattr__``). ``ocistore.BACKEND`` tells which
core is active: ``"native"`` (compiled from ``native/``) or ``"pure"``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, Final

from ocistore import _core
from ocistore.descriptor import Descriptor
from ocistore.digest import Digest

if TYPE_CHECKING:
    from ocistore.storage.registry import Registry, Repository

__version__ = "0.1.0"

__all__ = ["BACKEND", "Descriptor", "Digest", "Registry", "Repository", "__version__"]

_LAZY: Final = {
    "Registry": "ocistore.storage.registry",
    "Repository": "ocistore.storage.registry",
}


def __getattr__(name: str) -> Any:
    if name == "BACKEND":
        return _core.BACKEND  # looked up each time: the tests switch cores
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'ocistore' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups do not come here
    return value


def __dir__() -> list[str]:
    return sorted({*__all__, *(n for n in globals() if n.startswith("__"))})
