"""The catalog: which repositories exist, in distribution's order (``registry/storage/catalog.go``).

A repository is a directory under ``repositories/`` that holds ``_manifests``
(distribution 3's marker) or ``_layers`` (distribution 2's), so a tree written by
either is listed as that version lists it; a directory with nothing but ``_uploads``
(a first push still in progress) is not a repository yet. Other ``_``-prefixed
directories are never entered, nor are names starting with ``.`` (temporary files).

Order is component-wise, as distribution's ``lessPath`` compares (``/`` sorts before
every other character): ``foo``, ``foo/d/in``, ``foo-bar/a``. The tree is visited in
exactly that order, a repository before the repositories nested in it, listing one
directory at a time and skipping every subtree that lies wholly before ``last``, so a
page costs the directories it covers, not the whole tree, and pages never skip or
repeat a name.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator
from typing import Final

from ocistore.driver.base import StorageDriver
from ocistore.errors import PathNotFound
from ocistore.storage import paths

__all__ = ["MARKERS", "all_repositories", "enumerate_repositories", "repositories"]

#: Children that make a directory a repository.
MARKERS: Final = paths.REPOSITORY_MARKERS


def repositories(driver: StorageDriver, n: int = 100, last: str | None = None) -> list[str]:
    """Up to ``n`` repository names that sort after ``last`` (all from the start if None)."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if n == 0:
        return []
    return list(itertools.islice(_names(driver, last or None), n))


def enumerate_repositories(driver: StorageDriver) -> Iterator[str]:
    """Every repository name, in catalog order (lazily: one directory listed at a time)."""
    return _names(driver, None)


_Lister = Callable[[tuple[str, ...]], "list[str] | None"]


def all_repositories(
    driver: StorageDriver,
    map_fn: Callable[[_Lister, list[tuple[str, ...]]], Iterable[list[str] | None]] = map,
) -> list[str]:
    """Every repository name, sorted as the catalog sorts them; one level of the tree at a time.

    The directories of a level are listed through ``map_fn`` (a thread pool's
    ``map`` lists them concurrently: the garbage collector's use), by the same
    rules as :func:`enumerate_repositories`.
    """
    root = paths.path_for(paths.RepositoriesRoot())

    def children(key: tuple[str, ...]) -> list[str] | None:
        try:
            return driver.list(f"{root}/{'/'.join(key)}" if key else root)
        except PathNotFound:
            return None

    found: list[tuple[str, ...]] = []
    level: list[tuple[str, ...]] = [()]
    while level:
        listed = list(map_fn(children, level))
        below: list[tuple[str, ...]] = []
        for key, names in zip(level, listed, strict=True):
            if names is None:
                continue  # a file, or removed since it was listed
            leaves = [n.rsplit("/", 1)[1] for n in names]
            if key and any(leaf in MARKERS for leaf in leaves):
                found.append(key)
            below += [(*key, leaf) for leaf in leaves if not leaf.startswith(("_", "."))]
        level = below
    return ["/".join(k) for k in sorted(found)]


def _names(driver: StorageDriver, last: str | None) -> Iterator[str]:
    root = paths.path_for(paths.RepositoriesRoot())
    try:
        children = driver.list(root)
    except PathNotFound:
        return iter(())
    after = tuple(last.split("/")) if last is not None else None
    return _visit(driver, root, (), children, after)


def _visit(
    driver: StorageDriver,
    root: str,
    prefix: tuple[str, ...],
    children: list[str],
    after: tuple[str, ...] | None,
) -> Iterator[str]:
    names = sorted(c.rsplit("/", 1)[1] for c in children)
    for name in names:
        if name.startswith(("_", ".")):
            continue
        key = (*prefix, name)
        if after is not None and key < after and after[: len(key)] != key:
            continue  # this subtree sorts wholly before ``last``
        try:
            grandchildren = driver.list(f"{root}/{'/'.join(key)}")
        except PathNotFound:
            continue  # a file, or removed since it was listed
        marked = any(g.rsplit("/", 1)[1] in MARKERS for g in grandchildren)
        if marked and (after is None or key > after):
            yield "/".join(key)
        yield from _visit(driver, root, key, grandchildren, after)
