"""The host hooks of the app: ``authorize`` before each request, ``on_event`` after.

In-process (the ASGI test client): which access each route asks for, what a
refusal looks like, that a hook that raises, answers nonsense or hangs
refuses the request (503) instead of letting it through, the events of a
push, pull, mount and delete, that an ``on_event`` hook that raises or blocks
leaves the requests alone, and the app mounted under a prefix in Starlette.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.routing import Mount

from ocistore.server.app import RegistryApp, create_app
from ocistore.server.hooks import Access, Decision, Event, Hooks

from .asgi_client import Client
from .conftest import make_app, sha256
from .helpers import OCI_MANIFEST, manifest_for, path_of, push_blob, put_manifest

Seen = list[tuple[str, str, list[str]]]


def _app(tmp_path: Path, hooks: Hooks) -> Iterator[RegistryApp]:
    """An app with ``hooks``, shut down as a server does when the test is done with it.

    The shutdown hands ``on_event`` what is queued and joins its worker, so no
    event thread outlives the test and logs once pytest has closed its streams.
    """
    app = make_app(tmp_path, hooks=hooks)
    try:
        yield app
    finally:
        asyncio.run(app.stop_background())
        app.executor.shutdown(wait=True)


@pytest.fixture
def seen() -> Seen:
    return []


@pytest.fixture
def recording(tmp_path: Path, seen: Seen) -> Iterator[Client]:
    """A client of an app whose ``authorize`` allows all and records what it was asked."""

    def authorize(scope: dict[str, Any], access: Sequence[Access]) -> Decision:
        seen.append((scope["method"], scope["path"], [str(a) for a in access]))
        return Decision.allow("alice")

    yield from (Client(app) for app in _app(tmp_path, Hooks(authorize)))


def test_each_route_asks_for_its_access(recording: Client, seen: Seen) -> None:
    data = b"layer"
    dgst = push_blob(recording, "src/app", data)
    recording.get("/v2/")
    recording.get("/v2/_catalog")
    recording.get(f"/v2/src/app/blobs/{dgst}")
    recording.post(f"/v2/dst/app/blobs/uploads/?mount={dgst}&from=src/app")
    recording.delete(f"/v2/src/app/blobs/{dgst}")
    recording.get("/v2/src/app/tags/list")
    recording.get(f"/v2/src/app/referrers/{dgst}")
    pull, push, delete = ("repository:src/app:" + a for a in ("pull", "push", "delete"))
    assert [access for _, _, access in seen] == [
        [pull, push],
        [],
        ["registry:catalog:*"],
        [pull],
        ["repository:dst/app:pull", "repository:dst/app:push", pull],
        [delete],
        [pull],
        [pull],
    ]


def test_refusals(tmp_path: Path) -> None:
    def authorize(scope: dict[str, Any], access: Sequence[Access]) -> Decision:
        if not access:
            return Decision.allow()
        if access[0].name == "secret/app":
            return Decision.forbidden("not yours")
        return Decision.unauthorized('Basic realm="test"')

    for app in _app(tmp_path, Hooks(authorize)):
        client = Client(app)
        assert client.get("/v2/").status == 200
        r = client.get("/v2/some/app/tags/list")
        assert (r.status, r.header("www-authenticate")) == (401, 'Basic realm="test"')
        assert r.json()["errors"][0] == {
            "code": "UNAUTHORIZED",
            "message": "authentication required",
            "detail": [{"Type": "repository", "Name": "some/app", "Action": "pull"}],
        }
        r = client.put("/v2/secret/app/manifests/v1", body=b"{}")
        assert (r.status, r.error_codes, r.json()["errors"][0]["message"]) == (
            403,
            ["DENIED"],
            "not yours",
        )
        assert app.services.registry.repositories() == []  # nothing written


@pytest.mark.parametrize("failure", ["raises", "nonsense", "hangs", "hangs-async"])
def test_a_failing_authorize_refuses_with_503(
    tmp_path: Path, failure: str, caplog: pytest.LogCaptureFixture
) -> None:
    release = threading.Event()

    def sync_hook(scope: dict[str, Any], access: Sequence[Access]) -> Any:
        if failure == "raises":
            raise RuntimeError("accounts database down")
        if failure == "hangs":
            release.wait()
        return True  # not a Decision

    async def async_hook(scope: dict[str, Any], access: Sequence[Access]) -> Decision:
        await asyncio.Event().wait()  # never set
        raise AssertionError("unreachable")

    hook = async_hook if failure == "hangs-async" else sync_hook
    try:
        for app in _app(tmp_path, Hooks(hook, timeout=0.2)):
            with caplog.at_level(logging.ERROR, "ocistore.server.hooks"):
                r = Client(app).post(f"/v2/a/b/blobs/uploads/?digest={sha256(b'x')}", body=b"x")
            assert (r.status, r.error_codes) == (503, ["UNAVAILABLE"])
            assert app.services.registry.repositories() == []
            assert "request refused" in caplog.text
    finally:
        release.set()


@pytest.mark.parametrize("wrapped", [False, True])
def test_async_authorize(tmp_path: Path, wrapped: bool) -> None:
    async def authorize(scope: dict[str, Any], access: Sequence[Access], pause: int) -> Decision:
        await asyncio.sleep(pause)
        return Decision.allow() if access == [] else Decision.forbidden()

    # A partial, or any callable returning an awaitable, is awaited too.
    hook = functools.partial(authorize, pause=0)
    if wrapped:
        hook = functools.partial(lambda *a, **kw: authorize(*a, **kw), pause=0)
    for app in _app(tmp_path, Hooks(hook)):
        client = Client(app)
        assert (client.get("/v2/").status, client.get("/v2/_catalog").status) == (200, 403)


class Collector:
    """A sync ``on_event`` hook that keeps the events; ``wait(n)`` until it has ``n``."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.cond = threading.Condition()

    def __call__(self, event: Event) -> None:
        with self.cond:
            self.events.append(event)
            self.cond.notify_all()

    def wait(self, n: int) -> list[dict[str, Any]]:
        with self.cond:
            assert self.cond.wait_for(lambda: len(self.events) >= n, timeout=30), self.events
            return [e.to_json() for e in self.events]


