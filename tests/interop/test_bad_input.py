"""Issue 6, "Bad input": damaged trees and forged tokens, as a shared root can hold them.

- a hash state that is truncated, corrupt or of another algorithm: ocistore
  re-hashes (commit reads the upload once more) and logs a warning;
- a ``_layers`` link whose blob is gone (distribution's garbage-collect leaves
  them): an unknown blob, never an error 500;
- a link file with a trailing newline, an unknown algorithm or garbage: reported
  with its path, and the rest of the tree keeps working;
- a ``_state`` token with a bad HMAC (or otherwise forged): BLOB_UPLOAD_INVALID.
"""

from __future__ import annotations

import logging
import random
import shutil
import struct
from collections.abc import Callable
from pathlib import Path

import pytest

from ocistore import _core
from ocistore.descriptor import Descriptor
from ocistore.driver.filesystem import FilesystemDriver
from ocistore.errors import BlobUnknown, ManifestUnknown
from ocistore.storage.registry import Registry

from . import _oci, _state
from ._client import OCTET, Client, with_digest
from ._http import request, retarget
from ._peers import SECRET, GoRegistry, OcistoreServer

pytestmark = pytest.mark.peer

V2 = "docker/registry/v2"


def sha512_state(count: int) -> bytes:
    """A well-formed Go crypto/sha512 state (magic ``sha\\x07``) claiming ``count`` bytes."""
    iv = (0x6A09E667F3BCC908, 0xBB67AE8584CAA73B, 0x3C6EF372FE94F82B, 0xA54FF53A5F1D36F1)
    iv += (0x510E527FADE682D1, 0x9B05688C2B3E6C1F, 0x1F83D9ABFB41BD6B, 0x5BE0CD19137E2179)
    block = bytes(128)  # a tail of zero bytes is still well formed
    return b"sha\x07" + struct.pack(">8Q", *iv) + block + struct.pack(">Q", count)


def damage(kind: str, good: bytes, size: int) -> bytes | None:
    if kind == "truncated":
        return good[:50]
    if kind == "corrupt-magic":
        return b"xyz\x03" + good[4:]
    if kind == "wrong-count":
        return good[:-8] + struct.pack(">Q", size + 64)
    if kind == "padding":  # bytes past the buffered tail must be zero
        return good[:-9] + b"\x01" + good[-8:]
    if kind == "other-algorithm":
        return sha512_state(size)
    if kind == "missing":
        return None
    raise ValueError(kind)


KINDS = ["truncated", "corrupt-magic", "wrong-count", "padding", "other-algorithm", "missing"]


@pytest.mark.parametrize("kind", KINDS)
def test_bad_hash_state_falls_back_to_rehash(
    kind: str,
    go: GoRegistry,
    root: Path,
    rng: random.Random,
    caplog: pytest.LogCaptureFixture,
) -> None:
    data = rng.randbytes(100_003)  # not a multiple of the block: the tail is buffered
    head = data[:60_001]
    post = request("POST", f"{go.url}/v2/bad/state/blobs/uploads/")
    patch = request("PATCH", post.location(), headers=OCTET, body=head)
    assert patch.status == 202
    uuid = post.header("Docker-Upload-UUID")
    state = root / V2 / f"repositories/bad/state/_uploads/{uuid}/hashstates/sha256/{len(head)}"
    bad = damage(kind, state.read_bytes(), len(head))
    if bad is None:
        state.unlink()
    else:
        state.write_bytes(bad)

    registry = Registry(FilesystemDriver(root))
    with caplog.at_level(logging.WARNING, logger="ocistore"):
        writer = registry.repository("bad/state").blobs.resume(uuid)
    assert not writer.resumed_from_state and not writer.hashing
    if _core.HASH_STATES:  # the pure core never reads states, so it has nothing to warn about
        warned = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
        assert any(uuid in m for m in warned), warned
        if kind != "missing":
            assert any(str(len(head)) in m and "hashstates" in m for m in warned), warned
    writer.write(data[len(head) :])
    desc = writer.commit(Descriptor(digest=_oci.sha256(data), size=len(data)))
    assert writer.reread_bytes == len(data)
    assert desc.digest == _oci.sha256(data)


