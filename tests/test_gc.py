"""``ocistore gc`` (storage/gc.py): distribution's mark and sweep, on the filesystem and on S3.

The same tree is built on both drivers and must be collected to the same
result; the epoch handshake of storage/gcfence.py is driven step by step.
"""

from __future__ import annotations

import gc as cyclic_gc
import json
import os
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from manifest_helpers import index_payload, oci_image
from ocistore.cli import main
from ocistore.descriptor import Descriptor
from ocistore.digest import Digest
from ocistore.driver.base import StorageDriver
from ocistore.driver.filesystem import FilesystemDriver
from ocistore.manifest import mediatypes as mt
from ocistore.server.config import GcSchedule, config_from_mapping
from ocistore.server.gc_schedule import run_if_due
from ocistore.storage import bulk, gcfence
from ocistore.storage.gc import GcOptions, collect
from ocistore.storage.gcfence import Epoch, GcBusy, GcFence
from ocistore.storage.registry import Registry
from s3_peer import S3Endpoint, new_bucket, s3_endpoint  # noqa: F401 (fixtures)

NOW = GcOptions(grace=0, settle=0, workers=4)
V2 = "/docker/registry/v2"


@pytest.fixture(params=["filesystem"])
def make_driver(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], StorageDriver]:
    if request.param == "filesystem":
        count = iter(range(100))
        return lambda: FilesystemDriver(tmp_path / f"root{next(count)}")
    endpoint: S3Endpoint = request.getfixturevalue("s3_endpoint")
    buckets: Callable[[], str] = request.getfixturevalue("new_bucket")
    from ocistore.driver.s3 import S3Driver
    from ocistore.driver.s3_options import parse_s3_options

    return lambda: S3Driver(parse_s3_options(endpoint.params(buckets(), rootdirectory="/r")))


def files(driver: StorageDriver) -> set[str]:
    return {i.path for i in driver.walk("/") if not i.is_dir and not i.path.endswith("/")}


def build(driver: StorageDriver) -> dict[str, Any]:
    """A tree with every case: tagged, untagged, shared layers, an index, a referrer, an orphan."""
    reg = Registry(driver, delete_enabled=True, stat_cache_size=0)
    repo = reg.repository("team/app")
    out: dict[str, Any] = {}
    tagged = oci_image(repo, layers=2, config=b'{"architecture":"amd64","os":"linux","n":1}')
    repo.manifests.put(tagged, tag="v1")
    doc = json.loads(tagged)
    shared = doc["layers"][0]
    untagged = json.loads(oci_image(repo, layers=1, config=b'{"os":"linux","n":2}'))
    untagged["layers"].append(shared)
    untagged_payload = json.dumps(untagged).encode()
    repo.manifests.put(untagged_payload)
    referrer = oci_image(
        repo,
        layers=1,
        config=b'{"n":3}',
        subject={
            "mediaType": mt.OCI_MANIFEST,
            "digest": str(Digest.from_bytes(tagged)),
            "size": len(tagged),
        },
    )
    repo.manifests.put(referrer)
    c1 = oci_image(repo, layers=1, config=b'{"architecture":"amd64","os":"linux","n":4}')
    c2 = oci_image(repo, layers=1, config=b'{"architecture":"arm64","os":"linux","n":5}')
    repo.manifests.put(c1)
    repo.manifests.put(c2)
    index = index_payload([(c1, "amd64", "linux"), (c2, "arm64", "linux")])
    repo.manifests.put(index, tag="multi")
    orphan = repo.blobs.put("", b"orphan layer")
    other = reg.repository("other")
    other.blobs.mount("team/app", Digest(shared["digest"]))
    out.update(
        tagged=Digest.from_bytes(tagged),
        untagged=Digest.from_bytes(untagged_payload),
        untagged_only=[Digest(d["digest"]) for d in untagged["layers"][:1]]
        + [Digest(untagged["config"]["digest"])],
        shared=Digest(shared["digest"]),
        referrer=Digest.from_bytes(referrer),
        children=[Digest.from_bytes(c1), Digest.from_bytes(c2)],
        index=Digest.from_bytes(index),
        orphan=orphan.digest,
    )
    return out


