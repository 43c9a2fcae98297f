"""The HTTP server ``ocistore serve`` runs on: ``ocistore`` (its own HTTP/1.1) or ``granian``.

1. ``ocistore.stack`` / ``--stack``: parsing, errors, precedence, the worker hand-off.
2. The app's two ways of sending a blob, in-process: one ``http.response.zerocopysend``
   file range when the server offers the extension, ``http.response.body`` messages
   otherwise, and the blob's reader closed after either.
3. Both stacks for real, as subprocesses on a free port, driven with curl: granian
   must keep working; the default stack with two workers serves concurrent pulls
   and stops cleanly on SIGTERM.
4. ``bind_listener``: the parent's listening socket.
"""

from __future__ import annotations

import asyncio
import errno
import os
import random
import select
import shutil
import signal
import socket
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import urljoin

import pytest
from hypothesis import given
from hypothesis import strategies as st

import ocistore
from conftest import require_peers
from interop._peers import OcistoreServer
from ocistore.cache import MemoryDescriptorCache
from ocistore.cli import main
from ocistore.digest import Digest
from ocistore.driver import InMemoryDriver
from ocistore.server.app import RegistryApp
from ocistore.server.config import (
    STACKS,
    ConfigError,
    ServerConfig,
    apply_overrides,
    config_from_mapping,
    load_config,
    unknown_keys,
)
from ocistore.server.http import SEND_CHUNK
from ocistore.server.run import AddressInUse, bind_listener
from ocistore.storage.blobstore import BlobStore
from ocistore.storage.registry import Registry
from waiting import wait_until

from .asgi_client import Client
from .conftest import SECRET, sha256
from .h1_supervisor_script import children_of, processes_where
from .helpers import push_blob

MiB = 1 << 20
ZEROCOPY = "http.response.zerocopysend"
WAIT = 60.0
"""Generous bound for a server to do something; never a measure of speed."""


# -- 1. configuration ------------------------------------------------------------------------


@pytest.mark.one_core
def test_default_stack_is_ocistore(tmp_path: Path) -> None:
    assert ServerConfig().stack == "ocistore"
    assert STACKS[0] == "ocistore" and "granian" in STACKS
    path = tmp_path / "c.yml"
    path.write_text("ocistore: {workers: 2}\n")
    cfg, unknown = load_config(path)
    assert (cfg.stack, unknown) == ("ocistore", [])
    path.write_text("")
    assert load_config(path)[0].stack == "ocistore"


@pytest.mark.one_core
@pytest.mark.parametrize(
    ("text", "stack"),
    [
        ("granian", "granian"),
        ("GRANIAN", "granian"),
        ("Granian", "granian"),
        ("ocistore", "ocistore"),
        ("OciStore", "ocistore"),
    ],
)
def test_stack_key_is_parsed(tmp_path: Path, text: str, stack: str) -> None:
    path = tmp_path / "c.yml"
    path.write_text(f"version: 0.1\nocistore:\n  workers: 3\n  stack: {text}\n")
    cfg, unknown = load_config(path)
    assert cfg.stack == stack
    assert cfg.workers == 3
    assert unknown == []


@pytest.mark.one_core
@given(name=st.sampled_from(STACKS), upper=st.lists(st.booleans(), min_size=8, max_size=8))
def test_stack_is_case_insensitive(name: str, upper: list[bool]) -> None:
    spelled = "".join(c.upper() if up else c for c, up in zip(name, upper, strict=False))
    assert config_from_mapping({"ocistore": {"stack": spelled}}).stack == name
    assert apply_overrides(ServerConfig(), stack=spelled).stack == name