def test_bad_hash_state_over_http(
    root: Path,
    rng: random.Random,
    start_go: Callable[..., GoRegistry],
    start_ocistore: Callable[..., OcistoreServer],
) -> None:
    """The server finishes the upload right despite a corrupt state (PATCH then PUT)."""
    go = start_go(root)
    oci = start_ocistore(root)
    data = rng.randbytes(50_000)
    post = request("POST", f"{go.url}/v2/bad/state/http/blobs/uploads/")
    patch = request("PATCH", post.location(), headers=OCTET, body=data[:20_000])
    uuid = post.header("Docker-Upload-UUID")
    state = root / V2 / f"repositories/bad/state/http/_uploads/{uuid}/hashstates/sha256/20000"
    state.write_bytes(state.read_bytes()[:40])
    more = request(
        "PATCH", retarget(patch.location(), oci.url), headers=OCTET, body=data[20_000:30_000]
    )
    assert more.status == 202, (more, oci.log())
    put = request(
        "PUT", with_digest(more.location(), _oci.sha256(data)), headers=OCTET, body=data[30_000:]
    )
    assert put.status == 201, (put, oci.log())
    assert put.header("Docker-Content-Digest") == _oci.sha256(data)


@pytest.fixture
def damaged(go: GoRegistry, root: Path, rng: random.Random) -> dict[str, object]:
    """A Go-written repository with one good and four damaged layer links, and a swept blob."""
    image = _oci.make_image(rng, layers=6, layer_size=512)
    client = Client(go.url)
    assert client.push_image("bad/links", image, "v1").status == 201
    other = _oci.make_image(rng, layers=1, layer_size=512)
    assert client.push_image("fine/repo", other, "v1").status == 201
    go.stop()
    layers = [_oci.sha256(layer) for layer in image.layers]
    repo = root / V2 / "repositories/bad/links"

    def link(digest: str) -> Path:
        return repo / "_layers/sha256" / digest.split(":")[1] / "link"

    link(layers[0]).write_bytes(layers[0].encode() + b"\n")
    link(layers[1]).write_bytes(b"md5:0123456789abcdef0123456789abcdef")
    link(layers[2]).write_bytes(b"\x00\xffgarbage")
    link(layers[3]).write_bytes(b"")
    hexpart = layers[4].split(":")[1]
    shutil.rmtree(root / V2 / "blobs/sha256" / hexpart[:2] / hexpart)
    return {
        "image": image,
        "other": other,
        "bad": {layers[i]: link(layers[i]) for i in range(4)},
        "swept": layers[4],
        "good": layers[5],
    }


def test_damaged_links_storage_api(
    damaged: dict, root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    registry = Registry(FilesystemDriver(root))
    blobs = registry.repository("bad/links").blobs
    for digest, path in damaged["bad"].items():
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="ocistore"), pytest.raises(BlobUnknown):
            blobs.stat(digest)
        relative = str(path.relative_to(root))
        assert any(relative in r.getMessage() for r in caplog.records), (
            relative,
            [r.getMessage() for r in caplog.records],
        )
    with pytest.raises(BlobUnknown):
        blobs.stat(damaged["swept"])
    assert not blobs.exists(damaged["swept"])
    image: _oci.Image = damaged["image"]
    assert blobs.get(damaged["good"]) == image.blobs[damaged["good"]]
    assert blobs.get(_oci.sha256(image.config)) == image.config
    repo = registry.repository("bad/links")
    assert repo.manifests.get(image.digest).payload == image.manifest
    assert repo.tags.get("v1").digest == image.digest
    assert registry.repositories() == ["bad/links", "fine/repo"]
    listed = set(repo.blobs.enumerate())
    assert damaged["good"] in listed and damaged["swept"] not in listed


def test_damaged_links_over_http(damaged: dict, root: Path, start_ocistore) -> None:
    oci = start_ocistore(root)
    client = Client(oci.url)
    for digest in [*damaged["bad"], damaged["swept"]]:
        head = client.head(f"/v2/bad/links/blobs/{digest}")
        get = client.get(f"/v2/bad/links/blobs/{digest}")
        assert head.status == 404 and get.status == 404, (digest, head, get, oci.log())
        assert get.error_codes() == ["BLOB_UNKNOWN"]
    image: _oci.Image = damaged["image"]
    assert client.get(f"/v2/bad/links/blobs/{damaged['good']}").body == image.blobs[damaged["good"]]
    manifest = client.get_manifest("bad/links", "v1")
    assert manifest.status == 200 and manifest.body == image.manifest
    assert client.catalog() == ["bad/links", "fine/repo"]
    other: _oci.Image = damaged["other"]
    assert client.get_manifest("fine/repo", "v1").body == other.manifest
    # A client re-pushing the damaged layer repairs the link.
    digest, _ = next(iter(damaged["bad"].items()))
    assert client.push_blob("bad/links", image.blobs[digest]).status == 201
    assert client.get(f"/v2/bad/links/blobs/{digest}").body == image.blobs[digest]


