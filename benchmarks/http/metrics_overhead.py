"""HEAD and GET manifest rates with metrics and health checks on vs off, side by side.

Two ``ocistore serve`` on one storage root, the same flags, one worker each
(the per-request cost shows most there): ``off`` as shipped, ``on`` with
``http.debug`` (Prometheus enabled) and ``health.storagedriver`` enabled.
A manifest is pushed once; every repetition runs ``ab -k -i -c 32`` (HEAD)
and ``ab -k -c 32`` (GET) against each server, in an order rotated per
repetition; medians over repetitions, and the median of each repetition's
on/off ratio (the two runs it pairs are minutes apart at most, so a load
that drifts over the whole run moves both). Target: >= 0.9.
Before the table, one scrape of ``/metrics`` checks that the "on" server
counted every request it answered.

On a shared machine ``ab``'s rate mostly measures the neighbours' load, so
each run also records the CPU time all processes of the server (the debug
monitor included) spent on it, from ``/proc/<pid>/stat``: CPU microseconds
per request, and the rate those would allow (``1 / cpu``), are what other
jobs on the machine disturb least.

Run: ``.venv/bin/python benchmarks/http/metrics_overhead.py [--repeat 7] [--requests 20000]``
(needs ab on PATH).
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import os
import re
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from registry_compare import OCI_MANIFEST, REPO, Server, ab, free_port, push_manifest, rotated


def _config(work: Path, name: str, root: Path, port: int, debug_port: int | None) -> Path:
    text = (
        "version: 0.1\n"
        "log: {level: error, accesslog: {disabled: true}}\n"
        f"storage: {{filesystem: {{rootdirectory: {root}}}, delete: {{enabled: true}}}}\n"
        f"http:\n  addr: 127.0.0.1:{port}\n  secret: bench-secret\n"
    )
    if debug_port is not None:
        text += f"  debug: {{addr: 127.0.0.1:{debug_port}, prometheus: {{enabled: true}}}}\n"
        text += "health: {storagedriver: {enabled: true, interval: 10s, threshold: 3}}\n"
    path = work / f"{name}.yml"
    path.write_text(text)
    return path


def _server(work: Path, name: str, root: Path, workers: int, debug_port: int | None) -> Server:
    port = free_port()
    cfg = _config(work, name, root, port, debug_port)
    exe = Path(sys.executable).with_name("ocistore")
    argv = [str(exe), "serve", "--config", str(cfg), "--workers", str(workers)]
    return Server(name, argv, port, root=root)


def _push_layer(server: Server, data: bytes) -> str:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    conn = http.client.HTTPConnection("127.0.0.1", server.port)
    conn.request("POST", f"/v2/{REPO}/blobs/uploads/?digest={digest}", body=data)
    r = conn.getresponse()
    r.read()
    assert r.status == 201, r.status
    conn.close()
    return digest


def _cpu_seconds(server: Server) -> float:
    """User plus system CPU time of every process of the server so far."""
    total = 0
    for pid in server.pids():
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / os.sysconf("SC_CLK_TCK")


def _counted(debug_port: int) -> float:
    """Manifest requests the "on" server's /metrics reports (all codes and methods)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{debug_port}/metrics", timeout=5) as r:
        text = r.read().decode()
    pattern = r'^registry_http_requests_total\{[^}]*handler="manifest"[^}]*\} ([\d.e+]+)$'
    return sum(float(m) for m in re.findall(pattern, text, re.MULTILINE))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="metrics-bench-") as tmp:
        work = Path(tmp)
        root = work / "root"
        debug_port = free_port()
        off = _server(work, "off", root, args.workers, None)
        on = _server(work, "on", root, args.workers, debug_port)
        servers = [off, on]
        for s in servers:
            s.start()
        try:
            layer = _push_layer(off, os.urandom(4096))
            url, _ = push_manifest(off, layer, 4096)
            path = url.split(str(off.port), 1)[1]
            rates: dict[tuple[str, str], list[float]] = {}
            cpu: dict[tuple[str, str], list[float]] = {}
            answered = 0
            for rep in range(args.repeat):
                for s in rotated(servers, rep):
                    for kind, head in (("HEAD", True), ("GET", False)):
                        before = _cpu_seconds(s)
                        rps = ab(
                            f"{s.url}{path}", head=head, requests=args.requests, accept=OCI_MANIFEST
                        )
                        used = (_cpu_seconds(s) - before) / args.requests
                        rates.setdefault((s.name, kind), []).append(rps)
                        cpu.setdefault((s.name, kind), []).append(used)
                        if s is on:
                            answered += args.requests
            deadline = time.monotonic() + 10
            while _counted(debug_port) < answered and time.monotonic() < deadline:
                time.sleep(0.2)
            counted = _counted(debug_port)
        finally:
            for s in servers:
                s.stop()
    load = os.getloadavg()[0]
    print(f"{args.repeat} repetitions of {args.requests} requests, {args.workers} worker(s)")
    print(
        f"/metrics counted {counted:.0f} of the {answered} manifest requests the on server answered"
    )
    print("| request | metrics off | metrics on | on / off (paired) | paired, min-max |")
    print("|---|---|---|---|---|")
    for kind in ("HEAD", "GET"):
        a = statistics.median(rates[("off", kind)])
        b = statistics.median(rates[("on", kind)])
        pairs = [y / x for x, y in zip(rates[("off", kind)], rates[("on", kind)], strict=True)]
        print(
            f"| {kind} manifest | {a:,.0f} req/s | {b:,.0f} req/s | "
            f"{statistics.median(pairs):.2f} | {min(pairs):.2f}-{max(pairs):.2f} |"
        )
    print()
    print("| request | CPU per request, off | on | CPU-bound rate on / off |")
    print("|---|---|---|---|")
    for kind in ("HEAD", "GET"):
        a = statistics.median(cpu[("off", kind)])
        b = statistics.median(cpu[("on", kind)])
        print(f"| {kind} manifest | {a * 1e6:.1f} µs | {b * 1e6:.1f} µs | {a / b:.2f} |")
    print(f"(load average at the end: {load:.1f})")


if __name__ == "__main__":
    main()
