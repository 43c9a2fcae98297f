"""The per-request fast paths answer exactly as the slower paths they stand in for.

- :attr:`Request.raw_headers` (one ``dict()`` pass) and :meth:`Request.header`
  against a scan of the ASGI header list, repeated names included;
- the front checks (:mod:`ocistore.server.front`) given that mapping
  against the same checks scanning the list;
- the h1 server's framing decision without repeated names (look-ups)
  against its loop over every header;
- ``auth:`` alone (:meth:`RegistryApp._respond_authed`) against the same
  controller behind the host-hook path (``_respond_hooked`` with an
  ``authorize`` hook that allows everything): same status, headers and
  body for every endpoint, with good, wrong, malformed and no credentials.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from auth_support import ISSUER, SERVICE, TokenIssuer, basic, write_htpasswd
from ocistore.server import front
from ocistore.server.app import RegistryApp
from ocistore.server.auth import build_access_controller, check_auth_section
from ocistore.server.h1.protocol import _framing, _Rejected
from ocistore.server.hooks import Access, Decision, Hooks
from ocistore.server.http import Request

from .asgi_client import Client, Reply
from .conftest import make_app, sha256
from .helpers import manifest_for, path_of, put_manifest

# --- headers ----------------------------------------------------------------------------

_NAMES = st.sampled_from(
    [
        b"host",
        b"accept",
        b"authorization",
        b"content-length",
        b"transfer-encoding",
        b"expect",
        b"upgrade",
        b"x-request-id",
        b"range",
    ]
)
_VALUES = st.sampled_from(
    [b"", b"chunked", b" chunked ", b"gzip", b"100-continue", b"100-CONTINUE", b"12", b"0", b"x"]
)
_HEADERS = st.lists(st.tuples(_NAMES, _VALUES), max_size=8)


def _scanned(pairs: Sequence[tuple[bytes, bytes]], name: bytes) -> str | None:
    """A header as a scan of the list finds it: repeated values joined with ", "."""
    found: str | None = None
    for k, v in pairs:
        if k == name:
            found = v.decode("latin-1") if found is None else f"{found}, {v.decode('latin-1')}"
    return found


def _scope(pairs: Sequence[tuple[bytes, bytes]], method: str = "GET") -> dict[str, Any]:
    return {"type": "http", "method": method, "path": "/v2/", "headers": list(pairs)}


async def _nothing() -> dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


@settings(max_examples=300, deadline=None)
@given(_HEADERS)
def test_header_lookups_match_a_scan(pairs: list[tuple[bytes, bytes]]) -> None:
    req = Request(_scope(pairs), _nothing)
    for name in (b"host", b"authorization", b"transfer-encoding", b"x-missing"):
        assert req.header(name.decode()) == _scanned(pairs, name)
    # The decoded mapping, once built, answers the same.
    assert {k: v for k, v in req.headers.items()} == {
        k.decode(): _scanned(pairs, k) for k, _ in pairs
    }
    for name in (b"host", b"authorization"):
        assert req.header(name.decode()) == _scanned(pairs, name)


def test_header_lookups_take_any_iterable() -> None:
    pairs = [(b"host", b"a"), (b"accept", b"b"), (b"host", b"c")]
    req = Request({"type": "http", "method": "GET", "path": "/", "headers": iter(pairs)}, _nothing)
    assert req.header("host") == "a, c"
    assert req.header("accept") == "b"


def _outcome(fn: Any, *args: Any) -> Any:
    try:
        result = fn(*args)
    except _Rejected as exc:
        return ("rejected", exc.args)
    except ValueError as exc:
        return ("value error", type(exc))
    if result is not None and hasattr(result, "code"):
        return (result.code, result.status, result.detail, result.message, result.headers)
    return result


def _framing_loop(headers: list[tuple[bytes, bytes]], version: str) -> Any:
    """The framing decision through the loop: each pair once more under a fresh name
    would change it, so the loop is reached with a repeated, ignored header instead."""
    return _framing([*headers, (b"x-repeat", b"1"), (b"x-repeat", b"2")], version)


@settings(max_examples=400, deadline=None)
@given(_HEADERS, st.sampled_from(["1.1", "1.0"]))
def test_framing_without_repeats_matches_the_loop(
    pairs: list[tuple[bytes, bytes]], version: str
) -> None:
    unique = list({k: (k, v) for k, v in pairs}.values())
    assert _outcome(_framing, unique, version) == _outcome(_framing_loop, unique, version)


@settings(max_examples=300, deadline=None)
@given(_HEADERS, st.sampled_from(["GET", "PUT", "CONNECT"]))
def test_front_checks_with_the_mapping_match_the_scan(
    pairs: list[tuple[bytes, bytes]], method: str
) -> None:
    scope = _scope(pairs, method)
    raw = Request(scope, _nothing).raw_headers
    assert _outcome(front.unimplemented_coding, scope, raw) == _outcome(
        front.unimplemented_coding, scope
    )
    assert front.must_close(scope, raw) == front.must_close(scope)


# --- auth: alone vs behind the host-hook path ----------------------------------------------


def _allow_all(scope: dict[str, Any], access: Sequence[Access]) -> Decision:
    return Decision.allow()


@pytest.fixture(scope="module")
def issuer() -> TokenIssuer:
    return TokenIssuer("ES256")


@pytest.fixture(params=["htpasswd", "token"])
def controller_and_creds(
    request: pytest.FixtureRequest, tmp_path: Path, issuer: TokenIssuer
) -> tuple[Any, dict[str, str]]:
    if request.param == "htpasswd":
        path = write_htpasswd(tmp_path / "htpasswd", {"alice": "secret"})
        section: dict[str, Any] = {"htpasswd": {"realm": "test", "path": str(path)}}
        creds = {
            "good": basic("alice", "secret"),
            "wrong": basic("alice", "nope"),
            "unknown": basic("bob", "secret"),
            "malformed": "Basic !!!",
            "other scheme": "Bearer abc",
        }
    else:
        bundle = issuer.write_bundle(tmp_path / "root.pem")
        section = {
            "token": {
                "realm": "http://auth.test/token",
                "service": SERVICE,
                "issuer": ISSUER,
                "rootcertbundle": str(bundle),
            }
        }
        creds = {
            "good": "Bearer "
            + issuer.token(
                [("repository", "a/b", ["pull", "push", "delete"]), ("registry", "catalog", "*")]
            ),
            "pull only": "Bearer " + issuer.token([("repository", "a/b", ["pull"])]),
            "other repo": "Bearer " + issuer.token([("repository", "c", ["pull"])]),
            "garbage": "Bearer not-a-token",
            "other scheme": basic("alice", "secret"),
        }
    return build_access_controller(check_auth_section(section)), creds


@pytest.fixture
def apps(
    tmp_path: Path, controller_and_creds: tuple[Any, dict[str, str]]
) -> Iterator[tuple[RegistryApp, RegistryApp]]:
    controller, _ = controller_and_creds
    fast = make_app(tmp_path, auth=controller)
    slow = make_app(tmp_path, auth=controller, hooks=Hooks(authorize=_allow_all))
    yield fast, slow
    fast.executor.shutdown(wait=True)
    slow.executor.shutdown(wait=True)


def _reply(app: RegistryApp, method: str, url: str, headers: dict[str, str]) -> Reply:
    return asyncio.run(Client(app).arequest(method, url, headers=headers))


def test_auth_alone_answers_as_the_hooked_path(
    tmp_path: Path,
    apps: tuple[RegistryApp, RegistryApp],
    controller_and_creds: tuple[Any, dict[str, str]],
) -> None:
    fast, slow = apps
    _, creds = controller_and_creds
    assert fast.hooks is None and slow.hooks is not None  # the two paths under test
    open_app = make_app(tmp_path)  # the same storage, no auth: pushes the image
    try:
        pusher = Client(open_app)
        manifest = manifest_for(pusher, "a/b", layers=1)
        assert put_manifest(pusher, "a/b", "v1", manifest).status == 201
        start = pusher.post("/v2/a/b/blobs/uploads/")
        assert start.status == 202
    finally:
        open_app.executor.shutdown(wait=True)
    config_digest = json.loads(manifest)["config"]["digest"]
    upload = path_of(start.headers["location"])
    requests = [
        ("GET", "/v2/"),
        ("HEAD", "/v2/"),
        ("GET", "/v2/_catalog"),
        ("GET", "/v2/a/b/tags/list"),
        ("GET", "/v2/a/b/manifests/v1"),
        ("HEAD", "/v2/a/b/manifests/v1"),
        ("GET", "/v2/a/b/manifests/missing"),
        ("GET", f"/v2/a/b/blobs/{config_digest}"),
        ("HEAD", f"/v2/a/b/blobs/{config_digest}"),
        ("HEAD", f"/v2/a/b/blobs/{sha256(b'missing')}"),
        ("GET", f"/v2/c/blobs/{config_digest}"),
        ("GET", upload),
        ("DELETE", "/v2/a/b/manifests/missing"),
        ("PATCH", "/v2/a/b/manifests/v1"),
        ("POST", "/v2/_catalog"),
        ("GET", "/v2/a/b/nothing-here"),
        ("GET", "/v3/"),
    ]
    compared = 0
    statuses = set()
    for label, authorization in [*creds.items(), ("none", None)]:
        for method, url in requests:
            headers = {"X-Request-Id": f"req-{compared}"}
            if authorization is not None:
                headers["Authorization"] = authorization
            a = _reply(fast, method, url, headers)
            b = _reply(slow, method, url, headers)
            assert (a.status, a.raw_headers, a.body) == (b.status, b.raw_headers, b.body), (
                label,
                method,
                url,
            )
            compared += 1
            statuses.add(a.status)
    assert compared == (len(creds) + 1) * len(requests)
    assert {200, 204, 401, 404, 405} <= statuses, statuses  # allowed and refused alike
