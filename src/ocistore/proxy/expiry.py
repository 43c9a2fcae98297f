"""Holds and expiry: what the proxy fetched leaves after its upstream's TTL unless pulled again.

A hold is a small file per repository and digest,
``<name>/_proxy/<kind>/<alg>/<hex>`` (:class:`~ocistore.storage.paths.ProxyHold`),
holding the RFC 3339 time it expires; a fetch writes it and a pull pushes it
back (rewritten only once less than half the TTL is left, so a hot blob costs
no write per pull). The holds live in the store, beside the links they keep,
so every instance on a shared root sees them.

:func:`expire` (run once per interval for all workers of a root, through the
server's :class:`~ocistore.server.maintenance.PurgeSchedule` stamp) removes an
expired hold's link: the repository's layer link, or the manifest revision
with the tags pointing at it. A blob's data goes only when no repository links
it any more: a blob shared by several repositories stays while any of them
still holds it, unlike distribution's scheduler, which deleted the blob for
all of them. A fill racing the sweep can lose its data; its link then leads
nowhere and the next pull fetches the blob again.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from ocistore.digest import Digest
from ocistore.errors import BlobUnknown, ManifestUnknown, PathNotFound, RegistryError
from ocistore.storage import paths
from ocistore.storage.blobwriter import format_started_at, parse_started_at
from ocistore.storage.registry import Registry

__all__ = ["Expired", "Holds", "expire"]

log = logging.getLogger("ocistore.proxy")


class Holds:
    """Writes and refreshes holds (one process's memo of what it wrote, to skip rewrites)."""

    def __init__(self, registry: Registry, *, clock: Callable[[], float] = time.time) -> None:
        self.registry = registry
        self.clock = clock
        self._memo: dict[tuple[str, str, str], float] = {}

    def touch(self, name: str, kind: str, digest: Digest | str, ttl: float) -> None:
        """Hold ``digest`` in ``name`` for ``ttl`` seconds from now (0: no expiry, no hold)."""
        if ttl <= 0:
            return
        now = self.clock()
        key = (name, kind, str(digest))
        known = self._memo.get(key)
        if known is not None and known - now > ttl / 2:
            return
        expires = now + ttl
        when = datetime.fromtimestamp(expires, UTC).replace(microsecond=0)
        spec = paths.ProxyHold(name, kind, Digest.parse(str(digest)))
        self.registry.driver.put_content(
            paths.path_for(spec), format_started_at(when).encode("ascii")
        )
        self._memo[key] = expires


@dataclass
class Expired:
    """What one :func:`expire` run removed."""

    links: list[tuple[str, str, str]] = field(default_factory=list)
    """(repository, kind, digest) of every hold that had expired."""
    blobs: list[str] = field(default_factory=list)
    """Digests whose data went because no repository links them any more."""
    errors: list[str] = field(default_factory=list)


def _holds_of(registry: Registry, name: str) -> list[tuple[str, Digest, str]]:
    """(kind, digest, hold path) of every hold of ``name``."""
    driver = registry.driver
    root = paths.path_for(paths.ProxyHolds(name))
    out: list[tuple[str, Digest, str]] = []
    try:
        infos = list(driver.walk(root))
    except PathNotFound:
        return out
    for info in infos:
        if info.is_dir:
            continue
        rel = info.path[len(root) + 1 :].split("/")
        if len(rel) != 3 or rel[0] not in paths.PROXY_HOLD_KINDS:
            continue
        with contextlib.suppress(ValueError):
            out.append((rel[0], Digest.from_parts(rel[1], rel[2]), info.path))
    return out


def expire(registry: Registry, *, now: float | None = None) -> Expired:
    """Remove every expired hold's link, then the data no repository links (module docstring)."""
    when = datetime.fromtimestamp(time.time() if now is None else now, UTC)
    # A registry view that may delete, over the same driver and cache (no stat cache of its own).
    reg = Registry(registry.driver, cache=registry.cache, delete_enabled=True, stat_cache_size=0)
    driver = reg.driver
    done = Expired()
    candidates: set[Digest] = set()
    names = list(reg.enumerate())
    for name in names:
        for kind, dgst, path in _holds_of(reg, name):
            try:
                expires = parse_started_at(driver.get_content(path).decode("ascii", "replace"))
            except (PathNotFound, ValueError):
                continue
            if expires > when:
                continue
            repo = reg.repository(name)
            try:
                if kind == "blob":
                    with contextlib.suppress(BlobUnknown):
                        repo.blobs.delete(dgst)
                else:
                    with contextlib.suppress(ManifestUnknown):
                        repo.manifests.delete(dgst)
                with contextlib.suppress(PathNotFound):
                    driver.delete(path)
            except (RegistryError, OSError) as exc:
                done.errors.append(f"{name} {kind} {dgst}: {exc}")
                continue
            done.links.append((name, kind, str(dgst)))
            candidates.add(dgst)
    if not candidates:
        return done
    linked: set[Digest] = set()
    for name in names:
        repo = reg.repository(name)
        with contextlib.suppress(RegistryError, PathNotFound):
            linked.update(d for d in repo.blobs.enumerate() if d in candidates)
        with contextlib.suppress(RegistryError, PathNotFound):
            linked.update(d for d in repo.manifests.enumerate() if d in candidates)
    for dgst in sorted(candidates - linked):
        try:
            driver.delete(paths.path_for(paths.Blob(dgst)))
        except PathNotFound:
            pass
        except OSError as exc:
            done.errors.append(f"blob {dgst}: {exc}")
            continue
        done.blobs.append(str(dgst))
    return done
