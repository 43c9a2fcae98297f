"""The pure-Python core: the typed source of truth that ``native/`` mirrors.

``__all__`` is the contract: the native package must export every name here,
with the same signatures (pinned by tests/test_core_surface.py). The core
knows bytes, not the registry: it must never import anything of ocistore
outside this package, nor spell the storage tree (pinned by
tests/test_layering.py).
"""

from ocistore._core_py.counter import SharedCounter
from ocistore._core_py.digest import parse_digest
from ocistore._core_py.filehash import hash_file
from ocistore._core_py.hashing import HASH_STATES, Sha256, Sha512, restore_hasher
from ocistore._core_py.io import WriteBehind, start_writeback
from ocistore._core_py.readat import pread_nowait
from ocistore._core_py.statcache import StatCache, StatCacheScope
from ocistore._core_py.streamhash import copy_hashed
from ocistore._core_py.walk import read_files, remove_paths, walk_files

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
