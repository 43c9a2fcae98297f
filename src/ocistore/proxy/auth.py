"""Upstream authentication: anonymous, basic, and the Bearer token flow with a per-scope cache.

Follows distribution's ``registry/client/auth`` behaviour: a request goes out
with what is known for its scope; a 401 carries ``WWW-Authenticate``, whose
challenge is remembered per upstream. ``Basic`` sends the configured
credentials; ``Bearer`` fetches a token from the challenge's ``realm`` for
``service`` and the request's ``scope`` (``repository:<name>:pull``), with the
credentials as basic auth when there are any, and keeps it until it expires
(``expires_in``, at least 60 s as the token spec says when absent). Tokens and
credentials never appear in errors or logs.
"""

from __future__ import annotations

import base64
import re
import time
from dataclasses import dataclass
from typing import Final

__all__ = ["Challenge", "TokenCache", "basic_header", "parse_challenges"]

MIN_TOKEN_LIFETIME: Final = 60.0
"""The token spec's default ``expires_in`` (seconds), also the floor of a shorter one."""

_PARAM: Final = re.compile(r'\s*([a-zA-Z0-9_.-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))\s*,?')


@dataclass(frozen=True, slots=True)
class Challenge:
    """One ``WWW-Authenticate`` challenge: its scheme (lower case) and parameters."""

    scheme: str
    params: dict[str, str]


def parse_challenges(header: str) -> list[Challenge]:
    """The challenges of a ``WWW-Authenticate`` value (``Bearer realm="...",service="..."``)."""
    out: list[Challenge] = []
    rest = header.strip()
    while rest:
        m = re.match(r"([A-Za-z][A-Za-z0-9_-]*)\s*", rest)
        if m is None:
            break
        scheme = m.group(1).lower()
        rest = rest[m.end() :]
        params: dict[str, str] = {}
        while rest:
            p = _PARAM.match(rest)
            if p is None:
                break
            # A bare word followed by '=' is a parameter; anything else starts the next challenge.
            params[p.group(1).lower()] = (
                re.sub(r"\\(.)", r"\1", p.group(2)) if p.group(2) is not None else p.group(3)
            )
            rest = rest[p.end() :]
        out.append(Challenge(scheme, params))
        rest = rest.lstrip(", ")
    return out


def basic_header(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode("ascii")


class TokenCache:
    """Bearer tokens by (realm, service, scope) until they expire; one per key."""

    def __init__(self, clock: object = time.monotonic) -> None:
        self._tokens: dict[tuple[str, str, str], tuple[str, float]] = {}
        self._clock = clock

    def _now(self) -> float:
        clock = self._clock
        assert callable(clock)
        now: float = clock()
        return now

    def get(self, realm: str, service: str, scope: str) -> str | None:
        hit = self._tokens.get((realm, service, scope))
        if hit is None:
            return None
        token, expires = hit
        if self._now() >= expires:
            del self._tokens[(realm, service, scope)]
            return None
        return token

    def put(self, realm: str, service: str, scope: str, token: str, expires_in: float) -> None:
        # Renew a little early so a token does not expire in flight.
        lifetime = max(expires_in, MIN_TOKEN_LIFETIME)
        self._tokens[(realm, service, scope)] = (token, self._now() + lifetime * 0.9)

    def forget(self, realm: str, service: str, scope: str) -> None:
        self._tokens.pop((realm, service, scope), None)

    def __len__(self) -> int:
        return len(self._tokens)
