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

Beside the wall times, the CPU seconds the proxy's processes (the server and
its children, from ``/proc``) spent per GiB sent to the clients: the figure
the machine's load disturbs least. ``--baseline DIR`` runs a second ocistore
beside the current one, rounds interleaved, from ``DIR/ocistore`` (another
commit's ``src``, extensions built), e.g. to measure a change before and after
in one run.

    .venv/bin/python benchmarks/proxy.py [--mib 256] [--clients 32] [--large-mib 1024] [--rounds 3]
        [--baseline DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import resource
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
    cpu_per_gib: float = 0.0
    warm_cpu_per_gib: float = 0.0
    client_cpu_per_gib: float = 0.0
    """The curl clients' own CPU in the cold run: what any server leaves them to do."""


def children_cpu() -> float:
    """CPU seconds of this process's waited-for children (the curls, once they exited)."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def tree_cpu(pid: int) -> float:
    """CPU seconds (user + system) of ``pid`` and its live descendants, from /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    parents: dict[int, int] = {}
    times: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        parents[int(entry)] = int(fields[1])
        times[int(entry)] = int(fields[11]) + int(fields[12])
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        total += times.get(p, 0)
        todo.extend(c for c, parent in parents.items() if parent == p)
    return total / tick


def server_cpu(server: Server) -> float:
    assert server.proc is not None
    return tree_cpu(server.proc.pid)


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


BASELINE = "ocistore@base"


def start_proxy(
    kind: str, work: Path, upstream: GoRegistry, n: int, baseline: Path | None = None
) -> Server:
    root = work / f"{kind}-root-{n}"
    root.mkdir()
    if kind.startswith("ocistore"):
        server: Server = with_proxy(
            OcistoreServer(root, work, core="native"), proxy_yaml(upstream.url, timeout="60s")
        )
        if kind == BASELINE:
            assert baseline is not None
            server.env["PYTHONPATH"] = str(baseline)
    else:
        go = GoRegistry(root, work)
        go.config.write_text(go.config.read_text() + f"proxy:\n  remoteurl: {upstream.url}\n")
        server = go
    server.start()
    return server


def cold(
    kind: str,
    work: Path,
    upstream: GoRegistry,
    digest: str,
    size: int,
    clients: int,
    n: int,
    baseline: Path | None,
) -> Run:
    server = start_proxy(kind, work, upstream, n, baseline)
    gib = clients * size / (1 << 30)
    try:
        since = log_size(upstream)
        url = f"{server.url}/v2/{REPO}/blobs/{digest}"
        cpu, curls = server_cpu(server), children_cpu()
        seconds = pull_all(url, clients, size, digest, work / "sample")
        cpu, before = server_cpu(server), cpu
        curls = children_cpu() - curls
        gets = upstream_gets(upstream, digest, since)
        warm = pull_all(url, clients, size, digest, work / "sample")
        warm_cpu = server_cpu(server) - cpu
        return Run(seconds, gets, warm, (cpu - before) / gib, warm_cpu / gib, curls / gib)
    finally:
        server.stop()
        shutil.rmtree(work / f"{kind}-root-{n}", ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mib", type=int, default=256, help="the blob the clients share")
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--large-mib", type=int, default=1024, help="the blob of the cold/direct pull")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument(
        "--baseline",
        type=Path,
        help="a directory holding another ocistore package to run beside this one",
    )
    ap.add_argument("--skip-go", action="store_true", help="leave the Go registry proxy out")
    args = ap.parse_args()
    if args.baseline is not None and not (args.baseline / "ocistore").is_dir():
        ap.error(f"--baseline {args.baseline}: no ocistore package in it")
    kinds = ["ocistore"] + ([BASELINE] if args.baseline else []) + ([] if args.skip_go else ["go"])
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
            for r in range(args.rounds):
                for kind in kinds[r % len(kinds) :] + kinds[: r % len(kinds)]:
                    for clients in (1, args.clients):
                        n += 1
                        run = cold(kind, work, upstream, shared, size, clients, n, args.baseline)
                        results.setdefault(kind, {}).setdefault(str(clients), []).append(run)
            for kind, by in results.items():
                one = statistics.median(r.seconds for r in by["1"])
                many = statistics.median(r.seconds for r in by[str(args.clients)])
                warm = statistics.median(r.warm_seconds for r in by[str(args.clients)])
                gets = [r.upstream_gets for r in by[str(args.clients)]]
                cpu1 = statistics.median(r.cpu_per_gib for r in by["1"])
                cpun = statistics.median(r.cpu_per_gib for r in by[str(args.clients)])
                cpuw = statistics.median(r.warm_cpu_per_gib for r in by[str(args.clients)])
                curl = statistics.median(r.client_cpu_per_gib for r in by[str(args.clients)])
                print(
                    f"{kind:13s} cold: 1 client {one:6.2f}s, {args.clients} clients {many:6.2f}s"
                    f" (ratio {many / one:5.2f}); warm: {args.clients} clients {warm:6.2f}s"
                    f" (cold/warm {many / warm:4.2f}); upstream GETs per cold"
                    f" {args.clients}-client run: {gets}"
                )
                print(
                    f"{'':13s} server CPU s/GiB sent: cold 1 client {cpu1:.2f},"
                    f" cold {args.clients} clients {cpun:.2f}, warm {args.clients} clients {cpuw:.2f};"
                    f" the curls' own CPU s/GiB received (cold {args.clients}) {curl:.2f}"
                )
            print(f"== one client, a {args.large_mib} MiB blob ({args.rounds} rounds)")
            gib = large / (1 << 30)
            direct: list[float] = []
            pulls: dict[str, tuple[list[float], list[float], list[float], list[float]]] = {}
            for r in range(args.rounds):
                direct.append(
                    pull_all(f"{upstream.url}/v2/{REPO}/blobs/{big}", 1, large, big, work / "s")
                )
                ours = [k for k in kinds if k != "go"]
                for kind in ours[r % len(ours) :] + ours[: r % len(ours)]:
                    n += 1
                    cold_s, warm_s, cold_cpu, warm_cpu = pulls.setdefault(kind, ([], [], [], []))
                    server = start_proxy(kind, work, upstream, n, args.baseline)
                    try:
                        url = f"{server.url}/v2/{REPO}/blobs/{big}"
                        cpu = server_cpu(server)
                        cold_s.append(pull_all(url, 1, large, big, work / "s"))
                        cpu, before = server_cpu(server), cpu
                        cold_cpu.append((cpu - before) / gib)
                        warm_s.append(pull_all(url, 1, large, big, work / "s"))
                        warm_cpu.append((server_cpu(server) - cpu) / gib)
                    finally:
                        server.stop()
                        shutil.rmtree(work / f"{kind}-root-{n}", ignore_errors=True)
            d = statistics.median(direct)
            print(f"direct from upstream      {d:6.2f}s  {args.large_mib / d:6.0f} MiB/s")
            for kind, (cold_s, warm_s, cold_cpu, warm_cpu) in pulls.items():
                c, w = statistics.median(cold_s), statistics.median(warm_s)
                print(
                    f"{kind:13s} cold        {c:6.2f}s  {args.large_mib / c:6.0f} MiB/s"
                    f"  (direct/cold {d / c:.2f}; per round {[round(a / b, 2) for a, b in zip(direct, cold_s, strict=True)]})"
                    f"  server CPU {statistics.median(cold_cpu):.2f} s/GiB"
                )
                print(
                    f"{kind:13s} warm        {w:6.2f}s  {args.large_mib / w:6.0f} MiB/s"
                    f"  (direct/warm {d / w:.2f})"
                    f"  server CPU {statistics.median(warm_cpu):.2f} s/GiB"
                )
        finally:
            upstream.stop()


if __name__ == "__main__":
    main()
