"""The strict HTTP front (issue 13, part 4), checked from outside on every stack.

1. ocistore's own server in-process (``h1_harness``): a Transfer-Encoding
   other than exactly ``chunked`` gets 501 (400 beside a Content-Length or in
   HTTP/1.0) before the app runs, always as a status line, never a reset;
   Upgrade and CONNECT requests are answered and end the connection, the bytes
   after them never parsed; bare LF line ends are refused by the pinned
   httptools; the limits (header count, request-target length, connections).
2. A client that stops reading a large response is cut after the send timeout
   and logged as a client timeout at INFO, not as an app failure at ERROR.
3. ``ocistore serve`` on each stack (ocistore, granian) and the app under
   uvicorn, as subprocesses: after a refused coding, an Upgrade or a CONNECT,
   a smuggled request that follows on the same connection never runs; a
   percent-encoded separator in a repository name is NAME_INVALID.
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
import socket
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import httptools
import pytest

import ocistore
from conftest import core_env
from interop._peers import Server, ocistore_argv
from ocistore.server.h1 import H1Settings
from redis_peer import free_port
from waiting import wait_until

from .conftest import SECRET, make_app, sha256
from .h1_harness import Closed, Conn, H1Server, Receive, Scope, Send, request

pytestmark = pytest.mark.one_core  # the HTTP front never touches the storage core

REPO_ROOT = Path(__file__).resolve().parents[2]
EMPTY = sha256(b"")


class Recorder:
    """An app that records every request it is given (method, path, body) and echoes it."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, bytes]] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = b""
        while True:
            msg = await receive()
            if msg["type"] != "http.request":
                return
            body += msg.get("body", b"")
            if not msg.get("more_body", False):
                break
        self.calls.append((scope["method"], scope["path"], body))
        out = f"{scope['method']} {scope['path']}".encode()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-length", str(len(out)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": out})


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def h1(recorder: Recorder) -> Iterator[H1Server]:
    server = H1Server(recorder, H1Settings(shutdown_grace=2.0)).start()
    yield server
    server.stop()


def exchange(server: H1Server, data: bytes) -> tuple[Conn, list[bytes]]:
    """Send ``data``, half-close, and read every response until the server closes.

    Returns the status lines in order; the connection must end (never hang).
    """
    conn = server.connect()
    conn.send(data)
    conn.sock.shutdown(socket.SHUT_WR)
    lines = []
    while True:
        try:
            resp = conn.read_response()
        except Closed:
            break
        lines.append(resp.raw_head.split(b"\r\n", 1)[0])
        if not resp.complete:
            break
    return conn, lines


SMUGGLED = b"DELETE /smuggled HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n"

