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

# The SHA-256 block functions every native test of states runs through.
SHA_PATHS = ["accelerated", "portable"]


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
    """Run the native hashers on one block function; yields the name of the one in use."""
    from ocistore._native import _hashing

    if path not in SHA_PATHS:
        raise ValueError(path)
    was_portable = _hashing.implementation() == "portable"
    chosen = _hashing._force_portable(path == "portable")
    try:
        yield chosen
    finally:
        _hashing._force_portable(was_portable)
