"""The package's public names: what ``import ocistore`` loads, and what it exports.

``from ocistore import Registry, Descriptor, Digest`` is the design's entry
point (DESIGN.md §3); the storage layer behind ``Registry`` is imported on
first use, so ``import ocistore`` stays as cheap as the core it selects.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import ocistore
import ocistore.server
from ocistore.descriptor import Descriptor
from ocistore.digest import Digest

pytestmark = pytest.mark.one_core

LAYERS = ("ocistore.storage", "ocistore.server", "ocistore.cache", "ocistore.driver")


def _modules_after(code: str) -> list[str]:
    """The ocistore modules a fresh interpreter has loaded after running ``code``."""
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            f"{code}\nimport json, sys\n"
            "print(json.dumps(sorted(m for m in sys.modules if m.startswith('ocistore'))))",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    names: list[str] = json.loads(out.stdout)
    return names


def _in_layers(modules: list[str]) -> list[str]:
    return [m for m in modules if m in LAYERS or m.startswith(tuple(f"{p}." for p in LAYERS))]


def test_import_ocistore_loads_no_storage_or_server() -> None:
    loaded = _modules_after("import ocistore")
    assert "ocistore" in loaded
    assert _in_layers(loaded) == []


def test_descriptor_and_digest_load_no_storage_or_server() -> None:
    loaded = _modules_after("from ocistore import Descriptor, Digest")
    assert _in_layers(loaded) == []


def test_registry_is_imported_on_first_use() -> None:
    loaded = _modules_after("from ocistore import Registry")
    assert "ocistore.storage.registry" in loaded
    assert not [m for m in loaded if m.startswith("ocistore.server")]


def test_lazy_names_are_the_storage_classes() -> None:
    from ocistore import Registry, Repository
    from ocistore.storage import registry

    assert Registry is registry.Registry
    assert Repository is registry.Repository
    assert ocistore.Descriptor is Descriptor
    assert ocistore.Digest is Digest


def test_star_import_gives_exactly_the_public_names() -> None:
    namespace: dict[str, object] = {}
    exec("from ocistore import *", namespace)
    assert sorted(k for k in namespace if k != "__builtins__") == sorted(ocistore.__all__)


def test_unknown_name_is_an_attribute_error_naming_it() -> None:
    with pytest.raises(AttributeError, match="'NoSuchThing'"):
        _ = ocistore.NoSuchThing  # type: ignore[attr-defined]
    with pytest.raises(ImportError, match="NoSuchThing"):
        exec("from ocistore import NoSuchThing", {})


def test_public_exports_are_pinned() -> None:
    assert ocistore.__all__ == [
        "BACKEND",
        "Descriptor",
        "Digest",
        "Registry",
        "Repository",
        "__version__",
    ]
    assert sorted(ocistore.server.__all__) == [
        "RegistryApp",
        "ServerConfig",
        "build_app",
        "build_registry",
        "create_app",
        "load_config",
        "serve",
    ]
    for name in [*ocistore.__all__, *ocistore.server.__all__]:
        module = ocistore if name in ocistore.__all__ else ocistore.server
        assert getattr(module, name) is not None, name


def test_design_names_of_drivers_and_caches() -> None:
    """The other entry points DESIGN.md §3 names."""
    from ocistore.cache import LMDBDescriptorCache, MemoryDescriptorCache
    from ocistore.driver import FilesystemDriver, InMemoryDriver

    assert [c.__name__ for c in (FilesystemDriver, InMemoryDriver)] == [
        "FilesystemDriver",
        "InMemoryDriver",
    ]
    assert [c.__name__ for c in (LMDBDescriptorCache, MemoryDescriptorCache)] == [
        "LMDBDescriptorCache",
        "MemoryDescriptorCache",
    ]
