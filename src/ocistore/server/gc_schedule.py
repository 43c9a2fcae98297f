"""Scheduled garbage collection inside ``ocistore serve``: once per interval for the whole root.

Every worker of every instance runs :func:`gc_loop`; they agree through
storage, not through local locks, so instances on one bucket agree too:

- ``<GC_EPOCHS>/../last`` holds the time the last collection finished; a
  worker collects only when it is at least one interval old;
- :meth:`~ocistore.storage.gcfence.Epoch.begin` publishes an epoch, then lists
  the others: of two live epochs, the younger withdraws (:class:`GcBusy`), so
  at most one collection runs at a time;
- once its epoch is published, a worker reads ``last`` again and withdraws if
  another finished meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from concurrent.futures import Executor
from typing import Final

from ocistore import metrics
from ocistore.driver.base import StorageDriver
from ocistore.errors import PathNotFound, RegistryError
from ocistore.server.config import GcSchedule
from ocistore.storage.gc import GcOptions, GcReport, collect
from ocistore.storage.gcfence import GcBusy
from ocistore.storage.paths import GC_EPOCHS

__all__ = ["LAST_RUN", "gc_loop", "run_if_due"]

LAST_RUN: Final = GC_EPOCHS.rsplit("/", 1)[0] + "/gc-last"

log = logging.getLogger("ocistore.server")


def _last(driver: StorageDriver) -> float | None:
    try:
        return float(driver.get_content(LAST_RUN).decode("ascii"))
    except PathNotFound:
        return None
    except (UnicodeDecodeError, ValueError):
        return None  # unreadable: collect (and rewrite it)


def run_if_due(driver: StorageDriver, schedule: GcSchedule) -> GcReport | None:
    """Collect if the last collection on this root finished an interval ago; ``None`` if skipped."""
    last = _last(driver)
    if last is not None and time.time() - last < schedule.interval:
        return None
    options = GcOptions(
        delete_untagged=schedule.deleteuntagged,
        dry_run=schedule.dryrun,
        grace=schedule.grace,
        settle=schedule.settle,
    )

    def still_due() -> bool:
        again = _last(driver)
        return again == last or again is None

    try:
        report = collect(driver, options, before_mark=still_due)
    except GcBusy:
        return None
    if report is None:
        return None
    driver.put_content(LAST_RUN, f"{time.time():.6f}".encode())
    return report


async def gc_loop(driver: StorageDriver, schedule: GcSchedule, executor: Executor) -> None:
    """Check every tenth of the interval (at most a minute) whether a collection is due."""
    loop = asyncio.get_running_loop()
    tick = min(max(schedule.interval / 10, 0.5), 60.0)
    await asyncio.sleep(tick * (0.5 + (os.getpid() % 97) / 194))  # spread the workers
    while True:
        began = time.monotonic()
        try:
            report = await loop.run_in_executor(executor, run_if_due, driver, schedule)
            if report is not None:
                metrics.record_maintenance_run(
                    "gc",
                    seconds=time.monotonic() - began,
                    removed=report.manifests_deleted + report.blobs_swept,
                    errors=len(report.problems),
                )
                log.info(
                    "gc: %d manifests and %d blobs deleted, %d bytes freed, %d problems",
                    report.manifests_deleted,
                    report.blobs_swept,
                    report.bytes_freed,
                    len(report.problems),
                )
        except (RegistryError, OSError, RuntimeError) as exc:
            metrics.record_maintenance_run("gc", seconds=time.monotonic() - began, ok=False)
            log.warning("gc failed: %s", exc)
        await asyncio.sleep(tick)
