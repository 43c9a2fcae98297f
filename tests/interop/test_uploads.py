"""Issue 6, item 2: an upload begun on one implementation is finished on the other.

- begun on the Go registry (POST, PATCHes), finished by ocistore's
  ``resume(uuid)`` from the hash states Go wrote, without re-reading the data;
- begun on ``ocistore serve``, finished on the Go registry over HTTP, which
  needs ocistore's ``_state`` token to be distribution's, signed with the
  shared ``http.secret``;
- PATCHes alternating between the two servers, as a round-robin balancer
  sends them, following the newest Location each time.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

import pytest

from ocistore import _core
from ocistore.descriptor import Descriptor
from ocistore.driver.filesystem import FilesystemDriver
from ocistore.storage.registry import Registry

from . import _oci, _state
from ._client import OCTET, Client, with_digest
from ._http import request, retarget
from ._peers import SECRET, GoRegistry, OcistoreServer

pytestmark = pytest.mark.peer

V2 = "docker/registry/v2"
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def check_upload_answer(resp_location: str, uuid: str | None, *, name: str, offset: int) -> None:
    """An upload answer carries a UUID and distribution's token for the current offset."""
    assert uuid is not None and UUID.fullmatch(uuid), uuid
    assert f"/v2/{name}/blobs/uploads/{uuid}?" in resp_location, resp_location
    token = _state.token_of(resp_location)
    _state.check_format(token, SECRET, name=name, uuid=uuid, offset=offset)


def test_ocistore_tokens_are_distributions(oci: OcistoreServer) -> None:
    """Every upload answer from ocistore carries a token the Go registry would accept."""
    name = "tok/en"
    post = request("POST", f"{oci.url}/v2/{name}/blobs/uploads/")
    assert post.status == 202, post
    uuid = post.header("Docker-Upload-UUID")
    check_upload_answer(post.location(), uuid, name=name, offset=0)
    patch = request("PATCH", post.location(), headers=OCTET, body=b"x" * 1000)
    assert patch.status == 202, patch
    check_upload_answer(
        patch.location(), patch.header("Docker-Upload-UUID"), name=name, offset=1000
    )
    status = request("GET", patch.location())
    assert status.status == 204, status
    assert status.header("Range") == "0-999"
    check_upload_answer(
        status.location(), status.header("Docker-Upload-UUID"), name=name, offset=1000
    )


def test_ocistore_upload_finished_on_go(
    root: Path,
    rng: random.Random,
    start_go: Callable[..., GoRegistry],
    start_ocistore: Callable[..., OcistoreServer],
) -> None:
    go = start_go(root)
    oci = start_ocistore(root)
    data = rng.randbytes(300_000)
    digest = _oci.sha256(data)
    post = request("POST", f"{oci.url}/v2/up/oci2go/blobs/uploads/")
    assert post.status == 202, post
    patch = request(
        "PATCH",
        post.location(),
        headers={**OCTET, "Content-Range": f"0-{100_000 - 1}"},
        body=data[:100_000],
    )
    assert patch.status == 202, patch
    # Go resumes the upload from ocistore's token and data, and appends.
    go_patch = request(
        "PATCH", retarget(patch.location(), go.url), headers=OCTET, body=data[100_000:200_000]
    )
    assert go_patch.status == 202, (go_patch, go.log())
    assert go_patch.header("Range") == f"0-{200_000 - 1}"
    put = request(
        "PUT", with_digest(go_patch.location(), digest), headers=OCTET, body=data[200_000:]
    )
    assert put.status == 201, (put, go.log())
    assert put.header("Docker-Content-Digest") == digest
    for url in (go.url, oci.url):
        got = request("GET", f"{url}/v2/up/oci2go/blobs/{digest}")
        assert got.status == 200 and got.body == data, url


@pytest.mark.parametrize("first", ["go", "ocistore"])
def test_round_robin_patches(
    first: str,
    root: Path,
    rng: random.Random,
    start_go: Callable[..., GoRegistry],
    start_ocistore: Callable[..., OcistoreServer],
) -> None:
    """POST, seven PATCHes and the PUT alternate between the two servers."""
    go = start_go(root)
    oci = start_ocistore(root)
    servers = [go.url, oci.url] if first == "go" else [oci.url, go.url]
    data = rng.randbytes(8 * 4096 + 123)
    put = Client(servers[0]).push_chunks(
        "round/robin", data, chunk=4096, route=lambda i: servers[i % 2]
    )
    assert put.status == 201, (put, go.log(), oci.log())
    digest = _oci.sha256(data)
    assert put.header("Docker-Content-Digest") == digest
    for url in servers:
        got = request("GET", f"{url}/v2/round/robin/blobs/{digest}")
        assert got.status == 200 and got.body == data, url


def test_go_refuses_a_stale_location(go: GoRegistry, rng: random.Random) -> None:
    """Why a client must follow the newest Location: Go refuses a token whose Offset is stale.

    (The issue expected the upload to be cancelled too; 2.8.2 leaves it in place
    and only refuses the request, appending nothing.)
    """
    post = request("POST", f"{go.url}/v2/stale/loc/blobs/uploads/")
    first = request("PATCH", post.location(), headers=OCTET, body=rng.randbytes(100))
    assert first.status == 202
    stale = request("PATCH", post.location(), headers=OCTET, body=rng.randbytes(100))
    assert stale.status == 404 and stale.error_codes() == ["BLOB_UPLOAD_INVALID"]
    status = request("GET", first.location())
    assert status.status == 204 and status.header("Range") == "0-99", status


