"""``ocistore gc --delete-untagged`` beside ``docker-registry garbage-collect --delete-untagged``.

Builds a synthetic tree through the HTTP API of ``ocistore serve`` (two
workers): ``--repos`` repositories of 8 tagged and 4 untagged image manifests,
each a config and 4 small layers, 30 % of the layers reused from earlier
images of the same repository (the issue's size is ``--repos 500``: 6,000
manifests, about 29,000 blobs). Then, ``--rounds`` times, in alternating
order, it copies the tree twice and collects one copy with each program,
timing the whole process and reading its peak RSS and CPU time (GNU ``time``). ocistore
runs as installed, its modules' bytecode compiled beforehand
(``PYTHONDONTWRITEBYTECODE`` may be set, and it would compile its sources on
every start). Both see the same tree with nothing serving it, so ocistore runs with ``--grace 0
--settle 0`` (a serving root adds the settle wait, 5 s by default). It also
checks that both left the same blobs.

With ``--s3`` it does the same on S3: a moto server started here (its
requests counted per kind), the tree uploaded once to a source bucket, and
per round and program a fresh bucket filled by server-side copies of every
object; ``docker-registry`` (its ``s3`` driver, ``AWS_CA_BUNDLE`` removed
from its environment) and ``ocistore gc --config`` (``storage.s3``) collect
their bucket. moto lists by scanning every key of the bucket, so a listing
costs more with the tree's size than on S3 itself: the request counts are
printed beside the times. ``--s3-repos`` sizes the S3 tree (moto is slow).

    .venv/bin/python benchmarks/gc.py [--repos 50] [--rounds 3] [--workers 16] [--tree DIR]
    .venv/bin/python benchmarks/gc.py --s3 [--s3-repos 20] [--rounds 2]
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import http.client
import importlib.util
import json
import os
import random
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

MT = "application/vnd.oci.image.manifest.v1+json"
CONFIG_MT = "application/vnd.oci.image.config.v1+json"
LAYER_MT = "application/vnd.oci.image.layer.v1.tar"
OCISTORE = [str(Path(sys.executable).with_name("ocistore"))]
GO = shutil.which("docker-registry")
TIME = shutil.which("time") or "/usr/bin/time"


def compile_package() -> None:
    """Write the bytecode of ocistore's modules beside them, as pip does when it installs a
    package (``PYTHONDONTWRITEBYTECODE`` may be set): the runs then time the collector, not
    the compiling of its sources on every start."""
    spec = importlib.util.find_spec("ocistore")
    assert spec is not None and spec.origin is not None
    package = str(Path(spec.origin).parent)
    subprocess.run([sys.executable, "-m", "compileall", "-q", package], check=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def config(root: Path, port: int) -> str:
    return (
        "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\n"
        f"storage:\n  filesystem:\n    rootdirectory: {root}\n  delete:\n    enabled: true\n"
        "  maintenance:\n    uploadpurging:\n      enabled: false\n"
        f"http:\n  addr: 127.0.0.1:{port}\n  secret: bench\n"
    )


_local = threading.local()


def conn(port: int) -> http.client.HTTPConnection:
    c: http.client.HTTPConnection | None = getattr(_local, "c", None)
    if c is None:
        c = _local.c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    return c


def call(port: int, method: str, path: str, body: bytes = b"", ctype: str = "") -> int:
    c = conn(port)
    headers = {"Content-Type": ctype} if ctype else {}
    c.request(method, path, body=body, headers=headers)
    resp = c.getresponse()
    resp.read()
    return resp.status


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def push_repo(port: int, index: int) -> int:
    rng = random.Random(index)
    name = f"bench/r{index:04d}"
    seen: list[bytes] = []
    blobs = 0
    for m in range(12):
        layers = []
        for _ in range(4):
            if seen and rng.random() < 0.3:
                layers.append(rng.choice(seen))
            else:
                layer = rng.randbytes(rng.randint(200, 2000))
                seen.append(layer)
                layers.append(layer)
        cfg = json.dumps({"architecture": "amd64", "os": "linux", "repo": index, "m": m}).encode()
        for blob in {digest(b): b for b in [cfg, *layers]}.values():
            status = call(
                port,
                "POST",
                f"/v2/{name}/blobs/uploads/?digest={digest(blob)}",
                blob,
                "application/octet-stream",
            )
            assert status == 201, status
            blobs += 1
        doc = {
            "schemaVersion": 2,
            "mediaType": MT,
            "config": {"mediaType": CONFIG_MT, "digest": digest(cfg), "size": len(cfg)},
            "layers": [
                {"mediaType": LAYER_MT, "digest": digest(b), "size": len(b)} for b in layers
            ],
        }
        payload = json.dumps(doc).encode()
        ref = f"v{m}" if m < 8 else digest(payload)
        assert call(port, "PUT", f"/v2/{name}/manifests/{ref}", payload, MT) == 201
    return blobs


def build(root: Path, repos: int, work: Path) -> None:
    port = free_port()
    cfg = work / "build.yml"
    cfg.write_text(config(root, port))
    proc = subprocess.Popen(
        [*OCISTORE, "serve", "--config", str(cfg), "--workers", "2"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if call(port, "GET", "/v2/") == 200:
                    break
            except OSError:
                _local.c = None
            if time.monotonic() > deadline:
                raise RuntimeError("ocistore serve did not start")
            time.sleep(0.1)
        _local.c = None
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda i: push_repo(port, i), range(repos)))
    finally:
        proc.terminate()
        proc.wait()
    shutil.rmtree(root / "ocistore-cache", ignore_errors=True)
    shutil.rmtree(root / "ocistore-locks", ignore_errors=True)


def timed(argv: list[str], env: dict[str, str] | None = None) -> tuple[float, int, float]:
    """Wall seconds, peak RSS (KiB) and CPU seconds (user + system) of one run.

    GNU ``time`` starts the program and reads its ``wait4``: a child forked
    straight from this process would count this process's memory (moto's,
    on S3) in its peak RSS.
    """
    with tempfile.NamedTemporaryFile("r", suffix=".time") as out:
        t0 = time.perf_counter()
        proc = subprocess.run(
            [TIME, "-f", "%M %U %S", "-o", out.name, *argv],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=env,
            check=False,
        )
        elapsed = time.perf_counter() - t0
        if proc.returncode not in (0, 1):
            raise RuntimeError(f"{argv[0]} failed ({proc.returncode}): {proc.stderr.decode()}")
        rss, user, system = out.read().split()[-3:]
    return elapsed, int(rss), float(user) + float(system)


def blobs_of(root: Path) -> set[str]:
    return {p.parent.name for p in (root / "docker/registry/v2/blobs").glob("sha256/*/*/data")}


def report(
    results: dict[str, list[tuple[float, int, float]]], left: dict[str, set[str]], count: int
) -> None:
    for who, runs in results.items():
        secs = [s for s, _, _ in runs]
        cpu = [c for _, _, c in runs]
        print(
            f"{who:9} median {statistics.median(secs):7.2f} s  runs "
            + " ".join(f"{s:.2f}" for s in secs)
            + f"  CPU median {statistics.median(cpu):.2f} s"
            + f"  peak RSS {max(k for _, k, _ in runs) / 1024:.0f} MiB"
        )
    ratio = statistics.median(s for s, _, _ in results["go"]) / statistics.median(
        s for s, _, _ in results["ocistore"]
    )
    cpu_ratio = statistics.median(c for _, _, c in results["go"]) / statistics.median(
        c for _, _, c in results["ocistore"]
    )
    print(
        f"go / ocistore: {ratio:.2f}x wall, {cpu_ratio:.2f}x CPU; same blobs left: {left['go'] == left['ocistore']} "
        f"({len(left['ocistore'])} kept of {count})"
    )
    if left["go"] != left["ocistore"]:
        raise SystemExit("the two collectors left different blobs")


def filesystem(args: argparse.Namespace, work: Path, source: Path, count: int) -> None:
    results: dict[str, list[tuple[float, int, float]]] = {"ocistore": [], "go": []}
    left: dict[str, set[str]] = {}
    compile_package()
    for r in range(args.rounds):
        order = ["ocistore", "go"] if r % 2 == 0 else ["go", "ocistore"]
        for who in order:
            copy = work / f"{who}-{r}"
            subprocess.run(["cp", "-a", str(source), str(copy)], check=True)
            subprocess.run(["sync"], check=False)
            if who == "ocistore":
                argv = [*OCISTORE, "gc", "--root", str(copy), *ocistore_flags(args)]
            else:
                assert GO is not None
                cfg = work / f"go-{r}.yml"
                cfg.write_text(config(copy, free_port()))
                argv = [GO, "garbage-collect", "--delete-untagged", str(cfg)]
            results[who].append(timed(argv))
            left[who] = blobs_of(copy)
            shutil.rmtree(copy)
            print(
                f"  round {r} {who}: {results[who][-1][0]:.2f} s, CPU {results[who][-1][2]:.2f} s, "
                f"load {os.getloadavg()[0]:.1f}"
            )
    print("filesystem driver:")
    report(results, left, count)


def ocistore_flags(args: argparse.Namespace) -> list[str]:
    return [
        "--delete-untagged",
        "--grace",
        "0",
        "--settle",
        "0",
        "--json",
        "--workers",
        str(args.workers),
    ]


class Counter:
    """WSGI middleware counting moto's requests by kind (LIST, GET, HEAD, PUT, DELETE, ...)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.counts: collections.Counter[str] = collections.Counter()
        self.lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        method = environ["REQUEST_METHOD"]
        query = environ.get("QUERY_STRING", "")
        path = environ.get("PATH_INFO", "").strip("/")
        if method == "POST" and "delete" in query:
            kind = "DeleteObjects"
        elif method == "GET" and "/" not in path and ("list-type" in query or "prefix" in query):
            kind = "LIST"
        elif method == "PUT" and environ.get("HTTP_X_AMZ_COPY_SOURCE"):
            kind = "COPY"
        else:
            kind = method
        with self.lock:
            self.counts[kind] += 1
        return self.app(environ, start_response)

    def take(self) -> dict[str, int]:
        with self.lock:
            out = dict(self.counts)
            self.counts.clear()
        return out


