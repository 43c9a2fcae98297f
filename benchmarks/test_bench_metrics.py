"""What metrics cost a HEAD and a GET manifest, in-process (no sockets, no server).

Run: ``.venv/bin/pytest benchmarks/test_bench_metrics.py -s``. One process
(prometheus_client must find its multiprocess directory at import) builds
two apps on one registry, metrics off (``recorder=None``, the default) and
on (a :class:`~ocistore.metrics.Recorder` with its flusher thread running,
as in a worker), and sends 1 000 requests for ``/v2/bench/app/manifests/v1``
to each in turn, 30 times, the order swapped every time; the best time per
request of each is printed. The HTTP rates, side by side, are
``benchmarks/http/metrics_overhead.py``.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

ROUNDS = r"""
import asyncio, json, os, sys, tempfile, time
tmp = tempfile.mkdtemp()
os.makedirs(tmp + "/m")
from ocistore import metrics
rec = metrics.enable(tmp + "/m")
from ocistore.server.app import build_app
from ocistore.server.config import ServerConfig
cfg = ServerConfig(root=tmp + "/root", secret="s", cache="inmemory")
on = build_app(cfg, recorder=rec)
off = build_app(cfg)
OCI = "application/vnd.oci.image.manifest.v1+json"
repo = on.services.registry.repository("bench/app")
config = repo.blobs.put("application/vnd.oci.image.config.v1+json", b"{}")
doc = {"schemaVersion": 2, "mediaType": OCI, "config": config.to_json(), "layers": []}
repo.manifests.put(json.dumps(doc).encode(), media_type=OCI, tag="v1")
async def receive(): return {"type": "http.request", "body": b"", "more_body": False}
async def send(m): pass
async def main():
    on.start_background()
    for method in ("HEAD", "GET"):
        scope = {"type": "http", "method": method, "path": "/v2/bench/app/manifests/v1",
             "headers": [(b"host", b"bench"), (b"accept", OCI.encode())], "query_string": b"", "scheme": "http"}
        best = {"on": 1e9, "off": 1e9}
        for r in range(30):
            for name, app in (("off", off), ("on", on)) if r % 2 else (("on", on), ("off", off)):
                t = time.perf_counter()
                for _ in range(1000): await app(scope, receive, send)
                best[name] = min(best[name], (time.perf_counter() - t) / 1000 * 1e6)
        print(method, {k: round(v, 2) for k, v in best.items()}, "diff", round(best["on"] - best["off"], 2))
    await on.stop_background()
    await off.stop_background()


asyncio.run(main())
"""


@pytest.mark.parametrize("attempt", [1, 2])
def test_manifest_metrics_overhead(attempt: int) -> None:
    out = subprocess.run(
        [sys.executable, "-c", ROUNDS], capture_output=True, text=True, check=True
    ).stdout
    print(f"\nattempt {attempt}:\n{out}", end="")
    assert out.count("diff") == 2
