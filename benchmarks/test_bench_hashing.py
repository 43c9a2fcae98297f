"""Hashing throughput and state round trips, implementations compared by name.

Run: ``.venv/bin/pytest benchmarks/test_bench_hashing.py`` (``make bench`` runs every
suite); add ``--benchmark-group-by=group`` (the default) to read one table per
size, and ``--benchmark-timer=time.thread_time`` on a shared machine (CPU time of the
hashing thread, without other processes' slices). For medians of interleaved runs and the ratios the targets are stated
in, use ``benchmarks/hashing_ratios.py``.

Rows (each checks the digest it produced against hashlib's):

- ``native``: ``ocistore._native.Sha256`` on the block function the CPU
  offers (SHA-NI, ARMv8 crypto), ``native-portable``: the same on portable C;
- ``hashlib``: OpenSSL through ``hashlib.sha256`` (cannot export its state);
- ``pure``: the pure core's hasher (hashlib plus a Python wrapper);
- ``resumablesha256``: the PyPI package of that name (portable C, pickle state).

Groups: ``sha256-<size>`` and ``sha512-<size>`` for 64 KiB, 1 MiB and 16 MiB
buffers (a fresh hasher, one update, the digest); ``state-roundtrip``
(marshal + unmarshal of a sha256 state, target <= 1 us).
"""

from __future__ import annotations

import hashlib
import pickle
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from ocistore import _core

try:
    import resumablesha256
except ImportError:  # the dev group installs it; the suite still runs without
    resumablesha256 = None

SIZES = {"64KiB": 64 << 10, "1MiB": 1 << 20, "16MiB": 16 << 20}


def _native() -> Any:
    return _core.load("native")


def _hashing_module() -> Any:
    from ocistore._native import _hashing

    return _hashing


def _buffer(size: int) -> bytes:
    return bytes((i * 131 + 11) & 0xFF for i in range(256)) * (size // 256)


@pytest.fixture(scope="module", params=list(SIZES), ids=list(SIZES))
def sized(request: pytest.FixtureRequest) -> tuple[str, bytes]:
    name: str = request.param
    return name, _buffer(SIZES[name])


@pytest.fixture
def portable() -> Iterator[None]:
    h = _hashing_module()
    h._force_portable(True)
    try:
        yield
    finally:
        h._force_portable(False)


def _one_pass(make: Callable[[], Any], data: bytes) -> Callable[[], bytes]:
    def run() -> bytes:
        h = make()
        h.update(data)
        return bytes(h.digest())

    return run


def _throughput(benchmark: Any, size: int) -> None:
    """Record MB/s from the median round (shown with --benchmark-columns or in --benchmark-json)."""
    stats = getattr(benchmark, "stats", None)
    if stats is not None:
        benchmark.extra_info["MB/s"] = round(size / stats.stats.median / 1e6)


def _sha256_makers() -> dict[str, Callable[[], Any]]:
    makers: dict[str, Callable[[], Any]] = {
        "native": lambda: _native().Sha256(),
        "native-portable": lambda: _native().Sha256(),
        "hashlib": hashlib.sha256,
        "pure": lambda: _core.load("pure").Sha256(),
    }
    if resumablesha256 is not None:
        makers["resumablesha256"] = resumablesha256.sha256
    return makers


SHA256_ROWS = list(_sha256_makers())


@pytest.mark.parametrize("impl", SHA256_ROWS)
def test_sha256(
    benchmark: Any, sized: tuple[str, bytes], impl: str, request: pytest.FixtureRequest
) -> None:
    name, data = sized
    if impl == "native-portable":
        request.getfixturevalue("portable")
    benchmark.group = f"sha256-{name}"
    benchmark.extra_info["implementation"] = (
        _hashing_module().implementation() if impl.startswith("native") else impl
    )
    digest = benchmark(_one_pass(_sha256_makers()[impl], data))
    assert digest == hashlib.sha256(data).digest()
    _throughput(benchmark, len(data))


@pytest.mark.parametrize("impl", ["native", "native-portable", "hashlib", "pure"])
def test_sha512(
    benchmark: Any, sized: tuple[str, bytes], impl: str, request: pytest.FixtureRequest
) -> None:
    name, data = sized
    if impl == "native-portable":
        request.getfixturevalue("portable")
    makers: dict[str, Callable[[], Any]] = {
        "native": lambda: _native().Sha512(),
        "native-portable": lambda: _native().Sha512(),
        "hashlib": hashlib.sha512,
        "pure": lambda: _core.load("pure").Sha512(),
    }
    benchmark.group = f"sha512-{name}"
    benchmark.extra_info["implementation"] = (
        _hashing_module().implementation("sha512") if impl.startswith("native") else impl
    )
    digest = benchmark(_one_pass(makers[impl], data))
    assert digest == hashlib.sha512(data).digest()
    _throughput(benchmark, len(data))


def test_state_roundtrip_native(benchmark: Any) -> None:
    """marshal() + restore_hasher(): what a writer pays to close and to resume (target <= 1 us)."""
    native = _native()
    h = native.Sha256()
    h.update(b"x" * 1000)
    state = h.marshal()
    benchmark.group = "state-roundtrip"

    def run() -> Any:
        return native.restore_hasher(h.marshal())

    restored = benchmark(run)
    assert restored.marshal() == state


def test_state_roundtrip_native_sha512(benchmark: Any) -> None:
    native = _native()
    h = native.Sha512()
    h.update(b"x" * 1000)
    state = h.marshal()
    benchmark.group = "state-roundtrip"
    restored = benchmark(lambda: native.restore_hasher(h.marshal()))
    assert restored.marshal() == state


@pytest.mark.skipif(resumablesha256 is None, reason="resumablesha256 not installed")
def test_state_roundtrip_resumablesha256(benchmark: Any) -> None:
    """For scale only: that package's state is a pickle, which ocistore never loads from storage."""
    h = resumablesha256.sha256()
    h.update(b"x" * 1000)
    benchmark.group = "state-roundtrip"
    restored = benchmark(lambda: pickle.loads(pickle.dumps(h)))
    assert restored.digest() == hashlib.sha256(b"x" * 1000).digest()
