"""A health check that hangs (a stalled filesystem or S3 call) times out and counts as a failure."""

from __future__ import annotations

import http.client
import json
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ocistore.server.config import ConfigError, config_from_mapping
from ocistore.server.debug import RunDir, _DebugServer
from ocistore.server.health import HealthGate, HealthMonitor, create_health_file
from waiting import wait_until

TIMED_OUT = "timed out: no answer within 0.05s"


def blocking_check(release: threading.Event, entered: threading.Event) -> Callable[[], None]:
    def check() -> None:
        entered.set()
        release.wait()

    return check


def test_a_hung_check_fails_after_threshold_timeouts_and_heals_when_it_returns(
    tmp_path: Path,
) -> None:
    path = str(tmp_path / "health")
    create_health_file(path)
    monitor, gate = HealthMonitor(path), HealthGate(path)
    release, entered = threading.Event(), threading.Event()
    check = blocking_check(release, entered)
    try:
        monitor.run_once("storagedriver_s3", check, threshold=2, timeout=0.05)
        assert entered.is_set()
        assert (monitor.status(), gate.failing) == ({}, False)  # one timeout: under threshold
        monitor.run_once("storagedriver_s3", check, threshold=2, timeout=0.05)
        assert monitor.status() == {"storagedriver_s3": TIMED_OUT}
        assert gate.failing is True
    finally:
        release.set()
    # The stuck run returns: the next round takes its outcome (and started no second run).
    entered.clear()
    monitor.run_once("storagedriver_s3", check, threshold=2, timeout=60)
    assert not entered.is_set()
    assert (monitor.status(), gate.failing) == ({}, False)
    # A fresh run that raises is still reported with its own reason.
    monitor.run_once("storagedriver_s3", _raises, threshold=1, timeout=60)
    assert monitor.status() == {"storagedriver_s3": "bucket gone"}


def _raises() -> None:
    raise OSError("bucket gone")


def _get_health(port: int) -> tuple[int, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", "/debug/health")
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read())
    finally:
        conn.close()


def test_debug_health_reports_a_hung_storage_check_and_drains(tmp_path: Path) -> None:
    run = RunDir.create()
    monitor, gate = HealthMonitor(run.health_file), HealthGate(run.health_file)
    release, entered = threading.Event(), threading.Event()
    monitor.add(
        "storagedriver_filesystem",
        blocking_check(release, entered),
        interval=0.05,
        threshold=1,
        timeout=0.05,
    )
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    server = _DebugServer(sock, monitor, None, run)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = sock.getsockname()[1]
    monitor.start()
    try:
        assert _get_health(port) in ((200, {}), (503, {"storagedriver_filesystem": TIMED_OUT}))
        wait_until(lambda: gate.failing, "the hung check fails the registry")
        assert _get_health(port) == (503, {"storagedriver_filesystem": TIMED_OUT})
        release.set()
        wait_until(lambda: not gate.failing, "the check passes once the call returns")
        assert _get_health(port) == (200, {})
    finally:
        release.set()
        monitor.stop()
        server.shutdown()
        server.server_close()


def test_timeout_key_is_read_and_bad_values_are_refused() -> None:
    cfg = config_from_mapping(
        {"health": {"storagedriver": {"enabled": True, "interval": "10s", "timeout": "2s"}}}
    )
    assert (cfg.health.timeout, cfg.health.check_timeout) == (2.0, 2.0)
    cfg = config_from_mapping({"health": {"storagedriver": {"enabled": True, "interval": "7s"}}})
    assert (cfg.health.timeout, cfg.health.check_timeout) == (None, 7.0)
    with pytest.raises(ConfigError, match=r"health\.storagedriver\.timeout.*longer than 0"):
        config_from_mapping({"health": {"storagedriver": {"timeout": "0s"}}})
    with pytest.raises(ConfigError, match=r"health\.storagedriver\.timeout"):
        config_from_mapping({"health": {"storagedriver": {"timeout": "soon"}}})
