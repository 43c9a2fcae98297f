"""The request sequences of the differential test: pull, push in every mode, content
discovery, content management and error cases (OCI distribution-spec v1.1 workflows).

Each scenario uses its own repositories, so scenarios are independent of each
other's outcome; the ``catalog`` scenario runs last and sees them all.
"""

from __future__ import annotations

import uuid as uuidlib
from collections.abc import Callable

from . import _oci, _state
from ._client import OCTET, with_digest
from ._differential import Session
from ._peers import SECRET

ACCEPT_ALL = ", ".join([_oci.OCI_MANIFEST, _oci.OCI_INDEX, _oci.DOCKER_MANIFEST, _oci.DOCKER_LIST])
MANIFEST_HEADERS = ("Content-Type", "Content-Length")
BLOB_HEADERS = ("Content-Length",)
ZERO = "sha256:" + "0" * 64


def _blob(s: Session, repo: str, data: bytes, step: str) -> None:
    """Push one blob (POST, then PUT with the body) as recorded setup steps."""
    post = s.step(f"{step}.post", "POST", f"/v2/{repo}/blobs/uploads/")
    s.step(
        f"{step}.put",
        "PUT",
        with_digest(s.follow(post), _oci.sha256(data)),
        headers=OCTET,
        body=data,
    )


def _image(s: Session, repo: str, tag: str | None, *, layers: int = 2) -> _oci.Image:
    image = _oci.make_image(s.rng, layers=layers, layer_size=1024)
    for i, data in enumerate(image.blobs.values()):
        _blob(s, repo, data, f"setup.{tag or 'untagged'}.blob{i}")
    s.step(
        f"setup.{tag or 'untagged'}.manifest",
        "PUT",
        f"/v2/{repo}/manifests/{tag or image.digest}",
        headers={"Content-Type": _oci.OCI_MANIFEST},
        body=image.manifest,
    )
    return image


def _signed(repo: str, upload_id: str, offset: int = 0) -> str:
    """A genuine token (shared secret) for an upload id of our choosing."""
    return _state.pack(
        SECRET,
        {"Name": repo, "UUID": upload_id, "Offset": offset, "StartedAt": "2026-01-01T00:00:00Z"},
    )


# --- pull ------------------------------------------------------------------------------


def pull(s: Session) -> None:
    repo = "diff/pull"
    image = _image(s, repo, "v1")
    config = _oci.sha256(image.config)
    size = len(image.config)
    oci = {"Accept": _oci.OCI_MANIFEST}
    s.step("base", "GET", "/v2/")
    s.step(
        "manifest.head.tag",
        "HEAD",
        f"/v2/{repo}/manifests/v1",
        headers=oci,
        compare=MANIFEST_HEADERS,
    )
    s.step(
        "manifest.get.tag",
        "GET",
        f"/v2/{repo}/manifests/v1",
        headers=oci,
        compare=MANIFEST_HEADERS,
        content="bytes",
    )
    s.step(
        "manifest.get.digest",
        "GET",
        f"/v2/{repo}/manifests/{image.digest}",
        headers={"Accept": ACCEPT_ALL},
        compare=MANIFEST_HEADERS,
        content="bytes",
    )
    s.step(
        "manifest.head.digest",
        "HEAD",
        f"/v2/{repo}/manifests/{image.digest}",
        headers=oci,
        compare=MANIFEST_HEADERS,
    )
    s.step("manifest.get.no-accept", "GET", f"/v2/{repo}/manifests/v1", compare=MANIFEST_HEADERS)
    s.step(
        "manifest.get.docker-accept",
        "GET",
        f"/v2/{repo}/manifests/v1",
        headers={"Accept": _oci.DOCKER_MANIFEST},
        compare=MANIFEST_HEADERS,
    )
    s.step("blob.head", "HEAD", f"/v2/{repo}/blobs/{config}", compare=BLOB_HEADERS)
    got = s.step(
        "blob.get", "GET", f"/v2/{repo}/blobs/{config}", compare=BLOB_HEADERS, content="bytes"
    )
    s.step(
        "blob.range",
        "GET",
        f"/v2/{repo}/blobs/{config}",
        headers={"Range": "bytes=10-19"},
        compare=BLOB_HEADERS,
        content="bytes",
    )
    s.step(
        "blob.range.suffix",
        "GET",
        f"/v2/{repo}/blobs/{config}",
        headers={"Range": "bytes=-5"},
        compare=BLOB_HEADERS,
        content="bytes",
    )
    s.step(
        "blob.range.unsatisfiable",
        "GET",
        f"/v2/{repo}/blobs/{config}",
        headers={"Range": f"bytes={size + 100}-"},
    )
    etag = got.header("ETag") or '""'
    s.step(
        "blob.if-none-match", "GET", f"/v2/{repo}/blobs/{config}", headers={"If-None-Match": etag}
    )
    s.step("blob.unknown", "GET", f"/v2/{repo}/blobs/{ZERO}")
    s.step("blob.unknown.head", "HEAD", f"/v2/{repo}/blobs/{ZERO}")
    s.step("manifest.unknown.tag", "GET", f"/v2/{repo}/manifests/nope", headers=oci)
    s.step("manifest.unknown.digest", "GET", f"/v2/{repo}/manifests/{ZERO}", headers=oci)
    s.step("manifest.unknown.repo", "GET", "/v2/diff/nowhere/manifests/v1", headers=oci)
    s.step("blob.unknown.repo", "GET", f"/v2/diff/nowhere/blobs/{config}")
    s.step("blob.other-repo", "GET", f"/v2/diff/elsewhere/blobs/{config}")


