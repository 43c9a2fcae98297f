"""The path rule every driver enforces before touching storage.

distribution accepts ``^(/[A-Za-z0-9._-]+)+$``, which lets ``.`` and ``..``
through as components; on a filesystem those would step outside the root, so
ocistore refuses them as well. The root ``/`` is a valid argument only where a
directory is meant (``stat``, ``list``, ``walk``).
"""

from __future__ import annotations

import re
from typing import Final

from ocistore.errors import InvalidPath

__all__ = ["PATH_PATTERN", "check_path", "walk_key"]

PATH_PATTERN: Final = re.compile(r"(?:/[A-Za-z0-9._-]+)+")


def check_path(path: object, driver: str, *, allow_root: bool = False) -> str:
    """Return ``path`` if it is an acceptable driver path, else raise InvalidPath with the reason."""
    if not isinstance(path, str):
        raise InvalidPath(repr(path), driver, f"expected str, got {type(path).__name__}")
    if path == "/":
        if allow_root:
            return path
        raise InvalidPath(path, driver, "the root is not a file")
    if PATH_PATTERN.fullmatch(path) is None:
        raise InvalidPath(path, driver, "must match ^(/[A-Za-z0-9._-]+)+$")
    if "/." in path:  # only then can a component be "." or ".."
        for part in path.split("/")[1:]:
            if part in (".", ".."):
                raise InvalidPath(path, driver, f"component {part!r} could leave the root")
    return path


def walk_key(path: str) -> tuple[str, ...]:
    """Position of ``path`` in walk order: depth first, each directory's children sorted.

    Comparing component tuples puts a directory before its contents and its
    contents before its next sibling (``/a`` < ``/a/z`` < ``/a-b``), which is
    the order distribution's walk yields; the root is ``()``.
    """
    return tuple(path.split("/")[1:]) if path != "/" else ()
