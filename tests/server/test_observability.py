"""Issue 15 on a real ``ocistore serve --workers 2``: /metrics over every worker, health, logs.

One server per module (per core): two workers, the debug server with
Prometheus, health checks every 0.1 s failing after two errors, access logs
as JSON with ``log.fields``. Which worker serves a request is made certain
by stopping the other one (SIGSTOP): a stopped process cannot accept, so
every connection goes to the worker left running.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pytest

import ocistore
from conftest import core_env
from redis_peer import free_port
from waiting import wait_until

IO_TIMEOUT = 30.0


@dataclass
class Served:
    proc: subprocess.Popen[bytes]
    port: int
    debug_port: int
    root: Path
    log: Path

    def workers(self) -> list[int]:
        pids = re.findall(r"worker (\d+) started", self.log.read_text())
        return [int(p) for p in pids]

    def request(
        self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        """One request on a connection of its own (so that any worker may take it)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=IO_TIMEOUT)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            r = conn.getresponse()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
        finally:
            conn.close()

    def debug(self, path: str) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.debug_port, timeout=IO_TIMEOUT)
        try:
            conn.request("GET", path)
            r = conn.getresponse()
            return r.status, r.read()
        finally:
            conn.close()

    def samples(self) -> dict[str, float]:
        """Every sample of /metrics: ``name{labels}`` -> value."""
        status, body = self.debug("/metrics")
        assert status == 200
        out: dict[str, float] = {}
        for line in body.decode().splitlines():
            if line and not line.startswith("#"):
                key, _, value = line.rpartition(" ")
                out[key] = float(value)
        return out

    def metric(self, name: str, **labels: str) -> float:
        """The sum of the samples of ``name`` whose labels include ``labels``."""
        total = 0.0
        for key, value in self.samples().items():
            base, _, rest = key.partition("{")
            if base != name:
                continue
            have = dict(re.findall(r'(\w+)="([^"]*)"', rest))
            if all(have.get(k) == v for k, v in labels.items()):
                total += value
        return total