@pytest.mark.one_core
@pytest.mark.parametrize("bad", ["uvicorn", "hypercorn", "granian2", "", "0", "[granian]"])
def test_invalid_stack_names_the_key_and_value(tmp_path: Path, bad: str) -> None:
    path = tmp_path / "c.yml"
    path.write_text(f"ocistore:\n  stack: {bad or repr('')}\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.key == "ocistore.stack"
    assert "ocistore.stack" in str(info.value)
    shown = "'granian'" if bad == "[granian]" else repr(bad)  # a YAML list stays a list
    assert shown in str(info.value)


@pytest.mark.one_core
def test_invalid_stack_flag_names_the_value() -> None:
    with pytest.raises(ConfigError) as info:
        apply_overrides(ServerConfig(), stack="uvicorn")
    assert info.value.key == "ocistore.stack"
    assert "'uvicorn'" in str(info.value)


@pytest.mark.one_core
def test_stack_key_is_not_unknown() -> None:
    doc = {
        "version": 0.1,
        "ocistore": {"stack": "granian", "workers": 2, "bogus": 1},
        "http": {"addr": "127.0.0.1:5000"},
    }
    assert unknown_keys(doc) == ["ocistore.bogus"]
    assert unknown_keys({"ocistore": {"stack": "ocistore"}}) == []


@pytest.mark.one_core
@pytest.mark.parametrize("stack", STACKS)
def test_config_round_trips_through_env_with_stack(stack: str) -> None:
    cfg = apply_overrides(ServerConfig(), stack=stack, workers=2, addr="127.0.0.1:0")
    env = cfg.to_env()
    assert env["stack"] == stack
    assert all(isinstance(v, str) for v in env.values())
    assert ServerConfig.from_env(env) == cfg
    assert ServerConfig.from_env(env).stack == stack


@pytest.fixture
def captured_serve(monkeypatch: pytest.MonkeyPatch) -> list[ServerConfig]:
    """``ocistore serve``'s configuration, captured instead of serving."""
    seen: list[ServerConfig] = []

    def fake_serve(cfg: ServerConfig, reload: object = None) -> int:
        seen.append(cfg)
        return 0

    monkeypatch.setattr("ocistore.server.run.serve", fake_serve)
    return seen


@pytest.mark.one_core
@pytest.mark.parametrize(
    ("in_file", "flag", "stack"),
    [
        ("granian", None, "granian"),
        ("granian", "ocistore", "ocistore"),
        ("ocistore", "granian", "granian"),
        ("GRANIAN", "OCISTORE", "ocistore"),
        (None, "Granian", "granian"),
        (None, None, "ocistore"),
    ],
)
def test_stack_flag_overrides_the_file(
    tmp_path: Path,
    captured_serve: list[ServerConfig],
    in_file: str | None,
    flag: str | None,
    stack: str,
) -> None:
    path = tmp_path / "c.yml"
    path.write_text("ocistore:\n  workers: 2\n" + (f"  stack: {in_file}\n" if in_file else ""))
    argv = ["serve", "--config", str(path), *(["--stack", flag] if flag else [])]
    assert main(argv) == 0
    assert [c.stack for c in captured_serve] == [stack]
    assert captured_serve[0].workers == 2


@pytest.mark.one_core
def test_cli_refuses_a_bad_stack(
    tmp_path: Path, captured_serve: list[ServerConfig], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["serve", "--stack", "uvicorn"]) == 2
    err = capsys.readouterr().err
    assert "ocistore.stack" in err and "uvicorn" in err
    path = tmp_path / "c.yml"
    path.write_text("ocistore: {stack: tornado}\n")
    assert main(["serve", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert "ocistore.stack" in err and "tornado" in err
    assert main(["serve", "--config", str(path), "--stack", "granian"]) == 2  # the file is bad
    assert captured_serve == []


@pytest.mark.one_core
def test_cli_does_not_warn_about_the_stack_key(
    tmp_path: Path, captured_serve: list[ServerConfig], capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "c.yml"
    path.write_text("ocistore:\n  stack: granian\n  idletimeout: 30s\n")
    assert main(["serve", "--config", str(path)]) == 0
    assert "unknown" not in capsys.readouterr().err
    assert captured_serve[0].stack == "granian"


# -- 2. the app's blob body, in-process -------------------------------------------------------


@dataclass
class Exchange:
    """What the app sent for one request. ``ranges`` holds, per zerocopysend message,
    the bytes its file held at (offset, count) when the message was sent."""

    messages: list[dict[str, Any]]
    ranges: list[bytes]

    @property
    def start(self) -> dict[str, Any]:
        assert self.messages[0]["type"] == "http.response.start"
        return self.messages[0]

    @property
    def status(self) -> int:
        return int(self.start["status"])

    def header(self, name: str) -> str | None:
        for k, v in self.start["headers"]:
            if k.decode().lower() == name:
                return str(v.decode())
        return None

    @property
    def rest(self) -> list[dict[str, Any]]:
        return self.messages[1:]

    def kinds(self) -> list[str]:
        return [m["type"] for m in self.rest]

    def body(self) -> bytes:
        assert all(t == "http.response.body" for t in self.kinds())
        return b"".join(m.get("body", b"") for m in self.rest)


def exchange(
    app: RegistryApp,
    method: str,
    path: str,
    *,
    zerocopy: bool,
    headers: dict[str, str] | None = None,
) -> Exchange:
    """One request to ``app`` from a server that offers (or not) ``zerocopysend``."""
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": [
            (b"host", b"registry.test"),
            *((k.lower().encode(), v.encode()) for k, v in (headers or {}).items()),
        ],
        "server": ("127.0.0.1", 5000),
        "client": ("127.0.0.1", 40000),
        "extensions": {ZEROCOPY: {}} if zerocopy else {},
    }
    messages: list[dict[str, Any]] = []
    ranges: list[bytes] = []

    async def receive() -> dict[str, Any]:
        if not messages:
            return {"type": "http.request", "body": b"", "more_body": False}
        await asyncio.sleep(3600)  # no more request; a real server would report a disconnect
        return {"type": "http.disconnect"}

    async def send(msg: dict[str, Any]) -> None:
        if msg["type"] == ZEROCOPY:
            f: BinaryIO = msg["file"]
            assert not f.closed, "the file must stay open until its send returns"
            ranges.append(os.pread(f.fileno(), msg["count"], msg["offset"]))
        messages.append(msg)

    asyncio.run(app(scope, receive, send))
    return Exchange(messages, ranges)


@pytest.fixture
def opened(monkeypatch: pytest.MonkeyPatch) -> list[BinaryIO]:
    """Every reader the blob store opens for a blob's data, in order."""
    readers: list[BinaryIO] = []
    original = BlobStore.open_data

    def recording(self: BlobStore, digest: Digest) -> BinaryIO:
        reader = original(self, digest)
        readers.append(reader)
        return reader

    monkeypatch.setattr(BlobStore, "open_data", recording)
    return readers


def blob_of(size: int, seed: int = 1) -> bytes:
    return random.Random(seed).randbytes(size)


# 5 MiB + 7: three body messages of at most SEND_CHUNK bytes, the last one odd.
SIZES = [1, 1000, SEND_CHUNK, 5 * MiB + 7]


@pytest.mark.parametrize("size", SIZES)
def test_get_with_the_extension_is_one_zerocopysend(
    app: RegistryApp, client: Client, opened: list[BinaryIO], size: int
) -> None:
    data = blob_of(size)
    dgst = push_blob(client, "zc/repo", data)
    opened.clear()
    ex = exchange(app, "GET", f"/v2/zc/repo/blobs/{dgst}", zerocopy=True)
    assert ex.status == 200
    assert ex.header("content-length") == str(size)
    assert ex.header("docker-content-digest") == dgst
    assert ex.kinds() == [ZEROCOPY]
    (msg,) = ex.rest
    assert (msg["offset"], msg["count"]) == (0, size)
    assert msg.get("more_body", False) is False
    assert ex.ranges == [data]
    assert len(opened) == 1 and msg["file"] is opened[0]
    assert msg["file"].closed, "the reader must be closed once the response is sent"


RANGES: list[tuple[str, Callable[[int], tuple[int, int]]]] = [
    ("bytes=0-0", lambda n: (0, 1)),
    ("bytes=100-199", lambda n: (100, 100)),
    ("bytes=1000-", lambda n: (1000, n - 1000)),
    ("bytes=-10", lambda n: (n - 10, 10)),
    (f"bytes={MiB - 1}-{3 * MiB}", lambda n: (MiB - 1, 2 * MiB + 2)),
    ("bytes=5-99999999999", lambda n: (5, n - 5)),
]


@pytest.mark.parametrize(("spec", "want"), RANGES, ids=[r[0] for r in RANGES])
@pytest.mark.parametrize("zerocopy", [True, False], ids=["zerocopy", "body"])
def test_range_get(
    app: RegistryApp,
    client: Client,
    opened: list[BinaryIO],
    spec: str,
    want: Callable[[int], tuple[int, int]],
    zerocopy: bool,
) -> None:
    data = blob_of(3 * MiB + 5, seed=2)
    dgst = push_blob(client, "zc/range", data)
    offset, count = want(len(data))
    opened.clear()
    ex = exchange(
        app, "GET", f"/v2/zc/range/blobs/{dgst}", zerocopy=zerocopy, headers={"Range": spec}
    )
    assert ex.status == 206
    assert ex.header("content-length") == str(count)
    assert ex.header("content-range") == f"bytes {offset}-{offset + count - 1}/{len(data)}"
    if zerocopy:
        assert ex.kinds() == [ZEROCOPY]
        assert (ex.rest[0]["offset"], ex.rest[0]["count"]) == (offset, count)
        assert ex.ranges == [data[offset : offset + count]]
    else:
        assert ZEROCOPY not in ex.kinds()
        assert ex.body() == data[offset : offset + count]
    assert len(opened) == 1 and opened[0].closed


@pytest.mark.parametrize("size", SIZES)
def test_get_without_the_extension_sends_body_messages(
    app: RegistryApp, client: Client, opened: list[BinaryIO], size: int
) -> None:
    data = blob_of(size, seed=3)
    dgst = push_blob(client, "body/repo", data)
    opened.clear()
    ex = exchange(app, "GET", f"/v2/body/repo/blobs/{dgst}", zerocopy=False)
    assert ex.status == 200
    assert ex.header("content-length") == str(size)
    assert ex.body() == data
    bodies = ex.rest
    assert all(0 < len(m["body"]) <= SEND_CHUNK for m in bodies)
    assert len(bodies) == -(-size // SEND_CHUNK)
    assert [m.get("more_body", False) for m in bodies] == [True] * (len(bodies) - 1) + [False]
    assert len(opened) == 1 and opened[0].closed


def test_a_reader_without_a_descriptor_falls_back_to_body_messages(tmp_path: Path) -> None:
    """The in-memory driver has no file to hand over: the extension is not used."""
    registry = Registry(InMemoryDriver(), cache=MemoryDescriptorCache(), delete_enabled=True)
    app = RegistryApp(registry, secret=SECRET, lock_dir=str(tmp_path / "locks"))
    try:
        data = blob_of(SEND_CHUNK + 3, seed=4)
        dgst = push_blob(Client(app), "mem/repo", data)
        ex = exchange(app, "GET", f"/v2/mem/repo/blobs/{dgst}", zerocopy=True)
        assert ex.status == 200
        assert ex.body() == data
        ex = exchange(
            app, "GET", f"/v2/mem/repo/blobs/{dgst}", zerocopy=True, headers={"Range": "bytes=-5"}
        )
        assert ex.status == 206 and ex.body() == data[-5:]
    finally:
        app.executor.shutdown(wait=True)


@pytest.mark.parametrize("zerocopy", [True, False], ids=["zerocopy", "body"])
def test_head_sends_no_file(
    app: RegistryApp, client: Client, opened: list[BinaryIO], zerocopy: bool
) -> None:
    data = blob_of(MiB + 1, seed=5)
    dgst = push_blob(client, "head/repo", data)
    opened.clear()
    for headers in ({}, {"Range": "bytes=10-19"}):
        ex = exchange(
            app, "HEAD", f"/v2/head/repo/blobs/{dgst}", zerocopy=zerocopy, headers=headers
        )
        assert ex.status == (206 if headers else 200)
        assert ex.header("content-length") == ("10" if headers else str(len(data)))
        assert ZEROCOPY not in ex.kinds()
        assert ex.body() == b""
    assert all(r.closed for r in opened)


@pytest.mark.parametrize("zerocopy", [True, False], ids=["zerocopy", "body"])
def test_empty_blob(
    app: RegistryApp, client: Client, opened: list[BinaryIO], zerocopy: bool
) -> None:
    dgst = push_blob(client, "empty/repo", b"")
    assert dgst == sha256(b"")
    opened.clear()
    for method in ("GET", "HEAD"):
        ex = exchange(app, method, f"/v2/empty/repo/blobs/{dgst}", zerocopy=zerocopy)
        assert ex.status == 200
        assert ex.header("content-length") == "0"
        assert ex.header("docker-content-digest") == dgst
        assert ZEROCOPY not in ex.kinds()
        assert ex.body() == b""
        assert ex.rest[-1].get("more_body", False) is False
    assert all(r.closed for r in opened)


@pytest.mark.parametrize("zerocopy", [True, False], ids=["zerocopy", "body"])
def test_repeated_gets_close_every_reader(
    app: RegistryApp, client: Client, opened: list[BinaryIO], zerocopy: bool
) -> None:
    data = blob_of(300_000, seed=6)
    dgst = push_blob(client, "many/repo", data)
    opened.clear()
    for i in range(20):
        headers = {"Range": f"bytes={i * 1000}-"} if i % 2 else {}
        ex = exchange(app, "GET", f"/v2/many/repo/blobs/{dgst}", zerocopy=zerocopy, headers=headers)
        got = ex.ranges[0] if zerocopy else ex.body()
        assert got == (data[i * 1000 :] if i % 2 else data)
    assert len(opened) == 20
    assert all(r.closed for r in opened)


# -- 3. real servers ---------------------------------------------------------------------------


def need_curl() -> str:
    path = shutil.which("curl")
    if path is None:
        if require_peers():
            pytest.fail("curl is required (OCISTORE_REQUIRE_PEERS=1) but not installed")
        pytest.skip("curl not installed")
    return path


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes


class Curl:
    """curl against one server; headers and body go to files, so a 100 Continue is skipped."""

    def __init__(self, base: str, work: Path) -> None:
        self.binary = need_curl()
        self.base = base
        self.work = work
        self.count = 0

    def _files(self) -> tuple[Path, Path]:
        self.count += 1
        return self.work / f"h{self.count}", self.work / f"b{self.count}"

    def argv(self, method: str, url: str, head: Path, out: Path, *args: str) -> list[str]:
        method_args = ["-I"] if method == "HEAD" else ["-X", method]
        return [
            self.binary,
            "-sS",
            "--max-time",
            str(int(WAIT * 5)),
            *method_args,
            "-D",
            str(head),
            "-o",
            str(out),
            *args,
            urljoin(self.base, url),
        ]

    def __call__(
        self, method: str, url: str, *args: str, data: bytes | Path | None = None
    ) -> Reply:
        head, out = self._files()
        extra = list(args)
        stdin = None
        if data is not None:
            extra += ["-H", "Content-Type: application/octet-stream"]
            if isinstance(data, Path):
                extra += ["--data-binary", f"@{data}"]
            else:
                extra += ["--data-binary", "@-"]
                stdin = data
        done = subprocess.run(
            self.argv(method, url, head, out, *extra),
            input=stdin,
            capture_output=True,
            timeout=WAIT * 5,
            check=False,
        )
        assert done.returncode == 0, done.stderr.decode(errors="replace")
        return Reply(
            *parse_head(head.read_bytes().decode("latin-1")),
            out.read_bytes() if out.exists() else b"",
        )


def parse_head(text: str) -> tuple[int, dict[str, str]]:
    """The status and headers of the last response in a ``curl -D`` file (after any 1xx)."""
    blocks = [b for b in text.split("\r\n\r\n") if b.strip()]
    lines = blocks[-1].split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers


def push_monolithic(curl: Curl, repo: str, data: bytes | Path, dgst: str) -> None:
    r = curl("POST", f"/v2/{repo}/blobs/uploads/?digest={dgst}", data=data)
    assert r.status == 201, r.body
    assert r.headers["docker-content-digest"] == dgst


def push_chunked(curl: Curl, repo: str, data: bytes, dgst: str, chunk: int) -> None:
    r = curl("POST", f"/v2/{repo}/blobs/uploads/")
    assert r.status == 202, r.body
    location = r.headers["location"]
    for pos in range(0, len(data), chunk):
        part = data[pos : pos + chunk]
        r = curl(
            "PATCH",
            location,
            "-H",
            f"Content-Range: {pos}-{pos + len(part) - 1}",
            data=part,
        )
        assert r.status == 202, r.body
        assert r.headers["range"] == f"0-{pos + len(part) - 1}"
        location = r.headers["location"]
    sep = "&" if "?" in location else "?"
    r = curl("PUT", f"{location}{sep}digest={dgst}")
    assert r.status == 201, r.body
    assert r.headers["docker-content-digest"] == dgst


def check_granian_pulls(curl: Curl, repo: str, data: bytes, dgst: str) -> None:
    blob = f"/v2/{repo}/blobs/{dgst}"
    r = curl("GET", blob)
    assert r.status == 200
    assert r.headers.get("server") == "granian"  # the stack asked for is the one serving
    assert r.headers["content-length"] == str(len(data))
    assert r.body == data
    n = len(data)
    spans = [(0, 0), (n // 3, 2 * n // 3), (n - 7, n - 1)]
    if n > 3 * MiB:
        spans.append((MiB - 3, 3 * MiB))
    for first, last in spans:
        r = curl("GET", blob, "-r", f"{first}-{last}")
        assert r.status == 206, (first, last)
        assert r.headers["content-range"] == f"bytes {first}-{last}/{n}"
        assert r.body == data[first : last + 1]
    r = curl("GET", blob, "-r", "-10")
    assert (r.status, r.body) == (206, data[-10:])
    r = curl("GET", blob, "-r", f"{n - 5}-{n + 100}")  # past the end: cut at the end
    assert (r.status, r.body) == (206, data[-5:])
    assert r.headers["content-range"] == f"bytes {n - 5}-{n - 1}/{n}"
    r = curl("GET", blob, "-r", f"{n}-")
    assert r.status == 416
    r = curl("HEAD", blob)
    assert r.status == 200  # (curl -I writes the head, not a body, to its output)
    assert r.headers["content-length"] == str(n)
    assert r.headers["docker-content-digest"] == dgst


def run_server(tmp_path: Path, *extra: str) -> Iterator[OcistoreServer]:
    """``ocistore serve`` on a free 127.0.0.1 port, on the session's core; stopped after."""
    server = OcistoreServer(tmp_path / "root", tmp_path, core=ocistore.BACKEND, extra=list(extra))
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_granian_stack_pushes_and_pulls(tmp_path: Path) -> None:
    need_curl()
    work = tmp_path / "curl"
    work.mkdir()
    for server in run_server(tmp_path, "--stack", "granian", "--log-level", "info"):
        curl = Curl(server.url, work)
        small = blob_of(1000, seed=7)
        push_monolithic(curl, "granian/small", small, sha256(small))
        check_granian_pulls(curl, "granian/small", small, sha256(small))
        mono = blob_of(3 * MiB + 11, seed=8)
        source = tmp_path / "mono.bin"
        source.write_bytes(mono)
        push_monolithic(curl, "granian/mono", source, sha256(mono))
        check_granian_pulls(curl, "granian/mono", mono, sha256(mono))
        chunked = blob_of(5 * MiB + 3, seed=9)
        push_chunked(curl, "granian/chunked", chunked, sha256(chunked), chunk=MiB + 17)
        check_granian_pulls(curl, "granian/chunked", chunked, sha256(chunked))
        r = curl("GET", f"/v2/granian/mono/blobs/{sha256(chunked)}")
        assert r.status == 404  # not linked into that repository
        log = server.log()
    assert ", granian)" in log, log  # the start line names the stack that served


def process_group(pgid: int) -> list[int]:
    """Every process (zombies too) in process group ``pgid``."""
    return processes_where(2, pgid)


def test_default_stack_two_workers_concurrent_pulls_and_sigterm(tmp_path: Path) -> None:
    need_curl()
    work = tmp_path / "curl"
    work.mkdir()
    data = blob_of(32 * MiB, seed=10)
    source = tmp_path / "big.bin"
    source.write_bytes(data)
    dgst = sha256(data)
    server = OcistoreServer(
        tmp_path / "root",
        tmp_path,
        core=ocistore.BACKEND,
        extra=["--workers", "2", "--log-level", "info"],
    )
    server.start()
    try:
        proc = server.proc
        assert proc is not None
        curl = Curl(server.url, work)
        push_monolithic(curl, "big/repo", source, dgst)
        blob = f"/v2/big/repo/blobs/{dgst}"
        n = len(data)
        wanted: list[tuple[list[str], int, bytes]] = [([], 200, data)] * 4 + [
            (["-r", f"{MiB + 1}-"], 206, data[MiB + 1 :]),
            (["-r", f"{n // 3}-{2 * n // 3}"], 206, data[n // 3 : 2 * n // 3 + 1]),
        ]
        pulls = []
        for i, (args, status, body) in enumerate(wanted):
            head, out = work / f"pull{i}.h", work / f"pull{i}.b"
            p = subprocess.Popen(
                curl.argv("GET", blob, head, out, *args),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            pulls.append((p, head, out, status, body))
        for p, head, out, status, body in pulls:
            _, err = p.communicate(timeout=WAIT * 5)
            assert p.returncode == 0, err.decode(errors="replace")
            got_status, headers = parse_head(head.read_bytes().decode("latin-1"))
            assert got_status == status
            assert headers.get("server") != "granian"
            assert headers["content-length"] == str(len(body))
            got = out.read_bytes()
            assert len(got) == len(body)
            assert got == body
        wait_until(lambda: len(children_of(proc.pid)) == 2, "two workers")
        workers = children_of(proc.pid)
        assert process_group(proc.pid) == sorted([proc.pid, *workers])
        proc.send_signal(signal.SIGTERM)
        try:
            status = proc.wait(WAIT)
        except subprocess.TimeoutExpired:
            pytest.fail(f"ocistore serve did not stop on SIGTERM:\n{server.log()}")
        assert status == 0, server.log()
        assert [pid for pid in workers if Path(f"/proc/{pid}").exists()] == [], server.log()
        assert process_group(proc.pid) == [], "a worker outlived ocistore serve"
        log = server.log()
        assert ", ocistore)" in log and "2 workers" in log, log
    finally:
        server.stop()


# -- 4. bind_listener --------------------------------------------------------------------------


@pytest.mark.one_core
@pytest.mark.parametrize("reuseport", [False, True], ids=["plain", "reuseport"])
def test_bind_listener_refuses_an_address_in_use(reuseport: bool) -> None:
    with socket.socket() as holder:
        if reuseport:
            holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        holder.bind(("127.0.0.1", 0))
        holder.listen(1)
        port = holder.getsockname()[1]
        with pytest.raises(AddressInUse) as info:
            bind_listener("127.0.0.1", port)
    assert (info.value.host, info.value.port) == ("127.0.0.1", port)
    assert info.value.errno == errno.EADDRINUSE
    assert f"127.0.0.1:{port} is already in use" in str(info.value)


@pytest.mark.one_core
def test_bind_listener_refuses_its_own_address() -> None:
    with bind_listener("127.0.0.1", 0) as first:
        port = first.getsockname()[1]
        with pytest.raises(AddressInUse):
            bind_listener("127.0.0.1", port)
        with socket.socket() as late, pytest.raises(OSError) as info:
            late.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            late.bind(("127.0.0.1", port))  # no SO_REUSEPORT on ours: nobody can join it
        assert info.value.errno == errno.EADDRINUSE


def open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


@pytest.mark.one_core
def test_bind_listener_leaks_no_socket_when_it_fails() -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen(1)
        before = open_fds()
        for _ in range(5):
            with pytest.raises(AddressInUse):
                bind_listener("127.0.0.1", holder.getsockname()[1])
        assert open_fds() == before


@pytest.mark.one_core
def test_bind_listener_returns_a_listening_non_blocking_socket() -> None:
    sock = bind_listener("127.0.0.1", 0)
    with sock:
        host, port = sock.getsockname()
        assert host == "127.0.0.1" and port != 0
        assert (sock.family, sock.type) == (socket.AF_INET, socket.SOCK_STREAM)
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) == 1
        assert sock.getblocking() is False
        assert sock.gettimeout() == 0.0
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) == 0
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR) != 0
        with pytest.raises(BlockingIOError):
            sock.accept()  # nobody waiting: a non-blocking accept returns at once
        with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as client:
            ready, _, _ = select.select([sock], [], [], WAIT)
            assert ready == [sock]
            conn, addr = sock.accept()
            with conn:
                assert addr == client.getsockname()
                conn.sendall(b"hi")
                assert client.recv(2) == b"hi"
            # The server side closed first: its end is in TIME_WAIT now.
            assert client.recv(1) == b""
    # SO_REUSEADDR: a restart binds again despite the connection in TIME_WAIT.
    again = bind_listener("127.0.0.1", port)
    again.close()
