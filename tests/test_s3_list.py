"""The S3 driver's directory listings through obstore against botocore's: same answers (moto).

:meth:`S3Driver._entries` (``list``, ``walk``, ``stat`` of a directory, the
hash-state pruning of every PATCH) lists ``dir/`` with delimiter ``/``
through obstore's ``list_with_delimiter`` where that answers exactly as
botocore's ListObjectsV2 does. Both drivers (``fast=False`` is botocore) run
on one bucket holding what the layout holds and what foreign tools may add:
directory markers (``dir/``), nested directories, upload states (``~upload``),
empty files, keys with empty or dot segments (obstore cannot parse them:
botocore lists instead), more than 1,000 entries (two S3 pages), empty
directories and a missing bucket.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from ocistore.driver.s3 import S3Driver
from ocistore.driver.s3_options import parse_s3_options
from ocistore.errors import DriverError
from s3_peer import S3Endpoint, new_bucket, s3_endpoint  # noqa: F401 (fixtures)

RAW_KEYS = {
    "reg/m/": b"",  # a marker of a directory that has nothing else
    "reg/d/": b"",  # a marker of a directory that has files too
    "reg/d/a": b"alpha",
    "reg/d/empty": b"",
    "reg/d/sub/": b"",  # a marker in a listing: a common prefix
    "reg/d/sub/x": b"x",
    "reg/d/deep/er/y": b"yy",
    "reg/d/w~upload": b"not a state",  # an upload state that does not decode
    "reg/d/a~upload": b"not a state",  # beside its finished file
    "reg/odd/k": b"k",
    "reg/odd//e": b"e",  # an empty segment below
    "reg/dots/./f": b"f",  # a dot segment below
    "reg/dots2/../g": b"g",
    "reg/flat/f": b"f",
    "reg/flatx": b"a file beside the directory's name",
}


@pytest.fixture
def drivers(
    s3_endpoint: S3Endpoint,  # noqa: F811
    new_bucket: Callable[[], str],  # noqa: F811
) -> tuple[S3Driver, S3Driver, Counter[str]]:
    """obstore's and botocore's driver on one bucket of RAW_KEYS; the fast one's obstore calls."""
    bucket = new_bucket()
    raw = s3_endpoint.client()
    for key, body in RAW_KEYS.items():
        raw.put_object(Bucket=bucket, Key=key, Body=body)
    options = parse_s3_options(s3_endpoint.params(bucket, rootdirectory="/reg"))
    fast, slow = S3Driver(options), S3Driver(options, fast=False)
    assert fast.fast is not None and slow.fast is None
    seen: Counter[str] = Counter()
    fast.fast.observers.append(lambda operation, key: seen.update([operation]))
    return fast, slow, seen


def _outcome(call: Callable[[S3Driver, str], Any], driver: S3Driver, path: str) -> Any:
    try:
        return call(driver, path)
    except DriverError as exc:
        return (type(exc), str(exc))


DIRS = ["/", "/m", "/d", "/d/sub", "/d/deep", "/odd", "/dots", "/dots2", "/flat", "/nothing"]


def test_list_walk_and_stat_agree(drivers: tuple[S3Driver, S3Driver, Counter[str]]) -> None:
    fast, slow, _ = drivers
    calls: dict[str, Callable[[S3Driver, str], Any]] = {
        "list": lambda d, p: d.list(p),
        "entries": lambda d, p: sorted(d._entries(p, sizes=True), key=lambda i: i.path),
        "walk": lambda d, p: list(d.walk(p)),
        "stat": lambda d, p: d.stat(p),
    }
    for path in DIRS:
        for name, call in calls.items():
            got = _outcome(call, fast, path)
            assert got == _outcome(call, slow, path), (name, path)


def test_which_listings_obstore_answers(drivers: tuple[S3Driver, S3Driver, Counter[str]]) -> None:
    fast, _, seen = drivers
    assert fast.list("/d") == ["/d/a", "/d/deep", "/d/empty", "/d/sub", "/d/w"]
    assert fast.list("/m") == []  # the marker alone keeps it a directory
    assert seen["ListObjectsV2"] == 2
    # botocore lists again where obstore's page held a key it cannot parse
    assert fast.list("/odd") == ["/odd/k"]  # "odd//"
    assert fast.list("/dots") == ["/dots/."]  # "dots/./"
    assert seen["ListObjectsV2"] == 4
    assert fast.list("/") == ["/d", "/dots", "/dots2", "/flat", "/flatx", "/m", "/odd"]
    assert seen["ListObjectsV2"] == 5  # the root directory's "reg/"


def test_more_than_a_page_agrees(
    s3_endpoint: S3Endpoint,  # noqa: F811
    new_bucket: Callable[[], str],  # noqa: F811
) -> None:
    options = parse_s3_options(s3_endpoint.params(new_bucket(), rootdirectory="/reg"))
    fast, slow = S3Driver(options), S3Driver(options, fast=False)
    assert fast.fast is not None
    keys = [fast.key(f"/big/f{i:04d}") for i in range(1003)]
    keys += [fast.key(f"/big/sub{i}/x") for i in range(3)]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda key: fast.put_object("/big", key, b""), keys))
    seen: list[str] = []
    fast.fast.observers.append(lambda operation, key: seen.append(operation))
    listed = fast.list("/big")
    assert len(listed) == 1006 and listed == slow.list("/big")
    assert seen == ["ListObjectsV2", "ListObjectsV2"]  # 1,006 entries: two S3 pages
    assert list(fast.walk("/big")) == list(slow.walk("/big"))


def test_a_missing_bucket_fails_alike(s3_endpoint: S3Endpoint) -> None:  # noqa: F811
    options = parse_s3_options(s3_endpoint.params("no-such-bucket-for-lists"))
    fast, slow = S3Driver(options), S3Driver(options, fast=False)
    for call in (lambda d: d.list("/d"), lambda d: list(d.walk("/d"))):
        with pytest.raises(DriverError) as got_fast:
            call(fast)
        with pytest.raises(DriverError) as got_slow:
            call(slow)
        assert (type(got_fast.value), str(got_fast.value)) == (
            type(got_slow.value),
            str(got_slow.value),
        )
