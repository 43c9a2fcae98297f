"""Issue 13, parts 6-8: duplicate keys, capped errors, digest messages, spec gaps, fuzz finds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ocistore.server.config import ConfigError, load_config
from ocistore.server.errors import MAX_LISTED_BLOBS

from .asgi_client import Client
from .conftest import sha256
from .helpers import OCI_CONFIG, OCI_LAYER, OCI_MANIFEST, manifest_for, path_of, push_blob, start

REPO = "app/web"


# --- duplicate keys --------------------------------------------------------------


def _manifest_text(config: str, layers: str) -> str:
    return f'{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{config},"layers":{layers}}}'


def test_duplicate_layers_key_is_refused(client: Client) -> None:
    """The probe's case: a first ``layers`` naming a missing blob, a second a present one."""
    config = b'{"a":1}'
    layer = b"present layer"
    cfg = json.dumps(
        {"mediaType": OCI_CONFIG, "digest": push_blob(client, REPO, config), "size": 7}
    )
    present = json.dumps(
        [{"mediaType": OCI_LAYER, "digest": push_blob(client, REPO, layer), "size": len(layer)}]
    )
    missing = json.dumps([{"mediaType": OCI_LAYER, "digest": sha256(b"absent"), "size": 6}])
    text = _manifest_text(cfg, missing)[:-1] + ',"layers":' + present + "}"
    r = client.put(
        f"/v2/{REPO}/manifests/dup", body=text.encode(), headers={"Content-Type": OCI_MANIFEST}
    )
    assert (r.status, r.error_codes) == (400, ["MANIFEST_INVALID"])
    assert "duplicate key 'layers'" in r.json()["errors"][0]["detail"]
    assert client.get(f"/v2/{REPO}/manifests/dup").status == 404


@pytest.mark.parametrize(
    "where",
    ["config", "layer", "annotations"],
)
def test_duplicate_key_at_depth_is_refused(client: Client, where: str) -> None:
    config = b'{"b":2}'
    layer = b"a layer"
    cfg_digest = push_blob(client, REPO, config)
    layer_digest = push_blob(client, REPO, layer)
    cfg = f'{{"mediaType":"{OCI_CONFIG}","digest":"{cfg_digest}","size":7}}'
    lay = f'{{"mediaType":"{OCI_LAYER}","digest":"{layer_digest}","size":7}}'
    if where == "config":
        cfg = cfg[:-1] + ',"size":7}'
    elif where == "layer":
        lay = lay[:-1] + f',"digest":"{layer_digest}"}}'
    text = _manifest_text(cfg, f"[{lay}]")
    if where == "annotations":
        text = text[:-1] + ',"annotations":{"k":"v","k":"v"}}'
    r = client.put(
        f"/v2/{REPO}/manifests/d", body=text.encode(), headers={"Content-Type": OCI_MANIFEST}
    )
    assert (r.status, r.error_codes) == (400, ["MANIFEST_INVALID"]), r.body
    # The same document without the duplicate is accepted (the refusal is about the key).
    clean = _manifest_text(
        f'{{"mediaType":"{OCI_CONFIG}","digest":"{cfg_digest}","size":7}}', f"[{lay}]"
    )
    if where == "layer":
        clean = _manifest_text(
            f'{{"mediaType":"{OCI_CONFIG}","digest":"{cfg_digest}","size":7}}',
            f'[{{"mediaType":"{OCI_LAYER}","digest":"{layer_digest}","size":7}}]',
        )
    r = client.put(
        f"/v2/{REPO}/manifests/d", body=clean.encode(), headers={"Content-Type": OCI_MANIFEST}
    )
    assert r.status == 201, r.body


# --- capped MANIFEST_BLOB_UNKNOWN ------------------------------------------------


def test_many_missing_blobs_answer_is_capped(client: Client) -> None:
    config = b'{"c":3}'
    cfg = {"mediaType": OCI_CONFIG, "digest": push_blob(client, REPO, config), "size": 7}
    missing = [sha256(b"missing %d" % i) for i in range(10_000)]
    doc = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": cfg,
        "layers": [{"mediaType": OCI_LAYER, "digest": d, "size": 1} for d in missing],
    }
    r = client.put(
        f"/v2/{REPO}/manifests/big",
        body=json.dumps(doc).encode(),
        headers={"Content-Type": OCI_MANIFEST},
    )
    assert r.status == 400
    errors = r.json()["errors"]
    assert len(errors) == MAX_LISTED_BLOBS + 1
    assert {e["code"] for e in errors} == {"MANIFEST_BLOB_UNKNOWN"}
    assert [e["detail"]["digest"] for e in errors[:-1]] == missing[:MAX_LISTED_BLOBS]
    assert errors[-1]["detail"] == {"omitted": 10_000 - MAX_LISTED_BLOBS}


def test_few_missing_blobs_are_all_listed(client: Client) -> None:
    config = b'{"d":4}'
    cfg = {"mediaType": OCI_CONFIG, "digest": push_blob(client, REPO, config), "size": 7}
    missing = [sha256(b"gone %d" % i) for i in range(3)]
    doc = {
        "schemaVersion": 2,
        "config": cfg,
        "layers": [{"mediaType": OCI_LAYER, "digest": d, "size": 1} for d in missing],
    }
    r = client.put(f"/v2/{REPO}/manifests/few", body=json.dumps(doc).encode())
    assert r.status == 400
    assert [e["detail"]["digest"] for e in r.json()["errors"]] == missing


