"""Authentication for ``ocistore serve``: distribution's ``auth:`` section.

Two access controllers, configured exactly as distribution's:

- ``auth.htpasswd: {realm, path}`` (:mod:`.htpasswd`): HTTP Basic against an
  htpasswd file of bcrypt entries, re-read when the file changes;
- ``auth.token: {realm, service, issuer, rootcertbundle, jwks, autoredirect,
  autoredirectpath, signingalgorithms}`` (:mod:`.token`): Bearer tokens of the
  Docker token specification, signed by a token service the registry trusts.

A controller answers each request with a :class:`~ocistore.server.hooks.Decision`
for the :class:`~ocistore.server.hooks.Access` records the request needs
(:func:`~ocistore.server.hooks.access_for`, distribution's scopes). Verified
credentials and tokens are remembered for a short time, so only the first
request of a client pays for bcrypt or a signature check.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from ocistore.server.config import ConfigError
from ocistore.server.hooks import Access, Decision
from ocistore.server.http import Request

__all__ = ["AccessController", "build_access_controller", "check_auth_section"]

KINDS = ("htpasswd", "token")


class AccessController(Protocol):
    """Decides whether a request's credentials grant the access it needs.

    ``cached`` answers from what was verified before, without waiting: the
    allow decision, or None when :meth:`authorized` must decide (a first
    request, a refusal). The app calls it first, so a repeated credential
    costs no coroutine.
    """

    def cached(self, req: Request, access: Sequence[Access]) -> Decision | None: ...

    async def authorized(self, req: Request, access: Sequence[Access]) -> Decision: ...


def check_auth_section(section: object) -> str:
    """The ``auth:`` section checked (a bad key fails at start, naming it), kept as JSON.

    Exactly one controller may be configured, as in distribution. Files it
    names are read now, so a missing key file or htpasswd fails ``ocistore
    serve`` before it starts rather than at the first request.
    """
    if not isinstance(section, Mapping):
        raise ConfigError("auth", f"expected a mapping, got {type(section).__name__}")
    kinds = [k for k in section if section[k] is not None]
    if not kinds:
        return ""
    if len(kinds) > 1:
        raise ConfigError("auth", f"configure one access controller, not {', '.join(kinds)}")
    kind = kinds[0]
    if kind not in KINDS:
        raise ConfigError(f"auth.{kind}", f"unknown access controller: use {' or '.join(KINDS)}")
    options = section[kind]
    if not isinstance(options, Mapping):
        raise ConfigError(f"auth.{kind}", f"expected a mapping, got {type(options).__name__}")
    doc = {kind: dict(options)}
    build_access_controller(json.dumps(doc, default=str))  # every check happens here
    return json.dumps(doc, sort_keys=True, default=str)


def build_access_controller(auth: str) -> AccessController | None:
    """The controller a checked ``auth`` section (JSON, see :func:`check_auth_section`) names."""
    if not auth:
        return None
    doc: dict[str, Any] = json.loads(auth)
    ((kind, options),) = doc.items()
    if kind == "htpasswd":
        from ocistore.server.auth.htpasswd import HtpasswdController

        return HtpasswdController.from_options(options)
    from ocistore.server.auth.token import TokenController

    return TokenController.from_options(options)
