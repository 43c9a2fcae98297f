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
* ocistore's RSS growth (all its processes) during the monolithic push;
* with ``--granian``, a second ocistore, "ocistore-granian", on ``--stack
  granian`` (same flags, its own fresh root) through every selected part,
  RSS growth included: the default stack (ocistore's own HTTP/1.1 server) and
  granian measured in the same run, so the choice of stack rests on numbers
  (the table adds its column, its ratio to Go and ocistore / ocistore-granian,
  ``h1/gr``; the targets stay about the default stack);
* pull ceilings on the same file, with the same curl: minimal servers of a few
  lines of Python on a blocking socket (:data:`CEILINGS`): ``sendfile``,
  ``pread`` + ``sendall`` (4 MiB buffer), ``send`` from an mmap of the file,
  and one that sends a buffer from memory without reading the file at all. The
  last is what curl on loopback can take from any server on this machine.

``--only push,chunked,pull,rates`` runs a subset (for iterating on one path).

The servers take turns in each repetition, in an order rotated by one at every
repetition (go-registry, ocistore[, ocistore-granian], then ocistore[, ...],
go-registry, ...): a server that always ran right after another's 1 GiB push
would always meet that push's writeback and a cold page cache, and the
comparison would carry the order's bias instead of the servers'.

Every push is checked (201 and the blob's digest read back by HEAD); every
pull by size. The load average is recorded at every repetition (the machine
may be shared). Run: ``.venv/bin/python benchmarks/http/registry_compare.py
[--size-mib 1024] [--repeat 3]``; it prints the medians against the issue's
targets and writes ``results.json`` and ``chart.png`` beside this script
(``--json``/``--chart`` to put them elsewhere; the chart needs matplotlib, in
the ``dev`` group). Needs docker-registry, curl, ab (apache2-utils) and wrk on PATH.
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
from typing import Final
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
    track_rss: bool = False
    """Record the RSS growth of all its processes during the monolithic push (ocistore's stacks:
    the targets bound it; Go's is not ours to bound)."""
    root: Path | None = None
    """Its storage root (registries only): where the blob it serves lies, for the own-file ceiling."""

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
                req = urllib.request.Request(self.url + "/v2/", method="HEAD")
                with urllib.request.urlopen(req, timeout=1) as r:
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

    def pids(self) -> list[int]:
        """Every process in the server's session (workers included)."""
        assert self.proc is not None
        found = []
        for pid in os.listdir("/proc"):
            try:
                if pid.isdigit() and os.getsid(int(pid)) == self.proc.pid:
                    found.append(int(pid))
            except OSError:
                continue
        return found

    def rss(self, pids: list[int] | None = None) -> int:
        """Resident bytes of ``pids`` (default: every process of the server's session)."""
        total = 0
        for pid in self.pids() if pids is None else pids:
            try:
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
    return Server("go-registry", [binary, "serve", str(cfg)], port, root=root)


def ocistore_server(root: Path, workers: int, *, stack: str = "") -> Server:
    """``ocistore serve`` on its default stack, or on ``stack`` (named ``ocistore-<stack>``).

    Both run with the same flags, so that the stack is the only difference.
    """
    port = free_port()
    exe = Path(sys.executable).with_name("ocistore")
    argv = [str(exe), "serve", "--root", str(root), "--addr", f"127.0.0.1:{port}"]
    argv += ["--log-level", "error", "--workers", str(workers), "--delete-enabled"]
    if stack:
        argv += ["--stack", stack]
    name = f"ocistore-{stack}" if stack else "ocistore"
    return Server(name, argv, port, track_rss=True, root=root)


GRANIAN = "ocistore-granian"
"""The name of ``ocistore serve --stack granian`` (``--granian``) in the table and results."""


def rotated(servers: list[Server], rep: int) -> list[Server]:
    """The order of repetition ``rep``: ``servers`` rotated left by ``rep``.

    Each server then follows each other one in turn, so none always runs right after the same
    server's push (its writeback, its page-cache churn).
    """
    k = rep % len(servers)
    return servers[k:] + servers[:k]


CEILING_SERVER = r"""
import mmap, os, socket, sys
kind, port, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
size = os.path.getsize(path)
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", port))
srv.listen(8)
buf = bytearray(4 << 20)
view = memoryview(buf)
while True:
    conn, _ = srv.accept()
    head = b""
    while b"\r\n\r\n" not in head:
        got = conn.recv(65536)
        if not got:
            break
        head += got
    if not head.startswith(b"GET"):
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        conn.close()
        continue
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % size)
    fd = os.open(path, os.O_RDONLY)
    pos = 0
    if kind == "mmap":
        m = mmap.mmap(fd, size, prot=mmap.PROT_READ)
        mv = memoryview(m)
        while pos < size:
            pos += conn.send(mv[pos : pos + (1 << 20)])
        mv.release()
        m.close()
    while pos < size:
        if kind == "sendfile":
            pos += os.sendfile(conn.fileno(), fd, pos, size - pos)
        elif kind == "memory":
            pos += conn.send(view[: min(len(view), size - pos)])
        else:
            n = os.preadv(fd, [view], pos)
            conn.sendall(view[:n])
            pos += n
    os.close(fd)
    conn.close()
"""

CEILINGS = {
    "sendfile": "sendfile(2) of the whole file",
    "copy": "pread into a 4 MiB buffer, then send",
    "mmap": "send from an mmap of the file, 1 MiB at a time (one copy in the server)",
    "memory": "the same 4 MiB buffer sent over and over, no file read at all",
}
"""Minimal servers pulled by the same curl in the same run: what any server could reach here."""


def blob_file(root: Path, digest: str) -> Path:
    """Where distribution's layout (both registries use it) keeps a blob's bytes."""
    alg, hexd = digest.split(":", 1)
    return root / "docker/registry/v2/blobs" / alg / hexd[:2] / hexd / "data"


def own_file_ceiling(server: Server, digest: str, size: int) -> float:
    """The mmap ceiling server on ``server``'s own copy of the blob, pulled once, right after it.

    The shared ceilings read the benchmark's source file, whose pages have
    been read many times; a registry reads the copy it has just written. On
    this VM (virtio-balloon free page reporting) how fast pages read and
    write depends on their history, so this line says what the same minimal
    server gets from the very file the registry served.
    """
    assert server.root is not None
    c = ceiling_server("mmap", blob_file(server.root, digest))
    c.start()
    try:
        return pull_url(c.url + "/", size)
    finally:
        c.stop()


def ceiling_server(kind: str, path: Path) -> Server:
    """A minimal file server (one of :data:`CEILINGS`) for the pull ceiling."""
    port = free_port()
    return Server(
        f"ceiling-{kind}", [sys.executable, "-c", CEILING_SERVER, kind, str(port), str(path)], port
    )


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


def pull_url(url: str, size: int) -> float:
    out = subprocess.run(
        ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code} %{size_download} %{speed_download}",
         url],
        capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    assert out[0] == "200" and int(out[1]) == size, out
    return float(out[2]) / 1e6


PULL_SETTLE: Final = 1.0
"""Seconds between a server's push and its pulls.

A 1 GiB pull lasts a quarter of a second here, so whatever the kernel still
does right after the push (the journal, writeback of metadata, freeing the
deleted blob's blocks) on the two shared cores weighed on it: pulls right
after the push measured 1.8-2.3 GB/s for every server while the same mmap
server on the same file a moment later took 3.4-4.0 GB/s.
"""

PULLS: Final = 3
"""Pulls per server and repetition (each a sample): one quarter-second pull is too easily
disturbed."""


def pull(server: Server, digest: str, size: int) -> float:
    return pull_url(f"{server.url}/v2/{REPO}/blobs/{digest}", size)


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
    """``action()`` and the server's peak RSS growth meanwhile (its processes read every 50 ms).

    The processes are listed once, before: scanning all of /proc every 50 ms
    would cost the shared cores more than the sampling of a few status files.
    """
    pids = server.pids()
    base = server.rss(pids)
    peak = base
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, server.rss(pids))
            time.sleep(0.05)

    t = threading.Thread(target=sample)
    t.start()
    try:
        value = action()
    finally:
        stop.set()
        t.join()
    return value, peak - base


