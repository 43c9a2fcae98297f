"""Log lines written from the threads that do a request's blocking work carry its request id."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from ocistore.cache import MemoryDescriptorCache
from ocistore.driver import FilesystemDriver
from ocistore.driver.base import Buffer
from ocistore.server.app import RegistryApp
from ocistore.server.logs import _RequestIdFilter
from ocistore.storage.registry import Registry

from .asgi_client import Client
from .conftest import SECRET, sha256

log = logging.getLogger("ocistore.test.blocking")


class LoggingDriver(FilesystemDriver):
    """A filesystem driver that logs every small-file write and move (blocking storage work)."""

    def put_content(self, path: str, data: Buffer) -> None:
        log.info("put_content %s", path)
        super().put_content(path, data)

    def move(self, source: str, dest: str) -> None:
        log.info("move %s", dest)
        super().move(source, dest)


class Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []
        self.addFilter(_RequestIdFilter())

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def captured() -> Iterator[Capture]:
    handler = Capture()
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        log.removeHandler(handler)


def test_lines_from_blocking_storage_work_carry_the_request_id(
    tmp_path: Path, captured: Capture
) -> None:
    registry = Registry(
        LoggingDriver(str(tmp_path / "data")), cache=MemoryDescriptorCache(), delete_enabled=True
    )
    app = RegistryApp(registry, secret=SECRET, lock_dir=str(tmp_path / "locks"))
    try:
        client = Client(app)
        data = b"a layer logged from the storage threads"
        start = client.post("/v2/logged/blobs/uploads/", headers={"X-Request-Id": "rid-start"})
        assert start.status == 202
        started = list(captured.records)
        captured.records.clear()
        location = start.header("Location")
        assert location is not None
        done = client.put(
            f"{location}&digest={sha256(data)}",
            body=[data[:10], data[10:]],
            headers={"X-Request-Id": "rid-commit"},
        )
        assert done.status == 201
        committed = list(captured.records)
    finally:
        app.executor.shutdown(wait=True)
    loop_thread = threading.main_thread().name
    # Each request wrote from a thread of its own (not the loop's), and every line has its id.
    assert started and {r.threadName for r in started} - {loop_thread}
    assert committed and {r.threadName for r in committed} - {loop_thread}
    assert {getattr(r, "request_id", None) for r in started} == {"rid-start"}
    assert {getattr(r, "request_id", None) for r in committed} == {"rid-commit"}