CODINGS = {
    "gzip, chunked": (b"Transfer-Encoding: gzip, chunked\r\n", 501),
    "identity, chunked": (b"Transfer-Encoding: identity, chunked\r\n", 501),
    "xchunked": (b"Transfer-Encoding: xchunked\r\n", 501),
    "chunked twice": (b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n", 400),
    "chunked + gzip header": (b"Transfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n", 400),
    "gzip": (b"Transfer-Encoding: gzip\r\n", 501),
    "empty": (b"Transfer-Encoding: \r\n", 400),
    "chunked, gzip": (b"Transfer-Encoding: chunked, gzip\r\n", 400),
    "with length": (b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n", 400),
}


@pytest.mark.parametrize("name", list(CODINGS))
def test_unimplemented_transfer_codings_are_refused_before_the_app(
    h1: H1Server, recorder: Recorder, name: str
) -> None:
    header, status = CODINGS[name]
    body = b"5\r\nhello\r\n0\r\n\r\n"
    conn, lines = exchange(
        h1, b"POST /up HTTP/1.1\r\nHost: t\r\n" + header + b"\r\n" + body + SMUGGLED
    )
    conn.close()
    assert len(lines) == 1 and lines[0].startswith(b"HTTP/1.1 %d " % status), lines
    assert recorder.calls == []


def test_transfer_encoding_in_http10_is_refused(h1: H1Server, recorder: Recorder) -> None:
    data = b"POST /up HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
    conn, lines = exchange(h1, data + SMUGGLED)
    conn.close()
    assert [line[:12] for line in lines] == [b"HTTP/1.1 400"]
    assert recorder.calls == []


@pytest.mark.parametrize("spelling", [b"chunked", b"Chunked", b"CHUNKED", b" chunked "])
def test_exactly_chunked_is_served(h1: H1Server, recorder: Recorder, spelling: bytes) -> None:
    data = b"POST /up HTTP/1.1\r\nHost: t\r\nTransfer-Encoding:" + spelling + b"\r\n\r\n"
    conn, lines = exchange(h1, data + b"5\r\nhello\r\n0\r\n\r\n")
    conn.close()
    assert lines == [b"HTTP/1.1 200 OK"]
    assert recorder.calls == [("POST", "/up", b"hello")]


ENDERS = {
    "websocket": b"GET /ws HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    "upgrade without connection": b"GET /ws HTTP/1.1\r\nHost: t\r\nUpgrade: h2c\r\n\r\n",
    "upgrade with a body": b"POST /ws HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\n"
    b"Connection: Upgrade\r\nContent-Length: 3\r\n\r\nabc",
    "connect origin-form": b"CONNECT /ws HTTP/1.1\r\nHost: t\r\n\r\n",
}


@pytest.mark.parametrize("name", list(ENDERS))
def test_upgrade_and_connect_end_the_connection(
    h1: H1Server, recorder: Recorder, name: str
) -> None:
    conn, lines = exchange(h1, ENDERS[name] + SMUGGLED + SMUGGLED)
    conn.close()
    assert len(lines) == 1 and lines[0] == b"HTTP/1.1 200 OK", lines
    assert [c[1] for c in recorder.calls] == ["/ws"]


def test_connect_authority_form_is_answered_and_closed(h1: H1Server, recorder: Recorder) -> None:
    conn, lines = exchange(h1, b"CONNECT 10.0.0.1:443 HTTP/1.1\r\nHost: t\r\n\r\n" + SMUGGLED)
    conn.close()
    assert len(lines) == 1 and lines[0].startswith(b"HTTP/1.1 4"), lines
    assert all(c[1] != "/smuggled" for c in recorder.calls)


# -- bare LF, and the httptools pin ----------------------------------------------------------

BARE_LF = {
    "after the request line": b"GET / HTTP/1.1\nHost: t\r\n\r\n",
    "after a header": b"GET / HTTP/1.1\r\nHost: t\n\r\n",
    "as the blank line": b"GET / HTTP/1.1\r\nHost: t\r\n\n",
    "everywhere": b"GET / HTTP/1.1\nHost: t\n\n",
    "after a chunk size": b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"3\nabc\r\n0\r\n\r\n",
    "after chunk data": b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"3\r\nabc\n0\r\n\r\n",
    "bare CR in a header": b"GET / HTTP/1.1\r\nHost: t\rX: y\r\n\r\n",
}
LF_BOUNDARY = (0, 6, 3)
"""httptools 0.6.2 still took a bare LF after the request line and as the blank
line ending the head; 0.6.3 (a newer llhttp) refuses every case of BARE_LF."""


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in text.split(".")[:3] if p.isdigit())


def test_httptools_is_pinned_at_the_bare_lf_boundary() -> None:
    assert _version(importlib.metadata.version("httptools")) >= LF_BOUNDARY
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    pins = [d for d in project["project"]["dependencies"] if d.startswith("httptools")]
    assert pins == ["httptools>=0.6.3"]
    assert "httptools>=0.6.3" in project["project"]["optional-dependencies"]["server"]


@pytest.mark.parametrize("name", list(BARE_LF))
def test_httptools_refuses_bare_lf(name: str) -> None:
    class Count:
        done = 0

        def on_message_complete(self) -> None:
            self.done += 1

    seen = Count()
    parser = httptools.HttpRequestParser(seen)
    with pytest.raises(httptools.HttpParserError):
        parser.feed_data(BARE_LF[name])
    assert seen.done == 0


@pytest.mark.parametrize("name", list(BARE_LF))
def test_bare_lf_gets_400(h1: H1Server, recorder: Recorder, name: str) -> None:
    conn, lines = exchange(h1, BARE_LF[name] + SMUGGLED)
    conn.close()
    assert len(lines) == 1 and lines[0].startswith(b"HTTP/1.1 400 "), lines
    assert all(c[1] != "/smuggled" for c in recorder.calls)


# -- limits ----------------------------------------------------------------------------------


def test_header_count_limit(recorder: Recorder) -> None:
    server = H1Server(recorder, H1Settings(max_headers=10, shutdown_grace=2.0)).start()
    try:
        fine = request("GET", "/nine", headers=[(f"X-{i}", "v") for i in range(9)])
        conn, lines = exchange(server, fine)  # Host + 9 = 10
        conn.close()
        assert lines == [b"HTTP/1.1 200 OK"]
        over = request("GET", "/ten", headers=[(f"X-{i}", "v") for i in range(10)])
        conn, lines = exchange(server, over)
        conn.close()
        assert len(lines) == 1 and lines[0].startswith(b"HTTP/1.1 431 "), lines
    finally:
        server.stop()
    assert [c[1] for c in recorder.calls] == ["/nine"]


def test_request_target_limit(recorder: Recorder) -> None:
    server = H1Server(recorder, H1Settings(max_request_line=1000, shutdown_grace=2.0)).start()
    try:
        conn, lines = exchange(server, request("GET", "/" + "a" * 999))
        conn.close()
        assert lines == [b"HTTP/1.1 200 OK"]
        conn, lines = exchange(server, request("GET", "/" + "a" * 1000))
        conn.close()
        assert len(lines) == 1 and lines[0].startswith(b"HTTP/1.1 414 "), lines
    finally:
        server.stop()
    assert len(recorder.calls) == 1


def test_connection_limit_answers_503(recorder: Recorder) -> None:
    server = H1Server(recorder, H1Settings(max_connections=3, shutdown_grace=2.0)).start()
    held = [server.connect() for _ in range(3)]
    try:
        for c in held:  # each is accepted and served
            c.send(request("GET", "/held"))
            assert c.read_response().status == 200
        with server.connect() as extra:
            resp = extra.read_response()
            assert resp.status == 503
            assert extra.closed_by_peer()
        held.pop().close()

        # once one closed, a new connection is served again
        def served() -> bool:
            with server.connect() as c:
                c.send(request("GET", "/again", headers=[("Connection", "close")]))
                return c.read_response().status == 200

        wait_until(served, "a connection is accepted again")
    finally:
        for c in held:
            c.close()
        server.stop()


# -- 2. the send timeout ---------------------------------------------------------------------

BIG = 32 << 20


async def big_body_app(scope: Scope, receive: Receive, send: Send) -> None:
    await receive()
    piece = b"x" * (1 << 20)
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-length", str(BIG).encode())],
        }
    )
    for i in range(BIG // len(piece)):
        await send({"type": "http.response.body", "body": piece, "more_body": i < 31})


def stall_until_cut(server: H1Server, path: str, caplog: pytest.LogCaptureFixture) -> None:
    """Request ``path`` and read nothing until the server logs a client timeout;
    then the connection must be over (what was sent before, then EOF or a reset)."""
    with socket.create_connection((server.host, server.port), timeout=30) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 << 10)
        s.sendall(request("GET", path))
        wait_until(
            lambda: any("client timeout" in r.getMessage() for r in caplog.records),
            "the server gave up on the stalled client",
        )
        got = 0
        try:
            while piece := s.recv(1 << 20):
                got += len(piece)
        except ConnectionResetError:
            pass
        assert got < BIG  # the response was cut, not completed