# --- push -------------------------------------------------------------------------------


def push_monolithic(s: Session) -> None:
    repo = "diff/push-monolithic"
    data = s.rng.randbytes(2048)
    digest = _oci.sha256(data)
    s.step(
        "post-digest",
        "POST",
        f"/v2/{repo}/blobs/uploads/?digest={digest}",
        headers=OCTET,
        body=data,
    )
    s.step("head", "HEAD", f"/v2/{repo}/blobs/{digest}", compare=BLOB_HEADERS)


def push_post_put(s: Session) -> None:
    repo = "diff/push-post-put"
    data = s.rng.randbytes(2048)
    digest = _oci.sha256(data)
    post = s.step("post", "POST", f"/v2/{repo}/blobs/uploads/")
    s.step("put", "PUT", with_digest(s.follow(post), digest), headers=OCTET, body=data)
    s.step("head", "HEAD", f"/v2/{repo}/blobs/{digest}", compare=BLOB_HEADERS)
    s.step("get", "GET", f"/v2/{repo}/blobs/{digest}", content="bytes")


def push_streamed(s: Session) -> None:
    repo = "diff/push-streamed"
    data = s.rng.randbytes(5000)
    digest = _oci.sha256(data)
    post = s.step("post", "POST", f"/v2/{repo}/blobs/uploads/")
    patch = s.step("patch", "PATCH", s.follow(post), headers=OCTET, body=data)
    status = s.step("status", "GET", s.follow(patch))
    s.step("put", "PUT", with_digest(s.follow(status), digest), headers=OCTET, body=b"")
    s.step("head", "HEAD", f"/v2/{repo}/blobs/{digest}", compare=BLOB_HEADERS)


def _chunked(s: Session, repo: str, *, final_body: bool) -> None:
    data = s.rng.randbytes(3000)
    digest = _oci.sha256(data)
    post = s.step("post", "POST", f"/v2/{repo}/blobs/uploads/")
    location = s.follow(post)
    chunks = (
        [data[:1000], data[1000:2000]]
        if final_body
        else [data[:1000], data[1000:2000], data[2000:]]
    )
    offset = 0
    for i, chunk in enumerate(chunks):
        patch = s.step(
            f"patch{i}",
            "PATCH",
            location,
            headers={
                **OCTET,
                "Content-Range": f"{offset}-{offset + len(chunk) - 1}",
                "Content-Length": str(len(chunk)),
            },
            body=chunk,
        )
        location = s.follow(patch)
        offset += len(chunk)
    status = s.step("status", "GET", location)
    s.step(
        "put",
        "PUT",
        with_digest(s.follow(status), digest),
        headers=OCTET,
        body=data[2000:] if final_body else b"",
    )
    s.step("head", "HEAD", f"/v2/{repo}/blobs/{digest}", compare=BLOB_HEADERS)


def push_chunked(s: Session) -> None:
    _chunked(s, "diff/push-chunked", final_body=True)


def push_chunked_empty_put(s: Session) -> None:
    _chunked(s, "diff/push-chunked-empty-put", final_body=False)


