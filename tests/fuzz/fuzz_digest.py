#!/usr/bin/env python3
"""Fuzz the digest parser: the native and pure twins must agree, in the same words.

Digests come from URLs, query strings, manifests and link files. For every
string both parsers return the same ``(algorithm, encoded)`` or raise the same
error class with the same message; ``Digest`` on the active core agrees, and
an accepted digest prints as it was given.

Run by ``tests/test_fuzz.py`` for a fixed number of inputs over
``tests/fuzz/corpus/digest/``; by hand for longer::

    .venv/bin/python tests/fuzz/fuzz_digest.py -max_total_time=60 tests/fuzz/corpus/digest
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports(include=["ocistore._core_py.digest", "ocistore.digest"]):
    from ocistore._core_py import digest as pure
    from ocistore._native import _digest as native
    from ocistore.digest import Digest
    from ocistore.errors import DigestError

_ALGORITHMS = ["sha256", "sha512", "blake3", "md5", "sha256+b64", "", "SHA256"]


def _verdict(parse: object, value: str) -> tuple[str, object]:
    try:
        return "ok", parse(value)  # type: ignore[operator]
    except DigestError as exc:
        return type(exc).__name__, str(exc)


def _value(fdp: atheris.FuzzedDataProvider) -> str:
    if fdp.ConsumeBool():
        return fdp.ConsumeUnicodeNoSurrogates(fdp.ConsumeIntInRange(0, 200))
    algorithm = _ALGORITHMS[fdp.ConsumeIntInRange(0, len(_ALGORITHMS) - 1)]
    sep = ":" if fdp.ConsumeIntInRange(0, 7) else fdp.ConsumeUnicodeNoSurrogates(1)
    if fdp.ConsumeBool():
        encoded = fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 70)).hex()
    else:
        encoded = fdp.ConsumeUnicodeNoSurrogates(fdp.ConsumeIntInRange(0, 130))
    return algorithm + sep + encoded


def test_one_input(data: bytes) -> None:
    value = _value(atheris.FuzzedDataProvider(data))
    got = _verdict(native.parse_digest, value)
    want = _verdict(pure.parse_digest, value)
    if got != want:
        raise AssertionError(f"native {got!r} != pure {want!r} for {value!r}")
    try:
        d = Digest(value)
    except DigestError as exc:
        if want[0] == "ok" or str(exc) != want[1]:
            raise AssertionError(
                f"Digest({value!r}) raised {exc!r}, parser said {want!r}"
            ) from None
        return
    if want[0] != "ok" or str(d) != value or (d.algorithm, d.encoded) != want[1]:
        raise AssertionError(f"Digest({value!r}) = {d!r}, parser said {want!r}")


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
