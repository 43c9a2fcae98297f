"""A host's manifest type over HTTP: registered in its app module, pushed with oras.

The host app module registers the bundle type of ``custom_manifest_type`` and
makes the app with ``create_app``; uvicorn serves it on a free 127.0.0.1 port on
the session's core. oras uploads the parts, PUTs the bundle with its own
Content-Type and reads it back; a type the host did not register and a bundle
with a missing part are refused. The test then reads the bundle back through the
library from the same storage root. A missing oras fails the test under
``OCISTORE_REQUIRE_PEERS=1`` (CI) and skips it elsewhere.
"""

from __future__ import annotations

import importlib
import json
import os
import random
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import ocistore
from conftest import core_env, require_peers
from custom_manifest_type import BUNDLE, Bundle, bundle_payload
from interop._peers import SECRET, Server, free_port
from ocistore.descriptor import Descriptor
from ocistore.digest import Digest
from ocistore.driver import FilesystemDriver
from ocistore.manifest import register_manifest_type, unregister_manifest_type
from ocistore.server.app import RegistryApp
from ocistore.storage import Registry

from .asgi_client import Client
from .helpers import push_blob

TESTS = Path(__file__).resolve().parents[1]
OTHER = "application/vnd.example.other.manifest.v1+json"

HOST_APP = """\
from custom_manifest_type import BUNDLE, Bundle
from ocistore.manifest import register_manifest_type
from ocistore.server import create_app

register_manifest_type(BUNDLE, Bundle)
app = create_app(root={root!r}, secret={secret!r}, cache="inmemory")
"""


def _need_oras() -> None:
    try:
        importlib.import_module("oras.client")
    except ImportError:
        if require_peers():
            pytest.fail("python package oras is required (OCISTORE_REQUIRE_PEERS=1)")
        pytest.skip("python package oras not installed")


@pytest.fixture
def bundle_type() -> Iterator[None]:
    """The same type registered in the test process, to read what the app stored."""
    register_manifest_type(BUNDLE, Bundle)
    yield
    unregister_manifest_type(BUNDLE)


def _host_server(tmp_path: Path, root: Path) -> Server:
    appdir = tmp_path / "app"
    appdir.mkdir()
    (appdir / "host_app.py").write_text(HOST_APP.format(root=str(root), secret=SECRET))
    port = free_port()
    env = core_env(ocistore.BACKEND)
    env["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(appdir), str(TESTS), env.get("PYTHONPATH")])
    )
    argv = [
        sys.executable, "-m", "uvicorn", "host_app:app",
        "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning",
    ]  # fmt: skip
    return Server(
        name=f"host-app[{ocistore.BACKEND}]",
        argv=argv,
        port=port,
        log_path=tmp_path / "host-app.log",
        env=env,
    )


def _error_code(response: Any) -> str:
    code: str = response.json()["errors"][0]["code"]
    return code


@pytest.mark.peer
def test_host_type_pushed_with_oras_and_read_back(tmp_path: Path, bundle_type: None) -> None:
    _need_oras()
    import oras.client
    import oras.oci

    root = tmp_path / "root"
    server = _host_server(tmp_path, root)
    rng = random.Random(17)
    blobs = {"readme": b"a bundle part\n", "data": rng.randbytes(300_000)}
    server.start()
    try:
        host = server.url.removeprefix("http://")
        client = oras.client.OrasClient(hostname=host, insecure=True)
        container = client.get_container(f"{host}/host/bundles:b1")
        parts = []
        for name, data in blobs.items():
            path = tmp_path / name
            path.write_bytes(data)
            layer = oras.oci.NewLayer(str(path), media_type="application/octet-stream")
            response = client.upload_blob(str(path), container, layer)
            assert response.status_code == 201, response.text
            parts.append(
                Descriptor(
                    digest=layer["digest"], size=layer["size"], media_type=layer["mediaType"]
                )
            )
        payload = bundle_payload(parts)

        def put(ref: str, body: bytes, media_type: str) -> Any:
            url = f"{client.prefix}://{container.manifest_url(ref)}"
            return client.do_request(url, "PUT", data=body, headers={"Content-Type": media_type})

        response = put("b1", payload, BUNDLE)
        assert response.status_code == 201, response.text
        assert response.headers["Docker-Content-Digest"] == str(Digest.from_bytes(payload))

        fetched = client.get_manifest(container, allowed_media_type=[BUNDLE])
        assert fetched == json.loads(payload)

        other = json.dumps({"schemaVersion": 2, "mediaType": OTHER, "parts": []}).encode()
        refused = put("other", other, OTHER)
        assert (refused.status_code, _error_code(refused)) == (400, "MANIFEST_INVALID")
        assert OTHER in refused.text

        absent = Descriptor(digest=Digest.from_bytes(b"never pushed"), size=12)
        missing = put("missing", bundle_payload([parts[0], absent]), BUNDLE)
        assert (missing.status_code, _error_code(missing)) == (400, "MANIFEST_BLOB_UNKNOWN")
        assert str(absent.digest) in missing.text
        assert client.get_tags(f"{host}/host/bundles") == ["b1"]
    finally:
        server.stop()

    repo = Registry(FilesystemDriver(root)).repository("host/bundles")
    manifest = repo.manifests.get(repo.tags.resolve("b1"))
    assert type(manifest) is Bundle
    assert manifest.payload == payload
    assert [d.digest for d in manifest.references()] == [p.digest for p in parts]
    for part, data in zip(parts, blobs.values(), strict=True):
        assert repo.blobs.get(part.digest) == data


def test_accept_negotiation_knows_registered_types(app: RegistryApp, client: Client) -> None:
    """A client naming only a host's type is not a generic tool once that type is registered."""
    repo = "host/negotiation"
    parts = [Descriptor(digest=push_blob(client, repo, b"part"), size=4)]
    payload = json.dumps({"schemaVersion": 2, "mediaType": OTHER}).encode()
    image = client.put(
        f"/v2/{repo}/manifests/v1",
        body=_empty_image(client, repo),
        headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"},
    )
    assert image.status == 201, image.body
    assert client.get(f"/v2/{repo}/manifests/v1", headers={"Accept": BUNDLE}).status == 200
    register_manifest_type(BUNDLE, Bundle)
    try:
        asked = client.get(f"/v2/{repo}/manifests/v1", headers={"Accept": BUNDLE})
        assert (asked.status, asked.error_codes) == (404, ["MANIFEST_UNKNOWN"])
        stored = client.put(
            f"/v2/{repo}/manifests/b1",
            body=bundle_payload(parts),
            headers={"Content-Type": BUNDLE},
        )
        assert stored.status == 201, stored.body
        got = client.get(f"/v2/{repo}/manifests/b1", headers={"Accept": BUNDLE})
        assert (got.status, got.header("content-type")) == (200, BUNDLE)
    finally:
        unregister_manifest_type(BUNDLE)
    assert client.get(f"/v2/{repo}/manifests/v1", headers={"Accept": BUNDLE}).status == 200
    refused = client.put(f"/v2/{repo}/manifests/x", body=payload, headers={"Content-Type": OTHER})
    assert (refused.status, refused.error_codes) == (400, ["MANIFEST_INVALID"])


def _empty_image(client: Client, repo: str) -> bytes:
    config = push_blob(client, repo, b"{}")
    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": config,
                "size": 2,
            },
            "layers": [],
        }
    ).encode()