def push_mount(s: Session) -> None:
    data = s.rng.randbytes(1500)
    digest = _oci.sha256(data)
    _blob(s, "diff/mount-source", data, "setup")
    s.step(
        "mount",
        "POST",
        f"/v2/diff/mount-target/blobs/uploads/?mount={digest}&from=diff/mount-source",
    )
    s.step("head", "HEAD", f"/v2/diff/mount-target/blobs/{digest}", compare=BLOB_HEADERS)
    missing = s.step(
        "mount.missing",
        "POST",
        f"/v2/diff/mount-target/blobs/uploads/?mount={ZERO}&from=diff/mount-source",
    )
    if missing.status == 202:
        s.step("mount.missing.cancel", "DELETE", s.follow(missing))
    other = s.rng.randbytes(700)
    _blob(s, "diff/mount-source", other, "setup2")
    no_from = s.step(
        "mount.no-from", "POST", f"/v2/diff/mount-target2/blobs/uploads/?mount={_oci.sha256(other)}"
    )
    if no_from.status == 202:
        s.step("mount.no-from.cancel", "DELETE", s.follow(no_from))


def push_manifests(s: Session) -> None:
    repo = "diff/push-manifests"
    index = _oci.make_multiarch(s.rng, layers=1, layer_size=512)
    for n, image in enumerate(index.images):
        for i, data in enumerate(image.blobs.values()):
            _blob(s, repo, data, f"setup{n}.blob{i}")
        s.step(
            f"put.by-digest{n}",
            "PUT",
            f"/v2/{repo}/manifests/{image.digest}",
            headers={"Content-Type": _oci.OCI_MANIFEST},
            body=image.manifest,
        )
    s.step(
        "put.index.by-tag",
        "PUT",
        f"/v2/{repo}/manifests/multi",
        headers={"Content-Type": _oci.OCI_INDEX},
        body=index.index,
    )
    s.step(
        "get.index",
        "GET",
        f"/v2/{repo}/manifests/multi",
        headers={"Accept": ACCEPT_ALL},
        compare=MANIFEST_HEADERS,
        content="bytes",
    )
    s.step(
        "put.retag",
        "PUT",
        f"/v2/{repo}/manifests/amd64",
        headers={"Content-Type": _oci.OCI_MANIFEST},
        body=index.images[0].manifest,
    )
    subject = index.images[0]
    empty = b"{}"
    _blob(s, repo, empty, "setup.empty")
    artifact = _oci.canonical_json(
        {
            "schemaVersion": 2,
            "mediaType": _oci.OCI_MANIFEST,
            "artifactType": "application/vnd.example.sbom",
            "config": _oci.descriptor(_oci.OCI_EMPTY, empty),
            "layers": [_oci.descriptor(_oci.OCI_EMPTY, empty)],
            "subject": _oci.descriptor(_oci.OCI_MANIFEST, subject.manifest),
            "annotations": {"org.example": "yes"},
        }
    )
    s.step(
        "put.referrer",
        "PUT",
        f"/v2/{repo}/manifests/{_oci.sha256(artifact)}",
        headers={"Content-Type": _oci.OCI_MANIFEST},
        body=artifact,
    )
    s.step(
        "get.referrer",
        "GET",
        f"/v2/{repo}/manifests/{_oci.sha256(artifact)}",
        headers={"Accept": _oci.OCI_MANIFEST},
        compare=MANIFEST_HEADERS,
        content="bytes",
    )
    s.step(
        "put.docker-type-for-oci-payload",
        "PUT",
        f"/v2/{repo}/manifests/mislabelled",
        headers={"Content-Type": _oci.DOCKER_MANIFEST},
        body=index.images[1].manifest,
    )


# --- content discovery ---------------------------------------------------------------------


def discovery(s: Session) -> None:
    repo = "diff/discovery"
    image = _image(s, repo, "t1", layers=1)
    for tag in ("t2", "t3", "a0"):
        s.step(
            f"setup.tag.{tag}",
            "PUT",
            f"/v2/{repo}/manifests/{tag}",
            headers={"Content-Type": _oci.OCI_MANIFEST},
            body=image.manifest,
        )
    s.step("tags", "GET", f"/v2/{repo}/tags/list", content="json")
    s.step("tags.n", "GET", f"/v2/{repo}/tags/list?n=2", content="json")
    s.step("tags.n.last", "GET", f"/v2/{repo}/tags/list?n=2&last=t1", content="json")
    s.step("tags.last", "GET", f"/v2/{repo}/tags/list?last=t1", content="json")
    s.step("tags.n0", "GET", f"/v2/{repo}/tags/list?n=0", content="json")
    s.step("tags.n.invalid", "GET", f"/v2/{repo}/tags/list?n=-1")
    s.step("tags.unknown-repo", "GET", "/v2/diff/nowhere/tags/list")
    s.step("catalog.page", "GET", "/v2/_catalog?n=1&last=diff/discovery", content="json")
    s.step("catalog.n.invalid", "GET", "/v2/_catalog?n=abc")
    s.step("referrers", "GET", f"/v2/{repo}/referrers/{image.digest}", content="json")
    s.step(
        "referrers.filtered",
        "GET",
        f"/v2/{repo}/referrers/{image.digest}?artifactType=application/vnd.example",
        content="json",
    )


