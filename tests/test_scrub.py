"""``ocistore scrub``: every kind of damage found with its path, quarantine moves and never deletes.

The same damaged tree is built on the filesystem driver and on the S3 driver
(moto, through ``s3_peer``): a flipped byte in a layer, a truncated layer, a
link holding garbage, a sha256 link naming another digest, a link to a blob
that was never stored, a manifest revision that is not JSON, a stray file in
``blobs/``. Scrub must report exactly those, and ``--quarantine`` must move
exactly the two corrupt blobs out of ``/docker/registry/v2``.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

import pytest
import yaml

from conftest import require_peers
from manifest_helpers import push_oci_image
from ocistore.cli import main
from ocistore.digest import Digest
from ocistore.driver import FilesystemDriver, StorageDriver
from ocistore.errors import BlobUnknown
from ocistore.storage import Registry, paths
from ocistore.storage.scrub import QUARANTINE_ROOT, scrub
from s3_peer import S3Endpoint, new_bucket, s3_endpoint  # noqa: F401 (fixtures)

REPO = "team/app"


@pytest.fixture(params=["filesystem", "s3"])
def store(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[StorageDriver, Path | None]]:
    if request.param == "filesystem":
        yield FilesystemDriver(tmp_path / "root"), tmp_path / "root"
        return
    endpoint: S3Endpoint = request.getfixturevalue("s3_endpoint")
    bucket = request.getfixturevalue("new_bucket")()
    from ocistore.driver.s3 import S3Driver
    from ocistore.driver.s3_options import parse_s3_options

    yield S3Driver(parse_s3_options(endpoint.params(bucket, rootdirectory="/reg"))), None


def _files(driver: StorageDriver) -> dict[str, bytes]:
    return {i.path: driver.get_content(i.path) for i in driver.walk("/") if not i.is_dir}


class Damage:
    """The damaged tree and the findings a scrub must report, as (kind, path) pairs."""

    def __init__(self, driver: StorageDriver) -> None:
        self.registry = Registry(driver, delete_enabled=True, stat_cache_size=0)
        repo = self.registry.repository(REPO)
        self.manifest = json.loads(push_oci_image(repo, layers=3))
        other = self.registry.repository("other/app")
        push_oci_image(other, layers=1)
        layers = [Digest(d["digest"]) for d in self.manifest["layers"]]
        self.flipped, self.truncated, self.garbage_linked = layers
        d = driver
        data = lambda g: paths.path_for(paths.BlobData(g))  # noqa: E731
        flipped = bytearray(d.get_content(data(self.flipped)))
        flipped[10] ^= 0xFF
        d.put_content(data(self.flipped), bytes(flipped))
        d.put_content(data(self.truncated), d.get_content(data(self.truncated))[:-7])
        self.garbage_link = paths.path_for(paths.LayerLink(REPO, self.garbage_linked))
        d.put_content(self.garbage_link, b"this is not a digest")
        ghost = Digest.from_bytes(b"never stored")
        self.ghost_link = paths.path_for(paths.LayerLink("other/app", ghost))
        d.put_content(self.ghost_link, str(ghost).encode())
        config = Digest(self.manifest["config"]["digest"])
        self.misnamed_link = paths.path_for(paths.LayerLink("other/app", Digest.from_bytes(b"x")))
        self.registry.blobs.put("application/octet-stream", b"x")
        d.put_content(self.misnamed_link, str(config).encode())
        junk = self.registry.blobs.put("application/octet-stream", b"{not json")
        d.put_content(
            paths.path_for(paths.ManifestRevisionLink(REPO, junk.digest)), str(junk.digest).encode()
        )
        self.junk = data(junk.digest)
        self.stray = paths.path_for(paths.BlobsRoot()) + "/sha256/zz/stray.txt"
        d.put_content(self.stray, b"left here by hand")
        self.expected = {
            ("digest_mismatch", data(self.flipped)),
            ("truncated", data(self.truncated)),
            ("bad_link", self.garbage_link),
            ("bad_link", self.misnamed_link),
            ("missing_blob", self.ghost_link),
            ("unparseable_manifest", self.junk),
            ("stray_file", self.stray),
        }


def test_scrub_reports_each_kind_of_damage(store: tuple[StorageDriver, Path | None]) -> None:
    driver, _ = store
    damage = Damage(driver)
    before = _files(driver)
    report = scrub(driver, workers=3)
    assert {(f.kind, f.path) for f in report.findings} == damage.expected
    assert report.repositories == 2
    assert report.manifests == 3  # two images and the junk revision
    assert report.vanished == 0
    assert _files(driver) == before  # a scrub without --quarantine changes nothing
    counts = report.as_dict()["counts"]
    assert counts == {
        "digest_mismatch": 1,
        "truncated": 1,
        "missing_blob": 1,
        "bad_link": 2,
        "unparseable_manifest": 1,
        "stray_file": 1,
        "unreadable": 0,
    }


def test_quarantine_moves_the_corrupt_blobs_and_deletes_nothing(
    store: tuple[StorageDriver, Path | None],
) -> None:
    driver, _ = store
    damage = Damage(driver)
    before = _files(driver)
    report = scrub(driver, workers=2, quarantine=True)
    moved = {f.path: f.quarantined_to for f in report.findings if f.quarantined_to}
    corrupt = {p for k, p in damage.expected if k in ("digest_mismatch", "truncated")}
    assert set(moved) == corrupt
    after = _files(driver)
    for source, dest in moved.items():
        assert dest is not None and dest.startswith(QUARANTINE_ROOT + "/")
        assert source not in after
        assert after[dest] == before[source]
        reason = json.loads(after[dest.rsplit("/", 1)[0] + "/reason.json"])
        assert reason["from"] == source
    # Nothing else moved or vanished: every other file is there, byte for byte.
    kept = {p: b for p, b in before.items() if p not in moved}
    assert {p: after[p] for p in kept} == kept
    assert all(p.startswith(QUARANTINE_ROOT + "/") for p in set(after) - set(before))

    # The store now says "unknown" for them, and a push of the real bytes is stored again.
    repo = damage.registry.repository(REPO)
    with pytest.raises(BlobUnknown):
        repo.blobs.stat(damage.flipped)
    again = scrub(driver, workers=2)
    kinds = {(f.kind, f.path) for f in again.findings}
    assert not any(k in ("digest_mismatch", "truncated") for k, _ in kinds)
    for gone in (damage.flipped, damage.truncated):
        assert ("missing_blob", paths.path_for(paths.LayerLink(REPO, gone))) in kinds


def test_the_go_registry_ignores_the_quarantine(tmp_path: Path) -> None:
    """distribution's collector walks the tree beside the quarantine and leaves it alone."""
    if shutil.which("docker-registry") is None:
        if require_peers():
            pytest.fail("docker-registry is required (OCISTORE_REQUIRE_PEERS=1)")
        pytest.skip("docker-registry not installed")
    root = tmp_path / "root"
    driver = FilesystemDriver(root)
    registry = Registry(driver, stat_cache_size=0)
    doc = json.loads(push_oci_image(registry.repository("team/app"), layers=2))
    push_oci_image(registry.repository("other/app"), layers=2)
    layer = paths.path_for(paths.BlobData(Digest(doc["layers"][1]["digest"])))
    driver.put_content(layer, b"bit rot")
    report = scrub(driver, workers=2, quarantine=True)
    moved = {
        f.quarantined_to: driver.get_content(f.quarantined_to)
        for f in report.findings
        if f.quarantined_to
    }
    assert len(moved) == 1
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
    assert done.returncode == 0, done.stdout + done.stderr
    assert {p: driver.get_content(p) for p in moved} == moved
    assert scrub(driver).counts()["missing_blob"] == 1  # only the quarantined layer's link


