"""Build the native core: every ``native/<name>.pyx`` becomes ``ocistore._native.<name>``.

Everything else about the package lives in pyproject.toml. If the compiler or
Cython is missing, the install still succeeds with the pure core (and says so);
``OCISTORE_REQUIRE_EXTENSIONS=1`` turns that into an error.
"""

from __future__ import annotations

import glob
import os
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

REQUIRE = os.environ.get("OCISTORE_REQUIRE_EXTENSIONS") == "1"
NO_EXT = os.environ.get("OCISTORE_NO_EXTENSIONS") == "1"

# C sources each extension links, beside its own .pyx.
C_SOURCES: dict[str, list[str]] = {
    "_hashing": [
        "native/sha256.c",
        "native/sha256_shani.c",
        "native/sha256_arm.c",
        "native/sha512.c",
        "native/sha512_avx.c",
        "native/filehash.c",
    ],
}


def _extensions() -> list[Extension]:
    if NO_EXT:
        return []
    extra = ["-O3"] if sys.platform != "win32" else []
    exts = []
    for pyx in sorted(glob.glob("native/*.pyx")):
        name = os.path.splitext(os.path.basename(pyx))[0]
        sources = [pyx] + [s for s in C_SOURCES.get(name, []) if os.path.exists(s)]
        exts.append(
            Extension(
                f"ocistore._native.{name}",
                sources,
                include_dirs=["native"],
                depends=sorted(glob.glob("native/*.h")),  # a header change rebuilds
                extra_compile_args=extra,
            )
        )
    if not exts:
        return []
    try:
        from Cython.Build import cythonize
    except ImportError:
        if REQUIRE:
            raise
        print("ocistore: Cython is not available; installing the pure core only", file=sys.stderr)
        return []
    try:
        return list(
            cythonize(
                exts,
                force=_directives_changed(),
                compiler_directives={
                    "language_level": "3",
                    "boundscheck": False,
                    "wraparound": False,
                    # Introspectable signatures for mypy.stubtest (make stubtest) and
                    # tests/test_core.py: binding (Cython 3's default) for functions and
                    # methods; a constructor (a slot) carries its signature as the first
                    # line of its docstring.
                    "binding": True,
                    # No module attributes the stubs would have to list: the doctest
                    # dict ``__test__`` and the ``__reduce_cython__`` pickling helpers
                    # (none of the core's objects can be pickled either way).
                    "autotestdict": False,
                    "embedsignature": True,
                    "embedsignature.format": "python",
                    "auto_pickle": False,
                },
                quiet=True,
            )
        )
    except Exception as exc:  # a .pyx that does not translate must not fail the install
        if REQUIRE:
            raise
        print(
            f"ocistore: WARNING: Cython failed ({exc}); the pure core will be used", file=sys.stderr
        )
        return []


def _directives_changed() -> bool:
    """Whether this file (the compiler directives) is newer than some generated C file.

    Cython regenerates C only when a .pyx is newer than its C; a changed
    directive must regenerate too, or an old build keeps the old behaviour.
    """
    here = os.path.getmtime(__file__)
    for pyx in glob.glob("native/*.pyx"):
        c = os.path.splitext(pyx)[0] + ".c"
        if os.path.exists(c) and os.path.getmtime(c) < here:
            return True
    return False


class OptionalBuildExt(build_ext):
    """Fall back to the pure core when an extension does not compile (pyyaml's approach)."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:  # compiler missing, headers missing...
            self._fallback(exc)

    def build_extension(self, ext: Extension) -> None:
        try:
            super().build_extension(ext)
        except Exception as exc:
            self._fallback(exc, ext.name)

    def _fallback(self, exc: Exception, name: str = "") -> None:
        if REQUIRE:
            raise
        msg = f"ocistore: WARNING: building the native core {name} failed ({exc}); the pure core will be used"
        print(msg, file=sys.stderr)
        self.warn(msg)


setup(ext_modules=_extensions(), cmdclass={"build_ext": OptionalBuildExt})
