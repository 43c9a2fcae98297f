"""``_core.walk_files`` and ``_core.read_files``: a tree listed and files read in one call.

Each test runs on the active core (the session fixture runs the suite on
both) and compares it with the other core where both are built, so the
native walk and the pure one answer alike.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any

import pytest

from ocistore import _core


def other_cores() -> list[Any]:
    out = []
    for name in ("native", "pure"):
        try:
            out.append(_core.load(name))
        except ImportError:
            continue
    return out


def make_tree(root: Path) -> dict[str, bytes]:
    files = {
        "a": b"one",
        "d/b": b"",
        "d/e/f/g": b"x" * 70_000,
        "d/e/h": b"h",
        "name with space/\u00e9": b"accent",
    }
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    (root / "empty" / "deeper").mkdir(parents=True)
    os.utime(root / "a", ns=(1_000_000_123, 1_700_000_000_123_456_789))
    return files


def test_every_file_with_mtime_and_size(tmp_path: Path) -> None:
    files = make_tree(tmp_path)
    got = sorted(_core.walk_files(str(tmp_path)))
    assert [rel for rel, _, _ in got] == sorted(files)
    assert all(size == len(files[rel]) for rel, _, size in got)
    assert got[0] == ("a", 1_700_000_000_123_456_789, 3)
    for rel, mtime, _ in got:
        assert mtime == os.stat(tmp_path / rel).st_mtime_ns
    for core in other_cores():
        assert sorted(core.walk_files(str(tmp_path))) == got


def test_symlinks_are_statted_not_entered(tmp_path: Path) -> None:
    make_tree(tmp_path)
    (tmp_path / "to-dir").symlink_to(tmp_path / "d")
    (tmp_path / "to-file").symlink_to(tmp_path / "d" / "e" / "h")
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    got = {rel: size for rel, _, size in _core.walk_files(str(tmp_path))}
    assert "to-dir/b" not in got and "dangling" not in got
    assert got["to-file"] == 1
    # A symlink to a directory is not entered; like a file, it is reported with what it names.
    assert "to-dir" in got
    for core in other_cores():
        assert sorted(core.walk_files(str(tmp_path))) == sorted(_core.walk_files(str(tmp_path)))


def test_missing_or_file_top(tmp_path: Path) -> None:
    (tmp_path / "file").write_bytes(b"x")
    for core in [_core, *other_cores()]:
        with pytest.raises(FileNotFoundError):
            core.walk_files(str(tmp_path / "missing"))
        with pytest.raises(NotADirectoryError):
            core.walk_files(str(tmp_path / "file"))


def test_read_files_in_order_none_when_missing(tmp_path: Path) -> None:
    files = make_tree(tmp_path)
    paths = [str(tmp_path / rel) for rel in files]
    paths += [str(tmp_path / "missing"), str(tmp_path / "a" / "under-a-file"), str(tmp_path / "d")]
    want = [*files.values(), None, None, None]
    assert _core.read_files(paths) == want
    assert _core.read_files([]) == []
    for core in other_cores():
        assert core.read_files(paths) == want


def test_names_that_are_not_utf8_round_trip(tmp_path: Path) -> None:
    """A name the filesystem encoding cannot decode comes back as ``os.fsdecode`` gives it,
    and that string (or bytes, or a Path) reads and removes the file, on both cores."""
    raw = os.fsencode(tmp_path) + b"/caf\xe9"
    with open(raw, "wb") as f:
        f.write(b"x")
    name = os.fsdecode(b"caf\xe9")
    for core in other_cores():
        assert [rel for rel, _, _ in core.walk_files(str(tmp_path))] == [name]
        assert core.read_files([f"{tmp_path}/{name}", raw, tmp_path / name]) == [b"x"] * 3
    assert _core.remove_paths([f"{tmp_path}/{name}"]) == [0]
    assert not os.path.lexists(raw)


def test_read_files_raises_on_other_failures(tmp_path: Path) -> None:
    loop = tmp_path / "loop"
    loop.symlink_to(loop)  # ELOOP: not "missing", so an error naming the path
    for core in [_core, *other_cores()]:
        with pytest.raises(OSError) as caught:
            core.read_files([str(tmp_path / "d"), str(loop)])
        assert caught.value.errno == errno.ELOOP
        assert caught.value.filename == str(loop)


def test_leaf_directories_are_statted_not_listed(tmp_path: Path) -> None:
    files = {
        "r/a/link": b"sha256:a",
        "r/a/beside": b"not reported: its directory is a leaf",
        "r/b/link": b"sha256:b",
        "r/c/sub/x": b"listed: c has no link",
        "r/link/y": b"a directory named like the leaf is listed",
        "r/d/link/z": b"so is one whose leaf is a directory",
    }
    for rel, data in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(data)
    want = sorted(
        (rel, os.stat(tmp_path / rel).st_mtime_ns, len(data))
        for rel, data in files.items()
        if rel != "r/a/beside"
    )
    assert sorted(_core.walk_files(str(tmp_path), "link")) == want
    assert len(_core.walk_files(str(tmp_path))) == len(files)
    for core in other_cores():
        assert sorted(core.walk_files(str(tmp_path), "link")) == want


def test_remove_paths_reports_each_errno(tmp_path: Path) -> None:
    """Files unlinked and directories removed in order; each failure is its errno, no raise."""
    for core in other_cores():
        root = tmp_path / core.__name__
        make_tree(root)
        files = [str(root / "a"), str(root / "missing"), str(root / "d"), str(root / "a" / "x")]
        assert core.remove_paths(files) == [0, errno.ENOENT, errno.EISDIR, errno.ENOENT]
        assert not (root / "a").exists() and (root / "d").is_dir()
        dirs = [
            str(root / "empty" / "deeper"),
            str(root / "d"),
            str(root / "nope"),
            str(root / "name with space" / "\u00e9"),
        ]
        assert core.remove_paths(dirs, directories=True) == [
            0,
            errno.ENOTEMPTY,
            errno.ENOENT,
            errno.ENOTDIR,
        ]
        assert not (root / "empty" / "deeper").exists() and (root / "d" / "b").exists()
        assert core.remove_paths([]) == [] and core.remove_paths([], directories=True) == []


def test_remove_paths_active_core(tmp_path: Path) -> None:
    make_tree(tmp_path)
    assert _core.remove_paths([str(tmp_path / "d" / "b"), str(tmp_path / "d" / "b")]) == [
        0,
        errno.ENOENT,
    ]
    assert _core.remove_paths([str(tmp_path / "empty" / "deeper")], directories=True) == [0]
