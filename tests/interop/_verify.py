"""Checks that a registry serves exactly what a :class:`~._trees.Tree` describes, over HTTP.

The same check runs against the Go registry and ``ocistore serve``, whoever
wrote the tree: identical bytes, identical digests, deleted content gone.
"""

from __future__ import annotations

from pathlib import Path

from . import _oci
from ._client import Client
from ._peers import pull
from ._trees import Tree


def check_served(url: str, tree: Tree) -> None:
    client = Client(url)
    catalog = client.catalog()
    for repo in tree.repos:
        assert repo in catalog, (repo, catalog)
    for repo, tags in tree.repos.items():
        assert client.tags(repo) == sorted(tags), repo
        for tag, digest in tags.items():
            resp = client.get_manifest(repo, tag)
            assert resp.status == 200, (repo, tag, resp)
            assert resp.header("Docker-Content-Digest") == digest
            assert resp.body == tree.manifests[repo][digest]
            assert resp.header("Content-Type") == tree.media_types[digest]
        for digest, payload in tree.manifests[repo].items():
            resp = client.get_manifest(repo, digest)
            assert resp.status == 200, (repo, digest, resp)
            assert resp.body == payload
            assert resp.header("Docker-Content-Digest") == digest
        for digest in tree.deleted.get(repo, ()):
            resp = client.get_manifest(repo, digest)
            assert resp.status == 404, (repo, digest, resp)
            assert resp.error_codes() == ["MANIFEST_UNKNOWN"], resp
        for digest, data in tree.blobs[repo].items():
            resp = client.get(f"/v2/{repo}/blobs/{digest}")
            assert resp.status == 200, (repo, digest, resp)
            assert resp.body == data
            assert resp.header("Docker-Content-Digest") == digest


def check_pulled(url: str, tree: Tree, workdir: Path) -> None:
    """skopeo pulls every tag (``--all``) and gets the digests that were pushed."""
    for ref, top in tree.tops.items():
        repo, tag = ref.rsplit(":", 1)
        if repo.lower() != repo:
            continue  # skopeo refuses upper-case names; check_served covered them
        dest = _oci.Layout(workdir / f"pulled-{abs(hash((url, ref))):x}")
        pull(url, repo, tag, dest.root, tag)
        assert dest.ref_digest(tag) == top.digest, ref
        expected = set(top.blobs)
        if isinstance(top, _oci.Index):
            expected |= set(top.manifests)
        else:
            expected.add(top.digest)
        assert dest.blob_digests() == expected, ref
        for digest in expected:
            assert _oci.sha256(dest.read_blob(digest)) == digest
