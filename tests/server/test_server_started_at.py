"""The token's ``StartedAt``: Go's RFC3339Nano, the creation instant on POST, the file's after.

Go (distribution ``blobupload.go``) signs ``Upload.StartedAt()``: on POST the
``time.Now()`` it created the upload at, with nanoseconds; on every later
request the time parsed back from ``startedat``, whole seconds. ocistore does
the same, and the POST instant always falls in the second the file records.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from hypothesis import given
from hypothesis import strategies as st

from ocistore.server.app import RegistryApp
from ocistore.server.state import format_go_time, unpack_upload_state, upload_start_time

from .asgi_client import Client, Reply
from .conftest import SECRET
from .helpers import path_of, start

REPO = "library/started"
RFC3339_NANO = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{0,8}[1-9])?Z")
T0 = 1_764_268_685  # 2025-11-27T18:38:05Z


def _started(reply: Reply) -> str:
    token = parse_qs(urlsplit(reply.header("Location") or "").query)["_state"][0]
    return unpack_upload_state(token, SECRET).started_at


def test_go_time_format_of_nanoseconds() -> None:
    assert format_go_time(T0 * 10**9) == "2025-11-27T18:38:05Z"
    assert format_go_time(T0 * 10**9 + 120_000_000) == "2025-11-27T18:38:05.12Z"
    assert format_go_time(T0 * 10**9 + 123_456_789) == "2025-11-27T18:38:05.123456789Z"
    assert format_go_time(T0 * 10**9 + 1) == "2025-11-27T18:38:05.000000001Z"
    assert format_go_time(datetime(2026, 11, 27, 18, 38, 5, 1, tzinfo=UTC)) == (
        "2026-11-27T18:38:05.000001Z"
    )
    # A naive datetime is UTC; another zone is converted.
    assert format_go_time(datetime(2026, 11, 27, 18, 38, 5)) == "2026-11-27T18:38:05Z"
    plus2 = datetime(2026, 11, 27, 20, 38, 5, tzinfo=UTC).astimezone(timezone(timedelta(hours=2)))
    assert format_go_time(plus2) == "2026-11-27T20:38:05Z"


@given(st.integers(min_value=0, max_value=253_402_300_799 * 10**9))
def test_go_time_format_shape_and_value(ns: int) -> None:
    text = format_go_time(ns)
    assert RFC3339_NANO.fullmatch(text), text
    whole, _, frac = text[:-1].partition(".")
    parsed = datetime.strptime(whole, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC)
    assert int(parsed.timestamp()) * 10**9 + int(frac.ljust(9, "0") or 0) == ns


def test_upload_start_time_keeps_the_file_second() -> None:
    second = datetime.fromtimestamp(T0, UTC)
    assert upload_start_time(T0 * 10**9 + 5, second) == T0 * 10**9 + 5
    # The clock turned between reading it and creating the upload: the file wins.
    assert upload_start_time(T0 * 10**9 - 5, second) == second
    # A storage layer that keeps a finer time is used as it is.
    fine = second.replace(microsecond=250)
    assert upload_start_time(T0 * 10**9 + 5, fine) == fine


def test_post_token_has_the_creation_instant_later_ones_the_file(
    client: Client, app: RegistryApp, tmp_path: Path
) -> None:
    r = start(client, REPO)
    uuid = r.header("Docker-Upload-UUID")
    on_post = _started(r)
    assert RFC3339_NANO.fullmatch(on_post), on_post
    startedat = tmp_path / f"data/docker/registry/v2/repositories/{REPO}/_uploads/{uuid}/startedat"
    recorded = startedat.read_text()
    assert on_post.split(".")[0].rstrip("Z") + "Z" == recorded  # the same second
    r = client.patch(path_of(r.header("Location") or ""), body=b"abc")
    assert r.status == 202
    assert _started(r) == recorded
    r = client.get(f"/v2/{REPO}/blobs/uploads/{uuid}")
    assert _started(r) == recorded
