"""Run every coverage-guided fuzz target of tests/fuzz/ for a bounded number of inputs.

Each target (an atheris script) runs in a child process on the native core,
first over its corpus in ``tests/fuzz/corpus/<target>/`` (kept in the
repository: seeds, and every input that once crashed, as regressions), then
on ``RUNS`` inputs the fuzzer derives from it with a fixed seed. New corpus
entries go to a temporary directory, never into the repository. A crash, a
failed property or a timeout fails the test with the fuzzer's report.

Longer runs, by hand (they grow the corpus given first)::

    .venv/bin/python tests/fuzz/fuzz_manifest.py -max_total_time=600 tests/fuzz/corpus/manifest
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from conftest import core_env

FUZZ = Path(__file__).parent / "fuzz"
RUNS = {
    "hashstate": 10_000,
    "digest": 10_000,
    "reference": 5_000,
    "manifest": 2_000,
    "ranges": 10_000,
    "config": 200,
}
"""Inputs per target after its corpus: a few seconds each on an idle machine."""

pytestmark = pytest.mark.one_core


@pytest.mark.parametrize("target", sorted(RUNS))
def test_fuzz_target(target: str, tmp_path: Path) -> None:
    corpus = FUZZ / "corpus" / target
    assert any(corpus.iterdir()), f"{corpus} has no seed"
    new = tmp_path / "new"
    new.mkdir()
    argv = [
        sys.executable,
        str(FUZZ / f"fuzz_{target}.py"),
        f"-runs={RUNS[target]}",
        "-seed=13",
        "-timeout=20",
        "-rss_limit_mb=1024",
        f"-artifact_prefix={tmp_path}/",
        str(new),
        str(corpus),
    ]
    done = subprocess.run(
        argv, capture_output=True, text=True, env=core_env("native"), timeout=300, check=False
    )
    crashes = sorted(p.name for p in tmp_path.iterdir() if p.name != "new")
    assert done.returncode == 0 and not crashes, (
        f"fuzz_{target} failed ({done.returncode}), inputs kept: {crashes}\n{done.stderr[-6000:]}"
    )
    assert "Done" in done.stderr, done.stderr[-3000:]
