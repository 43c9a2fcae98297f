"""The Redis descriptor cache against a real redis-server: the suite, distribution's keys, faults.

The conformance suite runs unchanged (test_cache.py runs it on memory and
LMDB). Here also: the exact keys and fields distribution 2.8 writes and
reads, entries written the way the Go registry writes them, junk in the
keys, the connection pool's limits, and Redis going away (killed, or
stopped so that it stops answering) under the cache, the caching statter
and a whole registry: requests are answered from storage, one warning is
logged, and clears made meanwhile are replayed when Redis answers again.
"""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import valkey

from ocistore.cache import CachedBlobStatter, RedisDescriptorCache, RedisOptions
from ocistore.cache.redis import (
    GENERATION_KEY,
    blob_key,
    manifest_set_key,
    repository_blob_key,
    repository_set_key,
)
from ocistore.descriptor import Descriptor
from ocistore.digest import Digest
from ocistore.driver import FilesystemDriver
from ocistore.errors import BlobUnknown, CacheError, CacheUnavailable
from ocistore.storage import Registry
from redis_peer import RedisServer, TLSFiles
from suites.cache_suite import JSON, LAYER, OCTET, CacheSuite, DictBackend, desc, dg


def raw(server: RedisServer, db: int = 0) -> valkey.Valkey:
    return valkey.Valkey(host="127.0.0.1", port=server.port, db=db)


def options(server: RedisServer, **kwargs: Any) -> RedisOptions:
    return RedisOptions(addr=server.addr, **kwargs)


@pytest.fixture
def make_provider(redis_server: RedisServer) -> Iterator[Callable[[], Any]]:
    made: list[RedisDescriptorCache] = []
    client = raw(redis_server, db=1)

    def make() -> Any:
        client.flushdb()
        cache = RedisDescriptorCache(options(redis_server, db=1))
        made.append(cache)
        return cache

    yield make
    for cache in made:
        cache.close()
    client.close()


class TestRedisCacheConformance(CacheSuite):
    pass


@pytest.fixture
def db(redis_server: RedisServer) -> Iterator[valkey.Valkey]:
    client = raw(redis_server, db=2)
    client.flushdb()
    yield client
    client.close()


@pytest.fixture
def cache(redis_server: RedisServer, db: valkey.Valkey) -> Iterator[RedisDescriptorCache]:
    c = RedisDescriptorCache(options(redis_server, db=2))
    yield c
    c.close()


# --- distribution's keys and values ---------------------------------------------------------


def test_keys_and_fields_are_distributions(cache: RedisDescriptorCache, db: valkey.Valkey) -> None:
    d = desc("keys", size=1234, media_type=LAYER)
    alias = dg("sha512", "keys")
    cache.repository_scoped("library/alpine").set_descriptor(alias, d.with_(media_type=JSON))
    dg_s, alias_s = str(d.digest).encode(), str(alias).encode()
    assert sorted(db.keys()) == sorted(
        [
            b"blobs::" + dg_s,
            b"blobs::" + alias_s,
            b"repository::library/alpine::blobs",
            b"repository::library/alpine::blobs::" + dg_s,
            b"repository::library/alpine::blobs::" + alias_s,
        ]
    )
    for key in (dg_s, alias_s):
        assert db.hgetall(b"blobs::" + key) == {
            b"digest": dg_s,
            b"size": b"1234",
            b"mediatype": JSON.encode(),
        }
        assert db.hgetall(b"repository::library/alpine::blobs::" + key) == {
            b"mediatype": JSON.encode()
        }
    assert set(db.smembers(b"repository::library/alpine::blobs")) == {dg_s, alias_s}
    assert db.type(b"repository::library/alpine::blobs") == b"set"
    assert blob_key(d.digest) == b"blobs::" + dg_s
    assert repository_set_key("a/b") == b"repository::a/b::blobs"
    assert repository_blob_key("a/b", d.digest) == b"repository::a/b::blobs::" + dg_s


