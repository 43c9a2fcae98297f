"""Go's own hash states (../shared/vectors/go-hashstates.json), byte for byte.

For each of the 68 vectors: hashing the first ``offset`` bytes of the stream
and marshalling gives Go's state exactly; restoring that state and hashing
the rest gives the digest of the whole stream. The native core runs them
through every block function of their algorithm this CPU has (SHA-256: SHA-NI
or ARMv8, and portable; SHA-512: AVX-512VL, AVX2, BMI2, portable); the pure
core must accept every state as valid and then refuse to resume it.
"""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from hashing_support import (
    REPO_VECTORS,
    SHARED_VECTORS,
    load_vectors,
    sha_path,
    sha_paths,
    stream,
)
from ocistore import _core
from ocistore.errors import HashStateUnsupported
from ocistore.hashing import new_hasher, restore_hasher

VECTORS: list[dict[str, Any]] = load_vectors()["vectors"]
IDS = [f"{v['algorithm']}-{v['offset']}" for v in VECTORS]
# Each vector on each block function of its algorithm.
ON_PATHS = [(v, p) for v in VECTORS for p in sha_paths(v["algorithm"])]
ON_PATHS_IDS = [f"{v['algorithm']}-{v['offset']}-{p}" for v, p in ON_PATHS]


def test_vector_file_is_complete() -> None:
    doc = load_vectors()
    assert len(VECTORS) == 68
    assert {v["algorithm"] for v in VECTORS} == {"sha256", "sha512"}
    assert doc["total_len"] == max(v["offset"] for v in VECTORS)
    assert "(i*131 + (i//256)*7 + 11) mod 256" in doc["data_rule"]


def test_repo_copy_matches_shared_vectors() -> None:
    """tests/data keeps a copy so the repository stands alone; it must not drift from shared/."""
    if SHARED_VECTORS.exists():
        assert REPO_VECTORS.read_bytes() == SHARED_VECTORS.read_bytes()
    else:  # a checkout on its own: the copy is all there is
        assert REPO_VECTORS.stat().st_size > 0


def test_stream_follows_the_data_rule() -> None:
    data = stream(600)
    assert data[:4] == bytes([11, 142, 17, 148])
    assert data[256] == (256 * 131 + 7 + 11) % 256
    assert hashlib.sha256(stream(0)).hexdigest() == VECTORS[0]["digest_of_prefix"].split(":")[1]


@pytest.mark.parametrize("vector", VECTORS, ids=IDS)
def test_prefix_digest_on_active_core(vector: dict[str, Any]) -> None:
    h = new_hasher(vector["algorithm"])
    h.update(stream(vector["offset"]))
    assert f"{vector['algorithm']}:{h.hexdigest()}" == vector["digest_of_prefix"]


@pytest.mark.parametrize("vector", VECTORS, ids=IDS)
def test_pure_core_validates_then_refuses(vector: dict[str, Any]) -> None:
    """Go's states are all valid to the pure parser, which then says it cannot resume."""
    state = bytes.fromhex(vector["state_hex"])
    pure = _core.load("pure")
    with pytest.raises(HashStateUnsupported, match=vector["algorithm"]):
        pure.restore_hasher(state)


@pytest.mark.native_only
@pytest.mark.parametrize(("vector", "path"), ON_PATHS, ids=ON_PATHS_IDS)
def test_marshal_matches_go(vector: dict[str, Any], path: str) -> None:
    offset = vector["offset"]
    data = stream(offset)
    with sha_path(path):
        h = new_hasher(vector["algorithm"])
        # uneven pieces, so the partial-block buffering is part of what is checked
        for start in range(0, offset, 40_009):
            h.update(memoryview(data)[start : start + 40_009])
        assert h.marshal().hex() == vector["state_hex"]
        assert f"{vector['algorithm']}:{h.hexdigest()}" == vector["digest_of_prefix"]


@pytest.mark.native_only
@pytest.mark.parametrize(("vector", "path"), ON_PATHS, ids=ON_PATHS_IDS)
def test_resume_from_go_state(vector: dict[str, Any], path: str) -> None:
    total = load_vectors()["total_len"]
    whole = stream(total)
    state = bytes.fromhex(vector["state_hex"])
    with sha_path(path):
        h = restore_hasher(state)
        assert h.name == vector["algorithm"]
        assert h.marshal() == state
        assert f"{h.name}:{h.hexdigest()}" == vector["digest_of_prefix"]
        h.update(whole[vector["offset"] :])
        assert h.digest() == hashlib.new(vector["algorithm"], whole).digest()
