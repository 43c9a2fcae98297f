"""A storage driver on S3 or any S3-compatible object store (distribution's ``s3-aws`` driver).

Keys are laid out exactly as distribution's S3 driver lays them out: driver
path ``/docker/registry/v2/...`` is key ``<rootdirectory>/docker/registry/v2/...``
(leading and trailing ``/`` of the root trimmed), one object per file, so a
Go registry and ocistore can share a bucket. Directories are implicit (key
prefixes), as there; what the driver protocol asks beyond that is kept as
small as possible:

- files being written: see :mod:`ocistore.driver.s3_writer` (a multipart
  upload plus a ``<key>~upload`` state object; ``~`` never occurs in a path);
- a directory emptied by deleting its last *file* keeps a zero-byte marker
  ``<dir>/`` so it still exists, as on a filesystem (directory deletes, which
  is all the storage layer does besides pruning hash states, leave none);
- writing below a file, or where a directory is, is refused: one listing
  per write checks the path and the ancestors this process has not yet
  seen as directories (a positive cache, filled by writes and reads, that
  only ever skips that guard);
- files only ever written whole (the storage layer's links, hash states,
  blob data) can be read and statted with one request each
  (``read_whole``, ``stat_whole``; :mod:`ocistore.storage.wholefiles`);
- ``mod_time`` of files this driver writes is kept in object metadata with
  sub-second precision (S3's ``Last-Modified`` has whole seconds);
- ``url_for`` presigns a GET or HEAD of a file, so the server can redirect
  blob reads to S3 (:class:`~ocistore.driver.base.URLForDriver`).

HeadObject, whole GetObject, PutObject and DeleteObjects of plain keys go
through obstore (:mod:`ocistore.driver.s3_fast`), which costs a fraction of
botocore's CPU per call; everything else (listings, multipart uploads,
copies, ranged reads, presigned URLs, the start-up check) through botocore.

Transient failures (throttling, 5xx, timeouts) are retried by both clients
with exponential backoff, as often; what still fails is
:class:`~ocistore.errors.StorageUnavailable`, which the server answers 503.
"""

from __future__ import annotations

import builtins
import contextlib
import email.utils
import io
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any, BinaryIO, Final, cast

import boto3
import botocore.session
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from botocore.utils import parse_timestamp

from ocistore.driver.base import DEFAULT_URL_EXPIRY, MAX_URL_EXPIRY, Buffer, FileInfo
from ocistore.driver.buffers import byte_view
from ocistore.driver.pathcheck import PATH_PATTERN, check_path
from ocistore.driver.s3_errors import error_code, is_not_found, translate
from ocistore.driver.s3_fast import FastS3, fast_store, plain_key
from ocistore.driver.s3_options import MAX_PART, S3Options
from ocistore.driver.s3_writer import STATE_SUFFIX, S3Writer, UploadState, decode_state
from ocistore.driver.walk import walk_tree
from ocistore.errors import DriverError, InvalidOffset, PathNotFound

__all__ = ["S3Driver", "S3Unusable", "make_client"]

MTIME_META: Final = "ocistore-mtime"
"""Object metadata holding the modification time in nanoseconds since the epoch."""

_KNOWN_DIRS_MAX: Final = 100_000
PART_THREADS: Final = 16
"""Threads uploading parts for the writers of every S3 driver in the process."""

_PRESIGN_OPERATIONS: Final = {"GET": "get_object", "HEAD": "head_object"}

_part_pool: ThreadPoolExecutor | None = None
_part_pool_lock = threading.Lock()


def _parts_executor() -> ThreadPoolExecutor:
    global _part_pool
    with _part_pool_lock:
        if _part_pool is None:
            _part_pool = ThreadPoolExecutor(PART_THREADS, thread_name_prefix="ocistore-s3-part")
        return _part_pool


class S3Unusable(RuntimeError):
    """The bucket cannot be used (unreachable, missing, or the credentials are refused)."""


def _timestamp(value: str) -> datetime:
    """Parse S3's timestamps without dateutil's general parser (most of a listing's CPU).

    Listings carry ISO 8601 (``2026-01-02T03:04:05.000Z``), headers RFC 1123
    dates; anything else goes to botocore's own parser.
    """
    with contextlib.suppress(ValueError, TypeError):
        parsed = datetime.fromisoformat(value)
        if parsed.tzinfo is not None:
            return parsed
    with contextlib.suppress(ValueError, TypeError):
        dated = email.utils.parsedate_to_datetime(value)
        if dated.tzinfo is not None:
            return dated
    result: datetime = parse_timestamp(value)
    return result


