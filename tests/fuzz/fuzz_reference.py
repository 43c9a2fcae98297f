#!/usr/bin/env python3
"""Fuzz the repository-name and tag validators and the manifest reference split.

Names and references come from URL paths. Each validator either returns its
input or raises its own error (NameInvalid, TagInvalid, a DigestError) with a
reason; an accepted name or tag has the shape distribution's grammar gives,
so it can never climb out of its directory on disk.

Run by ``tests/test_fuzz.py``; by hand::

    .venv/bin/python tests/fuzz/fuzz_reference.py -max_total_time=60 tests/fuzz/corpus/reference
"""

from __future__ import annotations

import re
import sys

import atheris

with atheris.instrument_imports(
    include=["ocistore.reference", "ocistore.server.manifests", "ocistore.storage.paths"]
):
    from ocistore.errors import DigestError, NameInvalid, TagInvalid
    from ocistore.reference import validate_name, validate_tag
    from ocistore.server.manifests import split_reference
    from ocistore.storage import paths

_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_PIECES = ["/", ".", "..", "-", "_", "__", ":", "a", "Z", "0", "%2f", "\x00", "é", "localhost:5000"]


def _text(fdp: atheris.FuzzedDataProvider) -> str:
    if fdp.ConsumeBool():
        return fdp.ConsumeUnicodeNoSurrogates(fdp.ConsumeIntInRange(0, 300))
    return "".join(
        _PIECES[fdp.ConsumeIntInRange(0, len(_PIECES) - 1)]
        for _ in range(fdp.ConsumeIntInRange(0, 40))
    )


def test_one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    value = _text(fdp)
    try:
        if validate_name(value) is not value:
            raise AssertionError("validate_name returned another string")
    except NameInvalid as exc:
        if not exc.reason:
            raise AssertionError(f"NameInvalid without a reason for {value!r}") from None
    else:
        parts = value.split("/")
        if len(value) > 255 or not value.isascii() or any(p in ("", ".", "..") for p in parts):
            raise AssertionError(f"accepted name {value!r}")
        # Every path built from an accepted name stays inside the repository tree.
        root = paths.path_for(paths.RepositoryRoot(value))
        if not root.endswith("/" + value) or "/../" in root + "/":
            raise AssertionError(f"name {value!r} maps to {root!r}")
    try:
        validate_tag(value)
    except TagInvalid as exc:
        if _TAG.fullmatch(value) is not None:
            raise AssertionError(f"refused tag {value!r}: {exc}") from None
    else:
        if _TAG.fullmatch(value) is None:
            raise AssertionError(f"accepted tag {value!r}")
    try:
        tag, dgst = split_reference(value)
    except (TagInvalid, DigestError):
        return
    if (tag is None) == (dgst is None) or (tag or str(dgst)) != value:
        raise AssertionError(f"split_reference({value!r}) = {(tag, dgst)!r}")


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
