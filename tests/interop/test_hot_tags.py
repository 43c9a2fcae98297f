"""Hot tags and manifests: ``ocistore serve`` answers them from its caches, and never stale.

ocistore keeps a tag's digest and a manifest's payload in process (kept true
by inotify, see ``ocistore._core_py.statcache``). Whoever moves or deletes the
tag, or removes the manifest, on the same root — the Go registry, another
ocistore worker — the next GET must see it.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

import pytest

from . import _oci
from ._client import Client
from ._http import request
from ._peers import GoRegistry, OcistoreServer

pytestmark = pytest.mark.peer

REPO = "hot/tags"


def served(client: Client, ref: str) -> tuple[int, str | None]:
    resp = client.get_manifest(REPO, ref)
    return resp.status, resp.header("Docker-Content-Digest")


def test_go_moves_and_deletes_a_hot_tag(
    root: Path,
    rng: random.Random,
    start_go: Callable[..., GoRegistry],
    start_ocistore: Callable[..., OcistoreServer],
) -> None:
    go = Client(start_go(root).url)
    oci = Client(start_ocistore(root).url)
    one, two = _oci.make_image(rng, layers=1), _oci.make_image(rng, layers=1)
    assert go.push_image(REPO, one, "t").status == 201
    assert go.push_image(REPO, two, None).status == 201
    for _ in range(3):  # hot in ocistore's caches
        assert served(oci, "t") == (200, one.digest)
        assert served(oci, two.digest) == (200, two.digest)
    # distribution 2.8.2 rewrites current/link in place (truncate, write)
    assert go.put_manifest(REPO, "t", two.manifest, _oci.OCI_MANIFEST).status == 201
    assert served(oci, "t") == (200, two.digest)
    deleted = request("DELETE", f"{go.base}/v2/{REPO}/manifests/{two.digest}")
    assert deleted.status == 202  # distribution untags "t" too
    for ref in ("t", two.digest):
        assert served(oci, ref)[0] == 404
    assert served(oci, one.digest) == (200, one.digest)


def test_workers_see_each_others_tags(
    root: Path, rng: random.Random, start_ocistore: Callable[..., OcistoreServer]
) -> None:
    """Two worker processes: a tag moved or deleted through one is seen by both at once."""
    oci = Client(start_ocistore(root, extra=["--workers", "2"]).url)
    one, two = _oci.make_image(rng, layers=1), _oci.make_image(rng, layers=1)
    assert oci.push_image(REPO, one, "t").status == 201
    assert oci.push_image(REPO, two, None).status == 201
    for _ in range(16):  # each request on a new connection: both workers get hot
        assert served(oci, "t") == (200, one.digest)
    assert oci.put_manifest(REPO, "t", two.manifest, _oci.OCI_MANIFEST).status == 201
    for _ in range(16):
        assert served(oci, "t") == (200, two.digest)
    assert request("DELETE", f"{oci.base}/v2/{REPO}/manifests/t").status == 202
    for _ in range(16):
        assert served(oci, "t")[0] == 404
    assert served(oci, two.digest) == (200, two.digest)