HERE = Path(__file__).resolve().parent

THROUGHPUT = ["push_monolithic_MBps", "push_chunked_MBps", "pull_MBps"]
RATES = [
    "head_blob_ab_rps",
    "get_manifest_ab_rps",
    "get_small_blob_wrk_rps",
    "get_manifest_wrk_rps",
]


@dataclass(frozen=True)
class Target:
    """One of issue 5's targets: ocistore's median >= ``factor`` x the median of ``against``."""

    metric: str
    factor: float
    against: str  # "go-registry", "disk" (dd), or "" (an absolute bound)
    against_metric: str = ""
    at_most: bool = False  # the bound is an upper one (RSS growth)

    def reference(self, res: Results) -> float:
        if not self.against:
            return self.factor
        return self.factor * res.median(self.against, self.against_metric or self.metric)

    def met(self, res: Results) -> bool:
        value, bound = res.median("ocistore", self.metric), self.reference(res)
        return value <= bound if self.at_most else value >= bound

    def describe(self) -> str:
        if not self.against:
            return f"<= {self.factor:g} MiB"
        name = "dd" if self.against == "disk" else "Go"
        return f">= {self.factor:g} x {name}"


TARGETS = [
    Target("push_monolithic_MBps", 0.85, "disk", "dd_fdatasync_MBps"),
    Target("push_monolithic_MBps", 2.5, "go-registry"),
    Target("push_chunked_MBps", 2.5, "go-registry"),
    Target("pull_MBps", 2.0, "go-registry"),
    Target("head_blob_ab_rps", 8.0, "go-registry"),
    Target("get_manifest_ab_rps", 8.0, "go-registry"),
    Target("rss_growth_MiB", 64.0, "", at_most=True),
]


