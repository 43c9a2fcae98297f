"""``ocistore.limits``: what one client may make the HTTP server hold, each with a safe default.

::

    ocistore:
      idletimeout: 60s          # a request body may pause this long (the app's wait)
      limits:
        maxheaders: 100         # header fields per request (more: 431)
        maxheaderbytes: 64KiB   # request line and headers together (more: 431)
        maxrequestline: 8KiB    # the request target (more: 414)
        maxconnections: 4096    # open connections per worker (more: 503 and closed)
        headertimeout: 60s      # from a request's first byte to the end of its headers
        keepalivetimeout: 75s   # an idle connection between requests
        sendtimeout: 60s        # a client that takes no byte of a response this long is cut

Bodies are bounded per endpoint by the app: a manifest at 4 MiB (413, as
distribution), a blob by ``ocistore.maxblobsize``. The timeouts left out
follow ``ocistore.idletimeout`` as before (header and send timeouts equal it,
at least 1 s, the header timeout at most 60 s). Under ``--stack granian``
the header timeout, keep-alive and connection count are passed to granian;
the header limits are granian's own (hyper's: 100 fields, its read buffer).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Final

__all__ = ["LIMIT_KEYS", "HTTPLimits", "LimitError", "parse_limits"]


class LimitError(ValueError):
    """An unusable ``ocistore.limits`` value; ``key`` is its dotted name."""

    def __init__(self, key: str, reason: str) -> None:
        self.key = key
        self.reason = reason
        super().__init__(f"config {key}: {reason}")


@dataclass(frozen=True, slots=True)
class HTTPLimits:
    """The server's limits; a timeout left None follows ``ocistore.idletimeout``."""

    max_headers: int = 100
    max_header_bytes: int = 64 << 10
    max_request_line: int = 8 << 10
    max_connections: int = 4096
    header_timeout: float | None = None
    keepalive_timeout: float | None = None
    send_timeout: float | None = None


# config key -> (field, kind, smallest value)
_FIELDS: Final[dict[str, tuple[str, str, float]]] = {
    "maxheaders": ("max_headers", "count", 1),
    "maxheaderbytes": ("max_header_bytes", "size", 1024),
    "maxrequestline": ("max_request_line", "size", 256),
    "maxconnections": ("max_connections", "count", 1),
    "headertimeout": ("header_timeout", "duration", 0.001),
    "keepalivetimeout": ("keepalive_timeout", "duration", 0.001),
    "sendtimeout": ("send_timeout", "duration", 0.001),
}
LIMIT_KEYS: Final = tuple(_FIELDS)
"""The keys of ``ocistore.limits``."""


def parse_limits(section: object, base: HTTPLimits | None = None) -> HTTPLimits:
    """``ocistore.limits`` over ``base``; a key left out keeps its value there."""
    from ocistore.server.config import ConfigError, parse_duration, parse_size

    if not isinstance(section, Mapping):
        raise LimitError("ocistore.limits", f"expected a mapping, got {type(section).__name__}")
    changes: dict[str, Any] = {}
    for key, value in section.items():
        if key not in _FIELDS or value is None:
            continue  # unknown keys are reported by the config loader
        name, kind, least = _FIELDS[key]
        dotted = f"ocistore.limits.{key}"
        try:
            if kind == "duration":
                number: float = parse_duration(value, dotted)
            elif kind == "size":
                number = parse_size(value, dotted)
            else:
                number = _count(value, dotted)
        except ConfigError as exc:
            raise LimitError(exc.key, exc.reason) from None
        if number < least:
            raise LimitError(dotted, f"{value!r} is below the least usable value, {least:g}")
        changes[name] = number
    return replace(base or HTTPLimits(), **changes)


def _count(value: object, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise LimitError(key, f"{value!r} is not a number")
    try:
        return int(value)
    except ValueError:
        raise LimitError(key, f"{value!r} is not a number") from None
