"""The one place that chooses between the native and the pure core.

- ``OCISTORE_NO_EXTENSIONS=1``: the pure core, always.
- ``OCISTORE_REQUIRE_EXTENSIONS=1``: failing to import the native core is an error.
- otherwise: the native core if it imports, else the pure one.

The pure core (``ocistore._core_py``) is the typed source of truth; its
``__all__`` lists every name a core exports, and the native package
(``ocistore._native``, built from ``native/*.pyx``) mirrors those names.
Callers use the core through this module's attributes at call time
(``_core.parse_digest(...)``) or capture them when an object is built, so the
test suite can switch cores with :func:`use` (anchors: multidict ``_compat.py``,
yarl ``_quoting.py``); they annotate with the protocols of
``ocistore._core_types``. Neither core imports anything above itself.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ocistore._core_py import (
        HASH_STATES as HASH_STATES,
    )
    from ocistore._core_py import (
        Sha256 as Sha256,
    )
    from ocistore._core_py import (
        Sha512 as Sha512,
    )
    from ocistore._core_py import (
        SharedCounter as SharedCounter,
    )
    from ocistore._core_py import (
        StatCache as StatCache,
    )
    from ocistore._core_py import (
        StatCacheScope as StatCacheScope,
    )
    from ocistore._core_py import (
        WriteBehind as WriteBehind,
    )
    from ocistore._core_py import (
        copy_hashed as copy_hashed,
    )
    from ocistore._core_py import (
        hash_file as hash_file,
    )
    from ocistore._core_py import (
        parse_digest as parse_digest,
    )
    from ocistore._core_py import (
        pread_nowait as pread_nowait,
    )
    from ocistore._core_py import (
        read_files as read_files,
    )
    from ocistore._core_py import (
        remove_paths as remove_paths,
    )
    from ocistore._core_py import (
        restore_hasher as restore_hasher,
    )
    from ocistore._core_py import (
        start_writeback as start_writeback,
    )
    from ocistore._core_py import (
        walk_files as walk_files,
    )

NO_EXTENSIONS = os.environ.get("OCISTORE_NO_EXTENSIONS") == "1"
REQUIRE_EXTENSIONS = os.environ.get("OCISTORE_REQUIRE_EXTENSIONS") == "1"

_MODULES = {"native": "ocistore._native", "pure": "ocistore._core_py"}


def load(name: str) -> ModuleType:
    """Import one core by name (``"native"`` or ``"pure"``) without selecting it."""
    try:
        module = _MODULES[name]
    except KeyError:
        raise ValueError(f"unknown core {name!r}; expected 'native' or 'pure'") from None
    return importlib.import_module(module)


def _default() -> str:
    if NO_EXTENSIONS:
        if REQUIRE_EXTENSIONS:
            raise ImportError(
                "OCISTORE_NO_EXTENSIONS=1 and OCISTORE_REQUIRE_EXTENSIONS=1 contradict each other"
            )
        return "pure"
    try:
        load("native")
    except ImportError as exc:
        if REQUIRE_EXTENSIONS:
            raise ImportError(
                f"OCISTORE_REQUIRE_EXTENSIONS=1 but the native core did not load: {exc}"
            ) from exc
        return "pure"
    return "native"


DEFAULT: str = _default()
BACKEND: str = DEFAULT


def use(name: str) -> ModuleType:
    """Make core ``name`` the active one (tests and benchmarks only)."""
    global BACKEND
    impl = load(name)
    pure = load("pure")
    missing = [n for n in pure.__all__ if not hasattr(impl, n)]
    if missing:
        raise ImportError(f"core {name!r} lacks {missing}")
    for n in pure.__all__:
        globals()[n] = getattr(impl, n)
    BACKEND = name
    return impl


use(DEFAULT)
