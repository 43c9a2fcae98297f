"""A FastAPI host that embeds ocistore: its own user table, basic auth, the registry mounted.

Run it (README, "Embedding the app in your own web application")::

    EXAMPLE_USERS="alice:wonderland:push,bob:builder:pull" \\
    EXAMPLE_ROOT=./data EXAMPLE_PREFIX=/registry \\
    uvicorn host:app --host 127.0.0.1 --port 5000

The users live in a dict (name -> scrypt hash and role); ``authorize``
checks the ``Authorization: Basic`` header against it and lets a ``pull``
user only pull. The registry is mounted under ``EXAMPLE_PREFIX``; the
host's own routes (``/whoami``) stay beside it. Docker and skopeo always
start at ``/v2/`` on the host, so the host hands ``/v2/...`` to the
registry as if it had come under the prefix: the URLs the registry sends
back (upload Locations) then lead the client under the prefix.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from starlette.types import Receive, Scope, Send

from ocistore.server import create_app
from ocistore.server.hooks import Access, Decision

REALM = 'Basic realm="example host"'


@dataclass(frozen=True)
class User:
    name: str
    salt: bytes
    key: bytes
    can_push: bool


def _scrypt(password: str, salt: bytes) -> bytes:
    return hashlib.scrypt(password.encode(), salt=salt, n=2**14, r=8, p=1)


def make_user(name: str, password: str, role: str) -> User:
    if role not in ("pull", "push"):
        raise ValueError(f"user {name!r}: role {role!r} is neither 'pull' nor 'push'")
    salt = secrets.token_bytes(16)
    return User(name, salt, _scrypt(password, salt), role == "push")


def parse_users(spec: str) -> dict[str, User]:
    """``name:password:role,...`` as a user table (role ``pull`` or ``push``)."""
    users = {}
    for entry in filter(None, spec.split(",")):
        name, password, role = entry.split(":", 2)
        users[name] = make_user(name, password, role)
    return users


def check_basic(users: dict[str, User], header: str | None) -> User | None:
    """The user a ``Basic`` Authorization header proves, or None."""
    if not header or not header.lower().startswith("basic "):
        return None
    try:
        name, _, password = base64.b64decode(header[6:], validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user = users.get(name)
    if user is None or not hmac.compare_digest(_scrypt(password, user.salt), user.key):
        return None
    return user


def make_host(users: dict[str, User], root: str, prefix: str, secret: str) -> FastAPI:
    def authorize(scope: dict[str, Any], access: Sequence[Access]) -> Decision:
        header = next((v.decode() for k, v in scope["headers"] if k == b"authorization"), None)
        user = check_basic(users, header)
        if user is None:
            return Decision.unauthorized(REALM)
        if not user.can_push and any(a.action != "pull" for a in access):
            return Decision.forbidden(f"{user.name} may only pull")
        return Decision.allow(user.name)

    host = FastAPI()

    @host.get("/whoami")
    def whoami(request: Request) -> dict[str, str | None]:
        user = check_basic(users, request.headers.get("authorization"))
        return {"user": user.name if user else None}

    registry = create_app(root=root, secret=secret, authorize=authorize)
    host.mount(prefix, registry)
    if prefix:

        async def v2_at_the_root(scope: Scope, receive: Receive, send: Send) -> None:
            await registry(
                {**scope, "root_path": prefix, "path": prefix + scope["path"]}, receive, send
            )

        host.mount("/v2", v2_at_the_root)
    return host


if "EXAMPLE_ROOT" in os.environ:
    app = make_host(
        parse_users(os.environ.get("EXAMPLE_USERS", "")),
        root=os.environ["EXAMPLE_ROOT"],
        prefix=os.environ.get("EXAMPLE_PREFIX", "/registry"),
        secret=os.environ.get("EXAMPLE_SECRET") or secrets.token_hex(16),
    )
