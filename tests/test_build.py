"""Packaging: the sdist carries the native sources, `pip install` builds the native core,
and a failed compile falls back to the pure core unless OCISTORE_REQUIRE_EXTENSIONS=1.

These install into throwaway ``--target`` directories, without build isolation
(the build requirements are already in the test environment), so they need
no network.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.one_core


@pytest.fixture(scope="module")
def sdist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("sdist")
    subprocess.run(
        [sys.executable, "setup.py", "-q", "sdist", "--formats=gztar", "-d", str(out)],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    (archive,) = out.glob("ocistore-*.tar.gz")
    return archive


def _pip_install(src: Path, target: Path, **env: str) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, **env}
    full_env.pop("OCISTORE_NO_EXTENSIONS", None)
    if "OCISTORE_REQUIRE_EXTENSIONS" not in env:
        full_env.pop("OCISTORE_REQUIRE_EXTENSIONS", None)
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-v",
            "--no-deps",
            "--no-build-isolation",
            "--no-cache-dir",
            "--target",
            str(target),
            str(src),
        ],
        env=full_env,
        capture_output=True,
        text=True,
    )


def _backend(target: Path) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OCISTORE_")}
    env["PYTHONPATH"] = str(target)
    out = subprocess.run(
        [sys.executable, "-c", "import ocistore; print(ocistore.BACKEND)"],
        env=env,
        cwd=target,
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip()


def test_sdist_carries_native_sources(sdist: Path) -> None:
    with tarfile.open(sdist) as tar:
        names = {Path(n).relative_to(Path(n).parts[0]).as_posix() for n in tar.getnames()}
    pyx = {p.relative_to(ROOT).as_posix() for p in (ROOT / "native").glob("*.pyx")}
    handwritten_c = {
        p.relative_to(ROOT).as_posix()
        for p in (ROOT / "native").glob("*.[ch]")
        if not p.name.startswith("_")
    }
    assert pyx and pyx <= names
    assert handwritten_c <= names
    assert "src/ocistore/py.typed" in names


def test_pip_install_builds_native_core(sdist: Path, tmp_path: Path) -> None:
    result = _pip_install(sdist, tmp_path / "t")
    assert result.returncode == 0, result.stderr[-4000:]
    assert _backend(tmp_path / "t") == "native"


def test_compile_failure_falls_back_to_pure(sdist: Path, tmp_path: Path) -> None:
    result = _pip_install(sdist, tmp_path / "t", CC="false", LDSHARED="false")
    assert result.returncode == 0, result.stderr[-4000:]
    assert "the pure core will be used" in result.stdout + result.stderr
    assert _backend(tmp_path / "t") == "pure"


def test_compile_failure_is_fatal_when_required(sdist: Path, tmp_path: Path) -> None:
    result = _pip_install(
        sdist, tmp_path / "t", CC="false", LDSHARED="false", OCISTORE_REQUIRE_EXTENSIONS="1"
    )
    assert result.returncode != 0
