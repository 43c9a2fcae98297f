"""Read-only mode switched by SIGHUP under ``ocistore serve --stack granian``.

granian handles SIGHUP itself: it calls ocistore's reload hook (which
re-reads the configuration into the environment its workers read) and then
replaces every worker. The test edits the config, sends SIGHUP, waits for
granian to report the last old worker stopped, and checks that writes are
refused with distribution's 405 UNSUPPORTED, then accepted again.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import core_env
from ocistore import _core
from redis_peer import free_port
from waiting import wait_until

from . import _oci
from ._http import request
from ._peers import Server, ocistore_argv

WORKERS = 1
READONLY = "  maintenance: {readonly: {enabled: true}}\n"


def _config(root: Path, port: int, readonly: bool) -> str:
    return (
        "version: 0.1\n"
        "log: {level: info}\n"
        "storage:\n"
        f"  filesystem: {{rootdirectory: {root}}}\n"
        "  delete: {enabled: true}\n"
        "  cache: {blobdescriptor: inmemory}\n"
        + (READONLY if readonly else "")
        + f"http: {{addr: 127.0.0.1:{port}, secret: granian-reload-secret}}\n"
    )


@pytest.fixture
def granian(tmp_path: Path) -> Iterator[tuple[Server, Path]]:
    port = free_port()
    config = tmp_path / "config.yml"
    config.write_text(_config(tmp_path / "root", port, readonly=False))
    argv = [*ocistore_argv(), "serve", "--config", str(config), "--stack", "granian"]
    server = Server(
        name=f"ocistore-granian[{_core.BACKEND}]",
        argv=[*argv, "--workers", str(WORKERS)],
        port=port,
        log_path=tmp_path / "ocistore.log",
        env=core_env(_core.BACKEND),
    )
    server.start()
    yield server, config
    server.stop()


def _push_blob(url: str, data: bytes) -> int:
    digest = _oci.sha256(data)
    return request("POST", f"{url}/v2/ro/app/blobs/uploads/?digest={digest}", body=data).status


def _reload(server: Server, reloads: int) -> None:
    """SIGHUP, then wait until granian has replaced every worker for the ``reloads``-th time."""
    assert server.proc is not None
    server.proc.send_signal(signal.SIGHUP)
    wait_until(
        lambda: server.log().count(f"Stopped old worker-{WORKERS}") >= reloads,
        f"granian replaced its workers ({reloads} reloads)",
        timeout=60,
    )


def test_readonly_switched_by_sighup_under_granian(granian: tuple[Server, Path]) -> None:
    server, config = granian
    root = config.parent / "root"
    port = server.port
    assert _push_blob(server.url, b"writable") == 201

    config.write_text(_config(root, port, readonly=True))
    _reload(server, 1)
    # New connections land on any worker: each must refuse.
    assert [_push_blob(server.url, b"refused?") for _ in range(4 * WORKERS)] == [405] * (
        4 * WORKERS
    )
    r = request("POST", f"{server.url}/v2/ro/app/blobs/uploads/")
    assert (r.status, r.json()["errors"][0]["code"]) == (405, "UNSUPPORTED")
    digest = _oci.sha256(b"writable")
    assert request("GET", f"{server.url}/v2/ro/app/blobs/{digest}").body == b"writable"

    config.write_text(_config(root, port, readonly=False))
    _reload(server, 2)
    assert [_push_blob(server.url, b"again") for _ in range(4 * WORKERS)] == [201] * (4 * WORKERS)
    assert server.proc is not None and server.proc.poll() is None
    assert "SIGHUP: configuration reloaded (read-only on)" in server.log()