def test_events_of_push_pull_mount_and_delete(tmp_path: Path) -> None:
    events = Collector()

    def authorize(scope: dict[str, Any], access: Sequence[Access]) -> Decision:
        return Decision.allow("alice")

    for app in _app(tmp_path, Hooks(authorize, events)):
        client = Client(app)
        payload = manifest_for(client, "a/b", layers=1)  # pushes 2 blobs
        assert put_manifest(client, "a/b", "v1", payload).status == 201
        assert client.get("/v2/a/b/manifests/v1").status == 200
        assert client.head("/v2/a/b/manifests/v1").status == 200  # a pull, as distribution
        layer = sha256(b"x" * 100)
        assert client.get(f"/v2/a/b/blobs/{layer}", headers={"Range": "bytes=0-9"}).status == 206
        assert client.post(f"/v2/c/d/blobs/uploads/?mount={layer}&from=a/b").status == 201
        assert client.delete(f"/v2/a/b/manifests/{sha256(payload)}").status == 202
        got = events.wait(9)
    assert [(e["action"], e["target"]["repository"]) for e in got] == [
        ("push", "a/b"),
        ("push", "a/b"),
        ("push", "a/b"),
        ("pull", "a/b"),
        ("pull", "a/b"),
        ("pull", "a/b"),
        ("mount", "c/d"),
        ("delete", "a/b"),
        ("delete", "a/b"),
    ]
    manifest_push = got[2]
    assert manifest_push["target"] == {
        "mediaType": OCI_MANIFEST,
        "digest": sha256(payload),
        "size": len(payload),
        "length": len(payload),
        "repository": "a/b",
        "url": f"http://registry.test/v2/a/b/manifests/{sha256(payload)}",
        "tag": "v1",
    }
    assert manifest_push["actor"] == {"name": "alice"}
    assert manifest_push["request"]["method"] == "PUT"
    assert manifest_push["request"]["addr"] == "127.0.0.1:40000"
    assert manifest_push["request"]["host"] == "registry.test"
    assert got[1]["target"]["size"] == 100  # a blob push: its size looked up off the request path
    assert got[4]["request"]["method"] == "HEAD"
    assert got[5]["target"]["size"] == 100  # a 206: the whole blob's size
    assert got[6]["target"]["fromRepository"] == "a/b"
    assert got[7]["target"] == {"digest": sha256(payload), "repository": "a/b", "url": ""}
    assert got[8]["target"] == {"repository": "a/b", "tag": "v1", "url": ""}  # the tag it took


