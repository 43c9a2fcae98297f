"""The pure-Python core: the typed source of truth that ``native/`` mirrors.

``__all__`` is the contract: the native package must export every name here
(pinned by tests/test_core.py).
"""

from ocistore._core_py.counter import SharedCounter
from ocistore._core_py.digest import blob_data_path, parse_digest
from ocistore._core_py.hashing import HASH_STATES, Sha256, Sha512, restore_hasher
from ocistore._core_py.io import WriteBehind, start_writeback
from ocistore._core_py.readat import pread_nowait
from ocistore._core_py.statcache import StatCache, StatCacheScope

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
