"""``ocistore export`` and ``import`` against skopeo's ``oci:`` transport, both directions.

- out: a multi-arch index with referrers is exported from a root that
  ``ocistore serve`` serves; skopeo pushes the layout (``oci:DIR:TAG``, with
  the referrers listed beside the tagged image in ``index.json``) to the
  server, which must then hold the same index and children under the new
  name, digests preserved;
- in: skopeo pulls the image from the server into a layout it writes itself;
  ``ocistore import`` stores that layout under another name while the server
  runs, and skopeo pulls it back from the server with the same digests.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from layout_helpers import build_image, layout_blobs
from ocistore.cli import main
from ocistore.driver.filesystem import FilesystemDriver
from ocistore.storage.registry import Registry

from ._peers import OcistoreServer, pull, push

pytestmark = pytest.mark.peer


def test_export_then_skopeo_push_and_skopeo_pull_then_import(
    root: Path,
    tmp_path: Path,
    start_ocistore: Callable[..., OcistoreServer],
    skopeo_available: None,
) -> None:
    built = build_image(Registry(FilesystemDriver(root)).repository("team/app"), "v1")
    server = start_ocistore(root)

    exported = tmp_path / "exported"
    assert main(["export", "--root", str(root), "team/app:v1", str(exported)]) == 0
    index = json.loads((exported / "index.json").read_text())
    assert len(index["manifests"]) == 1 + len(built.referrers)
    push(exported, "v1", server.url, "copied/app")
    copied = Registry(FilesystemDriver(root)).repository("copied/app")
    assert copied.tags.resolve("v1") == built.index
    for dgst in [built.index, *built.children]:
        assert copied.manifests.get(dgst).payload == built.manifests[dgst]

    pulled = tmp_path / "pulled"
    pull(server.url, "team/app", "v1", pulled, "v1")
    assert main(["import", "--root", str(root), str(pulled), "imported/app"]) == 0
    imported = Registry(FilesystemDriver(root)).repository("imported/app")
    assert imported.tags.resolve("v1") == built.index
    again = tmp_path / "again"
    pull(server.url, "imported/app", "v1", again, "v1")
    assert layout_blobs(again) == layout_blobs(pulled)
    wanted = {str(d) for d in [built.index, *built.children]}
    assert wanted <= set(layout_blobs(again))
