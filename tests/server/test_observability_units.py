"""Issue 15 in-process: the configuration keys, log formats, request ids, health state, metrics API."""

from __future__ import annotations

import contextvars
import io
import json
import logging
import socket
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from ocistore import metrics
from ocistore.cli import main
from ocistore.server.config import ConfigError, ServerConfig, config_from_mapping, load_config
from ocistore.server.health import (
    HealthGate,
    HealthMonitor,
    StorageDriverHealth,
    create_health_file,
    register_check,
)
from ocistore.server.logs import REQUEST_ID, access_line, make_formatter, request_id_from

from .asgi_client import Client
from .conftest import make_app

# --- configuration ---------------------------------------------------------------------


def test_observability_keys_are_read() -> None:
    cfg = config_from_mapping(
        {
            "log": {"formatter": "JSON", "fields": {"service": "registry", "zone": 3}},
            "http": {
                "debug": {"addr": "127.0.0.1:5001", "prometheus": {"enabled": True, "path": "/m"}}
            },
            "health": {"storagedriver": {"enabled": True, "interval": "2s", "threshold": 0}},
        }
    )
    assert (cfg.log_formatter, json.loads(cfg.log_fields)) == (
        "json",
        {"service": "registry", "zone": 3},
    )
    assert (cfg.debug_addr, cfg.prometheus, cfg.prometheus_path) == ("127.0.0.1:5001", True, "/m")
    # distribution's threshold 0 fails at the first error, as 1 does.
    assert cfg.health == StorageDriverHealth(enabled=True, interval=2.0, threshold=1)
    defaults = ServerConfig()
    assert (defaults.debug_addr, defaults.prometheus, defaults.prometheus_path) == (
        "",
        False,
        "/metrics",
    )
    assert defaults.health.enabled is False


@pytest.mark.parametrize(
    ("doc", "key", "value"),
    [
        ({"log": {"formatter": "xml"}}, "log.formatter", "xml"),
        ({"log": {"fields": ["a"]}}, "log.fields", "['a']"),
        ({"http": {"debug": {"addr": "nohost"}}}, "http.debug.addr", "nohost"),
        (
            {"http": {"debug": {"prometheus": {"path": "metrics"}}}},
            "http.debug.prometheus.path",
            "metrics",
        ),
        (
            {"http": {"debug": {"prometheus": {"enabled": "maybe"}}}},
            "http.debug.prometheus.enabled",
            "maybe",
        ),
        (
            {"health": {"storagedriver": {"interval": "soon"}}},
            "health.storagedriver.interval",
            "soon",
        ),
        ({"health": {"storagedriver": {"interval": 0}}}, "health.storagedriver.interval", "0"),
        ({"health": {"storagedriver": {"threshold": -1}}}, "health.storagedriver.threshold", "-1"),
    ],
)
def test_bad_observability_values_name_key_and_value(
    doc: dict[str, Any], key: str, value: str
) -> None:
    with pytest.raises(ConfigError) as info:
        config_from_mapping(doc)
    assert info.value.key == key
    assert value in str(info.value)


