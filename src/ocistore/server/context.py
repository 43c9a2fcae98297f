"""What every handler gets: the request, its route, and the services of the app.

Storage calls are synchronous. Those that may block for long (fsync on
commit and on manifest/tag writes, hashing, reading blob data the page cache
does not hold) go to the app's thread pool through :meth:`Ctx.run`; quick
metadata reads (stat, link reads, which the caches mostly answer) and blob
data already in the page cache (see :data:`~ocistore.server.http.SEND_CHUNK`)
are read inline, because a thread hop would cost more than the read.
"""

from __future__ import annotations

import asyncio
import functools
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from threading import Lock
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import quote

from ocistore.server.http import Request
from ocistore.server.locks import UploadLocks
from ocistore.server.routes import Route

if TYPE_CHECKING:
    from ocistore.storage.registry import Registry, Repository

__all__ = ["Ctx", "RepositoryCache", "Services", "lru_hit"]

T = TypeVar("T")
K = TypeVar("K")
V = TypeVar("V")


def lru_hit(entries: OrderedDict[K, V], key: K) -> V | None:
    """``entries[key]`` moved to the most recent end, or ``None``; takes no lock.

    Each OrderedDict call is atomic under the GIL, and a hit evicted by
    another thread meanwhile only misses its move to the end, so the hits of
    the server's in-process LRUs (repositories, manifest payloads) need no
    lock; inserting and evicting still take the owner's lock.
    """
    value = entries.get(key)
    if value is not None:
        try:  # noqa: SIM105 (contextlib.suppress costs more than the lookup)
            entries.move_to_end(key)
        except KeyError:
            pass
    return value


class RepositoryCache:
    """``Registry.repository(name)`` objects kept across requests, a bounded LRU.

    A :class:`~ocistore.storage.registry.Repository` and its stores are views
    over the registry (a name and configuration, no state of their own), so
    one per name serves every request. Building them per request (name check,
    linked blob stores, descriptor-cache scopes) was a fifth of the cost of
    a GET manifest.
    """

    def __init__(self, registry: Registry, size: int = 4096) -> None:
        self._registry = registry
        self._size = size
        self._repos: OrderedDict[str, Repository] = OrderedDict()
        self._lock = Lock()

    def get(self, name: str) -> Repository:
        """The repository ``name``; raises NameInvalid like ``Registry.repository``."""
        repo = lru_hit(self._repos, name)
        if repo is not None:
            return repo
        repo = self._registry.repository(name)
        with self._lock:
            self._repos[name] = repo
            if len(self._repos) > self._size:
                self._repos.popitem(last=False)
        return repo


@dataclass(frozen=True, slots=True)
class Services:
    """The app-wide parts a handler may use (one per worker process)."""

    registry: Registry
    executor: Executor | None
    secret: str
    locks: UploadLocks
    idle_timeout: float
    max_blob_size: int
    relative_urls: bool
    chunk_min_length: int
    repositories: RepositoryCache
    events: bool = False  # an on_event hook listens: handlers note what events need


class Ctx:
    """One request being handled."""

    __slots__ = ("_repo", "req", "route", "svc")

    def __init__(self, svc: Services, req: Request, route: Route) -> None:
        self.svc = svc
        self.req = req
        self.route = route
        self._repo: Repository | None = None

    @property
    def repo(self) -> Repository:
        """The route's repository; raises NameInvalid for a bad name."""
        if self._repo is None:
            self._repo = self.svc.repositories.get(self.route.name)
        return self._repo

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run blocking storage work in the thread pool."""
        loop = asyncio.get_running_loop()
        call = functools.partial(fn, *args, **kwargs) if kwargs else functools.partial(fn, *args)
        return await loop.run_in_executor(self.svc.executor, call)

    def url(self, path: str) -> str:
        """A Location for ``path``: absolute, like distribution, unless relativeurls is set."""
        path = quote(self.req.root_path + path, safe="/:@?=&%")
        return path if self.svc.relative_urls else self.req.base_url() + path
