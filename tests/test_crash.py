"""Crash safety: a process killed at any point leaves the state before or the state after.

Two complementary checks:

- kill: a child process pushes blobs (chunked, resumed, sha256 and sha512),
  small puts, cancels, and manifests with tags, journalling every operation
  after it returns; the parent SIGKILLs it at a random moment and checks the
  tree's invariants (every blob hashes to its name, every link leads to data,
  nothing journalled is lost, leftover uploads still resume).
- order: SIGKILL keeps the page cache, so the kill test cannot see a missing
  fsync. The order of the filesystem calls is recorded instead (``os.open``,
  ``os.write``, ``os.fsync``, ``os.replace``, ``os.rename`` patched) and checked:
  data fsync < rename into blobs/ < fsync of its directory < link written.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from ocistore import _core
from ocistore.descriptor import Descriptor
from ocistore.digest import Digest
from ocistore.driver import FilesystemDriver
from ocistore.errors import PathNotFound, RegistryError
from ocistore.storage import Registry
from ocistore.storage import paths as p

CHILD = r"""
import json, os, random, sys
from ocistore import _core
_core.use(sys.argv[4])
from ocistore.descriptor import Descriptor
from ocistore.digest import Digest
from ocistore.driver import FilesystemDriver
from ocistore.storage import Registry

root, seed, journal = sys.argv[1], int(sys.argv[2]), sys.argv[3]
rng = random.Random(seed)
reg = Registry(FilesystemDriver(root), delete_enabled=True)
jfd = os.open(journal, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

def record(*fields):
    os.write(jfd, (" ".join(fields) + "\n").encode())
    os.fsync(jfd)

def push(blobs, data, algorithm):
    writer = blobs.create()
    pos = 0
    while pos < len(data):
        n = rng.randrange(1, 1 << 19)
        writer.write(data[pos:pos + n])
        pos += n
        if rng.random() < 0.5:
            writer.close()
            writer = blobs.resume(writer.id)
    return writer.commit(Descriptor(digest=Digest.from_bytes(data, algorithm), size=len(data)))

print("ready", flush=True)
i = 0
while True:
    i += 1
    repo = reg.repository(rng.choice(["a", "b/c", "d"]))
    op = rng.random()
    data = rng.randbytes(rng.randrange(0, 3 << 20)) if op < 0.5 else rng.randbytes(rng.randrange(0, 300))
    if op < 0.5:
        algorithm = "sha512" if rng.random() < 0.2 else "sha256"
        desc = push(repo.blobs, data, algorithm)
        record("blob", repo.name, str(desc.digest), str(Digest.from_bytes(data, algorithm)))
    elif op < 0.6:
        desc = repo.blobs.put("", data)
        record("blob", repo.name, str(desc.digest), str(desc.digest))
    elif op < 0.7:
        writer = repo.blobs.create()
        writer.write(data)
        if rng.random() < 0.5:
            writer.cancel()
        else:
            writer.close()
    else:
        config = repo.blobs.put("application/vnd.oci.image.config.v1+json", b'{"n":%d}' % i)
        layer = push(repo.blobs, rng.randbytes(rng.randrange(0, 1 << 20)), "sha256")
        doc = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": str(config.digest), "size": config.size},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                        "digest": str(layer.digest), "size": layer.size}],
        }
        tag = rng.choice(["latest", "v1", "v2"])
        dgst = repo.manifests.put(json.dumps(doc).encode(), tag=tag)
        record("manifest", repo.name, str(dgst), tag)
