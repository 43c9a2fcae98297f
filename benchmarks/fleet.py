"""Three registry instances on one S3 bucket and one Redis: request counts and concurrent pushes.

Starts a moto server (its own process, ``moto_server``), a ``redis-server``,
three ``ocistore serve`` instances (``storage.s3``, Redis descriptor cache and
upload locks, redirects on) and, if ``docker-registry`` is installed, three
Go registry 2.8.2 instances on the same endpoint and Redis (their own
``rootdirectory`` and Redis database, redirects off, ``AWS_CA_BUNDLE`` removed
from their environment: 2.8's S3 driver panics on it).

1. Counts (``docs/scale.md``): one image (config + ``--layers`` layers of
   ``--layer-kib``) pushed with every request on the next instance, then
   pulled twice; S3 requests are counted from moto's request recorder and
   Redis commands from ``INFO commandstats`` (reset before each step).
2. Push rate: ``--clients`` threads each push ``--pushes`` such images
   (their own layers plus one base layer every image shares; a HEAD first,
   as clients do), every request round-robin over the three instances.
   Rounds alternate between ocistore and Go; printed: images/s, MiB/s, and
   p50/p99 of the whole-image push and of single requests.

    .venv/bin/python benchmarks/fleet.py [--clients 16] [--pushes 4] [--rounds 2]
"""

from __future__ import annotations

import argparse
import collections
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
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from s3_config import s3_yaml

KiB = 1024
MiB = 1024 * KiB
PART = 5 * MiB
OCTET = {"Content-Type": "application/octet-stream"}
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def wait_http(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    parts = urllib.parse.urlsplit(url)
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=2)
            conn.request("GET", parts.path)
            status = conn.getresponse().status
            conn.close()
            if status < 500:
                return
        except OSError:
            pass
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"{url} did not answer:\n{log.read_text()[-2000:]}")


