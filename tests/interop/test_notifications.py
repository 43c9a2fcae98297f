"""Issue 15, part 3: notifications from ``ocistore serve``, and beside the Go registry's.

- two workers, one endpoint: every push, pull, mount and delete arrives once,
  in distribution's envelope, with the target, request and source filled in;
- an endpoint that is down while images are pushed and the server restarted:
  the events wait on disk and arrive when it comes up (at least once);
- the same requests sent to distribution 2.8.2 and to ocistore, each with a
  receiver: the events agree field by field, except the differences named in
  ``KNOWN_DIFFERENCES`` (docs/notifications.md explains each).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from waiting import wait_until
from webhook_receiver import Receiver

from . import _oci
from ._client import Client
from ._http import request
from ._peers import GoRegistry, OcistoreServer

MANIFESTS: set[str] = set()  # every manifest digest a test pushed (kind() reads it)
REPO = "notify/app"
OTHER = "notify/other"


def notifications_yaml(url: str, **extra: str) -> str:
    lines = [
        "notifications:",
        "  endpoints:",
        "    - name: receiver",
        f"      url: {url}",
        "      timeout: 2s",
        "      threshold: 2",
        "      backoff: 100ms",
    ]
    lines += [f"      {k}: {v}" for k, v in extra.items()]
    return "\n".join(lines) + "\n"


def with_references(yaml: str) -> str:
    """``yaml`` (a notifications section) with ``events.includereferences: true``."""
    return yaml + "  events:\n    includereferences: true\n"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver().start()
    yield r
    r.stop()


def run_sequence(base: str, image: _oci.Image) -> list[tuple[str, str, str]]:
    """The requests both registries get; returns (action, kind, digest-or-tag) per event expected."""
    c = Client(base)
    MANIFESTS.add(image.digest)
    for data in image.blobs.values():
        assert c.push_blob(REPO, data).status == 201
    assert c.put_manifest(REPO, "v1", image.manifest, _oci.OCI_MANIFEST).status == 201
    assert c.get_manifest(REPO, "v1").status == 200
    assert c.get_manifest(REPO, image.digest).status == 200
    accept = {"Accept": _oci.OCI_MANIFEST}
    assert c.head(f"/v2/{REPO}/manifests/v1", headers=accept).status == 200
    layer = _oci.sha256(image.layers[0])
    assert c.get(f"/v2/{REPO}/blobs/{layer}").status == 200
    assert c.head(f"/v2/{REPO}/blobs/{layer}").status == 200
    mount = c.start_upload(OTHER, f"?mount={layer}&from={REPO}")
    assert mount.status == 201, mount
    assert request("DELETE", f"{base}/v2/{REPO}/manifests/{image.digest}").status == 202
    assert request("DELETE", f"{base}/v2/{OTHER}/blobs/{layer}").status == 202
    config = _oci.sha256(image.config)
    return [
        ("push", "blob", config),
        *[("push", "blob", _oci.sha256(layer)) for layer in image.layers],
        ("push", "manifest", "v1"),
        ("pull", "manifest", "v1"),
        ("pull", "manifest", image.digest),
        ("pull", "manifest", "v1"),
        ("pull", "blob", layer),
        ("pull", "blob", layer),
        ("mount", "blob", layer),
        ("delete", "manifest", image.digest),
        ("delete", "manifest", "v1"),
        ("delete", "blob", layer),
    ]


def normalized(event: dict[str, Any], base: str) -> dict[str, Any]:
    """The fields that must agree: no ids, clocks, ports or per-instance values."""
    out = {k: v for k, v in event.items() if k not in ("id", "timestamp", "source")}
    out["target"] = dict(event["target"])
    out["target"]["url"] = out["target"].get("url", "").replace(base, "BASE")
    out["request"] = {k: v for k, v in event["request"].items() if k not in ("id", "addr", "host")}
    return out


def test_two_workers_send_every_event_once(
    start_ocistore: Callable[..., OcistoreServer], root: Path, receiver: Receiver
) -> None:
    server = start_ocistore(
        root, extra=["--workers", "2"], config_tail=notifications_yaml(receiver.url)
    )
    image = _oci.make_image(random.Random(7))
    expected = run_sequence(server.url, image)
    wait_until(lambda: len(receiver.events()) >= len(expected), "every event arrived")
    events = receiver.events()
    assert len(events) == len(expected)  # a healthy endpoint gets no duplicates
    got = [(e["action"], kind(e), e["target"].get("tag") or e["target"]["digest"]) for e in events]
    assert sorted(got) == sorted(expected)
    push = next(e for e in events if e["action"] == "push" and kind(e) == "manifest")
    assert push["target"]["digest"] == image.digest
    assert push["target"]["size"] == push["target"]["length"] == len(image.manifest)
    assert push["target"]["mediaType"] == _oci.OCI_MANIFEST
    assert push["target"]["url"] == f"{server.url}/v2/{REPO}/manifests/{image.digest}"
    assert push["request"]["method"] == "PUT"
    assert push["source"]["instanceID"]


def test_events_wait_on_disk_for_an_endpoint_that_is_down(
    start_ocistore: Callable[..., OcistoreServer], root: Path
) -> None:
    receiver = Receiver()  # its port is reserved in the config; nothing listens yet
    server = start_ocistore(root, config_tail=notifications_yaml(receiver.url))
    image = _oci.make_image(random.Random(8))
    c = Client(server.url)
    assert c.push_image(REPO, image, "v1").status == 201  # nobody waits on the endpoint
    server.stop()  # a clean stop: what was queued stays on disk
    queued = list((root / "ocistore-notifications").glob("*.db"))
    assert len(queued) == 1
    receiver.start()
    try:
        server.start()
        want = len(image.blobs) + 1
        wait_until(lambda: len(receiver.unique_events()) == want, "the queued events arrived")
        assert {e["action"] for e in receiver.unique_events()} == {"push"}
    finally:
        receiver.stop()


# Where ocistore's events differ from distribution 2.8.2's for the same requests
# ("action kind reference method"): none. Not compared, because they differ between
# any two registries: the event and request ids, the timestamps, the client's
# address, the Host, and the source (hostname:port and instance id).
KNOWN_DIFFERENCES: dict[str, Any] = {}


def kind(event: dict[str, Any]) -> str:
    """manifest or blob: by the URL, or for a delete (no URL) by a tag or a manifest digest."""
    target = event["target"]
    if "tag" in target or "/manifests/" in target.get("url", ""):
        return "manifest"
    return "manifest" if target.get("digest") in MANIFESTS else "blob"


def test_events_match_the_go_registry(
    start_ocistore: Callable[..., OcistoreServer],
    start_go: Callable[..., GoRegistry],
    tmp_path: Path,
) -> None:
    go_receiver, oci_receiver = Receiver().start(), Receiver().start()
    try:
        (tmp_path / "go").mkdir()
        (tmp_path / "oci").mkdir()
        go = start_go(tmp_path / "go", config_tail=notifications_yaml(go_receiver.url))
        oci = start_ocistore(tmp_path / "oci", config_tail=notifications_yaml(oci_receiver.url))
        image = _oci.make_image(random.Random(9))
        expected = run_sequence(go.url, image)
        run_sequence(oci.url, image)
        for r in (go_receiver, oci_receiver):
            wait_until(lambda r=r: len(r.events()) >= len(expected), "every event arrived")
        go_events = [normalized(e, go.url) for e in go_receiver.events()]
        oci_events = [normalized(e, oci.url) for e in oci_receiver.events()]
        diffs = differences(go_events, oci_events)
        assert diffs == KNOWN_DIFFERENCES
    finally:
        go_receiver.stop()
        oci_receiver.stop()


def differences(go: list[dict[str, Any]], oci: list[dict[str, Any]]) -> dict[str, Any]:
    """Events one side sent and the other did not, and fields that differ, by event key."""
    g, o = _by_key(go), _by_key(oci)
    out: dict[str, Any] = {}
    for key in sorted(g.keys() | o.keys()):
        if key not in o:
            out[key] = "only distribution sends it"
        elif key not in g:
            out[key] = "only ocistore sends it"
        else:
            fields = {p: (gv, ov) for p, gv, ov in _walk(g[key], o[key], "") if gv != ov}
            if fields:
                out[key] = fields
    return out


def _by_key(events: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    out = {}
    for e in events:
        t = e["target"]
        ref = t.get("tag") or t.get("digest", "")
        key = f"{e['action']} {kind(e)} {ref} {e['request']['method']}"
        if "tag" in t:
            key += " by tag"
        assert key not in out, f"two events have the key {key}"
        out[key] = e
    return out


def _walk(g: Any, o: Any, prefix: str) -> Iterator[tuple[str, Any, Any]]:
    if isinstance(g, dict) and isinstance(o, dict):
        for k in sorted(set(g) | set(o)):
            yield from _walk(g.get(k, "<absent>"), o.get(k, "<absent>"), f"{prefix}{k}.")
    else:
        yield prefix.rstrip("."), g, o


def run_reference_sequence(base: str, image: _oci.Image, index: _oci.Index) -> int:
    """Manifest pushes and pulls whose events carry references; returns the events expected."""
    c = Client(base)
    MANIFESTS.update([image.digest, index.digest, *index.manifests])
    assert c.push_image(REPO, image, "single").status == 201
    for child in index.images:
        assert c.push_image(REPO, child, None).status == 201
    assert c.put_manifest(REPO, "multi", index.index, _oci.OCI_INDEX).status == 201
    assert c.get_manifest(REPO, "multi").status == 200
    assert c.get_manifest(REPO, image.digest).status == 200
    blobs = len(image.blobs) + sum(len(child.blobs) for child in index.images)
    return blobs + 1 + len(index.images) + 1 + 2


def test_events_with_references_match_the_go_registry(
    start_ocistore: Callable[..., OcistoreServer],
    start_go: Callable[..., GoRegistry],
    tmp_path: Path,
) -> None:
    """``notifications.events.includereferences: true`` on both: the references agree too."""
    go_receiver, oci_receiver = Receiver().start(), Receiver().start()
    try:
        (tmp_path / "go").mkdir()
        (tmp_path / "oci").mkdir()
        go = start_go(
            tmp_path / "go", config_tail=with_references(notifications_yaml(go_receiver.url))
        )
        oci = start_ocistore(
            tmp_path / "oci", config_tail=with_references(notifications_yaml(oci_receiver.url))
        )
        rng = random.Random(10)
        image = _oci.make_image(rng, annotations={"org.example.note": "single"})
        index = _oci.make_multiarch(rng)
        expected = run_reference_sequence(go.url, image, index)
        assert run_reference_sequence(oci.url, image, index) == expected
        for r in (go_receiver, oci_receiver):
            wait_until(lambda r=r: len(r.events()) >= expected, "every event arrived")
        go_events = [normalized(e, go.url) for e in go_receiver.events()]
        oci_events = [normalized(e, oci.url) for e in oci_receiver.events()]
        assert differences(go_events, oci_events) == KNOWN_DIFFERENCES
        with_refs = [e for e in oci_events if "references" in e["target"]]
        assert len(with_refs) == 2 + len(index.images) + 2  # every manifest push and pull
        multi = next(e for e in with_refs if e["target"].get("tag") == "multi")
        assert [d["digest"] for d in multi["target"]["references"]] == [
            child.digest for child in index.images
        ]
    finally:
        go_receiver.stop()
        oci_receiver.stop()