@pytest.mark.parametrize("where", ["tag", "revision", "swept-data"])
def test_damaged_manifest_links(
    where: str, go: GoRegistry, root: Path, rng: random.Random, start_ocistore
) -> None:
    """A garbage tag or revision link, or a manifest whose blob data was swept:
    that manifest is unknown (404, never 500), the rest is served."""
    client = Client(go.url)
    damaged_image = _oci.make_image(rng, layers=1)
    fine = _oci.make_image(rng, layers=1)
    assert client.push_image("bad/manifests", damaged_image, "broken").status == 201
    assert client.push_image("bad/manifests", fine, "fine").status == 201
    go.stop()
    repo = root / V2 / "repositories/bad/manifests/_manifests"
    hexpart = damaged_image.digest.split(":")[1]
    if where == "tag":
        link = repo / "tags/broken/current/link"
        link.write_bytes(link.read_bytes() + b"\n")
    elif where == "revision":
        link = repo / "revisions/sha256" / hexpart / "link"
        link.write_bytes(link.read_bytes() + b"\n")
    else:
        shutil.rmtree(root / V2 / "blobs/sha256" / hexpart[:2] / hexpart)

    registry = Registry(FilesystemDriver(root))
    manifests = registry.repository("bad/manifests").manifests
    if where != "tag":
        assert not manifests.exists(damaged_image.digest)
        with pytest.raises(ManifestUnknown):
            manifests.get(damaged_image.digest)
    assert manifests.get(fine.digest).payload == fine.manifest

    oci = start_ocistore(root)
    c = Client(oci.url)
    for ref in ("broken", damaged_image.digest):
        if where == "tag" and ref != "broken":
            continue
        for method in ("GET", "HEAD"):
            resp = request(
                method,
                f"{oci.url}/v2/bad/manifests/manifests/{ref}",
                headers={"Accept": _oci.OCI_MANIFEST},
            )
            assert resp.status == 404, (method, ref, resp, oci.log())
            if method == "GET":
                assert resp.error_codes() == ["MANIFEST_UNKNOWN"], resp
    assert c.get_manifest("bad/manifests", "fine").body == fine.manifest
    assert c.tags("bad/manifests") == ["broken", "fine"]


def forged_tokens(location: str) -> dict[str, str]:
    """Ways to tamper with a genuine token (the upload it names does exist)."""
    token = _state.token_of(location)
    state = _state.unpack(SECRET, token)
    raw = token.encode()
    return {
        "bad-hmac": _state.pack("another-secret", state),
        "flipped-byte": (raw[:10] + (b"A" if raw[10:11] != b"A" else b"B") + raw[11:]).decode(),
        "other-offset": _state.pack("another-secret", {**state, "Offset": 5}),
        "not-base64": "!!!not-base64!!!",
        "truncated": token[:20],
        "empty": "",
    }


def test_forged_state_refused(oci: OcistoreServer) -> None:
    post = request("POST", f"{oci.url}/v2/forged/state/blobs/uploads/")
    assert post.status == 202, post
    for kind, token in forged_tokens(post.location()).items():
        url = _state.with_token(post.location(), token)
        for method, target, body in (
            ("GET", url, None),
            ("PATCH", url, b"abc"),
            ("PUT", with_digest(url, _oci.sha256(b"")), b""),
            ("DELETE", url, None),
        ):
            resp = request(method, target, headers=OCTET, body=body)
            assert resp.error_codes() == ["BLOB_UPLOAD_INVALID"], (kind, method, resp)
            assert resp.status == 404, (kind, method, resp)
    # the genuine token still works: nothing was written or cancelled by the forgeries
    status = request("GET", post.location())
    assert status.status == 204 and status.header("Range") == "0-0", status


def test_token_for_another_repository_refused(oci: OcistoreServer) -> None:
    """A genuine token replayed against another repository name or upload id."""
    post = request("POST", f"{oci.url}/v2/token/one/blobs/uploads/")
    other = request("POST", f"{oci.url}/v2/token/two/blobs/uploads/")
    token = _state.token_of(post.location())
    replayed = _state.with_token(other.location(), token)
    resp = request("GET", replayed)
    assert resp.error_codes() == ["BLOB_UPLOAD_INVALID"], resp