def make_client(options: S3Options, *, retries: int = 5, iso_timestamps: bool = True) -> Any:
    """A thread-safe botocore S3 client for ``options`` (AWS credential chain if no keys given).

    ``retries`` is how often botocore retries a throttled, failed (5xx) or
    timed-out request, with exponential backoff, before giving up.
    ``iso_timestamps=False`` keeps botocore's own timestamp parser (for
    ``benchmarks/s3_call_cpu.py``).
    """
    core = botocore.session.get_session()
    if iso_timestamps:
        core.get_component("response_parser_factory").set_parser_defaults(
            timestamp_parser=_timestamp
        )
    session = boto3.session.Session(botocore_session=core)
    kwargs: dict[str, Any] = {}
    if options.accesskey or options.secretkey:
        kwargs["aws_access_key_id"] = options.accesskey
        kwargs["aws_secret_access_key"] = options.secretkey
        if options.sessiontoken:
            kwargs["aws_session_token"] = options.sessiontoken
    config = Config(
        region_name=options.region,
        signature_version="s3v4",
        retries={"mode": "standard", "max_attempts": retries},
        connect_timeout=5,
        read_timeout=60,
        max_pool_connections=64,
        s3={"addressing_style": "path" if options.forcepathstyle else "auto"},
        # Many S3-compatible servers refuse the newer default trailing checksums.
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )
    return session.client(
        "s3",
        endpoint_url=options.endpoint_url,
        use_ssl=options.secure,
        verify=False if options.skipverify else None,
        config=config,
        **kwargs,
    )


@dataclass(slots=True)
class _Probe:
    """What one listing says about a path: the object, its upload state, and whether it is a directory."""

    obj: dict[str, Any] | None = None
    state: bool = False
    is_dir: bool = False


