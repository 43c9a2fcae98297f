"""What the hashing tests share: the Go hash-state vectors and a way to pick the SHA block function."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Any

VECTORS_NAME = "go-hashstates.json"
# The repository keeps its own copy so a checkout is self-contained; the shared
# one (../shared/vectors beside the repository) is the source it must equal.
REPO_VECTORS = Path(__file__).parent / "data" / VECTORS_NAME
SHARED_VECTORS = Path(__file__).resolve().parents[2] / "shared" / "vectors" / VECTORS_NAME


def _sha512_extra_paths() -> list[str]:
    """``"sha512:<name>"`` for the SHA-512 block functions this CPU runs besides the fastest and the portable one."""
    try:
        from ocistore._native import _hashing
    except ImportError:  # no native core built: its tests are deselected anyway
        return []
    names = _hashing.implementations("sha512")
    return [f"sha512:{n}" for n in names[1:] if n != "portable"]


# The block functions every native test of hashing and states runs through:
# "accelerated" (the fastest for both algorithms), "portable" (portable C for
# both), and each other SHA-512 block function this CPU runs (on a Xeon with
# AVX-512: "sha512:avx2", "sha512:portable-bmi2"), so every one is checked.
SHA_PATHS = ["accelerated", "portable", *_sha512_extra_paths()]


def sha_paths(algorithm: str) -> list[str]:
    """The paths of SHA_PATHS that change how ``algorithm`` is hashed."""
    return [p for p in SHA_PATHS if p.partition(":")[0] in ("accelerated", "portable", algorithm)]


@cache
def load_vectors() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(REPO_VECTORS.read_text())
    return data


def stream(n: int) -> bytes:
    """The first ``n`` bytes of the vectors' data stream (the JSON's ``data_rule``)."""
    return _stream(load_vectors()["total_len"])[:n]


@cache
def _stream(total: int) -> bytes:
    return bytes((i * 131 + (i // 256) * 7 + 11) % 256 for i in range(total))


@contextmanager
def sha_path(path: str) -> Iterator[str]:
    """Run the native hashers on the block functions of ``path`` (one of SHA_PATHS).

    Yields the name of the block function chosen: SHA-256's for "accelerated"
    and "portable", SHA-512's for a "sha512:<name>" path.
    """
    from ocistore._native import _hashing

    if path not in SHA_PATHS:
        raise ValueError(path)
    before = {alg: _hashing.implementation(alg) for alg in ("sha256", "sha512")}
    algorithm, _, name = path.partition(":")
    if name:
        _hashing._force_portable(False)
        chosen = _hashing._use_implementation(algorithm, name)
    else:
        chosen = _hashing._force_portable(path == "portable")
    try:
        yield chosen
    finally:
        for alg, was in before.items():
            _hashing._use_implementation(alg, was)
