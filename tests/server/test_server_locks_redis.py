"""Upload locks in Redis (issue 11, item 6): what two hosts sharing one bucket rely on.

Two :class:`RedisUploadLocks` on one real ``redis-server`` stand for two
instances on two hosts. Waits are polls of a condition with a deadline.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import valkey

from ocistore.cache import RedisOptions
from ocistore.errors import BlobUploadInvalid, StorageUnavailable
from ocistore.server.app import build_locks
from ocistore.server.config import ConfigError, ServerConfig, load_config
from ocistore.server.errors import api_errors
from ocistore.server.locks import RedisUploadLock, RedisUploadLocks, UploadLocks, redis_lock_key
from redis_peer import RedisServer, free_port

UPLOAD = "0f6c8a7e-5a0b-4c56-9b7e-2d8f0c1e9a11"
DEADLINE = 30.0


def until(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


@pytest.fixture
def redis(start_redis: Callable[..., RedisServer]) -> Iterator[tuple[RedisServer, valkey.Valkey]]:
    server = start_redis()
    db = valkey.Valkey(host="127.0.0.1", port=server.port)
    yield server, db
    db.close()


def two_hosts(tmp_path: Path, server: RedisServer, ttl: float = 30.0) -> list[RedisUploadLocks]:
    options = RedisOptions(addr=server.addr)
    return [RedisUploadLocks(str(tmp_path / f"host{i}"), options, ttl=ttl) for i in (1, 2)]


def test_one_holder_across_hosts(tmp_path: Path, redis: tuple[RedisServer, valkey.Valkey]) -> None:
    server, db = redis
    a, b = two_hosts(tmp_path, server)
    held = a.try_lock(UPLOAD)
    assert isinstance(held, RedisUploadLock)
    assert b.try_lock(UPLOAD) is None
    assert a.try_lock(UPLOAD) is None  # two requests in one process exclude each other too
    assert db.get(redis_lock_key(UPLOAD)) == held.token
    held.release(remove=True)
    assert not held.held
    assert db.exists(redis_lock_key(UPLOAD)) == 0
    again = b.try_lock(UPLOAD)
    assert again is not None
    again.release()


def test_release_deletes_only_its_own_token(
    tmp_path: Path, redis: tuple[RedisServer, valkey.Valkey]
) -> None:
    """A holder whose lock expired and was taken over must not free the new holder's lock."""
    server, db = redis
    a, b = two_hosts(tmp_path, server)
    old = a.try_lock(UPLOAD)
    assert isinstance(old, RedisUploadLock)
    db.delete(redis_lock_key(UPLOAD))  # as if it expired
    new = b.try_lock(UPLOAD)
    assert isinstance(new, RedisUploadLock)
    old.release()
    assert db.get(redis_lock_key(UPLOAD)) == new.token
    assert a.try_lock(UPLOAD) is None
    new.release()


def test_a_dead_holders_lock_expires(
    tmp_path: Path, redis: tuple[RedisServer, valkey.Valkey]
) -> None:
    server, db = redis
    options = RedisOptions(addr=server.addr)
    # A holder that never renews (it died): only its SET with the ttl is left.
    db.set(redis_lock_key(UPLOAD), b"dead-holder", px=200)
    b = RedisUploadLocks(str(tmp_path), options, ttl=30.0)
    assert b.try_lock(UPLOAD) is None
    got: list[object] = []
    until(lambda: got.append(b.try_lock(UPLOAD)) or got[-1] is not None, "the expiry")
    lock = got[-1]
    assert isinstance(lock, RedisUploadLock)
    lock.release()


def test_a_held_lock_is_renewed(tmp_path: Path, redis: tuple[RedisServer, valkey.Valkey]) -> None:
    server, db = redis
    (a, _) = two_hosts(tmp_path, server, ttl=0.6)
    lock = a.try_lock(UPLOAD)
    assert lock is not None
    key = redis_lock_key(UPLOAD)
    seen = [db.pttl(key)]
    assert 0 < seen[0] <= 600

    def renewed() -> bool:  # the time left went up again: never expires while held
        seen.append(db.pttl(key))
        assert seen[-1] > 0, "the held lock expired"
        return seen[-1] > min(seen) + 50

    until(renewed, "a renewal")
    lock.release()
    assert db.exists(key) == 0


def test_wait_for_state_waits_for_the_other_host(
    tmp_path: Path, redis: tuple[RedisServer, valkey.Valkey]
) -> None:
    server, _ = redis
    a, b = two_hosts(tmp_path, server)
    b.wait_for_state(UPLOAD)  # nobody stores a state: at once
    state = a.try_lock_state(UPLOAD)
    assert state is not None
    assert b.try_lock_state(UPLOAD) is None
    import threading

    done = threading.Event()

    def wait() -> None:
        b.wait_for_state(UPLOAD)
        done.set()

    waiter = threading.Thread(target=wait)
    waiter.start()
    assert not done.wait(0.2)  # still stored by host a (a bounded check, not a sync)
    state.release()
    waiter.join(DEADLINE)
    assert done.is_set()


