"""Instructions per request of ``ocistore serve`` with auth or metrics on and off (callgrind).

CPU time per request on a shared machine moves with the neighbours' load;
the instructions a request executes do not. Each variant runs as one
``ocistore serve`` worker under ``valgrind --tool=callgrind`` with
instrumentation off; after a warm-up, instrumentation is switched on
(``callgrind_control -i on``) for ``--requests`` requests sent by
``ab -k -c 32``, then off, and the counters are dumped: user-space
instructions of every thread of the worker, divided by the requests.

Variants: ``off``; ``htpasswd`` (Basic credentials, cached after the first
bcrypt); ``token`` (an ES256 Bearer token with its ``x5c`` chain, cached
after the first verification); ``metrics`` (``http.debug`` with Prometheus
and ``health.storagedriver`` on: the recorder, its flusher thread and the
health gate; the debug monitor is a process of its own, not counted).
Requests: HEAD blob, HEAD manifest, GET manifest. The descriptor cache is
``inmemory`` (LMDB cannot map its file under valgrind): the same in every
variant. Under valgrind the worker runs ~50x slower, so the metrics
flusher (once a second) is counted about 50x more often than at full speed:
its share is overstated.

Run: ``.venv/bin/python benchmarks/http/request_instructions.py [--requests 2000]
[--src OTHER/src]`` (``--src``: serve another checkout's sources, e.g. the
commit before a change, with this one's built extensions copied in). Needs
valgrind and ab. Takes about 30 s per variant and request on an idle machine.
"""

from __future__ import annotations

import argparse
import glob
import http.client
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from auth_overhead import (
    ISSUER,
    OCI_MANIFEST,
    SERVICE,
    _signer,
    _token,
    htpasswd_auth,
    push_image,
)
from registry_compare import free_port

KINDS = ("HEAD blob", "HEAD manifest", "GET manifest")


def _variants(work: Path) -> dict[str, tuple[str, str]]:
    """name -> (config lines, Authorization header)."""
    key, cert, bundle = _signer(work)
    return {
        "off": ("", ""),
        "htpasswd": htpasswd_auth(work),
        "token": (
            f"auth: {{token: {{realm: http://127.0.0.1:1/token, service: {SERVICE}, "
            f"issuer: {ISSUER}, rootcertbundle: {bundle}}}}}\n",
            f"Bearer {_token(key, cert)}",
        ),
        "metrics": (
            f"  debug: {{addr: 127.0.0.1:{free_port()}, prometheus: {{enabled: true}}}}\n"
            "health: {storagedriver: {enabled: true, interval: 10s, threshold: 3}}\n",
            "",
        ),
    }


def _start(
    work: Path, name: str, extra: str, headers: dict[str, str], src: str | None
) -> tuple[subprocess.Popen[bytes], int, str]:
    port = free_port()
    config = work / f"{name}.yml"
    config.write_text(
        "version: 0.1\nlog: {level: warn}\n"
        f"storage: {{filesystem: {{rootdirectory: {work / ('root-' + name)}}}, "
        "cache: {blobdescriptor: inmemory}}\n"
        f"http:\n  addr: 127.0.0.1:{port}\n  secret: bench\n" + extra
    )
    out = str(work / f"cg-{name}")
    env = dict(os.environ)
    if src:
        env["PYTHONPATH"] = src
    ocistore = Path(sys.executable).with_name("ocistore")
    argv = ["valgrind", "--tool=callgrind", "--instr-atstart=no"]
    argv += [f"--callgrind-out-file={out}.%p", str(ocistore), "serve", "--config", str(config)]
    log = (work / f"{name}.log").open("wb")
    proc = subprocess.Popen(argv, stdout=log, stderr=log, env=env)
    deadline = time.monotonic() + 300
    while True:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            conn.request("GET", "/v2/", headers=headers)
            if conn.getresponse().status == 200:
                return proc, port, out
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{name} did not start:\n{(work / f'{name}.log').read_text()}")
        time.sleep(1)


def _push(port: int, headers: dict[str, str]) -> dict[str, tuple[str, bool]]:
    blob, manifest = push_image(port, headers)
    return {
        "HEAD blob": (blob, True),
        "HEAD manifest": (manifest, True),
        "GET manifest": (manifest, False),
    }


def _ab(url: str, head: bool, n: int, authorization: str) -> None:
    argv = ["ab", "-k", "-c", "32", "-n", str(n), "-H", f"Accept: {OCI_MANIFEST}"]
    if head:
        argv.append("-i")
    if authorization:
        argv += ["-H", f"Authorization: {authorization}"]
    out = subprocess.run([*argv, url], capture_output=True, text=True, check=True).stdout
    failed = re.search(r"Failed requests:\s+(\d+)", out)
    assert failed and failed.group(1) == "0" and "Non-2xx" not in out, out


def _control(*args: str) -> None:
    subprocess.run(["callgrind_control", *args], check=True, capture_output=True)


def measure(
    work: Path, name: str, extra: str, authz: str, n: int, src: str | None
) -> dict[str, float]:
    """Instructions per request of each kind, each from a server of its own.

    A fresh server per kind: a credential verified at its start stays
    cached (60 s for htpasswd) through the measurement, however slowly
    valgrind runs, so no bcrypt lands inside the count.
    """
    return {kind: _measure_one(work, name, extra, authz, n, src, kind) for kind in KINDS}


def _measure_one(
    work: Path, name: str, extra: str, authz: str, n: int, src: str | None, kind: str
) -> float:
    headers = {"Authorization": authz} if authz else {}
    tag = f"{name}-{kind.replace(' ', '-')}"
    proc, port, out = _start(work, tag, extra, headers, src)
    pid = str(proc.pid)
    try:
        url, head = _push(port, headers)[kind]
        _ab(url, head, 300, authz)  # warm: caches filled, credentials verified
        _control("-z", pid)
        _control("-i", "on", pid)
        _ab(url, head, n, authz)
        _control("-i", "off", pid)
        before = set(glob.glob(f"{out}.{pid}.*"))
        _control("--dump", pid)
        deadline = time.monotonic() + 60
        while not (new := set(glob.glob(f"{out}.{pid}.*")) - before):
            if time.monotonic() > deadline:
                raise RuntimeError("callgrind wrote no dump")
            time.sleep(0.2)
        (dump,) = new
        while "totals:" not in (text := Path(dump).read_text()):
            time.sleep(0.2)
        m = re.search(r"^totals: (\d+)", text, re.M)
        assert m, dump
        return int(m.group(1)) / n
    finally:
        proc.terminate()
        proc.wait(120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--variants", default="off,htpasswd,token,metrics")
    parser.add_argument("--src", help="serve the ocistore package found in this directory")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ocistore-instr-") as tmp:
        work = Path(tmp)
        variants = _variants(work)
        names = args.variants.split(",")
        results = {
            name: measure(work, name, *variants[name], args.requests, args.src) for name in names
        }
    print(f"instructions per request (callgrind, {args.requests} requests each, ab -k -c 32)")
    print(f"{'variant':9} " + " ".join(f"{k:>22}" for k in KINDS))
    base = results.get("off")
    for name in names:
        cells = []
        for kind in KINDS:
            value = results[name][kind]
            ratio = f" ({base[kind] / value:.3f})" if base else ""
            cells.append(f"{value:>13,.0f}{ratio:>9}")
        print(f"{name:9} " + " ".join(cells))
    if base:
        print(
            "(in brackets: off / variant, the rate ratio if the server were bound by instructions)"
        )


if __name__ == "__main__":
    main()
