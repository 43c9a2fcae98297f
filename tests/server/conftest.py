"""Fixtures for the HTTP API tests: an app over a fresh filesystem root, and a client."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ocistore.cache import MemoryDescriptorCache
from ocistore.driver import FilesystemDriver
from ocistore.server.app import RegistryApp
from ocistore.storage.registry import Registry

from .asgi_client import Client

SECRET = "test-secret"


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def make_app(root: Path, **options: Any) -> RegistryApp:
    delete = options.pop("delete_enabled", True)
    registry = Registry(
        FilesystemDriver(root / "data"), cache=MemoryDescriptorCache(), delete_enabled=delete
    )
    options.setdefault("secret", SECRET)
    options.setdefault("lock_dir", str(root / "locks"))
    return RegistryApp(registry, **options)


@pytest.fixture
def app(tmp_path: Path) -> Iterator[RegistryApp]:
    a = make_app(tmp_path)
    yield a
    a.executor.shutdown(wait=True)


@pytest.fixture
def client(app: RegistryApp) -> Client:
    return Client(app)
