"""Repository names and tags as distribution's reference package accepts them."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ocistore.errors import NameInvalid, TagInvalid
from ocistore.reference import validate_name, validate_tag

VALID_NAMES = [
    "a",
    "library/alpine",
    "foo/bar/baz",
    "a.b",
    "a_b",
    "a__b",
    "a-b",
    "a---b",
    "0",
    "foo-bar/a",
    "registry.example.com/team/app",
    "localhost:5000/foo",
    "Example.COM/app",
    "my-host:443/a/b",
    "a" * 255,
]

INVALID_NAMES = [
    ("", "empty"),
    ("..", "relative path element"),
    ("a/..", "relative path element"),
    ("/a", "is empty"),
    ("a/", "is empty"),
    ("a//b", "is empty"),
    ("_uploads", "must start and end"),
    ("a/_layers", "must start and end"),
    ("a/_manifests/x", "must start and end"),
    ("a\x00b", "NUL"),
    ("A", "upper case"),
    ("foo/Bar", "upper case"),
    ("a" * 256, "more than the 255"),
    ("ａｌｐｉｎｅ", "non-ASCII"),
    ("alpine\u0131", "non-ASCII"),
    ("a___b", "does not match"),
    ("a..b", "does not match"),
    ("-a", "must start and end"),
    ("a-", "must start and end"),
    ("a.-b", "does not match"),
    ("localhost:5000", "does not match"),
    ("host:port/a", "does not match"),
    ("a b", "does not match"),
    ("a\nb", "does not match"),
]


@pytest.mark.parametrize("name", VALID_NAMES)
def test_valid_names(name: str) -> None:
    assert validate_name(name) == name


@pytest.mark.parametrize(("name", "reason"), INVALID_NAMES)
def test_invalid_names_name_the_part(name: str, reason: str) -> None:
    with pytest.raises(NameInvalid) as info:
        validate_name(name)
    assert info.value.name == name
    assert reason in info.value.reason


def test_non_string_name() -> None:
    with pytest.raises(NameInvalid, match="expected a string"):
        validate_name(None)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "tag", ["latest", "v1.0.0", "_x", "A-b_c.d", "0", "a" * 128, "sha256-" + "a" * 64]
)
def test_valid_tags(tag: str) -> None:
    assert validate_tag(tag) == tag


@pytest.mark.parametrize(
    ("tag", "reason"),
    [
        ("", "empty"),
        (".a", "must not start"),
        ("-a", "must not start"),
        ("a" * 129, "more than the 128"),
        ("a/b", "only [A-Za-z0-9_.-]"),
        ("a:b", "only"),
        ("ａ", "only"),
        ("a\x00", "only"),
        ("..", "must not start"),
    ],
)
def test_invalid_tags(tag: str, reason: str) -> None:
    with pytest.raises(TagInvalid) as info:
        validate_tag(tag)
    assert info.value.tag == tag
    assert reason in info.value.reason


# distribution's regular expression, transcribed as a second opinion for the property test
_ALNUM = r"[a-z0-9]+"
_SEP = r"(?:[._]|__|[-]*)"
_COMP = rf"{_ALNUM}(?:{_SEP}{_ALNUM})*"
_DCOMP = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"{_DCOMP}(?:\.{_DCOMP})*(?::[0-9]+)?"
_NAME = re.compile(rf"(?:{_DOMAIN}/)?{_COMP}(?:/{_COMP})*")

_name_alphabet = st.sampled_from([*"abAB09._-/:", "\x00", "ａ", ".."])


@given(st.lists(_name_alphabet, max_size=24).map("".join))
def test_names_match_distribution_regexp(name: str) -> None:
    expected = (
        bool(name) and len(name) <= 255 and _NAME.fullmatch(name) is not None and name.isascii()
    )
    try:
        validate_name(name)
    except NameInvalid:
        assert not expected
    else:
        assert expected
        # an accepted name can never escape or collide with reserved directories
        parts = name.split("/")
        assert all(p and p not in (".", "..") and not p.startswith("_") for p in parts)


@pytest.mark.one_core
def test_names_match_distribution_regexp_exhaustively() -> None:
    """Every name of up to 6 characters over the grammar's interesting alphabet."""
    import itertools

    for n in range(1, 7):
        for chars in itertools.product("a0._-/A:", repeat=n):
            name = "".join(chars)
            expected = _NAME.fullmatch(name) is not None
            try:
                validate_name(name)
            except NameInvalid:
                assert not expected, name
            else:
                assert expected, name


@pytest.mark.parametrize(
    "name",
    ["a" * 254 + "!", "a-" * 120 + "!", ("a" * 30 + "-") * 8 + "A", "x/" + "ab" * 100 + "_"],
)
def test_long_invalid_names_are_refused_at_once(name: str) -> None:
    """Refused in one pass: the grammar's empty separator once made this exponential.

    (``'a' * 30 + '!'`` took minutes; fuzz_reference found it.)
    """
    with pytest.raises(NameInvalid):
        validate_name(name)
