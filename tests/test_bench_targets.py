"""`make bench` saves a run and `make bench-compare` sets the current tree beside it.

One tiny benchmark, saved into a temporary storage directory, then compared: the
output must show the saved run and the current one side by side with the
ratio columns. Nothing here reads the timings.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.one_core

TINY = """
def test_tiny_sum(benchmark):
    assert benchmark(sum, range(100)) == 4950
"""


def _make(target: str, tmp_path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            "make",
            "--no-print-directory",
            "-o",
            "build",  # the native core is built already; this tests the bench targets only
            target,
            f"VENV={sys.prefix}",
            f"BENCH={tmp_path / 'bench_tiny.py'}",
            f"BENCH_DIR={tmp_path / 'store'}",
            "BENCH_ARGS=--benchmark-max-time=0.01 --benchmark-min-rounds=3",
            *extra,
        ],
        cwd=ROOT,
        # under `make test`, the outer make's flags and variables must not leak in
        env={k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")},
        capture_output=True,
        text=True,
    )


def test_bench_saves_and_bench_compare_prints_ratios(tmp_path: Path) -> None:
    (tmp_path / "bench_tiny.py").write_text(TINY, encoding="utf-8")

    saved = _make("bench", tmp_path)
    assert saved.returncode == 0, saved.stdout[-4000:] + saved.stderr[-4000:]
    (run,) = (tmp_path / "store").glob("*/0001_*.json")

    compared = _make("bench-compare", tmp_path, "BASELINE=0001")
    assert compared.returncode == 0, compared.stdout[-4000:] + compared.stderr[-4000:]
    out = compared.stdout
    rows = [line for line in out.splitlines() if line.startswith("test_tiny_sum (")]
    assert len(rows) == 2, out[-4000:]
    assert any(row.startswith("test_tiny_sum (NOW)") for row in rows)
    assert any(row.startswith("test_tiny_sum (0001_") for row in rows)
    # every timing column carries its ratio to the better of the two rows
    for row in rows:
        assert len(re.findall(r"\(\d+\.\d+\)", row)) >= 4, row
    # comparing does not save: the baseline stays the only run
    assert [p.name for p in (tmp_path / "store").glob("*/*.json")] == [run.name]
