"""Choose the S3 client library: obstore against boto3 on one moto server, side by side.

Both clients talk to the same ``moto`` server (started here on 127.0.0.1) with
the same bytes, for the four operations the S3 driver lives on: a single PUT,
a multipart upload, ranged GETs and a listing. Every timed operation is
checked (the bytes read back hash to what was written, the listing has every
key), rounds alternate between the clients, and the medians are reported with
the obstore/boto3 ratio (above 1: obstore is faster).

    .venv/bin/python benchmarks/s3_clients.py [--rounds 5] [--mib 64]

The endpoint is an in-process Python server, so absolute figures say more
about moto than about S3; the ratios say what each client adds on top.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

import boto3
import obstore
from botocore.config import Config
from moto.server import ThreadedMotoServer
from obstore.store import S3Store

MiB = 1024 * 1024
PART = 8 * MiB
RANGE = 1 * MiB
KEYS = 500


def boto_client(endpoint: str) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="bench",
        aws_secret_access_key="bench",
        config=Config(s3={"addressing_style": "path"}, max_pool_connections=16),
    )


def obstore_store(endpoint: str, bucket: str) -> S3Store:
    return S3Store(
        bucket,
        endpoint=endpoint,
        region="us-east-1",
        access_key_id="bench",
        secret_access_key="bench",
        virtual_hosted_style_request=False,
        client_options={"allow_http": True},
    )


class Boto:
    name = "boto3"

    def __init__(self, endpoint: str, bucket: str) -> None:
        self.s3 = boto_client(endpoint)
        self.bucket = bucket

    def put(self, key: str, data: bytes) -> None:
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=data)

    def multipart(self, key: str, data: bytes) -> None:
        up = self.s3.create_multipart_upload(Bucket=self.bucket, Key=key)["UploadId"]
        parts = []
        view = memoryview(data)
        for n, start in enumerate(range(0, len(data), PART), 1):
            r = self.s3.upload_part(
                Bucket=self.bucket,
                Key=key,
                UploadId=up,
                PartNumber=n,
                Body=bytes(view[start : start + PART]),
            )
            parts.append({"PartNumber": n, "ETag": r["ETag"]})
        self.s3.complete_multipart_upload(
            Bucket=self.bucket, Key=key, UploadId=up, MultipartUpload={"Parts": parts}
        )

    def get_range(self, key: str, start: int, length: int) -> bytes:
        r = self.s3.get_object(
            Bucket=self.bucket, Key=key, Range=f"bytes={start}-{start + length - 1}"
        )
        body: bytes = r["Body"].read()
        return body

    def list(self, prefix: str) -> list[str]:
        keys: list[str] = []
        for page in self.s3.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=prefix
        ):
            keys += [o["Key"] for o in page.get("Contents", [])]
        return keys


class Obstore:
    name = "obstore"

    def __init__(self, endpoint: str, bucket: str) -> None:
        self.store = obstore_store(endpoint, bucket)

    def put(self, key: str, data: bytes) -> None:
        obstore.put(self.store, key, data, use_multipart=False)

    def multipart(self, key: str, data: bytes) -> None:
        # Sequential parts, as the driver's writer uploads them (one PATCH at a time).
        obstore.put(self.store, key, data, use_multipart=True, chunk_size=PART, max_concurrency=1)

    def get_range(self, key: str, start: int, length: int) -> bytes:
        return bytes(obstore.get_range(self.store, key, start=start, length=length))

    def list(self, prefix: str) -> list[str]:
        keys: list[str] = []
        for batch in obstore.list(self.store, prefix):
            keys += [o["path"] for o in batch]
        return keys


def timed(fn: Callable[[], None]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--mib", type=int, default=64, help="size of the multipart object")
    args = parser.parse_args()
    os.environ.pop("AWS_PROFILE", None)
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's per-request log

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    bucket = "bench"
    boto_client(endpoint).create_bucket(Bucket=bucket)
    clients = [Boto(endpoint, bucket), Obstore(endpoint, bucket)]

    big = os.urandom(args.mib * MiB)
    small = os.urandom(4 * MiB)
    big_sum = hashlib.sha256(big).hexdigest()
    offsets = [i * (len(big) // 16) for i in range(16)]
    seed = clients[0]
    seed.multipart("ranged/source", big)
    for i in range(KEYS):
        seed.put(f"listing/{i:05d}", b"x")

    results: dict[str, dict[str, list[float]]] = {c.name: {} for c in clients}

    def record(client: Any, op: str, seconds: float) -> None:
        results[client.name].setdefault(op, []).append(seconds)

    try:
        for r in range(args.rounds):
            for client in clients if r % 2 == 0 else reversed(clients):
                key = f"{client.name}/{r}"
                record(client, "put 4 MiB", timed(lambda k=key, c=client: c.put(k + "/s", small)))
                got = client.get_range(key + "/s", 0, len(small))
                assert got == small, f"{client.name}: put read back wrong"

                record(
                    client,
                    f"multipart {args.mib} MiB",
                    timed(lambda k=key, c=client: c.multipart(k + "/m", big)),
                )
                got = seed.get_range(key + "/m", 0, len(big))
                assert hashlib.sha256(got).hexdigest() == big_sum, f"{client.name}: multipart"

                chunks: list[bytes] = []

                def ranges(c: Any = client, out: list[bytes] = chunks) -> None:
                    for off in offsets:
                        out.append(c.get_range("ranged/source", off, RANGE))

                record(client, "16 ranged GETs of 1 MiB", timed(ranges))
                assert chunks == [big[o : o + RANGE] for o in offsets], f"{client.name}: ranges"

                listed: list[str] = []
                record(
                    client,
                    f"list {KEYS} keys",
                    timed(lambda c=client, out=listed: out.extend(c.list("listing/"))),
                )
                assert sorted(listed) == [f"listing/{i:05d}" for i in range(KEYS)]
    finally:
        server.stop()

    print(f"moto server, {args.rounds} rounds, medians (ratio = boto3 time / obstore time)")
    print(f"{'operation':<28}{'boto3 ms':>12}{'obstore ms':>12}{'ratio':>8}")
    for op in results["boto3"]:
        b = statistics.median(results["boto3"][op]) * 1000
        o = statistics.median(results["obstore"][op]) * 1000
        print(f"{op:<28}{b:>12.1f}{o:>12.1f}{b / o:>8.2f}")


if __name__ == "__main__":
    main()
