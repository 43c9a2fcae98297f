"""The OCI Distribution Spec v1.1 HTTP API in front of the storage layer (``ocistore serve``).

:class:`RegistryApp` is an ASGI application over a :class:`~ocistore.storage.registry.Registry`;
:func:`build_app` makes one from a :class:`ServerConfig`; :func:`serve` runs it on
:mod:`ocistore.server.h1` (or on granian).
"""

from __future__ import annotations

from ocistore.server.app import RegistryApp, build_app, build_registry
from ocistore.server.config import ServerConfig, load_config
from ocistore.server.run import serve

__all__ = ["RegistryApp", "ServerConfig", "build_app", "build_registry", "load_config", "serve"]
