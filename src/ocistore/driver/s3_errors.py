"""How botocore's errors become driver errors (after botocore's own retries have run out).

Missing keys are :class:`~ocistore.errors.PathNotFound`; throttling, 5xx
answers, timeouts and refused connections are
:class:`~ocistore.errors.StorageUnavailable` (the server answers 503, which
clients retry); anything else (access denied, no such bucket, …) is a plain
:class:`~ocistore.errors.DriverError` carrying S3's code and message.
"""

from __future__ import annotations

from typing import Final

from botocore.exceptions import BotoCoreError, ClientError

from ocistore.errors import DriverError, PathNotFound, StorageUnavailable

__all__ = ["NOT_FOUND_CODES", "error_code", "is_not_found", "translate"]

NOT_FOUND_CODES: Final = frozenset({"NoSuchKey", "404", "NotFound"})
THROTTLE_CODES: Final = frozenset(
    {"SlowDown", "Throttling", "ThrottlingException", "RequestTimeout", "ServiceUnavailable"}
)


def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _status(exc: ClientError) -> int:
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)


def is_not_found(exc: BaseException) -> bool:
    return isinstance(exc, ClientError) and error_code(exc) in NOT_FOUND_CODES


def translate(exc: BaseException, path: str, driver: str) -> DriverError:
    """The driver error that reports ``exc`` for ``path``."""
    if isinstance(exc, ClientError):
        code = error_code(exc)
        if code in NOT_FOUND_CODES:
            return PathNotFound(path, driver)
        message = exc.response.get("Error", {}).get("Message", "") or str(exc)
        detail = f"S3 {code or _status(exc)}: {message}"
        if code in THROTTLE_CODES or _status(exc) >= 500:
            return StorageUnavailable(path, driver, detail)
        return DriverError(path, driver, detail)
    if isinstance(exc, BotoCoreError):
        return StorageUnavailable(path, driver, f"S3 unreachable: {exc}")
    return DriverError(path, driver, f"{type(exc).__name__}: {exc}")
