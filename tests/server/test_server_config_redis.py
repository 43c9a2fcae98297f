"""``storage.cache.blobdescriptor: redis`` and distribution's ``redis:`` block (no server needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ocistore.cache import RedisDescriptorCache, RedisOptions
from ocistore.cli import main
from ocistore.server.app import build_registry
from ocistore.server.config import (
    ConfigError,
    ServerConfig,
    apply_overrides,
    load_config,
    unknown_keys,
)

REDIS_CONFIG = """\
version: 0.1
storage:
  filesystem:
    rootdirectory: {root}
  cache:
    blobdescriptor: redis
redis:
  addr: 127.0.0.1:6390
  password: s3cret
  db: 3
  dialtimeout: 10ms
  readtimeout: 250ms
  writetimeout: 2s
  pool:
    maxidle: 4
    maxactive: 8
    idletimeout: 5m
  tls:
    enabled: false
http:
  addr: 127.0.0.1:5000
"""


def test_distributions_redis_block(tmp_path: Path) -> None:
    path = tmp_path / "config.yml"
    path.write_text(REDIS_CONFIG.format(root=tmp_path / "root"))
    cfg, unknown = load_config(path)
    assert unknown == []
    assert cfg.cache == "redis"
    assert cfg.redis == RedisOptions(
        addr="127.0.0.1:6390",
        password="s3cret",
        db=3,
        dial_timeout=0.01,
        read_timeout=0.25,
        write_timeout=2.0,
        max_idle=4,
        max_active=8,
        idle_timeout=300.0,
        tls=False,
    )
    # Worker processes get the same options back.
    assert ServerConfig.from_env(cfg.to_env()) == cfg
    cache = build_registry(cfg).cache
    assert isinstance(cache, RedisDescriptorCache) and cache.options == cfg.redis
    cache.close()


def test_left_out_keys_keep_the_defaults(tmp_path: Path) -> None:
    path = tmp_path / "config.yml"
    path.write_text("storage: {cache: {blobdescriptor: redis}}\nredis: {addr: 'redis:6379'}\n")
    cfg, _ = load_config(path)
    assert cfg.redis == RedisOptions(addr="redis:6379")
    assert ServerConfig.from_env(ServerConfig().to_env()).redis is None


@pytest.mark.parametrize(
    ("text", "key", "word"),
    [
        ("storage: {cache: {blobdescriptor: redis}}\n", "redis.addr", "set redis.addr"),
        ("redis: {password: x}\n", "redis.addr", "missing"),
        ("redis: {addr: nowhere}\n", "redis", "'nowhere' is not host:port"),
        ("redis: {addr: 'a:1', db: -1}\n", "redis.db", "-1 is negative"),
        ("redis: {addr: 'a:1', db: two}\n", "redis.db", "'two' is not a number"),
        ("redis: {addr: 'a:1', dialtimeout: soon}\n", "redis.dialtimeout", "'soon'"),
        ("redis: {addr: 'a:1', pool: {maxactive: x}}\n", "redis.pool.maxactive", "'x'"),
        ("redis: {addr: 'a:1', pool: {idletimeout: -1}}\n", "redis.pool.idletimeout", "-1"),
        ("redis: {addr: 'a:1', tls: {enabled: maybe}}\n", "redis.tls.enabled", "'maybe'"),
        (
            "storage: {cache: {blobdescriptor: memcached}}\n",
            "storage.cache.blobdescriptor",
            "redis",
        ),
        ("redis: {addr: 'a:1', tls: {rootcas: /ca.pem}}\n", "redis.tls.rootcas", "not a list"),
        ("redis: {addr: 'a:1', tls: {rootcas: [/no/ca.pem]}}\n", "redis.tls.rootcas", "no such"),
        (
            "redis: {addr: 'a:1', tls: {certificate: /no/c.pem}}\n",
            "redis.tls.certificate",
            "no such",
        ),
    ],
)
def test_bad_redis_values(tmp_path: Path, text: str, key: str, word: str) -> None:
    path = tmp_path / "config.yml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.key == key
    assert word in str(info.value)


def test_tls_keys(tmp_path: Path) -> None:
    """distribution 3's redis.tls: certificate, key, rootcas (TLS on when any is given)."""
    for name in ("ca.pem", "client.pem", "client.key"):
        (tmp_path / name).write_text("-")
    path = tmp_path / "config.yml"
    path.write_text(
        "redis:\n  addr: 'r:6380'\n  tls:\n"
        f"    certificate: {tmp_path / 'client.pem'}\n"
        f"    key: {tmp_path / 'client.key'}\n"
        f"    rootcas: [{tmp_path / 'ca.pem'}]\n"
    )
    cfg, unknown = load_config(path)
    assert unknown == []
    assert cfg.redis is not None and cfg.redis.uses_tls and not cfg.redis.tls
    assert cfg.redis.tls_root_cas == (str(tmp_path / "ca.pem"),)
    assert cfg.redis.tls_certificate == str(tmp_path / "client.pem")
    assert ServerConfig.from_env(cfg.to_env()) == cfg
    path.write_text(f"redis: {{addr: 'r:1', tls: {{certificate: {tmp_path / 'client.pem'}}}}}\n")
    with pytest.raises(ConfigError, match="give both or neither"):
        load_config(path)


def test_redis_keys_are_known() -> None:
    doc = {
        "redis": {
            "addr": "a:1",
            "pool": {"maxidle": 1, "maxactive": 2, "idletimeout": "1s", "wait": True},
            "tls": {"enabled": False, "certificate": "c", "key": "k", "rootcas": ["r"]},
            "sentinel": {"mastername": "m"},
        }
    }
    assert unknown_keys(doc) == ["redis.pool.wait", "redis.sentinel"]


def test_cache_flag_redis_needs_the_block(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(ConfigError) as info:
        apply_overrides(ServerConfig(), cache="redis")
    assert info.value.key == "--cache"
    assert main(["serve", "--root", str(tmp_path), "--cache", "redis"]) == 2
    err = capsys.readouterr().err
    assert "redis" in err and err.count("\n") == 1