def blob_path(d: Digest) -> str:
    return f"{V2}/blobs/{d.algorithm}/{d.encoded[:2]}/{d.encoded}/data"


def check_no_dangling(driver: StorageDriver) -> None:
    tree = files(driver)
    for path in tree:
        if path.endswith("/link") and ("/_layers/" in path or "/revisions/" in path):
            parts = path.split("/")
            d = Digest.from_parts(parts[-3], parts[-2])
            assert blob_path(d) in tree, path


def relative(driver: StorageDriver) -> set[str]:
    return {p for p in files(driver) if "/_ocistore/" not in p and "/_referrers/_record" not in p}


def test_mark_and_sweep_keeps_tagged_and_referrers(
    make_driver: Callable[[], StorageDriver],
) -> None:
    d = make_driver()
    t = build(d)
    report = collect(d, NOW)
    assert report is not None and report.problems == []
    tree = files(d)
    assert blob_path(t["orphan"]) not in tree
    assert not any(t["orphan"].encoded in p for p in tree)  # its link went too
    for kept in [
        t["tagged"],
        t["untagged"],
        t["shared"],
        t["referrer"],
        t["index"],
        *t["children"],
        *t["untagged_only"],
    ]:
        assert blob_path(kept) in tree
    assert report.blobs_swept == 1 and report.manifests_deleted == 0
    check_no_dangling(d)

    report = collect(d, GcOptions(grace=0, settle=0, delete_untagged=True))
    assert report is not None and report.problems == []
    tree = files(d)
    assert not any(t["untagged"].encoded in p for p in tree)
    for gone in t["untagged_only"]:
        assert not any(gone.encoded in p for p in tree), gone
    for kept in [t["tagged"], t["shared"], t["referrer"], t["index"], *t["children"]]:
        assert blob_path(kept) in tree
    assert report.manifests_deleted == 1
    check_no_dangling(d)
    # Everything left is still served by the storage layer.
    repo = Registry(d, stat_cache_size=0).repository("team/app")
    assert repo.manifests.get(t["referrer"]).digest == t["referrer"]
    assert [r.digest for r in repo.manifests.referrers(t["tagged"])] == [t["referrer"]]
    assert repo.blobs.stat(t["shared"]).digest == t["shared"]
    assert collect(d, GcOptions(grace=0, settle=0, delete_untagged=True)).blobs_swept == 0  # type: ignore[union-attr]


def test_layer_referenced_by_its_sha512_digest_is_kept(
    make_driver: Callable[[], StorageDriver],
) -> None:
    """A layer pushed under sha512 is stored as its sha256 blob, linked under both digests:
    a manifest naming only the sha512 digest keeps that blob, and sweeping it takes both links."""
    d = make_driver()
    repo = Registry(d, delete_enabled=True, stat_cache_size=0).repository("team/alias")
    data = b"a layer pushed by its sha512 digest"
    writer = repo.blobs.create()
    writer.write(data)
    canonical = writer.commit(
        Descriptor(digest=Digest.from_bytes(data, "sha512"), size=len(data))
    ).digest
    doc = json.loads(oci_image(repo, layers=0))
    alias = Digest.from_bytes(data, "sha512")
    doc["layers"] = [{"mediaType": mt.OCI_LAYER_GZIP, "digest": str(alias), "size": len(data)}]
    payload = json.dumps(doc).encode()
    repo.manifests.put(payload, tag="v1")
    alias_link = f"{V2}/repositories/team/alias/_layers/sha512/{alias.encoded}/link"
    for options in (NOW, GcOptions(grace=0, settle=0, delete_untagged=True)):
        report = collect(d, options)
        assert report is not None and report.problems == []
        assert report.blobs_swept == 0
        tree = files(d)
        assert blob_path(canonical) in tree and alias_link in tree
    assert repo.blobs.get(alias) == data
    repo.manifests.delete(Digest.from_bytes(payload))
    report = collect(d, GcOptions(grace=0, settle=0, delete_untagged=True))
    assert report is not None and report.problems == []
    tree = files(d)
    assert blob_path(canonical) not in tree
    assert alias_link not in tree  # no link left naming the swept blob


