"""Proxy mode with several workers: one upstream fetch per blob for the whole host.

``ocistore serve --workers 2`` in front of a counting relay and a real Go
registry: concurrent clients of a cold blob, spread over both workers by the
kernel, cause one upstream GET; a filling worker killed mid-download leaves
its clients with a clean error (never a complete wrong body) and the blob is
fetched once more, by the other worker or the next request.
"""

from __future__ import annotations

import json
import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from ocistore.server.config import LOCK_DIRNAME
from waiting import wait_until

from . import _oci
from ._http import CLOSED, Response
from ._http import request as http_request
from ._peers import GoRegistry, OcistoreServer
from ._proxy import (
    BIG,
    FaultyUpstream,
    many_clients_one_get,
    push_blob,
    repo_name,
    start_proxy,
    stored,
    wait_stored,
)

pytestmark = pytest.mark.peer


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("proxy-workers")


@pytest.fixture(scope="module")
def proxy(workdir: Path, relay: FaultyUpstream) -> Iterator[OcistoreServer]:
    server = start_proxy(workdir, "proxy", relay.url, timeout="10s", extra=["--workers", "2"])
    yield server
    server.stop()


def name(request: pytest.FixtureRequest, what: str) -> str:
    return repo_name(request, what, prefix="workers-")


@pytest.mark.parametrize("size", [4096, BIG], ids=["verified-first", "streamed"])
def test_clients_of_all_workers_share_one_upstream_get(
    request: pytest.FixtureRequest,
    upstream: GoRegistry,
    relay: FaultyUpstream,
    proxy: OcistoreServer,
    size: int,
) -> None:
    digest = many_clients_one_get(upstream, relay, proxy, name(request, f"blob-{size}"), size)
    wait_stored(proxy.root, digest)


def test_killed_filler_is_replaced_and_never_serves_wrong_bytes(
    request: pytest.FixtureRequest,
    upstream: GoRegistry,
    relay: FaultyUpstream,
    proxy: OcistoreServer,
) -> None:
    repo = name(request, "blob")
    data, path = push_blob(upstream, repo, BIG)
    digest = _oci.sha256(data)
    state = proxy.root / LOCK_DIRNAME / "proxy-fills" / f"sha256-{digest.split(':', 1)[1]}.state"
    results: list[Response | BaseException] = []
    lock = threading.Lock()

    def one() -> None:
        try:
            got: Response | BaseException = http_request("GET", proxy.url + path, timeout=60)
        except BaseException as exc:  # the killed worker's clients lose their connection
            got = exc
        with lock:
            results.append(got)

    clients = [threading.Thread(target=one) for _ in range(8)]
    with relay.broken(path, "stall"):  # headers and one byte, then nothing: the filler is mid-body
        for t in clients:
            t.start()
        wait_until(state.exists, f"the filler's state {state}")
        pid = json.loads(state.read_text())["pid"]
        assert relay.blob_gets(repo, digest) == 1
    os.kill(pid, signal.SIGKILL)
    for t in clients:
        t.join(90)
    assert len(results) == 8
    for got in results:
        if isinstance(got, Response) and got.status == 200 and not got.truncated:
            assert got.body == data  # complete means correct
        elif isinstance(got, Response):
            assert got.truncated or got.status in (CLOSED, 502, 503), got
    again = http_request("GET", proxy.url + path, timeout=60)
    assert (again.status, again.body) == (200, data)
    assert relay.blob_gets(repo, digest) == 2
    wait_stored(proxy.root, digest)
    assert stored(proxy.root, digest)