def test_reads_entries_written_as_the_go_registry_writes_them(
    cache: RedisDescriptorCache, db: valkey.Valkey
) -> None:
    """HMSET digest size, HSETNX mediatype, SADD, HSET mediatype (redis.go's setDescriptor)."""
    d = desc("from-go", size=77, media_type="application/vnd.docker.image.rootfs.diff.tar.gzip")
    key = str(d.digest)
    db.hset(b"blobs::" + key.encode(), mapping={"digest": key, "size": "77"})
    db.hsetnx(b"blobs::" + key.encode(), "mediatype", d.media_type)
    db.sadd(b"repository::team/app::blobs", key)
    db.hset(b"repository::team/app::blobs::" + key.encode(), "mediatype", OCTET)
    assert cache.stat(d.digest) == d
    assert cache.repository_scoped("team/app").stat(d.digest) == d.with_(media_type=OCTET)
    with pytest.raises(BlobUnknown):
        cache.repository_scoped("team/other").stat(d.digest)


def test_a_go_clear_is_a_miss_everywhere(cache: RedisDescriptorCache, db: valkey.Valkey) -> None:
    """distribution's repository Clear deletes the global fields and keeps the membership."""
    d = desc("go-clear")
    cache.repository_scoped("a/b").set_descriptor(d.digest, d)
    db.hdel(blob_key(d.digest), "digest", "size", "mediatype")
    with pytest.raises(BlobUnknown):
        cache.repository_scoped("a/b").stat(d.digest)
    with pytest.raises(BlobUnknown):
        cache.stat(d.digest)


def test_repository_clear_leaves_nothing_a_go_registry_would_serve(
    cache: RedisDescriptorCache, db: valkey.Valkey
) -> None:
    """Go's repository Stat checks SISMEMBER first: the clear must remove the membership."""
    d = desc("our-clear")
    cache.repository_scoped("a/b").set_descriptor(d.digest, d)
    cache.repository_scoped("a/b").clear(d.digest)
    assert not db.sismember(repository_set_key("a/b"), str(d.digest))
    assert not db.exists(repository_blob_key("a/b", d.digest))
    assert db.hget(blob_key(d.digest), "size") == b"10"  # the blob itself is still there


def test_manifest_revisions_have_keys_of_their_own(
    cache: RedisDescriptorCache, db: valkey.Valkey
) -> None:
    """distribution caches no manifest membership: ocistore's must not look like a blob's."""
    d = desc("manifest", media_type="application/vnd.oci.image.manifest.v1+json")
    scope = cache.manifest_scoped("a/b")
    scope.set_descriptor(d.digest, d)
    key = str(d.digest).encode()
    assert sorted(db.keys()) == sorted(
        [
            b"blobs::" + key,
            b"ocistore::repository::a/b::manifests",
            b"ocistore::repository::a/b::manifests::" + key,
        ]
    )
    assert manifest_set_key("a/b") == b"ocistore::repository::a/b::manifests"
    assert scope.stat(d.digest) == d
    with pytest.raises(BlobUnknown):
        cache.repository_scoped("a/b").stat(d.digest)
    scope.clear(d.digest)
    with pytest.raises(BlobUnknown):
        scope.stat(d.digest)
    assert sorted(db.keys()) == [b"blobs::" + key, GENERATION_KEY]


def test_a_registry_keeps_manifests_out_of_the_blob_set(
    cache: RedisDescriptorCache, db: valkey.Valkey, tmp_path: Path
) -> None:
    reg = Registry(FilesystemDriver(tmp_path / "root"), cache=cache, stat_cache_size=0)
    repo = reg.repository("a/b")
    layer = repo.blobs.put(LAYER, b"layer")
    manifest = repo.manifest_blobs.put("application/vnd.oci.image.manifest.v1+json", b"{}")
    assert repo.blobs.stat(layer.digest).size == 5
    assert repo.manifest_blobs.stat(manifest.digest).size == 2
    assert set(db.smembers(repository_set_key("a/b"))) == {str(layer.digest).encode()}
    assert set(db.smembers(manifest_set_key("a/b"))) == {str(manifest.digest).encode()}


def test_the_generation_is_a_key_of_its_own(cache: RedisDescriptorCache, db: valkey.Valkey) -> None:
    d = desc("gen")
    cache.set_descriptor(d.digest, d)
    cache.clear(d.digest)
    assert db.get(GENERATION_KEY) == b"1"
    assert cache.generation() == 1


def test_first_media_type_is_kept_by_hsetnx(cache: RedisDescriptorCache, db: valkey.Valkey) -> None:
    d = desc("first", media_type=LAYER)
    db.hset(blob_key(d.digest), "mediatype", JSON)  # a Go registry got there first
    cache.set_descriptor(d.digest, d)
    assert cache.stat(d.digest) == d.with_(media_type=JSON)


