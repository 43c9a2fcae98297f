"""Hashers of both cores: parity with hashlib, states, chunked writes, threads.

Everything runs on both cores through the ``core`` fixture; what only the
native core can do (export and resume states, choose a block function) is
marked ``native_only``. The Go vectors live in test_hashstate_vectors.py.
"""

from __future__ import annotations

import array
import hashlib
import itertools
import mmap
import os
import pickle
import random
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hashing_support import SHA_PATHS, sha_path, sha_paths
from ocistore import _core
from ocistore.errors import BlobDigestUnsupported, HashStateInvalid, HashStateUnsupported
from ocistore.hashing import ALGORITHMS, hash_states_supported, new_hasher, restore_hasher
from waiting import WAIT_TIMEOUT

SLOW = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])


# --- buffers of every kind -------------------------------------------------------

BufferMaker = Callable[[bytes], Any]


def _as_mmap(data: bytes) -> Any:
    m = mmap.mmap(-1, max(len(data), 1))
    m.write(data)
    return memoryview(m)[: len(data)] if data else b""


def _as_array(data: bytes) -> Any:
    return array.array("B", data)


def _as_wide_array(data: bytes) -> Any:
    """Multi-byte items: hashed as their raw bytes, as hashlib does."""
    if len(data) % 4:
        return array.array("B", data)
    return array.array("I", data)


def _as_view_slice(data: bytes) -> Any:
    return memoryview(b"\xaa" + data + b"\xbb")[1:-1]


BUFFERS: dict[str, BufferMaker] = {
    "bytes": bytes,
    "bytearray": bytearray,
    "memoryview": memoryview,
    "view-slice": _as_view_slice,
    "array": _as_array,
    "wide-array": _as_wide_array,
    "mmap": _as_mmap,
}


# --- the public module ---------------------------------------------------------


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_new_hasher_uses_active_core(core: ModuleType, algorithm: str) -> None:
    h = new_hasher(algorithm)
    assert type(h) is getattr(core, algorithm.capitalize())
    assert h.name == algorithm
    ref = hashlib.new(algorithm)
    assert (h.digest_size, h.block_size) == (ref.digest_size, ref.block_size)


@pytest.mark.parametrize("algorithm", ["md5", "sha1", "blake3", "SHA256", "sha384", ""])
def test_new_hasher_refuses_other_algorithms(algorithm: str) -> None:
    with pytest.raises(BlobDigestUnsupported) as info:
        new_hasher(algorithm)
    assert info.value.algorithm == algorithm


def test_hash_states_supported_follows_core(core: ModuleType) -> None:
    assert hash_states_supported() is (_core.BACKEND == "native")
    assert core.HASH_STATES is hash_states_supported()


# --- parity with hashlib -------------------------------------------------------


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize(
    "data",
    [b"", b"abc", b"a" * 55, b"a" * 56, b"a" * 64, b"a" * 111, b"a" * 112, b"a" * 1_000_003],
    ids=lambda d: str(len(d)),
)
def test_known_answers(algorithm: str, data: bytes) -> None:
    h = new_hasher(algorithm)
    h.update(data)
    assert h.hexdigest() == hashlib.new(algorithm, data).hexdigest()
    assert h.digest() == hashlib.new(algorithm, data).digest()


@SLOW
@given(
    algorithm=st.sampled_from(ALGORITHMS),
    data=st.binary(max_size=3000),
    cuts=st.lists(st.integers(min_value=0, max_value=3000), max_size=8),
    kind=st.sampled_from(sorted(BUFFERS)),
)
def test_random_splits_match_hashlib(
    algorithm: str, data: bytes, cuts: list[int], kind: str
) -> None:
    h = new_hasher(algorithm)
    bounds = sorted({0, len(data), *(c for c in cuts if c <= len(data))})
    for start, end in itertools.pairwise(bounds):
        h.update(BUFFERS[kind](data[start:end]))
    assert h.digest() == hashlib.new(algorithm, data).digest()


