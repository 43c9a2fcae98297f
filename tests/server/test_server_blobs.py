"""Blob reads and uploads through the in-process ASGI client."""

from __future__ import annotations

import asyncio
import errno
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from ocistore.server.state import UploadState, pack_upload_state, unpack_upload_state
from ocistore.storage.blobwriter import BlobWriter
from waiting import WAIT_TIMEOUT

from .asgi_client import Client
from .conftest import SECRET, make_app, sha256
from .helpers import path_of, push_blob, start

REPO = "library/test"


def test_base_endpoint(client: Client) -> None:
    r = client.get("/v2/")
    assert r.status == 200
    assert r.header("Docker-Distribution-API-Version") == "registry/2.0"


def test_unknown_route_and_method(client: Client) -> None:
    assert client.get("/v3/").status == 404
    r = client.request("POST", f"/v2/{REPO}/tags/list")
    assert r.status == 405
    assert r.error_codes == ["UNSUPPORTED"]


def test_monolithic_post_then_reads(client: Client) -> None:
    data = bytes(range(256)) * 40
    dgst = sha256(data)
    r = client.post(f"/v2/{REPO}/blobs/uploads/?digest={dgst}", body=data)
    assert r.status == 201
    assert r.header("Location") == f"http://registry.test/v2/{REPO}/blobs/{dgst}"
    assert r.header("Docker-Content-Digest") == dgst

    r = client.get(f"/v2/{REPO}/blobs/{dgst}")
    assert (r.status, r.body) == (200, data)
    assert r.header("Content-Length") == str(len(data))
    assert r.header("ETag") == f'"{dgst}"'
    assert r.header("Docker-Content-Digest") == dgst

    r = client.head(f"/v2/{REPO}/blobs/{dgst}")
    assert (r.status, r.body, r.header("Content-Length")) == (200, b"", str(len(data)))

    r = client.get(f"/v2/{REPO}/blobs/{dgst}", headers={"Range": "bytes=10-19"})
    assert (r.status, r.body) == (206, data[10:20])
    assert r.header("Content-Range") == f"bytes 10-19/{len(data)}"
    r = client.get(f"/v2/{REPO}/blobs/{dgst}", headers={"Range": "bytes=-5"})
    assert (r.status, r.body) == (206, data[-5:])
    r = client.get(f"/v2/{REPO}/blobs/{dgst}", headers={"Range": f"bytes={len(data)}-"})
    assert r.status == 416
    assert r.header("Content-Range") == f"bytes */{len(data)}"

    r = client.get(f"/v2/{REPO}/blobs/{dgst}", headers={"If-None-Match": f'"{dgst}"'})
    assert (r.status, r.body) == (304, b"")


def test_blob_unknown_and_bad_digest(client: Client) -> None:
    r = client.get(f"/v2/{REPO}/blobs/{sha256(b'nope')}")
    assert (r.status, r.error_codes) == (404, ["BLOB_UNKNOWN"])
    r = client.head(f"/v2/{REPO}/blobs/{sha256(b'nope')}")
    assert r.status == 404
    r = client.get(f"/v2/{REPO}/blobs/sha256:abc")
    assert (r.status, r.error_codes) == (400, ["DIGEST_INVALID"])


def test_bad_names(client: Client) -> None:
    for name in ("a/UPPER", "a//b", "-lead", "a/..", "x" * 300):
        r = client.get(f"/v2/{name}/blobs/{sha256(b'')}")
        assert (r.status, r.error_codes) == (400, ["NAME_INVALID"]), name


def test_blob_delete(client: Client, tmp_path: Path) -> None:
    dgst = push_blob(client, REPO, b"delete me")
    assert client.delete(f"/v2/{REPO}/blobs/{dgst}").status == 202
    assert client.get(f"/v2/{REPO}/blobs/{dgst}").status == 404
    assert client.delete(f"/v2/{REPO}/blobs/{dgst}").error_codes == ["BLOB_UNKNOWN"]
    off = make_app(tmp_path / "off", delete_enabled=False)
    c2 = Client(off)
    dgst = push_blob(c2, REPO, b"kept")
    r = c2.delete(f"/v2/{REPO}/blobs/{dgst}")
    assert (r.status, r.error_codes) == (405, ["UNSUPPORTED"])


