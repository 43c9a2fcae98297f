"""HEAD blob on a warm Redis descriptor cache: ocistore serve vs the Go registry, side by side.

One ``redis-server`` (started here on 127.0.0.1, nothing saved) and one
storage root, shared by every server as in a mixed fleet; each server has
``storage.cache.blobdescriptor: redis`` on that Redis:

* ``go-registry``: distribution 2.8 (Debian ``docker-registry``);
* ``ocistore``: ``ocistore serve`` as configured (its in-process stat cache,
  kept true by inotify, sits in front of the Redis cache on a local root);
* ``ocistore-redis``: the same with the stat cache switched off in the
  launcher, so that every HEAD asks Redis (then checks the link and the data,
  as every hit of a shared cache must).

A small blob is pushed once and HEAD-requested through each server once (the
warm-up fills Redis); then every repetition runs ``ab -k -i -c 32 -n N``
against each server, in an order rotated per repetition. Around each run
Redis's ``INFO commandstats`` is read, so the table also says how many Redis
commands one HEAD cost: that is what shows which layer answered (0: the stat
cache; 3: ocistore's one pipelined repository stat; Go: three stats of three
commands each). Medians over repetitions; every ``ab`` run must have no
failed and no non-2xx answer.

Run: ``.venv/bin/python benchmarks/http/redis_head.py [--repeat 5] [--requests 20000]``
(needs docker-registry, redis-server and ab on PATH).
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import valkey
from registry_compare import REPO, Server, ab, free_port, rotated

GO_CONFIG = """\
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: {root}
  delete:
    enabled: true
  cache:
    blobdescriptor: redis
  maintenance:
    uploadpurging:
      enabled: false
redis:
  addr: 127.0.0.1:{redis_port}
  pool:
    maxidle: 64
    maxactive: 128
    idletimeout: 300s
http:
  addr: 127.0.0.1:{port}
  secret: bench-secret
"""

# ocistore serve with the in-process stat cache off: the Registry then has none.
NO_STAT_CACHE = (
    "import sys; import ocistore.storage.hotcache as h; "
    "h.open_stat_cache = lambda *a, **k: None; "
    "from ocistore.cli import main; sys.exit(main())"
)


def redis_server(work: Path) -> tuple[subprocess.Popen[bytes], int]:
    binary = shutil.which("redis-server")
    if binary is None:
        sys.exit("redis-server not found (apt-get install redis-server)")
    port = free_port()
    proc = subprocess.Popen(
        [
            *(binary, "--bind", "127.0.0.1", "--port", str(port), "--dir", str(work)),
            *("--save", "", "--appendonly", "no", "--logfile", str(work / "redis.log")),
        ],
        stdout=subprocess.DEVNULL,
    )
    client = valkey.Valkey(host="127.0.0.1", port=port)
    deadline = time.monotonic() + 20
    while True:
        try:
            if client.ping():
                break
        except valkey.ConnectionError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise
        time.sleep(0.02)
    client.close()
    return proc, port


def servers(root: Path, work: Path, redis_port: int, workers: int) -> list[Server]:
    out = []
    for name in ("go-registry", "ocistore", "ocistore-redis"):
        port = free_port()
        cfg = work / f"{name}.yml"
        cfg.write_text(GO_CONFIG.format(root=root, port=port, redis_port=redis_port))
        if name == "go-registry":
            binary = shutil.which("docker-registry")
            if binary is None:
                sys.exit("docker-registry not found (apt-get install docker-registry)")
            argv = [binary, "serve", str(cfg)]
        else:
            exe = Path(sys.executable)
            head = (
                [str(exe.with_name("ocistore"))]
                if name == "ocistore"
                else [str(exe), "-c", NO_STAT_CACHE]
            )
            argv = [*head, "serve", "--config", str(cfg), "--workers", str(workers)]
        out.append(Server(name, argv, port, root=root))
    return out


def push_blob(server: Server, data: bytes) -> str:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    conn.request(
        "POST",
        f"/v2/{REPO}/blobs/uploads/?digest={digest}",
        body=data,
        headers={"Content-Type": "application/octet-stream"},
    )
    r = conn.getresponse()
    r.read()
    assert r.status == 201, r.status
    conn.close()
    return digest


def head(server: Server, digest: str, size: int) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    conn.request("HEAD", f"/v2/{REPO}/blobs/{digest}")
    r = conn.getresponse()
    r.read()
    assert r.status == 200 and r.getheader("Content-Length") == str(size), (server.name, r.status)
    conn.close()


def redis_calls(client: valkey.Valkey) -> int:
    stats = client.info("commandstats")
    return sum(int(v["calls"]) for k, v in stats.items() if k != "cmdstat_info")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--requests", type=int, default=20000, help="ab requests per run")
    ap.add_argument("--workers", type=int, default=1, help="ocistore worker processes")
    args = ap.parse_args()
    if shutil.which("ab") is None:
        sys.exit("ab not found (apt-get install apache2-utils)")
    rps: dict[str, list[float]] = {}
    per_head: dict[str, list[float]] = {}
    loads: list[float] = []
    with tempfile.TemporaryDirectory(prefix="redis-head-", dir=".") as tmp:
        work = Path(tmp).resolve()
        redis_proc, redis_port = redis_server(work)
        client = valkey.Valkey(host="127.0.0.1", port=redis_port)
        fleet = servers(work / "root", work, redis_port, args.workers)
        try:
            for s in fleet:
                s.start()
            data = os.urandom(4096)
            digest = push_blob(fleet[1], data)
            for s in fleet:
                head(s, digest, len(data))
            assert client.sismember(f"repository::{REPO}::blobs", digest)
            url = f"/v2/{REPO}/blobs/{digest}"
            for rep in range(args.repeat):
                loads.append(os.getloadavg()[0])
                for s in rotated(fleet, rep):
                    before = redis_calls(client)
                    rate = ab(s.url + url, head=True, requests=args.requests)
                    calls = redis_calls(client) - before
                    rps.setdefault(s.name, []).append(rate)
                    per_head.setdefault(s.name, []).append(calls / args.requests)
                print(f"repetition {rep + 1}/{args.repeat} done", file=sys.stderr)
            loads.append(os.getloadavg()[0])
        finally:
            for s in fleet:
                s.stop()
            client.close()
            redis_proc.terminate()
            redis_proc.wait(10)
    go = statistics.median(rps["go-registry"])
    print(
        f"# ab -k -i -c 32 -n {args.requests}, {args.repeat} repetitions, medians; "
        f"ocistore workers {args.workers}; load average {min(loads):.1f}-{max(loads):.1f}"
    )
    print("| server | HEAD blob req/s | ratio to Go | Redis commands per HEAD | samples |")
    print("|---|---|---|---|---|")
    for name in ("go-registry", "ocistore", "ocistore-redis"):
        med = statistics.median(rps[name])
        samples = ", ".join(f"{r:,.0f}" for r in rps[name])
        print(
            f"| {name} | {med:,.0f} | {med / go:.2f}x | "
            f"{statistics.median(per_head[name]):.2f} | {samples} |"
        )


if __name__ == "__main__":
    main()
