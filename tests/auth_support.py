"""Test keys, tokens, htpasswd files and a token service for the auth tests.

:class:`TokenIssuer` holds a signing key (RSA or EC) and a self-signed
certificate for it (the registry's ``rootcertbundle``) and signs tokens of
the Docker token specification. :class:`TokenServer` is that token service
on 127.0.0.1, as a test starts it: it checks Basic credentials against a
table of users and grants each user what its table says of the scopes the
client asks for (``?scope=repository:a:pull,push``).
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import time
import uuid
from collections.abc import Iterable, Mapping
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import bcrypt
import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from threaded_http import QuietHandler, ThreadedServer

SERVICE = "ocistore-test"
ISSUER = "ocistore-test-issuer"


def write_htpasswd(path: Path, users: Mapping[str, str], *, rounds: int = 4) -> Path:
    """An htpasswd file of bcrypt entries (``$2y$``, as ``htpasswd -B`` writes)."""
    lines = []
    for user, password in users.items():
        hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds)).decode()
        lines.append(f"{user}:{hashed.replace('$2b$', '$2y$', 1)}")
    path.write_text("\n".join(lines) + "\n")
    return path


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


class TokenIssuer:
    """A signing key with its self-signed certificate; :meth:`token` signs access claims."""

    def __init__(self, kind: str = "RS256", *, issuer: str = ISSUER) -> None:
        self.alg = kind
        self.issuer = issuer
        if kind.startswith("ES"):
            self.key: Any = ec.generate_private_key(ec.SECP256R1())
        else:
            self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ocistore test token signer")])
        now = dt.datetime.now(dt.UTC)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self.key, hashes.SHA256())
        )

    def write_bundle(self, path: Path) -> Path:
        path.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))
        return path

    def write_jwks(self, path: Path, kid: str) -> Path:
        jwk = json.loads(
            jwt.algorithms.get_default_algorithms()[self.alg].to_jwk(self.key.public_key())
        )
        jwk["kid"] = kid
        path.write_text(json.dumps({"keys": [jwk]}))
        return path

    def token(
        self,
        access: Iterable[tuple[str, str, Iterable[str]]],
        *,
        subject: str = "alice",
        audience: str | list[str] = SERVICE,
        issuer: str | None = None,
        expires_in: float = 300,
        not_before: float | None = None,
        header: str = "x5c",
        kid: str = "",
        key: Any = None,
    ) -> str:
        """A signed token granting ``access`` (``(type, name, actions)`` triples)."""
        now = time.time()
        claims = {
            "iss": issuer or self.issuer,
            "sub": subject,
            "aud": audience,
            "exp": int(now + expires_in),
            "nbf": int(now - 1 if not_before is None else not_before),
            "iat": int(now),
            "jti": str(uuid.uuid4()),
            "access": [
                {"type": t, "name": n, "actions": list(actions)} for t, n, actions in access
            ],
        }
        headers: dict[str, Any] = {}
        if header == "x5c":
            der = self.cert.public_bytes(serialization.Encoding.DER)
            headers["x5c"] = [base64.b64encode(der).decode()]
        elif header == "kid":
            headers["kid"] = kid
        return jwt.encode(claims, key or self.key, algorithm=self.alg, headers=headers)


class TokenServer:
    """A token service on 127.0.0.1: ``GET /token?service=&scope=`` with Basic credentials.

    ``users`` maps a user to ``(password, grants)``; ``grants`` maps a
    resource (``repository:a``) to the actions the user may have on it
    (``*`` as the name matches every repository). Anonymous requests get a
    token with no access. ``issued`` records ``(user, scopes asked)``.
    """

    def __init__(
        self,
        issuer: TokenIssuer,
        users: Mapping[str, tuple[str, Mapping[str, Iterable[str]]]],
    ) -> None:
        self.issuer = issuer
        self.users = users
        self.issued: list[tuple[str, list[str]]] = []
        self.http = ThreadedServer(_TokenHandler, owner=self)

    @property
    def realm(self) -> str:
        return f"{self.http.url}/token"

    def __enter__(self) -> TokenServer:
        self.http.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.http.stop()

    def _answer(self, h: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(h.path)
        query = parse_qs(parts.query)
        user = ""
        grants: Mapping[str, Iterable[str]] = {}
        auth = h.headers.get("Authorization", "")
        if auth.lower().startswith("basic "):
            name, _, password = base64.b64decode(auth[6:]).decode().partition(":")
            entry = self.users.get(name)
            if entry is None or entry[0] != password:
                h.send_response(401)
                h.send_header("Content-Type", "application/json")
                h.end_headers()
                h.wfile.write(b'{"details":"incorrect username or password"}')
                return
            user, grants = name, entry[1]
        if parts.path != "/token" or query.get("service", [""])[0] != SERVICE:
            h.send_response(400)
            h.end_headers()
            return
        asked = [s for scope in query.get("scope", []) for s in scope.split(" ") if s]
        self.issued.append((user, asked))
        access = []
        for scope in asked:
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            allowed = set(grants.get(f"{kind}:{name}", ())) | set(grants.get(f"{kind}:*", ()))
            granted = [a for a in actions.split(",") if a in allowed or "*" in allowed]
            if granted:
                access.append((kind, name, granted))
        token = self.issuer.token(access, subject=user or "anonymous")
        body = json.dumps({"token": token, "access_token": token, "expires_in": 300}).encode()
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)


class _TokenHandler(QuietHandler):
    def do_GET(self) -> None:
        self.owner._answer(self)
