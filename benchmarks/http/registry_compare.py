"""ocistore serve vs the Go registry (distribution 2.8, Debian ``docker-registry``), side by side.

Both servers run on loopback over their own fresh filesystem root (Go: inmemory
descriptor cache, access log off; ocistore: its defaults, LMDB cache) and get
the same clients in one run, interleaved, repeated; medians are reported:

* ``dd conv=fdatasync`` of the same bytes: the disk's durable write speed,
  the physical limit of a push (both registries fsync a committed blob);
* push monolithic: POST, then one PUT ``?digest=`` with the whole body (curl -T);
* push chunked: POST, PATCHes of ``--chunk-mib`` with Content-Range, final PUT
  (one keep-alive connection, ``http.client``);
* pull: GET of the blob with curl to /dev/null;
* HEAD blob and GET manifest request rates: ``ab -k -i -c 32`` / ``ab -k -c 32``,
  and ``wrk -c 32``;
* ocistore's RSS growth (all its processes) during the monolithic push.

Every push is checked (201 and the blob's digest read back by HEAD); every
pull by size. Run: ``.venv/bin/python benchmarks/http/registry_compare.py
[--size-mib 1024] [--repeat 3] [--json out.json]``. Needs docker-registry, curl,
ab (apache2-utils) and wrk on PATH.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

REPO = "bench/blob"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


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
    blobdescriptor: inmemory
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: 127.0.0.1:{port}
  secret: bench-secret
"""


@dataclass
class Server:
    name: str
    argv: list[str]
    port: int
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            self.argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(self.url + "/v2/", timeout=1) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} did not start")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.proc is None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def rss(self) -> int:
        """Resident bytes of every process in the server's session (workers included)."""
        assert self.proc is not None
        total = 0
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                if os.getsid(int(pid)) != self.proc.pid:
                    continue
                with open(f"/proc/{pid}/status") as f:
                    for line in f:
                        if line.startswith("VmRSS:"):
                            total += int(line.split()[1]) * 1024
            except (OSError, ValueError):
                continue
        return total


def go_server(root: Path, work: Path) -> Server:
    port = free_port()
    cfg = work / "go-config.yml"
    cfg.write_text(GO_CONFIG.format(root=root, port=port))
    binary = shutil.which("docker-registry")
    if binary is None:
        sys.exit("docker-registry not found (apt-get install docker-registry)")
    return Server("go-registry", [binary, "serve", str(cfg)], port)


def ocistore_server(root: Path, workers: int) -> Server:
    port = free_port()
    exe = Path(sys.executable).with_name("ocistore")
    argv = [str(exe), "serve", "--root", str(root), "--addr", f"127.0.0.1:{port}"]
    argv += ["--log-level", "error", "--workers", str(workers), "--delete-enabled"]
    return Server("ocistore", argv, port)


# ---------------------------------------------------------------- operations


def _path(location: str) -> str:
    p = urlsplit(location)
    return p.path + (f"?{p.query}" if p.query else "")


def _start(conn: http.client.HTTPConnection) -> str:
    conn.request("POST", f"/v2/{REPO}/blobs/uploads/", headers={"Content-Length": "0"})
    r = conn.getresponse()
    r.read()
    assert r.status == 202, r.status
    return _path(r.headers["Location"])


def _check_blob(server: Server, digest: str, size: int) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", server.port)
    conn.request("HEAD", f"/v2/{REPO}/blobs/{digest}")
    r = conn.getresponse()
    r.read()
    assert r.status == 200 and int(r.headers["Content-Length"]) == size, (r.status, r.headers)
    conn.close()


