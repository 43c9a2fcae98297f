"""Storage trees written by one registry for the other to read, with what each must contain.

A :class:`Tree` records, while it is pushed, every repository, tag, manifest
and blob the test expects the other implementation to find, and what was
deleted and must stay gone. The same fixture content is pushed to either
server, so both directions are checked against one description.
"""

from __future__ import annotations

import copy
import json
import random
from dataclasses import dataclass, field
from pathlib import Path

from . import _oci
from ._client import Client
from ._http import request
from ._peers import push

# distribution's grammar lets a domain-like first component hold upper case;
# skopeo refuses such names, so they are pushed over raw HTTP.
UPPER_CASE_NAME = "Registry.Example.COM/team/app"


@dataclass
class Tree:
    repos: dict[str, dict[str, str]] = field(default_factory=dict)
    """repository -> tag -> manifest digest."""
    manifests: dict[str, dict[str, bytes]] = field(default_factory=dict)
    """repository -> manifest digest -> payload (tagged or not)."""
    blobs: dict[str, dict[str, bytes]] = field(default_factory=dict)
    """repository -> blob digest -> bytes (configs and layers linked in that repository).

    Deleting a manifest leaves its layers linked (distribution unlinks nothing
    but the revision), so they stay here until a garbage collection."""
    deleted: dict[str, set[str]] = field(default_factory=dict)
    """repository -> manifest digests deleted by digest."""
    media_types: dict[str, str] = field(default_factory=dict)
    """manifest digest -> media type."""
    tops: dict[str, _oci.Image | _oci.Index] = field(default_factory=dict)
    """repository:tag -> what was pushed there (for pulls)."""

    def add(self, repo: str, tag: str | None, top: _oci.Image | _oci.Index) -> None:
        self.repos.setdefault(repo, {})
        manifests = self.manifests.setdefault(repo, {})
        blobs = self.blobs.setdefault(repo, {})
        if isinstance(top, _oci.Index):
            manifests.update(top.manifests)
            blobs.update(top.blobs)
            self.media_types[top.digest] = _oci.OCI_INDEX
            for image in top.images:
                self.media_types[image.digest] = _oci.OCI_MANIFEST
        else:
            manifests[top.digest] = top.manifest
            blobs.update(top.blobs)
            self.media_types[top.digest] = _oci.OCI_MANIFEST
        if tag is not None:
            self.repos[repo][tag] = top.digest
            self.tops[f"{repo}:{tag}"] = top

    def forget(self, repo: str, digest: str) -> None:
        """A manifest deleted by digest: gone with every tag that pointed at it."""
        self.deleted.setdefault(repo, set()).add(digest)
        self.manifests[repo].pop(digest, None)
        self.repos[repo] = {t: d for t, d in self.repos[repo].items() if d != digest}
        self.tops = {k: v for k, v in self.tops.items() if v.digest != digest}

    @property
    def all_blobs(self) -> dict[str, bytes]:
        out: dict[str, bytes] = {}
        for blobs in self.blobs.values():
            out.update(blobs)
        return out

    def referenced(self) -> set[str]:
        """Every digest a garbage collection must keep: live manifests and what they reference."""
        keep: set[str] = set()
        for manifests in self.manifests.values():
            for digest, payload in manifests.items():
                keep.add(digest)
                keep |= references(payload)
        return keep

    def after_gc(self) -> tuple[Tree, dict[str, set[str]]]:
        """The tree a mark-and-sweep leaves, and per repository the linked blobs it swept.

        A swept blob keeps its ``_layers`` link (distribution's collector removes
        data only), so it must read as unknown, never as an error.
        """
        keep = self.referenced()
        left = copy.deepcopy(self)
        swept: dict[str, set[str]] = {}
        for repo, blobs in self.blobs.items():
            left.blobs[repo] = {d: b for d, b in blobs.items() if d in keep}
            swept[repo] = set(blobs) - keep
        return left, swept


