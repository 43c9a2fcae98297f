"""Peers for the proxy tests: a Go registry with htpasswd or token auth, a faulty relay,
and ``ocistore serve`` with a ``proxy:`` section.

The token service is :class:`auth_support.TokenServer`; the Go registry
trusts its signer's certificate (``auth.token.rootcertbundle``) and finds it
in each token's ``x5c`` header.
"""

from __future__ import annotations

import contextlib
import random
import shutil
import subprocess
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from auth_support import ISSUER, SERVICE
from ocistore import _core
from ocistore.storage import paths
from threaded_http import QuietHandler, ThreadedServer
from waiting import wait_until

from . import _oci
from ._client import Client
from ._http import request as http_request
from ._peers import GoRegistry, OcistoreServer


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


BIG = 3 << 20
"""Over the proxy's VERIFY_FIRST: such blobs stream while they are fetched."""


def start_proxy(
    workdir: Path, label: str, remoteurl: str, *, timeout: str, extra: Sequence[str] = ()
) -> OcistoreServer:
    """``ocistore serve`` on this core in proxy mode, over ``workdir/<label>-<core>``."""
    root = workdir / f"{label}-{_core.BACKEND}"
    root.mkdir()
    server = OcistoreServer(root, workdir, core=_core.BACKEND, extra=list(extra))
    with_proxy(server, proxy_yaml(remoteurl, timeout=timeout))
    server.start()
    return server


def repo_name(request: pytest.FixtureRequest, what: str, prefix: str = "") -> str:
    """A repository of this test and core (the upstream is shared)."""
    test = request.node.originalname.removeprefix("test_").replace("_", "-")
    return f"{_core.BACKEND}/{prefix}{test}/{what}"


def push_blob(upstream: GoRegistry, repo: str, size: int) -> tuple[bytes, str]:
    """Push ``size`` bytes seeded by ``repo`` to the upstream; its path under /v2/ and the data."""
    data = random.Random(repo).randbytes(size)
    resp = Client(upstream.url).push_blob(repo, data)
    assert resp.status == 201, resp
    return data, f"/v2/{repo}/blobs/{_oci.sha256(data)}"


def stored(root: Path, digest: str) -> bool:
    hexd = digest.split(":", 1)[1]
    return (root / paths.ROOT.lstrip("/") / "blobs/sha256" / hexd[:2] / hexd / "data").exists()


def wait_stored(root: Path, digest: str) -> None:
    """A verified blob's commit may still be running when its last client is answered."""
    wait_until(lambda: stored(root, digest), f"{digest} stored under {root}")


def get_all(url: str, n: int, headers: dict[str, str] | None = None) -> list[bytes]:
    """``n`` clients GET ``url`` at once (released together by a barrier); their bodies."""
    barrier = threading.Barrier(n)
    bodies: list[bytes] = [b""] * n
    errors: list[BaseException] = []

    def one(i: int) -> None:
        try:
            barrier.wait(30)
            resp = http_request("GET", url, headers=headers, timeout=60)
            assert resp.status in (200, 206), resp
            assert not resp.truncated
            bodies[i] = resp.body
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors[:3]
    return bodies


def many_clients_one_get(
    upstream: GoRegistry, relay: FaultyUpstream, proxy: OcistoreServer, repo: str, size: int
) -> str:
    """32 clients (8 of them ranged) of one cold blob get it whole; the relay saw one GET.

    The blob's digest, for what the test checks next.
    """
    data, path = push_blob(upstream, repo, size)
    bodies = get_all(proxy.url + path, 24) + get_all(proxy.url + path, 8, {"Range": "bytes=100-"})
    assert bodies[:24] == [data] * 24
    assert bodies[24:] == [data[100:]] * 8
    digest = _oci.sha256(data)
    assert relay.blob_gets(repo, digest) == 1
    return digest


