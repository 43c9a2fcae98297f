"""ocistore's HTTP/1.1 server against h11, on generated and on known smuggling streams.

hypothesis builds request byte streams: valid ones, and the shapes request
smuggling is made of (CL.TE and TE.CL, TE.TE obfuscations, duplicate and
signed Content-Lengths, obs-fold, bare CR and LF, chunk extensions and
trailers, bad chunk sizes), split at arbitrary points as a socket would
deliver them. For each, the requests ocistore's server hands to the app
(``h1_wire.serve_bytes``) must be a prefix of those h11 reads: the same
requests with the same bodies, or fewer (stricter), never another framing.

The smuggling corpus (``tests/data/smuggling.json``) pins exact outcomes for
known attacks: which requests reach the app, the status lines written (a
refusal is always answered, never a bare reset) and that the connection ends.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .h1_wire import h11_decisions, serve_bytes

pytestmark = pytest.mark.one_core  # the HTTP server never touches the storage core

CORPUS = Path(__file__).resolve().parents[1] / "data" / "smuggling.json"

FLAWS = ("none", "none", "eol", "chunk-size", "chunk-ext", "trailer", "framing", "framing",
         "framing", "both", "both", "twice", "fold", "no-framing")  # fmt: skip
"""What one generated request gets wrong (at most one thing, so that the others frame)."""

BAD_EOLS = st.sampled_from([b"\n", b"\r", b"\r\r\n", b"\n\r", b"\r\n"])


def eol(draw: st.DrawFn, flaw: str) -> bytes:
    """A line end: CRLF, or with the ``eol`` flaw sometimes a bare LF, a bare CR or doubled."""
    return draw(BAD_EOLS) if flaw == "eol" and draw(st.integers(0, 3)) == 0 else b"\r\n"


def _body_bytes() -> st.SearchStrategy[bytes]:
    return st.binary(min_size=0, max_size=12).map(lambda b: b.replace(b"\r", b"r"))


@st.composite
def chunked_body(draw: st.DrawFn, data: bytes, flaw: str) -> bytes:
    """``data`` as chunks; the flaw may spell a size oddly, add extensions or a trailer."""
    out = b""
    pos = 0
    while pos < len(data):
        n = draw(st.integers(1, len(data) - pos))
        size = b"%x" % n
        if flaw == "chunk-size" and draw(st.booleans()):
            sizes = [b"%X" % n, b"0%x" % n, b"%x " % n, b" %x" % n, b"+%x" % n, b"0x%x" % n,
                     b"%x" % (n + 1), b"%x" % max(n - 1, 0), b"-%x" % n]  # fmt: skip
            size = draw(st.sampled_from(sizes))
        ext = b""
        if flaw == "chunk-ext":
            ext = draw(st.sampled_from([b";a=1", b";a", b';a="q"', b"; a=1", b";\x00", b";a=\x7f"]))
        out += size + ext + eol(draw, flaw) + data[pos : pos + n] + eol(draw, flaw)
        pos += n
    last = b"0"
    if flaw == "chunk-size":
        last = draw(st.sampled_from([b"0", b"00", b"000000", b"0 ", b"+0"]))
    if flaw == "chunk-ext":
        last += draw(st.sampled_from([b"", b";e=1", b";e"]))
    trailer = b""
    if flaw == "trailer":
        trailer = draw(
            st.sampled_from(
                [
                    b"X-T: 1\r\n",
                    b"X-T: 1\n",
                    b"Bad Trailer\r\n",
                    b"Content-Length: 5\r\n",
                    b"X-T:\r\n 1\r\n",
                ]
            )
        )
    return out + last + eol(draw, flaw) + trailer + eol(draw, flaw)


CL_VALUES = ["{n}", "{n1}", "{m1}", "0", "+{n}", "-1", "0{n}", "{n}, {n}", " {n} ", "0x{x}", "",
             "1e1", "{n}\x00"]  # fmt: skip
TE_VALUES = ["chunked", "Chunked", "chunked ", " chunked", "xchunked", "chunked, gzip",
             "gzip, chunked", "identity, chunked", "identity", "chunked,", ", chunked",
             '"chunked"', "chunk", "chunked\x0b", "\tchunked", "chunked;q=1", "CHUNKED"]  # fmt: skip
TE_NAMES = [b"Transfer-Encoding", b"transfer-encoding", b"Transfer-Encoding ", b"Transfer_Encoding",
            b"X-Transfer-Encoding"]  # fmt: skip
CL_NAMES = [b"Content-Length", b"content-length", b"Content-Length ", b"Content_Length"]


@st.composite
def cl_line(draw: st.DrawFn, n: int, crafted: bool) -> bytes:
    if not crafted:
        return b"Content-Length: %d" % n
    value = draw(st.sampled_from(CL_VALUES)).format(n=n, n1=n + 1, m1=max(n - 1, 0), x=f"{n:x}")
    return draw(st.sampled_from(CL_NAMES)) + b": " + value.encode("latin-1")


@st.composite
def te_line(draw: st.DrawFn, crafted: bool) -> bytes:
    if not crafted:
        return b"Transfer-Encoding: chunked"
    value = draw(st.sampled_from(TE_VALUES)).encode("latin-1")
    return draw(st.sampled_from(TE_NAMES)) + b": " + value


@st.composite
def one_request(draw: st.DrawFn, index: int) -> bytes:
    """One request: well framed, or with one flaw: crafted, doubled, conflicting or folded
    framing headers (CL.TE, TE.CL, TE.TE), odd chunk sizes, extensions or trailers, odd
    line ends."""
    flaw = draw(st.sampled_from(FLAWS))
    method = draw(st.sampled_from([b"GET", b"POST", b"PUT", b"PATCH"]))
    version = draw(st.sampled_from([b"HTTP/1.1"] * 6 + [b"HTTP/1.0"]))
    data = draw(_body_bytes())
    chunked = draw(st.booleans())
    body = draw(chunked_body(data, flaw)) if chunked else data
    n = len(body)
    lines: list[bytes] = []
    if flaw == "no-framing":
        pass
    elif flaw == "both":  # CL.TE / TE.CL: both framings, in either order
        pair = [draw(cl_line(draw(st.sampled_from([n, len(data), 0])), draw(st.booleans()))),
                draw(te_line(draw(st.booleans())))]  # fmt: skip
        lines += pair if draw(st.booleans()) else pair[::-1]
    elif flaw == "twice":  # duplicated framing headers, maybe disagreeing
        for _ in range(2):
            lines.append(
                draw(te_line(draw(st.booleans())))
                if chunked
                else draw(cl_line(n, draw(st.booleans())))
            )
    elif flaw == "fold":  # obs-fold: the value on a continuation line
        name, value = (
            (b"Transfer-Encoding", b"chunked") if chunked else (b"Content-Length", b"%d" % n)
        )
        lines.append(name + b":\r\n" + draw(st.sampled_from([b" ", b"\t"])) + value)
    elif chunked:
        lines.append(draw(te_line(flaw == "framing")))
    elif body or method != b"GET" or flaw == "framing":
        lines.append(draw(cl_line(n, flaw == "framing")))
    extras = draw(
        st.lists(st.sampled_from([b"X-A: b", b"Connection: close", b"Accept: */*"]), max_size=2)
    )
    head = [method + b" /r%d " % index + version, b"Host: t", *lines, *extras]
    out = b""
    for line in head:
        out += line + eol(draw, flaw)
    return out + eol(draw, flaw) + body


@st.composite
def streams(draw: st.DrawFn) -> tuple[bytes, list[bytes]]:
    """A stream of one to three requests, and the pieces it arrives in."""
    data = b"".join(draw(one_request(i)) for i in range(draw(st.integers(1, 3))))
    cuts = sorted(draw(st.sets(st.integers(1, max(1, len(data) - 1)), max_size=4)))
    pieces = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
    return data, [p for p in pieces if p]


def check_against_h11(data: bytes, pieces: list[bytes]) -> None:
    ours = serve_bytes(pieces)
    theirs, _ = h11_decisions(data)
    assert ours.requests == theirs[: len(ours.requests)], (
        f"ocistore framed {data!r} as {ours.requests}, h11 as {theirs}"
    )


@settings(
    max_examples=250,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(streams())
def test_framing_agrees_with_h11_or_is_stricter(stream: tuple[bytes, list[bytes]]) -> None:
    check_against_h11(*stream)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.binary(min_size=1, max_size=40), min_size=1, max_size=4))
def test_arbitrary_bytes_never_frame_differently(pieces: list[bytes]) -> None:
    data = b"".join(pieces)
    check_against_h11(
        b"GET /r0 HTTP/1.1\r\nHost: t\r\n\r\n" + data,
        [b"GET /r0 HTTP/1.1\r\n", b"Host: t\r\n\r\n", *pieces],
    )


def test_the_differential_harness_sees_requests() -> None:
    """A control: two pipelined requests with bodies, framed the same by both."""
    data = (
        b"POST /r0 HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc"
        b"PUT /r1 HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n2;x=1\r\nde\r\n0\r\n\r\n"
    )
    want = [("POST", "/r0", b"abc"), ("PUT", "/r1", b"de")]
    assert h11_decisions(data) == (want, False)
    for cut in range(1, len(data)):
        assert serve_bytes([data[:cut], data[cut:]]).requests == want


# -- the smuggling corpus --------------------------------------------------------------------


def _corpus() -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = json.loads(CORPUS.read_text())
    return entries


def _bytes(text: str) -> bytes:
    return text.encode("latin-1")


@pytest.mark.parametrize("entry", _corpus(), ids=lambda e: e["name"])
def test_smuggling_corpus(entry: dict[str, Any]) -> None:
    data = _bytes(entry["stream"])
    want = [(m, t, _bytes(b)) for m, t, b in entry["requests"]]
    for pieces in ([data], [bytes([b]) for b in data]):  # at once, and byte by byte
        got = serve_bytes(pieces)
        assert got.requests == want
        assert got.statuses == entry["statuses"]
        assert got.closed == entry["closed"]
    check_against_h11(data, [data])
