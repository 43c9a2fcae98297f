"""Pull an image through S3 redirects beside the same pull served by ocistore itself.

Starts ``moto_server`` (moto[server], its own process) and two ``ocistore
serve`` processes on one bucket: ``redirect`` (the S3 default: blob GETs
answer 307 with a presigned URL) and ``served`` (``storage.redirect.disable:
true``). One image (a config and ``--layers`` random layers) is pushed once;
then, in alternating rounds, a client pulls it from each: GET the manifest,
then every blob, ``--parallel`` at a time on keep-alive connections, following
a 307 to S3 itself. Every blob is hashed against its digest.

The client counts the body bytes it receives from each host, so "through
ocistore" is measured, not inferred: on the redirected pull the blob bytes
from ocistore must be 0 (the script fails otherwise). The CPU time the
ocistore process tree spent on each pull is read from ``/proc`` (Linux).

    .venv/bin/python benchmarks/s3_redirect.py [--layer-mib 64] [--layers 4] [--rounds 3]
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from s3_config import s3_yaml

MiB = 1024 * 1024
READ = 1 << 20
MANIFEST = "application/vnd.oci.image.manifest.v1+json"
REPO = "bench/redirect"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_http(port: int, path: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", path)
            resp = conn.getresponse()
            resp.read()
            if resp.status < 500:
                return
        except OSError:
            pass
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"{proc.args!r} did not start:\n{log.read_text()[-2000:]}")


def start(argv: list[str], port: int, log: Path, path: str = "/v2/") -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
    wait_http(port, path, proc, log)
    return proc


def cpu_seconds(pid: int) -> float:
    """User + system CPU of ``pid`` and its live descendants (``serve`` forks its workers)."""
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        try:
            stat = Path(f"/proc/{p}/stat").read_text()
            children = Path(f"/proc/{p}/task/{p}/children").read_text().split()
        except FileNotFoundError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        todo += [int(c) for c in children]
    return total


def config_yaml(endpoint: str, bucket: str, port: int, *, redirect: bool) -> str:
    return (
        "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\n"
        "storage:\n"
        + s3_yaml(endpoint, bucket)
        + f"  redirect:\n    disable: {'false' if redirect else 'true'}\n"
        "  cache:\n    blobdescriptor: inmemory\n"
        f"http:\n  addr: 127.0.0.1:{port}\n  secret: bench-secret\n"
    )


def request(
    conn: http.client.HTTPConnection, method: str, path: str, body: bytes = b"", **headers: str
) -> http.client.HTTPResponse:
    conn.request(method, path, body=body or None, headers=headers)
    return conn.getresponse()


def push_image(port: int, blobs: list[bytes]) -> None:
    """Upload every blob (one POST each) and a manifest naming them."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    descs = []
    for data in blobs:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        resp = request(
            conn,
            "POST",
            f"/v2/{REPO}/blobs/uploads/?digest={digest}",
            data,
            **{"Content-Type": "application/octet-stream"},
        )
        resp.read()
        assert resp.status == 201, resp.status
        descs.append({"mediaType": "application/octet-stream", "digest": digest, "size": len(data)})
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": MANIFEST,
            "config": {**descs[0], "mediaType": "application/vnd.oci.image.config.v1+json"},
            "layers": [
                {**d, "mediaType": "application/vnd.oci.image.layer.v1.tar"} for d in descs[1:]
            ],
        }
    ).encode()
    resp = request(
        conn, "PUT", f"/v2/{REPO}/manifests/latest", manifest, **{"Content-Type": MANIFEST}
    )
    resp.read()
    assert resp.status == 201, resp.status


@dataclass
class Counts:
    """Body bytes the client received, by where they came from."""

    manifest_from_ocistore: int = 0
    blobs_from_ocistore: int = 0
    from_s3: int = 0
    redirects: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, **amounts: int) -> None:
        with self.lock:
            for name, n in amounts.items():
                setattr(self, name, getattr(self, name) + n)


class Puller:
    """One worker's keep-alive connections: to ocistore, and to S3 once redirected there."""

    def __init__(self, port: int) -> None:
        self.registry = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
        self.s3: dict[tuple[str, int], http.client.HTTPConnection] = {}

    def blob(self, digest: str, counts: Counts) -> None:
        resp = request(self.registry, "GET", f"/v2/{REPO}/blobs/{digest}")
        source = "blobs_from_ocistore"
        if resp.status == 307:
            resp.read()
            url = urlsplit(resp.getheader("Location") or "")
            key = (url.hostname or "", url.port or 80)
            conn = self.s3.get(key)
            if conn is None:
                conn = self.s3[key] = http.client.HTTPConnection(*key, timeout=600)
            resp = request(conn, "GET", f"{url.path}?{url.query}")
            source = "from_s3"
            counts.add(redirects=1)
        assert resp.status == 200, (digest, resp.status)
        h = hashlib.sha256()
        n = 0
        while chunk := resp.read(READ):
            h.update(chunk)
            n += len(chunk)
        assert "sha256:" + h.hexdigest() == digest, digest
        counts.add(**{source: n})

    def close(self) -> None:
        self.registry.close()
        for conn in self.s3.values():
            conn.close()


