"""``notifications.events.includereferences``: manifest events list the manifest's descriptors.

As distribution 2.8: a manifest's push and pull events carry ``references``
(an image's config then its layers, an index's manifests, each as
distribution's ``Descriptor``: no platform, no artifactType); blob events
and deletes never do, and without the setting no event does.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ocistore.server import create_app
from ocistore.server.app import RegistryApp
from ocistore.server.config import ConfigError, config_from_mapping
from waiting import wait_until
from webhook_receiver import Receiver

from .asgi_client import Client
from .conftest import sha256
from .helpers import OCI_INDEX, OCI_MANIFEST, manifest_for, put_manifest


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver().start()
    yield r
    r.stop()


def _app(tmp_path: Path, receiver: Receiver, include: bool | None) -> RegistryApp:
    section: dict[str, Any] = {"endpoints": [{"name": "hook", "url": receiver.url}]}
    if include is not None:
        section["events"] = {"includereferences": include}
    return create_app(root=tmp_path, secret="s", delete_enabled=True, notifications=section)


def _close(app: RegistryApp) -> None:
    if app.notifier is not None:
        app.notifier.close()
    app.executor.shutdown(wait=True)


def _by(events: list[dict[str, Any]], action: str, method: str, ref: str) -> dict[str, Any]:
    [event] = [
        e
        for e in events
        if e["action"] == action
        and e["request"]["method"] == method
        and ref in (e["target"].get("tag"), e["target"].get("digest"))
        and "/manifests/" in e["target"].get("url", "/manifests/")
    ]
    return event


def test_manifest_events_carry_references(tmp_path: Path, receiver: Receiver) -> None:
    app = _app(tmp_path, receiver, True)
    try:
        client = Client(app)
        image = manifest_for(client, "a/b", layers=2)  # 3 blob pushes
        assert put_manifest(client, "a/b", "v1", image).status == 201
        child = json.loads(image)
        index = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": OCI_INDEX,
                "manifests": [
                    {
                        "mediaType": OCI_MANIFEST,
                        "digest": sha256(image),
                        "size": len(image),
                        "platform": {"architecture": "amd64", "os": "linux"},
                        "annotations": {"note": "amd64"},
                    }
                ],
            }
        ).encode()
        assert put_manifest(client, "a/b", "multi", index, OCI_INDEX).status == 201
        assert client.get("/v2/a/b/manifests/multi").status == 200
        assert client.delete(f"/v2/a/b/manifests/{sha256(index)}").status == 202
        want = 3 + 2 + 1 + 2  # blob pushes, manifest pushes, a pull, the delete and its tag
        wait_until(lambda: len(receiver.unique_events()) >= want, "every event arrived")
        events = receiver.unique_events()
    finally:
        _close(app)
    image_refs = [child["config"], *child["layers"]]
    index_refs = [
        {"mediaType": OCI_MANIFEST, "size": len(image), "digest": sha256(image),
         "annotations": {"note": "amd64"}}
    ]  # fmt: skip
    assert _by(events, "push", "PUT", "v1")["target"]["references"] == image_refs
    assert _by(events, "push", "PUT", "multi")["target"]["references"] == index_refs
    assert _by(events, "pull", "GET", "multi")["target"]["references"] == index_refs
    assert [e for e in events if "references" in e["target"]] == [
        _by(events, "push", "PUT", "v1"),
        _by(events, "push", "PUT", "multi"),
        _by(events, "pull", "GET", "multi"),
    ]  # not on blob events nor deletes


@pytest.mark.parametrize("include", [None, False])
def test_without_the_setting_no_event_has_references(
    tmp_path: Path, receiver: Receiver, include: bool | None
) -> None:
    app = _app(tmp_path, receiver, include)
    try:
        client = Client(app)
        assert put_manifest(client, "a/b", "v1", manifest_for(client, "a/b")).status == 201
        wait_until(lambda: len(receiver.unique_events()) >= 3, "every event arrived")
        events = receiver.unique_events()
    finally:
        _close(app)
    assert "references" not in _by(events, "push", "PUT", "v1")["target"]


@pytest.mark.parametrize(
    ("events", "key"),
    [
        ({"includereferences": "yes"}, "notifications.events.includereferences"),
        ([True], "notifications.events"),
    ],
)
def test_bad_includereferences_names_the_key(events: object, key: str) -> None:
    with pytest.raises(ConfigError) as info:
        config_from_mapping({"notifications": {"events": events}})
    assert info.value.key == key
