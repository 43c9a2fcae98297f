"""Request rates of ``ocistore serve`` with auth off, htpasswd and token auth, side by side.

Three servers (one worker each, their own fresh roots) hold the same small
image; each repetition measures, in a rotated order, the HEAD-blob rate
(``ab -k -i -c 32``) and the GET-manifest rate (``wrk -c 32``) of every
server, the authenticated ones with a valid ``Authorization`` header on
every request:

* ``htpasswd``: Basic credentials of a bcrypt entry of cost 10 (a verified
  credential is remembered, so bcrypt runs once per credential);
* ``token``: a Bearer token (ES256, ``x5c`` chain to the root bundle) that
  grants pull (a verified token is remembered until it expires).

Besides the rates (wall clock, at the mercy of whatever else the machine
runs), the server's own CPU time per request is read from /proc before and
after each measurement: its inverse is the request rate one worker can
sustain, and the "capacity ratio" compares those, which a shared machine
disturbs far less than the rates. Every measured request must answer 2xx
(``ab``/``wrk`` report otherwise and the run fails), so a rate is never the
rate of refusals. The issue's target:
auth on >= 0.8 x auth off. Run: ``.venv/bin/python
benchmarks/http/auth_overhead.py [--repeat 5] [--seconds 5]``. Needs ab
(apache2-utils) and wrk.
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import functools
import hashlib
import http.client
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import bcrypt
import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

sys.path.insert(0, str(Path(__file__).parent))
from registry_compare import free_port

REPO = "bench/auth"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
SERVICE = "bench-registry"
ISSUER = "bench-issuer"


@dataclass
class Server:
    name: str
    proc: subprocess.Popen[bytes]
    port: int
    authorization: str

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def htpasswd_auth(work: Path) -> tuple[str, str]:
    """An ``auth.htpasswd`` section (one bcrypt entry of cost 10) and the Basic header it accepts."""
    htpasswd = work / "htpasswd"
    hashed = bcrypt.hashpw(b"bench-password", bcrypt.gensalt(10)).decode()
    htpasswd.write_text(f"bench:{hashed.replace('$2b$', '$2y$', 1)}\n")
    basic = "Basic " + base64.b64encode(b"bench:bench-password").decode()
    return f"auth: {{htpasswd: {{realm: bench, path: {htpasswd}}}}}\n", basic


def _signer(work: Path) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bench token signer")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    bundle = work / "token.pem"
    bundle.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key, cert, bundle


def _token(key: ec.EllipticCurvePrivateKey, cert: x509.Certificate) -> str:
    now = int(time.time())
    claims = {
        "iss": ISSUER,
        "sub": "bench",
        "aud": SERVICE,
        "exp": now + 3600,
        "nbf": now - 1,
        "iat": now,
        "access": [{"type": "repository", "name": REPO, "actions": ["pull", "push"]}],
    }
    x5c = [base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()]
    return jwt.encode(claims, key, algorithm="ES256", headers={"x5c": x5c})


def start(name: str, work: Path, auth: str, authorization: str) -> Server:
    port = free_port()
    root = work / f"root-{name}"
    config = work / f"{name}.yml"
    config.write_text(
        "version: 0.1\nlog: {level: warn}\n"
        f"storage: {{filesystem: {{rootdirectory: {root}}}}}\n"
        f"http: {{addr: 127.0.0.1:{port}, secret: bench}}\n" + auth
    )
    ocistore = Path(sys.executable).with_name("ocistore")
    log = work / f"{name}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(ocistore), "serve", "--config", str(config)], stdout=out, stderr=out
        )
    server = Server(name, proc, port, authorization)
    deadline = time.monotonic() + 30
    while True:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/v2/", headers=_headers(server))
            status = conn.getresponse().status
            conn.close()
            if status == 200:
                return server
        except OSError:
            pass
        if time.monotonic() > deadline or proc.poll() is not None:
            raise RuntimeError(f"{name} did not start:\n{log.read_text()[-2000:]}")
        time.sleep(0.1)


def _headers(server: Server) -> dict[str, str]:
    return {"Authorization": server.authorization} if server.authorization else {}


def push_image(port: int, headers: dict[str, str]) -> tuple[str, str]:
    """A config blob and a manifest naming it; returns the HEAD-blob and GET-manifest URLs."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    config = b'{"bench": "auth"}'
    digest = "sha256:" + hashlib.sha256(config).hexdigest()
    conn.request("POST", f"/v2/{REPO}/blobs/uploads/?digest={digest}", body=config, headers=headers)
    r = conn.getresponse()
    r.read()
    assert r.status == 201, r.status
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": digest,
                "size": len(config),
            },
            "layers": [],
        }
    ).encode()
    typed = {"Content-Type": OCI_MANIFEST, **headers}
    conn.request("PUT", f"/v2/{REPO}/manifests/latest", body=manifest, headers=typed)
    r = conn.getresponse()
    r.read()
    assert r.status == 201, r.status
    conn.close()
    base = f"http://127.0.0.1:{port}/v2/{REPO}"
    return f"{base}/blobs/{digest}", f"{base}/manifests/latest"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--seconds", type=int, default=5, help="wrk duration per measurement")
    parser.add_argument("--requests", type=int, default=20000, help="ab requests per measurement")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ocistore-auth-bench-") as tmp:
        work = Path(tmp)
        key, cert, bundle = _signer(work)
        servers = [
            start("off", work, "", ""),
            start("htpasswd", work, *htpasswd_auth(work)),
            start(
                "token",
                work,
                f"auth: {{token: {{realm: http://127.0.0.1:1/token, service: {SERVICE}, "
                f"issuer: {ISSUER}, rootcertbundle: {bundle}}}}}\n",
                f"Bearer {_token(key, cert)}",
            ),
        ]
        try:
            urls = {s.name: push_image(s.port, _headers(s)) for s in servers}
            rates: dict[tuple[str, str], list[float]] = {}
            cpus: dict[tuple[str, str], list[float]] = {}
            loads = []
            for rep in range(args.repeat):
                loads.append(os.getloadavg()[0])
                order = servers[rep % 3 :] + servers[: rep % 3]
                for s in order:
                    blob, manifest = urls[s.name]
                    for part, run in (
                        ("HEAD blob", functools.partial(_ab, blob, s, args.requests)),
                        ("GET manifest", functools.partial(_wrk, manifest, s, args.seconds)),
                    ):
                        before = _cpu_seconds(s.proc.pid)
                        rate, count = run()
                        cpu = _cpu_seconds(s.proc.pid) - before
                        rates.setdefault((s.name, part), []).append(rate)
                        cpus.setdefault((s.name, part), []).append(cpu / count * 1e6)
            print(f"load average (1 min) during the runs: {min(loads):.1f} .. {max(loads):.1f}")
            print(
                f"{'server':9} {'request':13} {'req/s':>7} {'ratio':>6} {'(min..max)':>13}"
                f" {'CPU us/req':>10} {'capacity ratio':>14}"
            )
            for part in ("HEAD blob", "GET manifest"):
                base_rate = statistics.median(rates[("off", part)])
                base_cpu = statistics.median(cpus[("off", part)])
                for s in servers:
                    r = rates[(s.name, part)]
                    c = statistics.median(cpus[(s.name, part)])
                    print(
                        f"{s.name:9} {part:13} {statistics.median(r):7.0f}"
                        f" {statistics.median(r) / base_rate:6.2f} {_spread(r):>13}"
                        f" {c:10.1f} {base_cpu / c:14.2f}"
                    )
        finally:
            for s in servers:
                s.proc.terminate()
                s.proc.wait(10)


