"""Chunked upload through a freshly resumed writer per chunk, against one straight pass.

Run: ``.venv/bin/pytest benchmarks/test_bench_upload.py`` (``make bench`` runs every suite).
``OCISTORE_BENCH_UPLOAD_SIZE`` sets the blob size (default 256MiB; the issue's
figure is 1GiB, best taken with ``benchmarks/upload_ratios.py --size 1GiB``, which
also reports peak RSS per variant), ``OCISTORE_BENCH_UPLOAD_CHUNK`` the chunk
(default 16MiB), ``OCISTORE_BENCH_DIR`` where files go (default: pytest's tmp dir).

Group ``upload``: ``baseline`` is hashlib + write + one fsync (``baseline-fsync-per-chunk``
fsyncs every chunk, as each resumable close must); ``native`` resumes
from hash states (no re-read at commit); ``native-nostate`` and ``pure`` re-read
the upload once at commit. Each round checks the committed digest; the re-read
bytes and peak RSS of the process are kept in ``extra_info``.
"""

from __future__ import annotations

import os
import resource
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ocistore import _core
from upload_ratios import VARIANTS, available, expected_digest, parse_size, run_baseline, run_upload

SIZE = parse_size(os.environ.get("OCISTORE_BENCH_UPLOAD_SIZE", "256MiB"))
CHUNK = parse_size(os.environ.get("OCISTORE_BENCH_UPLOAD_CHUNK", "16MiB"))


@pytest.fixture(scope="module")
def digest() -> str:
    return expected_digest(SIZE, CHUNK)


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    base = os.environ.get("OCISTORE_BENCH_DIR")
    return Path(base) if base else tmp_path


@pytest.mark.parametrize("variant", VARIANTS)
def test_upload(benchmark: Any, variant: str, digest: str, workdir: Path) -> None:
    if not available(variant):
        pytest.skip("native core not built")
    previous = _core.BACKEND
    results: list[dict[str, Any]] = []
    counter = iter(range(1_000_000))

    def target() -> Callable[[], None]:
        # untimed: drop the previous round's files, make a fresh directory
        for old in workdir.glob(f"{variant}-*"):
            shutil.rmtree(old, ignore_errors=True)
        directory = workdir / f"{variant}-{next(counter)}"
        directory.mkdir(parents=True)

        def run() -> None:
            if variant.startswith("baseline"):
                each = variant == "baseline-fsync-per-chunk"
                results.append(run_baseline(str(directory), SIZE, CHUNK, digest, fsync_each=each))
            else:
                core = "pure" if variant == "pure" else "native"
                resumable = variant != "native-nostate"
                results.append(
                    run_upload(str(directory), SIZE, CHUNK, digest, core, resumable=resumable)
                )

        return run

    benchmark.group = f"upload {SIZE >> 20} MiB in {CHUNK >> 20} MiB chunks"
    try:
        benchmark.pedantic(lambda f: f(), setup=lambda: ((target(),), {}), rounds=3, iterations=1)
    finally:
        _core.use(previous)
        for old in workdir.glob(f"{variant}-*"):
            shutil.rmtree(old, ignore_errors=True)
    benchmark.extra_info["reread_bytes"] = results[-1]["reread_bytes"]
    benchmark.extra_info["resumes"] = results[-1]["resumes"]
    benchmark.extra_info["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if variant == "native":
        assert results[-1]["reread_bytes"] == 0
    elif not variant.startswith("baseline"):
        assert results[-1]["reread_bytes"] == SIZE
