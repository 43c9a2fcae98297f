"""The example host (``examples/fastapi_host``): its users, basic auth, the mounted registry.

In-process, under the ``/registry`` prefix: refusals, a push whose Location
carries the prefix. Under uvicorn: skopeo pushes with ``--dest-creds`` and
pulls with ``--src-creds`` (starting at ``/v2/``, then following upload
Locations under the prefix, as uvicorn's access log shows), and a wrong
password or a pull-only user is refused. A missing skopeo fails
the test under ``OCISTORE_REQUIRE_PEERS=1`` (CI) and skips it elsewhere.
"""

from __future__ import annotations

import base64
import random
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

import ocistore
from conftest import core_env, require_peers
from interop._oci import Layout, make_image
from interop._peers import free_port

from .asgi_client import Client
from .conftest import sha256
from .helpers import path_of

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "fastapi_host"
sys.path.insert(0, str(EXAMPLE))
import host  # noqa: E402  (the example is a script directory, not a package)

USERS = "alice:wonderland:push,bob:builder:pull"


def _basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def test_example_host_in_process(tmp_path: Path) -> None:
    app = host.make_host(host.parse_users(USERS), str(tmp_path / "data"), "/registry", "s")
    client = Client(app)
    r = client.get("/registry/v2/")
    assert (r.status, r.header("www-authenticate")) == (401, host.REALM)
    assert client.get("/registry/v2/", headers=_basic("alice", "wrong")).status == 401
    assert client.get("/registry/v2/", headers=_basic("alice", "wonderland")).status == 200
    assert client.get("/whoami", headers=_basic("bob", "builder")).json() == {"user": "bob"}
    r = client.post("/registry/v2/a/b/blobs/uploads/", headers=_basic("bob", "builder"))
    assert (r.status, r.error_codes) == (403, ["DENIED"])
    r = client.post("/registry/v2/a/b/blobs/uploads/", headers=_basic("alice", "wonderland"))
    location = r.header("location") or ""
    assert location.startswith("http://registry.test/registry/v2/a/b/blobs/uploads/")
    r = client.put(
        path_of(location) + f"&digest={sha256(b'data')}",
        body=b"data",
        headers=_basic("alice", "wonderland"),
    )
    assert r.header("location") == f"http://registry.test/registry/v2/a/b/blobs/{sha256(b'data')}"
    r = client.get(f"/registry/v2/a/b/blobs/{sha256(b'data')}", headers=_basic("bob", "builder"))
    assert r.body == b"data"


def _skopeo(*args: str) -> subprocess.CompletedProcess[str]:
    argv = ["skopeo", "--insecure-policy", *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)


def _serve(tmp_path: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env: dict[str, Any] = core_env(ocistore.BACKEND)
    env.update(EXAMPLE_ROOT=str(tmp_path / "data"), EXAMPLE_PREFIX="/registry", EXAMPLE_USERS=USERS)
    log = (tmp_path / "host.log").open("wb")
    argv = [sys.executable, "-m", "uvicorn", "host:app", "--host", "127.0.0.1", "--port", str(port)]
    proc = subprocess.Popen(argv, cwd=EXAMPLE, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/whoami"
    deadline = time.monotonic() + 60
    while True:  # polling with a deadline (and the process's exit) for it to answer
        assert proc.poll() is None, (tmp_path / "host.log").read_text()
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return proc, f"127.0.0.1:{port}"
        except (OSError, urllib.error.URLError):
            pass
        assert time.monotonic() < deadline, (tmp_path / "host.log").read_text()
        time.sleep(0.05)


@pytest.mark.peer
def test_example_host_with_skopeo(tmp_path: Path) -> None:
    if shutil.which("skopeo") is None:
        if require_peers():
            pytest.fail("skopeo is required (OCISTORE_REQUIRE_PEERS=1) but not installed")
        pytest.skip("skopeo not installed")
    image = make_image(random.Random(17), layers=2, layer_size=50_000)
    src = Layout(tmp_path / "src")
    src.tag("v1", image)
    out = Layout(tmp_path / "out")
    proc, addr = _serve(tmp_path)
    try:
        copy = ["copy", "--preserve-digests", "--dest-tls-verify=false"]
        target = f"docker://{addr}/team/app:v1"
        wrong = _skopeo(*copy, "--dest-creds", "alice:nope", f"oci:{src.root}:v1", target)
        assert wrong.returncode != 0 and "unauthorized" in wrong.stderr.lower(), wrong.stderr
        reader = _skopeo(*copy, "--dest-creds", "bob:builder", f"oci:{src.root}:v1", target)
        assert reader.returncode != 0 and "denied" in reader.stderr.lower(), reader.stderr
        done = _skopeo(*copy, "--dest-creds", "alice:wonderland", f"oci:{src.root}:v1", target)
        assert done.returncode == 0, done.stderr
        pull = ["copy", "--src-tls-verify=false", "--src-creds", "bob:builder"]
        done = _skopeo(*pull, target, f"oci:{out.root}:v1")
        assert done.returncode == 0, done.stderr
        refused = _skopeo(*pull[:2], "--src-creds", "bob:nope", target, f"oci:{out.root}:v2")
        assert refused.returncode != 0 and "unauthorized" in refused.stderr.lower()
    finally:
        proc.terminate()
        proc.wait(30)
    assert out.ref_digest("v1") == image.digest
    log = (tmp_path / "host.log").read_text()
    assert '"PUT /registry/v2/team/app/blobs/uploads/' in log, log  # a Location followed
