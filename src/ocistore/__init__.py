"""ocistore: a container-registry blob store with a native hashing core.

``ocistore.BACKEND`` tells which core is active: ``"native"`` (compiled from
``native/``) or ``"pure"``.
"""

from __future__ import annotations

from typing import Any

from ocistore import _core
from ocistore.descriptor import Descriptor
from ocistore.digest import Digest

__version__ = "0.1.0"

__all__ = ["BACKEND", "Descriptor", "Digest", "__version__"]


def __getattr__(name: str) -> Any:
    if name == "BACKEND":
        return _core.BACKEND
    raise AttributeError(f"module 'ocistore' has no attribute {name!r}")