class Procs:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.procs: list[subprocess.Popen[bytes]] = []
        self.names: list[str] = []

    def start(self, name: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        log = self.workdir / f"{name}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env)
        self.procs.append(proc)
        self.names.append(name)
        return proc

    def family(self) -> dict[str, list[int]]:
        """Each started process's pid and its children's (the workers), by name."""
        out: dict[str, list[int]] = {}
        for name, proc in zip(self.names, self.procs, strict=True):
            pids = [proc.pid]
            for entry in Path("/proc").iterdir():
                if entry.name.isdigit():
                    try:
                        fields = (entry / "stat").read_text().rpartition(")")[2].split()
                    except OSError:
                        continue
                    if int(fields[1]) == proc.pid:
                        pids.append(int(entry.name))
            out[name] = pids
        return out

    def cpu(self) -> dict[str, float]:
        """CPU seconds used so far by each started process and its children, by name."""
        tick = os.sysconf("SC_CLK_TCK")
        out: dict[str, float] = {}
        for name, pids in self.family().items():
            total = 0.0
            for pid in pids:
                try:
                    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
                except OSError:
                    continue
                total += (int(fields[11]) + int(fields[12])) / tick
            out[name] = total
        return out

    def stop(self) -> None:
        for proc in reversed(self.procs):
            proc.terminate()
        for proc in reversed(self.procs):
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()


# --- HTTP --------------------------------------------------------------------------


def call(
    method: str, url: str, body: bytes = b"", headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=300)
    try:
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        conn.request(method, target, body=body or None, headers=headers or {})
        resp = conn.getresponse()
        data = b"" if method == "HEAD" else resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
    finally:
        conn.close()


def retarget(location: str, base: str) -> str:
    parts = urllib.parse.urlsplit(location)
    return base + parts.path + (f"?{parts.query}" if parts.query else "")


class Pusher:
    """POST on one instance, the PATCH on the next, the PUT on the third (and so on)."""

    def __init__(self, urls: list[str], start: int, latencies: list[float] | None = None) -> None:
        self.urls = urls
        self.turn = start
        self.latencies = latencies

    def _next(self) -> str:
        url = self.urls[self.turn % len(self.urls)]
        self.turn += 1
        return url

    def _call(self, method: str, url: str, body: bytes = b"", headers: Any = None) -> Any:
        t0 = time.perf_counter()
        got = call(method, url, body, headers)
        if self.latencies is not None:
            self.latencies.append(time.perf_counter() - t0)
        return got

    def blob(self, repo: str, data: bytes) -> None:
        digest = sha256(data)
        status, _, _ = self._call("HEAD", f"{self._next()}/v2/{repo}/blobs/{digest}")
        if status == 200:
            return
        status, h, body = self._call("POST", f"{self._next()}/v2/{repo}/blobs/uploads/")
        assert status == 202, (status, body)
        half = len(data) // 2
        headers = {**OCTET, "Content-Range": f"0-{half - 1}"}
        url = retarget(h["location"], self._next())
        status, h, body = self._call("PATCH", url, data[:half], headers)
        assert status == 202, (status, body)
        loc = retarget(h["location"], self._next())
        loc += ("&" if "?" in loc else "?") + f"digest={digest}"
        status, h, body = self._call("PUT", loc, data[half:], OCTET)
        assert status == 201, (status, body)
        assert h["docker-content-digest"] == digest

    def image(self, repo: str, tag: str, image: Image) -> None:
        for data in image.blobs:
            self.blob(repo, data)
        url = f"{self._next()}/v2/{repo}/manifests/{tag}"
        status, h, body = self._call("PUT", url, image.manifest, {"Content-Type": OCI_MANIFEST})
        assert status == 201, (status, body)
        assert h["docker-content-digest"] == sha256(image.manifest)


class Image:
    def __init__(self, layers: list[bytes]) -> None:
        self.config = json.dumps(
            {"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}
            | {"seed": os.urandom(8).hex()}
        ).encode()
        self.layers = layers
        desc = [
            {
                "mediaType": "application/vnd.oci.image.layer.v1.tar",
                "digest": sha256(x),
                "size": len(x),
            }
            for x in layers
        ]
        self.manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": {
                    "mediaType": "application/vnd.oci.image.config.v1+json",
                    "digest": sha256(self.config),
                    "size": len(self.config),
                },
                "layers": desc,
            }
        ).encode()

    @property
    def blobs(self) -> list[bytes]:
        return [self.config, *self.layers]

    @property
    def size(self) -> int:
        return sum(len(b) for b in self.blobs) + len(self.manifest)


def pull(url: str, repo: str, tag: str, image: Image) -> None:
    status, _, body = call(
        "GET", f"{url}/v2/{repo}/manifests/{tag}", headers={"Accept": OCI_MANIFEST}
    )
    assert status == 200 and body == image.manifest, status
    for data in image.blobs:
        status, h, body = call("GET", f"{url}/v2/{repo}/blobs/{sha256(data)}")
        if status in (302, 307):
            status, h, body = call("GET", h["location"])
        assert status == 200 and body == data, status


# --- counting ----------------------------------------------------------------------


def s3_operation(entry: dict[str, Any]) -> str:
    """The S3 API call a recorded request is (path-style requests, as the drivers send)."""
    method = entry["method"]
    parts = urllib.parse.urlsplit(entry["url"])
    q = urllib.parse.parse_qs(parts.query, keep_blank_values=True)
    headers = {k.lower(): v for k, v in entry["headers"].items()}
    presigned = "X-Amz-Signature" in q
    if method == "PUT":
        if "partNumber" in q:
            op = "UploadPartCopy" if "x-amz-copy-source" in headers else "UploadPart"
        else:
            op = "CopyObject" if "x-amz-copy-source" in headers else "PutObject"
    elif method == "POST":
        op = (
            "CreateMultipartUpload"
            if "uploads" in q
            else "CompleteMultipartUpload"
            if "uploadId" in q
            else "DeleteObjects"
            if "delete" in q
            else "POST"
        )
    elif method == "GET":
        if "list-type" in q or "/" not in parts.path.strip("/"):
            op = "ListObjectsV2"
        elif "uploads" in q:
            op = "ListMultipartUploads"
        elif "uploadId" in q:
            op = "ListParts"
        else:
            op = "GetObject"
    elif method == "DELETE":
        op = "AbortMultipartUpload" if "uploadId" in q else "DeleteObject"
    else:
        op = "HeadObject" if method == "HEAD" else method
    return op + (" (client, presigned)" if presigned else "")


