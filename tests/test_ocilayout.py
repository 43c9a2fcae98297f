"""``ocistore export`` / ``ocistore import``: OCI image layouts out of and into the store.

A multi-arch index with three referrers (one of them a referrer of a
referrer) goes out as a layout and back into another root, and must arrive
byte for byte with its tag and its referrers. Bad layouts (a blob missing, a
blob with other bytes, a size that lies, a malformed ``index.json``, no
``oci-layout``, an unparseable manifest) are refused with the path and the
reason, and the destination root is left exactly as it was. An export that
cannot finish leaves no directory behind.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from layout_helpers import Built, build_image, layout_blobs, tree_files
from ocistore.cli import main
from ocistore.digest import Digest
from ocistore.driver import FilesystemDriver
from ocistore.manifest import mediatypes as mt
from ocistore.storage import Registry, paths
from ocistore.storage.ocilayout import (
    REF_NAME,
    LayoutError,
    LayoutInvalid,
    export_layout,
    import_layout,
)


def _registry(root: Path) -> Registry:
    return Registry(FilesystemDriver(root), delete_enabled=True, stat_cache_size=0)


@pytest.fixture
def source(tmp_path: Path) -> tuple[Registry, Built]:
    reg = _registry(tmp_path / "src")
    return reg, build_image(reg.repository("team/app"), "v1")


def test_export_writes_the_index_children_and_referrers(
    source: tuple[Registry, Built], tmp_path: Path
) -> None:
    reg, built = source
    out = tmp_path / "layout"
    result = export_layout(reg, "team/app", "v1", out)
    assert result.digest == built.index
    assert json.loads((out / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
    index = json.loads((out / "index.json").read_text())
    assert index["schemaVersion"] == 2 and index["mediaType"] == mt.OCI_INDEX
    top, *refs = index["manifests"]
    assert top == {
        "mediaType": mt.OCI_INDEX,
        "digest": str(built.index),
        "size": len(built.manifests[built.index]),
        "annotations": {REF_NAME: "v1"},
    }
    assert {r["digest"] for r in refs} == {str(d) for d in built.referrers}
    assert all(REF_NAME not in r.get("annotations", {}) and r["artifactType"] for r in refs)
    files = layout_blobs(out)
    assert set(files) == {str(d) for d in [*built.manifests, *built.blobs]}
    for dgst, payload in built.manifests.items():
        assert files[str(dgst)] == payload
    assert (result.manifests, result.referrers, result.blobs) == (6, 3, len(built.blobs))
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_round_trip_into_another_root(source: tuple[Registry, Built], tmp_path: Path) -> None:
    reg, built = source
    export_layout(reg, "team/app", "v1", tmp_path / "layout")
    dest = _registry(tmp_path / "dest")
    result = import_layout(dest, tmp_path / "layout", "copy/app")
    assert result.tags == {"v1": built.index}
    repo = dest.repository("copy/app")
    assert repo.tags.resolve("v1") == built.index
    for dgst, payload in built.manifests.items():
        assert repo.manifests.get(dgst).payload == payload
    for dgst in built.blobs:
        assert repo.blobs.get(dgst) == reg.repository("team/app").blobs.get(dgst)
    for referrer, subject in built.referrers.items():
        assert referrer in {d.digest for d in repo.manifests.referrers(subject)}
    # Importing again writes no blob twice and changes nothing.
    before = tree_files(tmp_path / "dest" / "docker")
    again = import_layout(dest, tmp_path / "layout", "copy/app")
    assert again.blobs == 0
    assert tree_files(tmp_path / "dest" / "docker") == before


def test_export_by_digest_and_import_with_a_tag(
    source: tuple[Registry, Built], tmp_path: Path
) -> None:
    reg, built = source
    child = built.children[1]
    export_layout(reg, "team/app", str(child), tmp_path / "one")
    index = json.loads((tmp_path / "one" / "index.json").read_text())
    assert index["manifests"][0]["digest"] == str(child)
    assert "annotations" not in index["manifests"][0]
    dest = _registry(tmp_path / "dest")
    untagged = import_layout(dest, tmp_path / "one", "x/y")
    assert untagged.tags == {} and untagged.manifests == [child]  # no ref.name: no tag
    result = import_layout(dest, tmp_path / "one", "x/y", "pinned")
    assert result.tags == {"pinned": child}


def test_import_with_a_tag_refuses_a_layout_of_several_images(
    source: tuple[Registry, Built], tmp_path: Path
) -> None:
    reg, built = source
    layout = tmp_path / "layout"
    export_layout(reg, "team/app", "v1", layout)
    doc = json.loads((layout / "index.json").read_text())
    second = dict(doc["manifests"][0], annotations={REF_NAME: "v2"})
    second["digest"] = str(built.children[0])
    second["size"] = len(built.manifests[built.children[0]])
    second["mediaType"] = mt.OCI_MANIFEST
    doc["manifests"].append(second)
    (layout / "index.json").write_text(json.dumps(doc))
    dest = _registry(tmp_path / "dest")
    with pytest.raises(LayoutError, match=r"holds several images \(v1, v2\)"):
        import_layout(dest, layout, "x/y", "latest")
    assert tree_files(tmp_path / "dest") == {}
    assert import_layout(dest, layout, "x/y").tags == {"v1": built.index, "v2": built.children[0]}


Breaker = Callable[[Path, Built], str]


def _blob(layout: Path, dgst: Digest) -> Path:
    return layout / "blobs" / "sha256" / dgst.encoded


def _missing(layout: Path, built: Built) -> str:
    layer = sorted(built.blobs)[0]
    _blob(layout, layer).unlink()
    return f"blob {layer} is missing"


def _wrong_bytes(layout: Path, built: Built) -> str:
    layer = sorted(built.blobs)[0]
    data = bytearray(_blob(layout, layer).read_bytes())
    data[0] ^= 1
    _blob(layout, layer).write_bytes(bytes(data))
    return f"blob {layer} hashes to sha256:"


def _wrong_size(layout: Path, built: Built) -> str:
    layer = sorted(built.blobs)[0]
    _blob(layout, layer).write_bytes(_blob(layout, layer).read_bytes() + b"!")
    return f"blob {layer} holds"


def _malformed_index(layout: Path, built: Built) -> str:
    (layout / "index.json").write_text('{"schemaVersion": 2, "manifests": [')
    return "index.json is not valid JSON"


def _index_without_manifests(layout: Path, built: Built) -> str:
    (layout / "index.json").write_text('{"schemaVersion": 2, "manifests": {}}')
    return "'manifests' must be a non-empty array"


def _bad_descriptor(layout: Path, built: Built) -> str:
    (layout / "index.json").write_text(
        '{"schemaVersion": 2, "manifests": [{"digest": "sha256:abc", "size": 1}]}'
    )
    return "manifests[0].digest"


def _no_marker(layout: Path, built: Built) -> str:
    (layout / "oci-layout").unlink()
    return "oci-layout: missing"


def _unparseable(layout: Path, built: Built) -> str:
    junk = b'{"schemaVersion": 2, "layers": 7}'
    dgst = Digest.from_bytes(junk)
    _blob(layout, dgst).write_bytes(junk)
    doc = json.loads((layout / "index.json").read_text())
    doc["manifests"].append({"mediaType": mt.OCI_MANIFEST, "digest": str(dgst), "size": len(junk)})
    (layout / "index.json").write_text(json.dumps(doc))
    return f"manifest {dgst} cannot be parsed"


@pytest.mark.parametrize(
    "breaker",
    [
        _missing,
        _wrong_bytes,
        _wrong_size,
        _malformed_index,
        _index_without_manifests,
        _bad_descriptor,
        _no_marker,
        _unparseable,
    ],
)
def test_import_of_a_bad_layout_writes_nothing(
    source: tuple[Registry, Built], tmp_path: Path, breaker: Breaker
) -> None:
    reg, built = source
    layout = tmp_path / "layout"
    export_layout(reg, "team/app", "v1", layout)
    message = breaker(layout, built)
    dest_root = tmp_path / "dest"
    _registry(dest_root)
    with pytest.raises(LayoutInvalid) as exc:
        import_layout(_registry(dest_root), layout, "x/y")
    assert message in str(exc.value)
    assert str(layout) in str(exc.value)
    assert tree_files(dest_root) == {}


def test_import_command_reports_the_fault(
    source: tuple[Registry, Built], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    reg, built = source
    layout = tmp_path / "layout"
    export_layout(reg, "team/app", "v1", layout)
    _wrong_bytes(layout, built)
    dest = tmp_path / "dest"
    dest.mkdir()
    assert main(["import", "--root", str(dest), str(layout), "x/y:v1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ocistore import: ") and "hashes to sha256:" in err
    assert tree_files(dest) == {}


def test_export_and_import_commands(
    source: tuple[Registry, Built], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, built = source
    src = tmp_path / "src"
    assert main(["export", "--root", str(src), "--json", "team/app:v1", str(tmp_path / "o")]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["digest"] == str(built.index) and out["referrers"] == 3
    dest = tmp_path / "dest"
    dest.mkdir()
    assert main(["import", "--root", str(dest), "--json", str(tmp_path / "o"), "x/y:latest"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["tags"] == {"latest": str(built.index)}
    assert sorted(out["manifests"]) == sorted(str(d) for d in built.manifests)
    assert (
        main(["export", "--root", str(src), f"team/app@{built.children[0]}", str(tmp_path / "p")])
        == 0
    )
    assert capsys.readouterr().out.startswith(f"exported team/app@{built.children[0]} (")


@pytest.mark.parametrize(
    ("ref", "prepare", "message"),
    [
        ("team/app:nope", None, "team/app:nope: no such tag"),
        ("team/app@sha256:" + "0" * 64, None, "is not in team/app"),
        ("team/app:v1", "nonempty", "exists and is not an empty directory"),
        ("team/app:v1", "missing-layer", "is not in team/app"),
        ("team/app:v1", "corrupt-layer", "is corrupt"),
        ("team/app", None, "expected NAME:TAG or NAME@DIGEST"),
        ("team/app@" + "0" * 64, None, "after '@' is not a digest"),
    ],
)
def test_export_errors_leave_nothing(
    source: tuple[Registry, Built],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    ref: str,
    prepare: str | None,
    message: str,
) -> None:
    reg, built = source
    out = tmp_path / "out"
    driver = reg.driver
    layer = sorted(built.blobs)[0]
    data_path = paths.path_for(paths.BlobData(layer))
    if prepare == "nonempty":
        out.mkdir()
        (out / "keep").write_text("mine")
    elif prepare == "missing-layer":
        driver.delete(data_path)
    elif prepare == "corrupt-layer":
        driver.put_content(data_path, driver.get_content(data_path)[:-1] + b"?")
    assert main(["export", "--root", str(tmp_path / "src"), ref, str(out)]) == 2
    assert message in capsys.readouterr().err
    if prepare == "nonempty":
        assert [p.name for p in out.iterdir()] == ["keep"]
    else:
        assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["src"] + (["out"] if prepare == "nonempty" else [])
    )
