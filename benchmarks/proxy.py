"""Proxy mode side by side: ocistore's pull-through cache and the Go registry's, one upstream.

The upstream is a Go registry 2.8.2 (``docker-registry``) with its access log
on, serving blobs written straight into its root; upstream GETs are counted
in that log. Each proxy starts on an empty root for every cold measurement.
Clients are ``curl`` processes (so the clients' own cost stays small), each
checked for status and size, and one body per run is hashed against the
digest; the proxy's stored blob is verified by its own commit.

1. 32 clients pull the same cold blob at once: wall time, upstream GETs, and
   the ratio to one client's cold pull; ocistore and the Go registry in proxy
   mode.
2. One client pulls a large blob: directly from the upstream, cold through
   the ocistore proxy, and warm through it.

    .venv/bin/python benchmarks/proxy.py [--mib 256] [--clients 32] [--large-mib 1024] [--rounds 3]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from interop._peers import GoRegistry, OcistoreServer, Server
from interop._proxy import proxy_yaml, with_proxy

MiB = 1 << 20
REPO = "bench/blob"


def seed_blob(root: Path, repo: str, data: bytes) -> str:
    """``data`` as a blob of ``repo`` in distribution's layout; its digest."""
    hexd = hashlib.sha256(data).hexdigest()
    v2 = root / "docker/registry/v2"
    blob = v2 / "blobs/sha256" / hexd[:2] / hexd
    blob.mkdir(parents=True)
    (blob / "data").write_bytes(data)
    link = v2 / "repositories" / repo / "_layers/sha256" / hexd
    link.mkdir(parents=True)
    (link / "link").write_text(f"sha256:{hexd}")
    return f"sha256:{hexd}"


@dataclass
class Run:
    seconds: float
    upstream_gets: int
    warm_seconds: float
    """The same clients again on the now warm cache: the cost of serving alone."""


def pull_all(url: str, clients: int, size: int, digest: str, sample: Path) -> float:
    """``clients`` curls GET ``url`` at once; checks each status and size and one body."""
    curl = shutil.which("curl")
    assert curl is not None, "curl is needed"
    argv = [curl, "-s", "-w", "%{http_code} %{size_download}", "-o"]
    start = time.perf_counter()
    procs = [
        subprocess.Popen(
            [*argv, str(sample) if i == 0 else os.devnull, url], stdout=subprocess.PIPE, text=True
        )
        for i in range(clients)
    ]
    outs = [p.communicate(timeout=600)[0] for p in procs]
    seconds = time.perf_counter() - start
    for out in outs:
        assert out == f"200 {size}", f"a client got {out!r}, not 200 {size}"
    h = hashlib.sha256()
    with sample.open("rb") as f:
        while chunk := f.read(8 * MiB):
            h.update(chunk)
    assert f"sha256:{h.hexdigest()}" == digest, "the sampled body does not hash to the digest"
    sample.unlink()
    return seconds


def upstream_gets(go: GoRegistry, digest: str, since: int) -> int:
    text = go.log_path.read_text(errors="replace")[since:]
    return text.count(f'"GET /v2/{REPO}/blobs/{digest} ')


def log_size(go: GoRegistry) -> int:
    return len(go.log_path.read_text(errors="replace"))


def start_proxy(kind: str, work: Path, upstream: GoRegistry, n: int) -> Server:
    root = work / f"{kind}-root-{n}"
    root.mkdir()
    if kind == "ocistore":
        server: Server = with_proxy(
            OcistoreServer(root, work, core="native"), proxy_yaml(upstream.url, timeout="60s")
        )
    else:
        go = GoRegistry(root, work)
        go.config.write_text(go.config.read_text() + f"proxy:\n  remoteurl: {upstream.url}\n")
        server = go
    server.start()
    return server


def cold(
    kind: str, work: Path, upstream: GoRegistry, digest: str, size: int, clients: int, n: int
) -> Run:
    server = start_proxy(kind, work, upstream, n)
    try:
        since = log_size(upstream)
        url = f"{server.url}/v2/{REPO}/blobs/{digest}"
        seconds = pull_all(url, clients, size, digest, work / "sample")
        gets = upstream_gets(upstream, digest, since)
        return Run(seconds, gets, pull_all(url, clients, size, digest, work / "sample"))
    finally:
        server.stop()
        shutil.rmtree(work / f"{kind}-root-{n}", ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mib", type=int, default=256, help="the blob the clients share")
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--large-mib", type=int, default=1024, help="the blob of the cold/direct pull")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    size, large = args.mib * MiB, args.large_mib * MiB
    with tempfile.TemporaryDirectory(prefix="proxy-bench-", dir=os.environ.get("BENCH_TMP")) as tmp:
        work = Path(tmp)
        up_root = work / "upstream"
        shared = seed_blob(up_root, REPO, os.urandom(size))
        big = seed_blob(up_root, REPO, os.urandom(large))
        upstream = GoRegistry(up_root, work)
        upstream.config.write_text(
            upstream.config.read_text().replace("disabled: true", "disabled: false")
        )
        upstream.start()
        n = 0
        try:
            print(f"== {args.clients} clients, one cold {args.mib} MiB blob ({args.rounds} rounds)")
            results: dict[str, dict[str, list[Run]]] = {}
            for _ in range(args.rounds):
                for kind in ("ocistore", "go"):
                    for clients in (1, args.clients):
                        n += 1
                        run = cold(kind, work, upstream, shared, size, clients, n)
                        results.setdefault(kind, {}).setdefault(str(clients), []).append(run)
            for kind, by in results.items():
                one = statistics.median(r.seconds for r in by["1"])
                many = statistics.median(r.seconds for r in by[str(args.clients)])
                warm = statistics.median(r.warm_seconds for r in by[str(args.clients)])
                gets = [r.upstream_gets for r in by[str(args.clients)]]
                print(
                    f"{kind:9s} cold: 1 client {one:6.2f}s, {args.clients} clients {many:6.2f}s"
                    f" (ratio {many / one:5.2f}); warm: {args.clients} clients {warm:6.2f}s"
                    f" (cold/warm {many / warm:4.2f}); upstream GETs per cold"
                    f" {args.clients}-client run: {gets}"
                )
            print(f"== one client, a {args.large_mib} MiB blob ({args.rounds} rounds)")
            direct, cold_s, warm_s = [], [], []
            for _ in range(args.rounds):
                direct.append(
                    pull_all(f"{upstream.url}/v2/{REPO}/blobs/{big}", 1, large, big, work / "s")
                )
                n += 1
                server = start_proxy("ocistore", work, upstream, n)
                try:
                    url = f"{server.url}/v2/{REPO}/blobs/{big}"
                    cold_s.append(pull_all(url, 1, large, big, work / "s"))
                    warm_s.append(pull_all(url, 1, large, big, work / "s"))
                finally:
                    server.stop()
                    shutil.rmtree(work / f"ocistore-root-{n}", ignore_errors=True)
            d, c, w = (statistics.median(x) for x in (direct, cold_s, warm_s))
            print(f"direct from upstream {d:6.2f}s  {args.large_mib / d:6.0f} MiB/s")
            print(
                f"ocistore cold        {c:6.2f}s  {args.large_mib / c:6.0f} MiB/s  (direct/cold {d / c:.2f})"
            )
            print(
                f"ocistore warm        {w:6.2f}s  {args.large_mib / w:6.0f} MiB/s  (direct/warm {d / w:.2f})"
            )
        finally:
            upstream.stop()


if __name__ == "__main__":
    main()
