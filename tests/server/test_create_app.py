"""``ocistore.server.create_app``: the registry's ASGI app under the server a user already runs.

In-process: what the factory takes (a config, a config file, options) and
what it refuses. With real servers: the app module a user would write
(README, "Running the ASGI app under your own server") is served by
uvicorn, by granian and by ocistore's own server (:mod:`ocistore.server.h1`),
each started on a free 127.0.0.1 port on the session's core; skopeo pushes
an image through it and pulls it back. Only h1 offers the
``http.response.zerocopysend`` extension, so the other two pull through the
app's plain ``http.response.body`` path. A missing skopeo fails the test
under ``OCISTORE_REQUIRE_PEERS=1`` (CI) and skips it elsewhere.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import shutil
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import ocistore
from conftest import core_env, require_peers
from interop._oci import Layout, make_image
from interop._peers import SECRET, Server, free_port, pull, push
from ocistore.server import RegistryApp, ServerConfig, create_app
from ocistore.server.app import APP_OPTIONS
from ocistore.server.config import ConfigError

from .asgi_client import Client

MiB = 1 << 20

APP_MODULE = """\
from ocistore.server import create_app

app = create_app(root={root!r}, secret={secret!r}, delete_enabled=True)
"""

H1_MAIN = """\
import sys

from ocistore.server.h1 import H1Settings, run_worker
from ocistore.server.run import bind_listener
from registry_app import app