def _spread(values: list[float]) -> str:
    return f"{min(values):.0f}..{max(values):.0f}"


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` (all its threads), from /proc."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _ab(url: str, server: Server, requests: int) -> tuple[float, int]:
    """HEAD rate with ``ab -k -i -c 32`` and the requests made; every response must be 2xx."""
    argv = ["ab", "-k", "-i", "-c", "32", "-n", str(requests), *_auth_args(server), url]
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    rps = re.search(r"Requests per second:\s+([\d.]+)", out)
    failed = re.search(r"Failed requests:\s+(\d+)", out)
    assert rps and failed and failed.group(1) == "0" and "Non-2xx" not in out, out
    return float(rps.group(1)), requests


def _wrk(url: str, server: Server, seconds: int) -> tuple[float, int]:
    """GET rate with ``wrk -c 32`` and the requests made; every response must be 2xx."""
    argv = ["wrk", "-t2", "-c32", f"-d{seconds}s", "-H", f"Accept: {OCI_MANIFEST}"]
    out = subprocess.run(
        [*argv, *_auth_args(server), url], capture_output=True, text=True, check=True
    ).stdout
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    n = re.search(r"(\d+) requests in", out)
    assert m and n and "Non-2xx" not in out, out
    return float(m.group(1)), int(n.group(1))


def _auth_args(server: Server) -> list[str]:
    return ["-H", f"Authorization: {server.authorization}"] if server.authorization else []


if __name__ == "__main__":
    main()
