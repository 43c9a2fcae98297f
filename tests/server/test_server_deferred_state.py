"""A PATCH's hash state is stored after its answer, and the next request waits for it."""

from __future__ import annotations

import asyncio
import os
import threading
from pathlib import Path
from typing import Any

import pytest

from ocistore import _core
from ocistore.descriptor import Descriptor
from ocistore.errors import PathNotFound
from ocistore.server import deferred_state
from ocistore.server.app import RegistryApp
from ocistore.server.deferred_state import DeferredState
from ocistore.server.locks import UploadLocks
from ocistore.storage import paths as p
from ocistore.storage.blobwriter import BlobWriter
from waiting import async_wait_until, wait_until

from .asgi_client import Client
from .conftest import sha256
from .helpers import path_of, start

REPO = "library/deferred"


def blocked_on_flock() -> bool:
    """Whether a thread of this process waits for a ``flock`` (a ``->`` line in /proc/locks)."""
    pid = str(os.getpid())
    with open("/proc/locks") as f:
        return any(
            fields[1] == "->" and fields[2] == "FLOCK" and fields[5] == pid
            for fields in (line.split() for line in f)
            if len(fields) > 5
        )


# --- the state lock ----------------------------------------------------------


def test_wait_for_state_without_any_state_lock(tmp_path: Path) -> None:
    UploadLocks(str(tmp_path)).wait_for_state("0b1e4e8a-7e7c-4a55-9d3a-0d6c3c1b5f11")


def test_wait_for_state_blocks_until_the_store_is_done(tmp_path: Path) -> None:
    locks = UploadLocks(str(tmp_path))
    uid = "0b1e4e8a-7e7c-4a55-9d3a-0d6c3c1b5f11"
    state = locks.try_lock_state(uid)
    assert state is not None
    assert locks.try_lock_state(uid) is None  # exclusive
    waited = threading.Event()

    def wait() -> None:
        locks.wait_for_state(uid)
        waited.set()

    waiter = threading.Thread(target=wait)
    waiter.start()
    # still storing: the resumer waits, blocked on the state lock
    wait_until(blocked_on_flock, "the waiter blocked on the state lock")
    assert not waited.is_set()
    state.release()
    waiter.join(30)
    assert waited.is_set()


def test_removing_the_upload_lock_removes_the_state_lock(tmp_path: Path) -> None:
    locks = UploadLocks(str(tmp_path))
    uid = "0b1e4e8a-7e7c-4a55-9d3a-0d6c3c1b5f11"
    state = locks.try_lock_state(uid)
    assert state is not None
    state.release()
    main = locks.try_lock(uid)
    assert main is not None
    assert sorted(os.listdir(tmp_path)) == [f"{uid}.lock", f"{uid}.state.lock"]
    main.release(remove=True)
    assert os.listdir(tmp_path) == []


# --- the writer --------------------------------------------------------------


def _exists(app: RegistryApp, path: str) -> bool:
    try:
        app.services.registry.driver.stat(path)
    except PathNotFound:
        return False
    return True


def test_close_deferring_state_leaves_the_state_to_the_caller(app: RegistryApp) -> None:
    blobs = app.services.registry.repository(REPO).blobs
    w = blobs.create()
    w.close()
    w = blobs.resume(w.id)
    w.write(b"z" * 5000)
    store = w.close_deferring_state()
    state = p.path_for(p.UploadHashState(REPO, w.id, "sha256", 5000))
    if not _core.HASH_STATES:
        assert store is None  # the pure core stores no states
        return
    assert store is not None
    assert not _exists(app, state)  # not yet: a resume now would re-hash
    store()
    assert _exists(app, state)
    assert blobs.resume(w.id).resumed_from_state


def test_schedule_stores_at_once_when_the_state_lock_is_taken(
    app: RegistryApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    blobs = app.services.registry.repository(REPO).blobs
    w = blobs.create()
    w.write(b"q" * 3000)
    locks = app.services.locks
    monkeypatch.setattr(locks, "try_lock_state", lambda upload_id: None)
    closing = DeferredState(w, locks)
    closing.close()
    closing.schedule()
    if _core.HASH_STATES:  # stored on the closing thread, nothing left to schedule
        state = p.path_for(p.UploadHashState(REPO, w.id, "sha256", 3000))
        assert _exists(app, state)


# --- end to end --------------------------------------------------------------


@pytest.fixture
def gated_store(monkeypatch: pytest.MonkeyPatch) -> threading.Event:
    """Hash states wait for the returned event before they are written."""
    gate = threading.Event()
    real = BlobWriter._store_state

    def gated(self: BlobWriter, hasher: Any) -> None:
        gate.wait(60)
        real(self, hasher)

    monkeypatch.setattr(BlobWriter, "_store_state", gated)
    return gate


@pytest.fixture
def reread(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The bytes each commit had to read again (0: the stored hash state was used)."""
    counts: list[int] = []
    real_commit = BlobWriter.commit

    def commit(self: BlobWriter, desc: Descriptor) -> Descriptor:
        try:
            return real_commit(self, desc)
        finally:
            counts.append(self.reread_bytes)

    monkeypatch.setattr(BlobWriter, "commit", commit)
    return counts


def test_the_answer_does_not_wait_for_the_state_but_the_next_request_does(
    client: Client, gated_store: threading.Event, reread: list[int]
) -> None:
    gated_store.set()  # POST's state at offset 0 is stored before its answer
    loc = path_of(start(client, REPO).header("Location") or "")
    gated_store.clear()
    data = os.urandom(300_000)

    async def go() -> tuple[int, int, bool]:
        patched = await client.arequest(
            "PATCH", loc, body=data
        )  # answered with the state held back
        assert patched.status == 202, patched.body
        put_url = path_of(patched.header("Location") or "") + f"&digest={sha256(data)}"
        put = asyncio.create_task(client.arequest("PUT", put_url))
        # The PUT waits for the state: blocked on its lock (on a thread), not answered.
        if _core.HASH_STATES:
            await async_wait_until(blocked_on_flock, "the PUT blocked on the state lock")
        waiting = not put.done()
        gated_store.set()
        return patched.status, (await put).status, waiting

    s_patch, s_put, waiting = asyncio.run(go())
    assert (s_patch, s_put) == (202, 201)
    if _core.HASH_STATES:
        assert waiting
        assert reread == [0]  # the commit used the state stored after the PATCH's answer
    assert client.get(f"/v2/{REPO}/blobs/{sha256(data)}").body == data


def test_many_patches_in_a_row_commit_without_a_reread(client: Client, reread: list[int]) -> None:
    loc = path_of(start(client, REPO).header("Location") or "")
    parts = [os.urandom(70_000 + i) for i in range(12)]
    offset = 0
    for part in parts:
        headers = {"Content-Range": f"{offset}-{offset + len(part) - 1}"}
        r = client.patch(loc, body=part, headers=headers)
        assert r.status == 202, r.body
        offset += len(part)
        loc = path_of(r.header("Location") or "")
    data = b"".join(parts)
    r = client.put(loc + f"&digest={sha256(data)}")
    assert r.status == 201, r.body
    assert reread == [0 if _core.HASH_STATES else len(data)]


def test_store_threads_are_made_again_after_fork(monkeypatch: pytest.MonkeyPatch) -> None:
    from concurrent.futures import ThreadPoolExecutor

    inherited = ThreadPoolExecutor(1)
    monkeypatch.setattr(deferred_state._pool, "_made", (os.getpid() + 1, inherited))
    pool = deferred_state._pool.get()
    assert pool is not inherited and deferred_state._pool.get() is pool
    inherited.shutdown()