def test_both_drivers_same_result(
    tmp_path: Path,
    s3_endpoint: S3Endpoint,  # noqa: F811
    new_bucket: Callable[[], str],  # noqa: F811
) -> None:
    from ocistore.driver.s3 import S3Driver
    from ocistore.driver.s3_options import parse_s3_options

    fs = FilesystemDriver(tmp_path / "fs")
    s3 = S3Driver(parse_s3_options(s3_endpoint.params(new_bucket(), rootdirectory="/r")))
    # Same bytes on both: copy the filesystem tree object by object.
    build(fs)
    for path in files(fs):
        s3.put_content(path, fs.get_content(path))
    assert relative(fs) == relative(s3)
    a = collect(fs, GcOptions(grace=0, settle=0, delete_untagged=True))
    b = collect(s3, GcOptions(grace=0, settle=0, delete_untagged=True))
    assert a is not None and b is not None
    assert relative(fs) == relative(s3)
    assert sorted(a.deleted) == sorted(b.deleted)


def test_dry_run_lists_exactly_what_a_run_deletes(make_driver: Callable[[], StorageDriver]) -> None:
    d = make_driver()
    build(d)
    before = files(d)
    dry = collect(d, GcOptions(grace=0, settle=0, delete_untagged=True, dry_run=True))
    assert dry is not None and files(d) == before
    real = collect(d, GcOptions(grace=0, settle=0, delete_untagged=True))
    assert real is not None
    assert sorted(dry.deleted) == sorted(real.deleted) and dry.deleted


def test_grace_spares_young_blobs(make_driver: Callable[[], StorageDriver]) -> None:
    d = make_driver()
    t = build(d)
    report = collect(d, GcOptions(grace=3600, settle=0, delete_untagged=True))
    assert report is not None and report.deleted == []
    assert blob_path(t["orphan"]) in files(d)


def test_bad_input_keeps_the_repository_whole(make_driver: Callable[[], StorageDriver]) -> None:
    d = make_driver()
    t = build(d)
    bad = Digest.from_bytes(b"not json")
    d.put_content(blob_path(bad), b"not json")
    d.put_content(
        f"{V2}/repositories/team/app/_manifests/revisions/sha256/{bad.encoded}/link",
        str(bad).encode(),
    )
    d.put_content(f"{V2}/repositories/other/_manifests/tags/x/current/link", b"garbage\x00")
    report = collect(d, GcOptions(grace=0, settle=0, delete_untagged=True))
    assert report is not None
    reasons = {p.path: p.reason for p in report.problems}
    assert blob_path(bad) in reasons and "cannot be parsed" in reasons[blob_path(bad)]
    assert f"{V2}/repositories/other/_manifests/tags/x/current/link" in reasons
    tree = files(d)
    # team/app holds the bad manifest: its untagged manifest and its orphan stay.
    assert blob_path(t["untagged"]) in tree and blob_path(t["orphan"]) in tree


@pytest.mark.parametrize("make_driver", ["filesystem", "s3"], indirect=True)
def test_directories_holding_more_go_whole(make_driver: Callable[[], StorageDriver]) -> None:
    """The bulk steps delete the link or data they know; anything else there goes with it."""
    d = make_driver()
    t = build(d)
    revision = f"{V2}/repositories/team/app/_manifests/revisions/sha256/{t['untagged'].encoded}"
    d.put_content(f"{revision}/signatures/sha256/{'0' * 64}/link", b"sha256:" + b"0" * 64)
    d.put_content(f"{blob_path(t['orphan'])}.partial", b"left by a copy")
    report = collect(d, GcOptions(grace=0, settle=0, delete_untagged=True))
    assert report is not None and report.problems == []
    tree = files(d)
    assert not any(p.startswith(revision) for p in tree)
    assert not any(t["orphan"].encoded in p for p in tree)
    check_no_dangling(d)


