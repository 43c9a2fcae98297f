"""Proxy mode against a Go registry 2.8.2 that asks for credentials (issue 14).

Once with htpasswd basic auth (a bcrypt file made here with ``htpasswd -B``)
and once behind a token server started here, whose RS256 tokens the Go
registry verifies (``auth.token``). The proxy runs at debug level, and no
password appears in its log or in any answer, even when the upstream refuses it.
"""

from __future__ import annotations

import base64
import random
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from auth_support import TokenIssuer, TokenServer
from ocistore import _core

from . import _client, _http, _oci
from ._client import Client
from ._peers import GO_REGISTRY, GoRegistry, OcistoreServer
from ._proxy import (
    htpasswd_file,
    proxy_yaml,
    with_auth_htpasswd,
    with_auth_token,
    with_proxy,
)
from .conftest import need

# Authentication does not involve the core (test_proxy.py runs the fills on both).
pytestmark = [pytest.mark.peer, pytest.mark.one_core]

USER = "puller"
PASSWORD = "pa55-Word-not-for-logs"
WRONG = "wrong-pa55-not-for-logs"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("proxy-auth")


@pytest.fixture(scope="module")
def basic_upstream(workdir: Path) -> Iterator[GoRegistry]:
    need(GO_REGISTRY)
    need("htpasswd")
    root = workdir / "basic-upstream"
    root.mkdir()
    go = with_auth_htpasswd(
        GoRegistry(root, workdir), htpasswd_file(workdir / "htpasswd", USER, PASSWORD)
    )
    start_authenticated(go)
    yield go
    go.stop()


@pytest.fixture(scope="module")
def tokens(workdir: Path) -> Iterator[TokenServer]:
    users = {USER: (PASSWORD, {"repository:*": ["pull", "push"]})}
    with TokenServer(TokenIssuer("RS256"), users) as server:
        yield server


@pytest.fixture(scope="module")
def token_upstream(workdir: Path, tokens: TokenServer) -> Iterator[GoRegistry]:
    need(GO_REGISTRY)
    root = workdir / "token-upstream"
    root.mkdir()
    bundle = tokens.issuer.write_bundle(workdir / "token-signer.pem")
    go = with_auth_token(GoRegistry(root, workdir), tokens.realm, bundle)
    start_authenticated(go)
    yield go
    go.stop()


@pytest.fixture
def start_proxy(workdir: Path) -> Iterator[Callable[[str, str], OcistoreServer]]:
    started: list[OcistoreServer] = []

    def start(remoteurl: str, password: str) -> OcistoreServer:
        root = workdir / f"proxy-{_core.BACKEND}-{len(list(workdir.iterdir()))}"
        root.mkdir()
        server = OcistoreServer(root, workdir, core=_core.BACKEND, extra=["--log-level", "debug"])
        with_proxy(server, proxy_yaml(remoteurl, username=USER, password=password))
        started.append(server)
        server.start()
        return server

    yield start
    for server in started:
        server.stop()


def start_authenticated(go: GoRegistry) -> None:
    """Start a Go registry whose GET /v2/ answers 401 (the peers' readiness poll wants 200)."""
    assert go.proc is None
    with go.log_path.open("ab") as log:
        go.proc = subprocess.Popen(
            go.argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    deadline = time.monotonic() + 30
    while True:
        try:
            if _http.request("GET", go.url + "/v2/", timeout=2).status == 401:
                return
        except OSError:
            pass
        assert go.proc.poll() is None, go.log()
        assert time.monotonic() < deadline, go.log()
        time.sleep(0.05)  # polling with a deadline for the server to answer


def push_as_user(go: GoRegistry, tokens: TokenServer | None, repo: str, image: _oci.Image) -> None:
    """Push ``image`` to the authenticated upstream with the user's credentials."""
    if tokens is None:
        auth = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    else:
        access = [("repository", repo, ["pull", "push"])]
        auth = "Bearer " + tokens.issuer.token(access, subject=USER)
    original = _http.request

    def with_auth(method: str, url: str, **kw: object) -> _http.Response:
        headers = dict(kw.pop("headers", None) or {})  # type: ignore[call-overload]
        headers["Authorization"] = auth
        return original(method, url, headers=headers, **kw)  # type: ignore[arg-type]

    _client.request = with_auth  # type: ignore[assignment]
    try:
        resp = Client(go.url).push_image(repo, image, "v1")
    finally:
        _client.request = original  # type: ignore[assignment]
    assert resp.status == 201, resp


def pull_and_check(proxy: OcistoreServer, repo: str, image: _oci.Image) -> None:
    c = Client(proxy.url)
    m = c.get_manifest(repo, "v1")
    assert (m.status, m.body) == (200, image.manifest), m
    for digest, data in image.blobs.items():
        resp = c.get(f"/v2/{repo}/blobs/{digest}")
        assert (resp.status, resp.body) == (200, data)


def assert_no_secrets(proxy: OcistoreServer, *texts: bytes) -> None:
    for secret in (PASSWORD, WRONG):
        assert secret not in proxy.log()
        for text in texts:
            assert secret.encode() not in text


def test_basic_auth(
    request: pytest.FixtureRequest,
    basic_upstream: GoRegistry,
    start_proxy: Callable[[str, str], OcistoreServer],
) -> None:
    repo = f"{_core.BACKEND}/basic/app"
    image = _oci.make_image(random.Random(repo), layers=2)
    push_as_user(basic_upstream, None, repo, image)
    assert Client(basic_upstream.url).get_manifest(repo, "v1").status == 401
    proxy = start_proxy(basic_upstream.url, PASSWORD)
    pull_and_check(proxy, repo, image)
    refused = start_proxy(basic_upstream.url, WRONG)
    resp = Client(refused.url).get_manifest(repo, "v1")
    assert (resp.status, resp.error_codes()) == (502, ["UNAVAILABLE"])
    assert b"refused the credentials" in resp.body
    assert_no_secrets(proxy)
    assert_no_secrets(refused, resp.body)


def test_token_auth(
    request: pytest.FixtureRequest,
    token_upstream: GoRegistry,
    tokens: TokenServer,
    start_proxy: Callable[[str, str], OcistoreServer],
) -> None:
    repos = [f"{_core.BACKEND}/token/{n}" for n in ("one", "two")]
    images = [_oci.make_image(random.Random(r), layers=2) for r in repos]
    for repo, image in zip(repos, images, strict=True):
        push_as_user(token_upstream, tokens, repo, image)
    proxy = start_proxy(token_upstream.url, PASSWORD)
    before = len(tokens.issued)
    pull_and_check(proxy, repos[0], image=images[0])
    pull_and_check(proxy, repos[0], image=images[0])
    assert len(tokens.issued) - before == 1  # one scope, one token, reused until it expires
    pull_and_check(proxy, repos[1], image=images[1])
    assert tokens.issued[before:] == [(USER, [f"repository:{r}:pull"]) for r in repos]
    refused = start_proxy(token_upstream.url, WRONG)
    resp = Client(refused.url).get_manifest(repos[0], "v1")
    assert (resp.status, resp.error_codes()) == (502, ["UNAVAILABLE"])
    assert_no_secrets(proxy)
    assert_no_secrets(refused, resp.body)
