"""Scheduled collection inside the server (``storage.maintenance.gc``): two apps, one root."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from ocistore.server.config import GcSchedule
from ocistore.server.gc_schedule import LAST_RUN, run_if_due
from server.conftest import make_app
from waiting import async_wait_until


def test_two_workers_collect_the_orphan_once(tmp_path: Path) -> None:
    schedule = GcSchedule(enabled=True, interval=2.0, grace=0.0, settle=0.0)
    apps = [make_app(tmp_path, gc_schedule=schedule) for _ in range(2)]
    repo = apps[0].services.registry.repository("maint/gc")
    orphan = repo.blobs.put("", b"nobody references this")
    data = tmp_path / "data" / "docker/registry/v2/blobs/sha256" / orphan.digest.encoded[:2]
    stamp = tmp_path / "data" / LAST_RUN.lstrip("/")
    assert data.exists()

    async def run() -> None:
        for app in apps:
            app.start_background()
        try:
            await async_wait_until(
                lambda: not (data / orphan.digest.encoded).exists() and stamp.exists(),
                "the orphan is swept and the run recorded",
                timeout=60.0,
            )
        finally:
            for app in apps:
                await app.stop_background()

    asyncio.run(run())
    first = stamp.read_text()
    # Within an interval of the last run, nobody collects again (the stamp is unchanged).
    hourly = GcSchedule(enabled=True, interval=3600.0, grace=0.0, settle=0.0)
    assert run_if_due(apps[1].services.registry.driver, hourly) is None
    assert stamp.read_text() == first
    assert not (data / orphan.digest.encoded).exists()
    assert not (
        tmp_path / "data" / "docker/registry/v2/repositories/maint/gc/_layers"
    ).exists() or not any(
        (tmp_path / "data" / "docker/registry/v2/repositories/maint/gc/_layers").rglob("link")
    )


def test_a_scheduled_run_is_counted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runs: list[tuple[str, dict[str, object]]] = []
    monkeypatch.setattr(
        "ocistore.metrics.record_maintenance_run", lambda kind, **kw: runs.append((kind, kw))
    )
    schedule = GcSchedule(enabled=True, interval=2.0, grace=0.0, settle=0.0)
    app = make_app(tmp_path, gc_schedule=schedule)
    app.services.registry.repository("maint/gc").blobs.put("", b"an orphan")

    async def run() -> None:
        app.start_background()
        try:
            await async_wait_until(lambda: runs, "the collection is counted", timeout=60.0)
        finally:
            await app.stop_background()

    asyncio.run(run())
    kind, kw = runs[0]
    assert (kind, kw["removed"], kw["errors"]) == ("gc", 1, 0)