class S3Driver:
    """A :class:`~ocistore.driver.base.StorageDriver` on an S3 bucket (see the module docstring)."""

    name = "s3"
    lazy_upload_data = True
    """Uploads open their data file at the first byte (:meth:`BlobWriter.create`): no request before."""

    def __init__(
        self,
        options: S3Options,
        *,
        client: Any = None,
        fast: bool = True,
    ) -> None:
        """``fast=False`` sends every call through botocore (the differential tests compare)."""
        self.options = options
        self._own_client = client is None
        self.client = client if client is not None else make_client(options)
        self.bucket = options.bucket
        self._root = options.rootdirectory.rstrip("/")
        self._lock = threading.Lock()
        self._writers: dict[str, S3Writer] = {}
        self._known_dirs: set[str] = set()
        self._write_args: dict[str, Any] = {"ContentType": "application/octet-stream"}
        if options.storageclass != "NONE":
            self._write_args["StorageClass"] = options.storageclass
        if options.encrypt:
            self._write_args["ServerSideEncryption"] = "aws:kms" if options.keyid else "AES256"
            if options.keyid:
                self._write_args["SSEKMSKeyId"] = options.keyid
        self.fast: FastS3 | None = None
        credentials = self.client._get_credentials() if fast else None
        store = fast_store(options, credentials) if credentials is not None else None
        if store is not None:
            attributes = {"Content-Type": "application/octet-stream"}
            if options.storageclass != "NONE":
                attributes["Storage-Class"] = options.storageclass
            self.fast = FastS3(store, self.name, attributes)

    # --- keys -------------------------------------------------------------------------

    def key(self, path: str) -> str:
        """The object key of driver path ``path`` (distribution's ``s3Path``)."""
        return (self._root + path).lstrip("/")

    def _dir_prefix(self, path: str) -> str:
        return (
            "" if path == "/" and not self._root.lstrip("/") else self.key(path).rstrip("/") + "/"
        )

    @contextlib.contextmanager
    def _errors(self, path: str) -> Iterator[None]:
        try:
            yield
        except (ClientError, BotoCoreError) as exc:
            raise translate(exc, path, self.name) from exc

    # --- start-up check ------------------------------------------------------------------

    def check(self) -> None:
        """Raise :class:`S3Unusable` with one line saying why the bucket cannot be used."""
        where = self.options.endpoint_url or f"AWS region {self.options.region}"
        # At start-up a dead endpoint should fail fast, not after the request retries.
        client = make_client(self.options, retries=0) if self._own_client else self.client
        try:
            client.list_objects_v2(Bucket=self.bucket, MaxKeys=1)
        except ClientError as exc:
            code = error_code(exc)
            if code == "NoSuchBucket":
                raise S3Unusable(f"S3 bucket {self.bucket!r} does not exist at {where}") from None
            if code in ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "403"):
                raise S3Unusable(
                    f"S3 refused the credentials for bucket {self.bucket!r} at {where} ({code})"
                ) from None
            raise S3Unusable(f"S3 bucket {self.bucket!r} at {where}: {code}: {exc}") from None
        except BotoCoreError as exc:
            raise S3Unusable(f"S3 endpoint {where} is unreachable: {exc}") from None

    # --- small object calls (also used by the writer) -----------------------------------

    def put_object(self, path: str, key: str, body: bytes, *, mtime: float | None = None) -> None:
        meta = {MTIME_META: str(int((time.time() if mtime is None else mtime) * 1e9))}
        if self.fast is not None and plain_key(key):
            self.fast.put(path, key, body, meta)
            return
        with self._errors(path):
            self.client.put_object(
                Bucket=self.bucket, Key=key, Body=body, Metadata=meta, **self._write_args
            )

    def read_object(self, path: str, key: str) -> bytes:
        if self.fast is not None and plain_key(key):
            return self.fast.read(path, key)
        with self._errors(path):
            body: bytes = self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        return body

    def delete_keys(self, path: str, keys: list[str]) -> None:
        if not keys:
            return
        if self.fast is not None and all(plain_key(k) for k in keys):
            self.fast.delete(path, keys)
            return
        for start in range(0, len(keys), 1000):
            batch = [{"Key": k} for k in keys[start : start + 1000]]
            with self._errors(path):
                resp = self.client.delete_objects(
                    Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True}
                )
            errors = resp.get("Errors") or []
            if errors:
                first = errors[0]
                raise DriverError(
                    path, self.name, f"S3 {first.get('Code')}: could not delete {first.get('Key')}"
                )

    def create_upload(self, path: str, key: str) -> str:
        with self._errors(path):
            resp = self.client.create_multipart_upload(
                Bucket=self.bucket, Key=key, **self._write_args
            )
        return str(resp["UploadId"])

    def upload_part(self, path: str, key: str, upload_id: str, number: int, body: bytes) -> str:
        with self._errors(path):
            resp = self.client.upload_part(
                Bucket=self.bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=body
            )
        return str(resp["ETag"])

    def submit_part(
        self, path: str, key: str, upload_id: str, number: int, body: bytes
    ) -> Future[str]:
        """:meth:`upload_part` on the process's part pool."""
        return _parts_executor().submit(self.upload_part, path, key, upload_id, number, body)

    def copy_part(
        self, path: str, key: str, upload_id: str, number: int, source: str, first: int, last: int
    ) -> str:
        with self._errors(path):
            resp = self.client.upload_part_copy(
                Bucket=self.bucket,
                Key=key,
                UploadId=upload_id,
                PartNumber=number,
                CopySource={"Bucket": self.bucket, "Key": source},
                CopySourceRange=f"bytes={first}-{last}",
            )
        return str(resp["CopyPartResult"]["ETag"])

    def complete_upload(
        self, path: str, key: str, upload_id: str, parts: list[tuple[str, int]]
    ) -> None:
        listed = [{"ETag": etag, "PartNumber": n} for n, (etag, _) in enumerate(parts, 1)]
        with self._errors(path):
            self.client.complete_multipart_upload(
                Bucket=self.bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": listed}
            )

    def abort_upload(self, path: str, key: str, upload_id: str) -> None:
        try:
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
        except ClientError as exc:
            if error_code(exc) != "NoSuchUpload":
                raise translate(exc, path, self.name) from exc
        except BotoCoreError as exc:
            raise translate(exc, path, self.name) from exc

    def abort_uploads_under(self, path: str, prefix: str) -> int:
        """Abort every multipart upload whose key starts with ``prefix``; return how many."""
        count = 0
        with self._errors(path):
            pages = self.client.get_paginator("list_multipart_uploads").paginate(
                Bucket=self.bucket, Prefix=prefix
            )
            for page in pages:
                for upload in page.get("Uploads") or []:
                    self.abort_upload(path, upload["Key"], upload["UploadId"])
                    count += 1
        return count

    def forget_writer(self, path: str, writer: S3Writer) -> None:
        with self._lock:
            if self._writers.get(path) is writer:
                del self._writers[path]

    # --- probing ------------------------------------------------------------------------

    def _head(self, path: str, key: str) -> dict[str, Any] | None:
        if self.fast is not None and plain_key(key):
            return self.fast.head(path, key)
        try:
            resp: dict[str, Any] = self.client.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if is_not_found(exc) or exc.response.get("Error", {}).get("Code") == "404":
                return None
            raise translate(exc, path, self.name) from exc
        except BotoCoreError as exc:
            raise translate(exc, path, self.name) from exc
        return resp

    def _probe(self, path: str) -> _Probe:
        """One listing of the keys that start with ``path``'s key: file, upload state, directory."""
        key = self.key(path)
        found = _Probe()
        with self._errors(path):
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=key, Delimiter="/"
            )
            for page in pages:
                for obj in page.get("Contents") or []:
                    if obj["Key"] == key:
                        found.obj = obj
                    elif obj["Key"] == key + STATE_SUFFIX:
                        found.state = True
                for common in page.get("CommonPrefixes") or []:
                    if common["Prefix"] == key + "/":
                        found.is_dir = True
        return found

    def _load_state(self, path: str) -> UploadState | None:
        try:
            raw = self.read_object(path, self.key(path) + STATE_SUFFIX)
        except PathNotFound:
            return None
        return decode_state(raw, path, self.name)

    def _materialize_stored(self, path: str) -> int | None:
        """Complete the in-progress file at ``path`` into a plain object; its size, or None if none."""
        state = self._load_state(path)
        if state is None:
            return None
        writer = S3Writer(self, path, state=state)
        try:
            writer.materialize()
        except DriverError:
            # Someone else may have completed it meanwhile: then the object is there.
            head = self._head(path, self.key(path))
            if head is None:
                raise
            return int(head["ContentLength"])
        writer.close()
        return state.size

    def _mod_time(self, head: dict[str, Any]) -> float:
        raw = (head.get("Metadata") or {}).get(MTIME_META)
        if raw is not None:
            with contextlib.suppress(ValueError):
                return int(raw) / 1e9
        return float(head["LastModified"].timestamp())

    def _check_writable(self, path: str) -> _Probe:
        """Refuse to write where a directory is or below a file; return the probe of ``path``.

        Ancestors this process knows as directories are not checked again.
        The unknown ones (new directories: a new upload's, blob's or tag's)
        are usually few and nearly empty, so one listing of everything
        below the highest of them answers for them and for the path at
        once; only when that listing does not fit one page are the path
        probed and the ancestors HEADed one by one.
        """
        parts = path.split("/")[1:-1]
        known = len(parts)
        while known and self.key("/" + "/".join(parts[:known])) not in self._known_dirs:
            known -= 1
        unknown = ["/" + "/".join(parts[:depth]) for depth in range(len(parts), known, -1)]
        probe = self._probe_below(path, unknown) if unknown else self._probe(path)
        if probe is None:
            probe = self._probe(path)
            for ancestor in unknown:
                if self._head(path, self.key(ancestor)) is not None:
                    raise DriverError(path, self.name, f"{ancestor} is a file")
        if probe.is_dir:
            raise DriverError(path, self.name, "a directory is there")
        return probe

    def _probe_below(self, path: str, ancestors: builtins.list[str]) -> _Probe | None:
        """:meth:`_probe` of ``path`` from one page listing the highest of ``ancestors``.

        Raises DriverError if one of ``ancestors`` is a file; None if the
        listing needs more than one page.
        """
        key = self.key(path)
        files = {self.key(a): a for a in ancestors}
        with self._errors(path):
            page = self.client.list_objects_v2(Bucket=self.bucket, Prefix=self.key(ancestors[-1]))
        if page.get("IsTruncated"):
            return None
        found = _Probe()
        for obj in page.get("Contents") or []:
            name = obj["Key"]
            if name == key:
                found.obj = obj
            elif name == key + STATE_SUFFIX:
                found.state = True
            elif name.startswith(key + "/"):
                found.is_dir = True
            elif name in files:
                raise DriverError(path, self.name, f"{files[name]} is a file")
        return found

    def _wrote(self, path: str) -> None:
        """Remember that ``path`` is a file and all its ancestors are directories."""
        parts = path.split("/")[1:-1]
        with self._lock:
            if len(self._known_dirs) > _KNOWN_DIRS_MAX:
                self._known_dirs.clear()
            self._known_dirs.discard(self.key(path))
            for depth in range(1, len(parts) + 1):
                self._known_dirs.add(self.key("/" + "/".join(parts[:depth])))

    def _drop_state(self, path: str) -> None:
        """Abort and remove an in-progress file's upload (after its path was replaced)."""
        try:
            state = self._load_state(path)
        except DriverError:
            state = None
        key = self.key(path)
        if state is not None:
            self.abort_upload(path, key, state.upload_id)
        self.delete_keys(path, [key + STATE_SUFFIX])

    def _saw_file(self, path: str) -> None:
        """``path`` was read as a file: its ancestors are directories (a positive cache)."""
        parts = path.split("/")[1:-1]
        keys = [self.key("/" + "/".join(parts[:depth])) for depth in range(1, len(parts) + 1)]
        with self._lock:
            if keys and keys[-1] in self._known_dirs:
                return
            if len(self._known_dirs) > _KNOWN_DIRS_MAX:
                self._known_dirs.clear()
            self._known_dirs.update(keys)

    def _open_writer(self, path: str) -> S3Writer | None:
        with self._lock:
            return self._writers.get(path)

    # --- files written whole (what the storage layer asks most) ----------------------

    def stat_whole(self, path: str) -> FileInfo:
        """:meth:`stat` of a file only ever written whole (put_content, move): one HeadObject.

        A directory, or a file still being written by a writer of another
        process, is reported as :class:`~ocistore.errors.PathNotFound`
        instead of being looked for with a listing.
        """
        check_path(path, self.name)
        writer = self._open_writer(path)
        if writer is not None:
            return FileInfo(path, writer.size, writer.mod_time, False)
        head = self._head(path, self.key(path))
        if head is None:
            raise PathNotFound(path, self.name)
        self._saw_file(path)
        return FileInfo(path, int(head["ContentLength"]), self._mod_time(head), False)

    def read_whole(self, path: str) -> bytes:
        """:meth:`get_content` of a file only ever written whole: one GetObject (see :meth:`stat_whole`)."""
        check_path(path, self.name)
        writer = self._open_writer(path)
        if writer is not None:
            return self.get_content(path)
        body = self.read_object(path, self.key(path))
        self._saw_file(path)
        return body

    def delete_whole(self, paths: builtins.list[str]) -> None:
        """Delete files written whole in one DeleteObjects (missing ones skipped, no markers left)."""
        for path in paths:
            check_path(path, self.name)
        if paths:
            self.delete_keys(paths[0], [self.key(path) for path in paths])

    # --- bulk calls for the garbage collector (optional; see storage/bulk.py) -----------

    flat_listing = True
    """:meth:`walk_files` lists a whole subtree at 1,000 keys a request, whatever its depth."""

    def walk_files(self, path: str) -> Iterator[FileInfo]:
        """Every file below directory ``path``, in key order, from one listing without a delimiter.

        One request per 1,000 keys instead of one per directory. Files still
        being written (an upload state, no object yet) and directory markers
        are left out; ``mod_time`` is ``Last-Modified``, as :meth:`walk` gives.
        """
        check_path(path, self.name, allow_root=True)
        prefix = self._dir_prefix(path)
        base = "" if path == "/" else path
        with self._errors(path):
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=prefix
            )
            for page in pages:
                for obj in page.get("Contents") or []:
                    child = f"{base}/{obj['Key'][len(prefix) :]}"
                    if child.endswith("/") or not PATH_PATTERN.fullmatch(child):
                        continue  # a directory marker, or an upload state (``~``)
                    mtime = float(obj["LastModified"].timestamp())
                    yield FileInfo(child, int(obj["Size"]), mtime, False)

    def delete_files(
        self, paths: builtins.list[str], *, sync: bool = True, whole: bool = False
    ) -> dict[str, str]:
        """Delete files (one DeleteObjects per 1,000); missing ones are skipped, no marker is left.

        A directory emptied by this is gone, as after :meth:`delete` of it.
        Returns the files S3 would not delete, with its error code. ``sync``
        and ``whole`` are there for the filesystem driver's sake: a
        DeleteObjects is durable, and a listing here shows every key beside a
        file (:meth:`walk_files` has no ``leaf``), so the caller knows them.
        """
        keys = {}
        for path in paths:
            check_path(path, self.name)
            keys[self.key(path)] = path
        failed: dict[str, str] = {}
        names = builtins.list(keys)
        for start in range(0, len(names), 1000):
            batch = [{"Key": k} for k in names[start : start + 1000]]
            with self._errors(paths[0]):
                resp = self.client.delete_objects(
                    Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True}
                )
            for error in resp.get("Errors") or []:
                path = keys.get(error.get("Key", ""), error.get("Key", ""))
                failed[path] = f"S3 {error.get('Code')}: {error.get('Message', '')}".strip()
        return failed

    # --- StorageDriver ----------------------------------------------------------------

    def get_content(self, path: str) -> bytes:
        check_path(path, self.name)
        writer = self._open_writer(path)
        if writer is not None:
            writer.materialize()
        key = self.key(path)
        for _ in range(2):
            try:
                return self.read_object(path, key)
            except PathNotFound:
                if self._materialize_stored(path) is None:
                    raise
        raise PathNotFound(path, self.name)

    def put_content(self, path: str, data: Buffer) -> None:
        check_path(path, self.name)
        with byte_view(data) as view:
            body = view.tobytes()
        probe = self._check_writable(path)
        self.put_object(path, self.key(path), body)
        self._wrote(path)
        if probe.state:
            self._drop_state(path)

    def reader(self, path: str, offset: int = 0) -> BinaryIO:
        check_path(path, self.name)
        if offset < 0:
            raise InvalidOffset(path, offset, self.name)
        writer = self._open_writer(path)
        if writer is not None:
            writer.materialize()
        for _ in range(2):
            try:
                return cast(BinaryIO, _S3Reader.open(self, path, offset))
            except PathNotFound:
                if self._materialize_stored(path) is None:
                    raise
        raise PathNotFound(path, self.name)

    def writer(self, path: str, append: bool = False) -> S3Writer:
        check_path(path, self.name)
        probe = self._check_writable(path)
        key = self.key(path)
        if not append:
            if probe.state:
                self._drop_state(path)
            if probe.obj is not None:
                self.delete_keys(path, [key])
            writer = S3Writer(self, path, new=True)
        else:
            state = self._load_state(path) if probe.state else None
            obj = probe.obj
            if state is not None and obj is not None:
                # A crash between two steps left both: the larger is the newer.
                if int(obj["Size"]) >= state.size:
                    self.abort_upload(path, key, state.upload_id)
                    self.delete_keys(path, [key + STATE_SUFFIX])
                    state = None
                else:
                    self.delete_keys(path, [key])
                    obj = None
            if state is not None:
                writer = S3Writer(self, path, state=state)
            elif obj is not None:
                writer = S3Writer(self, path, base_size=int(obj["Size"]), object_exists=True)
            else:
                writer = S3Writer(self, path, new=True)
        self._wrote(path)
        with self._lock:
            self._writers[path] = writer
        return writer

    def stat(self, path: str) -> FileInfo:
        check_path(path, self.name, allow_root=True)
        if path == "/":
            return FileInfo("/", 0, 0.0, True)
        writer = self._open_writer(path)
        if writer is not None:
            return FileInfo(path, writer.size, writer.mod_time, False)
        head = self._head(path, self.key(path))
        if head is not None:
            return FileInfo(path, int(head["ContentLength"]), self._mod_time(head), False)
        probe = self._probe(path)
        if probe.state:
            state = self._load_state(path)
            if state is not None:
                return FileInfo(path, state.size, state.mtime, False)
        if probe.is_dir:
            return FileInfo(path, 0, 0.0, True)
        raise PathNotFound(path, self.name)

    def list(self, path: str) -> list[str]:
        check_path(path, self.name, allow_root=True)
        return sorted({info.path for info in self._entries(path, sizes=False)})

    def move(self, source: str, dest: str) -> None:
        check_path(source, self.name)
        check_path(dest, self.name)
        writer = self._open_writer(source)
        if writer is not None:
            writer.materialize()
        src_key, dst_key = self.key(source), self.key(dest)
        head = self._head(source, src_key)
        size = int(head["ContentLength"]) if head is not None else self._materialize_stored(source)
        if size is None:
            if self._probe(source).is_dir:
                raise DriverError(source, self.name, "only files can be moved")
            raise PathNotFound(source, self.name)
        if source == dest:
            return
        probe = self._check_writable(dest)
        self._copy(source, src_key, dst_key, size)
        self._wrote(dest)
        if probe.state:
            self._drop_state(dest)
        self.delete_keys(source, [src_key])

    def delete(self, path: str) -> None:
        check_path(path, self.name)
        key = self.key(path)
        prefix = key + "/"
        # One listing finds the file, its upload state and everything below it;
        # other keys that merely start with the same characters are skipped.
        below: list[str] = []
        is_file = has_state = False
        with self._errors(path):
            for page in self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=key
            ):
                for obj in page.get("Contents") or []:
                    name = obj["Key"]
                    if name == key:
                        is_file = True
                    elif name == key + STATE_SUFFIX:
                        has_state = True
                    elif name.startswith(prefix):
                        below.append(name)
        if not below:
            if not is_file and not has_state:
                raise PathNotFound(path, self.name)
            if has_state:
                self._drop_state(path)
            self.delete_keys(path, [key])
            self._keep_parent(path)
            return
        self.abort_uploads_under(path, prefix)
        if has_state:
            self._drop_state(path)
        self.delete_keys(path, [key, *below] if is_file else below)
        with self._lock:
            self._known_dirs.discard(key)

    def url_for(self, path: str, *, method: str = "GET", expiry: float = DEFAULT_URL_EXPIRY) -> str:
        """A presigned GetObject (or HeadObject) URL of ``path``, valid for ``expiry`` seconds.

        Signing is local (no request to S3); a client that follows the URL
        with a Range header gets those bytes from S3 itself.
        """
        check_path(path, self.name)
        operation = _PRESIGN_OPERATIONS.get(method)
        if operation is None:
            raise ValueError(f"url_for method {method!r}: S3 presigns only GET and HEAD")
        if not 1 <= expiry <= MAX_URL_EXPIRY:
            raise ValueError(
                f"url_for expiry {expiry!r}: must be 1 to {MAX_URL_EXPIRY:.0f} seconds"
            )
        with self._errors(path):
            url: str = self.client.generate_presigned_url(
                operation,
                Params={"Bucket": self.bucket, "Key": self.key(path)},
                ExpiresIn=int(expiry),
            )
        return url

    def walk(self, path: str, start_after: str | None = None) -> Iterator[FileInfo]:
        check_path(path, self.name, allow_root=True)
        if start_after is not None:
            check_path(start_after, self.name, allow_root=True)
        return walk_tree(lambda p: self._entries(p, sizes=True), path, start_after)

    # --- helpers ----------------------------------------------------------------------

    def _entries(self, path: str, *, sizes: bool) -> builtins.list[FileInfo]:
        """The direct children of directory ``path``; PathNotFound if it has none and no marker."""
        prefix = self._dir_prefix(path)
        base = "" if path == "/" else path
        files: dict[str, FileInfo] = {}
        states: list[str] = []
        dirs: dict[str, FileInfo] = {}
        marker = False
        for page in self._list_dir(path, prefix):
            for obj in page.get("Contents") or []:
                name = obj["Key"][len(prefix) :]
                if not name:
                    marker = True
                    continue
                if name.endswith(STATE_SUFFIX):
                    states.append(name[: -len(STATE_SUFFIX)])
                    continue
                child = f"{base}/{name}"
                if PATH_PATTERN.fullmatch(child):
                    mtime = float(obj["LastModified"].timestamp())
                    files[child] = FileInfo(child, int(obj["Size"]), mtime, False)
            for common in page.get("CommonPrefixes") or []:
                child = f"{base}/{common['Prefix'][len(prefix) : -1]}"
                if PATH_PATTERN.fullmatch(child):
                    dirs[child] = FileInfo(child, 0, 0.0, True)
        for name in states:
            child = f"{base}/{name}"
            if child in files or not PATH_PATTERN.fullmatch(child):
                continue
            state = self._load_state(child) if sizes else None
            size, mtime = (state.size, state.mtime) if state else (0, 0.0)
            files[child] = FileInfo(child, size, mtime, False)
        if not files and not dirs and not marker and path != "/":
            raise PathNotFound(path, self.name)
        return [*files.values(), *(d for p, d in dirs.items() if p not in files)]

    def _list_dir(self, path: str, prefix: str) -> Iterator[dict[str, Any]]:
        """The pages of a delimiter listing of ``prefix``: through obstore where it answers the same."""
        if self.fast is not None and plain_key(prefix[:-1]):
            page = self.fast.list_dir(path, prefix)
            if page is not None:
                yield page
                return
        with self._errors(path):
            yield from self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=prefix, Delimiter="/"
            )

    def _keep_parent(self, path: str) -> None:
        """Leave a marker for ``path``'s parent if deleting ``path`` emptied it."""
        parent = path.rsplit("/", 1)[0]
        if not parent:
            return
        prefix = self.key(parent) + "/"
        with self._errors(path):
            resp = self.client.list_objects_v2(Bucket=self.bucket, Prefix=prefix, MaxKeys=1)
        if not resp.get("KeyCount"):
            self.put_object(path, prefix, b"")

    def _copy(self, path: str, source: str, dest: str, size: int) -> None:
        """Server-side copy: one CopyObject up to the threshold, else parallel UploadPartCopy."""
        opts = self.options
        if size <= min(opts.multipartcopythresholdsize, MAX_PART):
            with self._errors(path):
                self.client.copy_object(
                    Bucket=self.bucket,
                    Key=dest,
                    CopySource={"Bucket": self.bucket, "Key": source},
                    MetadataDirective="COPY",
                    **{k: v for k, v in self._write_args.items() if k != "ContentType"},
                )
            return
        upload_id = self.create_upload(path, dest)
        chunk = opts.multipartcopychunksize
        ranges = [(start, min(size, start + chunk) - 1) for start in range(0, size, chunk)]
        try:
            workers = max(1, min(opts.multipartcopymaxconcurrency, len(ranges), 16))
            with ThreadPoolExecutor(max_workers=workers) as pool:
                etags = list(
                    pool.map(
                        lambda nr: self.copy_part(path, dest, upload_id, nr[0], source, *nr[1]),
                        enumerate(ranges, 1),
                    )
                )
            sizes = [last - first + 1 for first, last in ranges]
            self.complete_upload(path, dest, upload_id, list(zip(etags, sizes, strict=True)))
        except BaseException:
            self.abort_upload(path, dest, upload_id)
            raise


