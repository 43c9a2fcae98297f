"""``ocistore.driver.durable.replace_file``: content synced before it is named, no directory sync."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ocistore.driver import durable
from storage_fixtures import record_fsyncs


def test_replace_file_writes_and_replaces(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "state"
    durable.replace_file(str(target), b"first")
    synced = record_fsyncs(monkeypatch)
    durable.replace_file(str(target), b"second")
    assert target.read_bytes() == b"second"
    assert [x.name for x in tmp_path.iterdir()] == ["state"]  # no temporary file left
    (only,) = synced  # the temporary file's content; not the directory
    assert os.path.dirname(only) == str(tmp_path) and "/.tmp-state-" in only


def test_replace_file_without_directory(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        durable.replace_file(str(tmp_path / "missing" / "state"), b"x")


def test_failed_replace_leaves_the_old_content(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "state"
    target.write_bytes(b"old")

    def broken(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", broken)
    with pytest.raises(OSError, match="Input/output"):
        durable.replace_file(str(target), b"new")
    assert target.read_bytes() == b"old"
    assert [x.name for x in tmp_path.iterdir()] == ["state"]
