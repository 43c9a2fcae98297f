"""``auth.token``: Bearer tokens of the Docker token specification (distribution's ``token``).

A request without a valid token gets 401 UNAUTHORIZED and the challenge
``Bearer realm="<realm>",service="<service>",scope="<scopes>"`` (plus
``error="invalid_token"`` for a bad token), which sends the client to the
token service at ``realm``. A valid token that lacks the access gets 403
DENIED with the same challenge and ``error="insufficient_scope"``, as RFC
6750 asks (distribution answers 401 there; oras-py fetches a new token only
after a 403, and docker, skopeo and oras-go ask for the scopes up front). A token is a JWT signed with an asymmetric algorithm
(RS*, PS*, ES*, EdDSA) by a key the registry trusts:

- a certificate chain in the token's ``x5c`` header that ends at a
  certificate of ``rootcertbundle``;
- or a key ID (``kid``, or the ``kid`` of a ``jwk`` header) naming a key of
  the ``jwks`` file or of a ``rootcertbundle`` certificate (its RFC 7638
  thumbprint, as distribution 3 names it, or its libtrust ID, as
  distribution 2 and the token services written for it do).

Its ``iss`` must be ``issuer``, its ``aud`` must include ``service``, and
``exp``/``nbf`` hold with :data:`LEEWAY` seconds for clock skew. Its
``access`` claim lists what it grants (``repository:<name>:pull,push,delete``,
``registry:catalog:*``). A verified token is remembered until it expires
(at most :data:`CACHE_TTL` seconds), so each request after the first costs a
dictionary look-up rather than a signature check.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import jwt
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from ocistore.server.auth.htpasswd import go_quote
from ocistore.server.config import ConfigError
from ocistore.server.hooks import Access, Decision
from ocistore.server.http import Request

__all__ = ["ALGORITHMS", "CACHE_TTL", "LEEWAY", "TokenController", "key_ids"]

log = logging.getLogger("ocistore.server.auth")

LEEWAY: Final = 60
"""Seconds of clock skew allowed on ``exp`` and ``nbf`` (distribution's ``Leeway``)."""

CACHE_TTL: Final = 300.0
"""Longest time a verified token is trusted without checking its signature again."""

CACHE_SIZE: Final = 4096

ALGORITHMS: Final = (
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA",
)  # fmt: skip
"""Signing algorithms accepted (distribution's list less HS*: a shared secret has no key here)."""

_OPTIONS: Final = frozenset(
    {
        "realm",
        "service",
        "issuer",
        "rootcertbundle",
        "jwks",
        "autoredirect",
        "autoredirectpath",
        "signingalgorithms",
    }
)

PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey


class _Refused(Exception):
    """A token that cannot be used; ``error`` is the challenge's error parameter."""

    def __init__(self, reason: str, error: str = "invalid_token") -> None:
        self.error = error
        super().__init__(reason)


@dataclass(frozen=True, slots=True)
class _Grant:
    subject: str
    access: frozenset[tuple[str, str, str]]
    until: float  # time.time() after which the token is no longer used
    allowed: Decision  # the answer when it grants the access asked


class TokenController:
    """Verifies Bearer tokens issued by ``issuer`` for ``service`` (see the module docstring)."""

    def __init__(
        self,
        *,
        realm: str,
        service: str,
        issuer: str,
        roots: Sequence[x509.Certificate] = (),
        keys: Mapping[str, PublicKey] | None = None,
        autoredirect: bool = False,
        autoredirectpath: str = "/auth/token",
        algorithms: Sequence[str] = ALGORITHMS,
    ) -> None:
        self.realm = realm
        self.service = service
        self.issuer = issuer
        self.roots = list(roots)
        trusted: dict[str, PublicKey] = {}
        for cert in self.roots:
            key = cert.public_key()
            if isinstance(key, PublicKey):
                trusted.update(dict.fromkeys(key_ids(key), key))
        trusted.update(keys or {})
        if not trusted:
            raise ValueError("token auth requires at least one token signing key")
        self.keys = trusted
        self.autoredirect = autoredirect
        self.autoredirectpath = autoredirectpath
        self.algorithms = list(algorithms)
        self._cache: dict[str, _Grant] = {}

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> TokenController:
        """From ``auth.token``'s keys; ConfigError naming the key that is wrong."""
        for key in sorted(set(options) - _OPTIONS):
            raise ConfigError(f"auth.token.{key}", "unknown key")
        for key in ("realm", "service", "issuer"):
            if not isinstance(options.get(key), str):
                raise ConfigError(f"auth.token.{key}", "token auth requires a string here")
        roots: list[x509.Certificate] = []
        keys: dict[str, PublicKey] = {}
        if options.get("rootcertbundle"):
            roots = _read_roots(str(options["rootcertbundle"]))
        if options.get("jwks"):
            keys = _read_jwks(str(options["jwks"]))
        redirect = options.get("autoredirect", False)
        if not isinstance(redirect, bool):
            raise ConfigError("auth.token.autoredirect", f"{redirect!r} is not a boolean")
        path = options.get("autoredirectpath") or "/auth/token"
        algorithms = options.get("signingalgorithms") or list(ALGORITHMS)
        if not isinstance(algorithms, list) or not all(a in ALGORITHMS for a in algorithms):
            raise ConfigError(
                "auth.token.signingalgorithms",
                f"{algorithms!r}: a list of {', '.join(ALGORITHMS)}",
            )
        try:
            return cls(
                realm=options["realm"],
                service=options["service"],
                issuer=options["issuer"],
                roots=roots,
                keys=keys,
                autoredirect=redirect,
                autoredirectpath=str(path),
                algorithms=algorithms,
            )
        except ValueError as exc:
            raise ConfigError("auth.token", f"{exc}: set rootcertbundle or jwks") from None

    # --- requests ---------------------------------------------------------------------

    def cached(self, req: Request, access: Sequence[Access]) -> Decision | None:
        """Allow from a remembered token that grants ``access``; else None."""
        header = req.header("authorization")
        if header is None:
            return None
        scheme, _, raw = header.partition(" ")
        grant = self._cache.get(raw.strip())
        if grant is None or time.time() > grant.until or scheme.lower() != "bearer":
            return None
        granted = grant.access
        for a in access:
            if (a.type, a.name, a.action) not in granted:
                return None
        return grant.allowed

    async def authorized(self, req: Request, access: Sequence[Access]) -> Decision:
        header = req.header("authorization") or ""
        scheme, _, raw = header.partition(" ")
        raw = raw.strip()
        if not raw or scheme.lower() != "bearer":
            return Decision.unauthorized(self._challenge(req, access, None))
        now = time.time()
        grant = self._cache.get(raw)
        if grant is None or now > grant.until:
            try:
                grant = self.verify(raw, now)
            except _Refused as exc:
                log.info("token refused: %s", exc)
                return Decision.unauthorized(self._challenge(req, access, exc.error))
            self._remember(raw, grant, now)
        granted = grant.access
        for a in access:
            if (a.type, a.name, a.action) not in granted:
                # RFC 6750 §3.1: 403 for a good token without the scope (distribution
                # answers 401, which oras-py cannot recover from), with the challenge
                # naming the scope for clients that fetch a new token.
                challenge = self._challenge(req, access, "insufficient_scope")
                return Decision(False, 403, challenge=challenge, message="insufficient scope")
        return grant.allowed

    def _remember(self, raw: str, grant: _Grant, now: float) -> None:
        if len(self._cache) >= CACHE_SIZE:
            self._cache = {k: g for k, g in self._cache.items() if g.until > now}
            if len(self._cache) >= CACHE_SIZE:
                self._cache = {}
        self._cache[raw] = grant

    def _challenge(self, req: Request, access: Sequence[Access], error: str | None) -> str:
        realm = self.realm
        if self.autoredirect:
            scheme = req.header("x-forwarded-proto") or "https"
            realm = f"{scheme}://{req.header('host') or ''}{self.autoredirectpath}"
        out = f"Bearer realm={go_quote(realm)},service={go_quote(self.service)}"
        scope = scope_param(access)
        if scope:
            out += f",scope={go_quote(scope)}"
        if error:
            out += f",error={go_quote(error)}"
        return out

    # --- verification -----------------------------------------------------------------

    def verify(self, raw: str, now: float | None = None) -> _Grant:
        """The grant of token ``raw``; :class:`_Refused` when it cannot be used."""
        now = time.time() if now is None else now
        try:
            header = jwt.get_unverified_header(raw)
        except jwt.PyJWTError as exc:
            raise _Refused(f"malformed token: {exc}") from None
        alg = header.get("alg")
        if alg not in self.algorithms:
            raise _Refused(f"signing algorithm {alg!r} is not accepted")
        key = self._signing_key(header, now)
        try:
            claims = jwt.decode(
                raw,
                key,
                algorithms=[alg],
                audience=self.service,
                issuer=self.issuer,
                leeway=LEEWAY,
                options={"require": ["exp", "iss", "aud"], "verify_iat": False},
            )
        except jwt.PyJWTError as exc:
            raise _Refused(str(exc)) from None
        access: set[tuple[str, str, str]] = set()
        entries = claims.get("access") or []
        if not isinstance(entries, list):
            raise _Refused("the access claim is not a list")
        for entry in entries:
            if not isinstance(entry, dict):
                raise _Refused("an access claim entry is not an object")
            kind, name, actions = entry.get("type"), entry.get("name"), entry.get("actions")
            if not isinstance(kind, str) or not isinstance(name, str):
                raise _Refused("an access claim entry has no type or name")
            for action in actions or ():
                if isinstance(action, str):
                    access.add((kind, name, action))
        exp = float(claims["exp"]) + LEEWAY
        subject = claims.get("sub")
        subject = subject if isinstance(subject, str) else ""
        return _Grant(
            subject, frozenset(access), min(exp, now + CACHE_TTL), Decision.allow(subject)
        )

    def _signing_key(self, header: Mapping[str, Any], now: float) -> PublicKey:
        chain = header.get("x5c")
        if chain:
            return self._chain_key(chain, now)
        jwk = header.get("jwk")
        if isinstance(jwk, Mapping):
            if jwk.get("x5c"):
                return self._chain_key(jwk["x5c"], now)
            kid = jwk.get("kid")
            if isinstance(kid, str) and kid in self.keys:
                return self.keys[kid]
            raise _Refused("untrusted JWK with no certificate chain")
        kid = header.get("kid")
        if isinstance(kid, str) and kid:
            key = self.keys.get(kid)
            if key is None:
                raise _Refused(f"token signed by untrusted key with ID: {kid!r}")
            return key
        raise _Refused("the token names no signing key (x5c, jwk or kid)")

    def _chain_key(self, chain: object, now: float) -> PublicKey:
        """The leaf's key when the ``x5c`` chain ends at a root certificate; else refused."""
        if not isinstance(chain, list) or not all(isinstance(c, str) for c in chain):
            raise _Refused("x5c is not a list of certificates")
        try:
            certs = [x509.load_der_x509_certificate(base64.b64decode(c)) for c in chain]
        except ValueError as exc:
            raise _Refused(f"x5c holds an unreadable certificate: {exc}") from None
        when = datetime.fromtimestamp(now, UTC)
        for cert in certs:
            if not cert.not_valid_before_utc <= when <= cert.not_valid_after_utc:
                raise _Refused(f"x5c certificate {cert.subject.rfc4514_string()} is not valid now")
        for child, parent in itertools.pairwise(certs):
            if not _issued_by(child, parent):
                raise _Refused("x5c is not a chain")
        top = certs[-1]
        if not any(top == root or _issued_by(top, root) for root in self.roots):
            raise _Refused("x5c does not end at a trusted root certificate")
        key = certs[0].public_key()
        if not isinstance(key, PublicKey):
            raise _Refused("the x5c leaf has an unsupported key type")
        return key


def scope_param(access: Sequence[Access]) -> str:
    """Distribution's challenge ``scope``: ``type:name:action,action`` per resource, space-separated."""
    resources: dict[tuple[str, str], list[str]] = {}
    for a in access:
        actions = resources.setdefault((a.type, a.name), [])
        if a.action not in actions:
            actions.append(a.action)
    return " ".join(f"{t}:{n}:{','.join(acts)}" for (t, n), acts in resources.items())


def _issued_by(child: x509.Certificate, parent: x509.Certificate) -> bool:
    try:
        child.verify_directly_issued_by(parent)
    except (InvalidSignature, ValueError, TypeError):  # a wrong issuer or another key type
        return False
    return True


def key_ids(key: PublicKey) -> list[str]:
    """The IDs a token may name ``key`` by: its RFC 7638 thumbprint (as distribution 3
    computes it) and its libtrust key ID (distribution 2)."""
    if isinstance(key, rsa.RSAPublicKey):
        nums = key.public_numbers()
        doc = f'{{"e":"{_b64(_int_bytes(nums.e))}","kty":"RSA","n":"{_b64(_int_bytes(nums.n))}"}}'
    elif isinstance(key, ec.EllipticCurvePublicKey):
        pn = key.public_numbers()
        crv = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}.get(
            key.curve.name, key.curve.name
        )
        x, y = _b64(_int_bytes(pn.x)), _b64(_int_bytes(pn.y))
        doc = f'{{"crv":"{crv}","kty":"EC","x":"{x}","y":"{y}"}}'
    else:
        raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        doc = f'{{"crv":"Ed25519","kty":"OKP","x":"{_b64(raw)}"}}'
    thumbprint = _b64(hashlib.sha256(doc.encode()).digest())
    der = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    b32 = base64.b32encode(hashlib.sha256(der).digest()[:30]).decode().rstrip("=")
    libtrust = ":".join(b32[i : i + 4] for i in range(0, len(b32), 4))
    return [thumbprint, libtrust]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _int_bytes(n: int) -> bytes:
    return n.to_bytes(max(1, (n.bit_length() + 7) // 8), "big")


def _read_roots(path: str) -> list[x509.Certificate]:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise ConfigError("auth.token.rootcertbundle", f"{path}: {exc.strerror}") from None
    try:
        return x509.load_pem_x509_certificates(data)
    except ValueError as exc:
        raise ConfigError("auth.token.rootcertbundle", f"{path}: {exc}") from None


def _read_jwks(path: str) -> dict[str, PublicKey]:
    try:
        with open(path, "rb") as f:
            doc = json.load(f)
    except OSError as exc:
        raise ConfigError("auth.token.jwks", f"{path}: {exc.strerror}") from None
    except ValueError as exc:
        raise ConfigError("auth.token.jwks", f"{path}: not JSON: {exc}") from None
    keys: dict[str, PublicKey] = {}
    for entry in doc.get("keys", []) if isinstance(doc, dict) else []:
        kid = entry.get("kid") if isinstance(entry, dict) else None
        if not isinstance(kid, str) or not kid:
            raise ConfigError("auth.token.jwks", f"{path}: every key needs a kid")
        try:
            key = jwt.PyJWK(entry).key
        except jwt.PyJWTError as exc:
            raise ConfigError("auth.token.jwks", f"{path}: key {kid!r}: {exc}") from None
        if not isinstance(key, PublicKey):
            raise ConfigError(
                "auth.token.jwks", f"{path}: key {kid!r} is not an RSA/EC/Ed25519 key"
            )
        keys[kid] = key
    if not keys:
        raise ConfigError("auth.token.jwks", f"{path}: holds no keys")
    return keys