def test_writer_pin_spares_a_condemned_blob(make_driver: Callable[[], StorageDriver]) -> None:
    d = make_driver()
    t = build(d)
    epoch = Epoch(d)
    epoch.begin()
    try:
        fence = GcFence(d)
        fence.protect([t["orphan"]], fresh=True)  # the writer pins first...
        name = epoch.condemn([str(t["orphan"])])  # ...so the sweeper must see it
        assert str(t["orphan"]) in epoch.pinned()
        epoch.decided(name, [])
    finally:
        epoch.end()


@pytest.mark.parametrize("make_driver", ["filesystem", "s3"], indirect=True)
def test_writer_waits_for_a_condemned_batch(make_driver: Callable[[], StorageDriver]) -> None:
    d = make_driver()
    t = build(d)
    epoch = Epoch(d)
    epoch.begin()
    fence = GcFence(d)
    waiting = threading.Event()
    returned = threading.Event()
    name = epoch.condemn([str(t["orphan"])])
    original = fence._wait_decided

    def spy(e: str, b: str) -> None:
        waiting.set()
        original(e, b)

    fence._wait_decided = spy  # type: ignore[method-assign,assignment]

    def writer() -> None:
        fence.protect([t["orphan"]], fresh=True)
        returned.set()

    worker = threading.Thread(target=writer)
    worker.start()
    try:
        assert waiting.wait(30)
        assert not returned.is_set()  # it waits for the decision
        d.delete(blob_path(t["orphan"]).rsplit("/", 1)[0])
        epoch.decided(name, [str(t["orphan"])])
        worker.join(30)
        assert returned.is_set()
    finally:
        epoch.end()


def test_one_collection_at_a_time(
    make_driver: Callable[[], StorageDriver], monkeypatch: pytest.MonkeyPatch
) -> None:
    d = make_driver()
    first = Epoch(d)
    first.begin()
    try:
        with pytest.raises(GcBusy):
            Epoch(d).begin()
    finally:
        first.end()
    # A dead collector's epoch (its process is gone) is cleared by the next one.
    d.put_content(f"{V2}/_ocistore/gc/00000000000000000001-dead/heartbeat", b"nohost 1")
    monkeypatch.setattr(gcfence, "STALE", 0.0)
    nxt = Epoch(d)
    nxt.begin()
    nxt.end()
    assert not any("dead" in p for p in files(d))


def test_listing_threads_no_more_than_cpus_on_a_local_disk(
    make_driver: Callable[[], StorageDriver], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A local disk's listing costs CPU, so the mark uses no more threads than the process's
    CPUs; S3's waits on the network, so it uses every worker."""
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2})
    d = make_driver()
    assert bulk.listing_threads(d, 16) == (3 if isinstance(d, FilesystemDriver) else 16)
    assert bulk.listing_threads(d, 2) == 2


def test_schedule_runs_once_per_interval(make_driver: Callable[[], StorageDriver]) -> None:
    d = make_driver()
    t = build(d)
    schedule = GcSchedule(enabled=True, interval=3600, grace=0, settle=0)
    first = run_if_due(d, schedule)
    assert first is not None and first.blobs_swept == 1
    assert run_if_due(d, schedule) is None
    assert blob_path(t["shared"]) in files(d)


def test_config_keys() -> None:
    cfg = config_from_mapping(
        {
            "storage": {
                "maintenance": {
                    "gc": {
                        "enabled": True,
                        "interval": "2h",
                        "deleteuntagged": True,
                        "grace": "10m",
                    }
                }
            }
        }
    )
    assert cfg.gc == GcSchedule(enabled=True, interval=7200.0, deleteuntagged=True, grace=600.0)