class _S3Reader(io.RawIOBase):
    """A seekable reader over one object version (later reads are ranged GETs with If-Match)."""

    def __init__(
        self, driver: S3Driver, path: str, size: int, etag: str, body: Any, pos: int
    ) -> None:
        super().__init__()
        self._driver = driver
        self._path = path
        self._key = driver.key(path)
        self._size = size
        self._etag = etag
        self._body = body
        self._pos = pos

    @classmethod
    def open(cls, driver: S3Driver, path: str, offset: int) -> _S3Reader:
        key = driver.key(path)
        kwargs: dict[str, Any] = {"Range": f"bytes={offset}-"} if offset else {}
        try:
            resp = driver.client.get_object(Bucket=driver.bucket, Key=key, **kwargs)
        except ClientError as exc:
            if error_code(exc) != "InvalidRange":
                raise translate(exc, path, driver.name) from exc
            head = driver._head(path, key)
            if head is None:
                raise PathNotFound(path, driver.name) from None
            return cls(driver, path, int(head["ContentLength"]), head["ETag"], None, offset)
        except BotoCoreError as exc:
            raise translate(exc, path, driver.name) from exc
        content_range = resp.get("ContentRange")
        if content_range:
            size = int(content_range.rsplit("/", 1)[1])
        else:
            size = int(resp["ContentLength"]) + offset
        return cls(driver, path, size, resp["ETag"], resp["Body"], offset)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_SET:
            pos = offset
        elif whence == io.SEEK_CUR:
            pos = self._pos + offset
        elif whence == io.SEEK_END:
            pos = self._size + offset
        else:
            raise ValueError(f"invalid whence {whence}")
        if pos < 0:
            raise ValueError(f"negative seek position {pos}")
        if pos != self._pos:
            self._drop_body()
            self._pos = pos
        return pos

    def _drop_body(self) -> None:
        body, self._body = self._body, None
        if body is not None:
            body.close()

    def _stream(self) -> Any:
        if self._body is None:
            try:
                resp = self._driver.client.get_object(
                    Bucket=self._driver.bucket,
                    Key=self._key,
                    Range=f"bytes={self._pos}-",
                    IfMatch=self._etag,
                )
            except ClientError as exc:
                if error_code(exc) in ("PreconditionFailed", "412"):
                    raise DriverError(
                        self._path, self._driver.name, "file changed while being read"
                    ) from None
                raise translate(exc, self._path, self._driver.name) from exc
            except BotoCoreError as exc:
                raise translate(exc, self._path, self._driver.name) from exc
            self._body = resp["Body"]
        return self._body

    def _read(self, want: int) -> bytes:
        """Up to ``want`` bytes from the current position (fewer only at the end)."""
        if self.closed:
            raise ValueError("I/O operation on closed file")
        want = min(want, self._size - self._pos)
        if want <= 0:
            return b""
        try:
            data: bytes = self._stream().read(want)
        except (ClientError, BotoCoreError) as exc:
            self._drop_body()
            raise translate(exc, self._path, self._driver.name) from exc
        if not data:
            raise DriverError(self._path, self._driver.name, "object ended early")
        self._pos += len(data)
        return data

    def readinto(self, buffer: Any) -> int:
        with memoryview(buffer) as view, view.cast("B") as out:
            data = self._read(out.nbytes)
            out[: len(data)] = data
        return len(data)

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            return self.readall()
        return self._read(size)

    def readall(self) -> bytes:
        return self._read(max(0, self._size - self._pos))

    def close(self) -> None:
        self._drop_body()
        super().close()
