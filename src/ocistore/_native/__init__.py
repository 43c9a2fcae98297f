"""The native core: compiled from ``native/*.pyx``; mirrors ``ocistore._core_py.__all__``."""

from ocistore._native._digest import blob_data_path, parse_digest
from ocistore._native._hashing import HASH_STATES, Sha256, Sha512, restore_hasher
from ocistore._native._io import WriteBehind, start_writeback
from ocistore._native._readat import pread_nowait
from ocistore._native._statcache import SharedCounter, StatCache, StatCacheScope

__all__ = [
    "HASH_STATES",
    "Sha256",
    "Sha512",
    "SharedCounter",
    "StatCache",
    "StatCacheScope",
    "WriteBehind",
    "blob_data_path",
    "parse_digest",
    "pread_nowait",
    "restore_hasher",
    "start_writeback",
]
