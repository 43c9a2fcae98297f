"""``ocistore du``: bytes per repository, exclusive and shared, and what a collection would free.

The numbers are computed independently here from the blobs each test pushed,
and checked against the Go registry's collector: after ``docker-registry
garbage-collect`` on the same root, exactly the blobs ``du`` called
reclaimable are gone (distribution's mark is the definition ``du`` follows).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from conftest import require_peers
from manifest_helpers import index_payload, oci_image, push_oci_image
from ocistore.cli import main
from ocistore.digest import Digest
from ocistore.driver import FilesystemDriver, StorageDriver
from ocistore.errors import NameUnknown
from ocistore.manifest import mediatypes as mt
from ocistore.storage import Registry, paths
from ocistore.storage.usage import usage
from s3_peer import S3Endpoint, new_bucket, s3_endpoint  # noqa: F401 (fixtures)


def _sizes(registry: Registry, payload: bytes) -> dict[Digest, int]:
    """The manifest's own blob and its config and layers, with their sizes."""
    doc = json.loads(payload)
    out = {Digest.from_bytes(payload): len(payload)}
    for d in [doc["config"], *doc["layers"]]:
        out[Digest(d["digest"])] = d["size"]
    return out


def _tree(where: Path | StorageDriver) -> dict[str, Any]:
    """Two repositories sharing one layer, an index, a referrer, a deleted image, a loose blob."""
    driver = FilesystemDriver(where) if isinstance(where, Path) else where
    reg = Registry(driver, delete_enabled=True, stat_cache_size=0)
    a, b = reg.repository("a/app"), reg.repository("b/app")
    shared = a.blobs.put(mt.OCI_LAYER_GZIP, b"shared layer bytes " * 50)
    shared_desc = {
        "mediaType": mt.OCI_LAYER_GZIP,
        "digest": str(shared.digest),
        "size": shared.size,
    }
    img_a = oci_image(a, layers=2)
    doc = json.loads(img_a)
    doc["layers"].append(shared_desc)
    img_a = json.dumps(doc).encode()
    a.manifests.put(img_a, tag="v1")
    img_a2 = push_oci_image(a, layers=1)
    index = index_payload([(img_a, "amd64", "linux"), (img_a2, "arm64", "linux")])
    a.manifests.put(index, tag="multi")
    b.blobs.mount("a/app", shared.digest)
    img_b = oci_image(b, layers=1)
    doc = json.loads(img_b)
    doc["layers"].append(shared_desc)
    img_b = json.dumps(doc).encode()
    b.manifests.put(img_b, tag="latest")
    signature = oci_image(
        b,
        layers=1,
        config=b"{}",
        config_type=mt.OCI_EMPTY,
        artifactType="application/vnd.example.sig",
        subject={
            "mediaType": mt.OCI_MANIFEST,
            "digest": str(Digest.from_bytes(img_b)),
            "size": len(img_b),
        },
    )
    b.manifests.put(signature)
    gone = push_oci_image(b, layers=2)
    b.manifests.delete(Digest.from_bytes(gone))
    loose = reg.blobs.put("application/octet-stream", b"pushed, never referenced")

    used_a = _sizes(reg, img_a) | _sizes(reg, img_a2) | {Digest.from_bytes(index): len(index)}
    used_b = _sizes(reg, img_b) | _sizes(reg, signature)
    unused = (_sizes(reg, gone).keys() - used_a.keys() - used_b.keys()) | {loose.digest}
    all_sizes = {
        paths.digest_from_blob_data_path(i.path): i.size
        for i in driver.walk(paths.path_for(paths.BlobsRoot()))
        if not i.is_dir
    }
    return {
        "driver": driver,
        "used_a": used_a,
        "used_b": used_b,
        "unused": unused,
        "shared": shared.digest,
        "all": all_sizes,
    }