def test_cli_json_and_dry_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = FilesystemDriver(tmp_path / "root")
    t = build(d)
    assert (
        main(
            [
                "gc",
                "--root",
                str(tmp_path / "root"),
                "--dry-run",
                "--grace",
                "0",
                "--settle",
                "0",
                "--json",
            ]
        )
        == 0
    )
    doc = json.loads(capsys.readouterr().out)
    assert doc["dry_run"] is True and doc["blobs_swept"] == 1
    assert any(t["orphan"].encoded in p for p in doc["would_delete"])
    assert (
        main(
            [
                "gc",
                "--root",
                str(tmp_path / "root"),
                "--grace",
                "0",
                "--settle",
                "0",
                "--json",
                "--delete-untagged",
            ]
        )
        == 0
    )
    doc = json.loads(capsys.readouterr().out)
    assert doc["manifests_deleted"] == 1 and set(doc["seconds"]) >= {"mark", "sweep"}
    assert cyclic_gc.isenabled()  # off for the collection only
    assert main(["gc", "--root", str(tmp_path / "missing")]) == 2
    assert "no such storage root" in capsys.readouterr().err


class Killed(BaseException):
    """The process died: nothing after it runs (not an error the collector handles)."""


class DyingDriver:
    """Forwards to a driver until the ``n``-th file or directory deleted; then every call dies."""

    def __init__(self, inner: StorageDriver, n: int) -> None:
        self.inner = inner
        self.name = inner.name
        self.left = n
        self.dead = False

    def delete(self, path: str) -> None:
        if self.dead or self.left == 0:
            self.dead = True
            raise Killed(path)
        self.left -= 1
        self.inner.delete(path)

    def delete_files(
        self, paths: list[str], *, sync: bool = True, whole: bool = False
    ) -> dict[str, str]:
        """The bulk delete dies after its first ``left`` files, as a process killed mid-call."""
        if self.dead or self.left < len(paths):
            done, self.left, self.dead = self.left, 0, True
            self.inner.delete_files(paths[:done], sync=sync, whole=whole)  # type: ignore[attr-defined]
            raise Killed(paths[done] if done < len(paths) else "")
        self.left -= len(paths)
        failed: dict[str, str] = self.inner.delete_files(paths, sync=sync, whole=whole)  # type: ignore[attr-defined]
        return failed

    def __getattr__(self, name: str) -> Any:
        if self.dead:
            raise Killed(name)
        return getattr(self.inner, name)


def served(driver: StorageDriver, t: dict[str, Any]) -> None:
    """Every kept manifest and what it references is there for the storage layer."""
    repo = Registry(driver, stat_cache_size=0).repository("team/app")
    for tag in ("v1", "multi"):
        top = repo.tags.get(tag)
        m = repo.manifests.get(top.digest)
        for ref in m.references():
            if m.is_index:
                repo.manifests.get(ref.digest)
            else:
                assert repo.blobs.get(ref.digest)


def test_killed_at_every_delete_then_next_run_finishes(tmp_path: Path) -> None:
    reference = FilesystemDriver(tmp_path / "reference")
    build(reference)
    full = collect(reference, GcOptions(grace=0, settle=0, delete_untagged=True, workers=1))
    assert full is not None
    total = len(full.deleted)
    assert total > 5
    for n in range(total):
        d = FilesystemDriver(tmp_path / f"k{n}")
        t = build(d)
        with pytest.raises(Killed):
            collect(
                DyingDriver(d, n), GcOptions(grace=0, settle=0, delete_untagged=True, workers=1)
            )
        served(d, t)
        # The dead collector was this very process: make its heartbeat name a gone pid.
        gone = int(Path("/proc/sys/kernel/pid_max").read_text()) + 1
        for path in files(d):
            if path.endswith("/heartbeat"):
                d.put_content(path, f"{socket.gethostname()} {gone}".encode())
        again = collect(d, GcOptions(grace=0, settle=0, delete_untagged=True))
        assert again is not None and again.problems == []
        served(d, t)
        check_no_dangling(d)
        assert collect(d, GcOptions(grace=0, settle=0, delete_untagged=True)).deleted == []  # type: ignore[union-attr]
        assert not any("/_ocistore/gc/" in p for p in files(d))


def test_links_fsynced_before_data_goes_data_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each batch's removed links are made durable before its data goes; removed data is not
    (a power cut that brings it back leaves unlinked data, which the next run sweeps)."""
    from ocistore.driver import filesystem

    d = FilesystemDriver(tmp_path / "r")
    build(d)
    events: list[tuple[str, str]] = []
    real_remove, real_fsync = filesystem._core.remove_paths, filesystem.fsync_dir

    def remove_paths(paths: list[str], directories: bool = False) -> list[int]:
        events.extend(("rmdir" if directories else "unlink", p) for p in paths)
        return real_remove(paths, directories)

    def fsync_dir(path: str) -> None:
        events.append(("fsync", path))
        real_fsync(path)

    monkeypatch.setattr(filesystem._core, "remove_paths", remove_paths)
    monkeypatch.setattr(filesystem, "fsync_dir", fsync_dir)
    report = collect(d, GcOptions(grace=0, settle=0, delete_untagged=True, workers=1))
    assert report is not None and report.blobs_swept > 0
    layers = [i for i, (k, p) in enumerate(events) if k == "unlink" and "/_layers/" in p]
    data = [i for i, (k, p) in enumerate(events) if k == "unlink" and p.endswith("/data")]
    synced = [
        i for i, (k, p) in enumerate(events) if k == "fsync" and p.endswith("/_layers/sha256")
    ]
    assert layers and data and synced
    assert max(layers) < min(synced) < min(data)  # one batch here: links, fsync, then data
    assert not any(k == "fsync" and "/blobs/sha256" in p for k, p in events)


class RefusingDriver:
    """Wraps a filesystem driver whose bulk delete refuses the files under ``refused``."""

    def __init__(self, inner: FilesystemDriver, refused: str) -> None:
        self.inner = inner
        self.name = inner.name
        self.refused = refused

    def delete_files(
        self, paths: list[str], *, sync: bool = True, whole: bool = False
    ) -> dict[str, str]:
        keep = [p for p in paths if p.startswith(self.refused)]
        rest = [p for p in paths if not p.startswith(self.refused)]
        failed = self.inner.delete_files(rest, sync=sync, whole=whole)
        return {**failed, **dict.fromkeys(keep, "Permission denied")}

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_manifest_not_deleted_keeps_what_it_references(tmp_path: Path) -> None:
    """An untagged manifest whose revision link cannot be deleted is reported and spared, and
    so is everything it references (the blob sweep is planned before that is known)."""
    d = FilesystemDriver(tmp_path / "r")
    t = build(d)
    revision = f"{V2}/repositories/team/app/_manifests/revisions/sha256/{t['untagged'].encoded}"
    report = collect(
        RefusingDriver(d, revision),  # type: ignore[arg-type]
        GcOptions(grace=0, settle=0, delete_untagged=True),
    )
    assert report is not None
    assert [p.path for p in report.problems] == [f"{revision}/link"]
    assert "could not delete: Permission denied" in report.problems[0].reason
    assert report.manifests_deleted == 0
    tree = files(d)
    for kept in [t["untagged"], *t["untagged_only"], t["shared"], t["tagged"]]:
        assert blob_path(kept) in tree, kept
    assert blob_path(t["orphan"]) not in tree
    check_no_dangling(d)
    again = collect(d, GcOptions(grace=0, settle=0, delete_untagged=True))
    assert again is not None and again.problems == [] and again.manifests_deleted == 1
    assert not any(gone.encoded in p for gone in t["untagged_only"] for p in files(d))


@pytest.mark.parametrize("grace", [0.0, 3600.0])
def test_stray_data_files_reported_and_kept(tmp_path: Path, grace: float) -> None:
    """A data file where no valid digest puts it is reported, however young, and not deleted."""
    d = FilesystemDriver(tmp_path / "r")
    t = build(d)
    hexed = t["orphan"].encoded
    misplaced = f"{V2}/blobs/sha256/zz/{hexed}/data"
    not_hex = f"{V2}/blobs/sha256/ab/ab-not-a-digest/data"
    for path in (misplaced, not_hex):
        d.put_content(path, b"stray")
    report = collect(d, GcOptions(grace=grace, settle=0))
    assert report is not None
    strays = sorted(p.path for p in report.problems if "stray file in the blob store" in p.reason)
    assert strays == sorted([misplaced, not_hex])
    tree = files(d)
    assert misplaced in tree and not_hex in tree
