"""Real clients against ``ocistore serve``: skopeo, python-dxf, oras and curl.

Each test starts ``ocistore serve`` as a subprocess on a free 127.0.0.1 port
(the harness of the interop tests) on the core the session has active, and
stops it. A missing client program or package fails the test under
``OCISTORE_REQUIRE_PEERS=1`` (CI) and skips it elsewhere.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import random
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

import ocistore
from conftest import require_peers
from interop._oci import Layout, make_image, make_multiarch
from interop._peers import OcistoreServer, pull, push

pytestmark = pytest.mark.peer


def _need_program(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        if require_peers():
            pytest.fail(f"{name} is required (OCISTORE_REQUIRE_PEERS=1) but not installed")
        pytest.skip(f"{name} not installed")
    return path


def _need_module(name: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except ImportError:
        if require_peers():
            pytest.fail(f"python package {name} is required (OCISTORE_REQUIRE_PEERS=1)")
        pytest.skip(f"python package {name} not installed")


def _serve(tmp_path: Path, *extra: str) -> Iterator[OcistoreServer]:
    server = OcistoreServer(
        tmp_path / "root", tmp_path, core=ocistore.BACKEND, extra=["--delete-enabled", *extra]
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[OcistoreServer]:
    yield from _serve(tmp_path)


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def test_skopeo_round_trip_multiarch_two_workers(tmp_path: Path) -> None:
    """skopeo pushes an index over two images and a single image, and pulls both back intact."""
    _need_program("skopeo")
    rng = random.Random(5)
    src = Layout(tmp_path / "src")
    index = make_multiarch(rng, layers=3, layer_size=300_000)
    single = make_image(rng, layers=4, layer_size=50_000)
    src.tag("multi", index)
    src.tag("single", single)
    for server in _serve(tmp_path, "--workers", "2"):
        push(src.root, "multi", server.url, "skopeo/app", "v1")
        push(src.root, "single", server.url, "skopeo/app", "single")
        out = Layout(tmp_path / "out")
        pull(server.url, "skopeo/app", "v1", out.root, "multi")
        pull(server.url, "skopeo/app", "single", out.root, "single")
        pull(server.url, "skopeo/app", index.digest, out.root, "bydigest")
    assert out.ref_digest("multi") == index.digest
    assert out.ref_digest("bydigest") == index.digest
    assert out.read_ref("multi") == index.index
    assert out.ref_digest("single") == single.digest
    assert src.blob_digests() == out.blob_digests()
    for dgst in src.blob_digests():
        assert out.read_blob(dgst) == src.read_blob(dgst)


def test_python_dxf(server: OcistoreServer, tmp_path: Path) -> None:
    dxf = _need_module("dxf")
    host = server.url.removeprefix("http://")
    client = dxf.DXF(host, "dxf/repo", insecure=True)
    blobs = [random.Random(i).randbytes(200_000 + i) for i in range(3)]
    paths = []
    for i, b in enumerate(blobs):
        p = tmp_path / f"blob{i}"
        p.write_bytes(b)
        paths.append(p)
    digests = [client.push_blob(str(p)) for p in paths]
    assert digests == [sha256(b) for b in blobs]
    assert client.push_blob(str(paths[0])) == digests[0]  # exists: skipped by a HEAD
    client.set_alias("latest", *digests)
    client.set_alias("other", digests[0])
    assert client.get_alias("latest") == digests
    assert sorted(client.list_aliases()) == ["latest", "other"]
    for dgst, b in zip(digests, blobs, strict=True):
        assert b"".join(client.pull_blob(dgst)) == b
        assert client.blob_size(dgst) == len(b)
    client.del_alias("other")
    assert sorted(client.list_aliases()) == ["latest"]
    again = dxf.DXF(host, "dxf/copy", insecure=True)
    assert again.mount_blob("dxf/repo", digests[1]) == digests[1]
    assert b"".join(again.pull_blob(digests[1])) == blobs[1]


@pytest.mark.parametrize("chunked", [False, True], ids=["monolithic", "chunked"])
def test_oras(server: OcistoreServer, tmp_path: Path, chunked: bool) -> None:
    _need_module("oras")
    import oras.client

    host = server.url.removeprefix("http://")
    work = tmp_path / "work"
    work.mkdir()
    files = {"small.txt": b"hello oras\n", "big.bin": random.Random(9).randbytes(3_500_000)}
    for name, data in files.items():
        (work / name).write_bytes(data)
    client = oras.client.OrasClient(hostname=host, insecure=True)
    target = f"{host}/oras/art:{'chunked' if chunked else 'mono'}"
    import os

    cwd = os.getcwd()
    os.chdir(work)
    try:
        client.push(target=target, files=list(files), do_chunked=chunked, chunk_size=1 << 20)
    finally:
        os.chdir(cwd)
    out = tmp_path / "out"
    pulled = client.pull(target=target, outdir=str(out))
    assert sorted(Path(p).name for p in pulled) == sorted(files)
    for name, data in files.items():
        assert (out / name).read_bytes() == data
    assert "chunked" in client.get_tags(f"{host}/oras/art") or not chunked
    manifest = client.get_manifest(target)
    assert {layer["digest"] for layer in manifest["layers"]} == {sha256(d) for d in files.values()}


def test_curl_ranges(server: OcistoreServer) -> None:
    curl = _need_program("curl")
    data = random.Random(3).randbytes(1_000_000)
    dgst = sha256(data)
    url = f"{server.url}/v2/curl/repo/blobs/uploads/?digest={dgst}"
    done = subprocess.run(
        [
            curl,
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-X",
            "POST",
            "-H",
            "Content-Type: application/octet-stream",
            "--data-binary",
            "@-",
            url,
        ],
        input=data,
        capture_output=True,
        check=True,
    )
    assert done.stdout == b"201"
    blob = f"{server.url}/v2/curl/repo/blobs/{dgst}"

    def fetch(*args: str) -> tuple[str, bytes]:
        r = subprocess.run(
            [curl, "-sS", "-D", "-", "-o", "-", *args, blob], capture_output=True, check=True
        )
        head, _, body = r.stdout.partition(b"\r\n\r\n")
        return head.decode(), body

    head, body = fetch()
    assert head.startswith("HTTP/1.1 200") and body == data
    head, body = fetch("-r", "1000-1999")
    assert head.startswith("HTTP/1.1 206") and body == data[1000:2000]
    assert f"content-range: bytes 1000-1999/{len(data)}" in head.lower()
    head, body = fetch("-r", "-10")
    assert body == data[-10:]
    head, _ = fetch("-r", f"{len(data)}-")
    assert head.startswith("HTTP/1.1 416")
    head, _ = fetch("-I")
    assert f"content-length: {len(data)}" in head.lower()
    assert f"docker-content-digest: {dgst}" in head.lower()


def test_concurrent_pushes_keep_serving(server: OcistoreServer) -> None:
    """Several clients at once (threads over HTTP): all blobs land, nothing mixes up."""
    import urllib.request

    errors: list[BaseException] = []

    def one(i: int) -> None:
        try:
            data = random.Random(100 + i).randbytes(300_000)
            req = urllib.request.Request(
                f"{server.url}/v2/many/r{i % 3}/blobs/uploads/?digest={sha256(data)}",
                data=data,
                method="POST",
                headers={"Content-Type": "application/octet-stream"},
            )
            with urllib.request.urlopen(req, timeout=60) as r:
                assert r.status == 201
            with urllib.request.urlopen(
                f"{server.url}/v2/many/r{i % 3}/blobs/{sha256(data)}", timeout=60
            ) as r:
                assert r.read() == data
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    with urllib.request.urlopen(f"{server.url}/v2/_catalog", timeout=10) as r:
        assert json.loads(r.read())["repositories"] == ["many/r0", "many/r1", "many/r2"]