class Counter:
    def __init__(self, moto_url: str, redis_port: int) -> None:
        self.moto = moto_url
        self.redis_port = redis_port

    def redis(self, *args: str) -> str:
        out = subprocess.run(
            ["redis-cli", "-p", str(self.redis_port), *args],
            capture_output=True,
            text=True,
            check=True,
        )
        return out.stdout

    def __call__(self, action: Callable[[], None]) -> tuple[dict[str, int], dict[str, int]]:
        call("POST", f"{self.moto}/moto-api/recorder/reset-recording")
        self.redis("CONFIG", "RESETSTAT")
        call("POST", f"{self.moto}/moto-api/recorder/start-recording")
        try:
            action()
        finally:
            call("POST", f"{self.moto}/moto-api/recorder/stop-recording")
        _, _, raw = call("GET", f"{self.moto}/moto-api/recorder/download-recording")
        s3: collections.Counter[str] = collections.Counter()
        for line in raw.decode().splitlines():
            if line.strip():
                s3[s3_operation(json.loads(line))] += 1
        redis: dict[str, int] = {}
        for line in self.redis("INFO", "commandstats").splitlines():
            if line.startswith("cmdstat_"):
                name, _, rest = line.partition(":")
                calls = int(rest.split(",")[0].split("=")[1])
                cmd = name.removeprefix("cmdstat_").upper()
                if cmd not in ("INFO", "CONFIG|RESETSTAT", "CONFIG"):
                    redis[cmd] = calls
        return dict(sorted(s3.items())), dict(sorted(redis.items()))


def show(label: str, counts: tuple[dict[str, int], dict[str, int]]) -> None:
    s3, redis = counts
    print(f"  {label}: S3 {sum(s3.values())} {s3}")
    print(f"  {' ' * len(label)}  Redis {sum(redis.values())} {redis}")


def count_one(counter: Counter, urls: list[str], image: Image) -> None:
    show("push", counter(lambda: Pusher(urls, 0).image("count/app", "v1", image)))
    show("pull 1", counter(lambda: pull(urls[1], "count/app", "v1", image)))
    show("pull 2", counter(lambda: pull(urls[2 % len(urls)], "count/app", "v1", image)))
    show(
        "re-push (all blobs known)",
        counter(lambda: Pusher(urls, 1).image("count/app", "v2", image)),
    )


def count_steps(counter: Counter, urls: list[str], layer: int) -> None:
    """S3 and Redis requests of each HTTP request of one blob's push and pull."""
    data = os.urandom(layer)
    digest = sha256(data)
    repo = "count/steps"
    state: dict[str, str] = {}
    half = len(data) // 2

    def step(name: str, method: str, url: str, body: bytes = b"", headers: Any = None) -> None:
        def go() -> None:
            status, h, _ = call(method, url, body, headers)
            state["status"] = str(status)
            state["location"] = h.get("location", "")

        counts = counter(go)
        show(f"{name} -> {state['status']}", counts)

    step("HEAD blob (absent)", "HEAD", f"{urls[0]}/v2/{repo}/blobs/{digest}")
    step("POST upload", "POST", f"{urls[1]}/v2/{repo}/blobs/uploads/")
    headers = {**OCTET, "Content-Range": f"0-{half - 1}"}
    step("PATCH half", "PATCH", retarget(state["location"], urls[2]), data[:half], headers)
    loc = retarget(state["location"], urls[0]) + f"&digest={digest}"
    step("PUT rest", "PUT", loc, data[half:], OCTET)
    step("HEAD blob (present)", "HEAD", f"{urls[1]}/v2/{repo}/blobs/{digest}")
    step("GET blob", "GET", f"{urls[2]}/v2/{repo}/blobs/{digest}")
    image = Image([data])
    Pusher(urls, 0).blob(repo, image.config)  # not counted: the manifest's config blob
    step(
        "PUT manifest",
        "PUT",
        f"{urls[0]}/v2/{repo}/manifests/v1",
        image.manifest,
        {"Content-Type": OCI_MANIFEST},
    )
    step("GET manifest", "GET", f"{urls[1]}/v2/{repo}/manifests/v1", b"", {"Accept": OCI_MANIFEST})