def references(payload: bytes) -> set[str]:
    """What distribution's collector marks from a manifest: config, layers or children.

    A ``subject`` is not followed: a referrer does not keep its subject alive.
    """
    doc = json.loads(payload)
    out = {d["digest"] for d in doc.get("layers") or ()}
    out |= {d["digest"] for d in doc.get("manifests") or ()}
    if isinstance(doc.get("config"), dict):
        out.add(doc["config"]["digest"])
    return out


def populate(url: str, workdir: Path, rng: random.Random, *, skopeo_layout: bool = True) -> Tree:
    """Push the interop fixture to the registry at ``url`` and describe it.

    - ``library/multi``: a two-platform index tagged ``v1`` and ``latest``, its amd64
      image also tagged ``amd64``, and an image tagged ``gone`` then deleted by digest;
    - ``other/app``: two images tagged ``1.0`` and ``1.1``;
    - :data:`UPPER_CASE_NAME`: one image tagged ``v1``, over raw HTTP;
    - an orphan blob in ``other/app`` that no manifest references.
    """
    tree = Tree()
    client = Client(url)
    layout = _oci.Layout(workdir / f"layout-{rng.getrandbits(32):08x}")

    multi = _oci.make_multiarch(rng)
    gone = _oci.make_image(rng, layers=1)
    app10 = _oci.make_image(rng)
    app11 = _oci.make_image(rng, layers=3)
    upper = _oci.make_image(rng, layers=1)

    pushes: list[tuple[str, str, _oci.Image | _oci.Index]] = [
        ("library/multi", "v1", multi),
        ("library/multi", "latest", multi),
        ("library/multi", "amd64", multi.images[0]),
        ("library/multi", "gone", gone),
        ("other/app", "1.0", app10),
        ("other/app", "1.1", app11),
    ]
    for repo, tag, top in pushes:
        if skopeo_layout:
            layout.tag(tag, top)
            push(layout.root, tag, url, repo)
        elif isinstance(top, _oci.Index):
            assert client.push_index(repo, top, tag).status == 201
        else:
            assert client.push_image(repo, top, tag).status == 201
        tree.add(repo, tag, top)

    resp = client.push_image(UPPER_CASE_NAME, upper, "v1")
    assert resp.status == 201, resp
    tree.add(UPPER_CASE_NAME, "v1", upper)

    orphan = rng.randbytes(1000)
    assert client.push_blob("other/app", orphan).status == 201
    tree.blobs["other/app"][_oci.sha256(orphan)] = orphan

    resp = request("DELETE", f"{url}/v2/library/multi/manifests/{gone.digest}")
    assert resp.status == 202, resp
    tree.forget("library/multi", gone.digest)
    return tree


def push_referrer(
    client: Client, repo: str, subject: _oci.Image, rng: random.Random, tree: Tree | None = None
) -> str:
    """Push an artifact manifest whose subject is ``subject`` (recorded in ``tree``); its digest."""
    empty = b"{}"
    payload = rng.randbytes(64)
    for blob in (empty, payload):
        assert client.push_blob(repo, blob).status == 201
    manifest = _oci.canonical_json(
        {
            "schemaVersion": 2,
            "mediaType": _oci.OCI_MANIFEST,
            "artifactType": "application/vnd.example.signature",
            "config": _oci.descriptor(_oci.OCI_EMPTY, empty),
            "layers": [_oci.descriptor("application/octet-stream", payload)],
            "subject": _oci.descriptor(_oci.OCI_MANIFEST, subject.manifest),
        }
    )
    digest = _oci.sha256(manifest)
    resp = client.put_manifest(repo, digest, manifest, _oci.OCI_MANIFEST)
    assert resp.status == 201, resp
    if tree is not None:
        tree.manifests[repo][digest] = manifest
        tree.media_types[digest] = _oci.OCI_MANIFEST
        tree.blobs[repo].update({_oci.sha256(b): b for b in (empty, payload)})
    return digest
