"""Issue 15, part 3: webhook notifications, at least once, from a queue on disk.

The notifier alone (events made here, a receiver started here): its config,
its bounded queue, delivery in order with distribution's envelope, retries
through failures, a hanging endpoint that holds nobody, and events that wait
on disk across a restart. The server-level and Go-differential tests are in
tests/interop/test_notifications.py.
"""

from __future__ import annotations

import itertools
import json
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from ocistore.server.config import ConfigError, config_from_mapping
from ocistore.server.hooks import Event, EventActor, EventRequest, EventSource, EventTarget
from ocistore.server.notifications import (
    ENVELOPE_MEDIA_TYPE,
    DiskQueue,
    Endpoint,
    Notifier,
    parse_endpoints,
)
from waiting import wait_until
from webhook_receiver import Receiver

_ids = itertools.count()


def event(
    action: str = "push", media_type: str = "application/vnd.oci.image.manifest.v1+json"
) -> Event:
    n = next(_ids)
    return Event(
        id=f"event-{n}",
        timestamp=datetime.now(UTC),
        action=action,  # type: ignore[arg-type]
        target=EventTarget(
            mediaType=media_type,
            digest="sha256:" + f"{n:064x}",
            size=n,
            repository="library/app",
            url=f"http://registry.test/v2/library/app/manifests/sha256:{n:064x}",
            tag="latest",
        ),
        request=EventRequest(
            id=f"req-{n}", addr="127.0.0.1:1", host="h", method="PUT", useragent="t"
        ),
        actor=EventActor(""),
        source=EventSource(addr="host:5000", instanceID="instance"),
    )


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver().start()
    yield r
    r.stop()


@pytest.fixture
def notifiers() -> Iterator[list[Notifier]]:
    made: list[Notifier] = []
    yield made
    for n in made:
        n.close()


def start(notifiers: list[Notifier], queue_dir: Path, *endpoints: Endpoint, **kw: Any) -> Notifier:
    n = Notifier(endpoints, str(queue_dir), **kw)
    notifiers.append(n)
    return n


# --- configuration -------------------------------------------------------------------------


def test_endpoint_defaults_are_distributions() -> None:
    (ep,) = parse_endpoints({"endpoints": [{"name": "a", "url": "http://127.0.0.1:1/x"}]})
    assert (ep.timeout, ep.threshold, ep.backoff) == (1.0, 10, 1.0)


def test_full_endpoint_is_read() -> None:
    (ep,) = parse_endpoints(
        {
            "endpoints": [
                {
                    "name": "a",
                    "url": "https://hooks.example/x",
                    "headers": {"Authorization": ["Bearer t"], "X-One": "1"},
                    "timeout": "500ms",
                    "threshold": 3,
                    "backoff": "2s",
                    "ignoredmediatypes": ["application/octet-stream"],
                    "ignore": {"mediatypes": ["text/plain"], "actions": ["pull"]},
                },
                {"name": "off", "url": "http://127.0.0.1:1/", "disabled": True},
            ]
        }
    )
    assert ep == Endpoint(
        name="a",
        url="https://hooks.example/x",
        headers={"Authorization": ["Bearer t"], "X-One": ["1"]},
        timeout=0.5,
        threshold=3,
        backoff=2.0,
        ignored_media_types=frozenset({"application/octet-stream", "text/plain"}),
        ignored_actions=frozenset({"pull"}),
    )


