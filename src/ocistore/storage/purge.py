"""Purging abandoned uploads (distribution ``registry/storage/purgeuploads.go``).

An upload is judged by the time in its ``startedat`` file, the only age every
driver can report reliably. distribution's rules, kept here:

- only directories under some repository's ``_uploads/`` whose name is a UUID
  are uploads (anything else cannot be deleted safely, so it is left alone);
- an upload without ``startedat`` is kept (it is treated as started far in the
  future: it may be one that is being created right now);
- an unreadable ``startedat`` is reported as an error and the upload kept;
- ``dry_run`` reports what would be deleted without deleting it.

Other ``_``-prefixed directories (``_layers``, ``_manifests``, ...) are not
descended into, so a purge costs one listing per repository, not a walk of
every link.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

from ocistore.driver.base import StorageDriver
from ocistore.errors import PathNotFound, RegistryError
from ocistore.storage import paths
from ocistore.storage.blobwriter import parse_started_at

__all__ = ["purge_uploads"]

log = logging.getLogger("ocistore.storage")


def purge_uploads(
    driver: StorageDriver, older_than: datetime, dry_run: bool = False
) -> tuple[list[str], list[Exception]]:
    """Delete every upload started before ``older_than``; return ``(deleted, errors)``.

    ``deleted`` holds the driver paths of the upload directories removed (or,
    with ``dry_run``, that would be). A naive ``older_than`` is taken as UTC.
    Errors do not stop the purge: each is collected and the rest goes on.
    """
    if older_than.tzinfo is None:
        older_than = older_than.replace(tzinfo=UTC)
    log.info("purging uploads started before %s (dry_run=%s)", older_than.isoformat(), dry_run)
    deleted: list[str] = []
    errors: list[Exception] = []
    for upload_dir in _upload_dirs(driver, paths.path_for(paths.RepositoriesRoot()), errors):
        started = _started_at(driver, paths.started_at_of(upload_dir), errors)
        if started is None or started >= older_than:
            continue
        log.info("upload %s started %s: removing", upload_dir, started.isoformat())
        if not dry_run:
            try:
                driver.delete(upload_dir)
            except PathNotFound:
                continue  # removed meanwhile (committed or cancelled)
            except (RegistryError, OSError) as exc:
                errors.append(exc)
                continue
        deleted.append(upload_dir)
    log.info("purge finished: %d deleted, %d errors", len(deleted), len(errors))
    return deleted, errors


def _upload_dirs(driver: StorageDriver, directory: str, errors: list[Exception]) -> Iterator[str]:
    """Every UUID-named directory under an ``_uploads`` directory below ``directory``."""
    try:
        children = driver.list(directory)
    except PathNotFound:
        return
    except (RegistryError, OSError) as exc:
        errors.append(exc)
        return
    for child in children:
        leaf = child.rsplit("/", 1)[-1]
        if leaf == paths.UPLOADS_DIR:
            yield from _uuid_children(driver, child, errors)
        elif not leaf.startswith("_") and _is_dir(driver, child):
            yield from _upload_dirs(driver, child, errors)


def _uuid_children(driver: StorageDriver, uploads: str, errors: list[Exception]) -> Iterator[str]:
    try:
        children = driver.list(uploads)
    except PathNotFound:
        return
    except (RegistryError, OSError) as exc:
        errors.append(exc)
        return
    for child in children:
        if _is_uuid(child.rsplit("/", 1)[-1]) and _is_dir(driver, child):
            yield child


def _is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


def _is_dir(driver: StorageDriver, path: str) -> bool:
    try:
        return driver.stat(path).is_dir
    except PathNotFound:
        return False


def _started_at(driver: StorageDriver, path: str, errors: list[Exception]) -> datetime | None:
    """The upload's start time; None (keep it) when missing or unreadable."""
    try:
        raw = driver.get_content(path)
    except PathNotFound:
        return None  # distribution: far in the future, never purged
    except (RegistryError, OSError) as exc:
        errors.append(exc)
        return None
    try:
        return parse_started_at(raw.decode("ascii"))
    except (UnicodeDecodeError, ValueError) as exc:
        errors.append(ValueError(f"{path}: unreadable start time {raw[:64]!r} ({exc})"))
        return None
