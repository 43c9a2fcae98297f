"""The ``_state`` token an upload's Location carries, in distribution's format.

distribution (``registry/handlers/hmac.go``) signs the JSON of
``{"Name","UUID","Offset","StartedAt"}`` with HMAC-SHA256 keyed by
``http.secret`` and sends ``base64url_padded(mac || json)``. ocistore writes and
reads the same bytes, so a client whose requests alternate between ocistore
and the Go registry (sharing the secret and the storage root) keeps one upload
going across both. ``StartedAt`` is RFC 3339 with nanoseconds and trailing
zeros trimmed, as Go's ``time.Time`` marshals itself.
"""

from __future__ import annotations

import base64
import binascii
import calendar
import hashlib
import hmac
import json
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ocistore.errors import BlobUploadInvalid

__all__ = [
    "UploadState",
    "format_go_time",
    "pack_upload_state",
    "unpack_upload_state",
    "upload_start_time",
]

_MAC_SIZE = 32
_GO_TIME = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:\d{2})"
)


@dataclass(frozen=True, slots=True)
class UploadState:
    """What a token vouches for: the upload's repository, id, size so far and start time.

    ``started_at`` is kept as the exact string the signer wrote (Go keeps
    nanoseconds that a ``datetime`` cannot hold); :func:`format_go_time` makes one.
    """

    name: str
    uuid: str
    offset: int
    started_at: str

    def to_json(self) -> bytes:
        # Field order and compact separators as Go's json.Marshal writes them.
        obj = {
            "Name": self.name,
            "UUID": self.uuid,
            "Offset": self.offset,
            "StartedAt": self.started_at,
        }
        return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def format_go_time(when: datetime | int) -> str:
    """``when`` as Go's ``time.Time`` marshals itself in UTC: RFC 3339, nanoseconds, zeros trimmed.

    That is ``time.RFC3339Nano``: the fraction keeps up to nine digits without
    trailing zeros, and disappears when it is zero (``…:05Z``, ``…:05.12Z``,
    ``…:05.123456789Z``). ``when`` is a ``datetime`` (naive means UTC; it holds
    microseconds at most) or nanoseconds since the Unix epoch (``time.time_ns()``).
    """
    if isinstance(when, datetime):
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = calendar.timegm(when.utctimetuple())
        nanos = when.microsecond * 1000
    else:
        seconds, nanos = divmod(when, 1_000_000_000)
    base = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
    frac = f"{nanos:09d}".rstrip("0")
    return f"{base}.{frac}Z" if frac else f"{base}Z"


def upload_start_time(before_ns: int, started_at: datetime) -> datetime | int:
    """The start time a new upload's token carries, as precise as Go's.

    Go signs the instant ``time.Now()`` it created the upload at (nanoseconds)
    and writes the same instant, cut to whole seconds, to ``startedat``. The
    storage layer here keeps ``started_at`` at the file's precision, so the
    server reads the clock itself (``before_ns``, just before creating the
    upload) and uses that when it falls in the second the file records, so
    the token never disagrees with the file. Otherwise (the second turned in
    between, or the storage kept a finer time) ``started_at`` is used as is.
    """
    if started_at.microsecond:
        return started_at
    if started_at.tzinfo is None:
        started_at = started_at.replace(tzinfo=UTC)
    if before_ns // 1_000_000_000 == calendar.timegm(started_at.utctimetuple()):
        return before_ns
    return started_at


def _secret_bytes(secret: str | bytes) -> bytes:
    return secret.encode() if isinstance(secret, str) else secret


def pack_upload_state(state: UploadState, secret: str | bytes) -> str:
    """The token for ``state`` (padded base64url of HMAC-SHA256 then the JSON)."""
    payload = state.to_json()
    mac = hmac.new(_secret_bytes(secret), payload, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac + payload).decode("ascii")


def unpack_upload_state(token: str, secret: str | bytes) -> UploadState:
    """Verify and decode a token; raises :class:`BlobUploadInvalid` saying what is wrong."""
    try:
        raw = base64.b64decode(token.encode("ascii"), altchars=b"-_", validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise BlobUploadInvalid("_state token is not padded base64url") from None
    if len(raw) < _MAC_SIZE:
        raise BlobUploadInvalid("_state token is too short to hold its signature")
    mac, payload = raw[:_MAC_SIZE], raw[_MAC_SIZE:]
    want = hmac.new(_secret_bytes(secret), payload, hashlib.sha256).digest()
    if not hmac.compare_digest(mac, want):
        raise BlobUploadInvalid("_state token signature does not match (another http.secret?)")
    try:
        obj: Any = json.loads(payload)
    except ValueError:
        raise BlobUploadInvalid("_state token does not hold JSON") from None
    if not isinstance(obj, dict):
        raise BlobUploadInvalid("_state token JSON is not an object")
    name, uuid, offset, started = (obj.get(k) for k in ("Name", "UUID", "Offset", "StartedAt"))
    if not isinstance(name, str) or not isinstance(uuid, str):
        raise BlobUploadInvalid("_state token lacks Name or UUID")
    if not isinstance(offset, int) or isinstance(offset, bool) or offset < 0:
        raise BlobUploadInvalid(f"_state token has a bad Offset {offset!r}")
    if started is None:
        started = "0001-01-01T00:00:00Z"  # Go's zero time, as Go would marshal it
    if not isinstance(started, str) or _GO_TIME.fullmatch(started) is None:
        raise BlobUploadInvalid(f"_state token has a bad StartedAt {started!r}")
    return UploadState(name=name, uuid=uuid, offset=offset, started_at=started)