def test_wait_for_state_blocks_instead_of_polling(
    tmp_path: Path, redis: tuple[RedisServer, valkey.Valkey], monkeypatch: pytest.MonkeyPatch
) -> None:
    """One EXISTS, one BLPOP woken by the release, one EXISTS: no poll per interval."""
    import threading

    import ocistore.server.locks as locks_module

    server, db = redis
    monkeypatch.setattr(locks_module, "_WAIT_SLICE", DEADLINE)  # one slice covers the wait
    a, b = two_hosts(tmp_path, server)
    sent: list[str] = []
    call = b._call

    def counted(*args: object) -> object:
        sent.append(str(args[0]))
        return call(*args)

    monkeypatch.setattr(b, "_call", counted)
    state = a.try_lock_state(UPLOAD)
    assert state is not None
    waiter = threading.Thread(target=b.wait_for_state, args=(UPLOAD,))
    waiter.start()
    until(lambda: db.info("clients")["blocked_clients"] == 1, "the waiter to block")
    state.release()
    waiter.join(DEADLINE)
    assert not waiter.is_alive()
    assert sent == ["EXISTS", "BLPOP", "EXISTS"]
    # The next holding starts without the last one's release token.
    again = a.try_lock_state(UPLOAD)
    assert again is not None
    assert db.exists(redis_lock_key(UPLOAD, "state") + b"::released") == 0
    again.release()


def test_wait_for_state_outlasts_a_dead_holder(
    tmp_path: Path, redis: tuple[RedisServer, valkey.Valkey]
) -> None:
    """A state holder that died pushes no release: its expiry ends the wait."""
    server, db = redis
    db.set(redis_lock_key(UPLOAD, "state"), b"dead-holder", px=300)
    (b, _) = two_hosts(tmp_path, server)
    b.wait_for_state(UPLOAD)
    assert db.exists(redis_lock_key(UPLOAD, "state")) == 0


def test_unreachable_redis_refuses_with_503(tmp_path: Path) -> None:
    locks = RedisUploadLocks(
        str(tmp_path), RedisOptions(addr=f"127.0.0.1:{free_port()}", dial_timeout=0.5)
    )
    with pytest.raises(StorageUnavailable) as err:
        locks.try_lock(UPLOAD)
    assert "upload locks" in str(err.value) and "unreachable" in str(err.value)
    (api,) = api_errors(err.value)
    assert api.status == 503 and api.code.value == "UNAVAILABLE"


def test_bad_upload_id_is_refused(tmp_path: Path) -> None:
    locks = RedisUploadLocks(str(tmp_path), RedisOptions())
    with pytest.raises(BlobUploadInvalid):
        locks.try_lock("../x")


S3 = """\
version: 0.1
storage:
  s3: {{region: us-east-1, bucket: b, regionendpoint: "http://127.0.0.1:9", accesskey: a,
       secretkey: s}}
{redis}ocistore:
  cachedir: {root}/cache
{extra}"""


@pytest.mark.parametrize(
    ("redis_block", "extra", "in_redis"),
    [
        ("redis: {addr: '127.0.0.1:6379'}\n", "", True),  # auto: S3 and Redis
        ("", "", False),  # auto: S3 alone
        ("redis: {addr: '127.0.0.1:6379'}\n", "  uploadlocks: local\n", False),
    ],
)
def test_config_chooses_the_locks(
    tmp_path: Path, redis_block: str, extra: str, in_redis: bool
) -> None:
    path = tmp_path / "config.yml"
    path.write_text(S3.format(redis=redis_block, extra=extra, root=tmp_path))
    cfg, unknown = load_config(path)
    assert unknown == []
    cfg = cfg.__class__(**{**_fields(cfg), "root": str(tmp_path)})
    locks = build_locks(cfg)
    assert isinstance(locks, RedisUploadLocks) is in_redis
    assert isinstance(locks, UploadLocks)
    assert ServerConfig.from_env(cfg.to_env()) == cfg


def test_config_ttl_and_bad_values(tmp_path: Path) -> None:
    path = tmp_path / "config.yml"
    redis = "redis: {addr: '127.0.0.1:6379'}\n"
    path.write_text(S3.format(redis=redis, extra="  uploadlockttl: 2s\n", root=tmp_path))
    cfg, _ = load_config(path)
    assert cfg.upload_lock_ttl == 2.0 and cfg.redis_upload_locks
    for extra, key in [
        ("  uploadlocks: zookeeper\n", "ocistore.uploadlocks"),
        ("  uploadlockttl: 0s\n", "ocistore.uploadlockttl"),
    ]:
        path.write_text(S3.format(redis=redis, extra=extra, root=tmp_path))
        with pytest.raises(ConfigError) as err:
            load_config(path)
        assert err.value.key == key
    path.write_text(S3.format(redis="", extra="  uploadlocks: redis\n", root=tmp_path))
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert err.value.key == "redis.addr"


def _fields(cfg: ServerConfig) -> dict[str, object]:
    import dataclasses

    return {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)}


def test_create_app_takes_the_lock_options(tmp_path: Path) -> None:
    from ocistore.server import create_app

    app = create_app(root=tmp_path, secret="s", upload_locks="local", upload_lock_ttl="5s")
    assert type(app.services.locks) is UploadLocks
    with pytest.raises(ConfigError) as err:
        create_app(root=tmp_path, secret="s", upload_locks="redis")
    assert err.value.key == "upload_locks"
    with pytest.raises(ConfigError) as err:
        create_app(root=tmp_path, secret="s", upload_lock_ttl="-1s")
    assert err.value.key == "ocistore.uploadlockttl"
    with pytest.raises(TypeError, match="upload_locks"):
        create_app(root=tmp_path, secret="s", upload_locks=3)