def test_session_headers_and_token(client: Client) -> None:
    r = start(client, REPO)
    uuid = r.header("Docker-Upload-UUID")
    assert uuid and r.header("Range") == "0-0"
    assert r.header("OCI-Chunk-Min-Length") == str(1 << 20)
    loc = urlsplit(r.header("Location") or "")
    assert loc.path == f"/v2/{REPO}/blobs/uploads/{uuid}"
    token = parse_qs(loc.query)["_state"][0]
    state = unpack_upload_state(token, SECRET)
    assert (state.name, state.uuid, state.offset) == (REPO, uuid, 0)
    assert state.started_at.endswith("Z")


def test_chunked_upload_with_content_range(client: Client) -> None:
    data = b"".join(bytes([i]) * 1000 for i in range(10))
    loc = path_of(start(client, REPO).header("Location") or "")
    for first in range(0, len(data), 3000):
        chunk = data[first : first + 3000]
        r = client.patch(
            loc,
            body=chunk,
            headers={
                "Content-Type": "application/octet-stream",
                "Content-Range": f"{first}-{first + len(chunk) - 1}",
            },
        )
        assert r.status == 202, r.body
        assert r.header("Range") == f"0-{first + len(chunk) - 1}"
        stale, loc = loc, path_of(r.header("Location") or "")
    # A repeated chunk, sent to the newest Location: 416 with the current Range.
    r = client.patch(loc, body=b"zz", headers={"Content-Range": "0-1"})
    assert (r.status, r.error_codes) == (416, ["RANGE_INVALID"])
    assert r.header("Range") == f"0-{len(data) - 1}"
    # A client on a stale Location: 416 as well, nothing appended.
    r = client.patch(stale, body=b"zz")
    assert r.status == 416
    assert r.header("Range") == f"0-{len(data) - 1}"
    r = client.get(loc)
    assert (r.status, r.header("Range")) == (204, f"0-{len(data) - 1}")
    r = client.put(loc + f"&digest={sha256(data)}")
    assert r.status == 201, r.body
    assert client.get(f"/v2/{REPO}/blobs/{sha256(data)}").body == data


def test_streamed_patch_and_put_with_final_body(client: Client) -> None:
    data = b"abc" * 50000
    loc = path_of(start(client, REPO).header("Location") or "")
    r = client.patch(loc, body=[data[:70000], data[70000:100000]])
    assert (r.status, r.header("Range")) == (202, "0-99999")
    loc = path_of(r.header("Location") or "")
    r = client.put(loc + f"&digest={sha256(data)}", body=data[100000:])
    assert r.status == 201, r.body
    assert client.get(f"/v2/{REPO}/blobs/{sha256(data)}").body == data


def test_put_digest_mismatch_cancels(client: Client) -> None:
    loc = path_of(start(client, REPO).header("Location") or "")
    r = client.put(loc + f"&digest={sha256(b'other')}", body=b"content")
    assert (r.status, r.error_codes) == (400, ["DIGEST_INVALID"])
    r = client.get(loc)
    assert (r.status, r.error_codes) == (404, ["BLOB_UPLOAD_UNKNOWN"])


def test_put_size_mismatch_cancels(client: Client) -> None:
    loc = path_of(start(client, REPO).header("Location") or "")
    data = b"0123456789"
    r = client.put(
        loc + f"&digest={sha256(data)}",
        body=data,
        headers={"Content-Range": "0-9", "Content-Length": "11"},
    )
    assert (r.status, r.error_codes) == (400, ["SIZE_INVALID"])


def test_put_digest_missing_or_malformed_keeps_upload(client: Client) -> None:
    loc = path_of(start(client, REPO).header("Location") or "")
    r = client.put(loc)
    assert (r.status, r.error_codes) == (400, ["DIGEST_INVALID"])
    r = client.put(loc + "&digest=sha256:zz")
    assert r.error_codes == ["DIGEST_INVALID"]
    assert client.get(loc).status == 204


