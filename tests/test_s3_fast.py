"""The S3 driver's obstore calls against its botocore ones: same results, same errors (moto).

Every operation :mod:`ocistore.driver.s3_fast` takes over from botocore is run
through both clients on the same bucket (``S3Driver(fast=False)`` is the
botocore path) and the answers compared: what HeadObject reports, the bytes
read, what an object written either way looks like to S3 (type, storage
class, encryption, metadata), deletes, and the driver errors of a missing
key, a missing bucket, an unreachable endpoint and a server that keeps
answering 503 SlowDown (through a fault-injecting proxy in front of moto).
The botocore client's own timestamp parser is checked against botocore's.
"""

from __future__ import annotations

import http.client
import http.server
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from botocore.credentials import RefreshableCredentials
from botocore.utils import parse_timestamp

from ocistore.driver.s3 import S3Driver, _timestamp, make_client
from ocistore.driver.s3_fast import _BotocoreCredentials, fast_store, plain_key
from ocistore.driver.s3_options import parse_s3_options
from ocistore.errors import DriverError, PathNotFound, StorageUnavailable
from s3_peer import REGION, S3Endpoint, new_bucket, s3_endpoint  # noqa: F401 (fixtures)


@pytest.fixture
def pair(
    s3_endpoint: S3Endpoint,  # noqa: F811
    new_bucket: Callable[[], str],  # noqa: F811
) -> Callable[..., tuple[S3Driver, S3Driver]]:
    """Two drivers on one new bucket with the same options: obstore's calls, then botocore's."""

    def make(**extra: Any) -> tuple[S3Driver, S3Driver]:
        options = parse_s3_options(s3_endpoint.params(new_bucket(), rootdirectory="/reg", **extra))
        fast, slow = S3Driver(options), S3Driver(options, fast=False)
        assert fast.fast is not None and slow.fast is None
        return fast, slow

    return make


def _error(call: Callable[[], object]) -> tuple[type, str]:
    with pytest.raises(DriverError) as info:
        call()
    return type(info.value), str(info.value)


def _raw_head(driver: S3Driver, key: str) -> dict[str, Any]:
    head = driver.client.head_object(Bucket=driver.bucket, Key=key)
    return {
        name: head.get(name)
        for name in (
            "ContentType",
            "ContentLength",
            "ETag",
            "Metadata",
            "StorageClass",
            "ServerSideEncryption",
        )
    }


@pytest.mark.parametrize(
    "extra",
    [{}, {"encrypt": True, "storageclass": "REDUCED_REDUNDANCY"}, {"storageclass": "NONE"}],
    ids=["defaults", "encrypted-rrs", "no-class"],
)
def test_writes_and_reads_agree(
    pair: Callable[..., tuple[S3Driver, S3Driver]], extra: dict[str, Any]
) -> None:
    fast, slow = pair(**extra)
    body = bytes(range(256)) * 9
    for driver, name in ((fast, "a"), (slow, "b")):
        driver.put_object(f"/{name}", driver.key(f"/{name}"), body, mtime=1234.5)
    # S3 sees the same object whichever client wrote it
    written = _raw_head(slow, fast.key("/a"))
    assert written == _raw_head(slow, slow.key("/b"))
    assert written["ContentType"] == "application/octet-stream"
    if extra.get("encrypt"):
        assert written["ServerSideEncryption"] == "AES256"
        assert written["StorageClass"] == "REDUCED_REDUNDANCY"
    for key in (fast.key("/a"), slow.key("/b")):
        via_fast, via_slow = fast._head("/x", key), slow._head("/x", key)
        assert via_fast is not None and via_slow is not None
        for field in ("ContentLength", "ETag", "Metadata"):
            assert via_fast[field] == via_slow[field]
        assert via_fast["LastModified"].timestamp() == via_slow["LastModified"].timestamp()
        assert fast._mod_time(via_fast) == slow._mod_time(via_slow) == 1234.5
        assert fast.read_object("/x", key) == slow.read_object("/x", key) == body
    assert fast.stat_whole("/a") == slow.stat_whole("/a")
    assert fast.read_whole("/b") == slow.read_whole("/b") == body


