#!/usr/bin/env python3
"""Fuzz the hash-state parsers with atheris.

States come from storage, so the native parser must never crash, and it must
reach the pure parser's verdict, in the same words, for every input. Each
input is also used as data: the native hasher, restored or fresh, must agree
with hashlib after hashing it.

Run by ``tests/test_fuzz.py`` for a fixed number of inputs over
``tests/fuzz/corpus/hashstate/``; by hand for longer::

    .venv/bin/python tests/fuzz/fuzz_hashstate.py -max_total_time=60 tests/fuzz/corpus/hashstate

The property tests in tests/test_hashing.py cover the same ground with
hypothesis on every run of the suite. Coverage guidance sees the Python side
only (the Cython module is not built with libFuzzer's instrumentation); the
pure twin's branches, which mirror the native ones, steer it.
"""

from __future__ import annotations

import hashlib
import sys
from typing import Any

import atheris

with atheris.instrument_imports(include=["ocistore._core_py.hashing"]):
    from ocistore._core_py import hashing as pure
    from ocistore._native import _hashing as native
    from ocistore.errors import HashStateInvalid, HashStateUnsupported


def _verdict(restore: Any, state: bytes) -> str:
    try:
        h = restore(state)
    except HashStateUnsupported as exc:
        return "valid:" + exc.reason.rsplit(" ", 2)[-2]
    except HashStateInvalid as exc:
        return "invalid:" + exc.reason
    return "valid:" + str(h.name)


def test_one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    mode = fdp.ConsumeIntInRange(0, 2)
    if mode == 0:  # raw bytes
        state = fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 260))
    else:  # bytes behind a real magic, often of the right length
        magic, size = (b"sha\x03", 108) if mode == 1 else (b"sha\x07", 204)
        body = fdp.ConsumeBytes(size - 4 if fdp.ConsumeBool() else fdp.ConsumeIntInRange(0, 260))
        state = magic + body
    rest = fdp.ConsumeBytes(fdp.remaining_bytes())

    got = _verdict(native.restore_hasher, state)
    want = _verdict(pure.restore_hasher, state)
    if got != want:
        raise AssertionError(f"native {got!r} != pure {want!r} for {state.hex()}")
    if got.startswith("valid:"):
        h = native.restore_hasher(state)
        if h.marshal() != state:
            raise AssertionError(f"round trip changed {state.hex()}")
        c = h.copy()
        c.update(rest)
        if c.marshal()[-8:] != (int.from_bytes(state[-8:], "big") + len(rest)).to_bytes(8, "big"):
            raise AssertionError("byte count not advanced by the data hashed")
    for cls, algorithm in ((native.Sha256, "sha256"), (native.Sha512, "sha512")):
        fresh = cls()
        fresh.update(rest[: len(rest) // 2])
        resumed = native.restore_hasher(fresh.marshal())
        resumed.update(rest[len(rest) // 2 :])
        if resumed.digest() != hashlib.new(algorithm, rest).digest():
            raise AssertionError(f"{algorithm} resume of {len(rest)} bytes diverged from hashlib")


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
