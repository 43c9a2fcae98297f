"""Choose the proxy's upstream HTTP client: aiohttp against httpx on one 256 MiB blob pull.

The Go registry (``docker-registry``, started here on 127.0.0.1) serves one
blob written straight into its root; each client streams it in 1 MiB pieces
and hashes what it got (the timed bytes must be the blob's), the way the
proxy's fill consumes an upstream body. Rounds alternate between the
clients; medians and the aiohttp/httpx throughput ratio are reported.

    .venv/bin/python benchmarks/proxy_clients.py [--rounds 5] [--mib 256]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from interop._peers import GoRegistry

MiB = 1 << 20
CHUNK = MiB


def seed_blob(root: Path, repo: str, data: bytes) -> str:
    """Write ``data`` as a blob of ``repo`` in distribution's layout; return its digest."""
    hexd = hashlib.sha256(data).hexdigest()
    v2 = root / "docker/registry/v2"
    blob = v2 / "blobs/sha256" / hexd[:2] / hexd
    blob.mkdir(parents=True)
    (blob / "data").write_bytes(data)
    link = v2 / "repositories" / repo / "_layers/sha256" / hexd
    link.mkdir(parents=True)
    (link / "link").write_text(f"sha256:{hexd}")
    return f"sha256:{hexd}"


async def pull_aiohttp(session: aiohttp.ClientSession, url: str) -> str:
    h = hashlib.sha256()
    async with session.get(url) as resp:
        resp.raise_for_status()
        async for chunk in resp.content.iter_chunked(CHUNK):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


async def pull_httpx(client: httpx.AsyncClient, url: str) -> str:
    h = hashlib.sha256()
    async with client.stream("GET", url) as resp:
        resp.raise_for_status()
        async for chunk in resp.aiter_raw(CHUNK):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


async def run(url: str, digest: str, rounds: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {"aiohttp": [], "httpx": []}
    async with (
        aiohttp.ClientSession(auto_decompress=False) as session,
        httpx.AsyncClient(timeout=60) as client,
    ):
        for _ in range(rounds):
            for name in ("aiohttp", "httpx"):
                start = time.perf_counter()
                got = await (
                    pull_aiohttp(session, url) if name == "aiohttp" else pull_httpx(client, url)
                )
                times[name].append(time.perf_counter() - start)
                assert got == digest, f"{name} read {got}, not {digest}"
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--mib", type=int, default=256)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="proxy-clients-") as tmp:
        root = Path(tmp) / "root"
        digest = seed_blob(root, "bench/blob", os.urandom(args.mib * MiB))
        go = GoRegistry(root, Path(tmp))
        go.start()
        try:
            url = f"{go.url}/v2/bench/blob/blobs/{digest}"
            times = asyncio.run(run(url, digest, args.rounds))
        finally:
            go.stop()
    med = {k: statistics.median(v) for k, v in times.items()}
    for name, t in med.items():
        print(
            f"{name:8s} median {t:.3f}s  {args.mib / t:8.0f} MiB/s  (runs: "
            + ", ".join(f"{x:.3f}" for x in times[name])
            + ")"
        )
    print(f"aiohttp/httpx throughput ratio: {med['httpx'] / med['aiohttp']:.2f}")


if __name__ == "__main__":
    main()