@pytest.mark.parametrize(
    "fields",
    [
        {"digest": "sha256:nothex", "size": "1", "mediatype": OCTET},
        {"digest": str(dg("sha256", "other")), "size": "1", "mediatype": OCTET},
        {"size": "1", "mediatype": OCTET},
        {"digest": str(dg("sha256", "junk")), "size": "-1", "mediatype": OCTET},
        {"digest": str(dg("sha256", "junk")), "size": "ten", "mediatype": OCTET},
        {"digest": str(dg("sha256", "junk")), "size": "1"},
        {"digest": str(dg("sha256", "junk")), "size": "1", "mediatype": b"\xff\xfe"},
    ],
    ids=["bad-digest", "other-digest", "no-digest", "negative", "not-a-size", "no-type", "bytes"],
)
def test_malformed_entries_are_misses(
    cache: RedisDescriptorCache, db: valkey.Valkey, fields: dict[str, Any]
) -> None:
    key = dg("sha256", "junk")
    db.hset(blob_key(key), mapping=fields)
    db.sadd(repository_set_key("j/k"), str(key))
    with pytest.raises(BlobUnknown):
        cache.stat(key)
    with pytest.raises(BlobUnknown):
        cache.repository_scoped("j/k").stat(key)
    d = Descriptor(key, 5, LAYER)
    db.hdel(blob_key(key), "mediatype")
    cache.set_descriptor(key, d)  # a set repairs the entry
    assert cache.stat(key).size == 5


def test_a_key_of_another_type_is_a_cache_error_the_statter_survives(
    cache: RedisDescriptorCache, db: valkey.Valkey
) -> None:
    d = desc("wrongtype")
    db.set(blob_key(d.digest), b"a string, not a hash")
    with pytest.raises(CacheError, match="WRONGTYPE"):
        cache.stat(d.digest)
    statter = CachedBlobStatter(cache, DictBackend({d.digest: d}))
    assert statter.stat(d.digest) == d
    assert statter.metrics.errors == 1
    db.delete(blob_key(d.digest))
    assert cache.stat_many([d.digest]) == {}  # the connection is still in step


# --- connections ------------------------------------------------------------------------------


def test_pool_reuses_idle_connections(redis_server: RedisServer, db: valkey.Valkey) -> None:
    with RedisDescriptorCache(options(redis_server, db=2, max_idle=1)) as cache:
        before = _clients(db)
        for i in range(20):
            d = desc(i)
            cache.set_descriptor(d.digest, d)
            assert cache.stat(d.digest) == d
        assert _clients(db) == before + 1


def test_an_exhausted_pool_is_a_cache_error(redis_server: RedisServer, db: valkey.Valkey) -> None:
    cache = RedisDescriptorCache(options(redis_server, db=2, max_active=1))
    held = cache._pool.get()
    try:
        with pytest.raises(CacheError, match="maxactive 1"):
            cache.stat(desc("x").digest)
    finally:
        cache._pool.put(held)
    with pytest.raises(BlobUnknown):
        cache.stat(desc("x").digest)
    cache.close()


def test_password_and_database(start_redis: Callable[..., RedisServer]) -> None:
    server = start_redis()
    admin = raw(server)
    admin.config_set("requirepass", "s3cret")
    admin.close()
    d = desc("auth")
    with RedisDescriptorCache(options(server, password="s3cret", db=3)) as cache:
        cache.set_descriptor(d.digest, d)
        assert cache.stat(d.digest) == d
    authed = valkey.Valkey(host="127.0.0.1", port=server.port, db=3, password="s3cret")
    assert authed.hget(blob_key(d.digest), "size") == b"10"
    authed.close()
    with (
        RedisDescriptorCache(options(server, password="wrong")) as cache,
        pytest.raises(CacheError),
    ):
        cache.stat(d.digest)


def test_closed_cache_raises_cache_error(cache: RedisDescriptorCache) -> None:
    scope = cache.repository_scoped("a/b")
    cache.close()
    cache.close()
    d = desc("closed")
    for call in (
        lambda: cache.stat(d.digest),
        lambda: cache.set_descriptor(d.digest, d),
        lambda: cache.clear(d.digest),
        lambda: cache.generation(),
        lambda: scope.stat(d.digest),
    ):
        with pytest.raises(CacheError, match="closed"):
            call()