# --- DIGEST_INVALID messages -----------------------------------------------------


@pytest.mark.parametrize(
    ("method", "target"),
    [
        ("PUT", "/v2/app/web/manifests/sha256:short"),
        ("GET", "/v2/app/web/blobs/sha256:short"),
        ("GET", "/v2/app/web/referrers/sha256:short"),
    ],
)
def test_malformed_digest_message_says_malformed(client: Client, method: str, target: str) -> None:
    r = client.request(method, target, body=b"{}")
    assert (r.status, r.error_codes) == (400, ["DIGEST_INVALID"]), r.body
    message = r.json()["errors"][0]["message"]
    assert "malformed" in message and "'sha256:short'" in message
    assert "did not match" not in message


def test_malformed_digest_on_upload_finish_says_malformed(client: Client) -> None:
    loc = path_of(start(client, REPO).header("Location") or "")
    r = client.put(loc + "&digest=sha256:zz", body=b"data")
    assert (r.status, r.error_codes) == (400, ["DIGEST_INVALID"])
    assert "malformed" in r.json()["errors"][0]["message"]


def test_content_mismatch_keeps_the_mismatch_message(client: Client) -> None:
    loc = path_of(start(client, REPO).header("Location") or "")
    r = client.put(loc + f"&digest={sha256(b'other')}", body=b"data")
    assert (r.status, r.error_codes) == (400, ["DIGEST_INVALID"])
    assert "malformed" not in r.json()["errors"][0]["message"]


# --- GET/HEAD by an invalid reference --------------------------------------------


@pytest.mark.parametrize("reference", ["-bad", "sha256:short", "a" * 129, ".x", "x:y:z"])
@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_get_by_invalid_reference_is_manifest_unknown(
    client: Client, method: str, reference: str
) -> None:
    r = client.request(method, f"/v2/{REPO}/manifests/{reference}")
    assert r.status == 404
    if method == "GET":
        assert r.error_codes == ["MANIFEST_UNKNOWN"]


def test_put_by_invalid_tag_is_still_tag_invalid(client: Client) -> None:
    payload = manifest_for(client, REPO)
    r = client.put(
        f"/v2/{REPO}/manifests/-bad", body=payload, headers={"Content-Type": OCI_MANIFEST}
    )
    assert (r.status, r.error_codes) == (400, ["TAG_INVALID"])


# --- GET on a stale upload Location ----------------------------------------------


def test_status_on_stale_location_after_416(client: Client) -> None:
    loc = path_of(start(client, REPO).header("Location") or "")
    r = client.patch(loc, body=b"abc", headers={"Content-Range": "0-2"})
    assert r.status == 202, r.body
    stale, loc = loc, path_of(r.header("Location") or "")
    r = client.patch(stale, body=b"zz")  # the old Location: refused, nothing appended
    assert (r.status, r.header("Range")) == (416, "0-2")

    r = client.get(stale)
    assert (r.status, r.header("Range")) == (204, "0-2")
    fresh = path_of(r.header("Location") or "")
    assert fresh != stale
    # The fresh Location is current: the upload goes on from it.
    r = client.patch(fresh, body=b"def", headers={"Content-Range": "3-5"})
    assert (r.status, r.header("Range")) == (202, "0-5")
    r = client.put(path_of(r.header("Location") or "") + f"&digest={sha256(b'abcdef')}")
    assert r.status == 201, r.body


def test_status_with_forged_token_is_refused(client: Client) -> None:
    loc = path_of(start(client, REPO).header("Location") or "")
    base, _, token = loc.partition("_state=")
    r = client.get(base + "_state=" + token[:-4] + "AAAA")
    assert r.status in (400, 404)
    assert r.error_codes == ["BLOB_UPLOAD_INVALID"]


# --- found by the fuzzers --------------------------------------------------------


def test_range_with_a_huge_number_is_answered(client: Client) -> None:
    """Numbers past int()'s 4300-digit limit raised ValueError (500); fuzz_ranges found it."""
    dgst = push_blob(client, REPO, b"0123456789")
    url = f"/v2/{REPO}/blobs/{dgst}"
    r = client.get(url, headers={"Range": "bytes=" + "9" * 5000 + "-"})
    assert (r.status, r.header("Content-Range")) == (416, "bytes */10")
    r = client.get(url, headers={"Range": "bytes=2-" + "9" * 5000})
    assert (r.status, r.body) == (206, b"23456789")
    loc = path_of(start(client, REPO).header("Location") or "")
    r = client.patch(loc, body=b"x", headers={"Content-Range": "0-" + "9" * 5000})
    assert (r.status, r.error_codes) == (416, ["RANGE_INVALID"])


def test_repository_name_made_to_backtrack_is_refused(client: Client) -> None:
    """A name the old regexp matched in exponential time (fuzz_reference found it)."""
    r = client.get("/v2/" + "a" * 60 + "!/tags/list")
    assert (r.status, r.error_codes) == (400, ["NAME_INVALID"])


def test_config_file_not_utf8_is_a_config_error(tmp_path: Path) -> None:
    """A UnicodeDecodeError escaped load_config (fuzz_config found it)."""
    path = tmp_path / "config.yml"
    path.write_bytes(b"\xd7\xf6\n\xf9")
    with pytest.raises(ConfigError, match="is not UTF-8 text"):
        load_config(path)
