"""The S3 driver's small-object calls through obstore (Rust ``object_store``), not botocore.

HeadObject, whole GetObject of small objects, PutObject, ListObjectsV2 and
DeleteObjects are most of the S3 calls of an image push, and botocore spends
several times obstore's CPU on each (``benchmarks/s3_call_cpu.py``). This
module gives the driver those calls with the same results and the same
errors as its botocore paths; multipart uploads, UploadPartCopy, CopyObject,
presigned URLs and the start-up check stay on botocore.

Of the listings only the delimiter listing of a directory (``dir/``) is
here: object_store lists whole directories only (no raw key prefix, no
MaxKeys) and strips a key's trailing ``/``, which such a listing can
undo exactly (see :meth:`FastS3.list_dir`).

The store is configured from the same :class:`S3Options`: endpoint, path or
virtual-host style, TLS and verification, region, SSE (``encrypt``,
``keyid``), storage class on writes; credentials are resolved by botocore
(configured keys, else the standard AWS chain: environment, profiles,
instance roles) and handed to obstore through a provider that asks botocore
again whenever its short lease runs out, so refreshed credentials are used.
Throttling, 5xx answers and timeouts are retried with exponential backoff,
as many times as botocore's standard mode would.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final, cast

import obstore
from botocore.credentials import Credentials
from obstore.exceptions import InvalidPathError, NotFoundError
from obstore.store import S3Store

from ocistore.driver.s3_errors import NOT_FOUND_CODES, THROTTLE_CODES
from ocistore.driver.s3_options import S3Options
from ocistore.errors import DriverError, PathNotFound, StorageUnavailable

if TYPE_CHECKING:
    from obstore.store import S3Credential

__all__ = ["FastS3", "fast_store", "plain_key", "translate"]

CREDENTIAL_LEASE: Final = timedelta(minutes=1)
"""How long obstore keeps credentials before asking botocore again (which refreshes them)."""


class _BotocoreCredentials:
    """obstore credential provider backed by botocore's resolved (refreshable) credentials."""

    def __init__(self, credentials: Credentials) -> None:
        self._credentials = credentials

    def __call__(self) -> S3Credential:
        frozen = self._credentials.get_frozen_credentials()
        return {
            "access_key_id": frozen.access_key,
            "secret_access_key": frozen.secret_key,
            "token": frozen.token,
            "expires_at": datetime.now(UTC) + CREDENTIAL_LEASE,
        }


def fast_store(options: S3Options, credentials: Credentials, *, retries: int = 5) -> S3Store | None:
    """An obstore ``S3Store`` on ``options``' bucket, or None where only botocore can reach it.

    ``retries`` counts retries after the first attempt, as botocore's ``max_attempts`` does.
    """
    endpoint = options.endpoint_url
    virtual = not options.forcepathstyle
    if endpoint is not None and virtual:
        # botocore puts the bucket into the endpoint's host name; object_store
        # wants that host given: leave such set-ups to botocore.
        return None
    if endpoint is None and "." in options.bucket:
        virtual = False  # botocore falls back to path style for such buckets, too
    config: dict[str, Any] = {
        "region": options.region,
        "virtual_hosted_style_request": virtual,
    }
    if endpoint is not None:
        config["endpoint"] = endpoint
    if options.encrypt:
        config["server_side_encryption"] = "aws:kms" if options.keyid else "AES256"
        if options.keyid:
            config["sse_kms_key_id"] = options.keyid
    client_options: dict[str, Any] = {
        "allow_http": endpoint is not None and endpoint.startswith("http://"),
        "connect_timeout": timedelta(seconds=5),
        "timeout": timedelta(seconds=60),
        "pool_max_idle_per_host": "64",
    }
    if options.skipverify:
        client_options["allow_invalid_certificates"] = True
    return S3Store(
        options.bucket,
        config=cast(Any, config),
        client_options=cast(Any, client_options),
        retry_config={
            "max_retries": retries,
            "backoff": {
                "init_backoff": timedelta(milliseconds=100),
                "max_backoff": timedelta(seconds=20),
                "base": 2,
            },
            "retry_timeout": timedelta(minutes=2),
        },
        credential_provider=_BotocoreCredentials(credentials),
    )


_STATUS = re.compile(r"status code: ([1-5][0-9][0-9])")
_CODE = re.compile(r"<Code>([^<]*)</Code>")
_MESSAGE = re.compile(r"<Message>([^<]*)</Message>")
_STANDARD_ATTRIBUTES: Final = frozenset(
    {
        "content-disposition",
        "content-encoding",
        "content-language",
        "content-type",
        "cache-control",
        "storage-class",
    }
)


