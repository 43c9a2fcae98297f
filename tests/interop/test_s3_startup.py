"""``ocistore serve`` with ``storage.s3`` refuses to start, with one clear line, when S3 is unusable.

Wrong credentials need a server that checks them: a second moto server
program, started here with its IAM authentication on, holding one user
whose keys are good; the keys the server is given are not.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from s3_peer import REGION, S3Endpoint, new_bucket, s3_endpoint  # noqa: F401 (fixtures)

from ._peers import free_port, ocistore_argv

pytestmark = [pytest.mark.peer, pytest.mark.one_core]

START_TIMEOUT = 30.0


def serve_fails(tmp_path: Path, params: dict[str, Any]) -> str:
    """Run ``ocistore serve`` on ``params``; assert it exits 2 and return its one stderr line."""
    lines = "".join(f"    {k}: {v}\n" for k, v in params.items())
    config = tmp_path / "config.yml"
    config.write_text(
        f"version: 0.1\nstorage:\n  s3:\n{lines}http:\n  addr: 127.0.0.1:{free_port()}\n"
    )
    done = subprocess.run(
        [*ocistore_argv(), "serve", "--config", str(config), "--root", str(tmp_path / "local")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    err = done.stderr.strip().splitlines()
    assert len(err) == 1, done.stderr
    return err[0]


def test_missing_bucket(tmp_path: Path, s3_endpoint: S3Endpoint) -> None:  # noqa: F811
    line = serve_fails(tmp_path, s3_endpoint.params("no-such-bucket"))
    assert line == (f"ocistore: S3 bucket 'no-such-bucket' does not exist at {s3_endpoint.url}")


def test_unreachable_endpoint(tmp_path: Path) -> None:
    port = free_port()  # bound and released: nothing listens there now
    closed = S3Endpoint(f"http://127.0.0.1:{port}", "127.0.0.1", port)
    line = serve_fails(tmp_path, closed.params("bucket"))
    assert line.startswith(f"ocistore: S3 endpoint http://127.0.0.1:{port} is unreachable: ")


def test_bad_option(tmp_path: Path, s3_endpoint: S3Endpoint) -> None:  # noqa: F811
    line = serve_fails(tmp_path, s3_endpoint.params("b", chunksize=1024))
    assert line == "ocistore: config storage.s3.chunksize: 1024 is outside [5242880, 5368709120]"


@pytest.fixture
def auth_endpoint(tmp_path: Path) -> Iterator[tuple[S3Endpoint, dict[str, str]]]:
    """A moto server process that checks credentials; yields it and a good key pair."""
    try:
        import moto.server  # noqa: F401
    except ImportError as exc:
        if os.environ.get("OCISTORE_REQUIRE_PEERS") == "1":
            pytest.fail(f"moto[server] is not installed: {exc}")
        pytest.skip(f"moto[server] is not installed: {exc}")
    import boto3

    port = free_port()
    # The first three requests (making the user and its keys) go unchecked.
    env = dict(os.environ, INITIAL_NO_AUTH_ACTION_COUNT="3")
    with (tmp_path / "moto-auth.log").open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(
                        "moto server did not start: " + (tmp_path / "moto-auth.log").read_text()
                    )
                time.sleep(0.05)
        url = f"http://127.0.0.1:{port}"
        iam = boto3.client(
            "iam",
            endpoint_url=url,
            region_name=REGION,
            aws_access_key_id="bootstrap",
            aws_secret_access_key="bootstrap",
        )
        iam.create_user(UserName="registry")
        keys = iam.create_access_key(UserName="registry")["AccessKey"]
        iam.put_user_policy(
            UserName="registry",
            PolicyName="all-s3",
            PolicyDocument='{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"*"}]}',
        )
        good = {"accesskey": keys["AccessKeyId"], "secretkey": keys["SecretAccessKey"]}
        yield S3Endpoint(url, "127.0.0.1", port), good
    finally:
        proc.terminate()
        proc.wait(10)


def test_wrong_credentials(
    tmp_path: Path, auth_endpoint: tuple[S3Endpoint, dict[str, str]]
) -> None:
    endpoint, good = auth_endpoint
    import boto3

    s3 = boto3.client(
        "s3",
        endpoint_url=endpoint.url,
        region_name=REGION,
        aws_access_key_id=good["accesskey"],
        aws_secret_access_key=good["secretkey"],
    )
    s3.create_bucket(Bucket="guarded")
    params = endpoint.params("guarded") | {"accesskey": "AKIAWRONGWRONGWRONG0", "secretkey": "nope"}
    line = serve_fails(tmp_path, params)
    assert line.startswith(
        f"ocistore: S3 refused the credentials for bucket 'guarded' at {endpoint.url} ("
    ), line
