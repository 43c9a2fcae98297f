"""Side by side: native SHA-256/SHA-512 against OpenSSL (hashlib) and resumablesha256.

Throughput on a shared machine drifts with whatever else runs, so this script
never compares runs made minutes apart: each round runs every implementation
once on the same buffer, in a rotating order, and each ratio is taken within
a round; the medians over ``--repeat`` rounds are reported. Times are the
calling thread's CPU time, so other processes' slices do not count. Every
run's digest is checked against hashlib's.

Targets (issue 4): native SHA-256 >= 0.95 x hashlib from 64 KiB to 16 MiB
updates, >= 6 x resumablesha256; marshal + unmarshal <= 1 us.

Usage::

    .venv/bin/python benchmarks/hashing_ratios.py
    .venv/bin/python benchmarks/hashing_ratios.py --repeat 15 --volume 256MiB --json out.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import ssl
import statistics
import sys
import time
import timeit
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ocistore import _core

SIZES = {"64KiB": 64 << 10, "1MiB": 1 << 20, "16MiB": 16 << 20}
_UNITS = {"KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "": 1}


def parse_size(text: str) -> int:
    for unit in ("KiB", "MiB", "GiB", ""):
        if text.endswith(unit) and text[: len(text) - len(unit)].isdigit():
            return int(text[: len(text) - len(unit)]) * _UNITS[unit]
    raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 64MiB)")


def machine() -> dict[str, Any]:
    info: dict[str, Any] = {
        "python": sys.version.split()[0],
        "openssl": ssl.OPENSSL_VERSION,
        "platform": platform.platform(),
    }
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        text = ""
    flags: set[str] = set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name" and "cpu" not in info:
            info["cpu"] = value.strip()
        if key.strip() in ("flags", "Features"):
            flags.update(value.split())
    info["cpus"] = text.count("processor\t:") or None
    wanted = ("sha_ni", "avx2", "avx512f", "bmi2", "ssse3", "sse4_1", "sha2", "sha512")
    info["flags"] = [f for f in wanted if f in flags]
    return info


def hashers(algorithm: str) -> dict[str, Callable[[], Any]]:
    native = _core.load("native")
    pure = _core.load("pure")
    cls = algorithm.capitalize()
    rows: dict[str, Callable[[], Any]] = {
        "native": getattr(native, cls),
        "native-portable": getattr(native, cls),
        "hashlib": lambda: hashlib.new(algorithm),
        "pure": getattr(pure, cls),
    }
    if algorithm == "sha256":
        try:
            import resumablesha256
        except ImportError:
            print("resumablesha256 is not installed: its row is left out", file=sys.stderr)
        else:
            rows["resumablesha256"] = resumablesha256.sha256
    return rows


def time_updates(make: Callable[[], Any], buf: bytes, count: int) -> tuple[float, bytes]:
    """CPU seconds of this thread for ``count`` updates of ``buf`` into one fresh hasher, and its digest.

    Thread CPU time, not wall time: every implementation hashes in the calling
    thread (GIL released or not), and CPU time does not count the slices other
    processes on a shared machine take.
    """
    start = time.thread_time()
    h = make()
    for _ in range(count):
        h.update(buf)
    digest = bytes(h.digest())
    return time.thread_time() - start, digest


def throughput_rounds(
    algorithm: str, size: int, volume: int, repeat: int
) -> dict[str, list[float]]:
    """MB/s per implementation per round, every implementation once per round."""
    from ocistore._native import _hashing

    rows = hashers(algorithm)
    names = list(rows)
    buf = bytes((i * 131 + 11) & 0xFF for i in range(256)) * (size // 256)
    count = max(1, volume // size)
    ref = hashlib.new(algorithm)
    for _ in range(count):
        ref.update(buf)
    expected = ref.digest()
    results: dict[str, list[float]] = {n: [] for n in names}
    for r in range(repeat + 1):  # round 0 warms caches and clocks, not counted
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            _hashing._force_portable(name == "native-portable")
            try:
                seconds, digest = time_updates(rows[name], buf, count)
            finally:
                _hashing._force_portable(False)
            if digest != expected:
                raise AssertionError(f"{name} computed a wrong {algorithm} digest")
            if r:
                results[name].append(size * count / seconds / 1e6)
    return results


def ratio_median(results: dict[str, list[float]], a: str, b: str) -> float | None:
    if a not in results or b not in results:
        return None
    return statistics.median(x / y for x, y in zip(results[a], results[b], strict=True))


def roundtrip_ns(repeat: int) -> dict[str, float]:
    native = _core.load("native")
    out = {}
    for algorithm, cls in (("sha256", native.Sha256), ("sha512", native.Sha512)):
        h = cls(b"x" * 1000)
        state = h.marshal()
        if native.restore_hasher(state).marshal() != state:
            raise AssertionError("round trip changed the state")
        number = 100_000
        runs = timeit.repeat(
            lambda h=h: native.restore_hasher(h.marshal()),
            number=number,
            repeat=repeat,
            timer=time.thread_time,
        )
        out[algorithm] = statistics.median(runs) / number * 1e9
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=9, help="rounds per size (default 9)")
    parser.add_argument(
        "--volume", type=parse_size, default=parse_size("64MiB"), help="bytes hashed per run"
    )
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)

    from ocistore._native import _hashing

    report: dict[str, Any] = {
        "machine": machine(),
        "implementation": {
            "sha256": _hashing.implementation("sha256"),
            "sha512": _hashing.implementation("sha512"),
        },
        "repeat": args.repeat,
        "volume": args.volume,
        "throughput": {},
        "ratios": {},
    }
    m = report["machine"]
    print(f"cpu: {m.get('cpu')} x{m.get('cpus')}  flags: {' '.join(m['flags'])}")
    print(f"python {m['python']}  {m['openssl']}")
    print(
        f"native block functions: sha256={report['implementation']['sha256']}"
        f" sha512={report['implementation']['sha512']}"
    )
    print(f"{args.repeat} interleaved rounds of {args.volume >> 20} MiB per implementation\n")

    header = f"{'case':<14}{'implementation':<18}{'median MB/s':>12}"
    print(header)
    print("-" * len(header))
    for algorithm in ("sha256", "sha512"):
        for label, size in SIZES.items():
            case = f"{algorithm}-{label}"
            results = throughput_rounds(algorithm, size, args.volume, args.repeat)
            report["throughput"][case] = {n: statistics.median(v) for n, v in results.items()}
            for name, values in results.items():
                print(f"{case:<14}{name:<18}{statistics.median(values):>12.0f}")
            ratios = {
                "native/hashlib": ratio_median(results, "native", "hashlib"),
                "native/resumablesha256": ratio_median(results, "native", "resumablesha256"),
                "native-portable/hashlib": ratio_median(results, "native-portable", "hashlib"),
                "pure/hashlib": ratio_median(results, "pure", "hashlib"),
            }
            report["ratios"][case] = {k: v for k, v in ratios.items() if v is not None}
            text = "  ".join(f"{k}={v:.3f}" for k, v in report["ratios"][case].items())
            print(f"{'':<14}ratios: {text}")
    rt = roundtrip_ns(args.repeat)
    report["roundtrip_ns"] = rt
    print(
        "\nmarshal + restore_hasher (median): "
        + "  ".join(f"{alg} {ns:.0f} ns" for alg, ns in rt.items())
    )
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