def translate(exc: Exception, path: str, driver: str) -> DriverError:
    """The driver error for an obstore failure: what ``s3_errors.translate`` makes of botocore's.

    obstore reports S3's answer (status line and XML error body) in the
    exception's text; S3's code decides, as for botocore (a missing bucket is
    a 404 too, but not a missing file).
    """
    text = str(exc)
    status_match = _STATUS.search(text)
    if status_match is None:
        if isinstance(exc, NotFoundError):
            return PathNotFound(path, driver)
        first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
        return StorageUnavailable(path, driver, f"S3 unreachable: {first}")
    status = int(status_match.group(1))
    code_match, message_match = _CODE.search(text), _MESSAGE.search(text)
    code = code_match.group(1) if code_match else ""
    if code in NOT_FOUND_CODES or (not code and status == 404):
        return PathNotFound(path, driver)
    message = message_match.group(1) if message_match else text.strip().splitlines()[0]
    detail = f"S3 {code or status}: {message}"
    if code in THROTTLE_CODES or status >= 500:
        return StorageUnavailable(path, driver, detail)
    return DriverError(path, driver, detail)


def plain_key(key: str) -> bool:
    """Whether obstore addresses ``key`` exactly (not a ``dir/`` marker, no empty or dot segment)."""
    return bool(key) and not any(part in ("", ".", "..") for part in key.split("/"))


Observer = Callable[[str, str], None]
"""Told the S3 operation and key of every call made through :class:`FastS3` (tests count them)."""


class FastS3:
    """The small-object calls of one bucket through obstore, answered as the driver's botocore paths."""

    def __init__(self, store: S3Store, driver: str, write_attributes: dict[str, str]) -> None:
        self.store = store
        self.observers: list[Observer] = []
        self._driver = driver
        self._attributes = write_attributes

    def _saw(self, operation: str, key: str) -> None:
        for observer in self.observers:
            observer(operation, key)

    def head(self, path: str, key: str) -> dict[str, Any] | None:
        """HeadObject's answer as botocore shapes it (length, ETag, metadata, date); None if absent."""
        self._saw("HeadObject", key)
        try:
            result = obstore.get(self.store, key, options={"head": True})
        except Exception as exc:
            error = translate(exc, path, self._driver)
            if isinstance(error, PathNotFound):
                return None
            raise error from exc
        meta = result.meta
        metadata = {
            str(k): str(v)
            for k, v in result.attributes.items()
            if str(k).lower() not in _STANDARD_ATTRIBUTES
        }
        return {
            "ContentLength": int(meta["size"]),
            "ETag": meta["e_tag"],
            "LastModified": meta["last_modified"],
            "Metadata": metadata,
        }

    def read(self, path: str, key: str) -> bytes:
        """The whole object ``key``."""
        self._saw("GetObject", key)
        try:
            return bytes(obstore.get(self.store, key).bytes())
        except Exception as exc:
            raise translate(exc, path, self._driver) from exc

    def put(self, path: str, key: str, body: bytes, metadata: dict[str, str]) -> None:
        """One PutObject with the driver's write attributes (type, storage class) and ``metadata``."""
        self._saw("PutObject", key)
        attributes: Any = {**self._attributes, **metadata}
        try:
            obstore.put(self.store, key, body, attributes=attributes, use_multipart=False)
        except Exception as exc:
            raise translate(exc, path, self._driver) from exc

    def list_dir(self, path: str, prefix: str) -> dict[str, Any] | None:
        """ListObjectsV2 of ``prefix`` (``dir/``) with delimiter ``/``, as one botocore-shaped page.

        In such a listing only the key ``prefix`` itself (the directory's
        marker) can end in ``/`` among the objects, and every common prefix
        ends in one: object_store strips them, and they are put back here.
        None when botocore must list instead: a key object_store will not
        parse (an empty, ``.`` or ``..`` segment) is below ``prefix``.
        """
        base = prefix[:-1]
        # S3 pages hold 1,000 keys and common prefixes together; observers see each page.
        try:
            result = obstore.list_with_delimiter(self.store, base)
        except InvalidPathError:
            self._saw("ListObjectsV2", prefix)  # at least the page that held the key
            return None
        except Exception as exc:
            self._saw("ListObjectsV2", prefix)
            raise translate(exc, path, self._driver) from exc
        objects, commons = result["objects"], result["common_prefixes"]
        for _ in range(0, max(len(objects) + len(commons), 1), 1000):
            self._saw("ListObjectsV2", prefix)
        contents = [
            {
                "Key": prefix if meta["path"] == base else meta["path"],
                "Size": meta["size"],
                "LastModified": meta["last_modified"],
            }
            for meta in objects
        ]
        return {
            "Contents": contents,
            "CommonPrefixes": [{"Prefix": common + "/"} for common in commons],
        }

    def delete(self, path: str, keys: list[str]) -> None:
        """DeleteObjects of ``keys`` (1000 a request); missing keys are no error."""
        for start in range(0, len(keys), 1000):
            self._saw("DeleteObjects", keys[start])
        try:
            obstore.delete(self.store, keys)
        except Exception as exc:
            raise translate(exc, path, self._driver) from exc
