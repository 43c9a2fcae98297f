"""Manifests, tags, catalog and referrers through the in-process ASGI client."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from urllib.parse import urlsplit

from .asgi_client import Client
from .conftest import make_app, sha256
from .helpers import DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST, manifest_for, put_manifest

REPO = "app/web"
ALL_TYPES = ",".join(
    [
        OCI_MANIFEST,
        OCI_INDEX,
        DOCKER_MANIFEST,
        "application/vnd.docker.distribution.manifest.list.v2+json",
    ]
)


def test_put_get_head_delete_by_tag_and_digest(client: Client) -> None:
    payload = manifest_for(client, REPO)
    dgst = sha256(payload)
    r = put_manifest(client, REPO, "v1", payload)
    assert r.status == 201, r.body
    assert r.header("Location") == f"http://registry.test/v2/{REPO}/manifests/{dgst}"
    assert r.header("Docker-Content-Digest") == dgst
    assert r.header("OCI-Subject") is None

    for ref in ("v1", dgst):
        r = client.get(f"/v2/{REPO}/manifests/{ref}", headers={"Accept": ALL_TYPES})
        assert (r.status, r.body) == (200, payload)
        assert r.header("Content-Type") == OCI_MANIFEST
        assert r.header("Docker-Content-Digest") == dgst
        assert r.header("ETag") == f'"{dgst}"'
        r = client.head(f"/v2/{REPO}/manifests/{ref}")
        assert (r.status, r.header("Content-Length")) == (200, str(len(payload)))

    r = client.get(f"/v2/{REPO}/manifests/v1", headers={"If-None-Match": f'"{dgst}"'})
    assert r.status == 304
    r = client.get(f"/v2/{REPO}/manifests/v1", headers={"Accept": DOCKER_MANIFEST})
    assert (r.status, r.error_codes) == (404, ["MANIFEST_UNKNOWN"])

    assert client.delete(f"/v2/{REPO}/manifests/v1").status == 202
    assert client.get(f"/v2/{REPO}/manifests/v1").error_codes == ["MANIFEST_UNKNOWN"]
    assert client.get(f"/v2/{REPO}/manifests/{dgst}").status == 200
    assert client.delete(f"/v2/{REPO}/manifests/{dgst}").status == 202
    assert client.get(f"/v2/{REPO}/manifests/{dgst}").error_codes == ["MANIFEST_UNKNOWN"]
    assert client.delete(f"/v2/{REPO}/manifests/{dgst}").status == 404


def test_put_by_digest(client: Client) -> None:
    payload = manifest_for(client, REPO, seed=b"d")
    assert put_manifest(client, REPO, sha256(payload), payload).status == 201
    r = put_manifest(client, REPO, sha256(b"something else"), payload)
    assert (r.status, r.error_codes) == (400, ["DIGEST_INVALID"])


def test_manifest_errors(client: Client) -> None:
    payload = manifest_for(client, REPO)
    doc = json.loads(payload)
    doc["layers"].append(
        {"mediaType": doc["layers"][0]["mediaType"], "digest": sha256(b"missing"), "size": 7}
    )
    r = put_manifest(client, REPO, "t", json.dumps(doc).encode())
    assert (r.status, r.error_codes) == (400, ["MANIFEST_BLOB_UNKNOWN"])
    assert r.json()["errors"][0]["detail"] == {"digest": sha256(b"missing")}

    r = put_manifest(client, REPO, "t", b"{not json")
    assert (r.status, r.error_codes) == (400, ["MANIFEST_INVALID"])
    r = put_manifest(client, REPO, "t", payload, media_type="text/plain")
    assert (r.status, r.error_codes) == (400, ["MANIFEST_INVALID"])
    big = b" " * (4 * 1024 * 1024 + 1)
    r = put_manifest(client, REPO, "t", big)
    assert (r.status, r.error_codes) == (413, ["MANIFEST_INVALID"])
    r = put_manifest(client, REPO, "-bad-tag", payload)
    assert (r.status, r.error_codes) == (400, ["TAG_INVALID"])
    r = put_manifest(client, REPO, "sha256:1234", payload)
    assert (r.status, r.error_codes) == (400, ["DIGEST_INVALID"])
    r = client.get(f"/v2/{REPO}/manifests/nosuchtag")
    assert (r.status, r.error_codes) == (404, ["MANIFEST_UNKNOWN"])
    assert client.get("/v2/no/such/manifests/latest").status == 404


def test_deletes_disabled(tmp_path: Path) -> None:
    client = Client(make_app(tmp_path, delete_enabled=False))
    payload = manifest_for(client, REPO)
    put_manifest(client, REPO, "v1", payload)
    for ref in ("v1", sha256(payload)):
        r = client.delete(f"/v2/{REPO}/manifests/{ref}")
        assert (r.status, r.error_codes) == (405, ["UNSUPPORTED"])


def test_tags_list_pagination(client: Client) -> None:
    payload = manifest_for(client, REPO)
    tags = sorted(f"t{i:02d}" for i in range(7))
    for t in tags:
        assert put_manifest(client, REPO, t, payload).status == 201
    r = client.get(f"/v2/{REPO}/tags/list")
    assert r.json() == {"name": REPO, "tags": tags}
    assert r.header("Link") is None
    seen: list[str] = []
    url = f"/v2/{REPO}/tags/list?n=3"
    while url:
        r = client.get(url)
        assert r.status == 200
        seen += r.json()["tags"]
        link = r.header("Link")
        url = link[1 : link.index(">")] if link else ""
        if link:
            assert link.endswith('; rel="next"')
    assert seen == tags
    assert client.get(f"/v2/{REPO}/tags/list?n=0").json()["tags"] == []
    r = client.get(f"/v2/{REPO}/tags/list?n=x")
    assert (r.status, r.error_codes) == (400, ["PAGINATION_NUMBER_INVALID"])
    assert client.get(f"/v2/{REPO}/tags/list?n=-1").status == 400
    r = client.get("/v2/nobody/tags/list")
    assert (r.status, r.error_codes) == (404, ["NAME_UNKNOWN"])


def test_catalog_pagination(client: Client) -> None:
    names = ["a/one", "a/two", "b", "c/d/e", "zz"]
    for name in names:
        put_manifest(client, name, "latest", manifest_for(client, name))
    assert client.get("/v2/_catalog").json() == {"repositories": names}
    r = client.get("/v2/_catalog?n=2")
    assert r.json()["repositories"] == names[:2]
    link = r.header("Link") or ""
    nxt = link[1 : link.index(">")]
    assert urlsplit(nxt).path == "/v2/_catalog"
    r = client.get(nxt)
    assert r.json()["repositories"] == names[2:4]
    r = client.get(
        r.header(
            "Link",
        )[1:].split(">")[0]
    )  # type: ignore[index]
    assert r.json()["repositories"] == names[4:] and r.header("Link") is None
    assert client.get("/v2/_catalog?n=5000").error_codes == ["PAGINATION_NUMBER_INVALID"]


def test_referrers(client: Client) -> None:
    subject_payload = manifest_for(client, REPO, seed=b"s")
    put_manifest(client, REPO, "v1", subject_payload)
    subject = {
        "mediaType": OCI_MANIFEST,
        "digest": sha256(subject_payload),
        "size": len(subject_payload),
    }
    sig = manifest_for(
        client,
        REPO,
        seed=b"g",
        subject=subject,
        artifact_type="application/vnd.example.sig",
        annotations={"org.example": "yes"},
    )
    r = put_manifest(client, REPO, sha256(sig), sig)
    assert r.status == 201
    assert r.header("OCI-Subject") == subject["digest"]
    sbom = manifest_for(
        client, REPO, seed=b"b", subject=subject, artifact_type="application/vnd.example.sbom"
    )
    put_manifest(client, REPO, sha256(sbom), sbom)

    r = client.get(f"/v2/{REPO}/referrers/{subject['digest']}")
    assert r.status == 200
    assert r.header("Content-Type") == OCI_INDEX
    index = r.json()
    assert index["mediaType"] == OCI_INDEX and index["schemaVersion"] == 2
    by_digest = {d["digest"]: d for d in index["manifests"]}
    assert set(by_digest) == {sha256(sig), sha256(sbom)}
    d = by_digest[sha256(sig)]
    assert d["artifactType"] == "application/vnd.example.sig"
    assert d["mediaType"] == OCI_MANIFEST and d["size"] == len(sig)
    assert d["annotations"] == {"org.example": "yes"}

    r = client.get(
        f"/v2/{REPO}/referrers/{subject['digest']}?artifactType=application/vnd.example.sbom"
    )
    assert r.header("OCI-Filters-Applied") == "artifactType"
    assert [m["digest"] for m in r.json()["manifests"]] == [sha256(sbom)]

    r = client.get(f"/v2/{REPO}/referrers/{sha256(b'nothing')}")
    assert (r.status, r.json()["manifests"]) == (200, [])
    assert client.get(f"/v2/never/pushed/referrers/{sha256(b'x')}").status == 200
    assert client.get(f"/v2/{REPO}/referrers/sha256:bad").error_codes == ["DIGEST_INVALID"]


def test_referrers_tag_schema_fallback(client: Client) -> None:
    """A referrer recorded the old way (an index under tag sha256-<hex>) is listed too."""
    subject_payload = manifest_for(client, REPO, seed=b"o")
    put_manifest(client, REPO, "v1", subject_payload)
    subject_digest = sha256(subject_payload)
    # The old client pushes its artifact without a subject the registry indexes...
    art = manifest_for(client, REPO, seed=b"a", artifact_type="application/vnd.old.sig")
    put_manifest(client, REPO, sha256(art), art)
    desc = {
        "mediaType": OCI_MANIFEST,
        "digest": sha256(art),
        "size": len(art),
        "artifactType": "application/vnd.old.sig",
    }
    # ...and records it in the fallback tag's index.
    index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [desc]}).encode()
    tag = "sha256-" + subject_digest.split(":")[1]
    assert put_manifest(client, REPO, tag, index, media_type=OCI_INDEX).status == 201
    r = client.get(f"/v2/{REPO}/referrers/{subject_digest}")
    assert [m["digest"] for m in r.json()["manifests"]] == [sha256(art)]
    r = client.get(f"/v2/{REPO}/referrers/{subject_digest}?artifactType=other")
    assert r.json()["manifests"] == []


# --- the GET manifest fast path: tags and payloads served from caches, never stale -------------


def _tag_link(tmp_path: Path, tag: str, repo: str = REPO) -> Path:
    return (
        tmp_path / "data/docker/registry/v2/repositories" / repo / "_manifests/tags" / tag
    ) / "current/link"


def test_tag_moved_on_disk_is_served_at_once(client: Client, tmp_path: Path) -> None:
    """Another program (a worker, the Go registry, a script) moves or deletes a hot tag."""
    one = manifest_for(client, REPO, seed=b"1")
    two = manifest_for(client, REPO, seed=b"2")
    put_manifest(client, REPO, "v1", one)
    put_manifest(client, REPO, sha256(two), two)
    for _ in range(2):
        assert client.get(f"/v2/{REPO}/manifests/v1").body == one
    link = _tag_link(tmp_path, "v1")
    new = link.with_name("link.tmp")
    new.write_text(sha256(two))
    os.replace(new, link)  # a rename over the link
    r = client.get(f"/v2/{REPO}/manifests/v1")
    assert (r.body, r.header("Docker-Content-Digest")) == (two, sha256(two))
    with open(link, "r+b") as f:  # rewritten in place, as distribution 2.8.2 does
        f.truncate(0)
        f.write(sha256(one).encode())
    assert client.get(f"/v2/{REPO}/manifests/v1").body == one
    shutil.rmtree(link.parent.parent)
    r = client.get(f"/v2/{REPO}/manifests/v1")
    assert (r.status, r.error_codes) == (404, ["MANIFEST_UNKNOWN"])
    assert client.head(f"/v2/{REPO}/manifests/v1").status == 404


def test_deleted_manifest_blob_is_not_served_from_the_caches(
    client: Client, tmp_path: Path
) -> None:
    """Go's garbage-collect removes the manifest's blob directory: tag and digest both 404."""
    payload = manifest_for(client, REPO, seed=b"g")
    dgst = sha256(payload)
    put_manifest(client, REPO, "v1", payload)
    for ref in ("v1", dgst, "v1", dgst):
        assert client.get(f"/v2/{REPO}/manifests/{ref}").body == payload
    hexa = dgst.split(":")[1]
    shutil.rmtree(tmp_path / "data/docker/registry/v2/blobs/sha256" / hexa[:2] / hexa)
    for ref in ("v1", dgst):
        r = client.get(f"/v2/{REPO}/manifests/{ref}")
        assert (r.status, r.error_codes) == (404, ["MANIFEST_UNKNOWN"])
        assert client.head(f"/v2/{REPO}/manifests/{ref}").status == 404
        r = client.get(f"/v2/{REPO}/manifests/{ref}", headers={"If-None-Match": f'"{dgst}"'})
        assert r.status == 404  # a 304 needs a manifest that is there


def test_unlinked_manifest_is_not_served_from_the_payload_cache(client: Client) -> None:
    """The payload cache is keyed by digest: another repository must still link it."""
    payload = manifest_for(client, REPO, seed=b"u")
    put_manifest(client, REPO, "v1", payload)
    assert client.get(f"/v2/{REPO}/manifests/v1").status == 200
    manifest_for(client, "other/repo", seed=b"u")  # same blobs there, no manifest
    r = client.get(f"/v2/other/repo/manifests/{sha256(payload)}")
    assert (r.status, r.error_codes) == (404, ["MANIFEST_UNKNOWN"])


def test_get_manifest_headers_and_conditions(client: Client) -> None:
    payload = manifest_for(client, REPO, seed=b"h")
    dgst = sha256(payload)
    put_manifest(client, REPO, "v1", payload)
    for _ in range(2):  # the first answer fills the caches, the second comes from them
        r = client.get(f"/v2/{REPO}/manifests/v1", headers={"Accept": OCI_MANIFEST})
        assert r.status == 200
        assert {k for k, _ in r.raw_headers} == {
            "docker-content-digest",
            "etag",
            "content-type",
            "content-length",
            "docker-distribution-api-version",
            "x-request-id",
        }
        assert r.header("Content-Length") == str(len(payload))
        assert r.header("Docker-Distribution-API-Version") == "registry/2.0"
        r = client.get(f"/v2/{REPO}/manifests/v1", headers={"If-None-Match": f"W/{dgst}, x"})
        assert (r.status, r.body, r.header("ETag")) == (304, b"", f'"{dgst}"')
        assert r.header("Content-Type") is None
        # A refused media type is MANIFEST_UNKNOWN before If-None-Match is looked at.
        r = client.get(
            f"/v2/{REPO}/manifests/v1",
            headers={"Accept": DOCKER_MANIFEST, "If-None-Match": f'"{dgst}"'},
        )
        assert (r.status, r.error_codes) == (404, ["MANIFEST_UNKNOWN"])
        r = client.get(f"/v2/{REPO}/manifests/v1", headers={"Accept": "application/json"})
        assert r.status == 200  # no manifest type named: a generic client gets it
        r = client.get(f"/v2/{REPO}/manifests/v1", headers={"Accept": "*/*;q=0.8"})
        assert r.status == 200


def test_long_accept_headers_are_negotiated_alike(client: Client) -> None:
    """Headers too long to memoize get the same answers as short ones."""
    payload = manifest_for(client, REPO, seed=b"l")
    put_manifest(client, REPO, "v1", payload)
    padding = ", ".join(f"application/x-filler-{i}" for i in range(60))
    assert len(padding) > 1024
    for accept, status in (
        (f"{padding}, {OCI_MANIFEST}", 200),
        (f"{padding}, {DOCKER_MANIFEST}", 404),
        (f"{DOCKER_MANIFEST}, {padding}, */*", 200),
        (padding, 200),  # no manifest type named at all
    ):
        for _ in range(2):
            r = client.get(f"/v2/{REPO}/manifests/v1", headers={"Accept": accept})
            assert r.status == status, accept[-60:]