def summary(res: Results, args: argparse.Namespace, loads: list[float]) -> dict[str, object]:
    medians = {
        server: {m: res.median(server, m) for m in metrics} for server, metrics in res.rows.items()
    }
    targets = [
        {
            "metric": t.metric,
            "target": t.describe(),
            "ocistore": res.median("ocistore", t.metric),
            "bound": t.reference(res),
            "met": t.met(res),
        }
        for t in TARGETS
    ]
    config: dict[str, object] = {
        "size_mib": args.size_mib,
        "chunk_mib": args.chunk_mib,
        "repeat": args.repeat,
        "ab_requests": args.requests,
        "wrk_seconds": args.seconds,
        "ocistore_workers": args.workers,
        "cpus": os.cpu_count(),
    }
    out: dict[str, object] = {
        "config": config,
        "load_average_1min": loads,
        "medians": medians,
        "targets": targets,
        "samples": res.rows,
    }
    if GRANIAN in res.rows:
        # Added keys only, and only with --granian: readers of the two-server file keep working.
        config["granian"] = True
        out["ocistore_vs_granian"] = {
            m: res.median("ocistore", m) / res.median(GRANIAN, m)
            for m in res.rows[GRANIAN]
            if res.median(GRANIAN, m)
        }
    return out


def print_table(res: Results, args: argparse.Namespace, loads: list[float]) -> None:
    print(
        f"\n{args.size_mib} MiB blob, {args.chunk_mib} MiB chunks, medians of {args.repeat}, "
        f"ocistore workers={args.workers}, load average (1 min) "
        f"{min(loads):.2f}-{max(loads):.2f}"
    )
    dd = res.median("disk", "dd_fdatasync_MBps")
    print(f"disk durable write (dd conv=fdatasync): {dd:.0f} MB/s")
    go_pull = res.median("go-registry", "pull_MBps")
    print("pull ceilings on the same file with curl (minimal servers):")
    for kind, what in CEILINGS.items():
        c = res.median(f"ceiling-{kind}", "pull_MBps")
        ratio = c / go_pull if go_pull else float("nan")
        print(f"  {kind:<9} {c:>7.0f} MB/s  {ratio:.2f} x Go  ({what})")
    own = [n for n in res.rows if n.startswith("ceiling-own-")]
    if own:
        print("the mmap ceiling server on each registry's own blob file, right after its pull:")
        for n in own:
            c = res.median(n, "pull_MBps")
            ratio = c / go_pull if go_pull else float("nan")
            print(f"  {n.removeprefix('ceiling-own-'):<17} {c:>7.0f} MB/s  {ratio:.2f} x Go")
    granian = GRANIAN in res.rows
    head = f"{'metric':<24} {'go-registry':>12} {'ocistore':>12} {'ratio':>7}"
    if granian:
        head += f" {GRANIAN:>17} {'ratio':>7} {'h1/gr':>7}"
    print(head)
    for m in THROUGHPUT + RATES:
        go, oc = res.median("go-registry", m), res.median("ocistore", m)
        ratio = oc / go if go else float("nan")
        line = f"{m:<24} {go:>12.0f} {oc:>12.0f} {ratio:>7.2f}"
        if granian:
            gr = res.median(GRANIAN, m)
            line += f" {gr:>17.0f} {gr / go if go else float('nan'):>7.2f}"
            line += f" {oc / gr if gr else float('nan'):>7.2f}"
        print(line)
    for name in ("ocistore", GRANIAN) if granian else ("ocistore",):
        growth = res.median(name, "rss_growth_MiB")
        print(f"{name} RSS growth during monolithic push: {growth:.1f} MiB")
    print("\ntargets (issue 5):")
    for t in TARGETS:
        value, bound = res.median("ocistore", t.metric), t.reference(res)
        verdict = "met" if t.met(res) else "NOT met"
        print(f"  {t.metric:<22} {t.describe():<14} {value:>9.1f} vs {bound:>9.1f}  {verdict}")


