"""CPU one botocore S3 call costs its calling thread, with the driver's client settings.

Starts a ``moto_server`` on 127.0.0.1, then times (``time.thread_time``, the
calling thread's CPU only, not the server's) HeadObject and ListObjectsV2
calls through a client configured as ``ocistore.driver.s3.make_client``
configures it, with botocore's parameter validation on and off. Used to tell
how much of an instance's CPU per image push is the S3 client's own work::

    .venv/bin/python benchmarks/s3_call_cpu.py [--calls 600]
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def client(url: str, **extra: Any) -> Any:
    config = Config(
        signature_version="s3v4",
        retries={"mode": "standard", "max_attempts": 5},
        s3={"addressing_style": "path"},
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        **extra,
    )
    session = boto3.session.Session(
        aws_access_key_id="bench", aws_secret_access_key="bench", region_name="us-east-1"
    )
    return session.client("s3", endpoint_url=url, config=config)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=600)
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
        setup = client(url)
        deadline = time.monotonic() + 60
        while True:
            try:
                setup.create_bucket(Bucket="bench-bucket")
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        setup.put_object(Bucket="bench-bucket", Key="k/blob", Body=b"x" * 100)
        for label, extra in [
            ("validation on", {}),
            ("validation off", {"parameter_validation": False}),
        ] * 2:
            c = client(url, **extra)
            for _ in range(20):  # connections, caches
                c.head_object(Bucket="bench-bucket", Key="k/blob")
            start = time.thread_time()
            for _ in range(args.calls // 2):
                c.head_object(Bucket="bench-bucket", Key="k/blob")
                c.list_objects_v2(Bucket="bench-bucket", Prefix="k/", Delimiter="/")
            used = time.thread_time() - start
            print(f"{label:15s} {used / args.calls * 1000:.3f} ms CPU per call (calling thread)")
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    main()