class FaultyUpstream:
    """A relay in front of a registry that counts GETs per path and breaks the ones told to.

    ``faults[path] = kind`` makes the next answers for that exact path wrong:
    ``mismatch`` (one byte flipped), ``short`` (the connection closes 10 bytes
    early), ``length`` (Content-Length 10 less than the bytes that follow),
    ``5xx`` (a 500), ``stall`` (headers and one byte, then nothing until the
    test ends), ``loop`` (a redirect to itself), ``huge`` (a 5 MiB manifest),
    ``down`` (the connection is closed without an answer, for every path).
    """

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.faults: dict[str, str] = {}
        self.down = False
        self.gets: dict[str, int] = {}
        self.release = threading.Event()
        self._lock = threading.Lock()
        self._http = ThreadedServer(_RelayHandler, owner=self)
        self.port = self._http.port
        self.url = self._http.url

    @contextlib.contextmanager
    def broken(self, path: str, kind: str) -> Iterator[None]:
        """Answers for ``path`` break as ``kind`` says (see the class) inside the block."""
        self.faults[path] = kind
        try:
            yield
        finally:
            del self.faults[path]

    def blob_gets(self, name: str, digest: str) -> int:
        with self._lock:
            return self.gets.get(f"/v2/{name}/blobs/{digest}", 0)

    def __enter__(self) -> FaultyUpstream:
        self._http.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        self._http.stop()


class _RelayHandler(QuietHandler):
    protocol_version = "HTTP/1.1"

    def _relay(self) -> None:
        import http.client

        owner: FaultyUpstream = self.owner
        path = self.path.split("?", 1)[0]
        if self.command == "GET":
            with owner._lock:
                owner.gets[path] = owner.gets.get(path, 0) + 1
        if owner.down:
            self.close_connection = True
            return
        fault = owner.faults.get(path)
        if fault == "5xx":
            return self._send(500, {"Content-Type": "text/plain"}, b"upstream exploded")
        if fault == "loop":
            return self._send(307, {"Location": f"http://127.0.0.1:{owner.port}{self.path}"}, b"")
        if fault == "huge" and self.command in ("GET", "HEAD"):
            body = b'{"schemaVersion": 2, "pad": "' + b"x" * (5 << 20) + b'"}'
            return self._send(
                200, {"Content-Type": "application/vnd.oci.image.manifest.v1+json"}, body
            )
        conn = http.client.HTTPConnection("127.0.0.1", owner.upstream_port, timeout=30)
        try:
            headers = {
                k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")
            }
            conn.request(self.command, self.path, headers=headers)
            resp = conn.getresponse()
            body = resp.read() if self.command != "HEAD" else b""
            out = {
                k: v
                for k, v in resp.getheaders()
                if k.lower() not in ("connection", "transfer-encoding")
            }
        finally:
            conn.close()
        if self.command == "HEAD" or resp.status != 200 or fault is None:
            return self._send(resp.status, out, body, head=self.command == "HEAD")
        if fault == "mismatch":
            body = body[:-1] + bytes([body[-1] ^ 0xFF])
        elif fault == "length":
            out["Content-Length"] = str(len(body) - 10)
            self._send(200, out, body, raw_length=True)
            self.close_connection = True
            return
        elif fault == "short":
            out["Content-Length"] = str(len(body))
            self._send(200, out, body[:-10], raw_length=True)
            self.close_connection = True
            return
        elif fault == "stall":
            out["Content-Length"] = str(len(body))
            self._send(200, out, body[:1], raw_length=True)
            owner.release.wait(60)
            self.close_connection = True
            return
        self._send(200, out, body)

    def _send(
        self,
        status: int,
        headers: dict[str, str],
        body: bytes,
        *,
        head: bool = False,
        raw_length: bool = False,
    ) -> None:
        self.send_response(status)
        for k, v in headers.items():
            if k.lower() == "content-length" and not raw_length:
                continue
            self.send_header(k, v)
        if not raw_length:
            length = headers.get("Content-Length") if head else None
            self.send_header("Content-Length", length or str(len(body)))
        self.end_headers()
        if not head:
            self.wfile.write(body)
            self.wfile.flush()

    do_GET = _relay
    do_HEAD = _relay
