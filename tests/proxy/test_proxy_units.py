"""Proxy mode's parts without a network: configuration, challenges, tokens, holds and expiry."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from ocistore.driver import StorageDriver
from ocistore.errors import PathNotFound
from ocistore.proxy import DEFAULT_TTL, ProxyConfig, ProxyConfigError, parse_proxy
from ocistore.proxy.auth import TokenCache, parse_challenges
from ocistore.proxy.expiry import Holds, expire
from ocistore.server.config import ConfigError, ServerConfig, config_from_mapping, load_config
from ocistore.storage import Registry, paths

SECRET = "never-shown-pa55"


def test_distribution_keys() -> None:
    cfg = parse_proxy(
        {
            "remoteurl": "https://registry-1.docker.io/",
            "username": "u",
            "password": SECRET,
            "ttl": "24h",
        }
    )
    (up,) = cfg.upstreams
    assert (up.prefix, up.remoteurl, up.username, up.ttl) == (
        "",
        "https://registry-1.docker.io",
        "u",
        86400.0,
    )
    assert up.remote_name("library/alpine") == "library/alpine"
    assert SECRET not in repr(cfg)


def test_upstreams_by_prefix() -> None:
    cfg = parse_proxy(
        {
            "remoteurl": "http://default.example",
            "upstreams": [
                {"prefix": "docker.io/", "remoteurl": "https://registry-1.docker.io"},
                {"prefix": "docker.io/library/", "remoteurl": "https://mirror.example", "ttl": 0},
                {
                    "prefix": "ghcr.io/",
                    "remoteurl": "https://ghcr.io",
                    "username": "bot",
                    "password": SECRET,
                },
            ],
            "interval": "10m",
            "timeout": "5s",
        }
    )
    pick = {
        n: cfg.upstream_for(n)
        for n in ("docker.io/library/alpine", "docker.io/x/y", "ghcr.io/o/r", "other/r")
    }
    assert {n: (u.remoteurl if u else None) for n, u in pick.items()} == {
        "docker.io/library/alpine": "https://mirror.example",
        "docker.io/x/y": "https://registry-1.docker.io",
        "ghcr.io/o/r": "https://ghcr.io",
        "other/r": "http://default.example",
    }
    up = pick["docker.io/library/alpine"]
    assert up is not None and up.remote_name("docker.io/library/alpine") == "alpine"
    assert up.ttl == 0.0
    assert pick["docker.io/x/y"] is not None and pick["docker.io/x/y"].ttl == DEFAULT_TTL
    assert (cfg.interval, cfg.timeout) == (600.0, 5.0)
    assert ProxyConfig.from_json(cfg.to_json()) == cfg
    only_prefixed = parse_proxy({"upstreams": [{"prefix": "a/", "remoteurl": "http://a.example"}]})
    assert only_prefixed.upstream_for("b/c") is None


@pytest.mark.parametrize(
    ("section", "key", "reason"),
    [
        ({}, "proxy.remoteurl", "missing"),
        ({"remoteurl": "ftp://x"}, "proxy.remoteurl", "is not an http(s) URL"),
        ({"remoteurl": f"https://u:{SECRET}@x"}, "proxy.remoteurl", "credentials go in username"),
        ({"remoteurl": "http://x", "username": "u"}, "proxy.password", "both"),
        ({"remoteurl": "http://x", "ttl": "soon"}, "proxy.ttl", "not a duration"),
        ({"remoteurl": "http://x", "interval": 0}, "proxy.interval", "longer than 0"),
        ({"remoteurl": "http://x", "remote": "y"}, "proxy.remote", "unknown key"),
        ({"upstreams": [{"remoteurl": "http://x"}]}, "proxy.upstreams[0].prefix", "missing"),
        (
            {"upstreams": [{"prefix": "a", "remoteurl": "http://x"}]},
            "proxy.upstreams[0].prefix",
            "end with '/'",
        ),
        ({"upstreams": "a"}, "proxy.upstreams", "list"),
        (
            {"upstreams": [{"prefix": "a/", "remoteurl": "http://x"}] * 2},
            "proxy.upstreams",
            "listed twice",
        ),
    ],
)
def test_bad_sections_name_the_key(section: dict[str, object], key: str, reason: str) -> None:
    with pytest.raises(ProxyConfigError) as info:
        parse_proxy(section)
    assert (info.value.key, reason in info.value.reason) == (key, True)
    assert SECRET not in str(info.value)
    with pytest.raises(ConfigError) as server:
        config_from_mapping({"proxy": section})
    assert server.value.key == key


def test_server_config_carries_the_proxy_without_showing_it() -> None:
    cfg = config_from_mapping(
        {"proxy": {"remoteurl": "http://x", "username": "u", "password": SECRET}}
    )
    assert cfg.proxy and SECRET not in repr(cfg)
    assert ServerConfig.from_env(cfg.to_env()).proxy == cfg.proxy
    assert json.loads(cfg.proxy)["upstreams"][0]["password"] == SECRET


def test_challenges() -> None:
    (bearer,) = parse_challenges(
        'Bearer realm="https://auth.example/token",service="registry.example",'
        'scope="repository:a/b:pull,push"'
    )
    assert (bearer.scheme, bearer.params) == (
        "bearer",
        {
            "realm": "https://auth.example/token",
            "service": "registry.example",
            "scope": "repository:a/b:pull,push",
        },
    )
    basic, other = parse_challenges('Basic realm="r", Bearer realm="t"')
    assert (basic.scheme, basic.params, other.scheme) == ("basic", {"realm": "r"}, "bearer")


def test_token_cache_per_scope_until_expiry() -> None:
    now = [1000.0]
    cache = TokenCache(clock=lambda: now[0])
    cache.put("realm", "svc", "repository:a:pull", "tok-a", 300)
    cache.put("realm", "svc", "repository:b:pull", "tok-b", 0)  # no expires_in: 60 s
    assert cache.get("realm", "svc", "repository:a:pull") == "tok-a"
    assert cache.get("realm", "svc", "repository:c:pull") is None
    now[0] += 60
    assert cache.get("realm", "svc", "repository:b:pull") is None
    assert cache.get("realm", "svc", "repository:a:pull") == "tok-a"
    now[0] += 240
    assert cache.get("realm", "svc", "repository:a:pull") is None


def _hold_text(driver: StorageDriver, name: str, kind: str, digest: object) -> bytes:
    return driver.get_content(paths.path_for(paths.ProxyHold(name, kind, digest)))  # type: ignore[arg-type]


def test_a_pull_refreshes_a_hold_only_past_half_its_ttl(driver: StorageDriver) -> None:
    reg = Registry(driver)
    desc = reg.repository("a/b").blobs.put("", b"layer")
    now = [1_700_000_000.0]
    holds = Holds(reg, clock=lambda: now[0])
    holds.touch("a/b", "blob", desc.digest, 3600)
    first = _hold_text(driver, "a/b", "blob", desc.digest)
    now[0] += 1000
    holds.touch("a/b", "blob", desc.digest, 3600)
    assert _hold_text(driver, "a/b", "blob", desc.digest) == first
    now[0] += 1000
    holds.touch("a/b", "blob", desc.digest, 3600)
    assert _hold_text(driver, "a/b", "blob", desc.digest) > first
    holds.touch("a/b", "manifest", desc.digest, 0)  # ttl 0: kept forever, no hold
    with pytest.raises(PathNotFound):
        _hold_text(driver, "a/b", "manifest", desc.digest)


def test_a_shared_blob_stays_while_any_repository_holds_it(driver: StorageDriver) -> None:
    reg = Registry(driver)
    shared = reg.repository("one/app").blobs.put("", b"shared layer")
    reg.repository("two/app").blobs.put("", b"shared layer")
    t0 = 1_700_000_000.0
    Holds(reg, clock=lambda: t0).touch("one/app", "blob", shared.digest, 100)
    Holds(reg, clock=lambda: t0).touch("two/app", "blob", shared.digest, 1000)
    done = expire(reg, now=t0 + 500)
    assert (done.links, done.blobs, done.errors) == (
        [("one/app", "blob", str(shared.digest))],
        [],
        [],
    )
    assert not reg.repository("one/app").blobs.exists(shared.digest)
    assert reg.repository("two/app").blobs.get(shared.digest) == b"shared layer"
    done = expire(reg, now=t0 + 2000)
    assert (done.links, done.blobs) == (
        [("two/app", "blob", str(shared.digest))],
        [str(shared.digest)],
    )
    assert not reg.blobs.exists(shared.digest)


def test_an_expired_manifest_leaves_with_its_tags(driver: StorageDriver) -> None:
    reg = Registry(driver)
    repo = reg.repository("lib/app")
    config = repo.blobs.put("application/vnd.oci.image.config.v1+json", b"{}")
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": str(config.digest),
                "size": config.size,
            },
            "layers": [],
        }
    ).encode()
    dgst = repo.manifests.put(manifest, tag="v1", verify=False)
    t0 = 1_700_000_000.0
    Holds(reg, clock=lambda: t0).touch("lib/app", "manifest", dgst, 10)
    assert expire(reg, now=t0 + 5).links == []
    done = expire(reg, now=t0 + 11)
    assert done.links == [("lib/app", "manifest", str(dgst))]
    assert not repo.manifests.exists(dgst)
    assert repo.tags.all() == []
    assert done.blobs == [str(dgst)]


def test_the_readme_mirror_configuration_loads(tmp_path: Path) -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    block = re.search(r"```yaml\n# mirror.yml\n(.*?)```", readme, re.DOTALL)
    assert block is not None
    path = tmp_path / "mirror.yml"
    path.write_text(block.group(1))
    cfg, unknown = load_config(path)
    assert unknown == []
    proxy = ProxyConfig.from_json(cfg.proxy)
    hub = proxy.upstream_for("library/alpine")
    ghcr = proxy.upstream_for("ghcr.io/org/app")
    assert hub is not None and hub.remoteurl == "https://registry-1.docker.io"
    assert ghcr is not None and (ghcr.remote_name("ghcr.io/org/app"), ghcr.ttl) == (
        "org/app",
        86400.0,
    )


def test_create_app_in_proxy_mode(tmp_path: Path) -> None:
    from ocistore.server.app import create_app

    app = create_app(root=tmp_path, secret="s", proxy={"remoteurl": "http://127.0.0.1:9"})
    assert app.proxy is not None
    assert app.services.registry.resumable_digest is False
    assert {k: sorted(v) for k, v in app.handlers.items() if k != "base"} == {
        "catalog": ["GET"],
        "tags": ["GET"],
        "manifest": ["GET", "HEAD"],
        "upload_start": [],
        "upload": [],
        "blob": ["GET", "HEAD"],
        "referrers": ["GET"],
    }
    plain = create_app(root=tmp_path / "plain", secret="s")
    assert plain.proxy is None and plain.services.registry.resumable_digest is True
    with pytest.raises(ConfigError) as info:
        create_app(root=tmp_path, secret="s", proxy={"remoteurl": "ftp://x"})
    assert info.value.key == "proxy.remoteurl"


def test_a_fill_spools_when_the_upload_has_no_descriptor(tmp_path: Path) -> None:
    """The S3 driver's uploads have no file descriptor: the clients then read a spool copy."""
    import os

    from ocistore.proxy.fill import Fills, _write, _write_all

    class NoFd:
        def __init__(self) -> None:
            self.got: list[bytes] = []

        def fileno(self) -> None:
            return None

        def write(self, data: memoryview) -> int:
            self.got.append(bytes(data))
            return len(data)

    writer = NoFd()
    fd, spool = Fills(str(tmp_path / "spool"))._reading_fd(writer)
    try:
        assert spool is True
        _write(fd, writer, b"first", 0)
        _write(fd, writer, b"second", 5)
        assert (os.pread(fd, 64, 0), writer.got) == (b"firstsecond", [b"first", b"second"])
        _write_all(fd, writer, [b"-third", b"-fourth"], 11)  # the pieces that queued up meanwhile
        assert os.pread(fd, 64, 0) == b"firstsecond-third-fourth"
        assert writer.got == [b"first", b"second", b"-third", b"-fourth"]
        assert os.listdir(tmp_path / "spool") == []  # unnamed
    finally:
        os.close(fd)
