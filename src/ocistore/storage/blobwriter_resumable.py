"""Resumable digests: an upload's sha256 state kept beside its data (distribution ``blobwriter_resumable.go``).

``_uploads/<id>/hashstates/sha256/<offset>`` holds the sha256 state after the
upload's first ``offset`` bytes, in Go's MarshalBinary format, so that a
writer reopened for the next chunk goes on hashing instead of reading the
whole upload again at commit. Only a core that can export states writes them
(``_core.HASH_STATES``), and only when the registry asks (``resumable_digest``).

What this module must never do: store a state for bytes that are not durable
yet (its caller stores one only after the data's fsync), or hand back a state
that does not cover exactly the data. A missing, stale, truncated or
unreadable state is reported as none: the writer then re-reads the upload at
commit, which costs time but never gives a wrong digest.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any, Final, Protocol

from ocistore import _core
from ocistore.digest import CANONICAL
from ocistore.driver.base import StorageDriver
from ocistore.driver.durable import replace_file
from ocistore.driver.filesystem import FilesystemDriver
from ocistore.errors import HashStateInvalid, HashStateUnsupported, PathNotFound, RegistryError
from ocistore.storage import paths
from ocistore.storage.wholefiles import delete_whole, read_whole

if TYPE_CHECKING:
    from ocistore.storage.linkedblobstore import LinkedBlobStore
    from ocistore.storage.registry import Registry

__all__ = [
    "SHA256_STATE_MAGIC",
    "SHA256_STATE_SIZE",
    "Hasher",
    "enabled",
    "prune_states",
    "restore_state",
    "store_state",
]

log = logging.getLogger("ocistore.storage")

SHA256_STATE_MAGIC: Final = b"sha\x03"
SHA256_STATE_SIZE: Final = 108


class Hasher(Protocol):
    """The running sha256 of an upload (either core's ``Sha256``)."""

    def update(self, data: Any, /) -> None: ...
    def hexdigest(self) -> str: ...
    def marshal(self) -> bytes: ...


def enabled(registry: Registry) -> bool:
    """Whether uploads to ``registry`` store and restore hash states with the active core."""
    return bool(_core.HASH_STATES) and registry.resumable_digest


def store_state(store: LinkedBlobStore, upload_id: str, offset: int, hasher: Hasher) -> None:
    """Store the state after ``offset`` bytes (already durable) and prune the others.

    On the filesystem driver the state goes through :func:`replace_file`:
    its content is fsynced before it gets its name, but the directory is not
    synced, here nor when pruning (two journal commits per chunk saved). A
    crash can then lose the newest state (the next resume re-hashes, as
    without states) or leave an older one or a temporary file (pruned, or
    ignored since its offset is not the data size), never a state whose
    content is torn or that covers bytes not on disk. A failure is logged,
    not raised: without the state the upload is only slower to commit.
    """
    driver = store.registry.driver
    path = paths.path_for(paths.UploadHashState(store.name, upload_id, CANONICAL, offset))
    try:
        state = hasher.marshal()
        local = _local_path(driver, path)
        if local is None:
            driver.put_content(path, state)
        else:
            try:
                replace_file(local, state)
            except FileNotFoundError:  # the first state: the driver makes the directories
                driver.put_content(path, state)
    except (RegistryError, OSError) as exc:
        log.warning("upload %s: could not store hash state at %d: %s", upload_id, offset, exc)
        return
    prune_states(store, upload_id, keep=offset)


def restore_state(store: LinkedBlobStore, upload_id: str, size: int) -> Hasher | None:
    """The sha256 hasher restored from the state at offset ``size``, or None to fall back.

    Falling back (hash nothing more, re-read at commit) is always correct; a
    state is used only if it is a well-formed sha256 state covering exactly
    ``size`` bytes. States at other offsets can never be used and are pruned.
    """
    if size == 0 or not enabled(store.registry):
        return None
    path = paths.path_for(paths.UploadHashState(store.name, upload_id, CANONICAL, size))
    hasher: Hasher | None = None
    try:
        hasher = _load_state(store.registry.driver, path, size)
    except PathNotFound:
        log.warning(
            "upload %s: no hash state at offset %d; commit will re-read the upload", upload_id, size
        )
    except (HashStateInvalid, HashStateUnsupported, OSError, RegistryError) as exc:
        log.warning(
            "upload %s: unusable hash state %s (%s); commit will re-read the upload",
            upload_id,
            path,
            exc,
        )
    if hasher is None:
        # The states there can never be used. (With one found, the others
        # go at the next store_state or with the upload: no listing here.)
        prune_states(store, upload_id, keep=None)
    return hasher


def prune_states(store: LinkedBlobStore, upload_id: str, *, keep: int | None) -> None:
    """Delete every stored state but the one at ``keep``: no other can ever be used.

    On the filesystem driver the names are unlinked without syncing the
    directory: a state that comes back after a crash is not at the data's
    size, or is that size's correct state, so it is ignored or used as usual.
    """
    driver = store.registry.driver
    directory = paths.path_for(paths.UploadHashStates(store.name, upload_id, CANONICAL))
    kept = None if keep is None else str(keep)
    local = _local_path(driver, directory)
    if local is not None:
        try:
            names = os.listdir(local)
        except (FileNotFoundError, NotADirectoryError):
            return
        for entry in names:
            if entry != kept:
                try:
                    os.unlink(os.path.join(local, entry))
                except FileNotFoundError:
                    pass
                except OSError as exc:
                    log.warning(
                        "upload %s: could not prune hash state %s: %s", upload_id, entry, exc
                    )
        return
    try:
        entries = driver.list(directory)
    except PathNotFound:
        return
    stale = [path for path in entries if path.rsplit("/", 1)[-1] != kept]
    try:
        delete_whole(driver, stale)
    except (RegistryError, OSError) as exc:
        log.warning("upload %s: could not prune hash states %s: %s", upload_id, stale, exc)


def _load_state(driver: StorageDriver, path: str, size: int) -> Hasher:
    state = read_whole(driver, path)
    if len(state) != SHA256_STATE_SIZE or state[:4] != SHA256_STATE_MAGIC:
        raise HashStateInvalid(f"not a sha256 state ({len(state)} bytes, magic {state[:4]!r})")
    covered = int.from_bytes(state[-8:], "big")
    if covered != size:
        raise HashStateInvalid(f"covers {covered} bytes, the data has {size}")
    hasher: Hasher = _core.restore_hasher(state)
    return hasher


def _local_path(driver: StorageDriver, path: str) -> str | None:
    """The OS path of ``path`` when ``driver`` is the filesystem driver, else None."""
    return driver.full_path(path) if isinstance(driver, FilesystemDriver) else None