# --- content management -------------------------------------------------------------------


def management(s: Session) -> None:
    repo = "diff/management"
    a = _image(s, repo, "a", layers=1)
    b = _image(s, repo, "b", layers=1)
    s.step("delete.manifest.by-tag", "DELETE", f"/v2/{repo}/manifests/a")
    s.step("delete.manifest.by-digest", "DELETE", f"/v2/{repo}/manifests/{b.digest}")
    s.step("get.deleted.by-tag", "GET", f"/v2/{repo}/manifests/b", headers={"Accept": ACCEPT_ALL})
    s.step(
        "get.deleted.by-digest",
        "GET",
        f"/v2/{repo}/manifests/{b.digest}",
        headers={"Accept": ACCEPT_ALL},
    )
    s.step("delete.manifest.again", "DELETE", f"/v2/{repo}/manifests/{b.digest}")
    s.step("tags.after", "GET", f"/v2/{repo}/tags/list", content="json")
    s.step("delete.manifest.unknown", "DELETE", f"/v2/{repo}/manifests/{ZERO}")
    config = _oci.sha256(a.config)
    s.step("delete.blob", "DELETE", f"/v2/{repo}/blobs/{config}")
    s.step("head.deleted-blob", "HEAD", f"/v2/{repo}/blobs/{config}")
    s.step("delete.blob.again", "DELETE", f"/v2/{repo}/blobs/{config}")
    s.step("delete.blob.invalid-digest", "DELETE", f"/v2/{repo}/blobs/sha256:zz")
    post = s.step("upload.post", "POST", f"/v2/{repo}/blobs/uploads/")
    location = s.follow(post)
    s.step("upload.delete", "DELETE", location)
    s.step("upload.status.after-delete", "GET", location)
    s.step("upload.delete.again", "DELETE", location)


# --- error cases ---------------------------------------------------------------------------


def _session(s: Session, repo: str, step: str) -> str:
    """A new upload with 100 bytes in it (POST and one chunk); the newest Location."""
    post = s.step(f"{step}.post", "POST", f"/v2/{repo}/blobs/uploads/")
    patch = s.step(
        f"{step}.patch",
        "PATCH",
        s.follow(post),
        headers={**OCTET, "Content-Range": "0-99"},
        body=s.rng.randbytes(100),
    )
    return s.follow(patch)


def upload_errors(s: Session) -> None:
    repo = "diff/upload-errors"
    chunk = {**OCTET, "Content-Range": "200-299"}
    s.step(
        "out-of-order", "PATCH", _session(s, repo, "ooo"), headers=chunk, body=s.rng.randbytes(100)
    )
    again = {**OCTET, "Content-Range": "0-99"}
    s.step("repeated", "PATCH", _session(s, repo, "rep"), headers=again, body=s.rng.randbytes(100))
    s.step(
        "content-range.malformed",
        "PATCH",
        _session(s, repo, "cr"),
        headers={**OCTET, "Content-Range": "bytes=abc"},
        body=s.rng.randbytes(10),
    )
    s.step(
        "content-range.length-mismatch",
        "PATCH",
        _session(s, repo, "crl"),
        headers={**OCTET, "Content-Range": "100-199"},
        body=s.rng.randbytes(50),
    )
    s.step(
        "patch.content-type",
        "PATCH",
        _session(s, repo, "ct"),
        headers={"Content-Type": "text/plain"},
        body=s.rng.randbytes(10),
    )
    wrong = _session(s, repo, "wrong")
    s.step("put.wrong-digest", "PUT", with_digest(wrong, ZERO), headers=OCTET, body=b"")
    s.step(
        "put.malformed-digest",
        "PUT",
        with_digest(_session(s, repo, "mal"), "sha256:zz"),
        headers=OCTET,
        body=b"",
    )
    s.step("put.no-digest", "PUT", _session(s, repo, "nod"), headers=OCTET, body=b"")
    s.step(
        "put.unsupported-algorithm",
        "PUT",
        with_digest(_session(s, repo, "alg"), "md5:" + "0" * 32),
        headers=OCTET,
        body=b"",
    )
    s.step(
        "put.content-range-mismatch",
        "PUT",
        with_digest(_session(s, repo, "pcr"), ZERO),
        headers={**OCTET, "Content-Range": "100-149"},
        body=s.rng.randbytes(10),
    )
    post = s.step("stale.post", "POST", f"/v2/{repo}/blobs/uploads/")
    first = s.step("stale.patch", "PATCH", s.follow(post), headers=OCTET, body=s.rng.randbytes(100))
    s.step("stale-location", "PATCH", s.follow(post), headers=OCTET, body=s.rng.randbytes(100))
    s.step("stale.newest", "GET", s.follow(first))
    bare = s.follow(first).split("?", 1)[0]
    s.step("no-state.status", "GET", bare)
    s.step("no-state.patch", "PATCH", bare, headers=OCTET, body=s.rng.randbytes(10))
    unknown = str(uuidlib.UUID(int=s.rng.getrandbits(128), version=4))
    signed = f"/v2/{repo}/blobs/uploads/{unknown}?_state={_signed(repo, unknown)}"
    s.step("upload.unknown.signed", "GET", signed)
    s.step("upload.unknown.signed.patch", "PATCH", signed, headers=OCTET, body=b"x")
    s.step("upload.unknown.unsigned", "GET", f"/v2/{repo}/blobs/uploads/{unknown}")
    s.step("upload.not-a-uuid", "GET", f"/v2/{repo}/blobs/uploads/not-a-uuid")


