"""Peers for the proxy tests: a Go registry with htpasswd or token auth, a token server,
and ``ocistore serve`` with a ``proxy:`` section.

The token server is a small threaded HTTP server that signs RS256 JWTs with a
key and a self-signed certificate made here; the Go registry trusts that
certificate (``auth.token.rootcertbundle``) and finds it in each token's
``x5c`` header. It checks basic credentials and counts the tokens it issued.
"""

from __future__ import annotations

import base64
import datetime
import json
import shutil
import subprocess
import threading
import time
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from ._peers import GoRegistry, OcistoreServer

SERVICE = "ocistore-test-registry"
ISSUER = "ocistore-test-issuer"


def htpasswd_file(path: Path, user: str, password: str) -> Path:
    """A bcrypt htpasswd file (``htpasswd -B``, what distribution's htpasswd auth reads)."""
    binary = shutil.which("htpasswd")
    if binary is None:
        raise FileNotFoundError("htpasswd")
    done = subprocess.run(
        [binary, "-nbB", user, password], capture_output=True, text=True, check=True, timeout=30
    )
    path.write_text(done.stdout.strip() + "\n")
    return path


def with_auth_htpasswd(go: GoRegistry, htpasswd: Path) -> GoRegistry:
    go.config.write_text(
        go.config.read_text() + f"auth:\n  htpasswd:\n    realm: test-realm\n    path: {htpasswd}\n"
    )
    return go


def with_auth_token(go: GoRegistry, realm: str, bundle: Path) -> GoRegistry:
    go.config.write_text(
        go.config.read_text()
        + "auth:\n  token:\n"
        + f"    realm: {realm}\n    service: {SERVICE}\n    issuer: {ISSUER}\n"
        + f"    rootcertbundle: {bundle}\n"
    )
    return go


def with_proxy(server: OcistoreServer, proxy_yaml: str) -> OcistoreServer:
    server.config.write_text(server.config.read_text() + proxy_yaml)
    return server


def proxy_yaml(
    remoteurl: str,
    *,
    username: str = "",
    password: str = "",
    ttl: str = "168h",
    timeout: str = "30s",
    upstreams: Sequence[dict[str, str]] = (),
) -> str:
    lines = ["proxy:", f"  remoteurl: {remoteurl}", f"  ttl: {ttl}", f"  timeout: {timeout}"]
    if username:
        lines += [f"  username: {username}", f"  password: {password}"]
    if upstreams:
        lines.append("  upstreams:")
        for up in upstreams:
            first = True
            for k, v in up.items():
                lines.append(("    - " if first else "      ") + f"{k}: {v}")
                first = False
    return "\n".join(lines) + "\n"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


class TokenServer:
    """Issues pull (and push) tokens for ``user``/``password``; ``issued`` counts them."""

    def __init__(self, workdir: Path, user: str, password: str, *, expires_in: int = 300) -> None:
        self.user = user
        self.password = password
        self.expires_in = expires_in
        self.issued = 0
        self.requests: list[str] = []
        self._lock = threading.Lock()
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ocistore test token signer")])
        now = datetime.datetime.now(datetime.UTC)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=7))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self.key, hashes.SHA256())
        )
        self.bundle = workdir / "token-signer.pem"
        self.bundle.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))
        server = ThreadingHTTPServer(("127.0.0.1", 0), _TokenHandler)
        server.daemon_threads = True
        server.owner = self  # type: ignore[attr-defined]
        self._server = server
        self.port = server.server_address[1]
        self._thread = threading.Thread(target=server.serve_forever, daemon=True)

    @property
    def realm(self) -> str:
        return f"http://127.0.0.1:{self.port}/token"

    def __enter__(self) -> TokenServer:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    def sign(self, access: list[dict[str, Any]]) -> str:
        der = self.cert.public_bytes(serialization.Encoding.DER)
        header = {"alg": "RS256", "typ": "JWT", "x5c": [base64.b64encode(der).decode("ascii")]}
        now = int(time.time())
        claims = {
            "iss": ISSUER,
            "sub": self.user,
            "aud": SERVICE,
            "exp": now + self.expires_in,
            "nbf": now - 10,
            "iat": now,
            "jti": f"t{now}-{self.issued}",
            "access": access,
        }
        signing_input = _b64(json.dumps(header).encode()) + "." + _b64(json.dumps(claims).encode())
        sig = self.key.sign(signing_input.encode("ascii"), padding.PKCS1v15(), hashes.SHA256())
        return signing_input + "." + _b64(sig)

    def handle(self, path: str, authorization: str | None) -> tuple[int, bytes]:
        query = parse_qs(urlsplit(path).query)
        with self._lock:
            self.requests.append(path)
        expected = "Basic " + base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
        if authorization != expected:
            return 401, b'{"errors":[{"code":"UNAUTHORIZED"}]}'
        access = []
        for scope in query.get("scope", []):
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            access.append({"type": kind, "name": name, "actions": actions.split(",")})
        token = self.sign(access)
        with self._lock:
            self.issued += 1
        body = {"token": token, "expires_in": self.expires_in}
        return 200, json.dumps(body).encode()


class _TokenHandler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        owner: TokenServer = self.server.owner  # type: ignore[attr-defined]
        status, body = owner.handle(self.path, self.headers.get("Authorization"))
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass
