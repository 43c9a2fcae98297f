"""A blob cut short while scrub hashes it is reported as ``truncated``, on both cores, never a crash.

On the native core scrub hashes large blobs through a mapping of the file; a
truncation under the mapping raises SIGBUS, which the core turns into the
report. On both cores a blob cut between two reads is reported the same way.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path
from typing import Any

import pytest

from manifest_helpers import push_oci_image
from ocistore.digest import Digest
from ocistore.driver import FilesystemDriver
from ocistore.storage import Registry, paths
from ocistore.storage import scrub as scrub_module
from ocistore.storage.scrub import scrub

BIG = 3 << 20


def _tree(tmp_path: Path) -> tuple[FilesystemDriver, str, Path]:
    """A root with one large layer (and a small image beside it); the layer's driver and OS paths."""
    driver = FilesystemDriver(tmp_path / "root")
    repo = Registry(driver, stat_cache_size=0).repository("team/app")
    push_oci_image(repo, layers=1)
    big = os.urandom(BIG)
    desc = repo.blobs.put("application/vnd.oci.image.layer.v1.tar", big)
    assert desc.digest == Digest.from_bytes(big)
    path = paths.path_for(paths.BlobData(desc.digest))
    return driver, path, tmp_path / "root" / path.lstrip("/")


class CuttingHasher:
    """sha256 that truncates one file when it is first fed (between two reads of it)."""

    def __init__(self, victim: Path, size: int) -> None:
        self.inner = hashlib.sha256()
        self.victim, self.size = victim, size

    def update(self, data: Any, /) -> None:
        if self.victim.stat().st_size > self.size:
            os.truncate(self.victim, self.size)
        self.inner.update(data)

    def hexdigest(self) -> str:
        return self.inner.hexdigest()


def test_a_blob_cut_between_reads_is_truncated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    driver, path, real = _tree(tmp_path)
    plain = scrub_module.digester

    def digester(algorithm: str) -> Any:
        return CuttingHasher(real, 1000) if algorithm == "sha256" else plain(algorithm)

    monkeypatch.setattr(scrub_module, "digester", digester)
    # one worker: the first blob hashed is the largest, the one that gets cut
    report = scrub(driver, workers=1)
    assert [(f.kind, f.path) for f in report.findings] == [("truncated", path)]
    assert report.findings[0].detail == f"cut short while hashed: 1000 bytes now, {BIG} when listed"


@pytest.mark.native_only
def test_a_mapped_blob_cut_underneath_is_truncated(tmp_path: Path) -> None:
    from ocistore._native import _hashing

    driver, path, real = _tree(tmp_path)
    before = _hashing._mapped_faults()
    wfd = os.open(real, os.O_WRONLY)
    try:
        _hashing._truncate_when_mapped(wfd, 4096 + 5)  # the first mapped window: the large blob
        report = scrub(driver, workers=2, quarantine=True)
    finally:
        _hashing._truncate_when_mapped(-1, 0)
        os.close(wfd)
    assert _hashing._mapped_faults() == before + 1
    [finding] = report.findings
    assert (finding.kind, finding.path) == ("truncated", path)
    assert finding.detail == f"cut short while hashed: 4101 bytes now, {BIG} when listed"
    # corrupt, as any truncated blob: quarantined (its re-hash before the move agreed)
    assert finding.quarantined_to is not None
    assert not real.exists()
    moved = tmp_path / "root" / finding.quarantined_to.lstrip("/")
    assert moved.stat().st_size == 4101
    assert json.loads(json.dumps(report.as_dict()))["counts"]["truncated"] == 1


def test_a_sound_large_blob_passes(tmp_path: Path) -> None:
    driver, _, _ = _tree(tmp_path)
    report = scrub(driver, workers=2)
    assert report.ok, report.as_dict()["findings"]


def test_only_regular_files_are_hashed_through_their_descriptor(tmp_path: Path) -> None:
    r, w = os.pipe()
    os.close(w)
    with open(r, "rb", buffering=0) as pipe:  # has a descriptor, but its size means nothing
        assert scrub_module._fileno(pipe) is None
    assert scrub_module._fileno(io.BytesIO(b"stream")) is None
    with open(tmp_path / "file", "wb+") as f:
        assert scrub_module._fileno(f) == f.fileno()