def test_stalled_client_of_body_messages_is_a_client_timeout(
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = H1Server(big_body_app, H1Settings(send_timeout=1.0, shutdown_grace=2.0)).start()
    caplog.set_level(logging.INFO, logger="ocistore.server")
    try:
        stall_until_cut(server, "/big", caplog)
    finally:
        server.stop()
    timeouts = [r for r in caplog.records if "client timeout" in r.getMessage()]
    assert [r.levelno for r in timeouts] == [logging.INFO]
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []


def test_stalled_blob_pull_from_the_registry_is_a_client_timeout(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The registry app's zero-copy blob GET to a client that reads nothing."""
    from .asgi_client import Client
    from .helpers import push_blob

    app = make_app(tmp_path)
    blob = os.urandom(BIG)
    dgst = push_blob(Client(app), "stall/repo", blob)
    server = H1Server(app, H1Settings(send_timeout=1.0, shutdown_grace=2.0)).start()
    caplog.set_level(logging.INFO, logger="ocistore.server")
    try:
        stall_until_cut(server, f"/v2/stall/repo/blobs/{dgst}", caplog)
        with server.connect() as other:  # everyone else is still served
            other.send(request("GET", f"/v2/stall/repo/blobs/{dgst}"))
            assert other.read_response().body == blob
    finally:
        server.stop()
        app.executor.shutdown(wait=True)
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []


# -- 3. every stack, as subprocesses ---------------------------------------------------------

UVICORN_APP = """\
from ocistore.server import create_app

app = create_app(root={root!r}, secret={secret!r}, delete_enabled=True)
"""


def stack_server(work: Path, stack: str) -> Server:
    port = free_port()
    env = core_env(ocistore.BACKEND)
    root = work / "root"
    if stack == "uvicorn":
        (work / "strict_app.py").write_text(UVICORN_APP.format(root=str(root), secret=SECRET))
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(work), env.get("PYTHONPATH")]))
        argv = [sys.executable, "-m", "uvicorn", "strict_app:app", "--host", "127.0.0.1",
                "--port", str(port), "--log-level", "warning"]  # fmt: skip
    else:
        argv = [*ocistore_argv(), "serve", "--root", str(root), "--addr", f"127.0.0.1:{port}",
                "--stack", stack, "--log-level", "warning"]  # fmt: skip
    return Server(name=stack, argv=argv, port=port, log_path=work / f"{stack}.log", env=env)