"""

V2 = "/docker/registry/v2"


def run_and_kill(root: Path, journal: Path, seed: int, core: str) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(root), str(seed), str(journal), core],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert child.stdout is not None
        line = child.stdout.readline()
        assert line == b"ready\n", (line, child.stderr.read() if child.stderr else b"")
        # The crash lands at a random point of the child's work: what is tested.
        # Wherever it lands, the invariants checked afterwards must hold.
        time.sleep(random.Random(seed).uniform(0.05, 1.5))
        if child.poll() is not None:
            err = child.stderr.read() if child.stderr else b""
            pytest.fail(f"child died on its own: {err.decode(errors='replace')}")
        child.send_signal(signal.SIGKILL)
    finally:
        child.kill()
        child.wait()
        for stream in (child.stdout, child.stderr):
            if stream is not None:
                stream.close()


def _walk(driver: FilesystemDriver, path: str) -> list[Any]:
    """The files under ``path``; none when the kill came before the tree had it."""
    try:
        return list(driver.walk(path))
    except PathNotFound:
        return []


def check_invariants(root: Path, journal: Path) -> None:
    driver = FilesystemDriver(root)
    reg = Registry(driver, delete_enabled=True)

    # 1. Every blob data file hashes to its name: no partial blob is ever visible.
    blobs = set()
    for info in _walk(driver, f"{V2}/blobs"):
        if info.is_dir or not info.path.endswith("/data"):
            continue
        dgst = p.digest_from_blob_data_path(info.path)
        h = hashlib.sha256()
        with driver.reader(info.path) as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
        assert f"sha256:{h.hexdigest()}" == dgst, f"corrupt blob {info.path}"
        blobs.add(dgst)

    # 2. Every link holds one digest whose data exists (links are written last).
    for info in _walk(driver, f"{V2}/repositories"):
        if info.is_dir or not info.path.endswith("/link"):
            continue
        target = Digest(driver.get_content(info.path).decode("ascii"))
        assert target in blobs, f"{info.path} -> {target}, which has no data"

    # 3. Nothing journalled is lost.
    for line in journal.read_text().splitlines():
        kind, name, *rest = line.split()
        repo = reg.repository(name)
        if kind == "blob":
            canonical, asked = rest
            assert repo.blobs.stat(asked).digest == canonical
        else:
            dgst, tag = rest
            assert repo.manifests.exists(dgst)
            current = repo.tags.get(tag).digest
            assert repo.manifests.exists(current)

    # 4. Leftover uploads are still usable: resumed, then committed or cancelled.
    for name in reg.enumerate():
        try:
            ids = [x.rsplit("/", 1)[-1] for x in driver.list(f"{V2}/repositories/{name}/_uploads")]
        except FileNotFoundError:
            continue
        for upload_id in ids:
            try:
                writer = reg.repository(name).blobs.resume(upload_id)
            except RegistryError:
                continue  # killed before startedat was written: unknown, as distribution says
            data = driver.get_content(p.path_for(p.UploadData(name, upload_id)))
            if len(data) % 2:
                writer.cancel()
            else:
                desc = writer.commit(Descriptor(digest=Digest.from_bytes(data), size=len(data)))
                assert reg.repository(name).blobs.get(desc.digest) == data


@pytest.mark.parametrize("seed", range(6))
def test_killed_at_random_points(tmp_path: Path, core: ModuleType, seed: int) -> None:
    root, journal = tmp_path / "root", tmp_path / "journal"
    journal.touch()
    run_and_kill(root, journal, seed, _core.BACKEND)
    if not (root / "docker").exists():
        return  # killed before it wrote anything: nothing to check
    check_invariants(root, journal)


def test_killed_repeatedly_on_one_root(tmp_path: Path) -> None:
    """Several crashes in a row on the same tree, each followed by the checks."""
    root, journal = tmp_path / "root", tmp_path / "journal"
    journal.touch()
    for seed in range(100, 104):
        run_and_kill(root, journal, seed, _core.BACKEND)
        if (root / "docker").exists():
            check_invariants(root, journal)


# --- the order of filesystem operations -------------------------------------------------


class Recorder:
    """Patch ``os`` so that opens, writes, fsyncs and renames are logged with their paths."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.log: list[tuple[str, ...]] = []
        self._fds: dict[int, str] = {}
        real = {n: getattr(os, n) for n in ("open", "close", "write", "fsync", "replace", "rename")}

        def _open(path: Any, flags: int, mode: int = 0o777, *, dir_fd: Any = None) -> int:
            fd: int = real["open"](path, flags, mode, dir_fd=dir_fd)
            self._fds[fd] = os.fspath(path)
            self.log.append(("open", os.fspath(path)))
            return fd

        def _close(fd: int) -> None:
            self._fds.pop(fd, None)
            real["close"](fd)

        def _write(fd: int, data: Any) -> int:
            n: int = real["write"](fd, data)
            self.log.append(("write", self._fds.get(fd, f"fd{fd}")))
            return n

        def _fsync(fd: Any) -> None:
            real["fsync"](fd)
            self.log.append(("fsync", self._fds.get(fd, f"fd{fd}")))

        def _replace(src: Any, dst: Any, **kw: Any) -> None:
            real["replace"](src, dst, **kw)
            self.log.append(("rename", os.fspath(src), os.fspath(dst)))

        def _rename(src: Any, dst: Any, **kw: Any) -> None:
            real["rename"](src, dst, **kw)
            self.log.append(("rename", os.fspath(src), os.fspath(dst)))

        for name, fn in [
            ("open", _open),
            ("close", _close),
            ("write", _write),
            ("fsync", _fsync),
            ("replace", _replace),
            ("rename", _rename),
        ]:
            monkeypatch.setattr(os, name, fn)

    def index(self, entry: tuple[str, ...], after: int = -1) -> int:
        for i in range(after + 1, len(self.log)):
            if self.log[i] == entry:
                return i
        raise AssertionError(f"{entry} not recorded after {after}: {self.log}")

    def rename_to(self, dst: str) -> tuple[int, str]:
        for i, entry in enumerate(self.log):
            if entry[0] == "rename" and entry[2] == dst:
                return i, entry[1]
        raise AssertionError(f"nothing renamed to {dst}: {self.log}")


