#!/usr/bin/env python3
"""Fuzz the Range (blob GET) and Content-Range (chunk PATCH) parsers of the server.

A Range either yields None (serve it whole), a range inside the blob, or
RangeNotSatisfiable; a Content-Range yields a forward range or ValueError.
Nothing else, whatever the header (headers arrive as latin-1 text).

Run by ``tests/test_fuzz.py``; by hand::

    .venv/bin/python tests/fuzz/fuzz_ranges.py -max_total_time=60 tests/fuzz/corpus/ranges
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports(include=["ocistore.server.ranges"]):
    from ocistore.server.ranges import (
        RangeNotSatisfiable,
        parse_content_range,
        parse_range,
        upload_range,
    )

_PIECES = ["bytes", "=", "-", " ", "\t", ",", "/", "*", "0", "1", "9", "12345678901234567890"]
_PIECES.append("9" * 2200)  # headers may be 8 KiB: numbers past int()'s 4300-digit limit


def _header(fdp: atheris.FuzzedDataProvider) -> str:
    if fdp.ConsumeBool():
        return fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 120)).decode("latin-1")
    return "".join(
        _PIECES[fdp.ConsumeIntInRange(0, len(_PIECES) - 1)]
        for _ in range(fdp.ConsumeIntInRange(0, 16))
    )


def test_one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    size = fdp.ConsumeIntInRange(0, 1 << 40) if fdp.ConsumeBool() else fdp.ConsumeIntInRange(0, 9)
    header = _header(fdp)
    try:
        rng = parse_range(header, size)
    except RangeNotSatisfiable:
        pass
    else:
        if rng is not None and not 0 <= rng.first <= rng.last < size:
            raise AssertionError(f"Range {header!r} on {size} bytes gave {rng}")
        if rng is not None and rng.length != rng.last - rng.first + 1:
            raise AssertionError("length")
    try:
        chunk = parse_content_range(header)
    except ValueError as exc:
        if not str(exc).startswith("Content-Range"):
            raise AssertionError(f"unexplained refusal of {header!r}: {exc}") from None
    else:
        if not 0 <= chunk.first <= chunk.last:
            raise AssertionError(f"Content-Range {header!r} gave {chunk}")
    first, _, last = upload_range(size).partition("-")
    if first != "0" or int(last) != max(size - 1, 0):
        raise AssertionError(f"upload_range({size})")


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
