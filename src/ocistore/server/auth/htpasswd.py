"""``auth.htpasswd``: HTTP Basic against an htpasswd file of bcrypt entries.

As distribution's ``registry/auth/htpasswd``: every request must carry Basic
credentials (401 UNAUTHORIZED with ``WWW-Authenticate: Basic realm="<realm>"``
otherwise), any user in the file gets any access, and the file is re-read
when it changes (a ``stat`` at most every :data:`RECHECK` seconds, where
distribution makes one per request). Only bcrypt
entries (``htpasswd -B``: ``$2y$``, ``$2a$``, ``$2b$``) can match; other
entries are reported once when the file is loaded. An unknown user is
checked against a dummy hash, so a refusal takes as long either way.

bcrypt is slow on purpose, so a verified credential is remembered for
:data:`CACHE_TTL` seconds, keyed by a salted SHA-256 of the ``Authorization``
header (no password is kept in memory). A change of the file forgets every
remembered credential. Failed checks are never remembered; they run in a
small thread pool of their own so that guessing cannot take the storage
threads or block the event loop.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import logging
import os
import secrets
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any, Final

import bcrypt

from ocistore.server.config import ConfigError
from ocistore.server.ctxpool import ContextThreadPool
from ocistore.server.hooks import Access, Decision
from ocistore.server.http import Request

__all__ = ["CACHE_TTL", "HtpasswdController", "parse_htpasswd"]

log = logging.getLogger("ocistore.server.auth")

CACHE_TTL: Final = 60.0
"""Seconds a verified credential is trusted without bcrypt (the file's changes end it at once)."""

CACHE_SIZE: Final = 4096

RECHECK: Final = 1.0
"""Seconds between two looks at the file's mtime (a change is seen within this time)."""
"""Remembered credentials at most; when full, the expired ones go, else all of them."""

_DUMMY_HASH: Final = bcrypt.hashpw(b"ocistore dummy password", bcrypt.gensalt(5))
_BCRYPT_PREFIXES: Final = (b"$2y$", b"$2a$", b"$2b$")


def go_quote(text: str) -> str:
    """``text`` in double quotes with ``"`` and ``\\`` escaped (Go's ``%q`` for printable text)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def parse_htpasswd(data: bytes, path: str = "htpasswd") -> dict[str, bytes]:
    """``user -> bcrypt hash`` from an htpasswd file (blank lines and ``#`` comments skipped).

    A line without ``:`` is a ValueError naming its number, as distribution's
    parser refuses the file.
    """
    entries: dict[str, bytes] = {}
    for number, raw in enumerate(data.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith(b"#"):
            continue
        user, sep, hashed = line.partition(b":")
        if not sep:
            raise ValueError(f"{path}: invalid entry at line {number}: {raw!r}")
        entries[user.decode("utf-8", "surrogateescape")] = hashed
    return entries


class HtpasswdController:
    """Basic authentication for ``realm`` against the htpasswd file at ``path``."""

    def __init__(
        self,
        realm: str,
        path: str,
        *,
        ttl: float = CACHE_TTL,
        recheck: float = RECHECK,
        threads: int = 2,
    ) -> None:
        self.realm = realm
        self.path = path
        self.ttl = ttl
        self.recheck = recheck
        self._next_check = 0.0
        self.challenge = f"Basic realm={go_quote(realm)}"
        self._salt = secrets.token_bytes(16)
        self._lock = threading.Lock()
        self._stamp: tuple[int, int, int] | None = None
        self._entries: dict[str, bytes] = {}
        self._cache: dict[bytes, tuple[Decision, bytes, float]] = {}
        self._pool = ContextThreadPool(threads, thread_name_prefix="ocistore-bcrypt")
        self._reload_if_changed()

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> HtpasswdController:
        """From ``auth.htpasswd``'s keys; ConfigError naming a missing key or an unreadable file."""
        for key in ("realm", "path"):
            if not isinstance(options.get(key), str) or not options[key]:
                raise ConfigError(f"auth.htpasswd.{key}", "must be set (a string)")
        unknown = sorted(set(options) - {"realm", "path"})
        if unknown:
            raise ConfigError(f"auth.htpasswd.{unknown[0]}", "unknown key")
        try:
            return cls(options["realm"], options["path"])
        except (OSError, ValueError) as exc:
            raise ConfigError("auth.htpasswd.path", str(exc)) from None

    # --- the file ---------------------------------------------------------------------

    def _reload_if_changed(self) -> None:
        """Re-read the file when its mtime, size or inode changed (one stat per call)."""
        st = os.stat(self.path)
        stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        if stamp == self._stamp:
            return
        with self._lock:
            if stamp == self._stamp:
                return
            with open(self.path, "rb") as f:
                entries = parse_htpasswd(f.read(), self.path)
            for user, hashed in entries.items():
                if not hashed.startswith(_BCRYPT_PREFIXES):
                    log.warning(
                        "%s: user %r has no bcrypt entry (htpasswd -B): it cannot log in",
                        self.path,
                        user,
                    )
            self._entries = entries
            self._cache = {}
            self._stamp = stamp
            log.info("%s: %d users loaded", self.path, len(entries))

    # --- requests ---------------------------------------------------------------------

    def cached(self, req: Request, access: Sequence[Access]) -> Decision | None:
        """The remembered decision for this ``Authorization`` header, if still good."""
        header = req.header("authorization")
        if not header:
            return None
        now = time.monotonic()
        if now >= self._next_check:
            return None  # time to look at the file: authorized() does
        hit = self._cache.get(hashlib.sha256(self._salt + header.encode("latin-1")).digest())
        if hit is not None:
            decision, hashed, until = hit
            if now < until and self._entries.get(decision.actor or "") is hashed:
                return decision
        return None

    async def authorized(self, req: Request, access: Sequence[Access]) -> Decision:
        header = req.header("authorization")
        if not header:
            return Decision.unauthorized(self.challenge)
        now = time.monotonic()
        if now >= self._next_check:
            try:
                self._reload_if_changed()
            except (OSError, ValueError) as exc:
                # distribution answers a broken file with a bare error; refuse, never allow.
                log.error("htpasswd file unusable, request refused: %s", exc)
                return Decision(False, 503, message="authentication backend unavailable")
            self._next_check = now + self.recheck
        key = hashlib.sha256(self._salt + header.encode("latin-1")).digest()
        hit = self._cache.get(key)
        if hit is not None:
            decision, hashed, until = hit
            if now < until and self._entries.get(decision.actor or "") is hashed:
                return decision
        creds = _basic(header)
        if creds is None:
            return Decision.unauthorized(self.challenge)
        user, password = creds
        entries = self._entries
        hashed_or_none = entries.get(user)
        loop = asyncio.get_running_loop()
        ok = await loop.run_in_executor(self._pool, _check, password, hashed_or_none)
        if not ok:
            log.info("user %r failed to authenticate", user)
            return Decision.unauthorized(self.challenge, "authentication required")
        assert hashed_or_none is not None
        decision = Decision.allow(user)
        if entries is self._entries:  # not reloaded meanwhile
            if len(self._cache) >= CACHE_SIZE:
                self._cache = {k: v for k, v in self._cache.items() if v[2] > now}
                if len(self._cache) >= CACHE_SIZE:
                    self._cache = {}
            self._cache[key] = (decision, hashed_or_none, now + self.ttl)
        return decision


def _basic(header: str) -> tuple[str, bytes] | None:
    """``(user, password)`` from a Basic ``Authorization`` value (Go's ``Request.BasicAuth``)."""
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        raw = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    user, sep, password = raw.partition(b":")
    if not sep:
        return None
    return user.decode("utf-8", "surrogateescape"), password


def _check(password: bytes, hashed: bytes | None) -> bool:
    """bcrypt's verdict; an unknown user or a non-bcrypt entry costs a dummy check."""
    if hashed is None or not hashed.startswith(_BCRYPT_PREFIXES):
        bcrypt.checkpw(password, _DUMMY_HASH)
        return False
    try:
        return bcrypt.checkpw(password, hashed)
    except ValueError:  # a malformed hash
        return False