run_worker(lambda: app, bind_listener("127.0.0.1", int(sys.argv[1])), H1Settings())
"""


@pytest.fixture
def made() -> Iterator[list[RegistryApp]]:
    """Apps a test made with create_app; their thread pools are shut down after it."""
    apps: list[RegistryApp] = []
    yield apps
    for app in apps:
        asyncio.run(app.stop_background())


def _v2(app: RegistryApp) -> int:
    return Client(app).get("/v2/").status


# -- the factory, in-process ---------------------------------------------------------


def test_options_alone(tmp_path: Path, made: list[RegistryApp]) -> None:
    app = create_app(root=tmp_path / "root", secret="s", delete_enabled=True, cache="inmemory")
    made.append(app)
    assert _v2(app) == 200
    assert app.services.secret == "s"
    assert app.services.registry.delete_enabled is True
    assert (tmp_path / "root").is_dir()


def test_config_file(
    tmp_path: Path, made: list[RegistryApp], caplog: pytest.LogCaptureFixture
) -> None:
    cfg = tmp_path / "config.yml"
    cfg.write_text(
        f"version: 0.1\n"
        f"storage:\n  filesystem:\n    rootdirectory: {tmp_path / 'from-file'}\n"
        f"  delete:\n    enabled: true\n"
        f"http:\n  secret: file-secret\n"
        f"notakey: 1\n"
    )
    with caplog.at_level(logging.WARNING, logger="ocistore.server"):
        app = create_app(cfg, delete_enabled=False)
    made.append(app)
    assert _v2(app) == 200
    assert (tmp_path / "from-file").is_dir()
    assert app.services.secret == "file-secret"
    assert app.services.registry.delete_enabled is False  # the option wins over the file
    assert [r.getMessage() for r in caplog.records] == [
        f"{cfg}: unknown configuration keys, ignored: notakey"
    ]


def test_server_config(tmp_path: Path, made: list[RegistryApp]) -> None:
    app = create_app(ServerConfig(root=str(tmp_path / "cfg"), secret="x", cache="none"))
    made.append(app)
    assert _v2(app) == 200
    assert app.services.registry.cache is None


def test_no_secret_generates_one_and_says_so(
    tmp_path: Path, made: list[RegistryApp], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="ocistore.server"):
        app = create_app(root=tmp_path / "root", cache="inmemory")
    made.append(app)
    assert app.services.secret
    assert [r.levelno for r in caplog.records] == [logging.WARNING]
    assert "same secret" in caplog.records[0].getMessage()


@pytest.mark.parametrize("name", ["addr", "workers", "stack", "log_level", "tls", "limits"])
def test_server_options_are_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(TypeError, match=f"option '{name}' belongs to the server"):
        create_app(root=tmp_path, secret="s", **{name: "1"})


def test_unknown_option_is_refused(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="unknown option 'rootdir'"):
        create_app(rootdir=tmp_path)


def test_bad_values_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="'memcached': use lmdb, inmemory, redis or none"):
        create_app(root=tmp_path, secret="s", cache="memcached")
    with pytest.raises(ConfigError, match=r"redis needs the config file's redis block"):
        create_app(root=tmp_path, secret="s", cache="redis")
    with pytest.raises(TypeError, match="not int"):
        create_app(42)  # type: ignore[arg-type]
    assert not (tmp_path / "ocistore-locks").exists()  # nothing was made


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("delete_enabled", "no"),
        ("secret", 5),
        ("root", 3),
        ("idle_timeout", True),
        ("redirect_disable", "yes"),
        ("redirect_expiry", True),
    ],
)
def test_options_of_the_wrong_type_are_refused(tmp_path: Path, name: str, value: object) -> None:
    with pytest.raises(TypeError, match=f"option {name}={value!r}: expected "):
        create_app(**{"root": tmp_path, "secret": "s", name: value})
    assert not (tmp_path / "ocistore-locks").exists()


def test_app_options_are_config_fields() -> None:
    fields = set(ServerConfig.__dataclass_fields__)
    server = {"addr", "workers", "stack", "log_level", "tls", "limits"}
    observability = {"debug_addr", "prometheus", "prometheus_path", "health"}
    logs = {"log_formatter", "log_fields"}
    assert set(APP_OPTIONS) == fields - server - observability - logs


# -- under real servers ----------------------------------------------------------------


def _need_skopeo() -> None:
    if shutil.which("skopeo") is None:
        if require_peers():
            pytest.fail("skopeo is required (OCISTORE_REQUIRE_PEERS=1) but not installed")
        pytest.skip("skopeo not installed")


def _app_server(tmp_path: Path, host: str) -> Server:
    """The README's app module served by ``host``, on a free port, on the session's core."""
    appdir = tmp_path / "app"
    appdir.mkdir()
    (appdir / "registry_app.py").write_text(
        APP_MODULE.format(root=str(tmp_path / "root"), secret=SECRET)
    )
    port = free_port()
    argv = {
        "uvicorn": [
            sys.executable, "-m", "uvicorn", "registry_app:app",
            "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning",
        ],
        "granian": [
            sys.executable, "-m", "granian", "registry_app:app", "--interface", "asgi",
            "--host", "127.0.0.1", "--port", str(port), "--no-ws", "--log-level", "warning",
        ],
        "h1": [sys.executable, str(appdir / "h1_main.py"), str(port)],
    }[host]  # fmt: skip
    if host == "h1":
        (appdir / "h1_main.py").write_text(H1_MAIN)
    env = core_env(ocistore.BACKEND)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(appdir), env.get("PYTHONPATH")]))
    return Server(
        name=f"{host}[{ocistore.BACKEND}]",
        argv=argv,
        port=port,
        log_path=tmp_path / f"{host}.log",
        env=env,
    )


@pytest.mark.peer
@pytest.mark.parametrize("host", ["h1", "uvicorn", "granian"])
def test_skopeo_push_and_pull_through_the_app(tmp_path: Path, host: str) -> None:
    _need_skopeo()
    image = make_image(random.Random(16), layers=2, layer_size=3 * MiB)  # > one body message
    src = Layout(tmp_path / "src")
    src.tag("v1", image)
    out = Layout(tmp_path / "out")
    server = _app_server(tmp_path, host)
    server.start()
    proc = server.proc
    assert proc is not None
    try:
        push(src.root, "v1", server.url, "asgi/app")
        pull(server.url, "asgi/app", "v1", out.root, "v1")
        pull(server.url, "asgi/app", image.digest, out.root, "bydigest")
    finally:
        server.stop()
    # Stopped by the SIGTERM (uvicorn re-raises it once shut down), not by the SIGKILL after.
    assert proc.returncode != -signal.SIGKILL, server.log()
    assert out.ref_digest("v1") == image.digest
    assert out.ref_digest("bydigest") == image.digest
    assert out.blob_digests() == src.blob_digests()
    for dgst in src.blob_digests():
        assert out.read_blob(dgst) == src.read_blob(dgst)