CONFIG = """\
version: 0.1
log:
  level: info
  formatter: json
  fields: {{service: registry, environment: test}}
  accesslog: {{disabled: false}}
storage:
  filesystem: {{rootdirectory: {root}}}
  delete: {{enabled: true}}
http:
  addr: 127.0.0.1:{port}
  secret: obs-secret
  debug:
    addr: 127.0.0.1:{debug_port}
    prometheus: {{enabled: true, path: /metrics}}
health:
  storagedriver: {{enabled: true, interval: 100ms, threshold: 2}}
ocistore: {{workers: 2}}
"""


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, core: ModuleType) -> Iterator[Served]:
    """One server per core (the fixture depends on ``core``, so it restarts when that changes)."""
    work = tmp_path_factory.mktemp("observability")
    port, debug_port = free_port(), free_port()
    config = work / "config.yml"
    config.write_text(CONFIG.format(root=work / "root", port=port, debug_port=debug_port))
    log = work / "serve.log"
    exe = Path(sys.executable).with_name("ocistore")
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [str(exe), "serve", "--config", str(config)],
            env=core_env(ocistore.BACKEND),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    s = Served(proc, port, debug_port, work / "root", log)
    try:
        wait_until(lambda: len(s.workers()) == 2 or proc.poll() is not None, "two workers start")
        assert proc.poll() is None, log.read_text()

        def up() -> bool:
            try:
                return s.request("GET", "/v2/")[0] == 200 and s.debug("/debug/health")[0] == 200
            except OSError:
                return False

        wait_until(up, "the registry and its debug server answer")
        yield s
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(IO_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _wait_for(s: Served, name: str, at_least: float, **labels: str) -> float:
    """Poll /metrics until ``name`` reaches ``at_least`` (workers flush every second)."""
    seen: list[float] = []

    def reached() -> bool:
        seen.append(s.metric(name, **labels))
        return seen[-1] >= at_least

    wait_until(reached, f"{name}{labels} reaches {at_least}")
    return seen[-1]


def _multiproc_dir(s: Served) -> str:
    found = re.search(r"shared state in (\S+?)\"", s.log.read_text())
    assert found, "serve did not log its shared state directory"
    return os.path.join(found.group(1), "metrics")


def test_requests_served_by_each_worker_add_up_in_one_scrape(served: Served) -> None:
    a, b = served.workers()
    labels = {"handler": "tags", "method": "GET", "code": "404"}
    before = served.metric("registry_http_requests_total", **labels)
    counts = {a: 7, b: 5}
    for runner, stopped in ((a, b), (b, a)):
        os.kill(stopped, signal.SIGSTOP)
        try:
            for _ in range(counts[runner]):
                status, _, _ = served.request("GET", "/v2/obs/none/tags/list")
                assert status == 404
        finally:
            os.kill(stopped, signal.SIGCONT)
    total = _wait_for(served, "registry_http_requests_total", before + 12, **labels)
    assert total == before + 12
    # Both workers wrote counters of their own, and the scrape summed them.
    files = os.listdir(_multiproc_dir(served))
    assert f"counter_{a}.db" in files and f"counter_{b}.db" in files
    hist = served.metric(
        "registry_http_request_duration_seconds_count", handler="tags", method="GET"
    )
    assert hist >= before + 12


def test_a_scrape_answers_while_every_worker_is_stopped(served: Served) -> None:
    """The debug server shares nothing with the workers' loops: stopped workers cannot hold it."""
    _wait_for(served, "registry_http_requests_total", 1)  # the start-up requests, flushed
    workers = served.workers()
    for pid in workers:
        os.kill(pid, signal.SIGSTOP)
    try:
        status, body = served.debug("/metrics")
        assert status == 200 and b"registry_http_requests_total" in body
        assert served.debug("/debug/health") == (200, b"{}")
    finally:
        for pid in workers:
            os.kill(pid, signal.SIGCONT)


def _push(s: Served, repo: str, data: bytes) -> str:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    status, headers, _ = s.request(
        "POST", f"/v2/{repo}/blobs/uploads/", headers={"Content-Length": "0"}
    )
    assert status == 202
    location = headers["location"].split(str(s.port), 1)[-1]
    half = len(data) // 2
    status, headers, _ = s.request(
        "PATCH",
        location,
        body=data[:half],
        headers={"Content-Type": "application/octet-stream", "Content-Range": f"0-{half - 1}"},
    )
    assert status == 202
    location = headers["location"].split(str(s.port), 1)[-1]
    sep = "&" if "?" in location else "?"
    status, _, _ = s.request("PUT", f"{location}{sep}digest={digest}", body=data[half:])
    assert status == 201
    return digest


def test_bytes_uploads_and_hash_state_are_counted(served: Served) -> None:
    data = os.urandom(300_000)
    rx = served.metric("ocistore_http_received_bytes_total", handler="blob_upload_chunk")
    tx = served.metric("ocistore_http_sent_bytes_total", handler="blob")
    started = served.metric("ocistore_uploads_started_total")
    done = served.metric("ocistore_uploads_completed_total")
    resumes = served.metric("ocistore_hashstate_resumes_total")
    rereads = served.metric("ocistore_hashstate_rereads_total")
    reread = served.metric("ocistore_hashstate_reread_bytes_total")
    digest = _push(served, "obs/bytes", data)
    status, _, body = served.request("GET", f"/v2/obs/bytes/blobs/{digest}")
    assert (status, body) == (200, data)
    # Counters are flushed (and so scraped) one after another: wait for each.
    _wait_for(served, "ocistore_uploads_completed_total", done + 1)
    _wait_for(served, "ocistore_uploads_started_total", started + 1)
    _wait_for(
        served, "ocistore_http_received_bytes_total", rx + len(data), handler="blob_upload_chunk"
    )
    _wait_for(served, "ocistore_http_sent_bytes_total", tx + len(data), handler="blob")
    # The PUT reopened the upload: its hash either continued from the PATCH's
    # state (native core) or read all the data again (pure core: no states).
    if ocistore.BACKEND == "pure":
        _wait_for(served, "ocistore_hashstate_reread_bytes_total", reread + len(data))
        _wait_for(served, "ocistore_hashstate_rereads_total", rereads + 1)
    else:
        _wait_for(served, "ocistore_hashstate_resumes_total", resumes + 1)
    assert served.metric("ocistore_uploads_started_total") == started + 1
    assert served.metric("ocistore_uploads_completed_total") == done + 1
    assert served.metric(
        "ocistore_http_received_bytes_total", handler="blob_upload_chunk"
    ) == rx + len(data)
    assert (
        served.metric("ocistore_hashstate_resumes_total")
        + served.metric("ocistore_hashstate_rereads_total")
        == resumes + rereads + 1
    )
    # The storage calls were timed, and the cache layers counted.
    assert served.metric("registry_storage_action_seconds_count", driver="filesystem") > 0
    assert served.metric("ocistore_cache_lookups_total", layer="lmdb") > 0
    assert served.metric("ocistore_uploads_in_progress") == 0
    assert served.metric("registry_http_in_flight_requests") == 0


def test_failing_storage_check_drains_the_registry(served: Served) -> None:
    probe_dir = served.root / "ocistore-health"
    wait_until(probe_dir.is_dir, "the storage check writes its probe")
    saved = served.root / "health-probes-saved"
    probe_dir.rename(saved)
    probe_dir.write_bytes(b"")  # a file where the probe's directory belongs: writes fail
    try:

        def failing() -> bool:
            return served.debug("/debug/health")[0] == 503

        wait_until(failing, "/debug/health reports the failed check")
        status, body = served.debug("/debug/health")
        assert list(json.loads(body)) == ["storagedriver_filesystem"]
        status, _, body = served.request("GET", "/v2/")
        assert status == 503
        assert json.loads(body)["errors"][0]["code"] == "UNAVAILABLE"
    finally:
        probe_dir.unlink()
        saved.rename(probe_dir)
    wait_until(lambda: served.request("GET", "/v2/")[0] == 200, "the registry serves again")
    assert served.debug("/debug/health") == (200, b"{}")


def test_request_ids_and_json_access_log(served: Served) -> None:
    mine = f"trace-{uuid.uuid4()}"
    status, headers, _ = served.request("GET", "/v2/", headers={"X-Request-Id": mine})
    assert (status, headers["x-request-id"]) == (200, mine)
    _, first, _ = served.request("GET", "/v2/")
    _, second, _ = served.request("GET", "/v2/")
    assert first["x-request-id"] != second["x-request-id"]

    def logged() -> list[dict[str, object]]:
        lines = [json.loads(x) for x in served.log.read_text().splitlines() if x.startswith("{")]
        return [x for x in lines if x.get("request_id") in (mine, first["x-request-id"])]

    wait_until(lambda: len(logged()) == 2, "both requests' access lines are logged")
    for line in logged():
        assert line["logger"] == "ocistore.access"
        assert (line["service"], line["environment"]) == ("registry", "test")
        assert line["http.request.method"] == "GET" and line["http.response.status"] == 200
        assert '"GET /v2/ HTTP/1.1" 200 2' in str(line["msg"])


@pytest.mark.one_core
def test_granian_workers_are_aggregated_too(tmp_path: Path) -> None:
    """``--stack granian`` gets the same monitor, and its workers the same metrics."""
    port, debug_port = free_port(), free_port()
    config = tmp_path / "config.yml"
    config.write_text(
        CONFIG.format(root=tmp_path / "root", port=port, debug_port=debug_port).replace(
            "ocistore: {workers: 2}", "ocistore: {workers: 2, stack: granian}"
        )
    )
    log = tmp_path / "serve.log"
    exe = Path(sys.executable).with_name("ocistore")
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [str(exe), "serve", "--config", str(config)], stdout=out, stderr=subprocess.STDOUT
        )
    s = Served(proc, port, debug_port, tmp_path / "root", log)
    try:

        def up() -> bool:
            assert proc.poll() is None, log.read_text()
            try:
                return s.request("GET", "/v2/")[0] == 200
            except OSError:
                return False

        wait_until(up, "granian answers")
        for _ in range(9):
            assert s.request("GET", "/v2/obs/none/tags/list")[0] == 404
        labels = {"handler": "tags", "code": "404"}
        assert _wait_for(s, "registry_http_requests_total", 9, **labels) == 9
        assert s.debug("/debug/health") == (200, b"{}")
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(IO_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    run = re.search(r"shared state in (\S+?)\"", log.read_text())
    assert run is not None and not os.path.exists(run.group(1))  # removed on stop