def pull(port: int, parallel: int) -> tuple[float, Counts]:
    counts = Counts()
    local = threading.local()
    pullers: list[Puller] = []

    def fetch(digest: str) -> None:
        if not hasattr(local, "puller"):
            local.puller = Puller(port)
            pullers.append(local.puller)
        local.puller.blob(digest, counts)

    t0 = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    resp = request(conn, "GET", f"/v2/{REPO}/manifests/latest", Accept=MANIFEST)
    body = resp.read()
    assert resp.status == 200, resp.status
    counts.add(manifest_from_ocistore=len(body))
    manifest = json.loads(body)
    digests = [manifest["config"]["digest"]] + [d["digest"] for d in manifest["layers"]]
    with ThreadPoolExecutor(parallel) as pool:
        list(pool.map(fetch, digests))
    elapsed = time.perf_counter() - t0
    conn.close()
    for p in pullers:
        p.close()
    return elapsed, counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layer-mib", type=int, default=64)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--parallel", type=int, default=3, help="blobs fetched at once")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    bin_dir = Path(sys.executable).parent
    work = Path(tempfile.mkdtemp(prefix="s3redirect-"))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        mport = free_port()
        endpoint = f"http://127.0.0.1:{mport}"
        procs.append(
            start(
                [str(bin_dir / "moto_server"), "-H", "127.0.0.1", "-p", str(mport)],
                mport,
                work / "moto.log",
                path="/moto-api/",
            )
        )
        bucket = "redirect-bench"
        conn = http.client.HTTPConnection("127.0.0.1", mport, timeout=30)
        resp = request(conn, "PUT", f"/{bucket}")  # moto accepts an unsigned CreateBucket
        resp.read()
        assert resp.status == 200, resp.status
        ports: dict[str, int] = {}
        pids: dict[str, int] = {}
        for name, redirect in (("redirect", True), ("served", False)):
            port = ports[name] = free_port()
            cfg = work / f"{name}.yml"
            cfg.write_text(config_yaml(endpoint, bucket, port, redirect=redirect))
            argv = [str(bin_dir / "ocistore"), "serve", "--config", str(cfg)]
            procs.append(start([*argv, "--root", str(work / name)], port, work / f"{name}.log"))
            pids[name] = procs[-1].pid

        blobs = [os.urandom(4096)] + [os.urandom(args.layer_mib * MiB) for _ in range(args.layers)]
        push_image(ports["redirect"], blobs)
        total = sum(len(b) for b in blobs)

        times: dict[str, list[float]] = {name: [] for name in ports}
        cpu: dict[str, list[float]] = {name: [] for name in ports}
        counts: dict[str, Counts] = {}
        for r in range(args.rounds):
            order = list(ports) if r % 2 == 0 else list(reversed(ports))
            for name in order:
                before = cpu_seconds(pids[name])
                elapsed, c = pull(ports[name], args.parallel)
                cpu[name].append(cpu_seconds(pids[name]) - before)
                times[name].append(elapsed)
                counts[name] = c
        redirected = counts["redirect"]
        if redirected.blobs_from_ocistore or redirected.redirects != len(blobs):
            raise SystemExit(f"the redirected pull moved blob data through ocistore: {redirected}")
    finally:
        for proc in reversed(procs):
            proc.terminate()
            proc.wait(20)
        shutil.rmtree(work, ignore_errors=True)

    print(
        f"pull of {len(blobs)} blobs ({total / MiB:.1f} MiB), {args.parallel} at a time, "
        f"{args.rounds} rounds, medians; bytes are body bytes the client received"
    )
    print(
        f"{'':<10}{'time':>8}{'MiB/s':>9}{'ocistore CPU':>14}"
        f"{'blob B via ocistore':>21}{'B from S3':>13}{'307s':>6}"
    )
    for name, ts in times.items():
        t = statistics.median(ts)
        c = counts[name]
        print(
            f"{name:<10}{t:>7.2f}s{total / MiB / t:>9.1f}{statistics.median(cpu[name]):>13.2f}s"
            f"{c.blobs_from_ocistore:>21,}{c.from_s3:>13,}{c.redirects:>6}"
        )
    print(f"manifest bytes via ocistore per pull: {counts['redirect'].manifest_from_ocistore}")


if __name__ == "__main__":
    main()
