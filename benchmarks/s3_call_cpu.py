"""CPU per S3 call of the driver's hot calls: botocore, obstore and a bare SigV4 path, side by side.

Starts a ``moto_server`` on 127.0.0.1, then times the process's CPU
(``time.process_time``: this process only, not the server's; obstore's
Rust runtime threads included) per call of the calls an image push makes
most — HeadObject, GetObject of a small whole object, PutObject of a small
object with metadata, ListObjectsV2 with a delimiter (one object and 20
common prefixes; ten objects) and of a raw key prefix (``m/1``: what the
driver's write check lists; obstore lists the directory ``m/1/`` instead,
the nearest it can), DeleteObjects of one key — through

- ``botocore, dateutil``: a client made by ``ocistore.driver.s3.make_client``
  with botocore's own timestamp parser (``iso_timestamps=False``: the
  driver's client before);
- ``botocore``: the driver's client (its ISO 8601 / RFC 1123 timestamp parser);
- ``botocore, validation off``: that with parameter validation off too;
- ``botocore, prepared request``: listings only, one request model reused
  (no validation, serialization or endpoint resolution per call);
- ``obstore``: an ``S3Store`` as ``ocistore.driver.s3_fast.fast_store`` builds it;
- ``sigv4 + urllib3``: botocore's signer on a pre-built request over a
  urllib3 pool, XML parsed with ElementTree: the floor of a Python client.

Variants are rotated within each round; the table is the median of the
rounds::

    .venv/bin/python benchmarks/s3_call_cpu.py [--calls 300] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import obstore
import urllib3
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from ocistore.driver.s3 import make_client
from ocistore.driver.s3_options import S3Options

BUCKET = "bench-bucket"
SMALL = b"x" * 100
CALLS = (
    "HeadObject",
    "GetObject 100 B",
    "PutObject 100 B",
    "ListObjectsV2",
    "ListObjectsV2, 10 objects",
    "ListObjectsV2, raw prefix",
    "DeleteObjects 1",
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def options(url: str) -> S3Options:
    return S3Options(
        bucket=BUCKET,
        region="us-east-1",
        regionendpoint=url,
        forcepathstyle=True,
        accesskey="bench",
        secretkey="bench",
        secure=False,
    )


Ops = dict[str, Callable[[int], None]]


def botocore_ops(url: str, validation: bool, iso_timestamps: bool = True) -> Ops:
    client = make_client(options(url), iso_timestamps=iso_timestamps)
    if not validation:
        client.meta.config.parameter_validation = False
    meta = {"ocistore-mtime": "1"}
    return {
        "HeadObject": lambda i: client.head_object(Bucket=BUCKET, Key="k/blob"),
        "GetObject 100 B": lambda i: client.get_object(Bucket=BUCKET, Key="k/blob")["Body"].read(),
        "PutObject 100 B": lambda i: client.put_object(
            Bucket=BUCKET,
            Key=f"w/{i}",
            Body=SMALL,
            Metadata=meta,
            ContentType="application/octet-stream",
            StorageClass="STANDARD",
        ),
        "ListObjectsV2": lambda i: client.list_objects_v2(
            Bucket=BUCKET, Prefix="k/", Delimiter="/"
        ),
        "ListObjectsV2, 10 objects": lambda i: client.list_objects_v2(
            Bucket=BUCKET, Prefix="m/", Delimiter="/"
        ),
        "ListObjectsV2, raw prefix": lambda i: client.list_objects_v2(Bucket=BUCKET, Prefix="m/1"),
        "DeleteObjects 1": lambda i: client.delete_objects(
            Bucket=BUCKET, Delete={"Objects": [{"Key": f"w/{i}"}], "Quiet": True}
        ),
    }


def prepared_ops(url: str) -> Ops:
    """ListObjectsV2 through the driver's client with one request model reused, listings only.

    The operation model, the serialized request and the resolved endpoint of a
    first call are kept and handed to the client's endpoint directly: no
    parameter validation, serialization or endpoint resolution per call;
    signing, sending and parsing are botocore's as before.
    """
    client = make_client(options(url))
    captured: dict[str, Any] = {}

    def grab(params: dict[str, Any], **_: Any) -> None:
        captured.update(params)

    client.meta.events.register("before-call.s3.ListObjectsV2", grab)
    client.list_objects_v2(Bucket=BUCKET, Prefix="k/", Delimiter="/")
    client.meta.events.unregister("before-call.s3.ListObjectsV2", grab)
    model = client.meta.service_model.operation_model("ListObjectsV2")
    endpoint = client._endpoint

    def listing(**query: str) -> Callable[[int], None]:
        def run(i: int) -> None:
            request = {**captured, "context": dict(captured["context"])}
            request["query_string"] = {"list-type": 2, "encoding-type": "url", **query}
            endpoint.make_request(model, request)

        return run

    return {
        "ListObjectsV2": listing(prefix="k/", delimiter="/"),
        "ListObjectsV2, 10 objects": listing(prefix="m/", delimiter="/"),
        "ListObjectsV2, raw prefix": listing(prefix="m/1"),
    }


def obstore_ops(url: str) -> Ops:
    from ocistore.driver.s3_fast import fast_store

    opts = options(url)
    credentials = make_client(opts)._get_credentials()
    assert credentials is not None
    store = fast_store(opts, credentials)
    assert store is not None
    attrs: Any = {
        "Content-Type": "application/octet-stream",
        "Storage-Class": "STANDARD",
        "ocistore-mtime": "1",
    }
    return {
        "HeadObject": lambda i: obstore.get(store, "k/blob", options={"head": True}),
        "GetObject 100 B": lambda i: obstore.get(store, "k/blob").bytes(),
        "PutObject 100 B": lambda i: obstore.put(store, f"w/{i}", SMALL, attributes=attrs),
        "ListObjectsV2": lambda i: obstore.list_with_delimiter(store, "k/"),
        "ListObjectsV2, 10 objects": lambda i: obstore.list_with_delimiter(store, "m/"),
        # object_store lists directories only: the nearest is a listing of "m/1/"
        "ListObjectsV2, raw prefix": lambda i: obstore.list_with_delimiter(store, "m/1"),
        "DeleteObjects 1": lambda i: obstore.delete(store, [f"w/{i}"]),
    }


def raw_ops(url: str) -> Ops:
    """Signed requests with no client around them (what a hand-made client would cost)."""
    pool = urllib3.PoolManager(maxsize=4)
    signer = S3SigV4Auth(Credentials("bench", "bench"), "s3", "us-east-1")

    def call(method: str, path: str, query: str = "", body: bytes = b"", **headers: str) -> Any:
        target = f"{url}/{BUCKET}/{quote(path)}" + (f"?{query}" if query else "")
        request = AWSRequest(method, target, headers=headers, data=body)
        signer.add_auth(request)
        resp = pool.request(
            method, target, body=body or None, headers=dict(request.headers.items())
        )
        if resp.status >= 300:
            raise RuntimeError(resp.status)
        return resp

    def listing(query: str) -> Callable[[int], None]:
        def run(i: int) -> None:
            root = ET.fromstring(call("GET", "", query).data)
            [e.text for e in root.iter("{http://s3.amazonaws.com/doc/2006-03-01/}Key")]

        return run

    def delete(i: int) -> None:
        import base64
        import hashlib

        body = f"<Delete><Quiet>true</Quiet><Object><Key>w/{i}</Key></Object></Delete>".encode()
        md5 = base64.b64encode(hashlib.md5(body).digest()).decode()
        call("POST", "", "delete=", body, **{"Content-MD5": md5})

    return {
        "HeadObject": lambda i: call("HEAD", "k/blob"),
        "GetObject 100 B": lambda i: call("GET", "k/blob").data,
        "PutObject 100 B": lambda i: call(
            "PUT",
            f"w/{i}",
            body=SMALL,
            **{
                "Content-Type": "application/octet-stream",
                "x-amz-storage-class": "STANDARD",
                "x-amz-meta-ocistore-mtime": "1",
            },
        ),
        "ListObjectsV2": listing("delimiter=%2F&list-type=2&prefix=k%2F"),
        "ListObjectsV2, 10 objects": listing("delimiter=%2F&list-type=2&prefix=m%2F"),
        "ListObjectsV2, raw prefix": listing("list-type=2&prefix=m%2F1"),
        "DeleteObjects 1": delete,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=300, help="calls per operation and round")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    port = free_port()
    moto = str(Path(sys.executable).with_name("moto_server"))
    server = subprocess.Popen(
        [moto, "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "AWS_CA_BUNDLE": ""},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        setup = make_client(options(url))
        deadline = time.monotonic() + 60
        while True:
            try:
                setup.create_bucket(Bucket=BUCKET)
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        setup.put_object(Bucket=BUCKET, Key="k/blob", Body=SMALL)
        for n in range(20):
            setup.put_object(Bucket=BUCKET, Key=f"k/dir{n}/x", Body=b"")
        for n in range(10):
            setup.put_object(Bucket=BUCKET, Key=f"m/{n}", Body=SMALL)
        variants: dict[str, Ops] = {
            "botocore, dateutil": botocore_ops(url, True, iso_timestamps=False),
            "botocore": botocore_ops(url, True),
            "botocore, validation off": botocore_ops(url, False),
            "botocore, prepared request": prepared_ops(url),
            "obstore": obstore_ops(url),
            "sigv4 + urllib3": raw_ops(url),
        }
        results: dict[str, dict[str, list[float]]] = {v: {op: [] for op in CALLS} for v in variants}
        for ops in variants.values():  # connections, caches
            for i in range(10):
                for op in CALLS:
                    if op in ops:
                        ops[op](i)
        names = list(variants)
        for r in range(args.rounds):
            for name in names[r % len(names) :] + names[: r % len(names)]:
                ops = variants[name]
                for op in CALLS:
                    if op not in ops:
                        continue
                    fn = ops[op]
                    start = time.process_time()
                    for i in range(args.calls):
                        fn(i)
                    used = time.process_time() - start
                    results[name][op].append(used / args.calls * 1000)
        load = os.getloadavg()
        print(
            f"CPU ms per call (this process; median of {args.rounds} rounds of "
            f"{args.calls} calls), load average {load[0]:.1f}"
        )
        print(f"| call | {' | '.join(names)} |")
        print(f"|---|{'---:|' * len(names)}")
        for op in CALLS:
            cells = " | ".join(
                f"{statistics.median(results[n][op]):.3f}" if results[n][op] else "-" for n in names
            )
            print(f"| {op} | {cells} |")
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    main()