def moto_server() -> tuple[Any, Counter, str]:
    import logging

    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import make_server

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    counter = Counter(DomainDispatcherApplication(create_backend_app))
    server = make_server("127.0.0.1", 0, counter, threaded=True, request_handler=MotoRequestHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    host, port = server.server_address[:2]
    return server, counter, f"http://{host}:{port}"


def s3_yaml(endpoint: str, bucket: str) -> str:
    return (
        "  s3:\n    region: us-east-1\n"
        f"    bucket: {bucket}\n    regionendpoint: {endpoint}\n"
        "    accesskey: bench\n    secretkey: bench\n    secure: false\n"
        "    rootdirectory: /bench\n"
    )


def s3(args: argparse.Namespace, work: Path, source: Path) -> None:
    import boto3
    from botocore.config import Config

    server, counter, endpoint = moto_server()
    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="bench",
        aws_secret_access_key="bench",
        config=Config(s3={"addressing_style": "path"}, max_pool_connections=32),
    )

    def keys(bucket: str) -> list[str]:
        out: list[str] = []
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            out += [o["Key"] for o in page.get("Contents") or []]
        return out

    def drop(bucket: str) -> None:
        names = keys(bucket)
        for k in range(0, len(names), 1000):
            batch = [{"Key": n} for n in names[k : k + 1000]]
            client.delete_objects(Bucket=bucket, Delete={"Objects": batch, "Quiet": True})
        client.delete_bucket(Bucket=bucket)

    try:
        t0 = time.perf_counter()
        client.create_bucket(Bucket="source")
        files = [p for p in source.rglob("*") if p.is_file()]

        def upload(p: Path) -> None:
            key = "bench/" + str(p.relative_to(source))
            client.put_object(Bucket="source", Key=key, Body=p.read_bytes())

        with ThreadPoolExecutor(16) as pool:
            list(pool.map(upload, files))
        all_keys = keys("source")
        count = sum(1 for k in all_keys if k.endswith("/data") and "/blobs/" in k)
        print(
            f"S3 tree: {len(all_keys)} objects, {count} blobs "
            f"(uploaded to moto in {time.perf_counter() - t0:.1f} s)"
        )
        results: dict[str, list[tuple[float, int, float]]] = {"ocistore": [], "go": []}
        requests: dict[str, list[dict[str, int]]] = {"ocistore": [], "go": []}
        left: dict[str, set[str]] = {}
        env = {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}
        compile_package()
        for r in range(args.rounds):
            order = ["ocistore", "go"] if r % 2 == 0 else ["go", "ocistore"]
            for who in order:
                bucket = f"{who}-{r}"
                client.create_bucket(Bucket=bucket)

                def copy(key: str, bucket: str = bucket) -> None:
                    client.copy_object(
                        Bucket=bucket, Key=key, CopySource={"Bucket": "source", "Key": key}
                    )

                with ThreadPoolExecutor(16) as pool:
                    list(pool.map(copy, all_keys))
                cfg = work / f"s3-{bucket}.yml"
                if who == "ocistore":
                    cfg.write_text(f"version: 0.1\nstorage:\n{s3_yaml(endpoint, bucket)}")
                    argv = [*OCISTORE, "gc", "--config", str(cfg), *ocistore_flags(args)]
                else:
                    assert GO is not None
                    cfg.write_text(
                        "version: 0.1\nlog:\n  level: error\n"
                        f"storage:\n{s3_yaml(endpoint, bucket)}  delete:\n    enabled: true\n"
                        f"http:\n  addr: 127.0.0.1:{free_port()}\n"
                    )
                    argv = [GO, "garbage-collect", "--delete-untagged", str(cfg)]
                counter.take()
                results[who].append(timed(argv, env))
                requests[who].append(counter.take())
                left[who] = {
                    k.rsplit("/", 2)[1]
                    for k in keys(bucket)
                    if k.endswith("/data") and "/blobs/" in k
                }
                drop(bucket)
                print(
                    f"  round {r} {who}: {results[who][-1][0]:.2f} s, "
                    f"CPU {results[who][-1][2]:.2f} s, load "
                    f"{os.getloadavg()[0]:.1f}, requests {requests[who][-1]}"
                )
        print("S3 driver (moto):")
        report(results, left, count)
        for who, per_run in requests.items():
            total = collections.Counter[str]()
            for run in per_run:
                total.update(run)
            print(
                f"{who:9} requests per run: "
                + ", ".join(f"{k} {v / len(per_run):.0f}" for k, v in sorted(total.items()))
            )
    finally:
        server.shutdown()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repos", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=16, help="ocistore gc --workers")
    parser.add_argument("--s3", action="store_true", help="compare on S3 (moto) instead")
    parser.add_argument("--s3-repos", type=int, default=20, help="repositories of the S3 tree")
    parser.add_argument(
        "--tree",
        type=Path,
        help="keep the built tree in this directory, or reuse it if it is there already",
    )
    args = parser.parse_args()
    if GO is None:
        print("docker-registry is not installed", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="gc-bench-") as tmp:
        work = Path(tmp)
        source = args.tree.resolve() if args.tree else work / "source"
        repos = args.s3_repos if args.s3 else args.repos
        t0 = time.perf_counter()
        built = "reused"
        if not (source / "docker").is_dir():
            build(source, repos, work)
            built = f"built in {time.perf_counter() - t0:.1f} s"
        count = len(blobs_of(source))
        print(f"tree: {repos} repositories, {repos * 12} manifests, {count} blobs ({built})")
        if args.s3:
            s3(args, work, source)
        else:
            filesystem(args, work, source, count)
        print(
            f"load average: {os.getloadavg()[0]:.1f}; own RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024} MiB"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
