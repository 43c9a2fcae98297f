"""What metrics cost a HEAD and a GET manifest, in-process (no sockets, no server).

Run: ``.venv/bin/pytest benchmarks/test_bench_metrics.py``. Each round sends
2 000 requests for ``/v2/bench/app/manifests/v1`` to the ASGI app on one
event loop, with metrics off (``recorder=None``, the default) or on (a
:class:`~ocistore.metrics.Recorder` over a fresh multiprocess directory;
its flusher thread runs as in a worker). The HTTP rates, side by side, are
``benchmarks/http/metrics_overhead.py``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROUND = r"""
import asyncio, json, os, sys, time
from ocistore import metrics
from ocistore.cache import MemoryDescriptorCache
from ocistore.driver import FilesystemDriver
from ocistore.server.app import RegistryApp
from ocistore.storage import Registry

tmp, method, on = sys.argv[1], sys.argv[2], sys.argv[3] == "on"
OCI = "application/vnd.oci.image.manifest.v1+json"
rec = None
if on:
    os.makedirs(tmp + "/metrics", exist_ok=True)
    rec = metrics.enable(tmp + "/metrics")
registry = Registry(FilesystemDriver(tmp + "/data"), cache=MemoryDescriptorCache())
if rec is not None:
    metrics.time_driver(registry.driver, rec, "filesystem")
    rec.add_source(metrics.cache_source(registry, "inmemory"))
app = RegistryApp(registry, secret="s", lock_dir=tmp + "/locks", recorder=rec)
repo = registry.repository("bench/app")
config = repo.blobs.put("application/vnd.oci.image.config.v1+json", b"{}")
doc = {"schemaVersion": 2, "mediaType": OCI, "config": config.to_json(), "layers": []}
repo.manifests.put(json.dumps(doc).encode(), media_type=OCI, tag="v1")
scope = {"type": "http", "method": method, "path": "/v2/bench/app/manifests/v1",
         "headers": [(b"host", b"bench"), (b"accept", OCI.encode())],
         "query_string": b"", "scheme": "http"}
statuses = set()
async def receive():
    return {"type": "http.request", "body": b"", "more_body": False}
async def send(msg):
    if msg["type"] == "http.response.start":
        statuses.add(msg["status"])
async def main():
    app.start_background()
    best = float("inf")
    for _ in range(7):
        t = time.perf_counter()
        for _ in range(2000):
            await app(scope, receive, send)
        best = min(best, (time.perf_counter() - t) / 2000)
    await app.stop_background()
    return best
best = asyncio.run(main())
assert statuses == {200}, statuses
print(best)
"""


@pytest.mark.parametrize("method", ["HEAD", "GET"])
def test_manifest_metrics_overhead(tmp_path: Path, method: str) -> None:
    """Best of 7 rounds per request, off and on alternated three times (own processes:
    prometheus_client reads its multiprocess setting at import)."""
    times: dict[str, list[float]] = {"off": [], "on": []}
    for i in range(3):
        for mode in ("off", "on"):
            work = tmp_path / f"{mode}{i}"
            work.mkdir()
            env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
            out = subprocess.run(
                [sys.executable, "-c", ROUND, str(work), method, mode],
                capture_output=True,
                text=True,
                check=True,
                env=env,
            ).stdout
            times[mode].append(float(out.strip()) * 1e6)
    off, on = min(times["off"]), min(times["on"])
    print(f"\n{method} manifest in-process: off {off:.2f} us, on {on:.2f} us, +{on - off:.2f} us")
