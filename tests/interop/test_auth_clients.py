"""Real clients against ``ocistore serve`` with ``auth:`` and read-only mode.

- htpasswd: skopeo copies with ``--creds`` both ways; a wrong password and
  ``skopeo login`` with it fail; no credentials at all fail.
- token: a token service started here (:class:`auth_support.TokenServer`,
  signing with a test key) hands skopeo and oras tokens for the scopes they
  ask for; a user without push is refused a push.
- read-only mode switched on and off by editing the config and sending
  SIGHUP to a real ``ocistore serve`` (one worker and several).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from auth_support import ISSUER, SERVICE, TokenIssuer, TokenServer, basic, write_htpasswd
from conftest import core_env
from ocistore import _core
from redis_peer import free_port

from . import _oci
from ._http import request
from ._peers import SKOPEO, Server, ocistore_argv
from .conftest import need
from .test_s3_redirect import need_module

pytestmark = pytest.mark.one_core


class AuthServer(Server):
    """``ocistore serve`` whose readiness is any answer to GET /v2/ (401 with auth on)."""

    def ready(self) -> bool:
        return request("GET", self.url + "/v2/", timeout=2).status in (200, 401)


def _config(root: Path, port: int, extra: str) -> str:
    return (
        "version: 0.1\n"
        "log: {level: info}\n"
        "storage:\n"
        f"  filesystem: {{rootdirectory: {root}}}\n"
        "  delete: {enabled: true}\n"
        "  cache: {blobdescriptor: inmemory}\n"
        f"http: {{addr: 127.0.0.1:{port}, secret: auth-interop-secret}}\n" + extra
    )


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[Callable[..., AuthServer]]:
    """Factory: ``ocistore serve`` with a config ending in ``extra`` (nothing the core changes)."""
    core = _core.BACKEND
    started: list[AuthServer] = []

    def start(extra: str, *, workers: int = 1) -> AuthServer:
        port = free_port()
        config = tmp_path / f"config-{port}.yml"
        config.write_text(_config(tmp_path / "root", port, extra))
        argv = [*ocistore_argv(), "serve", "--config", str(config), "--workers", str(workers)]
        server = AuthServer(
            name=f"ocistore[{core}]",
            argv=argv,
            port=port,
            log_path=tmp_path / f"ocistore-{port}.log",
            env=core_env(core),
        )
        server.config = config  # type: ignore[attr-defined]
        server.start()
        started.append(server)
        return server

    yield start
    for s in started:
        s.stop()


def _skopeo(*args: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which(SKOPEO)
    assert binary is not None
    return subprocess.run(
        [binary, "--insecure-policy", *args], capture_output=True, text=True, timeout=120
    )


def _layout(tmp_path: Path, seed: str) -> tuple[Path, _oci.Image]:
    image = _oci.make_image(random.Random(seed))
    layout = _oci.Layout(tmp_path / f"layout-{seed}")
    layout.tag("v1", image)
    return layout.root, image


def _pulled_digest(layout: Path) -> str:
    """The digest skopeo recorded for tag v1 in the OCI layout it pulled into."""
    index = json.loads((layout / "index.json").read_bytes())
    (desc,) = [d for d in index["manifests"] if d["annotations"][_oci.REF_NAME] == "v1"]
    return str(desc["digest"])


# --- htpasswd ------------------------------------------------------------------------------------


def test_skopeo_with_htpasswd_credentials(
    start_server: Callable[..., AuthServer], tmp_path: Path
) -> None:
    need(SKOPEO)
    htpasswd = write_htpasswd(tmp_path / "htpasswd", {"alice": "wonderland"})
    server = start_server(f"auth:\n  htpasswd: {{realm: ocistore, path: {htpasswd}}}\n")
    host = server.url.removeprefix("http://")
    src, image = _layout(tmp_path, "htpasswd")
    dest = f"docker://{host}/team/app:v1"

    anonymous = _skopeo("copy", "--dest-tls-verify=false", f"oci:{src}:v1", dest)
    assert anonymous.returncode != 0
    assert "authentication required" in anonymous.stderr or "unauthorized" in anonymous.stderr
    wrong = _skopeo(
        "copy", "--dest-tls-verify=false", "--dest-creds", "alice:nope", f"oci:{src}:v1", dest
    )
    assert wrong.returncode != 0
    login = _skopeo(
        "login",
        "--tls-verify=false",
        "--authfile",
        str(tmp_path / "auth.json"),
        "-u",
        "alice",
        "-p",
        "nope",
        host,
    )
    assert login.returncode != 0
    assert (
        not (tmp_path / "auth.json").exists() or "alice" not in (tmp_path / "auth.json").read_text()
    )
    login = _skopeo(
        "login",
        "--tls-verify=false",
        "--authfile",
        str(tmp_path / "auth.json"),
        "-u",
        "alice",
        "-p",
        "wonderland",
        host,
    )
    assert login.returncode == 0, login.stderr
    assert host in json.loads((tmp_path / "auth.json").read_text())["auths"]

    done = _skopeo(
        "copy",
        "--preserve-digests",
        "--dest-tls-verify=false",
        "--dest-creds",
        "alice:wonderland",
        f"oci:{src}:v1",
        dest,
    )
    assert done.returncode == 0, done.stderr
    out = tmp_path / "pulled"
    done = _skopeo(
        "copy",
        "--preserve-digests",
        "--src-tls-verify=false",
        "--src-creds",
        "alice:wonderland",
        dest,
        f"oci:{out}:v1",
    )
    assert done.returncode == 0, done.stderr
    assert _pulled_digest(out) == image.digest
    r = request("GET", f"{server.url}/v2/team/app/tags/list")
    assert r.status == 401
    assert r.header("WWW-Authenticate") == 'Basic realm="ocistore"'
    r = request(
        "GET",
        f"{server.url}/v2/team/app/tags/list",
        headers={"Authorization": basic("alice", "wonderland")},
    )
    assert r.status == 200


# --- token ----------------------------------------------------------------------------------------


@pytest.fixture
def token_service(tmp_path: Path) -> Iterator[tuple[TokenServer, Path]]:
    issuer = TokenIssuer("ES256")
    bundle = issuer.write_bundle(tmp_path / "token-root.pem")
    users = {
        "writer": ("w-pass", {"repository:*": ["pull", "push"]}),
        "reader": ("r-pass", {"repository:*": ["pull"]}),
    }
    with TokenServer(issuer, users) as service:
        yield service, bundle


def _token_section(service: TokenServer, bundle: Path) -> str:
    return (
        "auth:\n  token:\n"
        f"    realm: {service.realm}\n    service: {SERVICE}\n    issuer: {ISSUER}\n"
        f"    rootcertbundle: {bundle}\n"
    )


def test_skopeo_gets_tokens_from_the_token_service(
    start_server: Callable[..., AuthServer],
    token_service: tuple[TokenServer, Path],
    tmp_path: Path,
) -> None:
    need(SKOPEO)
    service, bundle = token_service
    server = start_server(_token_section(service, bundle))
    host = server.url.removeprefix("http://")
    src, image = _layout(tmp_path, "token")
    dest = f"docker://{host}/team/app:v1"

    r = request("GET", f"{server.url}/v2/team/app/tags/list")
    assert r.status == 401
    assert r.header("WWW-Authenticate") == (
        f'Bearer realm="{service.realm}",service="{SERVICE}",scope="repository:team/app:pull"'
    )
    refused = _skopeo(
        "copy", "--dest-tls-verify=false", "--dest-creds", "reader:r-pass", f"oci:{src}:v1", dest
    )
    assert refused.returncode != 0
    done = _skopeo(
        "copy",
        "--preserve-digests",
        "--dest-tls-verify=false",
        "--dest-creds",
        "writer:w-pass",
        f"oci:{src}:v1",
        dest,
    )
    assert done.returncode == 0, done.stderr + server.log()
    assert any(
        user == "writer" and "repository:team/app:pull,push" in scopes
        for user, scopes in service.issued
    )
    out = tmp_path / "pulled"
    done = _skopeo(
        "copy", "--src-tls-verify=false", "--src-creds", "reader:r-pass", dest, f"oci:{out}:v1"
    )
    assert done.returncode == 0, done.stderr
    assert _pulled_digest(out) == image.digest


def test_oras_gets_tokens_from_the_token_service(
    start_server: Callable[..., AuthServer],
    token_service: tuple[TokenServer, Path],
    tmp_path: Path,
) -> None:
    oras_client = need_module("oras.client")
    service, bundle = token_service
    server = start_server(_token_section(service, bundle))
    host = server.url.removeprefix("http://")
    work = tmp_path / "work"
    work.mkdir()
    (work / "note.txt").write_bytes(b"pushed with a token\n")
    client: Any = oras_client.OrasClient(hostname=host, insecure=True)
    client.login(
        username="writer",
        password="w-pass",
        hostname=host,
        tls_verify=False,
        config_path=str(tmp_path / "writer.json"),
    )
    cwd = os.getcwd()
    os.chdir(work)  # oras names layers after the paths it was given
    try:
        pushed = client.push(target=f"{host}/oras/art:v1", files=["note.txt"])
    finally:
        os.chdir(cwd)
    assert pushed.status_code == 201
    reader: Any = oras_client.OrasClient(hostname=host, insecure=True)
    reader.login(
        username="reader",
        password="r-pass",
        hostname=host,
        tls_verify=False,
        config_path=str(tmp_path / "reader.json"),
    )
    pulled = reader.pull(target=f"{host}/oras/art:v1", outdir=str(tmp_path / "out"))
    assert [Path(p).read_bytes() for p in pulled] == [b"pushed with a token\n"]
    assert {user for user, _ in service.issued} >= {"writer", "reader"}


# --- read-only mode and SIGHUP ------------------------------------------------------------------


def _push_blob(url: str, data: bytes) -> int:
    digest = _oci.sha256(data)
    return request("POST", f"{url}/v2/ro/app/blobs/uploads/?digest={digest}", body=data).status


def _wait_for(predicate: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)  # polling with a deadline: the workers apply SIGHUP asynchronously


@pytest.mark.parametrize("workers", [1, 2])
def test_readonly_switched_by_sighup(start_server: Callable[..., AuthServer], workers: int) -> None:
    server = start_server("", workers=workers)
    assert server.proc is not None
    config: Path = server.config  # type: ignore[attr-defined]
    text = config.read_text()
    assert _push_blob(server.url, b"writable") == 201

    config.write_text(
        text.replace(
            "  delete: {enabled: true}\n",
            "  delete: {enabled: true}\n  maintenance: {readonly: {enabled: true}}\n",
        )
    )
    server.proc.send_signal(signal.SIGHUP)
    # Every worker must refuse: new connections land on any of them.
    _wait_for(
        lambda: all(_push_blob(server.url, b"refused?") == 405 for _ in range(4 * workers)),
        "read-only mode",
    )
    r = request("POST", f"{server.url}/v2/ro/app/blobs/uploads/")
    assert r.status == 405
    assert r.json()["errors"][0]["code"] == "UNSUPPORTED"
    digest = _oci.sha256(b"writable")
    assert request("GET", f"{server.url}/v2/ro/app/blobs/{digest}").body == b"writable"

    config.write_text(text)
    server.proc.send_signal(signal.SIGHUP)
    _wait_for(
        lambda: all(_push_blob(server.url, b"again") == 201 for _ in range(4 * workers)),
        "writes again",
    )
    assert server.proc.poll() is None
    assert "SIGHUP: configuration reloaded" in server.log()


def test_a_broken_config_on_sighup_keeps_the_running_one(
    start_server: Callable[..., AuthServer],
) -> None:
    server = start_server("")
    assert server.proc is not None
    config: Path = server.config  # type: ignore[attr-defined]
    config.write_text(config.read_text() + "storage: {maintenance: {readonly: {enabled: maybe}}}\n")
    server.proc.send_signal(signal.SIGHUP)
    _wait_for(lambda: "configuration not reloaded" in server.log(), "the reload error")
    assert _push_blob(server.url, b"still writable") == 201
    assert server.proc.poll() is None
