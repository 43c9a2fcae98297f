"""Matching request paths to the API's resources (distribution ``registry/api/v2/routes.go``).

Repository names may contain ``/``, so each route is the name followed by a
fixed tail; the name part is matched loosely here and validated by the
handler (a bad name is NAME_INVALID, not a 404 page). Routes are tried in
distribution's order, upload routes before the blob route so that
``/v2/a/blobs/uploads/`` is never read as blob ``uploads``.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Final

__all__ = ["Route", "match"]

_NAME: Final = r"(?P<name>[^?#]+?)"

_ROUTES: Final = (
    ("base", re.compile(r"/v2/?")),
    ("catalog", re.compile(r"/v2/_catalog/?")),
    ("tags", re.compile(rf"/v2/{_NAME}/tags/list/?")),
    ("manifest", re.compile(rf"/v2/{_NAME}/manifests/(?P<reference>[^/]+)")),
    ("upload_start", re.compile(rf"/v2/{_NAME}/blobs/uploads/?")),
    ("upload", re.compile(rf"/v2/{_NAME}/blobs/uploads/(?P<uuid>[^/]+)")),
    ("blob", re.compile(rf"/v2/{_NAME}/blobs/(?P<digest>[^/]+)")),
    ("referrers", re.compile(rf"/v2/{_NAME}/referrers/(?P<digest>[^/]+)")),
)


@dataclass(frozen=True, slots=True)
class Route:
    """Which resource a path names, with its name, reference, uuid or digest."""

    kind: str
    name: str = ""
    reference: str = ""
    uuid: str = ""
    digest: str = ""


@functools.lru_cache(maxsize=8192)
def match(path: str) -> Route | None:
    """The route for ``path``, or None (answered with 404 NOT FOUND).

    Cached: clients ask for the same paths again and again (a manifest, a
    blob), and trying the patterns in order costs several regex matches,
    a measurable part of a HEAD or GET. A :class:`Route` is immutable.
    """
    if not path.startswith("/v2"):
        return None
    for kind, pattern in _ROUTES:
        m = pattern.fullmatch(path)
        if m is not None:
            groups = {k: v for k, v in m.groupdict().items() if v is not None}
            return Route(kind, **groups)
    return None
