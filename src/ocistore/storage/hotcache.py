"""When a registry answers stats from the in-process stat cache, and what that cache fronts.

The core's stat cache (:class:`ocistore._core_types.StatCache`, an LRU kept
true by inotify, see ``ocistore._core_py.statcache``) sits in front of the configured
descriptor cache (LMDB or memory, whose hits are validated against the
driver) only when it can be trusted without asking the disk on every hit:

- the driver is exactly a :class:`~ocistore.driver.FilesystemDriver` (a
  subclass may change paths or behaviour the cache cannot know);
- the registry has a descriptor cache (``cache=None`` means "ask the driver");
- the root is on a local filesystem type (``/proc/self/mountinfo``): inotify
  reports changes made on this host only, so NFS, SMB, CephFS, FUSE and
  anything unknown keep the validated path, where another host's
  ``garbage-collect`` is seen on the next stat;
- inotify works (not Linux, or the per-user instance limit reached: the
  :class:`StatCache` cannot start).

Otherwise every stat goes through the validated path exactly as before.

The same cache also answers the tag -> digest resolution (:func:`front_links`):
a tag's ``current/link`` is read once and then served until inotify reports
that the file, or a directory above it, changed (the core's
:class:`~ocistore._core_types.LinkCacheScope`).

The cache knows no layout: this module hands it the templates of
:mod:`ocistore.storage.paths`, :class:`~ocistore.digest.Digest` as its key
type and :class:`~ocistore.errors.BlobUnknown` as the fallback's "absent".
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Iterable
from typing import TYPE_CHECKING, Final

from ocistore import _core
from ocistore.cache.base import BlobDescriptorCacheProvider, BlobDescriptorService
from ocistore.descriptor import Descriptor
from ocistore.digest import Digest, as_digest
from ocistore.driver.base import StorageDriver
from ocistore.driver.filesystem import FilesystemDriver
from ocistore.errors import BlobUnknown
from ocistore.storage import paths
from ocistore.storage.statter import read_link

if TYPE_CHECKING:
    from ocistore._core_types import LinkCacheScope, StatCache

__all__ = [
    "DEFAULT_SIZE",
    "LOCAL_FILESYSTEMS",
    "filesystem_type",
    "front",
    "front_linked",
    "front_links",
    "new_stat_cache",
    "open_stat_cache",
    "stat_many",
]

log = logging.getLogger("ocistore.storage")

DEFAULT_SIZE: Final = 16_384
"""Entries of the in-process stat cache per registry (every scope together)."""

LOCAL_FILESYSTEMS: Final = frozenset(
    {
        "btrfs",
        "bcachefs",
        "exfat",
        "ext2",
        "ext3",
        "ext4",
        "f2fs",
        "hfsplus",
        "jfs",
        "nilfs2",
        "ntfs3",
        "overlay",
        "ramfs",
        "reiserfs",
        "tmpfs",
        "vfat",
        "xfs",
        "zfs",
    }
)
"""Filesystem types whose every change on this host inotify reports (an allow list)."""

_MOUNTINFO: Final = "/proc/self/mountinfo"


def _unescape(field: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as ``\\ooo``."""
    if "\\" not in field:
        return field
    out, i = [], 0
    while i < len(field):
        code = field[i + 1 : i + 4]
        if field[i] == "\\" and len(code) == 3 and code.isdigit():
            out.append(chr(int(code, 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def filesystem_type(path: str, mountinfo: str = _MOUNTINFO) -> str | None:
    """The type of the filesystem holding ``path`` (``"ext4"``, ``"nfs4"`` ...), or None if unknown."""
    target = os.path.realpath(path)
    try:
        with open(mountinfo, encoding="utf-8", errors="surrogateescape") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    best, best_type = "", None
    for line in lines:
        head, sep, tail = line.partition(" - ")
        fields = head.split()
        if not sep or len(fields) < 5 or not tail:
            continue
        mount = _unescape(fields[4])
        inside = target == mount or target.startswith(mount.rstrip("/") + "/")
        if inside and len(mount) >= len(best):  # later lines stack on top of earlier ones
            best, best_type = mount, tail.split()[0]
    return best_type


def open_stat_cache(
    driver: StorageDriver, cache: BlobDescriptorCacheProvider | None, *, size: int
) -> StatCache | None:
    """The registry's in-process stat cache, or None when the validated path must serve (see above)."""
    if size <= 0 or cache is None or type(driver) is not FilesystemDriver:
        return None
    fstype = filesystem_type(driver.root)
    if fstype not in LOCAL_FILESYSTEMS:
        log.info(
            "stat cache off for %s: filesystem %s is not known to be local; "
            "every cache hit is validated",
            driver.root,
            fstype or "unknown",
        )
        return None
    counter = getattr(cache, "counter_path", None)
    try:
        stat_cache = new_stat_cache(driver.root, capacity=size, counter_path=counter)
    except OSError as exc:
        log.info("stat cache off for %s (%s); every cache hit is validated", driver.root, exc)
        return None
    return stat_cache


def new_stat_cache(
    root: str | os.PathLike[str],
    *,
    capacity: int = DEFAULT_SIZE,
    counter_path: str | os.PathLike[str] | None = None,
) -> StatCache:
    """A stat cache of the active core for the filesystem root ``root``, told the layout.

    Blob data is where :data:`~ocistore.storage.paths.BLOB_DATA_TEMPLATE`
    says, keys are :class:`~ocistore.digest.Digest` and fallbacks raise
    :class:`~ocistore.errors.BlobUnknown` for an absent blob. Raises
    ``OSError`` when inotify is not available.
    """
    cache: StatCache = _core.StatCache(
        root,
        paths.BLOB_DATA_TEMPLATE,
        key=Digest,
        missing=BlobUnknown,
        capacity=capacity,
        counter_path=counter_path,
    )
    return cache


def front(
    stat_cache: StatCache | None, fallback: BlobDescriptorService, *, scope: str = ""
) -> BlobDescriptorService:
    """``fallback`` behind the stat cache's ``scope``, or ``fallback`` itself without a stat cache."""
    if stat_cache is None:
        return fallback
    return stat_cache.scope(fallback, scope=scope)


def front_linked(
    stat_cache: StatCache | None,
    driver: StorageDriver,
    fallback: BlobDescriptorService,
    *,
    scope: str,
    root_path: str,
) -> BlobDescriptorService:
    """A repository's ``fallback`` behind the stat cache, whose hits check the link under ``root_path``.

    ``root_path`` is the driver path of the directory holding ``<alg>/<hex>/link``
    (inotify watches blob data only, so every repository-scoped hit stats its link).
    """
    if stat_cache is None or not isinstance(driver, FilesystemDriver):
        return fallback
    link = paths.link_template(driver.full_path(root_path))
    return stat_cache.scope(fallback, scope=scope, link=link)


def front_links(stat_cache: StatCache | None, driver: StorageDriver) -> LinkCacheScope | None:
    """Link files (a tag's ``current/link``) read through the stat cache; None without one.

    The scope's ``read(path)`` returns :func:`~ocistore.storage.statter.read_link`'s
    digest and raises what it raises (a missing or corrupt link is never cached).
    """
    if stat_cache is None or type(driver) is not FilesystemDriver:
        return None
    return stat_cache.links(functools.partial(read_link, driver), scope="links")


def stat_many(
    statter: BlobDescriptorService, digests: Iterable[Digest | str]
) -> dict[Digest, Descriptor]:
    """The descriptors of ``digests`` that exist (misses left out), batched when ``statter`` can."""
    many = getattr(statter, "stat_many", None)
    if many is not None:
        found: dict[Digest, Descriptor] = many(digests)
        return found
    out: dict[Digest, Descriptor] = {}
    for d in digests:
        dgst = as_digest(d)
        try:
            out[dgst] = statter.stat(dgst)
        except BlobUnknown:
            continue
    return out
