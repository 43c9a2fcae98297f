"""The ``storage.s3`` parameters, parsed and checked as distribution's S3 driver reads them.

Keys and defaults follow distribution 2.8 (``region``, ``bucket``,
``regionendpoint``, ``rootdirectory``, ``accesskey``, ``secretkey``,
``encrypt``, ``secure``, ``chunksize``, ``multipartcopychunksize``,
``multipartcopymaxconcurrency``, ``multipartcopythresholdsize``,
``storageclass``) plus ``forcepathstyle`` from distribution 3 (default: on
when ``regionendpoint`` is set, as 2.8 always did). Without ``accesskey`` and
``secretkey`` the usual AWS chain applies: ``AWS_ACCESS_KEY_ID`` /
``AWS_SECRET_ACCESS_KEY`` / ``AWS_SESSION_TOKEN``, ``AWS_PROFILE`` and the
shared config files, then instance credentials. A bad value raises
:class:`S3OptionsError` naming the key, the value and the reason.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

__all__ = ["MIN_PART", "S3Options", "S3OptionsError", "parse_s3_options"]

MIN_PART: Final = 5 << 20
"""S3's smallest multipart part (all but the last)."""
MAX_PART: Final = 5 << 30
"""S3's largest part, and the largest single CopyObject."""
DEFAULT_CHUNK: Final = 2 * MIN_PART
DEFAULT_COPY_CHUNK: Final = 32 << 20
DEFAULT_COPY_CONCURRENCY: Final = 100
DEFAULT_COPY_THRESHOLD: Final = 32 << 20
STORAGE_CLASSES: Final = ("STANDARD", "REDUCED_REDUNDANCY", "NONE")

KEYS: Final = frozenset(
    {
        "region",
        "bucket",
        "regionendpoint",
        "forcepathstyle",
        "rootdirectory",
        "accesskey",
        "secretkey",
        "encrypt",
        "secure",
        "chunksize",
        "multipartcopychunksize",
        "multipartcopymaxconcurrency",
        "multipartcopythresholdsize",
        "storageclass",
        # read by distribution, accepted here so a shared config loads unchanged
        "keyid",
        "v4auth",
        "skipverify",
        "useragent",
        "objectacl",
        "sessiontoken",
    }
)


class S3OptionsError(ValueError):
    """A ``storage.s3`` parameter that cannot be used; the message names it and says why."""

    def __init__(self, key: str, reason: str) -> None:
        self.key = key
        self.reason = reason
        super().__init__(f"{key}: {reason}")


@dataclass(frozen=True, slots=True)
class S3Options:
    """Everything the S3 driver needs to reach its bucket and lay out its keys."""

    bucket: str
    region: str = "us-east-1"
    regionendpoint: str = ""
    forcepathstyle: bool = False
    rootdirectory: str = ""
    accesskey: str = ""
    secretkey: str = ""
    sessiontoken: str = ""
    encrypt: bool = False
    keyid: str = ""
    secure: bool = True
    skipverify: bool = False
    chunksize: int = DEFAULT_CHUNK
    multipartcopychunksize: int = DEFAULT_COPY_CHUNK
    multipartcopymaxconcurrency: int = DEFAULT_COPY_CONCURRENCY
    multipartcopythresholdsize: int = DEFAULT_COPY_THRESHOLD
    storageclass: str = "STANDARD"

    @property
    def endpoint_url(self) -> str | None:
        """The endpoint URL botocore should use (None: AWS's own for the region)."""
        if not self.regionendpoint:
            return None
        if "://" in self.regionendpoint:
            return self.regionendpoint
        return ("https://" if self.secure else "http://") + self.regionendpoint


def _bool(params: Mapping[str, Any], key: str, default: bool) -> bool:
    value = params.get(key)
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "1", "yes", "on"):
        return True
    if isinstance(value, str) and value.lower() in ("false", "0", "no", "off"):
        return False
    raise S3OptionsError(f"storage.s3.{key}", f"{value!r} is not a boolean")


def _int(params: Mapping[str, Any], key: str, default: int, low: int, high: int) -> int:
    value = params.get(key)
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        raise S3OptionsError(f"storage.s3.{key}", f"{value!r} is not an integer")
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise S3OptionsError(f"storage.s3.{key}", f"{value!r} is not an integer") from None
    if not low <= number <= high:
        raise S3OptionsError(f"storage.s3.{key}", f"{number} is outside [{low}, {high}]")
    return number


def _str(params: Mapping[str, Any], key: str) -> str:
    value = params.get(key)
    if value is None:
        return ""
    if not isinstance(value, str | int | float) or isinstance(value, bool):
        raise S3OptionsError(f"storage.s3.{key}", f"{value!r} is not a string")
    return str(value)


def parse_s3_options(params: Mapping[str, Any]) -> S3Options:
    """Check and normalise a ``storage.s3`` mapping (distribution's parameter names)."""
    if not isinstance(params, Mapping):
        raise S3OptionsError("storage.s3", f"expected a mapping, got {type(params).__name__}")
    unknown = sorted(str(k) for k in params if k not in KEYS)
    if unknown:
        raise S3OptionsError(f"storage.s3.{unknown[0]}", "unknown key")
    bucket = _str(params, "bucket")
    if not bucket:
        raise S3OptionsError("storage.s3.bucket", "no bucket given")
    region = _str(params, "region")
    if not region:
        raise S3OptionsError("storage.s3.region", "no region given")
    endpoint = _str(params, "regionendpoint")
    storage_class = _str(params, "storageclass").upper() or "STANDARD"
    if storage_class not in STORAGE_CLASSES:
        raise S3OptionsError(
            "storage.s3.storageclass",
            f"{storage_class!r} is not one of {', '.join(STORAGE_CLASSES)}",
        )
    root = _str(params, "rootdirectory")
    if any(c in root for c in "\\\x00") or ".." in root.split("/"):
        raise S3OptionsError("storage.s3.rootdirectory", f"{root!r} is not a usable key prefix")
    return S3Options(
        bucket=bucket,
        region=region,
        regionendpoint=endpoint,
        forcepathstyle=_bool(params, "forcepathstyle", bool(endpoint)),
        rootdirectory=root,
        accesskey=_str(params, "accesskey"),
        secretkey=_str(params, "secretkey"),
        sessiontoken=_str(params, "sessiontoken"),
        encrypt=_bool(params, "encrypt", False),
        keyid=_str(params, "keyid"),
        secure=_bool(params, "secure", True),
        skipverify=_bool(params, "skipverify", False),
        chunksize=_int(params, "chunksize", DEFAULT_CHUNK, MIN_PART, MAX_PART),
        multipartcopychunksize=_int(
            params, "multipartcopychunksize", DEFAULT_COPY_CHUNK, MIN_PART, MAX_PART
        ),
        multipartcopymaxconcurrency=_int(
            params, "multipartcopymaxconcurrency", DEFAULT_COPY_CONCURRENCY, 1, 1 << 20
        ),
        multipartcopythresholdsize=_int(
            params, "multipartcopythresholdsize", DEFAULT_COPY_THRESHOLD, 0, MAX_PART
        ),
        storageclass=storage_class,
    )