@pytest.mark.parametrize(
    ("section", "key"),
    [
        ({"endpoints": {"name": "a"}}, "notifications.endpoints"),
        ({"endpoints": [{"url": "http://h/"}]}, "notifications.endpoints[0].name"),
        ({"endpoints": [{"name": "a", "url": "ftp://h/"}]}, "notifications.endpoints[0].url"),
        (
            {"endpoints": [{"name": "a", "url": "http://h/"}, {"name": "a", "url": "http://h/"}]},
            "notifications.endpoints[1].name",
        ),
        (
            {"endpoints": [{"name": "a", "url": "http://h/", "timeout": "soon"}]},
            "notifications.endpoints[0].timeout",
        ),
        (
            {"endpoints": [{"name": "a", "url": "http://h/", "threshold": -1}]},
            "notifications.endpoints[0].threshold",
        ),
        (
            {"endpoints": [{"name": "a", "url": "http://h/", "ignore": {"actions": ["pul"]}}]},
            "notifications.endpoints[0].ignore.actions",
        ),
        (
            {"endpoints": [{"name": "a", "url": "http://h/", "headers": {"X": ["a\r\nb"]}}]},
            "notifications.endpoints[0].headers.X",
        ),
    ],
)
def test_bad_settings_name_the_key(section: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as info:
        config_from_mapping({"notifications": section})
    assert info.value.key == key


def test_queue_size_must_hold_an_event() -> None:
    with pytest.raises(ConfigError) as info:
        config_from_mapping({"ocistore": {"notificationsmaxevents": 0}})
    assert info.value.key == "ocistore.notificationsmaxevents"


# --- the queue -----------------------------------------------------------------------------


def test_full_queue_drops_the_oldest(tmp_path: Path) -> None:
    q = DiskQueue(str(tmp_path / "q.db"), max_events=3)
    dropped = [q.put(f"e{i}".encode()) for i in range(5)]
    assert (dropped, q.dropped, len(q)) == ([0, 0, 0, 1, 1], 2, 3)
    assert q.peek() == (3, b"e2")


# --- delivery --------------------------------------------------------------------------------


def test_events_arrive_in_order_in_distributions_envelope(
    tmp_path: Path, receiver: Receiver, notifiers: list[Notifier]
) -> None:
    ep = Endpoint("hook", receiver.url, headers={"Authorization": ["Bearer s3cret"]})
    n = start(notifiers, tmp_path, ep)
    sent = [event() for _ in range(20)]
    for e in sent:
        n(e)
    wait_until(lambda: len(receiver.events()) == 20, "all 20 events arrived")
    assert [e["id"] for e in receiver.events()] == [e.id for e in sent]
    assert receiver.envelopes[0] == {"events": [sent[0].to_json()]}
    assert set(receiver.content_types) == {ENVELOPE_MEDIA_TYPE}
    assert {h["Authorization"] for h in receiver.headers} == {"Bearer s3cret"}
    wait_until(lambda: len(n.queues["hook"]) == 0, "the delivered events left the queue")


def test_ignored_media_types_and_actions_are_not_sent(
    tmp_path: Path, receiver: Receiver, notifiers: list[Notifier]
) -> None:
    ep = Endpoint(
        "hook",
        receiver.url,
        ignored_media_types=frozenset({"application/octet-stream"}),
        ignored_actions=frozenset({"pull"}),
    )
    n = start(notifiers, tmp_path, ep)
    kept = event("push")
    for e in (event("pull"), event("push", "application/octet-stream"), kept):
        n(e)
    wait_until(lambda: receiver.events(), "an event arrived")
    marker = event("delete")
    n(marker)
    wait_until(lambda: len(receiver.events()) == 2, "the delete event arrived")
    assert [e["id"] for e in receiver.events()] == [kept.id, marker.id]


def test_failures_are_retried_until_delivered_in_order(
    tmp_path: Path, notifiers: list[Notifier]
) -> None:
    receiver = Receiver(fail_first=5).start()
    try:
        ep = Endpoint("hook", receiver.url, threshold=2, backoff=0.01)
        n = start(notifiers, tmp_path, ep)
        sent = [event() for _ in range(4)]
        for e in sent:
            n(e)
        wait_until(lambda: len(receiver.events()) == 4, "every event got through the 500s")
        assert [e["id"] for e in receiver.events()] == [e.id for e in sent]
        assert receiver.attempts == 4 + 5
    finally:
        receiver.stop()


def test_a_hanging_endpoint_holds_no_caller(tmp_path: Path, notifiers: list[Notifier]) -> None:
    receiver = Receiver(hang=True).start()
    try:
        n = start(notifiers, tmp_path, Endpoint("hook", receiver.url, timeout=60.0))
        n(event())
        assert receiver.arrived.wait(30), "the first event never reached the endpoint"
        sent = [event() for _ in range(200)]
        for e in sent:  # returns while the sender is stuck in its POST: nothing waits on it
            n(e)
        assert len(n.queues["hook"]) == 201
        receiver.release.set()
        wait_until(lambda: len(receiver.events()) == 201, "the queue drained after the release")
    finally:
        receiver.stop()


def test_queued_events_survive_a_restart(tmp_path: Path, notifiers: list[Notifier]) -> None:
    receiver = Receiver()  # its port is chosen but nothing listens yet: refused
    ep = Endpoint("hook", receiver.url, threshold=1, backoff=0.01)
    first = Notifier([ep], str(tmp_path))
    sent = [event() for _ in range(5)]
    for e in sent:
        first(e)
    first.close()
    db = next(tmp_path.glob("*.db"))
    with sqlite3.connect(db) as conn:
        bodies = [json.loads(b) for (b,) in conn.execute("SELECT body FROM events ORDER BY seq")]
    assert [b["events"][0]["id"] for b in bodies] == [e.id for e in sent]
    receiver.start()
    try:
        start(notifiers, tmp_path, ep)  # a new process on the same queue directory
        wait_until(lambda: len(receiver.unique_events()) == 5, "the queued events arrived")
        assert [e["id"] for e in receiver.unique_events()] == [e.id for e in sent]
    finally:
        receiver.stop()


def test_processes_sharing_a_queue_deliver_each_event_once(
    tmp_path: Path, receiver: Receiver, notifiers: list[Notifier]
) -> None:
    ep = Endpoint("hook", receiver.url)
    a, b = start(notifiers, tmp_path, ep), start(notifiers, tmp_path, ep)
    sent = [event() for _ in range(40)]
    for i, e in enumerate(sent):
        (a if i % 2 else b)(e)
    wait_until(lambda: len(receiver.events()) >= 40, "all 40 events arrived")
    assert sorted(e["id"] for e in receiver.events()) == sorted(e.id for e in sent)


def test_create_app_takes_the_section(tmp_path: Path, receiver: Receiver) -> None:
    from ocistore.server import create_app

    section = {"endpoints": [{"name": "hook", "url": receiver.url}]}
    app = create_app(root=tmp_path, secret="s", notifications=section)
    assert app.notifier is not None
    assert [ep.name for ep in app.notifier.endpoints] == ["hook"]
    app.notifier.close()
    with pytest.raises(ConfigError) as info:
        create_app(root=tmp_path, secret="s", notifications={"endpoints": [{"name": "x"}]})
    assert info.value.key == "notifications.endpoints[0].url"


# --- metrics --------------------------------------------------------------------------------

COUNTED = r"""
import sys, tempfile, time
from ocistore import metrics
metrics.enable(sys.argv[1])
sys.path.insert(0, sys.argv[2])
from server.test_notifications import event
from webhook_receiver import Receiver
from ocistore.server.notifications import Endpoint, Notifier

def until(done, what):
    deadline = time.monotonic() + 30
    while not done():
        assert time.monotonic() < deadline, what
        time.sleep(0.01)

receiver = Receiver().start()
down = Notifier([Endpoint("down", Receiver().url, threshold=1, backoff=60.0)],
                tempfile.mkdtemp(), max_events=2)
for _ in range(5):
    down(event())
up = Notifier([Endpoint("up", receiver.url)], tempfile.mkdtemp())
for _ in range(3):
    up(event())
until(lambda: len(up.queues["up"]) == 0, "delivered")
until(lambda: down._senders["down"].failures >= 1, "an attempt failed")
down.close(); up.close(); receiver.stop()
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
registry = CollectorRegistry()
MultiProcessCollector(registry, path=sys.argv[1])
sys.stdout.write(generate_latest(registry).decode())
"""


def test_events_are_counted_per_endpoint_and_outcome(tmp_path: Path) -> None:
    """In a process of its own: prometheus_client reads the multiprocess setting at import."""
    import subprocess
    import sys

    tests = Path(__file__).resolve().parents[1]
    out = subprocess.run(
        [sys.executable, "-c", COUNTED, str(tmp_path), str(tests)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    samples = dict(line.rsplit(" ", 1) for line in out.splitlines() if not line.startswith("#"))

    def n(endpoint: str, outcome: str) -> float:
        key = f'ocistore_notifications_events_total{{endpoint="{endpoint}",outcome="{outcome}"}}'
        return float(samples.get(key, 0))

    assert (n("down", "queued"), n("down", "dropped"), n("down", "delivered")) == (5, 3, 0)
    assert n("down", "failed") == 1  # then it waits its 60 s backoff until closed
    assert (n("up", "queued"), n("up", "delivered"), n("up", "dropped")) == (3, 3, 0)
