"""ocistore.digest on both cores: grammar, supported algorithms, errors with value and reason."""

from __future__ import annotations

import hashlib

import blake3
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ocistore import _core
from ocistore.digest import Digest, as_digest, digester
from ocistore.errors import BlobDigestUnsupported, DigestInvalid

SHA256_ABC = "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
HEX64 = "a" * 64


@pytest.mark.parametrize(
    "value",
    [SHA256_ABC, "sha512:" + "0" * 128, "blake3:" + "f" * 64],
)
def test_valid_digests_round_trip(value: str) -> None:
    d = Digest(value)
    assert str(d) == value
    assert d == value
    assert Digest.parse(d) is d
    assert Digest.from_parts(d.algorithm, d.encoded) == d
    assert d.hex == d.encoded
    assert repr(d).startswith("Digest(")


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("", "empty digest"),
        ("sha256", "missing ':'"),
        (":" + HEX64, "empty algorithm"),
        ("sha256:", "empty encoded part"),
        ("sha256:" + "A" * 64, "lowercase hex"),
        ("sha256:" + "a" * 63, "needs 64 hex characters, got 63"),
        ("sha256:" + "a" * 65, "needs 64 hex characters, got 65"),
        ("sha512:" + "a" * 64, "needs 128 hex characters"),
        ("Sha256:" + HEX64, "does not match"),
        ("sha256+:" + HEX64, "does not match"),
        ("+sha256:" + HEX64, "does not match"),
        ("sha256:" + "g" * 64, "lowercase hex"),
        ("sha256:" + "a" * 63 + "/", "outside [a-zA-Z0-9=_-]"),
        ("sha256:" + "a" * 63 + "\x00", "outside"),
        ("sha256 :" + HEX64, "does not match"),
        ("sha256:" + "ａ" * 64, "outside"),
    ],
)
def test_invalid_digests_carry_value_and_reason(value: str, reason: str) -> None:
    with pytest.raises(DigestInvalid) as info:
        Digest(value)
    assert info.value.value == value
    assert reason in info.value.reason
    assert reason in str(info.value)


@pytest.mark.parametrize(
    "value",
    [
        "md5:abc",
        "sha384:" + "a" * 96,
        "multihash+base58:QmRZxt2b1FVZPNqd8hsiykDL3TdBDeTSPX9Kv46HmX4Gx8",
        "sha256+b64u:LCa0a2j_xo_5m0U8HTBBNBNCLXBkg7-g-YpeiGJm564",
    ],
)
def test_unsupported_algorithms(value: str) -> None:
    with pytest.raises(BlobDigestUnsupported) as info:
        Digest(value)
    assert info.value.value == value
    assert info.value.algorithm == value.split(":")[0]


def test_non_string_is_invalid() -> None:
    with pytest.raises(DigestInvalid, match="expected a string"):
        _core.parse_digest(b"sha256:" + HEX64.encode())  # type: ignore[arg-type]


def test_from_bytes_matches_reference_hashes() -> None:
    data = b"hello, registry"
    assert Digest.from_bytes(data) == "sha256:" + hashlib.sha256(data).hexdigest()
    assert Digest.from_bytes(data, "sha512") == "sha512:" + hashlib.sha512(data).hexdigest()
    assert (
        Digest.from_bytes(memoryview(data), "blake3") == "blake3:" + blake3.blake3(data).hexdigest()
    )
    with pytest.raises(BlobDigestUnsupported):
        Digest.from_bytes(data, "md5")


def test_digester_factory() -> None:
    for alg in ("sha256", "sha512", "blake3"):
        h = digester(alg)
        h.update(b"abc")
        assert Digest.from_parts(alg, h.hexdigest()) == Digest.from_bytes(b"abc", alg)
    with pytest.raises(BlobDigestUnsupported):
        digester("sha1")


def test_as_digest_accepts_both_forms() -> None:
    d = as_digest(SHA256_ABC)
    assert isinstance(d, Digest)
    assert as_digest(d) is d
    with pytest.raises(DigestInvalid):
        as_digest("nope")


_alg = st.from_regex(r"[a-z0-9]{1,8}([+._-][a-z0-9]{1,4}){0,2}", fullmatch=True)
_enc = st.from_regex(r"[a-zA-Z0-9=_-]{1,130}", fullmatch=True)


@given(st.text(max_size=140))
def test_any_text_parses_or_raises_documented_error(text: str) -> None:
    try:
        alg, enc = _core.parse_digest(text)
    except (DigestInvalid, BlobDigestUnsupported) as exc:
        assert exc.value == text
    else:
        assert f"{alg}:{enc}" == text


@given(_alg, _enc)
def test_both_cores_agree(alg: str, enc: str) -> None:
    value = f"{alg}:{enc}"
    results = []
    for name in ("pure", "native"):
        try:
            impl = _core.load(name)
        except ImportError:
            continue
        try:
            results.append(("ok", impl.parse_digest(value)))
        except (DigestInvalid, BlobDigestUnsupported) as exc:
            results.append((type(exc).__name__, str(exc)))
    assert all(r == results[0] for r in results)


@given(st.binary(max_size=64))
def test_digest_of_bytes_round_trips(data: bytes) -> None:
    d = Digest.from_bytes(data)
    assert Digest(str(d)) == d
    assert d.encoded == hashlib.sha256(data).hexdigest()