@pytest.mark.parametrize(
    ("kwargs", "word"),
    [
        ({"addr": "localhost"}, "host:port"),
        ({"addr": "localhost:0"}, "host:port"),
        ({"addr": ":6379"}, "host:port"),
        ({"db": -1}, "db"),
        ({"max_idle": -2}, "max_idle"),
        ({"dial_timeout": -1.0}, "dial_timeout"),
    ],
)
def test_bad_options_are_refused(kwargs: dict[str, Any], word: str) -> None:
    with pytest.raises(ValueError, match=word) as info:
        RedisOptions(**kwargs)
    assert repr(next(iter(kwargs.values()))) in str(info.value)


def test_unknown_client_library_is_refused() -> None:
    with pytest.raises(ValueError, match="'hiredis'"):
        RedisDescriptorCache(client="hiredis")


def _clients(db: valkey.Valkey) -> int:
    return len(db.client_list())


# --- Redis goes away ----------------------------------------------------------------------------


def test_killed_redis_falls_back_to_the_backend(
    start_redis: Callable[..., RedisServer], caplog: pytest.LogCaptureFixture
) -> None:
    server = start_redis()
    d = desc("killed", media_type=LAYER)
    cache = RedisDescriptorCache(options(server), retry_interval=3600.0)
    statter = CachedBlobStatter(cache.repository_scoped("a/b"), DictBackend({d.digest: d}))
    assert statter.stat(d.digest) == d
    assert statter.stat(d.digest) == d
    assert statter.metrics.hits == 1

    server.kill()
    caplog.set_level(logging.DEBUG, logger="ocistore.cache")
    for _ in range(5):
        assert statter.stat(d.digest) == d
    with pytest.raises(CacheUnavailable, match=server.addr):
        cache.stat(d.digest)
    assert statter.metrics.errors == 5  # five stats (a stat that met an error does not fill)
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert "unreachable" in warnings[0].getMessage() and server.addr in warnings[0].getMessage()
    cache.close()


def test_redis_back_after_a_restart(
    start_redis: Callable[..., RedisServer], caplog: pytest.LogCaptureFixture
) -> None:
    server = start_redis()
    d = desc("restart")
    cache = RedisDescriptorCache(options(server), retry_interval=0.0)
    statter = CachedBlobStatter(cache, DictBackend({d.digest: d}))
    assert statter.stat(d.digest) == d
    port = server.port
    server.kill()
    assert statter.stat(d.digest) == d
    start_redis(port=port)  # restarted empty
    caplog.set_level(logging.INFO, logger="ocistore.cache")
    assert statter.stat(d.digest) == d  # a miss, filled again
    assert statter.stat(d.digest) == d
    assert cache.stat(d.digest) == d
    assert any("reachable again" in r.getMessage() for r in caplog.records)
    cache.close()


def test_clears_made_while_redis_was_away_are_replayed(
    start_redis: Callable[..., RedisServer],
) -> None:
    """A stopped Redis keeps its data: the clear it missed must not leave a stale entry."""
    server = start_redis()
    d = desc("stale")
    client = raw(server)
    cache = RedisDescriptorCache(options(server, read_timeout=0.2), retry_interval=0.0)
    scope = cache.repository_scoped("a/b")
    scope.set_descriptor(d.digest, d)
    assert server.proc is not None
    os.kill(server.proc.pid, signal.SIGSTOP)
    try:
        with pytest.raises(CacheUnavailable):
            scope.clear(d.digest)
        with pytest.raises(CacheUnavailable):
            cache.clear(d.digest)
        assert cache.pending_clears() == 2
    finally:
        os.kill(server.proc.pid, signal.SIGCONT)
    with pytest.raises(BlobUnknown):
        scope.stat(d.digest)  # the replay went first
    assert cache.pending_clears() == 0
    assert not client.sismember(repository_set_key("a/b"), str(d.digest))
    assert not client.exists(blob_key(d.digest))
    client.close()
    cache.close()