def test_a_failing_on_event_leaves_requests_alone(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    calls = Collector()

    def on_event(event: Event) -> None:
        calls(event)
        raise RuntimeError("webhook endpoint down")

    for app in _app(tmp_path, Hooks(on_event=on_event)):
        client = Client(app)
        with caplog.at_level(logging.ERROR, "ocistore.server.hooks"):
            push_blob(client, "a/b", b"one")
            push_blob(client, "a/b", b"two")
            calls.wait(2)
        assert "on_event hook raised, event skipped" in caplog.text


def test_a_blocked_on_event_drops_events_not_requests(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    release, entered = threading.Event(), threading.Event()

    def on_event(event: Event) -> None:
        entered.set()
        release.wait()

    try:
        for app in _app(tmp_path, Hooks(on_event=on_event, queue_size=1)):
            client = Client(app)
            with caplog.at_level(logging.WARNING, "ocistore.server.hooks"):
                push_blob(client, "a/b", b"first")
                assert entered.wait(30)  # the worker holds the first event
                for i in range(3):
                    push_blob(client, "a/b", b"more %d" % i)  # one queued, two dropped
            assert caplog.text.count("event dropped") == 2
            release.set()  # the worker takes the queued event, so the shutdown can join it
    finally:
        release.set()


def test_async_on_event(tmp_path: Path) -> None:
    got: list[Event] = []
    done = asyncio.Event()

    async def on_event(event: Event) -> None:
        got.append(event)
        done.set()

    async def run(client: Client) -> None:
        r = await client.arequest(
            "POST", f"/v2/a/b/blobs/uploads/?digest={sha256(b'x')}", body=b"x"
        )
        assert r.status == 201
        await done.wait()

    for app in _app(tmp_path, Hooks(on_event=on_event)):
        asyncio.run(run(Client(app)))
    assert [(e.action, e.target.digest, e.target.size) for e in got] == [("push", sha256(b"x"), 1)]


def test_mounted_under_a_prefix(tmp_path: Path) -> None:
    registry = create_app(root=tmp_path / "data", secret="s")
    host = Client(Starlette(routes=[Mount("/registry", app=registry)]))
    r = host.post("/registry/v2/a/b/blobs/uploads/")
    assert r.status == 202
    location = r.header("location") or ""
    assert location.startswith("http://registry.test/registry/v2/a/b/blobs/uploads/")
    r = host.put(path_of(location) + f"&digest={sha256(b'data')}", body=b"data")
    assert (r.status, r.header("location")) == (
        201,
        f"http://registry.test/registry/v2/a/b/blobs/{sha256(b'data')}",
    )
    assert host.get(f"/registry/v2/a/b/blobs/{sha256(b'data')}").body == b"data"
    assert host.get("/v2/").status == 404  # only under the prefix
    push_blob(Client(registry), "c/d", b"x")
    r = host.get("/registry/v2/_catalog?n=1")
    assert r.header("link") == '</registry/v2/_catalog?n=1&last=a%2Fb>; rel="next"'


def test_bad_hooks(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="authorize='yes' is not callable"):
        Hooks("yes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="hook timeout 0: expected a positive number"):
        Hooks(on_event=print, timeout=0)
    with pytest.raises(ValueError, match="event queue_size 0: expected a positive integer"):
        create_app(root=tmp_path, on_event=print, event_queue_size=0)
    with pytest.raises(ValueError, match="a 401 needs a WWW-Authenticate challenge, got ''"):
        Decision.unauthorized("")
    assert create_app(root=tmp_path).hooks is None  # no hooks: no hook code on the request path
