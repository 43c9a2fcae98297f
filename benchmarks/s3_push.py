"""Push one blob through ocistore (and the Go registry) to S3, beside boto3's own multipart upload.

Starts a moto server, ``ocistore serve`` with ``storage.s3`` and, if
installed, distribution 2.8's ``docker-registry`` with its ``s3`` driver, all
on one bucket; then, in alternating rounds, times:

- ``boto3``: a multipart upload of the bytes (``chunksize`` parts, sequential),
- ``ocistore``: POST + one streamed PATCH + PUT of the same bytes over HTTP,
- ``go``: the same requests to the Go registry;
- ``boto3+move``: boto3 doing what a registry's commit adds on this layout
  (distribution's and ocistore's alike): the multipart upload, then a move
  to the blob's key: a multipart copy in ``multipartcopychunksize`` ranges
  (distribution's defaults: 32 MiB, above 32 MiB), its completion and the
  delete of the upload's object. The floor for any registry on this bucket.

Each registry has its own ``rootdirectory`` on the bucket: a registry's
commit skips its move when the blob is at its key already (distribution's
``moveBlob`` and ocistore's alike), so on a shared root whichever of the two
pushed a round's bytes second did no copy (``--shared-root`` reproduces that).
moto runs behind a counter: ``--counts`` prints, per push, moto's requests by
S3 operation with their server-side seconds and bytes.

Each push is checked (the registry answers 201 with the right digest; the
boto3 object hashes right) and the medians are printed with ocistore's ratio
to each (above 1: ocistore faster).

    .venv/bin/python benchmarks/s3_push.py [--mib 256] [--rounds 3] [--counts]
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import http.client
import logging
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
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config
from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import make_server

from s3_config import s3_yaml

MiB = 1024 * 1024
CHUNK = 10 * MiB


def operation(environ: dict[str, Any]) -> str:
    """The S3 operation a request to moto is (path-style addressing)."""
    method = environ["REQUEST_METHOD"]
    query = urllib.parse.parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
    key = "/" in environ.get("PATH_INFO", "").strip("/")
    copy = bool(environ.get("HTTP_X_AMZ_COPY_SOURCE"))
    if method == "PUT" and "partNumber" in query:
        return "UploadPartCopy" if copy else "UploadPart"
    if method == "PUT":
        return "CopyObject" if copy else "PutObject"
    if method == "POST" and "uploads" in query:
        return "CreateMultipartUpload"
    if method == "POST" and "uploadId" in query:
        return "CompleteMultipartUpload"
    if method == "POST" and "delete" in query:
        return "DeleteObjects"
    if method == "DELETE":
        return "AbortMultipartUpload" if "uploadId" in query else "DeleteObject"
    if method == "GET" and not key:
        return "ListMultipartUploads" if "uploads" in query else "ListObjects"
    if method == "GET":
        return "ListParts" if "uploadId" in query else "GetObject"
    if method == "HEAD":
        return "HeadObject" if key else "HeadBucket"
    return method


class Counter:
    """WSGI middleware over moto: per S3 operation, the requests, server-side seconds and bytes.

    Bytes are those of request and response bodies, plus for a copy the
    range it names (``x-amz-copy-source-range``; 0 for a whole-object copy).
    """

    def __init__(self, app: Any) -> None:
        self.app = app
        self.lock = threading.Lock()
        self.stats: dict[str, list[float]] = collections.defaultdict(lambda: [0, 0.0, 0, 0, 0])

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        op = operation(environ)
        t0 = time.perf_counter()
        body_in = int(environ.get("CONTENT_LENGTH") or 0)
        copied = 0
        if rng := environ.get("HTTP_X_AMZ_COPY_SOURCE_RANGE"):
            first, last = rng.removeprefix("bytes=").split("-")
            copied = int(last) - int(first) + 1
        out = 0
        try:
            for chunk in self.app(environ, start_response):
                out += len(chunk)
                yield chunk
        finally:
            with self.lock:
                row = self.stats[op]
                row[0] += 1
                row[1] += time.perf_counter() - t0
                row[2] += body_in
                row[3] += out
                row[4] += copied

    def take(self) -> dict[str, list[float]]:
        with self.lock:
            out = dict(self.stats)
            self.stats.clear()
        return out


def print_counts(name: str, stats: dict[str, list[float]]) -> None:
    print(f"  {name}: S3 requests moto served (count, server s, MiB in, MiB out, MiB copied)")
    for op, (n, secs, got, sent, copied) in sorted(stats.items(), key=lambda kv: -kv[1][1]):
        print(
            f"    {op:<24}{int(n):>5} {secs:>8.2f} {got / MiB:>9.1f} {sent / MiB:>8.1f}"
            f" {copied / MiB:>9.1f}"
        )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def start(argv: list[str], port: int, log: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/v2/")
            if conn.getresponse().status == 200:
                return proc
        except OSError:
            pass
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"{argv[0]} did not start:\n{log.read_text()[-2000:]}")


def push(port: int, repo: str, data: bytes, digest: str) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    conn.request("POST", f"/v2/{repo}/blobs/uploads/")
    resp = conn.getresponse()
    resp.read()
    assert resp.status == 202, resp.status
    location = urllib.parse.urlsplit(resp.getheader("Location") or "")
    path = location.path + ("?" + location.query if location.query else "")
    conn.request("PATCH", path, body=data, headers={"Content-Type": "application/octet-stream"})
    resp = conn.getresponse()
    resp.read()
    assert resp.status == 202, resp.status
    location = urllib.parse.urlsplit(resp.getheader("Location") or "")
    sep = "&" if location.query else "?"
    path = (
        location.path + ("?" + location.query if location.query else "") + f"{sep}digest={digest}"
    )
    conn.request("PUT", path, body=b"", headers={"Content-Type": "application/octet-stream"})
    resp = conn.getresponse()
    resp.read()
    assert resp.status == 201, resp.status
    assert resp.getheader("Docker-Content-Digest") == digest


def boto_multipart(s3: Any, bucket: str, key: str, data: bytes) -> None:
    up = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    parts = []
    view = memoryview(data)
    for n, start_at in enumerate(range(0, len(data), CHUNK), 1):
        body = bytes(view[start_at : start_at + CHUNK])
        etag = s3.upload_part(Bucket=bucket, Key=key, UploadId=up, PartNumber=n, Body=body)["ETag"]
        parts.append({"PartNumber": n, "ETag": etag})
    s3.complete_multipart_upload(
        Bucket=bucket, Key=key, UploadId=up, MultipartUpload={"Parts": parts}
    )


COPY_CHUNK = 32 * MiB


def boto_move(s3: Any, bucket: str, source: str, dest: str, size: int) -> None:
    """Server-side move as distribution's S3 driver does it above the copy threshold."""
    up = s3.create_multipart_upload(Bucket=bucket, Key=dest)["UploadId"]
    ranges = [(a, min(size, a + COPY_CHUNK) - 1) for a in range(0, size, COPY_CHUNK)]

    def copy(n: int, first: int, last: int) -> dict[str, Any]:
        resp = s3.upload_part_copy(
            Bucket=bucket,
            Key=dest,
            UploadId=up,
            PartNumber=n,
            CopySource={"Bucket": bucket, "Key": source},
            CopySourceRange=f"bytes={first}-{last}",
        )
        return {"PartNumber": n, "ETag": resp["CopyPartResult"]["ETag"]}

    with ThreadPoolExecutor(16) as pool:
        parts = list(pool.map(lambda nr: copy(nr[0], *nr[1]), enumerate(ranges, 1)))
    s3.complete_multipart_upload(
        Bucket=bucket, Key=dest, UploadId=up, MultipartUpload={"Parts": parts}
    )
    s3.delete_object(Bucket=bucket, Key=source)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--shared-root",
        action="store_true",
        help="both registries on one rootdirectory (the second push of a round then finds "
        "the blob there and skips its move, as distribution and ocistore both do)",
    )
    parser.add_argument("--counts", action="store_true", help="print moto's requests per push")
    args = parser.parse_args()

    def root(name: str) -> str:
        return "/bench" if args.shared_root else f"/bench-{name}"

    logging.getLogger("werkzeug").setLevel(logging.ERROR)

    counter = Counter(DomainDispatcherApplication(create_backend_app))
    moto = make_server("127.0.0.1", 0, counter, threaded=True, request_handler=MotoRequestHandler)
    threading.Thread(target=moto.serve_forever, daemon=True).start()
    endpoint = f"http://127.0.0.1:{moto.server_address[1]}"
    s3 = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="bench",
        aws_secret_access_key="bench",
        config=Config(s3={"addressing_style": "path"}),
    )
    bucket = "push-bench"
    s3.create_bucket(Bucket=bucket)
    work = Path(tempfile.mkdtemp(prefix="s3push-"))
    procs: dict[str, tuple[subprocess.Popen[bytes], int]] = {}
    try:
        port = free_port()
        (work / "oci.yml").write_text(
            f"version: 0.1\nstorage:\n{s3_yaml(endpoint, bucket, root=root('ocistore'), chunksize=CHUNK)}"
            f"  cache:\n    blobdescriptor: inmemory\nhttp:\n  addr: 127.0.0.1:{port}\n"
        )
        script = str(Path(sys.executable).with_name("ocistore"))
        argv = [script, "serve", "--config", str(work / "oci.yml"), "--root", str(work / "l")]
        procs["ocistore"] = (start(argv, port, work / "oci.log", dict(os.environ)), port)
        go = shutil.which("docker-registry")
        if go:
            port = free_port()
            (work / "go.yml").write_text(
                "version: 0.1\nlog:\n  level: error\nstorage:\n"
                f"{s3_yaml(endpoint, bucket, root=root('go'), chunksize=CHUNK)}"
                "  redirect:\n    disable: true\n"
                f"http:\n  addr: 127.0.0.1:{port}\n"
            )
            env = {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}
            procs["go"] = (
                start([go, "serve", str(work / "go.yml")], port, work / "go.log", env),
                port,
            )

        times: dict[str, list[float]] = {
            "boto3": [],
            "boto3+move": [],
            **{name: [] for name in procs},
        }
        for r in range(args.rounds):
            data = os.urandom(args.mib * MiB)
            digest = "sha256:" + hashlib.sha256(data).hexdigest()
            order = list(times) if r % 2 == 0 else list(reversed(times))
            for name in order:
                counter.take()
                t0 = time.perf_counter()
                if name == "boto3":
                    boto_multipart(s3, bucket, f"direct/{r}", data)
                elif name == "boto3+move":
                    boto_multipart(s3, bucket, f"moved/{r}/upload", data)
                    boto_move(s3, bucket, f"moved/{r}/upload", f"moved/{r}/blob", len(data))
                else:
                    push(procs[name][1], f"bench/{name}{r}", data, digest)
                times[name].append(time.perf_counter() - t0)
                if args.counts:
                    print_counts(f"round {r} {name} {times[name][-1]:.2f} s", counter.take())
            for key in (f"direct/{r}", f"moved/{r}/blob"):
                got = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
                assert hashlib.sha256(got).hexdigest() == digest.split(":")[1], key
    finally:
        for proc, _ in procs.values():
            proc.terminate()
            proc.wait(20)
        moto.shutdown()
        shutil.rmtree(work, ignore_errors=True)

    med = {name: statistics.median(t) for name, t in times.items()}
    print(f"{args.mib} MiB, {args.rounds} rounds, medians; ratio = other / ocistore time")
    for name, t in med.items():
        ratio = t / med["ocistore"]
        print(f"{name:<12}{t:>8.2f} s {args.mib / t:>8.1f} MiB/s   ratio {ratio:.2f}")


if __name__ == "__main__":
    main()