def test_token_checks(client: Client) -> None:
    r = start(client, REPO)
    uuid = r.header("Docker-Upload-UUID") or ""
    base = f"/v2/{REPO}/blobs/uploads/{uuid}"
    forged = pack_upload_state(UploadState(REPO, uuid, 0, "2026-01-01T00:00:00Z"), "wrong")
    r = client.patch(f"{base}?_state={forged}", body=b"x")
    assert (r.status, r.error_codes) == (404, ["BLOB_UPLOAD_INVALID"])
    other = pack_upload_state(UploadState("other/repo", uuid, 0, "2026-01-01T00:00:00Z"), SECRET)
    assert client.patch(f"{base}?_state={other}", body=b"x").error_codes == ["BLOB_UPLOAD_INVALID"]
    assert client.patch(f"{base}?_state=!!!", body=b"x").error_codes == ["BLOB_UPLOAD_INVALID"]
    # No token at all: accepted, the upload exists.
    r = client.patch(base, body=b"x")
    assert (r.status, r.header("Range")) == (202, "0-0")


def test_unknown_upload(client: Client) -> None:
    for uuid in ("6d1c2a3e-8f7b-4f1e-9a2b-000000000000", "not-a-uuid", "..."):
        r = client.patch(f"/v2/{REPO}/blobs/uploads/{uuid}", body=b"x")
        assert (r.status, r.error_codes) == (404, ["BLOB_UPLOAD_UNKNOWN"]), uuid


def test_cancel_upload(client: Client) -> None:
    loc = path_of(start(client, REPO).header("Location") or "")
    assert client.delete(loc).status == 204
    assert client.get(loc).error_codes == ["BLOB_UPLOAD_UNKNOWN"]


def test_cross_repository_mount(client: Client) -> None:
    dgst = push_blob(client, "source/repo", b"shared layer")
    r = client.post(f"/v2/{REPO}/blobs/uploads/?mount={dgst}&from=source/repo")
    assert r.status == 201
    assert r.header("Location") == f"http://registry.test/v2/{REPO}/blobs/{dgst}"
    assert client.get(f"/v2/{REPO}/blobs/{dgst}").body == b"shared layer"
    missing = sha256(b"absent")
    r = client.post(f"/v2/{REPO}/blobs/uploads/?mount={missing}&from=source/repo")
    assert r.status == 202 and r.header("Docker-Upload-UUID")


def test_wrong_content_type(client: Client) -> None:
    loc = path_of(start(client, REPO).header("Location") or "")
    r = client.patch(loc, body=b"x", headers={"Content-Type": "text/plain"})
    assert (r.status, r.error_codes) == (415, ["BLOB_UPLOAD_INVALID"])


def test_malformed_content_range_and_length(client: Client) -> None:
    loc = path_of(start(client, REPO).header("Location") or "")
    r = client.patch(loc, body=b"xy", headers={"Content-Range": "bytes=a-b"})
    assert (r.status, r.error_codes) == (416, ["RANGE_INVALID"])
    r = client.patch(loc, body=b"xy", headers={"Content-Range": "5-1"})
    assert r.status == 416
    r = client.patch(loc, body=b"xy", headers={"Content-Length": "-4"})
    assert (r.status, r.error_codes) == (400, ["SIZE_INVALID"])
    assert client.get(loc).header("Range") == "0-0"


def test_disconnect_mid_body_leaves_resumable_upload(client: Client) -> None:
    loc = path_of(start(client, REPO).header("Location") or "")
    r = client.patch(loc, body=[b"a" * 1000, b"b" * 1000, b"c" * 1000], disconnect_after=2)
    assert r.status == 0  # nothing was sent back to a client that left
    r = client.get(f"/v2/{REPO}/blobs/uploads/{loc.split('/')[-1].split('?')[0]}")
    assert (r.status, r.header("Range")) == (204, "0-1999")
    loc = path_of(r.header("Location") or "")
    r = client.put(
        loc + f"&digest={sha256(b'a' * 1000 + b'b' * 1000 + b'c' * 1000)}", body=b"c" * 1000
    )
    assert r.status == 201


def test_idle_client_times_out(tmp_path: Path) -> None:
    app = make_app(tmp_path, idle_timeout=0.2)
    client = Client(app)
    loc = path_of(start(client, REPO).header("Location") or "")
    never = asyncio.Event()  # the client never sends its second chunk
    r = client.patch(loc, body=[b"a" * 100, b"b" * 100], stall=never, stall_after=1)
    assert (r.status, r.error_codes) == (408, ["BLOB_UPLOAD_INVALID"])
    uuid = loc.split("/")[-1].split("?")[0]
    assert client.get(f"/v2/{REPO}/blobs/uploads/{uuid}").header("Range") == "0-99"