def chart(res: Results, args: argparse.Namespace, loads: list[float], out: Path) -> None:
    """Two panels: throughputs (with dd and the pull ceilings) and request rates."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 5.2), gridspec_kw={"width_ratios": [3, 4]})
    labels = ["push monolithic", "push chunked", "pull (curl)"]
    bars_of = [("go-registry", "#7f8c8d"), ("ocistore", "#2e86de")]
    if GRANIAN in res.rows:
        bars_of.append((GRANIAN, "#f39c12"))
    width = 0.76 / len(bars_of)
    # Bar i's offset from its tick; the targets mark ocistore's bar (the default stack).
    offsets = [(i - (len(bars_of) - 1) / 2) * width for i in range(len(bars_of))]
    target_offset = offsets[1]
    xs = list(range(len(THROUGHPUT)))
    for (server, color), offset in zip(bars_of, offsets, strict=True):
        values = [res.median(server, m) for m in THROUGHPUT]
        bars = ax1.bar([x + offset for x in xs], values, width, label=server, color=color)
        ax1.bar_label(bars, fmt="%.0f", fontsize=8)
    dd = res.median("disk", "dd_fdatasync_MBps")
    ax1.hlines(dd, -0.5, 1.5, colors="#c0392b", linestyles="--", label=f"dd fdatasync {dd:.0f}")
    for kind, style in (("sendfile", ":"), ("copy", "-."), ("mmap", "--"), ("memory", "-")):
        c = res.median(f"ceiling-{kind}", "pull_MBps")
        ax1.hlines(
            c, 1.5, 2.5, colors="#8e44ad", linestyles=style, label=f"pull ceiling, {kind} {c:.0f}"
        )
    for x, m in zip(xs, THROUGHPUT, strict=True):
        go = res.median("go-registry", m)
        factor = 2.0 if m == "pull_MBps" else 2.5
        ax1.plot([x + target_offset], [factor * go], marker="_", markersize=22, color="#27ae60")
    ax1.plot(
        [], [], marker="_", linestyle="none", markersize=14, color="#27ae60", label="target (x Go)"
    )
    ax1.set_xticks(xs, labels)
    ax1.set_ylabel("MB/s (1 GiB blob)")
    ax1.set_title("Throughput")
    ax1.legend(fontsize=7, loc="upper left")
    rate_labels = [
        "HEAD blob\n(ab -k -i)",
        "GET manifest\n(ab -k)",
        "GET small blob\n(wrk)",
        "GET manifest\n(wrk)",
    ]
    xs2 = list(range(len(RATES)))
    for (server, color), offset in zip(bars_of, offsets, strict=True):
        values = [res.median(server, m) for m in RATES]
        bars = ax2.bar([x + offset for x in xs2], values, width, label=server, color=color)
        ax2.bar_label(bars, fmt="%.0f", fontsize=8)
    for x, m in zip(xs2[:2], RATES[:2], strict=True):
        ax2.plot(
            [x + target_offset],
            [8 * res.median("go-registry", m)],
            marker="_",
            markersize=22,
            color="#27ae60",
        )
    ax2.set_xticks(xs2, rate_labels, fontsize=8)
    ax2.set_ylabel("requests/s (32 connections)")
    ax2.set_title("Request rates")
    ax2.legend(fontsize=7)
    what = "ocistore (own HTTP/1.1, and granian)" if GRANIAN in res.rows else "ocistore"
    fig.suptitle(
        f"{what} vs distribution 2.8 on loopback, {os.cpu_count()} cores shared, medians of "
        f"{args.repeat} interleaved runs, load average {min(loads):.1f}-{max(loads):.1f}",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


PARTS = ("push", "chunked", "pull", "rates")
"""What one repetition runs (``--only``): monolithic push with dd and RSS, chunked push, pull
with the ceilings, request rates."""


def run_parts(
    s: Server,
    parts: set[str],
    res: Results,
    ceilings: list[Server],
    src: Path,
    digest: str,
    size: int,
    args: argparse.Namespace,
) -> None:
    """One repetition of the selected parts against one server (the blob is pushed first)."""
    if "push" in parts:
        _delete_blob(s, digest)
        if s.track_rss:
            mbps, growth = rss_peak_during(s, lambda: push_monolithic(s, src, digest, size))
            res.add(s.name, "rss_growth_MiB", growth / (1 << 20))
        else:
            mbps = push_monolithic(s, src, digest, size)
        res.add(s.name, "push_monolithic_MBps", mbps)
    if "chunked" in parts:
        _delete_blob(s, digest)
        res.add(
            s.name, "push_chunked_MBps", push_chunked(s, src, digest, size, args.chunk_mib << 20)
        )
    if not parts & {"push", "chunked"}:
        push_monolithic(s, src, digest, size)  # the blob the reads below need, not recorded
    if "pull" in parts:
        time.sleep(PULL_SETTLE)
        for _ in range(PULLS):
            res.add(s.name, "pull_MBps", pull(s, digest, size))
        if s.root is not None:
            res.add(f"ceiling-own-{s.name}", "pull_MBps", own_file_ceiling(s, digest, size))
        for c in ceilings:
            res.add(c.name, "pull_MBps", pull_url(c.url + "/", size))
    if "rates" in parts:
        manifest_url, config_url = push_manifest(s, digest, size)
        blob_url = f"{s.url}/v2/{REPO}/blobs/{digest}"
        res.add(s.name, "head_blob_ab_rps", ab(blob_url, head=True, requests=args.requests))
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--chunk-mib", type=int, default=16)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--requests", type=int, default=20000, help="ab requests per rate run")
    ap.add_argument("--seconds", type=int, default=5, help="wrk duration per rate run")
    ap.add_argument("--workers", type=int, default=1, help="ocistore worker processes")
    ap.add_argument(
        "--only",
        default=",".join(PARTS),
        help=f"comma-separated parts to run (default all): {', '.join(PARTS)}; "
        "a partial run writes no chart",
    )
    ap.add_argument(
        "--granian",
        action="store_true",
        help=f"also run ocistore serve --stack granian ({GRANIAN}) through every part",
    )
    ap.add_argument("--dir", help="work directory (default: a temp dir under the cwd's disk)")
    ap.add_argument("--json", default=str(HERE / "results.json"), help="samples and medians")
    ap.add_argument("--chart", default=str(HERE / "chart.png"), help="PNG chart ('' for none)")
    args = ap.parse_args()
    for tool in ("curl", "ab", "wrk", "dd"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} not found")
    parts = {p.strip() for p in args.only.split(",") if p.strip()}
    if not parts or parts - set(PARTS):
        sys.exit(f"--only takes some of: {', '.join(PARTS)}")
    size = args.size_mib << 20
    res = Results()
    loads: list[float] = []
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
        if args.granian:
            servers.append(
                ocistore_server(work / "ocistore-granian-root", args.workers, stack="granian")
            )
        ceilings = [ceiling_server(kind, src) for kind in CEILINGS]
        for s in servers + ceilings:
            s.start()
        try:
            for rep in range(args.repeat):
                loads.append(os.getloadavg()[0])
                if "push" in parts:
                    res.add("disk", "dd_fdatasync_MBps", dd_durable(src, work))
                for s in rotated(servers, rep):
                    run_parts(s, parts, res, ceilings, src, digest, size, args)
                print(f"repetition {rep + 1}/{args.repeat} done", file=sys.stderr)
            loads.append(os.getloadavg()[0])
        finally:
            for s in servers + ceilings:
                s.stop()
    print_table(res, args, loads)
    if args.json:
        Path(args.json).write_text(json.dumps(summary(res, args, loads), indent=2) + "\n")
    if args.chart and parts == set(PARTS):
        chart(res, args, loads, Path(args.chart))


if __name__ == "__main__":
    main()
