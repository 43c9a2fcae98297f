"""The expiry loop: once per ``proxy.interval`` for all workers of a root, like upload purging.

Each worker runs this loop; :class:`~ocistore.server.maintenance.PurgeSchedule`
over its own stamp file (:data:`~ocistore.proxy.service.EXPIRY_STAMP`) lets
only the worker that is due, and finds no other one running, do the sweep.
"""

from __future__ import annotations

import asyncio
import logging
import os

from ocistore.proxy.service import EXPIRY_STAMP, Proxy
from ocistore.server.maintenance import PurgeSchedule

__all__ = ["expiry_loop"]

log = logging.getLogger("ocistore.proxy")


async def expiry_loop(proxy: Proxy, lock_dir: str) -> None:
    loop = asyncio.get_running_loop()
    interval = proxy.config.interval
    schedule = PurgeSchedule(lock_dir, interval=interval)
    schedule.path = os.path.join(lock_dir, EXPIRY_STAMP)
    # Spread the first run over the workers; whichever is due first sweeps for all.
    await asyncio.sleep(min(interval, 60.0) * (0.5 + (os.getpid() % 97) / 194))
    while True:
        try:
            done = await loop.run_in_executor(proxy.executor, schedule.run_if_due, proxy.expire)
            if done is not None:
                log.info(
                    "proxy expiry: %d links and %d blobs removed, %d errors",
                    len(done.links),
                    len(done.blobs),
                    len(done.errors),
                )
        except Exception as exc:
            log.warning("proxy expiry failed: %s", exc)
        await asyncio.sleep(interval)
