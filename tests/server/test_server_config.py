"""Configuration loading, the _state token format, ranges and routes (no server needed)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import socket
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ocistore.cli import main
from ocistore.errors import BlobUploadInvalid
from ocistore.server.config import (
    ConfigError,
    ServerConfig,
    UploadPurging,
    apply_overrides,
    load_config,
    parse_duration,
    parse_size,
)
from ocistore.server.ranges import RangeNotSatisfiable, parse_content_range, parse_range
from ocistore.server.routes import match
from ocistore.server.run import AddressInUse, check_address_free
from ocistore.server.state import (
    UploadState,
    format_go_time,
    pack_upload_state,
    unpack_upload_state,
)

DISTRIBUTION_CONFIG = """\
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
  formatter: text
storage:
  filesystem:
    rootdirectory: /srv/registry
  delete:
    enabled: true
  cache:
    blobdescriptor: inmemory
  maintenance:
    uploadpurging:
      enabled: false
      age: 72h
      interval: 1h30m
      dryrun: true
  redirect:
    disable: true
http:
  addr: 0.0.0.0:5001
  secret: s3cr3t
  headers:
    X-Content-Type-Options: [nosniff]
"""


def test_distribution_config(tmp_path: Path) -> None:
    path = tmp_path / "config.yml"
    path.write_text(DISTRIBUTION_CONFIG)
    cfg, unknown = load_config(path)
    assert cfg.root == "/srv/registry"
    assert cfg.delete_enabled is True
    assert cfg.cache == "inmemory"
    assert cfg.addr == "0.0.0.0:5001" and (cfg.host, cfg.port) == ("0.0.0.0", 5001)
    assert cfg.secret == "s3cr3t"
    assert cfg.log_level == "warn" and cfg.access_log is False
    assert cfg.upload_purging == UploadPurging(
        enabled=False, age=72 * 3600.0, interval=5400.0, dryrun=True
    )
    assert cfg.redirect_disable is True
    assert cfg.log_formatter == "text"  # log.formatter is read (issue 15)
    assert unknown == ["http.headers"]


def test_defaults_and_overrides() -> None:
    cfg = ServerConfig()
    assert (cfg.root, cfg.addr, cfg.cache) == ("./data", "127.0.0.1:5000", "lmdb")
    assert cfg.cache_path.endswith("ocistore-cache")
    assert "docker" not in cfg.cache_path
    cfg = apply_overrides(
        cfg, addr="127.0.0.1:6000", workers=3, max_blob_size="2GiB", idle_timeout="90s", root=None
    )
    assert (cfg.port, cfg.workers, cfg.max_blob_size, cfg.idle_timeout) == (
        6000,
        3,
        2 << 30,
        90.0,
    )
    assert cfg.root == "./data"
    assert ServerConfig.from_env(cfg.to_env()) == cfg
    secret = cfg.with_secret().secret
    assert secret and cfg.with_secret().secret != secret  # random each time it is made


def test_bad_values(tmp_path: Path) -> None:
    for bad in (
        "storage: {cache: {blobdescriptor: redis}}",
        "http: {addr: nowhere}",
        "log: {level: loud}",
        "storage: {delete: {enabled: maybe}}",
        "storage: {maintenance: {uploadpurging: {age: soon}}}",
        "- a list",
        "a: [unclosed",
    ):
        path = tmp_path / "bad.yml"
        path.write_text(bad)
        with pytest.raises(ConfigError):
            load_config(path)
    with pytest.raises(ConfigError):
        apply_overrides(ServerConfig(), workers=0)


def test_redirect_keys(tmp_path: Path) -> None:
    """storage.redirect.disable (distribution's) and ocistore.redirectexpiry (ours)."""
    default = ServerConfig()
    assert (default.redirect_disable, default.redirect_expiry) == (False, 1200.0)
    path = tmp_path / "c.yml"
    path.write_text("storage: {redirect: {disable: true}}\nocistore: {redirectexpiry: 90s}\n")
    cfg, unknown = load_config(path)
    assert (cfg.redirect_disable, cfg.redirect_expiry, unknown) == (True, 90.0, [])
    assert ServerConfig.from_env(cfg.to_env()) == cfg
    for bad, key, value in (
        ("ocistore: {redirectexpiry: 0s}", "ocistore.redirectexpiry", "'0s'"),
        ("ocistore: {redirectexpiry: 169h}", "ocistore.redirectexpiry", "'169h'"),
        ("ocistore: {redirectexpiry: soon}", "ocistore.redirectexpiry", "'soon'"),
        ("storage: {redirect: {disable: maybe}}", "storage.redirect.disable", "'maybe'"),
    ):
        path.write_text(bad)
        with pytest.raises(ConfigError, match=f"config {key}: {value}") as info:
            load_config(path)
        assert info.value.key == key


def test_only_s3_redirects_unless_disabled(tmp_path: Path) -> None:
    """serve redirects as distribution does: on, but only a driver with url_for can."""
    from ocistore.server.app import build_registry

    s3 = {
        "region": "us-east-1",
        "bucket": "b",
        "regionendpoint": "http://127.0.0.1:9",  # never contacted: nothing is read here
        "accesskey": "k",
        "secretkey": "s",
    }
    fs = ServerConfig(root=str(tmp_path / "fs"), cache="none")
    on = ServerConfig(root=str(tmp_path / "s3"), cache="none", s3=json.dumps(s3))
    assert not build_registry(fs).blobs.redirects
    assert build_registry(on).blobs.redirects
    assert build_registry(on).blobs.redirect_expiry == 1200.0
    off = apply_overrides(on, redirect_disable=True)
    assert not build_registry(off).blobs.redirects


def test_durations_and_sizes() -> None:
    assert parse_duration("168h") == 168 * 3600
    assert parse_duration("1h30m10s") == 5410
    assert parse_duration("250ms") == 0.25
    assert parse_duration(12) == 12.0
    assert parse_size("512M") == 512 << 20
    assert parse_size("1gib") == 1 << 30
    assert parse_size(100) == 100
    for bad in ("", "10x", "-1h", True):
        with pytest.raises(ConfigError):
            parse_duration(bad)
    with pytest.raises(ConfigError):
        parse_size("lots")


def test_cli_reports_bad_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "c.yml"
    path.write_text("http: {addr: bad}")
    assert main(["serve", "--config", str(path)]) == 2
    assert "http.addr" in capsys.readouterr().err
    assert main(["serve", "--workers", "0"]) == 2


def test_cli_refuses_an_address_in_use(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A listener with SO_REUSEPORT (as granian binds) must not be joined silently."""
    with socket.socket() as holder:
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        holder.bind(("127.0.0.1", 0))
        holder.listen(1)
        port = holder.getsockname()[1]
        argv = ["serve", "--addr", f"127.0.0.1:{port}", "--root", str(tmp_path / "root")]
        assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"127.0.0.1:{port} is already in use" in err


def test_address_check_passes_a_free_port_and_port_zero() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    check_address_free("127.0.0.1", port)
    check_address_free("127.0.0.1", 0)
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen(1)
        with pytest.raises(AddressInUse) as info:
            check_address_free("127.0.0.1", holder.getsockname()[1])
    assert info.value.host == "127.0.0.1"


def test_token_format_is_distributions() -> None:
    state = UploadState("library/x", "5f3a…-uuid", 42, "2026-11-27T18:38:05.123456789Z")
    token = pack_upload_state(state, "k")
    raw = base64.urlsafe_b64decode(token)
    assert token.endswith("=") or len(raw) % 3 == 0  # padded, as Go's URLEncoding
    mac, payload = raw[:32], raw[32:]
    assert hmac.new(b"k", payload, hashlib.sha256).digest() == mac
    assert list(json.loads(payload)) == ["Name", "UUID", "Offset", "StartedAt"]
    assert unpack_upload_state(token, "k") == state
    with pytest.raises(BlobUploadInvalid):
        unpack_upload_state(token, "other")
    tampered = base64.urlsafe_b64encode(mac + payload.replace(b"42", b"43")).decode()
    with pytest.raises(BlobUploadInvalid):
        unpack_upload_state(tampered, "k")
    for junk in ("", "@@@", base64.urlsafe_b64encode(b"short").decode()):
        with pytest.raises(BlobUploadInvalid):
            unpack_upload_state(junk, "k")


@given(
    name=st.from_regex(r"[a-z0-9]{1,10}(/[a-z0-9]{1,10}){0,2}", fullmatch=True),
    offset=st.integers(min_value=0, max_value=2**53),
    secret=st.text(min_size=1, max_size=20),
)
def test_token_round_trip(name: str, offset: int, secret: str) -> None:
    state = UploadState(
        name, "6d1c2a3e-8f7b-4f1e-9a2b-1f2e3d4c5b6a", offset, "2026-01-01T00:00:00Z"
    )
    assert unpack_upload_state(pack_upload_state(state, secret), secret) == state


def test_go_time_format() -> None:
    assert format_go_time(datetime(2026, 11, 27, 18, 38, 5, tzinfo=UTC)) == "2026-11-27T18:38:05Z"
    assert (
        format_go_time(datetime(2026, 11, 27, 18, 38, 5, 120000, tzinfo=UTC))
        == "2026-11-27T18:38:05.12Z"
    )


def test_ranges() -> None:
    assert parse_range(None, 10) is None
    r = parse_range("bytes=2-4", 10)
    assert r is not None and (r.first, r.last, r.length) == (2, 4, 3)
    r = parse_range("bytes=5-", 10)
    assert r is not None and (r.first, r.last) == (5, 9)
    r = parse_range("bytes=-3", 10)
    assert r is not None and (r.first, r.last) == (7, 9)
    r = parse_range("bytes=8-100", 10)
    assert r is not None and r.last == 9
    assert parse_range("bytes=0-1,4-5", 10) is None
    assert parse_range("items=0-1", 10) is None
    with pytest.raises(RangeNotSatisfiable):
        parse_range("bytes=10-", 10)
    c = parse_content_range("0-99")
    assert (c.first, c.last) == (0, 99)
    assert parse_content_range("bytes 100-199/*").first == 100
    for bad in ("", "a-b", "5-1", "1-"):
        with pytest.raises(ValueError):
            parse_content_range(bad)


def test_routes() -> None:
    assert match("/v2/") is not None and match("/v2/").kind == "base"  # type: ignore[union-attr]
    r = match("/v2/a/b/c/blobs/uploads/")
    assert r is not None and (r.kind, r.name) == ("upload_start", "a/b/c")
    r = match("/v2/a/blobs/uploads/123")
    assert r is not None and (r.kind, r.uuid) == ("upload", "123")
    r = match("/v2/x/manifests/y/manifests/latest")
    assert r is not None and (r.kind, r.name, r.reference) == (
        "manifest",
        "x/manifests/y",
        "latest",
    )
    r = match("/v2/blobs/blobs/sha256:00")
    assert r is not None and (r.kind, r.name, r.digest) == ("blob", "blobs", "sha256:00")
    assert match("/v2/_catalog") is not None
    assert match("/elsewhere") is None