@pytest.fixture(scope="module", params=["ocistore", "granian", "uvicorn"])
def live(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    server = stack_server(tmp_path_factory.mktemp(f"strict-{request.param}"), request.param)
    server.start()
    yield server
    server.stop()


def smuggle(repo: str) -> bytes:
    """A monolithic upload of the empty blob: it creates ``repo`` if it ever runs."""
    return (
        f"POST /v2/{repo}/blobs/uploads/?digest={EMPTY} HTTP/1.1\r\nHost: t\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


def raw_exchange(server: Server, data: bytes) -> list[bytes]:
    """Send ``data`` on one connection; the status lines until the server closes it."""
    conn = Conn(socket.create_connection(("127.0.0.1", server.port), timeout=30))
    with conn:
        conn.send(data)
        lines = []
        while True:
            try:
                resp = conn.read_response()
            except Closed:
                return lines
            lines.append(resp.raw_head.split(b"\r\n", 1)[0])


def catalog(server: Server) -> list[str]:
    conn = Conn(socket.create_connection(("127.0.0.1", server.port), timeout=30))
    with conn:
        conn.send(request("GET", "/v2/_catalog", headers=[("Connection", "close")]))
        resp = conn.read_response()
    assert resp.status == 200, resp
    import json

    return list(json.loads(resp.body)["repositories"])


LEADS = {
    "websocket": b"GET /v2/ HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    "h2c": b"GET /v2/ HTTP/1.1\r\nHost: t\r\nUpgrade: h2c\r\nConnection: Upgrade, HTTP2-Settings\r\n"
    b"HTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n",
    "connect": b"CONNECT 127.0.0.1:1 HTTP/1.1\r\nHost: 127.0.0.1:1\r\n\r\n",
    "connect-origin": b"CONNECT /v2/ HTTP/1.1\r\nHost: t\r\n\r\n",
    "gzip, chunked": b"POST /v2/te/blobs/uploads/ HTTP/1.1\r\nHost: t\r\n"
    b"Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
    "identity, chunked": b"POST /v2/te/blobs/uploads/ HTTP/1.1\r\nHost: t\r\n"
    b"Transfer-Encoding: identity, chunked\r\n\r\n0\r\n\r\n",
    "xchunked": b"POST /v2/te/blobs/uploads/ HTTP/1.1\r\nHost: t\r\n"
    b"Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n",
}


@pytest.mark.parametrize("lead", list(LEADS))
def test_nothing_after_a_refused_or_final_request_runs(live: Server, lead: str) -> None:
    repo = "smuggled/" + "".join(c for c in lead if c.isalnum())
    lines = raw_exchange(live, LEADS[lead] + smuggle(repo) + smuggle(repo))
    assert len(lines) == 1, (live.name, lines)
    assert lines[0].startswith(b"HTTP/1.1 "), lines
    if "chunked" in lead:
        assert lines[0][9:12] in (b"501", b"400"), lines  # a status line, never a reset
    assert repo not in catalog(live)
    # the smuggled request itself works: sent on its own, it creates the repository
    assert raw_exchange(live, smuggle(repo)[:-2] + b"Connection: close\r\n\r\n") == [
        b"HTTP/1.1 201 Created"
    ]
    assert repo in catalog(live)


@pytest.mark.parametrize(
    "path", ["/v2/a%2fb/tags/list", "/v2/a%2Fb/tags/list", "/v2/a/%2e%2e/b/tags/list",
             "/v2/a%5cb/tags/list", "/v2/%61/b/manifests/latest", "/v2/a%2fb/blobs/uploads/"]
)  # fmt: skip
def test_percent_encoded_names_are_name_invalid(live: Server, path: str) -> None:
    import json

    method = "POST" if path.endswith("/uploads/") else "GET"
    conn = Conn(socket.create_connection(("127.0.0.1", live.port), timeout=30))
    with conn:
        conn.send(request(method, path, headers=[("Connection", "close")], length=True))
        resp = conn.read_response()
    assert resp.status == 400, (live.name, resp)
    assert [e["code"] for e in json.loads(resp.body)["errors"]] == ["NAME_INVALID"]


def test_the_same_names_unencoded_are_served(live: Server) -> None:
    conn = Conn(socket.create_connection(("127.0.0.1", live.port), timeout=30))
    with conn:
        conn.send(request("GET", "/v2/a/b/tags/list", headers=[("Connection", "close")]))
        assert conn.read_response().status == 404  # NAME_UNKNOWN: a valid name, not there


# -- slowloris -------------------------------------------------------------------------------

SLOW = 500


def slowloris_keeps_nobody_waiting(host: str, port: int, path: str) -> None:
    """500 connections hold half a request head each; another client is served meanwhile.

    Then every one of the 500 finishes its head and gets its answer: they were
    all still open while the other client was served (none was dropped to make
    room), and the server still serves them all.
    """
    slow: list[Conn] = []
    try:
        for i in range(SLOW):
            c = Conn(socket.create_connection((host, port), timeout=60))
            c.send(f"GET {path} HTTP/1.1\r\nHost: t\r\nX-Slow-{i}: ".encode())
            slow.append(c)
        for c in slow[::50]:  # trickle a byte on some: a head that is still coming
            c.send(b"a")
        for _ in range(5):
            with Conn(socket.create_connection((host, port), timeout=60)) as other:
                other.send(request("GET", path, headers=[("Connection", "close")]))
                assert other.read_response().status == 200
        for c in slow:
            c.send(b"b\r\nConnection: close\r\n\r\n")
        for c in slow:
            assert c.read_response().status == 200
    finally:
        for c in slow:
            c.close()


def test_slowloris_does_not_hold_up_other_clients(recorder: Recorder) -> None:
    settings = H1Settings(header_timeout=600.0, shutdown_grace=2.0)
    server = H1Server(recorder, settings).start()
    try:
        slowloris_keeps_nobody_waiting(server.host, server.port, "/")
    finally:
        server.stop()
    assert len(recorder.calls) == SLOW + 5


@pytest.mark.parametrize("stack", ["ocistore", "granian"])
def test_slowloris_under_ocistore_serve(tmp_path: Path, stack: str) -> None:
    server = stack_server(tmp_path, stack)
    server.start()
    try:
        slowloris_keeps_nobody_waiting("127.0.0.1", server.port, "/v2/")
    finally:
        server.stop()


# -- the limits' configuration ---------------------------------------------------------------


def test_limits_are_read_and_reach_the_server(tmp_path: Path) -> None:
    from ocistore.server.config import ServerConfig, load_config
    from ocistore.server.run import h1_settings

    path = tmp_path / "c.yml"
    path.write_text(
        "ocistore:\n  idletimeout: 30s\n  limits:\n    maxheaders: 50\n    maxheaderbytes: 16KiB\n"
        "    maxrequestline: 2KiB\n    maxconnections: 900\n    headertimeout: 5s\n"
        "    keepalivetimeout: 2m\n    sendtimeout: 45s\n"
    )
    cfg, unknown = load_config(path)
    assert unknown == []
    s = h1_settings(cfg)
    assert (s.max_headers, s.max_header_bytes, s.max_request_line, s.max_connections) == (
        50, 16 << 10, 2 << 10, 900
    )  # fmt: skip
    assert (s.header_timeout, s.keepalive_timeout, s.send_timeout) == (5.0, 120.0, 45.0)
    assert ServerConfig.from_env(cfg.to_env()) == cfg  # granian's workers get the same


def test_limits_default_safely_and_timeouts_follow_the_idle_timeout() -> None:
    from ocistore.server.config import ServerConfig, config_from_mapping
    from ocistore.server.run import h1_settings

    s = h1_settings(ServerConfig())
    assert (s.max_headers, s.max_header_bytes, s.max_request_line, s.max_connections) == (
        100, 64 << 10, 8 << 10, 4096
    )  # fmt: skip
    assert (s.header_timeout, s.keepalive_timeout, s.send_timeout) == (60.0, 75.0, 60.0)
    s = h1_settings(config_from_mapping({"ocistore": {"idletimeout": "10s"}}))
    assert (s.header_timeout, s.keepalive_timeout, s.send_timeout) == (10.0, 75.0, 10.0)


@pytest.mark.parametrize(
    ("key", "value", "said"),
    [
        ("maxheaders", 0, "below"),
        ("maxheaders", "many", "not a number"),
        ("maxheaderbytes", "100", "below"),
        ("maxheaderbytes", "lots", "not a size"),
        ("maxrequestline", "10", "below"),
        ("maxconnections", -1, "below"),
        ("headertimeout", "soon", "not a duration"),
        ("sendtimeout", 0, "below"),
    ],
)
def test_bad_limits_name_the_key_and_the_value(key: str, value: object, said: str) -> None:
    from ocistore.server.config import ConfigError, config_from_mapping

    with pytest.raises(ConfigError) as info:
        config_from_mapping({"ocistore": {"limits": {key: value}}})
    assert info.value.key == f"ocistore.limits.{key}"
    assert said in str(info.value) and repr(value) in str(info.value)
