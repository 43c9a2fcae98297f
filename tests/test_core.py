"""The core selector and the contract between the two cores."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

import ocistore
from ocistore import _core


def test_backend_reports_active_core(core: object) -> None:
    assert ocistore.BACKEND == _core.BACKEND
    assert _core.load(ocistore.BACKEND) is core


def test_native_core_loaded_when_required() -> None:
    """Under OCISTORE_REQUIRE_EXTENSIONS=1 (CI) the native core must be the default."""
    if os.environ.get("OCISTORE_REQUIRE_EXTENSIONS") != "1":
        pytest.skip("only meaningful under OCISTORE_REQUIRE_EXTENSIONS=1")
    assert _core.DEFAULT == "native"
    native = _core.load("native")
    for name in native.__all__:
        obj = getattr(native, name)
        module = getattr(obj, "__module__", "") or ""
        if callable(obj):
            assert module.startswith("ocistore._native."), (name, module)


def test_no_extensions_forces_pure() -> None:
    env = {**os.environ, "OCISTORE_NO_EXTENSIONS": "1"}
    env.pop("OCISTORE_REQUIRE_EXTENSIONS", None)
    out = subprocess.run(
        [sys.executable, "-c", "import ocistore; print(ocistore.BACKEND)"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == "pure"


def test_contradicting_switches_fail() -> None:
    env = {**os.environ, "OCISTORE_NO_EXTENSIONS": "1", "OCISTORE_REQUIRE_EXTENSIONS": "1"}
    out = subprocess.run(
        [sys.executable, "-c", "import ocistore"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert out.returncode != 0
    assert "contradict" in out.stderr


def test_unknown_core_name() -> None:
    with pytest.raises(ValueError, match="unknown core"):
        _core.load("fortran")