def test_a_registry_keeps_serving_without_redis(
    start_redis: Callable[..., RedisServer], tmp_path: Path
) -> None:
    server = start_redis()
    cache = RedisDescriptorCache(options(server), retry_interval=3600.0)
    reg = Registry(FilesystemDriver(tmp_path / "root"), cache=cache, delete_enabled=True)
    repo = reg.repository("a/b")
    first = repo.blobs.put(LAYER, b"first layer")
    assert repo.blobs.stat(first.digest).size == len(b"first layer")
    server.kill()
    second = repo.blobs.put(LAYER, b"second layer")
    for dgst, data in ((first.digest, b"first layer"), (second.digest, b"second layer")):
        assert repo.blobs.stat(dgst).size == len(data)
        assert repo.blobs.get(dgst) == data
    repo.blobs.delete(first.digest)
    with pytest.raises(BlobUnknown):
        repo.blobs.stat(first.digest)
    assert isinstance(second.digest, Digest)
    cache.close()


@pytest.mark.parametrize("client", ["valkey", "redis"])
@pytest.mark.parametrize("c_parser", [True, False], ids=["c-parser", "pure-parser"])
def test_either_client_library(
    redis_server: RedisServer, db: valkey.Valkey, client: str, c_parser: bool
) -> None:
    """valkey-py is the default; redis-py (the same API) stays usable, with either parser."""
    module = __import__(f"{client}.connection", fromlist=["_RESP2Parser"])
    parser = None if c_parser else module._RESP2Parser
    d = desc(f"lib-{client}", media_type=LAYER)
    with RedisDescriptorCache(options(redis_server, db=2), client=client, parser=parser) as cache:
        assert cache.client == client
        scope = cache.repository_scoped("lib/x")
        scope.set_many([(dg("sha512", client), d)])
        assert scope.stat_many([d.digest, dg("sha512", client)]) == {
            d.digest: d,
            dg("sha512", client): d,
        }
        scope.clear(d.digest)
        with pytest.raises(BlobUnknown):
            scope.stat(d.digest)
    assert RedisDescriptorCache(options(redis_server)).client == "valkey"


# --- TLS ------------------------------------------------------------------------------------------


def test_tls_verifies_the_server(start_redis: Callable[..., RedisServer], tmp_path: Path) -> None:
    """distribution 3's redis.tls keys: the server's certificate is checked against rootcas."""
    files = TLSFiles.make(tmp_path)
    server = start_redis(tls=files)
    d = desc("tls")
    opts = options(server, tls_root_cas=(str(files.ca),))
    assert opts.uses_tls
    with RedisDescriptorCache(opts) as cache:
        cache.repository_scoped("t/ls").set_descriptor(d.digest, d)
        assert cache.repository_scoped("t/ls").stat(d.digest) == d
    # Without the CA the system's roots cannot vouch for the server: unreachable, never a hit.
    with (
        RedisDescriptorCache(options(server, tls=True)) as untrusted,
        pytest.raises(CacheUnavailable, match="certificate verify failed"),
    ):
        untrusted.stat(d.digest)
    # Plain text to a TLS port is no answer either.
    with RedisDescriptorCache(options(server)) as plain, pytest.raises(CacheUnavailable):
        plain.stat(d.digest)


def test_tls_options_are_checked(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="give both or neither"):
        RedisOptions(tls_certificate="client.pem")
    with pytest.raises(ValueError, match=r"nowhere\.pem"):
        RedisDescriptorCache(RedisOptions(tls_root_cas=(str(tmp_path / "nowhere.pem"),)))


def test_the_pause_between_tries_doubles(
    start_redis: Callable[..., RedisServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Redis that stays away is tried less and less often (a hung one costs a timeout)."""
    server = start_redis()
    cache = RedisDescriptorCache(options(server), retry_interval=1.0)
    port = server.port
    server.kill()
    now = [1000.0]
    monkeypatch.setattr("ocistore.cache.redis.time.monotonic", lambda: now[0])
    pauses = []
    for _ in range(8):
        with pytest.raises(CacheUnavailable):
            cache.stat(desc("away").digest)
        pauses.append(cache._down_until - now[0])
        now[0] = cache._down_until
    assert pauses == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]
    start_redis(port=port)
    with pytest.raises(BlobUnknown):
        cache.stat(desc("away").digest)  # reachable again: a miss
    assert cache._failures == 0  # the next outage starts from 1 s again
    cache.close()
