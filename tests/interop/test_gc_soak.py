"""Issue 12, parts 1-2: ``ocistore gc`` in a loop beside a two-worker ``ocistore serve``.

Three clients push images with overlapping layers (HEAD first, push what is
missing), pull, tag and delete for a bounded time while ``ocistore gc
--delete-untagged`` runs again and again on the same root. At the end:

- every manifest that got a 201 under a tag and was not deleted pulls
  completely with correct digests, from ocistore and then from the Go registry
  on the same root;
- no client saw an error other than the documented retryable ones (docs/gc.md:
  503, and MANIFEST_BLOB_UNKNOWN for a blob pushed longer than the grace
  period before its manifest, which the client answers by pushing it again);
- a final collection leaves no unreferenced blob and no dangling link.
A second test SIGKILLs collections at several points and checks the same.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from . import _oci
from ._client import Client
from ._http import request
from ._peers import GoRegistry, OcistoreServer, ocistore_argv

pytestmark = [pytest.mark.peer]

SOAK_SECONDS = 8.0
GRACE = "3s"
V2 = Path("docker/registry/v2")
MT = "application/vnd.oci.image.manifest.v1+json"


def gc(root: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    argv = [*ocistore_argv(), "gc", "--root", str(root), "--json", "--delete-untagged", *extra]
    return subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False)


def image(rng: random.Random, pool: list[bytes]) -> tuple[bytes, list[bytes]]:
    layers = [*rng.sample(pool, 2), rng.randbytes(256)]
    config = json.dumps({"architecture": "amd64", "os": "linux", "n": rng.random()}).encode()
    doc = {
        "schemaVersion": 2,
        "mediaType": MT,
        "config": _oci.descriptor("application/vnd.oci.image.config.v1+json", config),
        "layers": [_oci.descriptor("application/vnd.oci.image.layer.v1.tar", b) for b in layers],
    }
    return _oci.canonical_json(doc), [config, *layers]


class Soaker:
    def __init__(self, url: str, seed: int, pool: list[bytes]) -> None:
        self.client = Client(url)
        self.url = url
        self.rng = random.Random(seed)
        self.pool = pool
        self.repo = f"soak/c{seed}"
        self.kept: dict[str, tuple[str, bytes, list[bytes]]] = {}  # tag -> digest, payload, blobs
        self.errors: list[str] = []
        self.retried: dict[str, int] = {"503": 0, "MANIFEST_BLOB_UNKNOWN": 0}

    def push(self, tag: str | None) -> None:
        payload, blobs = image(self.rng, self.pool)
        for _ in range(5):
            for blob in blobs:
                head = request("HEAD", f"{self.url}/v2/{self.repo}/blobs/{_oci.sha256(blob)}")
                if head.status == 200:
                    continue
                resp = self.client.push_blob(self.repo, blob)
                if resp.status == 503:
                    self.retried["503"] += 1
                    continue
                if resp.status != 201:
                    self.errors.append(f"blob push {resp.status} {resp.body[:200]!r}")
                    return
            digest = _oci.sha256(payload)
            resp = self.client.put_manifest(self.repo, tag or digest, payload, MT)
            if resp.status == 201:
                if tag is not None:
                    self.kept[tag] = (digest, payload, blobs)
                return
            codes = resp.error_codes()
            if resp.status == 503 or codes == ["MANIFEST_BLOB_UNKNOWN"]:
                self.retried["503" if resp.status == 503 else codes[0]] += 1
                continue  # documented: push the blobs again
            self.errors.append(f"manifest put {resp.status} {resp.body[:200]!r}")
            return
        self.errors.append("manifest put: 5 retryable failures in a row")

    def pull(self, tag: str) -> None:
        _, payload, blobs = self.kept[tag]
        resp = request("GET", f"{self.url}/v2/{self.repo}/manifests/{tag}", headers={"Accept": MT})
        if resp.status != 200 or resp.body != payload:
            self.errors.append(f"pull {tag}: {resp.status}")
            return
        for blob in blobs:
            got = request("GET", f"{self.url}/v2/{self.repo}/blobs/{_oci.sha256(blob)}")
            if got.status != 200 or got.body != blob:
                self.errors.append(f"pull {tag} blob: {got.status}")

    def run(self, until: float) -> None:
        n = 0
        while time.monotonic() < until and not self.errors:
            n += 1
            op = self.rng.random()
            if op < 0.45 or not self.kept:
                self.push(f"t{n}" if self.rng.random() < 0.7 else None)
            elif op < 0.7:
                self.pull(self.rng.choice(sorted(self.kept)))
            elif op < 0.85:
                tag = self.rng.choice(sorted(self.kept))
                digest, payload, blobs = self.kept[tag]
                resp = self.client.put_manifest(self.repo, f"{tag}x{n}", payload, MT)
                if resp.status == 201:
                    self.kept[f"{tag}x{n}"] = (digest, payload, blobs)
                elif resp.status != 503:
                    self.errors.append(f"tag {resp.status} {resp.body[:200]!r}")
            else:
                tag = self.rng.choice(sorted(self.kept))
                digest = self.kept[tag][0]
                resp = request("DELETE", f"{self.url}/v2/{self.repo}/manifests/{digest}")
                if resp.status not in (202, 404):
                    self.errors.append(f"delete {resp.status}")
                for t in [t for t, v in self.kept.items() if v[0] == digest]:
                    del self.kept[t]


def check_tree(root: Path) -> None:
    """No unreferenced blob, no dangling link."""
    base = root / V2
    blobs = {f"sha256:{p.parent.name}" for p in (base / "blobs/sha256").glob("*/*/data")}
    referenced: set[str] = set()
    for link in (base / "repositories").glob("**/_manifests/revisions/sha256/*/link"):
        digest = link.read_text()
        referenced.add(digest)
        doc = json.loads((base / "blobs/sha256" / digest[7:9] / digest[7:] / "data").read_bytes())
        referenced.add(doc["config"]["digest"])
        referenced.update(layer["digest"] for layer in doc["layers"])
    assert blobs == referenced
    for link in (base / "repositories").glob("**/_layers/sha256/*/link"):
        assert f"sha256:{link.parent.name}" in blobs, link


def pull_all(url: str, soakers: list[Soaker]) -> None:
    for s in soakers:
        s.url = url
        for tag in sorted(s.kept):
            s.pull(tag)
        assert s.errors == [], s.errors


@pytest.fixture
def server(root: Path, start_ocistore: Callable[..., OcistoreServer]) -> OcistoreServer:
    return start_ocistore(root, extra=["--workers", "2"])


def test_gc_loop_beside_serving_workers(
    root: Path, server: OcistoreServer, start_go: Callable[..., GoRegistry]
) -> None:
    rng = random.Random(12)
    pool = [rng.randbytes(512) for _ in range(6)]
    soakers = [Soaker(server.url, seed, pool) for seed in range(3)]
    stop = threading.Event()
    runs: list[subprocess.CompletedProcess[str]] = []

    def collector() -> None:
        while not stop.is_set():
            runs.append(gc(root, "--grace", GRACE, "--settle", "1s"))

    until = time.monotonic() + SOAK_SECONDS
    threads = [threading.Thread(target=s.run, args=(until,)) for s in soakers]
    gc_thread = threading.Thread(target=collector)
    gc_thread.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stop.set()
    gc_thread.join()
    for s in soakers:
        assert s.errors == [], s.errors
    for done in runs:
        assert done.returncode in (0, 3), done.stderr  # 3: the previous run still held the root
    assert any(json.loads(r.stdout)["blobs_swept"] for r in runs if r.returncode == 0)
    final = gc(root, "--grace", "0", "--settle", "1s")
    assert final.returncode == 0, final.stderr
    pull_all(server.url, soakers)
    check_tree(root)
    server.stop()
    go = start_go(root)
    pull_all(go.url, soakers)


def test_sigkill_at_any_point_then_next_run_finishes(
    root: Path, server: OcistoreServer, start_go: Callable[..., GoRegistry]
) -> None:
    rng = random.Random(13)
    pool = [rng.randbytes(512) for _ in range(6)]
    soaker = Soaker(server.url, 7, pool)
    for n in range(12):
        soaker.push(f"k{n}")
    for tag in sorted(soaker.kept)[::2]:  # half become garbage
        digest = soaker.kept[tag][0]
        assert request("DELETE", f"{server.url}/v2/{soaker.repo}/manifests/{digest}").status == 202
        del soaker.kept[tag]
    for delay in (0.05, 0.2, 0.4, 0.8):
        argv = [
            *ocistore_argv(),
            "gc",
            "--root",
            str(root),
            "--grace",
            "0",
            "--settle",
            "0",
            "--delete-untagged",
            "--workers",
            "1",
            "--json",
        ]
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            proc.wait(delay)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        pull_all(server.url, [soaker])
    final = gc(root, "--grace", "0", "--settle", "0")
    assert final.returncode == 0, final.stderr
    check_tree(root)
    pull_all(server.url, [soaker])
    server.stop()
    go = start_go(root)
    pull_all(go.url, [soaker])
