"""purge_uploads: distribution's purgeuploads_test, ported."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from ocistore.driver import StorageDriver
from ocistore.storage import Registry
from ocistore.storage import paths as p
from ocistore.storage.blobwriter import format_started_at
from ocistore.storage.purge import purge_uploads

NOW = datetime.now(UTC).replace(microsecond=0)


def add_uploads(
    driver: StorageDriver, name: str, count: int, started: datetime, *, startedat: bool = True
) -> list[str]:
    """Fake ``count`` uploads of repository ``name`` begun at ``started``; return their dirs."""
    dirs = []
    for _ in range(count):
        upload_id = str(uuid.uuid4())
        driver.put_content(p.path_for(p.UploadData(name, upload_id)), b"partial")
        if startedat:
            driver.put_content(
                p.path_for(p.UploadStartedAt(name, upload_id)),
                format_started_at(started).encode(),
            )
        dirs.append(p.path_for(p.Upload(name, upload_id)))
    return dirs


def exists(driver: StorageDriver, path: str) -> bool:
    try:
        driver.stat(path)
    except FileNotFoundError:
        return False
    return True


def test_purge_gather(driver: StorageDriver) -> None:
    old = add_uploads(driver, "test-repo", 5, NOW - timedelta(days=30))
    deleted, errors = purge_uploads(driver, NOW - timedelta(days=1), dry_run=False)
    assert errors == []
    assert sorted(deleted) == sorted(old)
    assert not any(exists(driver, d) for d in old)


def test_purge_none(driver: StorageDriver) -> None:
    fresh = add_uploads(driver, "test-repo", 5, NOW)
    deleted, errors = purge_uploads(driver, NOW - timedelta(days=1), dry_run=False)
    assert (deleted, errors) == ([], [])
    assert all(exists(driver, d) for d in fresh)


def test_purge_some(driver: StorageDriver) -> None:
    old = add_uploads(driver, "library/old", 3, NOW - timedelta(hours=2))
    fresh = add_uploads(driver, "library/old", 2, NOW)
    other = add_uploads(driver, "a/b/c", 2, NOW - timedelta(days=400))
    deleted, errors = purge_uploads(driver, NOW - timedelta(hours=1), dry_run=False)
    assert errors == []
    assert sorted(deleted) == sorted(old + other)
    assert all(exists(driver, d) for d in fresh)


def test_purge_dry_run_deletes_nothing(driver: StorageDriver) -> None:
    old = add_uploads(driver, "r", 3, NOW - timedelta(days=2))
    deleted, errors = purge_uploads(driver, NOW, dry_run=True)
    assert sorted(deleted) == sorted(old) and errors == []
    assert all(exists(driver, d) for d in old)


def test_purge_keeps_uploads_without_startedat(driver: StorageDriver) -> None:
    kept = add_uploads(driver, "r", 2, NOW, startedat=False)
    old = add_uploads(driver, "r", 1, NOW - timedelta(days=2))
    deleted, errors = purge_uploads(driver, NOW, dry_run=False)
    assert deleted == old and errors == []
    assert all(exists(driver, d) for d in kept)


def test_purge_reports_unreadable_startedat(driver: StorageDriver) -> None:
    [bad] = add_uploads(driver, "r", 1, NOW - timedelta(days=2))
    driver.put_content(bad + "/startedat", b"last tuesday")
    deleted, errors = purge_uploads(driver, NOW, dry_run=False)
    assert deleted == []
    assert len(errors) == 1 and "startedat" in str(errors[0])
    assert exists(driver, bad)


def test_purge_only_touches_uuid_dirs_under_uploads(driver: StorageDriver) -> None:
    """Files elsewhere (layers, manifests, non-uuid directories in _uploads) are never deleted."""
    old = NOW - timedelta(days=2)
    stamp = format_started_at(old).encode()
    layer = "/docker/registry/v2/repositories/r/_layers/sha256/" + "a" * 64 + "/link"
    not_uuid = "/docker/registry/v2/repositories/r/_uploads/not-a-uuid"
    hidden = "/docker/registry/v2/repositories/r/_manifests/" + str(uuid.uuid4())
    for path in (layer, not_uuid + "/startedat", hidden + "/startedat"):
        driver.put_content(path, stamp)
    upload = add_uploads(driver, "r", 1, old)
    deleted, errors = purge_uploads(driver, NOW, dry_run=False)
    assert (deleted, errors) == (upload, [])
    for path in (layer, not_uuid, hidden):
        assert exists(driver, path)


def test_purge_real_uploads_through_the_registry(driver: StorageDriver) -> None:
    reg = Registry(driver)
    writer = reg.repository("x/y").blobs.create()
    writer.write(b"abandoned")
    writer.close()
    assert purge_uploads(driver, NOW - timedelta(minutes=5), dry_run=False) == ([], [])
    deleted, _ = purge_uploads(driver, datetime.now(UTC) + timedelta(minutes=1), dry_run=False)
    assert deleted == [p.path_for(p.Upload("x/y", writer.id))]


def test_purge_empty_tree_and_naive_time(driver: StorageDriver) -> None:
    assert purge_uploads(driver, datetime.now(), dry_run=False) == ([], [])
    old = add_uploads(driver, "r", 1, NOW - timedelta(days=2))
    naive = (NOW - timedelta(days=1)).replace(tzinfo=None)
    assert purge_uploads(driver, naive, dry_run=True)[0] == old


@pytest.mark.parametrize("name", ["a", "deep/er/repo"])
def test_purge_nested_repository_names(driver: StorageDriver, name: str) -> None:
    old = add_uploads(driver, name, 2, NOW - timedelta(days=2))
    assert sorted(purge_uploads(driver, NOW, dry_run=False)[0]) == sorted(old)
