"""The native core: compiled from ``native/*.pyx``; mirrors ``ocistore._core_py.__all__``.

Like the pure core it must never import anything of ocistore above the core
(only ``ocistore._core_py`` and itself) nor spell the storage tree.
"""

from ocistore._native._digest import parse_digest
from ocistore._native._hashing import (
    HASH_STATES,
    Sha256,
    Sha512,
    copy_hashed,
    hash_file,
    restore_hasher,
)
from ocistore._native._io import WriteBehind, start_writeback
from ocistore._native._readat import pread_nowait
from ocistore._native._statcache import SharedCounter, StatCache, StatCacheScope
from ocistore._native._walk import read_files, remove_paths, walk_files

__all__ = [
    "HASH_STATES",
    "Sha256",
    "Sha512",
    "SharedCounter",
    "StatCache",
    "StatCacheScope",
    "WriteBehind",
    "copy_hashed",
    "hash_file",
    "parse_digest",
    "pread_nowait",
    "read_files",
    "remove_paths",
    "restore_hasher",
    "start_writeback",
    "walk_files",
]
