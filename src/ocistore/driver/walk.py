"""Depth-first walk shared by the drivers (distribution's ``WalkFallback`` with a start hint).

A driver supplies one function, ``entries(dir_path)``, returning the
:class:`FileInfo` of a directory's direct children; this module orders them,
recurses, and skips what ``start_after`` says was already seen, without
descending into subtrees that lie wholly before it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from ocistore.driver.base import FileInfo
from ocistore.driver.pathcheck import walk_key
from ocistore.errors import PathNotFound

__all__ = ["Entries", "walk_tree"]

Entries = Callable[[str], list[FileInfo]]
"""Children of a directory (any order); raises PathNotFound when it is not a directory."""


def walk_tree(entries: Entries, path: str, start_after: str | None = None) -> Iterator[FileInfo]:
    """Yield every entry below ``path`` in walk order, after ``start_after`` if given.

    The children of ``path`` are read when this is called, so a missing
    ``path`` raises :class:`PathNotFound` here rather than mid-iteration.
    Subdirectories that vanish while walking are skipped, as distribution does.
    """
    hint = walk_key(start_after) if start_after is not None else None
    return _walk(entries, entries(path), hint)


def _walk(
    entries: Entries, children: list[FileInfo], hint: tuple[str, ...] | None
) -> Iterator[FileInfo]:
    for info in sorted(children, key=lambda i: i.path):
        if hint is not None:
            key = walk_key(info.path)
            if key <= hint:
                # Already seen, but the hint may lie inside this directory.
                if info.is_dir and hint[: len(key)] == key:
                    yield from _walk(entries, _children(entries, info.path), hint)
                continue
            hint = None  # everything from here on comes after the hint
        yield info
        if info.is_dir:
            yield from _walk(entries, _children(entries, info.path), None)


def _children(entries: Entries, path: str) -> list[FileInfo]:
    try:
        return entries(path)
    except PathNotFound:
        return []