@pytest.fixture
def root_logging() -> Any:
    """Put the root logger back as it was after ``ocistore serve`` configured it in-process."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.mark.usefixtures("root_logging")
def test_a_busy_debug_address_fails_before_serving(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        config = tmp_path / "config.yml"
        config.write_text(f"http: {{debug: {{addr: '127.0.0.1:{port}'}}}}\n")
        code = main(
            ["serve", "--config", str(config), "--root", str(tmp_path), "--addr", "127.0.0.1:0"]
        )
    assert code == 2
    assert f"127.0.0.1:{port} is already in use" in capsys.readouterr().err


# --- logs --------------------------------------------------------------------------------


def _record(msg: str = "hello", **extra: Any) -> logging.LogRecord:
    record = logging.LogRecord("ocistore.server", logging.INFO, __file__, 1, msg, None, None)
    record.__dict__.update(extra)
    return record


def test_json_line_has_fields_request_id_and_extras() -> None:
    line = make_formatter("json", {"service": "registry"}).format(
        _record(request_id="r-1", upload="u1")
    )
    doc = json.loads(line)
    assert {k: doc[k] for k in ("service", "level", "msg", "logger", "request_id", "upload")} == {
        "service": "registry",
        "level": "info",
        "msg": "hello",
        "logger": "ocistore.server",
        "request_id": "r-1",
        "upload": "u1",
    }
    assert "time" in doc


def test_logstash_line_uses_logstash_keys() -> None:
    doc = json.loads(make_formatter("logstash", {"env": "prod"}).format(_record()))
    assert (doc["@version"], doc["message"], doc["env"], doc["level"]) == (
        "1",
        "hello",
        "prod",
        "info",
    )
    assert "@timestamp" in doc and "msg" not in doc


def test_text_line_ends_with_key_values() -> None:
    line = make_formatter("text", {"service": "my registry"}).format(_record(request_id="r-2"))
    assert line.endswith('INFO ocistore.server: hello service="my registry" request_id=r-2')


def test_unknown_formatter_is_refused() -> None:
    with pytest.raises(ValueError, match=r"log\.formatter 'xml'"):
        make_formatter("xml")


def test_request_id_reaches_every_line_of_the_request() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(make_formatter("json"))
    from ocistore.server.logs import _RequestIdFilter

    handler.addFilter(_RequestIdFilter())
    log = logging.getLogger("ocistore.test.requestid")
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:

        def in_request() -> None:
            REQUEST_ID.set("req-7")
            log.info("inside")

        contextvars.copy_context().run(in_request)
        log.info("outside")
    finally:
        log.removeHandler(handler)
    lines = [json.loads(x) for x in stream.getvalue().splitlines()]
    assert [(x["msg"], x.get("request_id")) for x in lines] == [
        ("inside", "req-7"),
        ("outside", None),
    ]


@pytest.mark.parametrize("bad", ["", "a b", "x" * 129, "caf\u00e9", "tab\there"])
def test_unusable_client_request_ids_are_replaced(bad: str) -> None:
    new = request_id_from(bad)
    assert new != bad and request_id_from(None) != new


def test_access_line_is_combined_format() -> None:
    scope = {"client": ("10.0.0.1", 5555), "query_string": b"n=10", "http_version": "1.1"}
    line, fields = access_line(scope, "GET", "/v2/_catalog", 200, 42, 0.0015, None, "docker/27")
    assert line.startswith("10.0.0.1 - - [")
    assert line.endswith('] "GET /v2/_catalog?n=10 HTTP/1.1" 200 42 "" "docker/27"')
    assert (
        fields["http.response.status"] == 200 and fields["http.request.uri"] == "/v2/_catalog?n=10"
    )


def test_app_returns_the_request_id(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    try:
        client = Client(app)
        assert (
            client.get("/v2/", headers={"X-Request-Id": "abc-1"}).header("X-Request-Id") == "abc-1"
        )
        first = client.get("/v2/").header("X-Request-Id")
        second = client.get("/v2/nope/tags/list").header("X-Request-Id")
        assert first and second and first != second
    finally:
        app.executor.shutdown(wait=True)


# --- health --------------------------------------------------------------------------------


def _failing() -> None:
    raise OSError("disk on fire")


def test_threshold_failures_in_a_row_fail_and_one_success_heals(tmp_path: Path) -> None:
    path = str(tmp_path / "health")
    create_health_file(path)
    monitor, gate = HealthMonitor(path), HealthGate(path)
    monitor.run_once("storagedriver_filesystem", _failing, threshold=2)
    assert (monitor.status(), gate.failing) == ({}, False)
    monitor.run_once("storagedriver_filesystem", _failing, threshold=2)
    assert monitor.status() == {"storagedriver_filesystem": "disk on fire"}
    assert gate.failing is True
    monitor.run_once("storagedriver_filesystem", lambda: None, threshold=2)
    assert (monitor.status(), gate.failing) == ({}, False)


def test_an_unhealthy_app_answers_503_to_every_request(tmp_path: Path) -> None:
    path = str(tmp_path / "health")
    create_health_file(path)
    monitor = HealthMonitor(path)
    app = make_app(tmp_path, health=HealthGate(path))
    try:
        client = Client(app)
        assert client.get("/v2/").status == 200
        monitor.run_once("cache_lmdb", _failing, threshold=1)
        for url in ("/v2/", "/v2/a/b/manifests/latest", "/v2/_catalog"):
            r = client.get(url)
            assert (r.status, r.error_codes) == (503, ["UNAVAILABLE"])
        monitor.run_once("cache_lmdb", lambda: None, threshold=1)
        assert client.get("/v2/").status == 200
    finally:
        app.executor.shutdown(wait=True)


def test_registered_checks_join_the_configured_ones(tmp_path: Path) -> None:
    seen: list[Any] = []

    def upstream(cfg: Any) -> Any:
        seen.append(cfg)
        return _failing if cfg.root == "with-upstream" else None

    register_check("test_upstream", upstream, interval=1.0)
    try:
        with pytest.raises(ValueError, match="already registered"):
            register_check("test_upstream", upstream)
        monitor = HealthMonitor()
        monitor.add_configured(
            ServerConfig(root="with-upstream"), StorageDriverHealth(), None, None
        )
        assert [c[0] for c in monitor._checks] == ["test_upstream"]
        monitor = HealthMonitor()
        monitor.add_configured(ServerConfig(root="plain"), StorageDriverHealth(), None, None)
        assert monitor._checks == []
    finally:
        from ocistore.server import health

        health._EXTRA[:] = [r for r in health._EXTRA if r.name != "test_upstream"]


# --- the metrics API ------------------------------------------------------------------------

MAINTENANCE = r"""
import sys
from ocistore import metrics
metrics.record_maintenance_run("gc", seconds=1.0)  # off: nothing recorded, nothing fails
metrics.enable(sys.argv[1])
metrics.record_maintenance_run("purge", seconds=2.5, removed=3, errors=1, ok=False)
metrics.record_maintenance_run("gc", seconds=4.0, removed=7)
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
registry = CollectorRegistry()
MultiProcessCollector(registry, path=sys.argv[1])
sys.stdout.write(generate_latest(registry).decode())
"""


def test_maintenance_runs_are_recorded(tmp_path: Path) -> None:
    """In a process of its own: prometheus_client reads the multiprocess setting at import."""
    assert not metrics.enabled()
    metrics.record_maintenance_run("purge", seconds=1.0)  # a no-op here
    out = subprocess.run(
        [sys.executable, "-c", MAINTENANCE, str(tmp_path)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    samples = dict(line.rsplit(" ", 1) for line in out.splitlines() if not line.startswith("#"))
    assert float(samples['ocistore_maintenance_runs_total{kind="purge",outcome="error"}']) == 1
    assert float(samples['ocistore_maintenance_runs_total{kind="gc",outcome="ok"}']) == 1
    assert 'ocistore_maintenance_runs_total{kind="gc",outcome="error"}' not in samples
    assert float(samples['ocistore_maintenance_removed_total{kind="purge"}']) == 3
    assert float(samples['ocistore_maintenance_removed_total{kind="gc"}']) == 7
    assert float(samples['ocistore_maintenance_errors_total{kind="purge"}']) == 1
    assert float(samples['ocistore_maintenance_last_duration_seconds{kind="gc"}']) == 4.0
    assert float(samples['ocistore_maintenance_last_run_timestamp_seconds{kind="gc"}']) > 0


def test_readme_production_config_is_read_whole(tmp_path: Path) -> None:
    """The README's "Running in production" example: every key read, none unknown."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Running in production", 1)[1]
    example = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    path = tmp_path / "config.yml"
    path.write_text(example)
    cfg, unknown = load_config(path)
    assert unknown == []
    assert (cfg.log_formatter, cfg.prometheus, cfg.debug_addr) == ("json", True, "127.0.0.1:5001")
    assert cfg.health == StorageDriverHealth(enabled=True, interval=10.0, threshold=3, timeout=5.0)


@pytest.mark.one_core
def test_a_scrape_while_a_worker_creates_its_file_serves_the_others(tmp_path: Path) -> None:
    """A worker's value file exists empty for a moment before it is sized; a scrape then
    still answers, with every other file's values (prometheus_client's reader fails on it)."""
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.multiprocess import MultiProcessCollector

    from ocistore.server.debug import exposition

    subprocess.run([sys.executable, "-c", MAINTENANCE, str(tmp_path)], check=True)
    (tmp_path / "counter_4194304.db").write_bytes(b"")  # a worker between open and truncate
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(tmp_path))  # type: ignore[no-untyped-call]
    with pytest.raises(struct.error):
        generate_latest(registry)
    body, ctype = exposition(str(tmp_path))
    assert ctype.startswith("text/plain; version=")
    assert b'ocistore_maintenance_removed_total{kind="gc"} 7.0' in body.splitlines()
