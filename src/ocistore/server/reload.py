"""Re-reading the configuration on SIGHUP (``ocistore serve``), for what can change safely.

What a running app takes from a new configuration: read-only mode
(``storage.maintenance.readonly``), the ``auth:`` section, the log level
and the access log. Everything else (address, workers, storage, caches,
the upload secret, limits) is fixed for the life of the process: a change
there is logged as needing a restart and otherwise ignored. A file that
does not load (bad YAML, a bad value, a missing key file) is logged and
the running configuration stays as it was.

With several workers, the supervising parent re-reads the file too (the
workers it starts later begin with the new settings) and passes the
signal on to each worker, which re-reads it itself.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import signal
from collections.abc import Callable
from typing import Any, Final

from ocistore.server.config import ConfigError, ServerConfig

__all__ = ["RELOADABLE", "ConfigHolder", "forward_to_children", "reload_app"]

log = logging.getLogger("ocistore.server")

RELOADABLE: Final = ("readonly", "auth", "log_level", "access_log")
"""The :class:`ServerConfig` fields a SIGHUP applies to a running server."""

_IGNORED: Final = frozenset({"secret"})  # generated once when not configured: not a change


class ConfigHolder:
    """The configuration in force, and how to read the file again."""

    def __init__(self, cfg: ServerConfig, load: Callable[[], ServerConfig]) -> None:
        self.cfg = cfg
        self.load = load

    def reload(self) -> ServerConfig | None:
        """Read the file again; the new configuration in force, or None when it did not load.

        Only :data:`RELOADABLE` fields change; the others keep their running
        values (a change to them is logged as needing a restart).
        """
        try:
            new = self.load()
        except (ConfigError, OSError) as exc:
            log.error("SIGHUP: configuration not reloaded, still running the old one: %s", exc)
            return None
        old = self.cfg
        fixed = [
            f.name
            for f in dataclasses.fields(ServerConfig)
            if f.name not in RELOADABLE
            and f.name not in _IGNORED
            and getattr(new, f.name) != getattr(old, f.name)
        ]
        if fixed:
            log.warning("SIGHUP: changes to %s need a restart; ignored", ", ".join(fixed))
        self.cfg = dataclasses.replace(old, **{k: getattr(new, k) for k in RELOADABLE})
        return self.cfg


def reload_app(app: Any, holder: ConfigHolder) -> None:
    """Apply a re-read configuration to a running :class:`~ocistore.server.app.RegistryApp`."""
    from ocistore.server.auth import build_access_controller

    before = holder.cfg
    cfg = holder.reload()
    if cfg is None:
        return
    if cfg.auth != before.auth:
        try:
            app.set_auth(build_access_controller(cfg.auth))
        except (ConfigError, OSError, ValueError) as exc:
            log.error("SIGHUP: auth not changed: %s", exc)
            holder.cfg = dataclasses.replace(cfg, auth=before.auth)
    app.readonly = cfg.readonly
    app.access_log = cfg.access_log
    logging.getLogger().setLevel(_level(cfg.log_level))
    log.info(
        "SIGHUP: configuration reloaded (read-only %s, auth %s)",
        "on" if cfg.readonly else "off",
        _auth_kind(holder.cfg.auth),
    )


def forward_to_children(signum: int = signal.SIGHUP) -> int:
    """Send ``signum`` to every child of this process (the workers); how many were sent it."""
    sent = 0
    for pid in _children():
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)
            sent += 1
    return sent


def _children() -> list[int]:
    """This process's children, from /proc (the supervisor is Linux only)."""
    me = os.getpid()
    try:
        with open(f"/proc/{me}/task/{me}/children") as f:
            return [int(p) for p in f.read().split()]
    except OSError:
        pass
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        # pid (comm) state ppid ...: comm may hold spaces and parentheses.
        if int(stat.rpartition(")")[2].split()[1]) == me:
            found.append(int(entry))
    return found


def _level(name: str) -> int:
    level = {"warn": "WARNING"}.get(name, name.upper())
    value = logging.getLevelName(level)
    return value if isinstance(value, int) else logging.INFO


def _auth_kind(auth: str) -> str:
    if not auth:
        return "off"
    return auth.split('"', 2)[1]  # the one key of the checked JSON section
