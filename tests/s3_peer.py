"""A real S3 endpoint for the tests: moto's server (``moto[server]``) on 127.0.0.1, a random port.

``s3_endpoint`` (session scope) starts one ``ThreadedMotoServer`` and stops it
at the end; ``new_bucket`` makes an empty bucket per test. When moto is not
installed the tests skip on a laptop and fail with ``OCISTORE_REQUIRE_PEERS=1``.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

ACCESS_KEY = "ocistore-test"
SECRET_KEY = "ocistore-test-secret"
REGION = "us-east-1"


@dataclass(frozen=True)
class S3Endpoint:
    url: str
    host: str
    port: int

    def client(self) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.url,
            region_name=REGION,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            config=Config(s3={"addressing_style": "path"}, max_pool_connections=32),
        )

    def params(self, bucket: str, **extra: Any) -> dict[str, Any]:
        """``storage.s3`` parameters (distribution's keys) for ``bucket`` on this endpoint."""
        return {
            "region": REGION,
            "bucket": bucket,
            "regionendpoint": self.url,
            "accesskey": ACCESS_KEY,
            "secretkey": SECRET_KEY,
            "secure": False,
            **extra,
        }


def _require_moto() -> None:
    try:
        import moto.server  # noqa: F401
    except ImportError as exc:
        message = f"moto[server] is not installed ({exc}); it is in the test dependency group"
        if os.environ.get("OCISTORE_REQUIRE_PEERS") == "1":
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[S3Endpoint]:
    _require_moto()
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield S3Endpoint(f"http://{host}:{port}", host, port)
    finally:
        server.stop()


@pytest.fixture
def new_bucket(s3_endpoint: S3Endpoint) -> Iterator[Callable[[], str]]:
    """Factory of empty buckets, emptied and removed after the test."""
    client = s3_endpoint.client()
    made: list[str] = []

    def make() -> str:
        name = f"t-{uuid.uuid4().hex[:20]}"
        client.create_bucket(Bucket=name)
        made.append(name)
        return name

    yield make
    for name in made:
        for page in client.get_paginator("list_multipart_uploads").paginate(Bucket=name):
            for up in page.get("Uploads") or []:
                client.abort_multipart_upload(Bucket=name, Key=up["Key"], UploadId=up["UploadId"])
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=name):
            keys = [{"Key": o["Key"]} for o in page.get("Contents") or []]
            if keys:
                client.delete_objects(Bucket=name, Delete={"Objects": keys, "Quiet": True})
        client.delete_bucket(Bucket=name)