class FailingReads(FilesystemDriver):
    """A filesystem whose reads of one path fail as a bad sector does (EIO)."""

    bad = ""

    def reader(self, path: str, offset: int = 0) -> BinaryIO:
        if path == self.bad:
            raise OSError(errno.EIO, os.strerror(errno.EIO), path)
        return super().reader(path, offset)


def test_an_unreadable_blob_is_reported_and_the_scrub_goes_on(tmp_path: Path) -> None:
    driver = FailingReads(tmp_path / "root")
    registry = Registry(driver, stat_cache_size=0)
    doc = json.loads(push_oci_image(registry.repository("r"), layers=2))
    driver.bad = paths.path_for(paths.BlobData(Digest(doc["layers"][0]["digest"])))
    report = scrub(driver, workers=2, quarantine=True)
    assert [(f.kind, f.path, f.quarantined_to) for f in report.findings] == [
        ("unreadable", driver.bad, None)
    ]
    assert "Input/output error" in report.findings[0].detail
    assert report.vanished == 0


def test_scrub_of_a_sound_tree_finds_nothing(tmp_path: Path) -> None:
    driver = FilesystemDriver(tmp_path / "root")
    registry = Registry(driver, stat_cache_size=0)
    for i in range(3):
        push_oci_image(registry.repository(f"r/{i}"), layers=4)
    report = scrub(driver, workers=1)
    assert report.findings == []
    assert report.blobs == 3 * 5 + 1  # manifest and four layers each, one shared config
    blobs = driver.walk(paths.path_for(paths.BlobsRoot()))
    assert report.bytes == sum(i.size for i in blobs if not i.is_dir)


