"""What the host hooks cost a GET manifest, in-process (no sockets, no server).

Run: ``.venv/bin/pytest benchmarks/test_bench_hooks.py``. Each round sends
one ``GET /v2/bench/app/manifests/v1`` to the ASGI app on one event loop:

- *none*: no hooks, the app's ordinary path;
- *authorize-async* / *authorize-sync*: an allow-all ``authorize``, a
  coroutine / a plain function (run in the hooks' thread pool);
- *on-event*: an ``on_event`` that drops the event (queued for its thread).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from ocistore.cache import MemoryDescriptorCache
from ocistore.driver import FilesystemDriver
from ocistore.server.app import RegistryApp
from ocistore.server.hooks import Access, Decision, Event, Hooks
from ocistore.storage import Registry

ROUNDS = 2000
OCI = "application/vnd.oci.image.manifest.v1+json"
CONFIG = "application/vnd.oci.image.config.v1+json"


async def _allow(scope: dict[str, Any], access: Sequence[Access]) -> Decision:
    return Decision.allow("bench")


def _allow_sync(scope: dict[str, Any], access: Sequence[Access]) -> Decision:
    return Decision.allow("bench")


def _drop(event: Event) -> None:
    pass


HOOKS = {
    "none": None,
    "authorize-async": lambda: Hooks(_allow),
    "authorize-sync": lambda: Hooks(_allow_sync),
    "on-event": lambda: Hooks(on_event=_drop, queue_size=ROUNDS * 100),
}


@pytest.mark.parametrize("hooks", list(HOOKS))
def test_get_manifest(benchmark: Any, tmp_path: Path, hooks: str) -> None:
    make = HOOKS[hooks]
    registry = Registry(FilesystemDriver(tmp_path / "data"), cache=MemoryDescriptorCache())
    app = RegistryApp(
        registry, secret="s", lock_dir=str(tmp_path / "locks"), hooks=make() if make else None
    )
    repo = registry.repository("bench/app")
    config = repo.blobs.put(CONFIG, b"{}")
    doc = {"schemaVersion": 2, "mediaType": OCI, "config": config.to_json(), "layers": []}
    payload = json.dumps(doc).encode()
    repo.manifests.put(payload, media_type=OCI, tag="v1")
    scope = {
        "type": "http",
        "method": "GET",
        "path": "/v2/bench/app/manifests/v1",
        "headers": [(b"host", b"bench"), (b"accept", OCI.encode())],
        "query_string": b"",
        "scheme": "http",
    }
    statuses: set[int] = set()

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(msg: dict[str, Any]) -> None:
        if msg["type"] == "http.response.start":
            statuses.add(msg["status"])

    async def rounds() -> None:
        for _ in range(ROUNDS):
            await app(scope, receive, send)

    loop = asyncio.new_event_loop()
    try:
        benchmark.pedantic(lambda: loop.run_until_complete(rounds()), rounds=5, warmup_rounds=1)
    finally:
        loop.close()
        app.executor.shutdown(wait=True)
    assert statuses == {200}