def test_go_token_accepted_by_ocistore_and_bad_hmac_refused(
    root: Path,
    start_go: Callable[..., GoRegistry],
    start_ocistore: Callable[..., OcistoreServer],
) -> None:
    go = start_go(root)
    oci = start_ocistore(root)
    post = request("POST", f"{go.url}/v2/go/token/blobs/uploads/")
    uuid = post.header("Docker-Upload-UUID")
    status = request("GET", retarget(post.location(), oci.url))
    assert status.status == 204, (status, oci.log())
    assert status.header("Docker-Upload-UUID") == uuid
    assert status.header("Range") == "0-0"
    forged = _state.pack(
        "not-the-shared-secret", _state.unpack(SECRET, _state.token_of(post.location()))
    )
    forged_location = _state.with_token(retarget(post.location(), oci.url), forged)
    for method, url, body in (
        ("GET", forged_location, None),
        ("PATCH", forged_location, b"abc"),
        ("PUT", with_digest(forged_location, _oci.sha256(b"")), b""),
    ):
        resp = request(method, url, headers=OCTET, body=body)
        assert resp.error_codes() == ["BLOB_UPLOAD_INVALID"], (method, resp)
        assert resp.status == 404, resp


def go_upload(go: GoRegistry, name: str, chunks: list[bytes]) -> str:
    """POST and one PATCH per chunk on the Go registry; returns the upload's UUID."""
    post = request("POST", f"{go.url}/v2/{name}/blobs/uploads/")
    assert post.status == 202, post
    location = post.location()
    for chunk in chunks:
        patch = request("PATCH", location, headers=OCTET, body=chunk)
        assert patch.status == 202, patch
        location = patch.location()
    uuid = post.header("Docker-Upload-UUID")
    assert uuid is not None
    return uuid


@pytest.mark.native_only
def test_go_upload_resumed_from_go_hash_state(
    go: GoRegistry, root: Path, rng: random.Random
) -> None:
    """ocistore finishes a Go upload from the hash state Go wrote: no byte is read back."""
    data = rng.randbytes(3 * 65_536 + 77)
    head, tail = data[:150_001], data[150_001:]
    uuid = go_upload(go, "go/resume", [head[:100_000], head[100_000:]])
    state = root / f"docker/registry/v2/repositories/go/resume/_uploads/{uuid}/hashstates/sha256"
    assert (state / str(len(head))).stat().st_size == 108  # Go's MarshalBinary state

    # Prove the state (not the data) carries the hash: flip bytes the state covers.
    # Had ocistore re-read the upload, the commit below would fail DIGEST_INVALID.
    data_file = state.parent.parent / "data"
    with data_file.open("r+b") as f:
        f.write(bytes(b ^ 0xFF for b in head[:16]))

    registry = Registry(FilesystemDriver(root))
    writer = registry.repository("go/resume").blobs.resume(uuid)
    assert writer.resumed_from_state and writer.hashing
    assert writer.size == len(head)
    writer.write(tail)
    desc = writer.commit(Descriptor(digest=_oci.sha256(data), size=len(data)))
    assert writer.reread_bytes == 0
    assert desc.digest == _oci.sha256(data) and desc.size == len(data)
    got = request("HEAD", f"{go.url}/v2/go/resume/blobs/{desc.digest}")
    assert got.status == 200 and got.header("Content-Length") == str(len(data))


def test_go_upload_resumed_by_storage_api(go: GoRegistry, root: Path, rng: random.Random) -> None:
    """On either core the result is right; without a usable state, commit re-reads once."""
    data = rng.randbytes(200_000)
    uuid = go_upload(go, "go/resume2", [data[:70_000], data[70_000:120_000]])
    registry = Registry(FilesystemDriver(root))
    writer = registry.repository("go/resume2").blobs.resume(uuid)
    assert writer.size == 120_000
    assert writer.resumed_from_state == bool(_core.HASH_STATES)
    writer.write(data[120_000:])
    desc = writer.commit(Descriptor(digest=_oci.sha256(data), size=len(data)))
    assert writer.reread_bytes == (0 if _core.HASH_STATES else len(data))
    got = request("GET", f"{go.url}/v2/go/resume2/blobs/{desc.digest}")
    assert got.status == 200 and got.body == data


@pytest.mark.native_only
def test_go_resumes_from_ocistore_hash_state(
    go: GoRegistry, root: Path, rng: random.Random
) -> None:
    """The other direction: Go finishes from a state ocistore's native core wrote.

    As above, bytes the state covers are flipped on disk before Go goes on; Go
    commits the original digest only if it trusted ocistore's state.
    """
    data = rng.randbytes(120_000)
    head = data[:70_001]
    registry = Registry(FilesystemDriver(root))
    with registry.repository("oci/state").blobs.create() as writer:
        writer.write(head)
        uuid = writer.id
    upload = root / V2 / f"repositories/oci/state/_uploads/{uuid}"
    assert (upload / f"hashstates/sha256/{len(head)}").stat().st_size == 108
    with (upload / "data").open("r+b") as f:
        f.write(bytes(b ^ 0xFF for b in head[:16]))
    token = _state.pack(
        SECRET,
        {
            "Name": "oci/state",
            "UUID": uuid,
            "Offset": len(head),
            "StartedAt": "2026-01-01T00:00:00Z",
        },
    )
    location = f"{go.url}/v2/oci/state/blobs/uploads/{uuid}?_state={quote(token)}"
    put = request(
        "PUT", with_digest(location, _oci.sha256(data)), headers=OCTET, body=data[len(head) :]
    )
    assert put.status == 201, (put, go.log())
    assert put.header("Docker-Content-Digest") == _oci.sha256(data)