def _delete_blob(server: Server, digest: str) -> None:
    """Unlink and remove the blob so that the next push really writes it again."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port)
    conn.request("DELETE", f"/v2/{REPO}/blobs/{digest}")
    conn.getresponse().read()
    conn.close()


def push_monolithic(server: Server, src: Path, digest: str, size: int) -> float:
    conn = http.client.HTTPConnection("127.0.0.1", server.port)
    loc = _start(conn)
    conn.close()
    sep = "&" if "?" in loc else "?"
    t0 = time.perf_counter()
    out = subprocess.run(
        [
            "curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "-X", "PUT",
            "-H", "Content-Type: application/octet-stream", "-T", str(src),
            f"{server.url}{loc}{sep}digest={digest}",
        ],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    elapsed = time.perf_counter() - t0
    assert out == "201", out
    _check_blob(server, digest, size)
    return size / elapsed / 1e6


def push_chunked(server: Server, src: Path, digest: str, size: int, chunk: int) -> float:
    data = src.read_bytes()
    view = memoryview(data)
    conn = http.client.HTTPConnection("127.0.0.1", server.port)
    t0 = time.perf_counter()
    loc = _start(conn)
    for first in range(0, size, chunk):
        part = view[first : first + chunk]
        conn.request(
            "PATCH",
            loc,
            body=part,
            headers={
                "Content-Type": "application/octet-stream",
                "Content-Range": f"{first}-{first + len(part) - 1}",
                "Content-Length": str(len(part)),
            },
        )
        r = conn.getresponse()
        r.read()
        assert r.status == 202, r.status
        loc = _path(r.headers["Location"])
    sep = "&" if "?" in loc else "?"
    conn.request("PUT", f"{loc}{sep}digest={digest}", headers={"Content-Length": "0"})
    r = conn.getresponse()
    r.read()
    elapsed = time.perf_counter() - t0
    assert r.status == 201, r.status
    conn.close()
    _check_blob(server, digest, size)
    return size / elapsed / 1e6


def pull(server: Server, digest: str, size: int) -> float:
    out = subprocess.run(
        ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code} %{size_download} %{speed_download}",
         f"{server.url}/v2/{REPO}/blobs/{digest}"],
        capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    assert out[0] == "200" and int(out[1]) == size, out
    return float(out[2]) / 1e6


def push_manifest(server: Server, layer_digest: str, layer_size: int) -> tuple[str, str]:
    """Push a config blob and a manifest over the big layer; return (manifest URL, config URL)."""
    config = b'{"architecture":"amd64","os":"linux"}'
    cdig = "sha256:" + hashlib.sha256(config).hexdigest()
    conn = http.client.HTTPConnection("127.0.0.1", server.port)
    conn.request("POST", f"/v2/{REPO}/blobs/uploads/", headers={"Content-Length": "0"})
    r = conn.getresponse()
    r.read()
    loc = _path(r.headers["Location"])
    sep = "&" if "?" in loc else "?"
    conn.request("PUT", f"{loc}{sep}digest={cdig}", body=config)
    r = conn.getresponse()
    r.read()
    assert r.status == 201
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": cdig,
                "size": len(config),
            },
            "layers": [
                {
                    "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": layer_digest,
                    "size": layer_size,
                }
            ],
        }
    ).encode()
    conn.request(
        "PUT", f"/v2/{REPO}/manifests/latest", body=manifest, headers={"Content-Type": OCI_MANIFEST}
    )
    r = conn.getresponse()
    r.read()
    assert r.status == 201, r.status
    conn.close()
    return f"{server.url}/v2/{REPO}/manifests/latest", f"{server.url}/v2/{REPO}/blobs/{cdig}"


def ab(url: str, *, head: bool, requests: int, accept: str | None = None) -> float:
    argv = ["ab", "-k", "-c", "32", "-n", str(requests)]
    if head:
        argv.append("-i")
    if accept:
        argv += ["-H", f"Accept: {accept}"]
    out = subprocess.run([*argv, url], capture_output=True, text=True, check=True).stdout
    rps = re.search(r"Requests per second:\s+([\d.]+)", out)
    failed = re.search(r"Failed requests:\s+(\d+)", out)
    non2xx = re.search(r"Non-2xx responses:\s+(\d+)", out)
    assert rps and failed and failed.group(1) == "0" and not non2xx, out
    return float(rps.group(1))


def wrk(url: str, *, seconds: int, accept: str | None = None) -> float:
    argv = ["wrk", "-t2", "-c32", f"-d{seconds}s"]
    if accept:
        argv += ["-H", f"Accept: {accept}"]
    out = subprocess.run([*argv, url], capture_output=True, text=True, check=True).stdout
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    assert m and "Non-2xx" not in out, out
    return float(m.group(1))


def dd_durable(src: Path, work: Path) -> float:
    dst = work / "dd.out"
    t0 = time.perf_counter()
    subprocess.run(
        ["dd", f"if={src}", f"of={dst}", "bs=16M", "conv=fdatasync", "status=none"], check=True
    )
    elapsed = time.perf_counter() - t0
    size = dst.stat().st_size
    dst.unlink()
    return size / elapsed / 1e6


@dataclass
class Results:
    rows: dict[str, dict[str, list[float]]] = field(default_factory=dict)

    def add(self, server: str, metric: str, value: float) -> None:
        self.rows.setdefault(server, {}).setdefault(metric, []).append(value)

    def median(self, server: str, metric: str) -> float:
        values = self.rows.get(server, {}).get(metric, [])
        return statistics.median(values) if values else float("nan")


def rss_peak_during(server: Server, action: Callable[[], float]) -> tuple[float, int]:
    base = server.rss()
    peak = base
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, server.rss())
            time.sleep(0.05)

    t = threading.Thread(target=sample)
    t.start()
    try:
        value = action()
    finally:
        stop.set()
        t.join()
    return value, peak - base


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--chunk-mib", type=int, default=16)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--requests", type=int, default=20000, help="ab requests per rate run")
    ap.add_argument("--seconds", type=int, default=5, help="wrk duration per rate run")
    ap.add_argument("--workers", type=int, default=1, help="ocistore worker processes")
    ap.add_argument("--dir", help="work directory (default: a temp dir under the cwd's disk)")
    ap.add_argument("--json", help="write all samples here")
    args = ap.parse_args()
    for tool in ("curl", "ab", "wrk", "dd"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} not found")
    size = args.size_mib << 20
    res = Results()
    with tempfile.TemporaryDirectory(prefix="ocistore-bench-", dir=args.dir or ".") as tmp:
        work = Path(tmp)
        src = work / "blob.bin"
        h = hashlib.sha256()
        with src.open("wb") as f:
            for _ in range(args.size_mib):
                block = os.urandom(1 << 20)
                h.update(block)
                f.write(block)
        digest = "sha256:" + h.hexdigest()
        servers = [
            go_server(work / "go-root", work),
            ocistore_server(work / "ocistore-root", args.workers),
        ]
        for s in servers:
            s.start()
        try:
            for rep in range(args.repeat):
                res.add("disk", "dd_fdatasync_MBps", dd_durable(src, work))
                for s in servers:
                    _delete_blob(s, digest)
                    if s.name == "ocistore":
                        mbps, growth = rss_peak_during(
                            s, lambda s=s: push_monolithic(s, src, digest, size)
                        )
                        res.add(s.name, "rss_growth_MiB", growth / (1 << 20))
                    else:
                        mbps = push_monolithic(s, src, digest, size)
                    res.add(s.name, "push_monolithic_MBps", mbps)
                    _delete_blob(s, digest)
                    res.add(
                        s.name,
                        "push_chunked_MBps",
                        push_chunked(s, src, digest, size, args.chunk_mib << 20),
                    )
                    res.add(s.name, "pull_MBps", pull(s, digest, size))
                    manifest_url, config_url = push_manifest(s, digest, size)
                    blob_url = f"{s.url}/v2/{REPO}/blobs/{digest}"
                    res.add(
                        s.name, "head_blob_ab_rps", ab(blob_url, head=True, requests=args.requests)
                    )
                    res.add(
                        s.name,
                        "get_manifest_ab_rps",
                        ab(manifest_url, head=False, requests=args.requests, accept=OCI_MANIFEST),
                    )
                    res.add(s.name, "get_small_blob_wrk_rps", wrk(config_url, seconds=args.seconds))
                    res.add(
                        s.name,
                        "get_manifest_wrk_rps",
                        wrk(manifest_url, seconds=args.seconds, accept=OCI_MANIFEST),
                    )
                print(f"repetition {rep + 1}/{args.repeat} done", file=sys.stderr)
        finally:
            for s in servers:
                s.stop()
    metrics = [
        "push_monolithic_MBps",
        "push_chunked_MBps",
        "pull_MBps",
        "head_blob_ab_rps",
        "get_manifest_ab_rps",
        "get_small_blob_wrk_rps",
        "get_manifest_wrk_rps",
    ]
    print(
        f"\n{args.size_mib} MiB blob, {args.chunk_mib} MiB chunks, medians of {args.repeat}, "
        f"ocistore workers={args.workers}"
    )
    print(
        f"disk durable write (dd conv=fdatasync): {res.median('disk', 'dd_fdatasync_MBps'):.0f} MB/s"
    )
    print(f"{'metric':<24} {'go-registry':>12} {'ocistore':>12} {'ratio':>7}")
    for m in metrics:
        go, oc = res.median("go-registry", m), res.median("ocistore", m)
        ratio = oc / go if go else float("nan")
        print(f"{m:<24} {go:>12.0f} {oc:>12.0f} {ratio:>7.2f}")
    print(
        f"ocistore RSS growth during monolithic push: {res.median('ocistore', 'rss_growth_MiB'):.1f} MiB"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(res.rows, indent=2))


if __name__ == "__main__":
    main()
