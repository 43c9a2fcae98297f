"""``auth:`` in the app (in-process): htpasswd and token access controllers, and read-only mode.

The scope matrix drives every endpoint with a token granting exactly what
it needs (accepted), with each needed scope left out in turn (403 DENIED
with an ``insufficient_scope`` challenge) and with no token (401 and the
challenge naming every scope it needs); a cross-repository mount
without pull on the source becomes an ordinary upload (202). Token checks
(signature, issuer, audience, exp/nbf with leeway, key IDs, algorithms),
htpasswd reloads and the credential cache are pinned here too.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bcrypt
import pytest

from auth_support import ISSUER, SERVICE, TokenIssuer, basic, write_htpasswd
from ocistore.server.app import RegistryApp
from ocistore.server.auth import build_access_controller, check_auth_section
from ocistore.server.auth.htpasswd import HtpasswdController
from ocistore.server.auth.token import TokenController, key_ids
from ocistore.server.config import ConfigError

from .asgi_client import Client, Reply
from .conftest import make_app, sha256
from .helpers import manifest_for, path_of, put_manifest

pytestmark = pytest.mark.one_core

ALL = ("pull", "push", "delete")


@pytest.fixture(scope="module")
def issuer() -> TokenIssuer:
    return TokenIssuer("RS256")


@pytest.fixture
def token_app(tmp_path: Path, issuer: TokenIssuer) -> Iterator[RegistryApp]:
    bundle = issuer.write_bundle(tmp_path / "root.pem")
    section = {
        "token": {
            "realm": "http://auth.test/token",
            "service": SERVICE,
            "issuer": ISSUER,
            "rootcertbundle": str(bundle),
        }
    }
    app = make_app(tmp_path, auth=build_access_controller(check_auth_section(section)))
    yield app
    app.executor.shutdown(wait=True)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


class Authed(Client):
    """A client that sends one Authorization header with every request."""

    def __init__(self, app: RegistryApp, authorization: str) -> None:
        super().__init__(app)
        self.authorization = authorization

    async def arequest(self, method: str, url: str, **kw: Any) -> Reply:
        kw["headers"] = {"Authorization": self.authorization, **(kw.get("headers") or {})}
        return await super().arequest(method, url, **kw)


# --- the scope matrix ------------------------------------------------------------------------


@dataclass
class Case:
    name: str
    method: str
    path: str  # {repo}, {digest}, {upload} filled in by the set-up
    needs: list[tuple[str, str, str]]
    status: int
    body: bytes = b""
    headers: dict[str, str] | None = None


def _cases(repo: str, data: bytes) -> list[Case]:
    pull, push, delete = ((("repository", repo, a)) for a in ALL)
    dgst = sha256(data)
    new = b"new blob"
    return [
        Case("base", "GET", "/v2/", [], 200),
        Case("catalog", "GET", "/v2/_catalog", [("registry", "catalog", "*")], 200),
        Case("tags", "GET", f"/v2/{repo}/tags/list", [pull], 200),
        Case("manifest get", "GET", f"/v2/{repo}/manifests/v1", [pull], 200),
        Case("manifest head", "HEAD", f"/v2/{repo}/manifests/v1", [pull], 200),
        Case("manifest put", "PUT", f"/v2/{repo}/manifests/v2", [pull, push], 201),
        Case("manifest delete", "DELETE", f"/v2/{repo}/manifests/{{manifest}}", [delete], 202),
        Case("blob get", "GET", f"/v2/{repo}/blobs/{dgst}", [pull], 200),
        Case("blob head", "HEAD", f"/v2/{repo}/blobs/{dgst}", [pull], 200),
        Case("blob delete", "DELETE", f"/v2/{repo}/blobs/{dgst}", [delete], 202),
        Case("upload start", "POST", f"/v2/{repo}/blobs/uploads/", [pull, push], 202),
        Case(
            "monolithic upload",
            "POST",
            f"/v2/{repo}/blobs/uploads/?digest={sha256(new)}",
            [pull, push],
            201,
            body=new,
        ),
        Case("upload status", "GET", "{upload}", [pull], 204),
        Case("upload patch", "PATCH", "{upload}", [pull, push], 202, body=b"abc"),
        Case("upload finish", "PUT", "{upload}&digest=" + sha256(b""), [pull, push], 201),
        Case("upload cancel", "DELETE", "{upload}", [delete], 204),
        Case("referrers", "GET", f"/v2/{repo}/referrers/{dgst}", [pull], 200),
        Case(
            "mount",
            "POST",
            f"/v2/{repo}/blobs/uploads/?mount={sha256(b'shared')}&from=src/repo",
            [pull, push, ("repository", "src/repo", "pull")],
            201,
        ),
    ]


CASE_NAMES = [c.name for c in _cases("x", b"")]


def _setup(app: RegistryApp, issuer: TokenIssuer, repo: str, data: bytes) -> dict[str, str]:
    """An image ``repo:v1`` (with blob ``data``), a blob in src/repo and an open upload."""
    admin = Authed(
        app,
        f"Bearer {issuer.token([('repository', repo, ALL), ('repository', 'src/repo', ALL)])}",
    )
    r = admin.post(f"/v2/{repo}/blobs/uploads/?digest={sha256(data)}", body=data)
    assert r.status == 201, r.body
    payload = manifest_for(admin, repo)
    assert put_manifest(admin, repo, "v1", payload).status == 201
    r = admin.post(f"/v2/src/repo/blobs/uploads/?digest={sha256(b'shared')}", body=b"shared")
    assert r.status == 201, r.body
    r = admin.post(f"/v2/{repo}/blobs/uploads/")
    assert r.status == 202
    upload = path_of(r.headers["location"])
    return {"upload": upload + ("&" if "?" in upload else "?"), "manifest": sha256(payload)}


def _send(
    app: RegistryApp,
    issuer: TokenIssuer,
    case: Case,
    token: str | None,
    fill: dict[str, str],
    repo: str,
) -> Reply:
    path = case.path.replace("{upload}", fill["upload"]).replace("{manifest}", fill["manifest"])
    path = path.replace("?&", "?").rstrip("?&")
    body = case.body
    headers = dict(case.headers or {})
    if case.name == "manifest put":
        admin = f"Bearer {issuer.token([('repository', repo, ALL)])}"
        body = manifest_for(Authed(app, admin), repo, seed=b"y")
        headers["Content-Type"] = "application/vnd.oci.image.manifest.v1+json"
    if token is not None:
        headers.update(bearer(token))
    return Client(app).request(case.method, path, body=body, headers=headers)


@pytest.mark.parametrize("name", CASE_NAMES)
def test_every_endpoint_needs_each_of_its_scopes(
    token_app: RegistryApp, issuer: TokenIssuer, name: str
) -> None:
    repo = "team/app"
    data = b"layer bytes"
    (case,) = [c for c in _cases(repo, data) if c.name == name]
    fill = _setup(token_app, issuer, repo, data)
    for missing in case.needs:
        granted = [n for n in case.needs if n != missing]
        token = issuer.token([(t, n, [a]) for t, n, a in granted])
        r = _send(token_app, issuer, case, token, fill, repo)
        if case.name == "mount" and missing == ("repository", "src/repo", "pull"):
            # No pull on the source: an ordinary upload starts instead of the mount.
            assert r.status == 202, r.body
            assert r.headers["location"].startswith(f"/v2/{repo}/blobs/uploads/") or (
                f"/v2/{repo}/blobs/uploads/" in r.headers["location"]
            )
            continue
        assert r.status == 403, (missing, r.status, r.body)
        challenge = r.headers["www-authenticate"]
        assert challenge.startswith('Bearer realm="http://auth.test/token",service="ocistore-test"')
        assert challenge.endswith(',error="insufficient_scope"')
        assert case.method == "HEAD" or r.error_codes == ["DENIED"]
    # Without any token: a challenge naming exactly the scopes to ask for.
    r = _send(token_app, issuer, case, None, fill, repo)
    assert r.status == 401
    scopes: dict[tuple[str, str], list[str]] = {}
    for t, n, a in case.needs:
        scopes.setdefault((t, n), []).append(a)
    expected = " ".join(f"{t}:{n}:{','.join(a)}" for (t, n), a in scopes.items())
    want = 'Bearer realm="http://auth.test/token",service="ocistore-test"'
    if expected:
        want += f',scope="{expected}"'
    assert r.headers["www-authenticate"] == want
    assert r.headers["docker-distribution-api-version"] == "registry/2.0"
    detail = r.json()["errors"][0].get("detail") if case.method != "HEAD" else None
    if case.needs and case.method != "HEAD":
        assert detail == [
            {"Type": t, "Class": "", "Name": n, "Action": a} for t, n, a in case.needs
        ]
    # With exactly what it needs: served.
    token = issuer.token([(t, n, [a]) for t, n, a in case.needs])
    r = _send(token_app, issuer, case, token, fill, repo)
    assert r.status == case.status, (r.status, r.body)


def test_scopes_of_another_repository_grant_nothing(
    token_app: RegistryApp, issuer: TokenIssuer
) -> None:
    token = issuer.token([("repository", "other", ALL), ("repository", "team", ALL)])
    r = Client(token_app).get("/v2/team/app/tags/list", headers=bearer(token))
    assert r.status == 403
    assert (
        'scope="repository:team/app:pull",error="insufficient_scope"'
        in r.headers["www-authenticate"]
    )


# --- token verification ----------------------------------------------------------------------


def _status(app: RegistryApp, token: str) -> tuple[int, str]:
    r = Client(app).get("/v2/", headers=bearer(token))
    return r.status, r.headers.get("www-authenticate", "")


@pytest.mark.parametrize(
    "changes",
    [
        {"expires_in": -120},  # expired beyond the 60 s leeway
        {"not_before": 600},  # not yet valid: seconds from now
        {"audience": "another-service"},
        {"issuer": "someone-else"},
    ],
    ids=["expired", "not-yet-valid", "audience", "issuer"],
)
def test_claims_are_checked(token_app: RegistryApp, issuer: TokenIssuer, changes: Any) -> None:
    changes = dict(changes)
    if "not_before" in changes:  # relative to when the test runs, not when it was collected
        changes["not_before"] += time.time()
    status, challenge = _status(token_app, issuer.token([], **changes))
    assert status == 401
    assert challenge.endswith(',error="invalid_token"')


def test_clock_skew_within_the_leeway_is_accepted(
    token_app: RegistryApp, issuer: TokenIssuer
) -> None:
    assert _status(token_app, issuer.token([], expires_in=-30))[0] == 200
    assert _status(token_app, issuer.token([], not_before=time.time() + 30))[0] == 200
    assert _status(token_app, issuer.token([], audience=["x", SERVICE]))[0] == 200


def test_untrusted_signers_are_refused(token_app: RegistryApp, issuer: TokenIssuer) -> None:
    stranger = TokenIssuer("RS256")
    # Its own certificate in x5c: not a chain to the bundle.
    assert _status(token_app, stranger.token([]))[0] == 401
    # The trusted certificate in x5c, but signed by another key.
    forged = issuer.token([], key=stranger.key)
    assert _status(token_app, forged)[0] == 401
    assert _status(token_app, "not.a.token")[0] == 401
    assert _status(token_app, "garbage")[0] == 401
    import jwt

    unsigned = jwt.encode({"iss": ISSUER, "aud": SERVICE, "exp": time.time() + 60}, None, "none")
    assert _status(token_app, unsigned)[0] == 401
    hmac = jwt.encode({"iss": ISSUER, "aud": SERVICE, "exp": time.time() + 60}, "k" * 32, "HS256")
    assert _status(token_app, hmac)[0] == 401


@pytest.mark.parametrize("alg", ["RS256", "ES256"])
def test_key_ids_from_the_bundle_and_jwks(tmp_path: Path, alg: str) -> None:
    signer = TokenIssuer(alg)
    jwks = signer.write_jwks(tmp_path / "jwks.json", "test-key-1")
    bundle = signer.write_bundle(tmp_path / "root.pem")
    by_jwks = TokenController.from_options(
        {"realm": "r", "service": SERVICE, "issuer": ISSUER, "jwks": str(jwks)}
    )
    by_cert = TokenController.from_options(
        {"realm": "r", "service": SERVICE, "issuer": ISSUER, "rootcertbundle": str(bundle)}
    )
    thumbprint, libtrust = key_ids(signer.key.public_key())
    assert len(libtrust.split(":")) == 12
    for controller, kid in ((by_jwks, "test-key-1"), (by_cert, thumbprint), (by_cert, libtrust)):
        grant = controller.verify(
            signer.token([("repository", "a", ["pull"])], header="kid", kid=kid)
        )
        assert grant.access == frozenset({("repository", "a", "pull")})
    with pytest.raises(Exception, match="untrusted key"):
        by_jwks.verify(signer.token([], header="kid", kid="unknown"))


def test_a_verified_token_is_not_verified_again(
    token_app: RegistryApp, issuer: TokenIssuer, monkeypatch: pytest.MonkeyPatch
) -> None:
    import jwt

    calls = []
    real = jwt.decode

    def counting(*args: Any, **kw: Any) -> Any:
        calls.append(1)
        return real(*args, **kw)

    monkeypatch.setattr(jwt, "decode", counting)
    token = issuer.token([("repository", "a", ["pull"])])
    for _ in range(5):
        assert _status(token_app, token)[0] == 200
    assert len(calls) == 1


def test_autoredirect_realm_follows_the_host(tmp_path: Path, issuer: TokenIssuer) -> None:
    bundle = issuer.write_bundle(tmp_path / "root.pem")
    auth = TokenController.from_options(
        {
            "realm": "ignored",
            "service": SERVICE,
            "issuer": ISSUER,
            "rootcertbundle": str(bundle),
            "autoredirect": True,
        }
    )
    app = make_app(tmp_path, auth=auth)
    try:
        r = Client(app, host="reg.example:5000").get("/v2/")
        assert r.headers["www-authenticate"] == (
            'Bearer realm="https://reg.example:5000/auth/token",service="ocistore-test"'
        )
    finally:
        app.executor.shutdown(wait=True)


# --- htpasswd -----------------------------------------------------------------------------------


@pytest.fixture
def htpasswd_app(tmp_path: Path) -> Iterator[tuple[RegistryApp, Path]]:
    path = write_htpasswd(tmp_path / "htpasswd", {"alice": "wonderland", "bob": "builder"})
    section = {"htpasswd": {"realm": "ocistore test", "path": str(path)}}
    app = make_app(tmp_path, auth=build_access_controller(check_auth_section(section)))
    yield app, path
    app.executor.shutdown(wait=True)


def test_htpasswd_challenge_and_credentials(htpasswd_app: tuple[RegistryApp, Path]) -> None:
    app, _ = htpasswd_app
    r = Client(app).get("/v2/")
    assert r.status == 401
    assert r.headers["www-authenticate"] == 'Basic realm="ocistore test"'
    assert r.json() == {"errors": [{"code": "UNAUTHORIZED", "message": "authentication required"}]}
    assert Client(app).get("/v2/", headers={"Authorization": basic("alice", "wrong")}).status == 401
    assert Client(app).get("/v2/", headers={"Authorization": basic("carol", "x")}).status == 401
    assert Client(app).get("/v2/", headers={"Authorization": "Basic !!!"}).status == 401
    alice = Authed(app, basic("alice", "wonderland"))
    assert alice.get("/v2/").status == 200
    r = alice.post(f"/v2/any/repo/blobs/uploads/?digest={sha256(b'x')}", body=b"x")
    assert r.status == 201  # a user of the file may do anything
    r = Client(app).get("/v2/any/repo/tags/list")
    assert r.status == 401
    assert r.json()["errors"][0]["detail"] == [
        {"Type": "repository", "Class": "", "Name": "any/repo", "Action": "pull"}
    ]


def test_htpasswd_reloads_when_the_file_changes(htpasswd_app: tuple[RegistryApp, Path]) -> None:
    app, path = htpasswd_app
    bob = Authed(app, basic("bob", "builder"))
    assert bob.get("/v2/").status == 200
    write_htpasswd(path, {"alice": "wonderland", "carol": "singer"})
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 1_000_000_000))  # a new mtime for sure
    # The file is looked at again within RECHECK seconds: poll with a deadline.
    deadline = time.monotonic() + 30
    while bob.get("/v2/").status != 401:  # removed: the cached credential goes too
        assert time.monotonic() < deadline, "the htpasswd change was not noticed"
        time.sleep(0.05)
    assert Authed(app, basic("carol", "singer")).get("/v2/").status == 200


def test_a_verified_password_is_not_hashed_again(
    htpasswd_app: tuple[RegistryApp, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    app, _ = htpasswd_app
    calls = []
    real = bcrypt.checkpw

    def counting(password: bytes, hashed: bytes) -> bool:
        calls.append(password)
        return real(password, hashed)

    monkeypatch.setattr(bcrypt, "checkpw", counting)
    alice = Authed(app, basic("alice", "wonderland"))
    for _ in range(5):
        assert alice.get("/v2/").status == 200
    assert calls == [b"wonderland"]
    # Failures are never remembered.
    wrong = Authed(app, basic("alice", "nope"))
    for _ in range(2):
        assert wrong.get("/v2/").status == 401
    assert calls == [b"wonderland", b"nope", b"nope"]


def test_only_bcrypt_entries_log_in(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "htpasswd"
    path.write_text("md5user:$apr1$abc$abcdefghijklmnopqrstuv\n# comment\n\n")
    caplog.set_level(logging.WARNING, logger="ocistore.server.auth")
    controller = HtpasswdController("r", str(path))
    assert "md5user" in caplog.text and "bcrypt" in caplog.text
    app = make_app(tmp_path, auth=controller)
    try:
        r = Client(app).get("/v2/", headers={"Authorization": basic("md5user", "pw")})
        assert r.status == 401
    finally:
        app.executor.shutdown(wait=True)


@pytest.mark.parametrize(
    ("section", "key"),
    [
        ({"htpasswd": {"realm": "r"}}, "auth.htpasswd.path"),
        ({"htpasswd": {"realm": "r", "path": "/nonexistent/htpasswd"}}, "auth.htpasswd.path"),
        ({"token": {"realm": "r", "service": "s", "issuer": "i"}}, "auth.token"),
        ({"token": {"realm": "r", "service": "s"}}, "auth.token.issuer"),
        (
            {"token": {"realm": "r", "service": "s", "issuer": "i", "jwks": "/nope"}},
            "auth.token.jwks",
        ),
        ({"silly": {"realm": "r"}}, "auth.silly"),
        ({"htpasswd": {"realm": "r", "path": "p"}, "token": {}}, "auth"),
    ],
)
def test_bad_auth_sections_name_the_key(section: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as err:
        check_auth_section(section)
    assert err.value.key == key


# --- read-only mode -------------------------------------------------------------------------------


def test_readonly_refuses_writes_and_serves_reads(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    try:
        client = Client(app)
        data = b"before read-only"
        assert client.post(f"/v2/r/blobs/uploads/?digest={sha256(data)}", body=data).status == 201
        payload = manifest_for(client, "r")
        assert put_manifest(client, "r", "v1", payload).status == 201
        upload = path_of(client.post("/v2/r/blobs/uploads/").headers["location"])
        app.readonly = True
        writes: list[tuple[str, str, bytes]] = [
            ("POST", "/v2/r/blobs/uploads/", b""),
            ("PATCH", upload, b"x"),
            ("PUT", upload, b""),
            ("DELETE", upload, b""),
            ("PUT", "/v2/r/manifests/v2", payload),
            ("DELETE", f"/v2/r/manifests/{sha256(payload)}", b""),
            ("DELETE", f"/v2/r/blobs/{sha256(data)}", b""),
        ]
        for method, path, body in writes:
            r = client.request(method, path, body=body)
            assert r.status == 405, (method, path, r.status)
            assert r.error_codes == ["UNSUPPORTED"]
            assert "read-only" in r.json()["errors"][0]["detail"]
            assert set(filter(None, r.headers["allow"].split(", "))) <= {"GET", "HEAD"}
        assert client.get(f"/v2/r/blobs/{sha256(data)}").body == data
        assert client.get("/v2/r/manifests/v1").body == payload
        assert client.get("/v2/r/tags/list").json()["tags"] == ["v1"]
        assert client.get(upload).status == 204
        app.readonly = False
        assert client.post(f"/v2/r/blobs/uploads/?digest={sha256(b'z')}", body=b"z").status == 201
    finally:
        app.executor.shutdown(wait=True)


def test_readonly_from_the_config(tmp_path: Path) -> None:
    from ocistore.server.config import config_from_mapping

    cfg = config_from_mapping({"storage": {"maintenance": {"readonly": {"enabled": True}}}})
    assert cfg.readonly
    with pytest.raises(ConfigError) as err:
        config_from_mapping({"storage": {"maintenance": {"readonly": {"enabled": "maybe"}}}})
    assert err.value.key == "storage.maintenance.readonly.enabled"


def test_the_readme_configurations_load(tmp_path: Path, issuer: TokenIssuer) -> None:
    """Every YAML block of the README's "Securing ocistore" section (TLS aside) works."""
    import re

    import yaml

    from ocistore.server.config import config_from_mapping

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Securing ocistore", 1)[1].split("\n## ", 1)[0]
    section = section.split("\n### TLS", 1)[0]  # test_tls.py loads that one
    blocks = re.findall(r"^```yaml\n(.*?)^```$", section, re.DOTALL | re.MULTILINE)
    assert len(blocks) == 3
    write_htpasswd(tmp_path / "htpasswd", {"alice": "s3cret"})
    issuer.write_bundle(tmp_path / "token-signer.pem")
    loaded = [
        config_from_mapping(yaml.safe_load(b.replace("/etc/ocistore/", f"{tmp_path}/")))
        for b in blocks
    ]
    assert [c.auth.split('"')[1] if c.auth else "" for c in loaded] == ["htpasswd", "token", ""]
    assert loaded[2].readonly
    for cfg in loaded[:2]:
        assert build_access_controller(cfg.auth) is not None


def test_create_app_takes_auth_and_readonly(tmp_path: Path) -> None:
    from ocistore.server.app import create_app

    path = write_htpasswd(tmp_path / "htpasswd", {"alice": "wonderland"})
    app = create_app(
        root=tmp_path / "root",
        secret="s",
        readonly=True,
        auth={"htpasswd": {"realm": "embedded", "path": str(path)}},
    )
    try:
        assert Client(app).get("/v2/").headers["www-authenticate"] == 'Basic realm="embedded"'
        alice = Authed(app, basic("alice", "wonderland"))
        assert alice.get("/v2/").status == 200
        assert alice.post("/v2/a/blobs/uploads/").status == 405
        with pytest.raises(ConfigError):
            create_app(root=tmp_path / "root", secret="s", auth={"htpasswd": {"realm": "r"}})
    finally:
        app.executor.shutdown(wait=True)
