"""What waking the client costs the server: HEAD blob under ``ab``, server and client placed.

On this VM a wake-up of a task on the other vCPU costs the waker far more
than the instructions of a request, so the CPU time of one ``ocistore
serve`` worker depends on where the client runs and on how often each
response wakes it. This script starts servers (auth off and htpasswd, as
``auth_overhead.py`` configures them), optionally from other source trees
(``--src NAME=DIR``, e.g. the commit before a change with this checkout's
built extensions copied in), and measures each with ``ab -k -i -c 32``,
rotated, with the server's threads and ``ab`` pinned by ``taskset``:

* ``--placement split``: server on CPU 0, ``ab`` on CPU 1;
* ``--placement same``: both on CPU 1;
* ``--placement free``: no pinning (the scheduler decides).

Per request it prints the server's CPU time (/proc), ``ab``'s CPU time and
its voluntary context switches (times it slept and was woken: GNU
``time``), the server's involuntary switches (preempted, mostly by the
woken ``ab`` on its own CPU) and the request rate. Medians of ``--repeat``.

    .venv/bin/python benchmarks/http/wakeups.py --placement split [--src base=DIR]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from auth_overhead import (
    Server,
    _auth_args,
    _cpu_seconds,
    _headers,
    htpasswd_auth,
    push_image,
    start,
)

PINS = {"split": ("0", "1"), "same": ("1", "1"), "free": (None, None)}


def _involuntary(pid: int) -> int:
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/status") as f:
            for line in f:
                if line.startswith("nonvoluntary_ctxt_switches"):
                    total += int(line.split()[1])
    return total


def _pin(server: Server, cpu: str) -> None:
    for tid in os.listdir(f"/proc/{server.proc.pid}/task"):
        subprocess.run(["taskset", "-p", "-c", cpu, tid], check=True, capture_output=True)


def _measure(server: Server, url: str, n: int, ab_cpu: str | None) -> dict[str, float]:
    pin = ["taskset", "-c", ab_cpu] if ab_cpu else []
    argv = [*pin, "/usr/bin/time", "-f", "%w %U %S", "ab", "-k", "-i", "-c", "32", "-n", str(n)]
    cpu0, inv0 = _cpu_seconds(server.proc.pid), _involuntary(server.proc.pid)
    out = subprocess.run([*argv, *_auth_args(server), url], capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(out.stdout + out.stderr)
    rate = re.search(r"Requests per second:\s+([\d.]+)", out.stdout)
    failed = re.search(r"Failed requests:\s+(\d+)", out.stdout)
    assert rate and failed and failed.group(1) == "0" and "Non-2xx" not in out.stdout, out.stdout
    woken, user, system = out.stderr.strip().splitlines()[-1].split()
    return {
        "rate": float(rate.group(1)),
        "server_us": (_cpu_seconds(server.proc.pid) - cpu0) / n * 1e6,
        "preempted": (_involuntary(server.proc.pid) - inv0) / n,
        "ab_us": (float(user) + float(system)) / n * 1e6,
        "ab_woken": int(woken) / n,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--placement", choices=sorted(PINS), default="split")
    parser.add_argument("--src", action="append", default=[], help="NAME=DIR: also serve DIR")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--requests", type=int, default=30000)
    args = parser.parse_args()
    server_cpu, ab_cpu = PINS[args.placement]
    trees = [("this", None)] + [tuple(s.split("=", 1)) for s in args.src]
    with tempfile.TemporaryDirectory(prefix="ocistore-wakeups-") as tmp:
        work = Path(tmp)
        auth, basic = htpasswd_auth(work)
        servers: list[Server] = []
        try:
            for tree, src in trees:
                env_before = os.environ.pop("PYTHONPATH", None)
                if src:
                    os.environ["PYTHONPATH"] = src
                try:
                    servers.append(start(f"{tree}-off", work, "", ""))
                    servers.append(start(f"{tree}-htpasswd", work, auth, basic))
                finally:
                    os.environ.pop("PYTHONPATH", None)
                    if env_before is not None:
                        os.environ["PYTHONPATH"] = env_before
            urls = {s.name: push_image(s.port, _headers(s))[0] for s in servers}
            if server_cpu:
                for s in servers:
                    _pin(s, server_cpu)
            runs: dict[str, list[dict[str, float]]] = {}
            loads = []
            for rep in range(args.repeat):
                loads.append(os.getloadavg()[0])
                for s in servers[rep % len(servers) :] + servers[: rep % len(servers)]:
                    runs.setdefault(s.name, []).append(
                        _measure(s, urls[s.name], args.requests, ab_cpu)
                    )
        finally:
            for s in servers:
                s.proc.terminate()
                s.proc.wait(10)
    print(f"placement {args.placement}; load average {min(loads):.1f} .. {max(loads):.1f}")
    print(
        f"{'server':18} {'req/s':>7} {'server µs':>9} {'preempted':>9}"
        f" {'ab µs':>6} {'ab woken':>8}  (per request, medians of {args.repeat})"
    )
    for name, values in runs.items():
        m = {k: statistics.median(v[k] for v in values) for k in values[0]}
        print(
            f"{name:18} {m['rate']:7.0f} {m['server_us']:9.1f} {m['preempted']:9.3f}"
            f" {m['ab_us']:6.1f} {m['ab_woken']:8.3f}"
        )


if __name__ == "__main__":
    main()