@pytest.fixture(params=["filesystem", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Path | StorageDriver:
    if request.param == "filesystem":
        return tmp_path / "root"
    endpoint: S3Endpoint = request.getfixturevalue("s3_endpoint")
    bucket = request.getfixturevalue("new_bucket")()
    from ocistore.driver.s3 import S3Driver
    from ocistore.driver.s3_options import parse_s3_options

    return S3Driver(parse_s3_options(endpoint.params(bucket, rootdirectory="/reg")))


def test_du_splits_exclusive_and_shared_and_counts_what_gc_frees(
    store: Path | StorageDriver,
) -> None:
    t = _tree(store)
    report = usage(t["driver"])
    by_name = {r.name: r for r in report.repositories}
    assert list(by_name) == ["a/app", "b/app"]
    sizes = t["all"]
    both = t["used_a"].keys() & t["used_b"].keys()
    assert t["shared"] in both  # the mounted layer, and the default config both images use
    for name, used in (("a/app", t["used_a"]), ("b/app", t["used_b"])):
        r = by_name[name]
        assert r.shared == sum(sizes[d] for d in both)
        assert r.exclusive == sum(sizes[d] for d in used if d not in both)
        assert r.blobs == len(used)
        assert r.problems == []
    assert by_name["a/app"].manifests == 3
    assert by_name["b/app"].manifests == 2  # the deleted image is no revision any more
    assert report.reclaimable_blobs == len(t["unused"])
    assert report.reclaimable_bytes == sum(sizes[d] for d in t["unused"])
    assert report.blobs == len(sizes) and report.bytes == sum(sizes.values())


def test_du_names_select_rows_not_the_sharing(tmp_path: Path) -> None:
    t = _tree(tmp_path / "root")
    report = usage(t["driver"], ["b/app"])
    assert [r.name for r in report.repositories] == ["b/app"]
    both = t["used_a"].keys() & t["used_b"].keys()
    assert report.repositories[0].shared == sum(t["all"][d] for d in both)  # a/app still counts
    with pytest.raises(NameUnknown):
        usage(t["driver"], ["no/such"])


def test_du_keeps_everything_linked_by_a_repository_with_a_bad_manifest(tmp_path: Path) -> None:
    driver = FilesystemDriver(tmp_path / "root")
    reg = Registry(driver, delete_enabled=True, stat_cache_size=0)
    repo = reg.repository("c/app")
    gone = push_oci_image(repo, layers=2)
    repo.manifests.delete(Digest.from_bytes(gone))
    junk = reg.blobs.put("application/octet-stream", b"[1, 2")
    link = paths.path_for(paths.ManifestRevisionLink("c/app", junk.digest))
    driver.put_content(link, str(junk.digest).encode())
    report = usage(driver)
    (r,) = report.repositories
    data = paths.path_for(paths.BlobData(junk.digest))
    assert r.problems == [r.problems[0]]
    assert r.problems[0].startswith(f"{data}: manifest {junk.digest} of c/app cannot be parsed: ")
    # The junk revision plus the deleted image's config and layers (still linked in _layers).
    assert r.blobs == 1 + 3
    assert report.reclaimable_blobs == 1  # only the deleted manifest's own blob


def test_du_a_garbage_tag_link_also_keeps_everything_linked(tmp_path: Path) -> None:
    driver = FilesystemDriver(tmp_path / "root")
    reg = Registry(driver, delete_enabled=True, stat_cache_size=0)
    repo = reg.repository("d/app")
    gone = push_oci_image(repo, layers=2)
    repo.manifests.delete(Digest.from_bytes(gone))
    push_oci_image(repo, layers=1)
    current = paths.path_for(paths.ManifestTagCurrent("d/app", "broken"))
    driver.put_content(current, b"sha256:nothex")
    (r,) = usage(driver).repositories
    assert len(r.problems) == 1 and r.problems[0].startswith(current + ": ")
    assert (
        r.blobs == 1 + 1 + 1 + 2
    )  # the image, its config and layer; the old layers (shared config)


def test_du_agrees_with_the_go_collector(tmp_path: Path) -> None:
    if shutil.which("docker-registry") is None:
        if require_peers():
            pytest.fail("docker-registry is required (OCISTORE_REQUIRE_PEERS=1)")
        pytest.skip("docker-registry not installed")
    root = tmp_path / "root"
    t = _tree(root)
    report = usage(t["driver"])
    config = tmp_path / "config.yml"
    config.write_text(
        f"version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {root}\n"
        "  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:0\n"
    )
    done = subprocess.run(
        ["docker-registry", "garbage-collect", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    after = usage(t["driver"])
    assert after.blobs == report.blobs - report.reclaimable_blobs
    assert after.bytes == report.bytes - report.reclaimable_bytes
    assert after.reclaimable_blobs == 0
    assert [r.as_dict() for r in after.repositories] == [r.as_dict() for r in report.repositories]


def test_du_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "root"
    t = _tree(root)
    assert main(["du", "--root", str(root), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["reclaimable"]["blobs"] == len(t["unused"])
    assert [r["name"] for r in out["repositories"]] == ["a/app", "b/app"]
    assert main(["du", "--root", str(root), "a/app"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["REPOSITORY", "TOTAL", "EXCLUSIVE", "SHARED", "MANIFESTS"]
    assert lines[1].startswith("a/app ") and lines[1].endswith(" 3")
    assert lines[2].startswith(f"blobs: {len(t['all'])} (")
    assert main(["du", "--root", str(root), "no/such"]) == 2
    assert "no/such" in capsys.readouterr().err