@SLOW
@given(
    algorithm=st.sampled_from(ALGORITHMS),
    size=st.integers(min_value=0, max_value=300_000),
    seed=st.integers(min_value=0, max_value=2**32 - 1),
    pieces=st.integers(min_value=1, max_value=5),
)
def test_large_random_sizes_match_hashlib(
    algorithm: str, size: int, seed: int, pieces: int
) -> None:
    """Sizes on both sides of the GIL-release threshold and of the block size."""
    data = _noise(size, seed)
    h = new_hasher(algorithm)
    step = max(1, size // pieces)
    for start in range(0, size, step):
        h.update(memoryview(data)[start : start + step])
    assert h.hexdigest() == hashlib.new(algorithm, data).hexdigest()


def _noise(size: int, seed: int) -> bytes:
    return (seed.to_bytes(8, "little") * (size // 8 + 1))[:size] if size else b""


@pytest.mark.native_only
@pytest.mark.parametrize("path", SHA_PATHS)
@SLOW
@given(
    algorithm=st.sampled_from(ALGORITHMS),
    data=st.binary(max_size=70_000),
    cuts=st.lists(st.integers(min_value=0, max_value=70_000), max_size=6),
)
def test_native_pure_and_hashlib_agree(
    path: str, algorithm: str, data: bytes, cuts: list[int]
) -> None:
    native, pure = _core.load("native"), _core.load("pure")
    cls = algorithm.capitalize()
    with sha_path(path):
        hashers = [getattr(native, cls)(), getattr(pure, cls)(), hashlib.new(algorithm)]
        bounds = sorted({0, len(data), *(c for c in cuts if c <= len(data))})
        for start, end in itertools.pairwise(bounds):
            for h in hashers:
                h.update(data[start:end])
        assert len({h.digest() for h in hashers}) == 1


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_constructor_takes_initial_data(core: ModuleType, algorithm: str) -> None:
    cls = getattr(core, algorithm.capitalize())
    assert cls(b"abc").digest() == hashlib.new(algorithm, b"abc").digest()
    assert cls(bytearray(b"abc")).digest() == hashlib.new(algorithm, b"abc").digest()
    assert cls().digest() == hashlib.new(algorithm).digest()


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_digest_does_not_end_hashing(algorithm: str) -> None:
    h = new_hasher(algorithm)
    h.update(b"hello ")
    first = h.digest()
    assert h.digest() == first
    h.update(b"world")
    assert h.digest() == hashlib.new(algorithm, b"hello world").digest()


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_copy_is_independent(algorithm: str) -> None:
    h = new_hasher(algorithm)
    h.update(b"x" * 100)
    c = h.copy()
    assert type(c) is type(h)
    c.update(b"copy")
    h.update(b"orig")
    assert c.digest() == hashlib.new(algorithm, b"x" * 100 + b"copy").digest()
    assert h.digest() == hashlib.new(algorithm, b"x" * 100 + b"orig").digest()


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_refuses_text_and_scattered_buffers(algorithm: str) -> None:
    h = new_hasher(algorithm)
    with pytest.raises(TypeError):
        h.update("text")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        h.update(12)
    with pytest.raises(BufferError):
        h.update(memoryview(b"abcdef")[::2])
    assert h.digest() == hashlib.new(algorithm).digest()


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_hashers_do_not_pickle(algorithm: str) -> None:
    """States come back from storage as Go bytes, never as pickles (DESIGN.md §7.7)."""
    with pytest.raises(TypeError):
        pickle.dumps(new_hasher(algorithm))


# --- states ------------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_pure_core_cannot_export_states(algorithm: str) -> None:
    pure = _core.load("pure")
    h = getattr(pure, algorithm.capitalize())(b"abc")
    with pytest.raises(HashStateUnsupported):
        h.marshal()


@pytest.mark.native_only
@pytest.mark.parametrize("path", SHA_PATHS)
@SLOW
@given(
    algorithm=st.sampled_from(ALGORITHMS),
    data=st.binary(max_size=2000),
    cut=st.integers(min_value=0, max_value=2000),
)
def test_marshal_round_trip(path: str, algorithm: str, data: bytes, cut: int) -> None:
    cut = min(cut, len(data))
    with sha_path(path):
        h = new_hasher(algorithm)
        h.update(data[:cut])
        state = h.marshal()
        assert len(state) == (108 if algorithm == "sha256" else 204)
        r = restore_hasher(bytearray(state))
        assert type(r) is type(h)
        assert r.marshal() == state
        r.update(data[cut:])
        assert r.digest() == hashlib.new(algorithm, data).digest()
        # the class method restores the same way, and only its own algorithm
        cls = type(h)
        assert cls.unmarshal(state).marshal() == state  # type: ignore[attr-defined]


@pytest.mark.native_only
def test_unmarshal_refuses_the_other_algorithm() -> None:
    native = _core.load("native")
    state256 = native.Sha256(b"abc").marshal()
    with pytest.raises(HashStateInvalid, match="expected a sha512 state, got a sha256 state"):
        native.Sha512.unmarshal(state256)


def _valid_state(algorithm: str, n: int) -> bytes:
    """A well-formed state without needing the native core: Go's layout, built by hand."""
    if algorithm == "sha256":
        magic, words, block = b"sha\x03", 32, 64
    else:
        magic, words, block = b"sha\x07", 64, 128
    tail = n % block
    return (
        magic
        + bytes(range(1, words + 1))
        + b"\x5a" * tail
        + b"\0" * (block - tail)
        + n.to_bytes(8, "big")
    )


def _malformed() -> dict[str, tuple[Any, str]]:
    good = _valid_state("sha256", 70)  # six bytes buffered
    good512 = _valid_state("sha512", 130)  # two bytes buffered
    return {
        "empty": (b"", "unknown magic b''"),
        "short-magic": (b"sh", "unknown magic b'sh'"),
        "other-magic": (b"sha\x02" + good[4:], "unknown magic b'sha\\x02'"),
        "sha224": (b"sha\x02" + good[4:], "expected sha256 or sha512"),
        "magic-only": (b"sha\x03", "sha256 state must be 108 bytes, got 4"),
        "truncated": (good[:-1], "sha256 state must be 108 bytes, got 107"),
        "extended": (good + b"\0", "sha256 state must be 108 bytes, got 109"),
        "512-as-256-size": (b"sha\x07" + good[4:], "sha512 state must be 204 bytes, got 108"),
        "count-2**61": (good[:-8] + (1 << 61).to_bytes(8, "big"), "out of range"),
        "count-max": (good[:-8] + b"\xff" * 8, "byte count 18446744073709551615"),
        "padding": (good[:-9] + b"\x01" + good[-8:], "data past its 6 buffered bytes (count 70)"),
        "padding-512": (
            good512[:-9] + b"\x01" + good512[-8:],
            "sha512 state has data past its 2 buffered bytes (count 130)",
        ),
        "count-moved": (
            good[:-8] + (64).to_bytes(8, "big"),
            "data past its 0 buffered bytes (count 64)",
        ),
        "not-a-buffer": (12345, "expected bytes, got int"),
        "text": ("sha\x03" + "\0" * 104, "expected bytes, got str"),
        "none": (None, "expected bytes, got NoneType"),
    }


MALFORMED = _malformed()


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_states_are_refused(name: str) -> None:
    state, reason = MALFORMED[name]
    with pytest.raises(HashStateInvalid) as info:
        restore_hasher(state)
    assert reason in info.value.reason


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("n", [0, 1, 63, 64, 65, 127, 128, 129, (1 << 61) - 1])
def test_well_formed_states(core: ModuleType, algorithm: str, n: int) -> None:
    """Valid to both parsers: the native core resumes it, the pure core says it cannot."""
    state = _valid_state(algorithm, n)
    if core.HASH_STATES:
        h = restore_hasher(state)
        assert h.name == algorithm
        assert h.marshal() == state
    else:
        with pytest.raises(HashStateUnsupported, match=algorithm):
            restore_hasher(state)


def test_scattered_state_buffers_are_read(core: ModuleType) -> None:
    """A non-contiguous buffer is taken for its bytes on both cores, like bytes(memoryview(x))."""
    state = _valid_state("sha256", 3)
    spread = memoryview(bytes(b for x in state for b in (x, 0)))[::2]
    if core.HASH_STATES:
        assert restore_hasher(spread).marshal() == state
    else:
        with pytest.raises(HashStateUnsupported):
            restore_hasher(spread)


def _outcome(restore: Callable[[Any], Any], state: Any) -> str:
    """What a core did with a state: 'valid:<alg>' or 'invalid:<reason>'."""
    try:
        h = restore(state)
    except HashStateUnsupported as exc:
        return "valid:" + exc.reason.rsplit(" ", 2)[-2]
    except HashStateInvalid as exc:
        return "invalid:" + exc.reason
    return "valid:" + h.name


@st.composite
def _mutated_states(draw: st.DrawFn) -> bytes:
    """A well-formed state with one thing broken (or, by chance, still fine)."""
    algorithm = draw(st.sampled_from(ALGORITHMS))
    raw = bytearray(_valid_state(algorithm, draw(st.integers(min_value=0, max_value=1000))))
    op = draw(st.sampled_from(["flip", "truncate", "extend", "count", "magic"]))
    if op == "flip":
        i = draw(st.integers(min_value=0, max_value=len(raw) - 1))
        raw[i] ^= draw(st.integers(min_value=1, max_value=255))
    elif op == "truncate":
        del raw[draw(st.integers(min_value=0, max_value=len(raw) - 1)) :]
    elif op == "extend":
        raw += draw(st.binary(min_size=1, max_size=20))
    elif op == "count":
        raw[-8:] = draw(st.integers(min_value=0, max_value=2**64 - 1)).to_bytes(8, "big")
    else:
        raw[3] = draw(st.integers(min_value=0, max_value=255))
    return bytes(raw)


# random bytes, and random bytes behind a real magic so the later checks are reached
RANDOM_STATES = st.one_of(
    st.binary(max_size=260),
    st.binary(max_size=210).map(lambda b: b"sha\x03" + b),
    st.binary(max_size=210).map(lambda b: b"sha\x07" + b),
    st.binary(min_size=104, max_size=104).map(lambda b: b"sha\x03" + b),
    st.binary(min_size=200, max_size=200).map(lambda b: b"sha\x07" + b),
)


@SLOW
@given(state=RANDOM_STATES)
def test_parser_fuzz_random_bytes(state: bytes) -> None:
    """Random bytes never crash a parser: a hasher, HashStateUnsupported or HashStateInvalid."""
    outcome = _outcome(restore_hasher, state)
    assert outcome.startswith(("valid:", "invalid:"))


@SLOW
@given(state=_mutated_states())
def test_parser_fuzz_mutated_states(state: bytes) -> None:
    pure = _core.load("pure")
    outcome = _outcome(restore_hasher, state)
    # every core reaches the pure parser's verdict, worded the same way
    assert outcome == _outcome(pure.restore_hasher, state)
    if outcome.startswith("valid:") and _core.BACKEND == "native":
        assert restore_hasher(state).marshal() == state


@pytest.mark.native_only
@SLOW
@given(state=st.one_of(RANDOM_STATES, _mutated_states()))
def test_native_and_pure_parsers_agree_on_random_bytes(state: bytes) -> None:
    native, pure = _core.load("native"), _core.load("pure")
    assert _outcome(native.restore_hasher, state) == _outcome(pure.restore_hasher, state)


# --- threads -----------------------------------------------------------------------


BIG = 256 << 20


@pytest.fixture(scope="module")
def big_buffer() -> bytearray:
    return bytearray(BIG)


def _lets_others_run_during(work: Callable[[], object]) -> bool:
    """Whether this thread gets to run Python code while another thread is inside ``work()``.

    With a switch interval far longer than the test, CPython never takes the GIL
    from the thread holding it: this thread gets it back only when the holder
    lets it go. A worker repeats ``work()``, and nothing else in its loop lets the
    GIL go, until this thread runs again (or a deadline passes: then ``work()``
    never let it go). Neither machine speed nor load can change the answer.
    """
    inside, finished, stop = [False], [False], [False]

    def worker() -> None:
        deadline = time.monotonic() + WAIT_TIMEOUT
        while not stop[0] and time.monotonic() < deadline:
            inside[0] = True
            work()
            inside[0] = False
        finished[0] = True

    old = sys.getswitchinterval()
    sys.setswitchinterval(100 * WAIT_TIMEOUT)
    t = threading.Thread(target=worker)
    try:
        t.start()  # returns once this thread holds the GIL again
        ran_inside = inside[0] and not finished[0]
    finally:
        stop[0] = True
        sys.setswitchinterval(old)
    t.join()
    return ran_inside


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_large_update_releases_the_gil(big_buffer: bytearray, algorithm: str) -> None:
    """Another thread runs Python code while a 256 MiB update runs."""
    h = new_hasher(algorithm)
    assert _lets_others_run_during(lambda: h.update(big_buffer))
    h = new_hasher(algorithm)
    h.update(big_buffer)
    assert h.digest() == hashlib.new(algorithm, big_buffer).digest()


def test_concurrent_updates_on_one_hasher_serialize(core: ModuleType) -> None:
    """Two threads feeding one hasher get one order or the other, never a mix."""
    a, b = _noise(3 << 20, 1), _noise(3 << 20, 2)
    h = core.Sha256()
    barrier = threading.Barrier(2)

    def feed(data: bytes) -> None:
        barrier.wait()
        h.update(data)

    threads = [threading.Thread(target=feed, args=(d,)) for d in (a, b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert h.digest() in {hashlib.sha256(a + b).digest(), hashlib.sha256(b + a).digest()}


# --- block functions -----------------------------------------------------------------


def _cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    flags: set[str] = set()
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
            flags.update(line.split(":", 1)[1].split())
    return flags


@pytest.mark.native_only
def test_cpu_extensions_are_used_when_present() -> None:
    from ocistore._native import _hashing

    flags = _cpu_flags()
    if "sha_ni" in flags:
        assert _hashing.accelerated() == "sha-ni"
    elif "sha2" in flags and os.uname().machine == "aarch64":
        assert _hashing.accelerated() == "armv8-crypto"
    if os.environ.get("OCISTORE_PORTABLE_SHA") != "1":
        assert _hashing.implementation() == (_hashing.accelerated() or "portable")


@pytest.mark.native_only
def test_force_portable_switches_and_reports() -> None:
    from ocistore._native import _hashing

    data = _noise(100_000, 3)
    with sha_path("portable") as name:
        assert name == _hashing.implementation() == "portable"
        assert _hashing.implementation("sha512") == "portable"
        portable = (_core.Sha256(data).digest(), _core.Sha512(data).digest())
    with sha_path("accelerated") as name:
        assert name == _hashing.implementation() == (_hashing.accelerated() or "portable")
        fast = (_core.Sha256(data).digest(), _core.Sha512(data).digest())
    assert portable == fast == (hashlib.sha256(data).digest(), hashlib.sha512(data).digest())
    with pytest.raises(ValueError):
        _hashing.implementation("md5")


@pytest.mark.native_only
def test_environment_forces_portable() -> None:
    env = {**os.environ, "OCISTORE_PORTABLE_SHA": "1"}
    code = "from ocistore._native import _hashing as h; print(h.implementation(), h.implementation('sha512'))"
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == ["portable", "portable"]


# SHA-512 block functions, fastest first, and the CPU flags (/proc/cpuinfo, x86-64) each needs.
SHA512_NEEDS: dict[str, set[str]] = {
    "avx512vl": {"avx2", "bmi1", "bmi2", "avx512f", "avx512vl"},
    "avx2": {"avx2", "bmi1", "bmi2"},
    "portable-bmi2": {"bmi1", "bmi2"},
    "portable": set(),
}


@pytest.mark.native_only
def test_sha512_block_functions_follow_the_cpu() -> None:
    from ocistore._native import _hashing

    names = _hashing.implementations("sha512")
    assert names[-1] == "portable"
    assert list(names) == [n for n in SHA512_NEEDS if n in names]  # fastest first
    if os.uname().machine == "x86_64":
        flags = _cpu_flags()
        assert set(names) == {n for n, need in SHA512_NEEDS.items() if need <= flags}
    elif os.uname().machine in ("aarch64", "arm64"):
        assert names == ("portable",)
    if os.environ.get("OCISTORE_PORTABLE_SHA") != "1" and not os.environ.get("OCISTORE_SHA512"):
        assert _hashing.implementation("sha512") == names[0]


@pytest.mark.native_only
def test_use_implementation_switches_reports_and_refuses() -> None:
    from ocistore._native import _hashing

    native = _core.load("native")
    data = _noise(300_001, 5)
    want = (hashlib.sha256(data).digest(), hashlib.sha512(data).digest())
    before = {alg: _hashing.implementation(alg) for alg in ALGORITHMS}
    fast = _hashing.accelerated()  # this CPU's, if it has one
    assert _hashing.implementations("sha256") == ((fast,) if fast else ()) + ("portable",)
    try:
        for algorithm in ALGORITHMS:
            for name in _hashing.implementations(algorithm):
                assert _hashing._use_implementation(algorithm, name) == name
                assert _hashing.implementation(algorithm) == name
                assert (native.Sha256(data).digest(), native.Sha512(data).digest()) == want
        last = _hashing.implementation("sha512")
        for algorithm, name in (("sha512", "sha-ni"), ("sha512", "avx1024"), ("sha256", "avx2")):
            with pytest.raises(ValueError, match="not available"):
                _hashing._use_implementation(algorithm, name)
        assert _hashing.implementation("sha512") == last  # a refusal changes nothing
        with pytest.raises(ValueError, match="md5"):
            _hashing.implementations("md5")
        with pytest.raises(ValueError, match="md5"):
            _hashing._use_implementation("md5", "portable")
    finally:
        for algorithm, name in before.items():
            _hashing._use_implementation(algorithm, name)


@pytest.mark.native_only
def test_environment_names_the_sha512_default() -> None:
    """OCISTORE_SHA512 picks SHA-512's default (benchmarks); a name the CPU lacks warns, is ignored."""
    from ocistore._native import _hashing

    code = (
        "import warnings; warnings.simplefilter('always')\n"
        "from ocistore._native import _hashing as h\n"
        "h._force_portable(True); h._force_portable(False)\n"
        "print(h.implementation('sha512'), h.implementation('sha256'))"
    )
    fastest = _hashing.implementations("sha512")[0]
    sha256 = _hashing.implementations("sha256")[0]
    for name in _hashing.implementations("sha512"):
        env = {**os.environ, "OCISTORE_SHA512": name}
        env.pop("OCISTORE_PORTABLE_SHA", None)
        out = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
        )
        assert out.stdout.split() == [name, sha256]  # also after going portable and back
        assert out.stderr == ""
    env = {**os.environ, "OCISTORE_SHA512": "avx1024"}
    env.pop("OCISTORE_PORTABLE_SHA", None)
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == [fastest, sha256]
    assert "RuntimeWarning: OCISTORE_SHA512 ignored" in out.stderr
    assert "'avx1024' is not available" in out.stderr


@pytest.mark.native_only
@pytest.mark.parametrize("path", sha_paths("sha512"))
def test_sha512_every_length_and_alignment(path: str) -> None:
    """Every length up to nine blocks, at unaligned starts, whole and in two updates.

    The vector block functions take blocks in pairs (an odd last block goes
    alone), so odd and even block counts, and the padding block, all matter.
    """
    native = _core.load("native")
    view = memoryview(random.Random(512).randbytes(9 * 128 + 8))
    with sha_path(path):
        for start in (0, 1, 7):
            for n in range(0, 9 * 128 + 2):
                chunk = view[start : start + n]
                want = hashlib.sha512(chunk).digest()
                assert native.Sha512(chunk).digest() == want, (start, n)
                h = native.Sha512()
                h.update(chunk[: n // 3])
                h.update(chunk[n // 3 :])
                assert h.digest() == want, (start, n)


@pytest.mark.native_only
@pytest.mark.parametrize("path", sha_paths("sha512"))
@SLOW
@given(
    size=st.integers(min_value=0, max_value=600_000),
    seed=st.integers(min_value=0, max_value=2**32 - 1),
    start=st.integers(min_value=0, max_value=15),
    cuts=st.lists(st.integers(min_value=0, max_value=600_000), max_size=5),
)
def test_sha512_block_functions_match_hashlib(
    path: str, size: int, seed: int, start: int, cuts: list[int]
) -> None:
    """Each SHA-512 block function against hashlib: random data, sizes, alignments and splits."""
    native = _core.load("native")
    data = memoryview(random.Random(seed).randbytes(start + size))[start:]
    bounds = sorted({0, size, *(c for c in cuts if c <= size)})
    with sha_path(path):
        h = native.Sha512()
        for lo, hi in itertools.pairwise(bounds):
            h.update(data[lo:hi])
        assert h.digest() == hashlib.sha512(data).digest()