@pytest.fixture
def fs_registry(tmp_path: Path) -> Iterator[tuple[Registry, str]]:
    root = tmp_path / "root"
    yield Registry(FilesystemDriver(root), delete_enabled=True), str(root)


def test_commit_order(fs_registry: tuple[Registry, str], monkeypatch: pytest.MonkeyPatch) -> None:
    reg, root = fs_registry
    blobs = reg.repository("a").blobs
    data = os.urandom(200_000)
    dgst = Digest.from_bytes(data)
    writer = blobs.create()
    writer.write(data[:1000])
    writer.close()
    rec = Recorder(monkeypatch)
    writer = blobs.resume(writer.id)
    writer.write(data[1000:])
    writer.commit(Descriptor(digest=Digest.from_bytes(data, "sha512"), size=len(data)))
    monkeypatch.undo()

    upload = root + p.path_for(p.UploadData("a", writer.id))
    blob = root + p.path_for(p.BlobData(dgst))
    canonical_link = root + p.path_for(p.LayerLink("a", dgst))
    alias_link = root + p.path_for(p.LayerLink("a", Digest.from_bytes(data, "sha512")))

    data_synced = rec.index(("fsync", upload))
    moved, source = rec.rename_to(blob)
    assert source == upload
    blob_dir_synced = rec.index(("fsync", os.path.dirname(blob)), after=moved)
    assert data_synced < moved < blob_dir_synced
    if _core.BACKEND == "pure":  # the pure core writes through os.write
        assert rec.index(("write", upload)) < data_synced
    for link in (canonical_link, alias_link):
        linked, temp = rec.rename_to(link)
        temp_opened = rec.index(("open", temp))
        temp_synced = rec.index(("fsync", temp), after=temp_opened)
        link_dir_synced = rec.index(("fsync", os.path.dirname(link)), after=linked)
        assert blob_dir_synced < temp_opened < temp_synced < linked < link_dir_synced


@pytest.mark.native_only
def test_hash_state_order(
    fs_registry: tuple[Registry, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    reg, root = fs_registry
    rec = Recorder(monkeypatch)
    writer = reg.repository("a").blobs.create()
    writer.write(b"s" * 70_000)
    writer.close()
    monkeypatch.undo()
    upload = root + p.path_for(p.UploadData("a", writer.id))
    state = root + p.path_for(p.UploadHashState("a", writer.id, "sha256", 70_000))
    data_synced = rec.index(("fsync", upload))
    stored, temp = rec.rename_to(state)
    temp_opened = rec.index(("open", temp))
    # the state's content is durable before it is named; the data before both
    assert data_synced < temp_opened < rec.index(("fsync", temp), after=temp_opened) < stored


def test_manifest_and_tag_order(
    fs_registry: tuple[Registry, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    reg, root = fs_registry
    repo = reg.repository("m")
    config = repo.blobs.put("application/vnd.oci.image.config.v1+json", b"{}")
    doc = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": str(config.digest),
            "size": config.size,
        },
        "layers": [],
    }
    payload = json.dumps(doc).encode()
    rec = Recorder(monkeypatch)
    dgst = repo.manifests.put(payload, tag="latest")
    monkeypatch.undo()

    blob_at, _ = rec.rename_to(root + p.path_for(p.BlobData(dgst)))
    revision_at, _ = rec.rename_to(root + p.path_for(p.ManifestRevisionLink("m", dgst)))
    current_at, _ = rec.rename_to(root + p.path_for(p.ManifestTagCurrent("m", "latest")))
    index_at, _ = rec.rename_to(root + p.path_for(p.ManifestTagIndexEntryLink("m", "latest", dgst)))
    blob_dir_synced = rec.index(
        ("fsync", os.path.dirname(root + p.path_for(p.BlobData(dgst)))), after=blob_at
    )
    assert blob_at < blob_dir_synced < revision_at < min(current_at, index_at)
