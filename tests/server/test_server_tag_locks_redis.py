"""Tag locks in Redis (issue 13, part 5): what two instances on one bucket rely on.

Two :class:`RedisTagLocks` with host-local locks of their own, on one real
``redis-server``, stand for two hosts. The second holder is observed waiting
(its first refused ``SET NX``) before the first lets go, so the order the
test checks cannot come from luck.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ocistore.cache import RedisOptions
from ocistore.errors import StorageUnavailable
from ocistore.server.app import build_tag_locks
from ocistore.server.config import ServerConfig
from ocistore.server.locks import RedisTagLocks, RedisUploadLocks, UploadLock
from ocistore.storage.taglocks import FileTagLocks
from redis_peer import RedisServer

DEADLINE = 30.0


@pytest.fixture
def server(start_redis: Callable[..., RedisServer]) -> Iterator[RedisServer]:
    yield start_redis()


class WatchedLocks(RedisUploadLocks):
    """Sets ``refused`` the first time a lock is asked for and not granted."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.refused = threading.Event()

    def _try_key(self, key: bytes) -> UploadLock | None:
        lock = super()._try_key(key)
        if lock is None:
            self.refused.set()
        return lock


def host(tmp_path: Path, server: RedisServer, name: str, ttl: float = 30.0) -> RedisTagLocks:
    redis = WatchedLocks(str(tmp_path / name), RedisOptions(addr=server.addr), ttl=ttl)
    return RedisTagLocks(redis, FileTagLocks(tmp_path / name / "tags"))


def test_one_holder_across_hosts(tmp_path: Path, server: RedisServer) -> None:
    a, b = host(tmp_path, server, "a"), host(tmp_path, server, "b")
    order: list[str] = []
    entered = threading.Event()

    def second() -> None:
        with b.holding("app/web"):
            order.append("b in")
        entered.set()

    with a.holding("app/web"):
        order.append("a in")
        t = threading.Thread(target=second)
        t.start()
        assert b.redis_locks.refused.wait(DEADLINE), "b never asked Redis"  # type: ignore[attr-defined]
        order.append("a out")
    assert entered.wait(DEADLINE)
    t.join()
    assert order == ["a in", "a out", "b in"]
    with b.holding("other/repo"), a.holding("app/web"):  # other names do not wait
        pass


def test_stuck_holder_fails_with_storage_unavailable(tmp_path: Path, server: RedisServer) -> None:
    a, b = host(tmp_path, server, "a"), host(tmp_path, server, "b", ttl=0.5)
    with (
        a.holding("app/web"),
        pytest.raises(StorageUnavailable, match="not released"),
        b.holding("app/web"),
    ):
        pass


def test_server_builds_redis_tag_locks_with_redis_upload_locks(
    tmp_path: Path, server: RedisServer
) -> None:
    from ocistore.cache.redis import RedisOptions as Options

    local = ServerConfig(root=str(tmp_path))
    assert isinstance(build_tag_locks(local), FileTagLocks)
    fleet = ServerConfig(root=str(tmp_path), s3='{"bucket": "b"}', redis=Options(addr=server.addr))
    assert fleet.redis_upload_locks
    assert isinstance(build_tag_locks(fleet), RedisTagLocks)