def test_nested_repositories_are_each_scrubbed_once(tmp_path: Path) -> None:
    driver = FilesystemDriver(tmp_path / "root")
    registry = Registry(driver, stat_cache_size=0)
    push_oci_image(registry.repository("a"), layers=1)
    push_oci_image(registry.repository("a/b"), layers=1)
    ghost = Digest.from_bytes(b"gone")
    link = paths.path_for(paths.LayerLink("a/b", ghost))
    driver.put_content(link, str(ghost).encode())
    report = scrub(driver, workers=2)
    assert [(f.kind, f.path) for f in report.findings] == [("missing_blob", link)]
    assert report.repositories == 2
    assert report.manifests == 2
    assert report.links == sum(  # each link counted once, in its own repository
        1
        for i in driver.walk(paths.path_for(paths.RepositoriesRoot()))
        if paths.is_link_path(i.path)
    )


class Recorder:
    def __init__(self) -> None:
        self.phases: list[tuple[str, int | None]] = []
        self.counts: dict[str, int] = {}
        self.bytes: dict[str, int] = {}

    def phase(self, name: str, total: int | None) -> None:
        self.phases.append((name, total))

    def advance(self, count: int = 1, nbytes: int = 0) -> None:
        name = self.phases[-1][0]
        self.counts[name] = self.counts.get(name, 0) + count
        self.bytes[name] = self.bytes.get(name, 0) + nbytes


def test_scrub_reports_progress_per_phase(tmp_path: Path) -> None:
    driver = FilesystemDriver(tmp_path / "root")
    registry = Registry(driver, stat_cache_size=0)
    for i in range(2):
        push_oci_image(registry.repository(f"r/{i}"), layers=3)
    seen = Recorder()
    report = scrub(driver, workers=2, progress=seen)
    assert seen.phases == [("links", 2), ("hash", report.blobs)]
    assert seen.counts == {"links": 2, "hash": report.blobs}
    assert seen.bytes == {"links": 0, "hash": report.bytes}


def test_scrub_command_json_and_exit_status(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "root"
    damage = Damage(FilesystemDriver(root))
    assert main(["scrub", "--root", str(root), "--json", "--workers", "2"]) == 1
    out: dict[str, Any] = json.loads(capsys.readouterr().out)
    assert {(f["kind"], f["path"]) for f in out["findings"]} == damage.expected
    assert out["ok"] is False
    assert out["quarantined"] == 0
    assert set(out["seconds"]) == {"list", "links", "hash"}


def test_scrub_and_du_commands_on_s3_through_a_config(
    s3_endpoint: S3Endpoint,  # noqa: F811
    new_bucket: Callable[[], str],  # noqa: F811
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from ocistore.driver.s3 import S3Driver
    from ocistore.driver.s3_options import parse_s3_options

    params = s3_endpoint.params(new_bucket(), rootdirectory="/reg")
    damage = Damage(S3Driver(parse_s3_options(params)))
    config = tmp_path / "config.yml"
    config.write_text(
        yaml.safe_dump({"version": 0.1, "storage": {"s3": params}, "http": {"addr": ":5000"}})
    )
    assert main(["scrub", "--config", str(config), "--json"]) == 1
    out = json.loads(capsys.readouterr().out)
    assert {(f["kind"], f["path"]) for f in out["findings"]} == damage.expected
    assert main(["du", "--config", str(config), "--json"]) == 0
    du = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in du["repositories"]] == ["other/app", "team/app"]


def test_scrub_command_text_and_clean_exit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "root"
    push_oci_image(Registry(FilesystemDriver(root)).repository("a"), layers=1)
    assert main(["scrub", "--root", str(root)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("scrubbed 3 blobs (") and out.rstrip().endswith(": 0 problems")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--root", "{tmp}/absent"], "absent: no such storage root"),
        (["--root", "{tmp}", "--workers", "0"], "--workers 0: must be at least 1"),
    ],
)
def test_scrub_command_bad_arguments(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    args = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    assert main(["scrub", *args]) == 2
    assert message in capsys.readouterr().err


def test_scrub_help_names_the_quarantine(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["scrub", "--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    assert "/ocistore-quarantine/" in text and "--quarantine" in text and "--json" in text