def test_deletes_agree(pair: Callable[..., tuple[S3Driver, S3Driver]]) -> None:
    fast, slow = pair()
    for name in "abcd":
        slow.put_content(f"/d/{name}", name.encode())
    fast.delete_whole(["/d/a", "/d/b", "/d/missing"])
    slow.delete_whole(["/d/c", "/d/missing"])
    assert fast.list("/d") == slow.list("/d") == ["/d/d"]
    fast.delete_whole([])


def test_missing_keys_and_buckets_fail_alike(
    pair: Callable[..., tuple[S3Driver, S3Driver]],
    s3_endpoint: S3Endpoint,  # noqa: F811
) -> None:
    fast, slow = pair()
    key = fast.key("/nothing")
    assert fast._head("/nothing", key) is None and slow._head("/nothing", key) is None
    assert _error(lambda: fast.read_object("/nothing", key)) == _error(
        lambda: slow.read_object("/nothing", key)
    )
    assert _error(lambda: fast.read_whole("/nothing"))[0] is PathNotFound
    options = parse_s3_options(s3_endpoint.params("no-such-bucket-here"))
    gone_fast, gone_slow = S3Driver(options), S3Driver(options, fast=False)
    for call in (
        lambda d: d.read_object("/f", "f"),
        lambda d: d.put_object("/f", "f", b"x"),
        lambda d: d.delete_keys("/f", ["f"]),
    ):
        kind, message = _error(lambda call=call: call(gone_fast))
        assert (kind, message) == _error(lambda call=call: call(gone_slow))
        assert kind is DriverError and "NoSuchBucket" in message
    assert gone_fast._head("/f", "f") is None and gone_slow._head("/f", "f") is None


def test_an_unreachable_endpoint_is_unavailable_through_both() -> None:
    options = parse_s3_options(
        {
            "region": REGION,
            "bucket": "b-unreachable",
            "regionendpoint": "http://127.0.0.1:9",  # discard port: nothing listens
            "accesskey": "k",
            "secretkey": "s",
        }
    )
    fast = S3Driver(options)
    slow = S3Driver(options, client=make_client(options, retries=0), fast=False)
    assert fast.fast is not None
    fast.fast.store = fast_store(options, fast.client._get_credentials(), retries=0)
    for call in (lambda d: d.read_object("/f", "f"), lambda d: d.put_object("/f", "f", b"x")):
        for driver in (fast, slow):
            kind, message = _error(lambda: call(driver))  # noqa: B023
            assert kind is StorageUnavailable and message.find("S3 unreachable") >= 0


