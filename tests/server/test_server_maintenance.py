"""Upload purging in the server: once per interval for all workers on one root."""

from __future__ import annotations

import asyncio
import fcntl
import os
from pathlib import Path

import pytest

from ocistore.server.config import UploadPurging
from ocistore.server.maintenance import STAMP_NAME, PurgeSchedule
from server.conftest import make_app
from waiting import async_wait_until


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def test_one_purge_per_interval_across_workers(tmp_path: Path) -> None:
    """Two workers' schedules on one lock directory: the first due purges, the other skips."""
    clock = Clock(1000.0)
    a = PurgeSchedule(str(tmp_path), interval=60.0)
    b = PurgeSchedule(str(tmp_path), interval=60.0)
    runs: list[str] = []
    assert a.run_if_due(lambda: runs.append("a") or 1, now=clock) == 1
    assert b.run_if_due(lambda: runs.append("b") or 2, now=clock) is None
    clock.t += 59.0
    assert b.run_if_due(lambda: runs.append("b") or 2, now=clock) is None
    clock.t += 2.0
    assert b.run_if_due(lambda: runs.append("b") or 2, now=clock) == 2
    assert a.run_if_due(lambda: runs.append("a") or 1, now=clock) is None
    assert runs == ["a", "b"]


def test_a_purge_in_progress_elsewhere_is_not_repeated(tmp_path: Path) -> None:
    schedule = PurgeSchedule(str(tmp_path), interval=1.0)
    fd = os.open(tmp_path / STAMP_NAME, os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        assert schedule.run_if_due(lambda: "ran") is None
    finally:
        os.close(fd)
    assert schedule.run_if_due(lambda: "ran") == "ran"


def test_unreadable_stamp_or_failed_purge_means_due(tmp_path: Path) -> None:
    (tmp_path / STAMP_NAME).write_bytes(b"\x00garbage")
    schedule = PurgeSchedule(str(tmp_path), interval=3600.0)
    assert schedule.run_if_due(lambda: "ran") == "ran"

    def boom() -> None:
        raise OSError("disk gone")

    fresh = PurgeSchedule(str(tmp_path / "other"), interval=3600.0)
    with pytest.raises(OSError, match="disk gone"):
        fresh.run_if_due(boom)
    # The failed purge left no stamp: the next worker due tries again.
    assert fresh.run_if_due(lambda: "retried") == "retried"


def _stamped(root: Path) -> bool:
    stamp = root / "locks" / STAMP_NAME
    try:
        return bool(stamp.read_text().strip())
    except OSError:
        return False


def test_server_purges_stale_uploads_once_for_two_workers(tmp_path: Path) -> None:
    """Two apps on one root (as two worker processes): the stale upload goes, purged once."""
    purging = UploadPurging(enabled=True, age=0.0, interval=0.2)
    apps = [make_app(tmp_path, upload_purging=purging) for _ in range(2)]
    repo = apps[0].services.registry.repository("maint/app")
    writer = repo.blobs.create()
    writer.write(b"half an upload")
    writer.close()
    upload_dir = tmp_path / "data" / "docker/registry/v2/repositories/maint/app/_uploads"
    assert any(upload_dir.iterdir())

    async def run() -> None:
        for app in apps:
            app.start_background()
        # Generous: the first purge waits up to one interval, then runs on a
        # thread pool that a loaded machine may be slow to schedule.
        # The stamp is written after the purge returns: wait for it too, or the
        # check below races with the purging thread.
        try:
            await async_wait_until(
                lambda: not any(upload_dir.iterdir()) and _stamped(tmp_path),
                "the stale upload is purged and the stamp written",
                timeout=60.0,
            )
        finally:
            for app in apps:
                await app.stop_background()

    asyncio.run(run())
    assert not any(upload_dir.iterdir())
    assert (tmp_path / "locks" / STAMP_NAME).read_text().strip()