def test_max_blob_size(tmp_path: Path) -> None:
    client = Client(make_app(tmp_path, max_blob_size=1000))
    loc = path_of(start(client, REPO).header("Location") or "")
    r = client.patch(loc, body=b"x" * 600)
    assert r.status == 202
    loc = path_of(r.header("Location") or "")
    # Declared up front: refused before reading, the upload untouched.
    r = client.patch(loc, body=b"y" * 600)
    assert (r.status, r.error_codes) == (413, ["SIZE_INVALID"])
    assert client.get(loc).header("Range") == "0-599"
    # Not declared (streamed): noticed while reading, the upload is cancelled.
    r = client.patch(loc, body=[b"y" * 300, b"y" * 300], chunked=True)
    assert (r.status, r.error_codes) == (413, ["SIZE_INVALID"])
    assert client.get(loc).error_codes == ["BLOB_UPLOAD_UNKNOWN"]


def test_two_patches_at_once(client: Client) -> None:
    loc = path_of(start(client, REPO).header("Location") or "")

    async def both() -> tuple[int, int, str | None]:
        hold, stalled = asyncio.Event(), asyncio.Event()
        body = [b"1" * 10, b"1" * 10]
        first = asyncio.create_task(
            client.arequest("PATCH", loc, body=body, stall=hold, stall_after=1, stalled=stalled)
        )
        # The first reads its body (so holds the upload's lock) and waits for more.
        await asyncio.wait_for(stalled.wait(), WAIT_TIMEOUT)
        second = await client.arequest("PATCH", loc, body=b"2" * 10)
        hold.set()
        r1 = await first
        return r1.status, second.status, second.header("Range")

    s1, s2, rng = asyncio.run(both())
    assert (s1, s2, rng) == (202, 416, "0-0")
    r = client.get(loc.split("?")[0])
    assert r.header("Range") == "0-19"


def test_full_disk_is_a_clear_error(client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    loc = path_of(start(client, REPO).header("Location") or "")
    r = client.patch(loc, body=b"k" * 500)
    loc = path_of(r.header("Location") or "")
    real_write = BlobWriter.write

    def full(self: BlobWriter, data: object) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(BlobWriter, "write", full)
    r = client.patch(loc, body=b"m" * 500)
    assert r.status == 507
    assert r.error_codes == ["UNAVAILABLE"]
    monkeypatch.setattr(BlobWriter, "write", real_write)
    # Nothing was committed and the upload is still there at its durable size.
    r = client.get(loc.split("?")[0])
    assert (r.status, r.header("Range")) == (204, "0-499")
    assert client.get(f"/v2/{REPO}/blobs/{sha256(b'k' * 500 + b'm' * 500)}").status == 404
    r = client.put(path_of(r.header("Location") or "") + f"&digest={sha256(b'k' * 500)}")
    assert r.status == 201


def test_lock_held_by_another_process(tmp_path: Path) -> None:
    """The per-upload lock excludes another process (a second worker) too."""
    import subprocess
    import sys

    app = make_app(tmp_path)
    client = Client(app)
    r = start(client, REPO)
    uuid = r.header("Docker-Upload-UUID") or ""
    loc = path_of(r.header("Location") or "")
    lock_path = Path(app.services.locks.lock_dir) / f"{uuid}.lock"
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, os, sys, time\n"
            f"fd = os.open({str(lock_path)!r}, os.O_RDWR | os.O_CREAT)\n"
            "fcntl.flock(fd, fcntl.LOCK_EX)\n"
            "print('locked', flush=True)\n"
            "sys.stdin.read()\n",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        r = client.patch(loc, body=b"x" * 10)
        assert (r.status, r.error_codes, r.header("Range")) == (416, ["RANGE_INVALID"], "0-0")
    finally:
        holder.communicate("")
    r = client.patch(loc, body=b"x" * 10)
    assert (r.status, r.header("Range")) == (202, "0-9")
