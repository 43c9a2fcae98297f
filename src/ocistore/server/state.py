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
import hashlib
import hmac
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ocistore.errors import BlobUploadInvalid

__all__ = ["UploadState", "format_go_time", "pack_upload_state", "unpack_upload_state"]

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


def format_go_time(when: datetime) -> str:
    """RFC 3339 in UTC with the fraction trimmed of zeros (Go's ``time.RFC3339Nano``)."""
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    when = when.astimezone(UTC)
    base = when.strftime("%Y-%m-%dT%H:%M:%S")
    frac = f"{when.microsecond:06d}".rstrip("0")
    return f"{base}.{frac}Z" if frac else f"{base}Z"


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