# --- the run -----------------------------------------------------------------------


def config(kind: str, endpoint: str, bucket: str, port: int, redis: str, local: Path) -> str:
    db = 0 if kind == "ocistore" else 1  # the two fleets' descriptors must not mix
    text = (
        "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n"
        + s3_yaml(endpoint, bucket, root=f"/{kind}", chunksize=PART)
        + "  delete:\n    enabled: true\n  cache:\n    blobdescriptor: redis\n"
        + "  maintenance:\n    uploadpurging:\n      enabled: false\n"
        + f"redis:\n  addr: {redis}\n  db: {db}\n"
        + f"http:\n  addr: 127.0.0.1:{port}\n  secret: fleet-bench\n"
    )
    if kind == "go":
        text = text.replace("  delete:\n", "  redirect:\n    disable: true\n  delete:\n", 1)
    else:
        text += f"ocistore:\n  cachedir: {local}/cache\n"
    return text


def push_round(
    urls: list[str],
    kind: str,
    clients: int,
    pushes: int,
    layers: int,
    layer: int,
    base: bytes,
    rnd: int,
) -> dict[str, float]:
    """Every client pushes ``pushes`` images at once; returns rate and latencies."""
    images = [
        [Image([base, *(os.urandom(layer) for _ in range(layers))]) for _ in range(pushes)]
        for _ in range(clients)
    ]
    total = sum(i.size for per in images for i in per)
    request_lat: list[list[float]] = [[] for _ in range(clients)]
    image_lat: list[list[float]] = [[] for _ in range(clients)]
    errors: list[BaseException] = []
    barrier = threading.Barrier(clients + 1)

    def client(c: int) -> None:
        pusher = Pusher(urls, c, request_lat[c])
        try:
            barrier.wait()
            for n, image in enumerate(images[c]):
                t0 = time.perf_counter()
                pusher.image(f"bench/{kind}-{rnd}-{c}", f"v{n}", image)
                image_lat[c].append(time.perf_counter() - t0)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
    for t in threads:
        t.start()
    barrier.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    if errors:
        raise errors[0]
    img = sorted(x for per in image_lat for x in per)
    req = sorted(x for per in request_lat for x in per)

    def pct(xs: list[float], p: float) -> float:
        return xs[min(len(xs) - 1, int(p * len(xs)))]

    return {
        "images/s": clients * pushes / elapsed,
        "MiB/s": total / MiB / elapsed,
        "image p50 ms": pct(img, 0.5) * 1000,
        "image p99 ms": pct(img, 0.99) * 1000,
        "request p50 ms": pct(req, 0.5) * 1000,
        "request p99 ms": pct(req, 0.99) * 1000,
        "requests": len(req),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--pushes", type=int, default=4, help="images per client per round")
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--layer-kib", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--instances", type=int, default=3)
    parser.add_argument("--no-go", action="store_true")
    parser.add_argument("--steps", action="store_true", help="count each request of a push")
    parser.add_argument("--counts-only", action="store_true", help="no push-rate rounds")
    args = parser.parse_args()
    bindir = Path(sys.executable).parent
    workdir = Path(tempfile.mkdtemp(prefix="ocistore-fleet-"))
    procs = Procs(workdir)
    try:
        env = dict(os.environ)
        moto_port = free_port()
        moto_env = {**env, "MOTO_RECORDER_FILEPATH": str(workdir / "moto-recording.jsonl")}
        moto = procs.start(
            "moto", [str(bindir / "moto_server"), "-H", "127.0.0.1", "-p", str(moto_port)], moto_env
        )
        endpoint = f"http://127.0.0.1:{moto_port}"
        wait_http(endpoint + "/moto-api/", moto, workdir / "moto.log")
        bucket = "fleet-bench"
        status, _, body = call("PUT", f"{endpoint}/{bucket}")
        assert status == 200, body
        redis_port = free_port()
        redis_argv = ["redis-server", "--bind", "127.0.0.1", "--port", str(redis_port)]
        redis_argv += ["--save", "", "--appendonly", "no", "--dir", str(workdir)]
        procs.start("redis", redis_argv, env)
        redis_addr = f"127.0.0.1:{redis_port}"
        counter = Counter(endpoint, redis_port)
        deadline = time.monotonic() + 20
        while True:
            try:
                if counter.redis("PING").strip() == "PONG":
                    break
            except subprocess.CalledProcessError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("redis-server did not answer")
            time.sleep(0.05)

        fleets: dict[str, list[str]] = {}
        kinds = ["ocistore"] + ([] if args.no_go or not shutil.which("docker-registry") else ["go"])
        for kind in kinds:
            urls = []
            for i in range(args.instances):
                port = free_port()
                local = workdir / f"{kind}-{i}"
                local.mkdir()
                path = workdir / f"{kind}-{i}.yml"
                path.write_text(config(kind, endpoint, bucket, port, redis_addr, local))
                if kind == "go":
                    argv = [str(shutil.which("docker-registry")), "serve", str(path)]
                    kenv = {k: v for k, v in env.items() if k != "AWS_CA_BUNDLE"}
                else:
                    argv = [str(bindir / "ocistore"), "serve", "--config", str(path)]
                    argv += ["--root", str(local)]
                    kenv = env
                proc = procs.start(f"{kind}-{i}", argv, kenv)
                url = f"http://127.0.0.1:{port}"
                wait_http(url + "/v2/", proc, workdir / f"{kind}-{i}.log")
                urls.append(url)
            fleets[kind] = urls

        layer = args.layer_kib * KiB
        print(
            f"{args.instances} instances each, one moto bucket, one redis-server; "
            f"images: config + {args.layers} x {args.layer_kib} KiB layers (+ a shared base "
            "layer in the push-rate rounds)"
        )
        print("\nRequests per push and per pull (one image, every request on the next instance):")
        for kind, urls in fleets.items():
            print(f" {kind}:")
            count_one(counter, urls, Image([os.urandom(layer) for _ in range(args.layers)]))
            if args.steps:
                print(f" {kind}, request by request:")
                count_steps(counter, urls, layer)

        if args.counts_only:
            return
        base = os.urandom(layer)
        results: dict[str, list[dict[str, float]]] = {k: [] for k in fleets}
        for rnd in range(args.rounds):
            for kind, urls in fleets.items():
                before = procs.cpu()
                got = push_round(
                    urls, kind, args.clients, args.pushes, args.layers, layer, base, rnd
                )
                after = procs.cpu()
                images = args.clients * args.pushes
                used = {n: (after[n] - before.get(n, 0.0)) * 1000 / images for n in after}
                got["cpu ms/image: instances"] = sum(
                    v for n, v in used.items() if n.startswith(kind + "-")
                )
                got["moto"] = used["moto"]
                got["redis"] = used["redis"]
                results[kind].append(got)
                print(
                    f"\nround {rnd + 1} {kind}: "
                    + ", ".join(f"{k} {v:.1f}" for k, v in got.items())
                )
        print(f"\nPush rate, {args.clients} clients x {args.pushes} images, median of rounds:")
        for kind, rounds in results.items():
            keys = rounds[0].keys()
            med = {k: statistics.median(r[k] for r in rounds) for k in keys}
            print(f"  {kind:9s} " + ", ".join(f"{k} {v:.1f}" for k, v in med.items()))
        if "go" in results:
            o = statistics.median(r["images/s"] for r in results["ocistore"])
            g = statistics.median(r["images/s"] for r in results["go"])
            print(f"  ocistore / go push rate: {o / g:.2f}")
        print("\nPeak resident memory (VmHWM) of each process and its children (workers):")
        for name, pids in procs.family().items():
            peaks = []
            for pid in pids:
                status = Path(f"/proc/{pid}/status").read_text()
                peak = next(x for x in status.splitlines() if x.startswith("VmHWM"))
                peaks.append(peak.split(":")[1].strip())
            print(f"  {name}: {' + '.join(peaks)}")
    finally:
        procs.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
