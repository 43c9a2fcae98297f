"""The S3 driver beyond the conformance suite: key layout, multipart uploads, resume, abort, faults.

Everything runs against a real moto server (``tests/s3_peer.py``). Requests
are counted with botocore's event hooks, so "nothing was read back" is
checked on the wire, not inferred.
"""

from __future__ import annotations

import hashlib
import random
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from ocistore import _core
from ocistore.descriptor import Descriptor
from ocistore.digest import Digest
from ocistore.driver.s3 import S3Driver, S3Unusable
from ocistore.driver.s3_options import MIN_PART, S3OptionsError, parse_s3_options
from ocistore.driver.s3_writer import STATE_SUFFIX, decode_state
from ocistore.errors import DriverError, StorageUnavailable
from ocistore.storage import Registry, paths
from s3_peer import S3Endpoint, new_bucket, s3_endpoint  # noqa: F401 (fixtures)

MiB = 1024 * 1024
CHUNK = MIN_PART  # the smallest chunksize, so tests move little data


def data(size: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(size)


class Calls:
    """Counts S3 operations (and the keys they touched) made by one driver, through either client."""

    def __init__(self, driver: S3Driver) -> None:
        self.ops: Counter[str] = Counter()
        self.keys: list[tuple[str, str]] = []
        driver.client.meta.events.register("before-call.s3", self._record)
        if driver.fast is not None:
            driver.fast.observers.append(self._saw)

    def _saw(self, operation: str, key: str) -> None:
        self.ops[operation] += 1
        self.keys.append((operation, "" if operation == "PutObject" else "/" + key))

    def _record(self, model: Any, params: dict[str, Any], **_: Any) -> None:
        self.ops[model.name] += 1
        body = params.get("body")
        self.keys.append((model.name, str(params.get("url_path", "")) if body is None else ""))

    def reset(self) -> None:
        self.ops.clear()
        self.keys.clear()


@pytest.fixture
def bucket(new_bucket: Callable[[], str]) -> str:  # noqa: F811
    return new_bucket()


@pytest.fixture
def make_driver(s3_endpoint: S3Endpoint, bucket: str) -> Callable[..., S3Driver]:  # noqa: F811
    """A new driver on the shared bucket each call: a separate "instance" (own client, own state)."""

    def make(*, fast: bool = True, **extra: Any) -> S3Driver:
        params = s3_endpoint.params(bucket, rootdirectory="/reg", chunksize=CHUNK, **extra)
        return S3Driver(parse_s3_options(params), fast=fast)

    return make


@pytest.fixture
def s3(s3_endpoint: S3Endpoint) -> Any:  # noqa: F811
    return s3_endpoint.client()


def keys(s3: Any, bucket: str) -> list[str]:
    out: list[str] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        out += [o["Key"] for o in page.get("Contents") or []]
    return sorted(out)


def open_uploads(s3: Any, bucket: str) -> list[str]:
    return [u["Key"] for u in s3.list_multipart_uploads(Bucket=bucket).get("Uploads") or []]


# --- layout -----------------------------------------------------------------------------


def test_keys_are_distributions(make_driver: Callable[..., S3Driver], s3: Any, bucket: str) -> None:
    """``/docker/registry/v2/...`` is ``<rootdirectory>/docker/registry/v2/...``, one object per file."""
    d = make_driver()
    link = "/docker/registry/v2/repositories/library/alpine/_layers/sha256/" + "a" * 64 + "/link"
    d.put_content(link, b"sha256:" + b"a" * 64)
    assert keys(s3, bucket) == ["reg" + link]
    got = s3.get_object(Bucket=bucket, Key="reg" + link)["Body"].read()
    assert got == b"sha256:" + b"a" * 64
    # and what another program writes under the root is what the driver reads
    s3.put_object(Bucket=bucket, Key="reg/docker/other", Body=b"from outside")
    assert d.get_content("/docker/other") == b"from outside"
    assert d.list("/docker") == ["/docker/other", "/docker/registry"]


@pytest.mark.parametrize(("root", "prefix"), [("", ""), ("/", ""), ("/a/b/", "a/b/"), ("x", "x/")])
def test_rootdirectory_forms(
    s3_endpoint: S3Endpoint,  # noqa: F811
    bucket: str,
    s3: Any,
    root: str,
    prefix: str,
) -> None:
    d = S3Driver(parse_s3_options(s3_endpoint.params(bucket, rootdirectory=root)))
    d.put_content("/f", b"x")
    assert keys(s3, bucket) == [prefix + "f"]
    assert d.list("/") == ["/f"]


# --- multipart writer -------------------------------------------------------------------


def test_parts_are_whole_chunks_and_the_tail_is_its_own_object(
    make_driver: Callable[..., S3Driver], s3: Any, bucket: str
) -> None:
    d = make_driver()
    content = data(2 * CHUNK + 1234)
    with d.writer("/up/data") as w:
        w.write(content[: CHUNK - 1])  # less than a part: nothing uploaded yet
        assert open_uploads(s3, bucket) == []
        w.write(content[CHUNK - 1 :])
    assert open_uploads(s3, bucket) == ["reg/up/data"]
    (upload,) = s3.list_multipart_uploads(Bucket=bucket)["Uploads"]
    parts = s3.list_parts(Bucket=bucket, Key="reg/up/data", UploadId=upload["UploadId"])["Parts"]
    assert [p["Size"] for p in parts] == [CHUNK, CHUNK]
    assert keys(s3, bucket) == ["reg/up/data" + STATE_SUFFIX]  # the tail, with the part list
    raw = s3.get_object(Bucket=bucket, Key="reg/up/data" + STATE_SUFFIX)["Body"].read()
    state = decode_state(raw, "/up/data", "s3")
    assert state.tail == content[2 * CHUNK :]
    assert state.size == len(content)
    assert d.stat("/up/data").size == len(content)
    assert d.list("/up") == ["/up/data"]


def test_resume_from_another_instance(
    make_driver: Callable[..., S3Driver], s3: Any, bucket: str
) -> None:
    """Each append comes through a different driver (another host): no byte is uploaded twice."""
    content = data(3 * CHUNK + 777, 1)
    pieces = [content[i : i + 1_500_000] for i in range(0, len(content), 1_500_000)]
    sent = 0
    for i, piece in enumerate(pieces):
        d = make_driver()
        calls = Calls(d)
        with d.writer("/up/data", append=i > 0) as w:
            assert w.size == sent
            w.write(piece)
        sent += len(piece)
        # only the current piece (plus the tail carried in the state) went up
        assert calls.ops["GetObject"] <= 1  # the state object
        assert "UploadPartCopy" not in calls.ops
    reader = make_driver()
    calls = Calls(reader)
    assert reader.get_content("/up/data") == content
    assert calls.ops["CompleteMultipartUpload"] == 1  # completed in place, server-side
    assert open_uploads(s3, bucket) == []
    assert keys(s3, bucket) == ["reg/up/data"]


def test_a_materialized_file_appends_by_server_side_copy(
    make_driver: Callable[..., S3Driver], s3: Any, bucket: str
) -> None:
    d = make_driver()
    first = data(CHUNK + 10, 2)
    with d.writer("/f") as w:
        w.write(first)
    assert d.get_content("/f") == first  # completes the upload into a plain object
    other = make_driver()
    calls = Calls(other)
    with other.writer("/f", append=True) as w:
        w.write(b"more")
    assert calls.ops["UploadPartCopy"] == 1
    assert calls.ops["GetObject"] == 0
    assert other.get_content("/f") == first + b"more"


def test_cancel_aborts_the_multipart_upload(
    make_driver: Callable[..., S3Driver], s3: Any, bucket: str
) -> None:
    d = make_driver()
    with d.writer("/up/data") as w:
        w.write(data(CHUNK + 5))
    assert open_uploads(s3, bucket) == ["reg/up/data"]
    w = make_driver().writer("/up/data", append=True)
    w.cancel()
    assert open_uploads(s3, bucket) == []
    assert keys(s3, bucket) == []


def test_deleting_a_directory_aborts_uploads_below(
    make_driver: Callable[..., S3Driver], s3: Any, bucket: str
) -> None:
    """What purge and upload removal do: no part is left behind, even of a writer never closed."""
    d = make_driver()
    d.put_content("/uploads/u1/startedat", b"t")
    with d.writer("/uploads/u1/data") as w:
        w.write(data(CHUNK + 1))
    orphan = d.writer("/uploads/u2/data")
    orphan.write(data(CHUNK))  # a part went up; the process "dies" before close
    assert sorted(open_uploads(s3, bucket)) == ["reg/uploads/u1/data", "reg/uploads/u2/data"]
    d.delete("/uploads")
    assert open_uploads(s3, bucket) == []
    assert keys(s3, bucket) == []


def test_move_of_an_upload_is_server_side(
    make_driver: Callable[..., S3Driver], s3: Any, bucket: str
) -> None:
    d = make_driver()
    content = data(2 * CHUNK + 3, 3)
    with d.writer("/up/data") as w:
        w.write(content)
        w.commit()
    mover = make_driver(multipartcopythresholdsize=CHUNK, multipartcopychunksize=CHUNK)
    calls = Calls(mover)
    mover.move("/up/data", "/blobs/x/data")
    assert calls.ops["GetObject"] == 1  # the state object only; no data is downloaded
    assert calls.ops["CompleteMultipartUpload"] == 2  # the upload, then the multipart copy
    assert calls.ops["UploadPartCopy"] == 3
    assert "UploadPart" not in calls.ops or calls.ops["UploadPart"] == 1  # the tail, as last part
    assert keys(s3, bucket) == ["reg/blobs/x/data"]
    assert mover.get_content("/blobs/x/data") == content


def test_crash_between_steps_keeps_the_newer_copy(
    make_driver: Callable[..., S3Driver], s3: Any, bucket: str
) -> None:
    """A state object beside a larger plain object is stale (its completion was not cleaned up)."""
    d = make_driver()
    content = data(CHUNK + 9, 4)
    with d.writer("/f") as w:
        w.write(content)
    raw = s3.get_object(Bucket=bucket, Key="reg/f" + STATE_SUFFIX)["Body"].read()
    d.get_content("/f")  # materialize: object complete, state removed
    s3.put_object(Bucket=bucket, Key="reg/f" + STATE_SUFFIX, Body=raw)  # as if the delete was lost
    with make_driver().writer("/f", append=True) as w:
        assert w.size == len(content)
        w.write(b"!")
    assert make_driver().get_content("/f") == content + b"!"


def test_damaged_state_is_reported(
    make_driver: Callable[..., S3Driver], s3: Any, bucket: str
) -> None:
    s3.put_object(Bucket=bucket, Key="reg/f" + STATE_SUFFIX, Body=b"garbage")
    d = make_driver()
    with pytest.raises(DriverError, match="damaged upload state"):
        d.get_content("/f")
    with pytest.raises(DriverError, match="damaged upload state"):
        d.writer("/f", append=True)


# --- the storage layer on S3 ------------------------------------------------------------


@pytest.mark.parametrize("pieces", [1, 4])
def test_blob_upload_commit(make_driver: Callable[..., S3Driver], s3: Any, pieces: int) -> None:
    """Chunked upload through BlobWriter, each PATCH on another instance; commit by copy."""
    content = data(2 * CHUNK + 4321, 5)
    digest = Digest("sha256:" + hashlib.sha256(content).hexdigest())
    first = Registry(make_driver(), delete_enabled=True).repository("lib/app")
    w = first.blobs.create()
    upload_id = w.id
    w.close()
    step = -(-len(content) // pieces)
    for start in range(0, len(content), step):
        repo = Registry(make_driver(), delete_enabled=True).repository("lib/app")
        with repo.blobs.resume(upload_id) as w:
            w.write(content[start : start + step])
    driver = make_driver()
    calls = Calls(driver)
    repo = Registry(driver, delete_enabled=True).repository("lib/app")
    w = repo.blobs.resume(upload_id)
    desc = w.commit(Descriptor(digest=digest, size=len(content)))
    assert desc.digest == digest
    if _core.HASH_STATES:
        assert w.resumed_from_state and w.reread_bytes == 0
        # the upload's bytes were never downloaded (only its small state objects)
        assert not [p for op, p in calls.keys if op == "GetObject" and p.endswith("/data")]
    with repo.blobs.open(digest) as r:
        assert r.read() == content
    assert open_uploads(s3, driver.bucket) == []
    upload_dir = paths.path_for(paths.Upload("lib/app", upload_id))
    assert not [k for k in keys(s3, driver.bucket) if k.startswith(driver.key(upload_dir))]


def test_upload_keys_are_distributions(make_driver: Callable[..., S3Driver], s3: Any) -> None:
    """startedat, data and the hash state sit where distribution's S3 driver puts them."""
    driver = make_driver()
    repo = Registry(driver, delete_enabled=True).repository("lib/app")
    w = repo.blobs.create()
    w.write(b"x" * 1000)
    w.close()
    base = f"reg/docker/registry/v2/repositories/lib/app/_uploads/{w.id}"
    expected = [f"{base}/data", f"{base}/startedat"]
    if _core.HASH_STATES:
        expected.insert(1, f"{base}/hashstates/sha256/1000")
    assert keys(s3, driver.bucket) == expected


def _fail_parts(driver: S3Driver, times: int) -> list[int]:
    """Make the next ``times`` UploadPart requests answer 500; returns the attempt log."""
    from botocore.awsrequest import AWSResponse

    attempts: list[int] = []
    left = {"n": times}

    def hook(request: Any, **_: Any) -> Any:
        attempts.append(1)
        if left["n"] > 0:
            left["n"] -= 1
            body = b"<Error><Code>InternalError</Code><Message>boom</Message></Error>"
            return AWSResponse(request.url, 500, {}, _Raw(body))
        return None

    driver.client.meta.events.register("before-send.s3.UploadPart", hook)
    return attempts


def test_a_failed_part_is_retried_without_harm(
    make_driver: Callable[..., S3Driver], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("time.sleep", lambda _s: None)  # botocore's backoff
    content = data(2 * CHUNK + 99, 8)
    digest = Digest("sha256:" + hashlib.sha256(content).hexdigest())
    driver = make_driver()
    attempts = _fail_parts(driver, 2)
    repo = Registry(driver, delete_enabled=True).repository("lib/app")
    with repo.blobs.create() as w:
        w.write(content)
    assert len(attempts) == 4  # two parts, the first one tried three times
    w = Registry(make_driver(), delete_enabled=True).repository("lib/app").blobs.resume(w.id)
    assert w.commit(Descriptor(digest=digest, size=len(content))).digest == digest


def test_a_part_that_keeps_failing_loses_only_that_request(
    make_driver: Callable[..., S3Driver], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The PATCH fails (503 to the client); the bucket keeps the last good state; the client resends."""
    monkeypatch.setattr("time.sleep", lambda _s: None)
    first, second = data(CHUNK + 10, 9), data(CHUNK + 20, 10)
    digest = Digest("sha256:" + hashlib.sha256(first + second).hexdigest())
    repo = Registry(make_driver(), delete_enabled=True).repository("lib/app")
    with repo.blobs.create() as w:
        w.write(first)
    upload_id = w.id
    broken = make_driver()
    _fail_parts(broken, 1000)
    w = Registry(broken, delete_enabled=True).repository("lib/app").blobs.resume(upload_id)
    with pytest.raises(StorageUnavailable):
        w.write(second)
        w.close()
    w.close()
    path = paths.path_for(paths.UploadData("lib/app", upload_id))
    assert broken.stat(path).size == len(first)  # the spoilt writer no longer answers
    w = Registry(make_driver(), delete_enabled=True).repository("lib/app").blobs.resume(upload_id)
    assert w.size == len(first)  # what the client learns from the upload's status
    w.write(second)
    assert w.commit(Descriptor(digest=digest, size=len(first) + len(second))).digest == digest


def test_profiles_give_credentials(
    s3_endpoint: S3Endpoint,  # noqa: F811
    bucket: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Any,
) -> None:
    params = s3_endpoint.params(bucket)
    creds = tmp_path / "credentials"
    creds.write_text(
        f"[registry]\naws_access_key_id = {params.pop('accesskey')}\n"
        f"aws_secret_access_key = {params.pop('secretkey')}\n"
    )
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(creds))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_PROFILE", "registry")
    d = S3Driver(parse_s3_options(params))
    d.check()
    assert d.client._request_signer._credentials.method == "shared-credentials-file"


def test_blob_upload_cancel_leaves_no_parts(make_driver: Callable[..., S3Driver], s3: Any) -> None:
    repo = Registry(make_driver(), delete_enabled=True).repository("lib/app")
    w = repo.blobs.create()
    w.write(data(CHUNK + 100, 6))
    w.close()
    w = Registry(make_driver(), delete_enabled=True).repository("lib/app").blobs.resume(w.id)
    w.cancel()
    assert open_uploads(s3, make_driver().bucket) == []


def test_purge_aborts_stale_uploads(make_driver: Callable[..., S3Driver], s3: Any) -> None:
    """Upload purging (distribution's ``PurgeUploads``) leaves no multipart upload behind."""
    from datetime import UTC, datetime, timedelta

    from ocistore.storage.purge import purge_uploads

    driver = make_driver()
    repo = Registry(driver, delete_enabled=True).repository("lib/app")
    w = repo.blobs.create()
    w.write(data(CHUNK + 100, 7))
    w.close()
    assert open_uploads(s3, driver.bucket) != []
    deleted, errors = purge_uploads(make_driver(), datetime.now(UTC) + timedelta(hours=1))
    assert errors == []
    assert deleted == [paths.path_for(paths.Upload("lib/app", w.id))]
    assert open_uploads(s3, driver.bucket) == []


# --- options and faults -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "key", "reason"),
    [
        ({"region": "us-east-1"}, "storage.s3.bucket", "no bucket"),
        ({"bucket": "b"}, "storage.s3.region", "no region"),
        ({"bucket": "b", "region": "r", "chunksize": 1024}, "storage.s3.chunksize", "outside"),
        ({"bucket": "b", "region": "r", "chunksize": "big"}, "storage.s3.chunksize", "integer"),
        ({"bucket": "b", "region": "r", "secure": "maybe"}, "storage.s3.secure", "boolean"),
        ({"bucket": "b", "region": "r", "storageclass": "GLACIER"}, "storage.s3.storageclass", ""),
        ({"bucket": "b", "region": "r", "bogus": 1}, "storage.s3.bogus", "unknown key"),
    ],
)
def test_bad_options_name_the_key(params: dict[str, Any], key: str, reason: str) -> None:
    with pytest.raises(S3OptionsError) as info:
        parse_s3_options(params)
    assert info.value.key == key
    assert reason in info.value.reason


def test_distribution_defaults() -> None:
    o = parse_s3_options({"bucket": "b", "region": "us-east-1", "regionendpoint": "h:9000"})
    assert o.chunksize == 10 * MiB
    assert o.multipartcopychunksize == 32 * MiB
    assert o.multipartcopythresholdsize == 32 * MiB
    assert o.multipartcopymaxconcurrency == 100
    assert o.forcepathstyle  # as 2.8 does with a regionendpoint
    assert o.endpoint_url == "https://h:9000"
    assert parse_s3_options({"bucket": "b", "region": "r", "secure": False}).secure is False


def test_credentials_from_the_environment(
    s3_endpoint: S3Endpoint,  # noqa: F811
    bucket: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    params = s3_endpoint.params(bucket)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", params.pop("accesskey"))
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", params.pop("secretkey"))
    d = S3Driver(parse_s3_options(params))
    d.check()
    d.put_content("/f", b"x")
    assert d.client._request_signer._credentials.method == "env"


def test_missing_bucket_and_unreachable_endpoint(s3_endpoint: S3Endpoint) -> None:  # noqa: F811
    d = S3Driver(parse_s3_options(s3_endpoint.params("no-such-bucket")))
    with pytest.raises(S3Unusable, match="'no-such-bucket' does not exist"):
        d.check()
    from s3_peer import REGION

    closed = S3Endpoint("http://127.0.0.1:9", "127.0.0.1", 9)  # discard port: nothing listens
    d = S3Driver(parse_s3_options(closed.params("b") | {"region": REGION}))
    with pytest.raises(S3Unusable, match="unreachable"):
        d.check()
    with pytest.raises(StorageUnavailable):
        d.stat("/f")


def test_server_errors_are_retried_then_unavailable(
    make_driver: Callable[..., S3Driver], monkeypatch: pytest.MonkeyPatch
) -> None:
    """503 SlowDown and 500 are retried by botocore with backoff; if they persist: StorageUnavailable."""
    d = make_driver(fast=False)
    d.put_content("/f", b"x")
    failures = {"left": 2}
    attempts: list[int] = []

    def flaky(request: Any, **_: Any) -> Any:
        from botocore.awsrequest import AWSResponse

        attempts.append(1)
        if failures["left"] > 0:
            failures["left"] -= 1
            body = b"<Error><Code>SlowDown</Code><Message>slow down</Message></Error>"
            return AWSResponse(request.url, 503, {}, _Raw(body))
        return None

    d.client.meta.events.register("before-send.s3.GetObject", flaky)
    monkeypatch.setattr("time.sleep", lambda _s: None)  # botocore's backoff, not the test's
    assert d.get_content("/f") == b"x"
    assert len(attempts) == 3
    failures["left"] = 100
    attempts.clear()
    with pytest.raises(StorageUnavailable, match="SlowDown"):
        d.get_content("/f")
    assert len(attempts) == 6  # standard retry mode: the first try and five retries


class _Raw:
    """The raw body botocore reads from an injected response."""

    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **_: Any) -> Any:
        yield self._body

    def read(self, *_: Any) -> bytes:
        body, self._body = self._body, b""
        return body


def test_unavailable_storage_is_a_retryable_api_error() -> None:
    from ocistore.server.errors import api_errors

    (err,) = api_errors(StorageUnavailable("/p", "s3", "S3 SlowDown: slow down"))
    assert (err.code.value, err.status) == ("UNAVAILABLE", 503)
    assert ("Retry-After", "1") in err.headers


# --- configuration --------------------------------------------------------------------


def test_config_file_and_create_app(
    s3_endpoint: S3Endpoint,  # noqa: F811
    bucket: str,
    tmp_path: Any,
) -> None:
    import yaml

    from ocistore.server.app import create_app
    from ocistore.server.config import ConfigError, ServerConfig, load_config

    params = s3_endpoint.params(bucket, rootdirectory="/r")
    config = tmp_path / "config.yml"
    config.write_text(yaml.safe_dump({"version": 0.1, "storage": {"s3": params}}))
    cfg, unknown = load_config(config)
    assert unknown == []
    assert cfg.s3_params == params
    assert ServerConfig.from_env(cfg.to_env()) == cfg  # as handed to the workers
    app = create_app(root=tmp_path / "local", secret="s", s3=params)
    driver = app.services.registry.driver
    assert isinstance(driver, S3Driver)
    assert (driver.bucket, driver.key("/x")) == (bucket, "r/x")

    both = {"storage": {"s3": params, "filesystem": {"rootdirectory": "/tmp/x"}}}
    config.write_text(yaml.safe_dump(both))
    with pytest.raises(ConfigError, match="filesystem or s3, not both"):
        load_config(config)
    config.write_text(yaml.safe_dump({"storage": {"s3": {**params, "chunksize": 5}}}))
    with pytest.raises(ConfigError) as info:
        load_config(config)
    assert info.value.key == "storage.s3.chunksize"
