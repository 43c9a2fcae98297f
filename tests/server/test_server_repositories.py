"""The server keeps one Repository per name across requests (a bounded LRU)."""

from __future__ import annotations

import pytest

from ocistore.errors import NameInvalid
from ocistore.server.app import RegistryApp
from ocistore.server.context import RepositoryCache

from .asgi_client import Client
from .helpers import push_blob


def test_same_repository_object_per_name(app: RegistryApp) -> None:
    cache = RepositoryCache(app.services.registry, size=2)
    a = cache.get("library/a")
    assert cache.get("library/a") is a
    assert a.name == "library/a"


def test_bounded_least_recently_used(app: RegistryApp) -> None:
    cache = RepositoryCache(app.services.registry, size=2)
    a, b = cache.get("x/a"), cache.get("x/b")
    assert cache.get("x/a") is a  # a is now the most recent
    cache.get("x/c")  # evicts b
    assert cache.get("x/a") is a
    assert cache.get("x/b") is not b


def test_bad_names_raise_and_are_not_kept(app: RegistryApp) -> None:
    cache = RepositoryCache(app.services.registry, size=2)
    for _ in range(2):
        with pytest.raises(NameInvalid):
            cache.get("Bad Name")


def test_requests_share_the_repository(client: Client, app: RegistryApp) -> None:
    push_blob(client, "library/shared", b"one")
    first = app.services.repositories.get("library/shared")
    push_blob(client, "library/shared", b"two")
    assert app.services.repositories.get("library/shared") is first
    assert client.get("/v2/Bad/blobs/sha256:" + "0" * 64).error_codes == ["NAME_INVALID"]
