"""``limits.sendtimeout`` under ``ocistore serve --stack granian``.

granian has no send timeout; the app bounds each send itself
(:mod:`ocistore.server.sendbound`). A client that requests a large blob and
reads nothing is cut off after the send timeout, logged at INFO as a client
timeout with no ERROR line, and other clients are served meanwhile.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

import ocistore
from conftest import core_env
from interop._http import request as http_request
from interop._peers import Server, ocistore_argv
from redis_peer import free_port
from waiting import wait_until

from .conftest import sha256
from .h1_harness import request

BIG = 48 << 20


@pytest.fixture
def granian(tmp_path: Path) -> Iterator[Server]:
    port = free_port()
    config = tmp_path / "config.yml"
    config.write_text(
        "version: 0.1\n"
        "log: {level: info}\n"
        f"storage: {{filesystem: {{rootdirectory: {tmp_path / 'root'}}}}}\n"
        f"http: {{addr: 127.0.0.1:{port}, secret: send-timeout-secret}}\n"
        "ocistore: {limits: {sendtimeout: 1s}}\n"
    )
    argv = [*ocistore_argv(), "serve", "--config", str(config), "--stack", "granian"]
    server = Server(
        name="granian", argv=argv, port=port, log_path=tmp_path / "granian.log",
        env=core_env(ocistore.BACKEND),
    )  # fmt: skip
    server.start()
    yield server
    server.stop()


def test_stalled_client_is_cut_after_the_send_timeout_under_granian(granian: Server) -> None:
    blob = os.urandom(BIG)
    dgst = sha256(blob)
    url = f"{granian.url}/v2/stall/repo/blobs/uploads/?digest={dgst}"
    assert http_request("POST", url, body=blob).status == 201
    path = f"/v2/stall/repo/blobs/{dgst}"
    with socket.create_connection(("127.0.0.1", granian.port), timeout=30) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 << 10)
        s.sendall(request("GET", path))
        wait_until(lambda: "client timeout" in granian.log(), "the app gave up on the client")
        other = http_request("GET", granian.url + path)  # everyone else is still served
        assert (other.status, other.body == blob) == (200, True)
        got = 0
        try:
            while piece := s.recv(1 << 20):
                got += len(piece)
        except ConnectionResetError:
            pass
        assert got < BIG  # the response was cut, not completed
    lines = granian.log().splitlines()
    timeouts = [x for x in lines if "client timeout" in x]
    assert len(timeouts) == 1 and " INFO " in timeouts[0], timeouts
    assert "the client took no data for 1s" in timeouts[0]
    assert [x for x in lines if "ERROR" in x] == []