class _FaultProxy:
    """An HTTP proxy to the S3 endpoint that answers 503 SlowDown to the next ``fail`` requests."""

    def __init__(self, upstream: S3Endpoint) -> None:
        self.fail = 0
        self.requests = 0
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _relay(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                proxy.requests += 1
                if proxy.fail > 0:
                    proxy.fail -= 1
                    error = b"<Error><Code>SlowDown</Code><Message>slow down</Message></Error>"
                    self.send_response(503)
                    self.send_header("Content-Length", str(len(error)))
                    self.end_headers()
                    self.wfile.write(error)
                    return
                conn = http.client.HTTPConnection(upstream.host, upstream.port, timeout=30)
                try:
                    conn.request(self.command, self.path, body, dict(self.headers.items()))
                    resp = conn.getresponse()
                    data = resp.read()
                finally:
                    conn.close()
                self.send_response(resp.status)
                for name, value in resp.getheaders():
                    if name.lower() not in ("content-length", "connection", "transfer-encoding"):
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_PUT = do_HEAD = do_POST = do_DELETE = _relay

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fault_proxy(s3_endpoint: S3Endpoint) -> Iterator[_FaultProxy]:  # noqa: F811
    proxy = _FaultProxy(s3_endpoint)
    yield proxy
    proxy.close()


def test_slowdown_is_retried_then_unavailable(
    fault_proxy: _FaultProxy,
    s3_endpoint: S3Endpoint,  # noqa: F811
    new_bucket: Callable[[], str],  # noqa: F811
) -> None:
    """obstore retries 503 SlowDown as botocore's standard mode does; if it persists: 503 to clients."""
    params = s3_endpoint.params(new_bucket()) | {"regionendpoint": fault_proxy.url}
    driver = S3Driver(parse_s3_options(params))
    assert driver.fast is not None
    driver.put_content("/f", b"x")
    fault_proxy.fail, fault_proxy.requests = 2, 0
    assert driver.read_whole("/f") == b"x"
    assert fault_proxy.requests == 3
    # the store with fewer retries, to bound the test's backoff sleeps
    driver.fast.store = fast_store(driver.options, driver.client._get_credentials(), retries=2)
    fault_proxy.fail, fault_proxy.requests = 100, 0
    with pytest.raises(StorageUnavailable, match="S3 SlowDown: slow down"):
        driver.read_whole("/f")
    assert fault_proxy.requests == 3  # the first try and two retries
    with pytest.raises(StorageUnavailable, match="S3 SlowDown: slow down"):
        driver.put_object("/g", driver.key("/g"), b"y")


def test_refreshed_credentials_reach_obstore() -> None:
    """The provider hands obstore what botocore's credentials say now, refreshed when due."""
    issued = iter([("first", "2000-01-01T00:00:00Z"), ("second", "2999-01-01T00:00:00Z")])

    def refresh() -> dict[str, str]:
        key, expiry = next(issued)  # the first has expired: the provider must refresh it
        return {
            "access_key": key,
            "secret_key": key + "-secret",
            "token": key + "-token",
            "expiry_time": expiry,
        }

    credentials = RefreshableCredentials.create_from_metadata(
        refresh(), refresh, "test", advisory_timeout=0, mandatory_timeout=0
    )
    provider = _BotocoreCredentials(credentials)
    got = provider()
    assert (got["access_key_id"], got["token"]) == ("second", "second-token")
    assert got["expires_at"] is not None


def test_what_stays_on_botocore(
    s3_endpoint: S3Endpoint,  # noqa: F811
    new_bucket: Callable[[], str],  # noqa: F811
) -> None:
    """Directory markers and keys obstore would normalise; endpoints it cannot address."""
    assert plain_key("reg/docker/registry/v2/a~upload")
    for key in ("reg/dir/", "", "a//b", "a/./b", "a/../b"):
        assert not plain_key(key)
    params = s3_endpoint.params(new_bucket(), forcepathstyle=False)
    assert S3Driver(parse_s3_options(params)).fast is None


@pytest.mark.parametrize(
    "text",
    [
        "2026-01-02T03:04:05.000Z",
        "2026-01-02T03:04:05Z",
        "2026-01-02T03:04:05.123456+02:00",
        "Fri, 02 Jan 2026 03:04:05 GMT",
        "1767323045",
        "2026-01-02 03:04:05",
    ],
)
def test_timestamps_parse_as_botocores(text: str) -> None:
    """The driver client's timestamp parser gives what botocore's own gives, fast or not."""
    assert _timestamp(text) == parse_timestamp(text)
    assert _timestamp(text).utcoffset() == parse_timestamp(text).utcoffset()


def test_listing_dates_agree_with_a_default_client(
    s3_endpoint: S3Endpoint,  # noqa: F811
    new_bucket: Callable[[], str],  # noqa: F811
) -> None:
    bucket = new_bucket()
    plain = s3_endpoint.client()
    plain.put_object(Bucket=bucket, Key="k/a", Body=b"a")
    ours = make_client(parse_s3_options(s3_endpoint.params(bucket)))
    for call in (
        lambda c: [o["LastModified"] for o in c.list_objects_v2(Bucket=bucket)["Contents"]],
        lambda c: c.get_object(Bucket=bucket, Key="k/a")["LastModified"],
    ):
        assert call(ours) == call(plain)
