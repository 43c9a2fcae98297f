"""The allocator settings a worker applies (``ocistore.server.memory``)."""

from __future__ import annotations

import platform
import sys
from typing import Any

import pytest

from ocistore.server import memory, run
from ocistore.server.config import ServerConfig
from ocistore.server.h1 import H1Settings

pytestmark = pytest.mark.one_core


def test_tune_allocator_is_idempotent() -> None:
    first = memory.tune_allocator()
    assert memory.tune_allocator() == first
    if sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc":
        assert first is True


def test_settings_leave_room_for_a_body_chunk() -> None:
    # The chunks granian delivers stay below the mmap threshold: they come from the heap.
    assert memory.MMAP_THRESHOLD > run.HTTP1_BUFFER
    assert memory.TRIM_THRESHOLD > memory.MMAP_THRESHOLD


def test_worker_app_applies_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []

    class Cfg:
        log_level = "error"
        log_formatter = "text"
        log_fields = ""

    def build(cfg: Any) -> Any:
        calls.append("build")
        return cfg

    def tune() -> bool:
        calls.append("tune")
        return True

    monkeypatch.setattr(run, "tune_allocator", tune)
    monkeypatch.setattr(run, "build_app", build)
    # Not the process's real logging: an ERROR root level would outlive this test.
    monkeypatch.setattr(run, "_configure_logging", lambda cfg: calls.append("logging"))
    monkeypatch.setattr(ServerConfig, "from_env", staticmethod(lambda raw: Cfg()))
    monkeypatch.setattr(run, "h1_settings", lambda cfg: H1Settings(send_timeout=7.0))
    monkeypatch.setenv(run.ENV_CONFIG, "{}")
    app = run.worker_app()
    assert calls == ["logging", "tune", "build"]
    assert app.send_timeout == 7.0  # granian has no send timeout: the app bounds its sends
