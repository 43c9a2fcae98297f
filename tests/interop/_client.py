"""A registry client over raw HTTP that pushes in each of the spec's modes.

Why a hand-written client when skopeo exists: skopeo picks one push mode and
refuses names that distribution's grammar allows (upper-case domains), and the
cross-server tests must send each PATCH to a server of their choosing while
following the newest Location, as a round-robin load balancer would.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from . import _oci
from ._http import Response, request, retarget

OCTET = {"Content-Type": "application/octet-stream"}

# How a chunked push picks the server for step i (0 = POST); by default, always the same one.
Route = Callable[[int], str]


def with_digest(location: str, digest: str) -> str:
    return location + ("&" if "?" in location else "?") + f"digest={digest}"


@dataclass
class Client:
    """Talks to one registry (``base`` = ``http://127.0.0.1:PORT``)."""

    base: str

    def get(self, path: str, **kw: Any) -> Response:
        return request("GET", self.base + path, **kw)

    def head(self, path: str, **kw: Any) -> Response:
        return request("HEAD", self.base + path, **kw)

    # --- blobs --------------------------------------------------------------------

    def start_upload(self, repo: str, query: str = "") -> Response:
        return request("POST", f"{self.base}/v2/{repo}/blobs/uploads/{query}")

    def push_blob(self, repo: str, data: bytes, *, mode: str = "post-put") -> Response:
        """Push ``data`` in one of the spec's modes; returns the final answer.

        ``monolithic``: POST ``?digest=`` with the body. ``post-put``: POST, then PUT
        with the body. ``streamed``: POST, one PATCH without Content-Range, PUT.
        ``chunked``: POST, PATCHes with Content-Range, PUT with the last chunk.
        """
        digest = _oci.sha256(data)
        if mode == "monolithic":
            resp = request(
                "POST",
                f"{self.base}/v2/{repo}/blobs/uploads/?digest={digest}",
                headers=OCTET,
                body=data,
            )
            if resp.status == 202:  # Go 2.8.2 ignores ?digest= and opens a session
                return self.finish(resp.location(), digest, data)
            return resp
        post = self.start_upload(repo)
        assert post.status == 202, post
        if mode == "post-put":
            return self.finish(post.location(), digest, data)
        if mode == "streamed":
            patch = request("PATCH", post.location(), headers=OCTET, body=data)
            assert patch.status == 202, patch
            return self.finish(patch.location(), digest, b"")
        if mode == "chunked":
            return self.push_chunks(repo, data, chunk=max(1, len(data) // 3), post=post)
        raise ValueError(mode)

    def push_chunks(
        self,
        repo: str,
        data: bytes,
        *,
        chunk: int,
        post: Response | None = None,
        route: Route | None = None,
        final_body: bool = True,
    ) -> Response:
        """POST, then PATCHes of ``chunk`` bytes with Content-Range, then the PUT.

        ``route(i)`` names the server that gets step ``i`` (the POST is step 0); each
        request goes to the path and query of the newest Location.
        """
        pick: Route = route or (lambda _i: self.base)
        if post is None:
            post = request("POST", f"{pick(0)}/v2/{repo}/blobs/uploads/")
            assert post.status == 202, post
        location = post.location()
        pieces = [data[i : i + chunk] for i in range(0, len(data), chunk)] or [b""]
        last = pieces.pop() if final_body else b""
        offset, step = 0, 1
        for piece in pieces:
            headers = {
                **OCTET,
                "Content-Range": f"{offset}-{offset + len(piece) - 1}",
            }
            patch = request("PATCH", retarget(location, pick(step)), headers=headers, body=piece)
            assert patch.status == 202, (step, patch, patch.body)
            assert patch.header("Range") == f"0-{offset + len(piece) - 1}", patch.header("Range")
            location = patch.location()
            offset += len(piece)
            step += 1
        return self.finish(retarget(location, pick(step)), _oci.sha256(data), last)

    def finish(self, location: str, digest: str, body: bytes) -> Response:
        return request("PUT", with_digest(location, digest), headers=OCTET, body=body)

    # --- manifests ------------------------------------------------------------------

    def put_manifest(self, repo: str, ref: str, payload: bytes, media_type: str) -> Response:
        return request(
            "PUT",
            f"{self.base}/v2/{repo}/manifests/{ref}",
            headers={"Content-Type": media_type},
            body=payload,
        )

    def get_manifest(self, repo: str, ref: str, accept: Sequence[str] = ()) -> Response:
        accept = accept or (
            _oci.OCI_MANIFEST,
            _oci.OCI_INDEX,
            _oci.DOCKER_MANIFEST,
            _oci.DOCKER_LIST,
        )
        return self.get(f"/v2/{repo}/manifests/{ref}", headers={"Accept": ", ".join(accept)})

    def push_image(
        self, repo: str, image: _oci.Image, tag: str | None, *, mode: str = "post-put"
    ) -> Response:
        for data in image.blobs.values():
            resp = self.push_blob(repo, data, mode=mode)
            assert resp.status == 201, resp
        return self.put_manifest(repo, tag or image.digest, image.manifest, _oci.OCI_MANIFEST)

    def push_index(self, repo: str, index: _oci.Index, tag: str | None) -> Response:
        for image in index.images:
            resp = self.push_image(repo, image, None)
            assert resp.status == 201, resp
        return self.put_manifest(repo, tag or index.digest, index.index, _oci.OCI_INDEX)

    def tags(self, repo: str) -> list[str]:
        resp = self.get(f"/v2/{repo}/tags/list")
        assert resp.status == 200, resp
        return sorted(resp.json().get("tags") or [])

    def catalog(self) -> list[str]:
        resp = self.get("/v2/_catalog")
        assert resp.status == 200, resp
        return list(json.loads(resp.body)["repositories"])
