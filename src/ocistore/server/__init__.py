"""The OCI Distribution Spec v1.1 HTTP API in front of the storage layer.

:func:`create_app` makes the registry's ASGI application, to run under any
ASGI server (uvicorn, granian, ...); :class:`RegistryApp` is that app over a
:class:`~ocistore.storage.registry.Registry`. ``ocistore serve`` is
:func:`serve`: the app on :mod:`ocistore.server.h1` (or on granian), from a
:class:`ServerConfig` (:func:`load_config` reads one from a ``config.yml``).
"""

from __future__ import annotations

from ocistore.server.app import RegistryApp, build_app, build_registry, create_app
from ocistore.server.config import ServerConfig, load_config
from ocistore.server.run import serve

__all__ = [
    "RegistryApp",
    "ServerConfig",
    "build_app",
    "build_registry",
    "create_app",
    "load_config",
    "serve",
]