def manifest_errors(s: Session) -> None:
    repo = "diff/manifest-errors"
    image = _image(s, repo, "ok", layers=1)
    oci = {"Content-Type": _oci.OCI_MANIFEST}
    s.step("invalid-json", "PUT", f"/v2/{repo}/manifests/bad", headers=oci, body=b"{not json")
    missing = _oci.make_image(s.rng, layers=1)
    s.step(
        "blob-unknown", "PUT", f"/v2/{repo}/manifests/missing", headers=oci, body=missing.manifest
    )
    s.step(
        "digest-mismatch", "PUT", f"/v2/{repo}/manifests/{ZERO}", headers=oci, body=image.manifest
    )
    s.step(
        "too-large",
        "PUT",
        f"/v2/{repo}/manifests/huge",
        headers=oci,
        body=b'{"schemaVersion":2,"x":"' + b"a" * (4 * 1024 * 1024 + 1) + b'"}',
    )
    s.step("invalid-tag", "PUT", f"/v2/{repo}/manifests/-bad-", headers=oci, body=image.manifest)
    s.step("get.invalid-tag", "GET", f"/v2/{repo}/manifests/-bad-", headers=oci)
    s.step("get.malformed-digest", "GET", f"/v2/{repo}/manifests/sha256:zz", headers=oci)
    index = _oci.make_index([missing])
    s.step(
        "index.child-unknown",
        "PUT",
        f"/v2/{repo}/manifests/idx",
        headers={"Content-Type": _oci.OCI_INDEX},
        body=index.index,
    )


def name_errors(s: Session) -> None:
    s.step("upper-case", "GET", "/v2/Diff/Upper/tags/list")
    s.step("upper-case.domain", "GET", "/v2/Diff.Example.COM/upper/tags/list")
    s.step("upper-case.no-dot", "GET", "/v2/DIFF/upper/tags/list")
    s.step("bad-separator", "GET", "/v2/diff/bad--name_/tags/list")
    s.step("port", "POST", "/v2/localhost:5000/diff/blobs/uploads/")
    s.step("blob.malformed-digest", "GET", "/v2/diff/names/blobs/sha256:zz")
    s.step("mount.bad-source", "POST", f"/v2/diff/names/blobs/uploads/?mount={ZERO}&from=Bad__Name")


def catalog(s: Session) -> None:
    """Last: every repository the scenarios before it created, listed and paged."""
    s.step("catalog", "GET", "/v2/_catalog", content="json")
    s.step("catalog.n", "GET", "/v2/_catalog?n=3", content="json")


SCENARIOS: dict[str, Callable[[Session], None]] = {
    "pull": pull,
    "push-monolithic": push_monolithic,
    "push-post-put": push_post_put,
    "push-streamed": push_streamed,
    "push-chunked": push_chunked,
    "push-chunked-empty-put": push_chunked_empty_put,
    "push-mount": push_mount,
    "push-manifests": push_manifests,
    "discovery": discovery,
    "management": management,
    "upload-errors": upload_errors,
    "manifest-errors": manifest_errors,
    "name-errors": name_errors,
    "catalog": catalog,
}
