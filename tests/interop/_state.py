"""distribution's upload ``_state`` token, rebuilt independently to check both servers against.

Format (distribution ``registry/handlers/hmac.go``): ``base64.URLEncoding`` (padded)
of ``HMAC-SHA256(secret, payload) || payload``, where ``payload`` is the JSON
``{"Name":…,"UUID":…,"Offset":…,"StartedAt":…}`` and ``StartedAt`` is RFC 3339
with nanoseconds (Go's ``time.Time`` JSON form). The token travels URL-encoded
in the ``_state`` query parameter of every upload Location.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

# Go marshals time.Time as RFC 3339 with up to nine fractional digits (trailing zeros cut).
RFC3339_NANO = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?(Z|[+-]\d\d:\d\d)")
FIELDS = ("Name", "UUID", "Offset", "StartedAt")


class BadToken(ValueError):
    pass


def pack(secret: str, state: dict[str, Any]) -> str:
    payload = json.dumps(state, separators=(",", ":")).encode()
    mac = hmac.new(secret.encode(), payload, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac + payload).decode()


def unpack(secret: str, token: str) -> dict[str, Any]:
    """Verify and decode a token; raises :class:`BadToken` with the reason."""
    try:
        raw = base64.urlsafe_b64decode(token.encode())
    except ValueError as exc:
        raise BadToken(f"not base64url: {exc}") from None
    if len(raw) <= 32:
        raise BadToken("shorter than an HMAC")
    mac, payload = raw[:32], raw[32:]
    want = hmac.new(secret.encode(), payload, hashlib.sha256).digest()
    if not hmac.compare_digest(mac, want):
        raise BadToken("HMAC does not verify with the shared secret")
    state: dict[str, Any] = json.loads(payload)
    return state


def token_of(location: str) -> str:
    values = parse_qs(urlsplit(location).query).get("_state")
    if not values:
        raise BadToken(f"no _state in {location}")
    return values[0]


def with_token(location: str, token: str) -> str:
    """``location`` with its ``_state`` replaced by ``token``."""
    parts = urlsplit(location)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    query["_state"] = token
    return urlunsplit(parts._replace(query=urlencode(query)))


def check_format(token: str, secret: str, *, name: str, uuid: str, offset: int) -> dict[str, Any]:
    """Everything issue 6 requires of a token, with the fields it must carry."""
    assert len(token) % 4 == 0, f"token is not padded base64: {token!r}"
    state = unpack(secret, token)
    assert list(state) == list(FIELDS), state
    assert state["Name"] == name
    assert state["UUID"] == uuid
    assert state["Offset"] == offset
    assert RFC3339_NANO.fullmatch(state["StartedAt"]), state["StartedAt"]
    return state
