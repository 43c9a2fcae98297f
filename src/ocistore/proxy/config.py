"""The ``proxy:`` section: distribution's single upstream, or several by repository prefix.

distribution's keys work unchanged (one upstream for every repository)::

    proxy:
      remoteurl: https://registry-1.docker.io
      username: alice            # optional: basic credentials, also used for tokens
      password: s3cr3t
      ttl: 168h                  # how long fetched content stays unless pulled again; 0: forever

ocistore adds ``upstreams``, each for the repositories under a prefix (the
longest matching prefix wins; the prefix is stripped before asking the
upstream), and a few tuning keys::

    proxy:
      upstreams:
        - prefix: docker.io/     # docker.io/library/alpine -> library/alpine upstream
          remoteurl: https://registry-1.docker.io
          ttl: 168h
        - prefix: ghcr.io/
          remoteurl: https://ghcr.io
          username: bot
          password: ghp_...
      interval: 1h               # how often expiry runs (once for all workers of a root)
      timeout: 30s               # no byte from the upstream for this long fails the fetch
      connecttimeout: 10s

A top-level ``remoteurl`` is the upstream of every repository no prefix
matches; without it such a repository is NAME_UNKNOWN. Passwords are never
shown by ``repr`` nor in any error or log line.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Final
from urllib.parse import urlsplit

__all__ = ["DEFAULT_TTL", "ProxyConfig", "ProxyConfigError", "Upstream", "parse_proxy"]

DEFAULT_TTL: Final = 168 * 3600.0
"""distribution's proxy TTL: seven days."""

_UPSTREAM_KEYS: Final = frozenset({"prefix", "remoteurl", "username", "password", "ttl"})
_TOP_KEYS: Final = frozenset(
    {
        "remoteurl",
        "username",
        "password",
        "ttl",
        "upstreams",
        "interval",
        "timeout",
        "connecttimeout",
    }
)


class ProxyConfigError(ValueError):
    """A ``proxy`` value is unusable; ``key`` is its dotted name."""

    def __init__(self, key: str, reason: str) -> None:
        self.key = key
        self.reason = reason
        super().__init__(f"config {key}: {reason}")


@dataclass(frozen=True, slots=True)
class Upstream:
    """One remote registry and the repositories (``prefix``) it serves."""

    remoteurl: str
    prefix: str = ""
    username: str = ""
    password: str = field(default="", repr=False)
    ttl: float = DEFAULT_TTL

    @property
    def host(self) -> str:
        """``scheme://host[:port]`` of the remote, for messages (never with credentials)."""
        u = urlsplit(self.remoteurl)
        return f"{u.scheme}://{u.hostname}" + (f":{u.port}" if u.port else "")

    def remote_name(self, name: str) -> str:
        """The repository name at the upstream (the prefix stripped)."""
        return name[len(self.prefix) :]


@dataclass(frozen=True, slots=True)
class ProxyConfig:
    """Every upstream, the expiry interval and the upstream timeouts (seconds)."""

    upstreams: tuple[Upstream, ...]
    interval: float = 3600.0
    timeout: float = 30.0
    connect_timeout: float = 10.0

    def upstream_for(self, name: str) -> Upstream | None:
        """The upstream of repository ``name`` (longest prefix), or None."""
        best: Upstream | None = None
        for up in self.upstreams:
            longer = best is None or len(up.prefix) > len(best.prefix)
            if name.startswith(up.prefix) and len(name) > len(up.prefix) and longer:
                best = up
        return best

    def to_json(self) -> str:
        """The config as JSON (to hand it to worker processes; holds the passwords)."""
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> ProxyConfig:
        doc = json.loads(text)
        ups = tuple(Upstream(**u) for u in doc.pop("upstreams"))
        return cls(upstreams=ups, **doc)

    def __repr__(self) -> str:
        return f"ProxyConfig(upstreams={self.upstreams!r}, interval={self.interval!r})"


def parse_proxy(section: object, key: str = "proxy") -> ProxyConfig:
    """The ``proxy`` section checked; :class:`ProxyConfigError` names the key and the reason."""
    from ocistore.server.config import ConfigError, parse_duration

    if not isinstance(section, Mapping):
        raise ProxyConfigError(key, f"expected a mapping, got {type(section).__name__}")
    for k in section:
        if k not in _TOP_KEYS:
            raise ProxyConfigError(f"{key}.{k}", f"unknown key; use {', '.join(sorted(_TOP_KEYS))}")

    def duration(value: object, dotted: str) -> float:
        try:
            return parse_duration(value, dotted)
        except ConfigError as exc:
            raise ProxyConfigError(dotted, exc.reason) from None

    upstreams: list[Upstream] = []
    if section.get("remoteurl") is not None:
        upstreams.append(_upstream({**section, "prefix": ""}, key, duration, top=True))
    listed = section.get("upstreams")
    if listed is not None:
        if not isinstance(listed, Sequence) or isinstance(listed, str):
            raise ProxyConfigError(f"{key}.upstreams", "expected a list of upstreams")
        for i, item in enumerate(listed):
            dotted = f"{key}.upstreams[{i}]"
            if not isinstance(item, Mapping):
                raise ProxyConfigError(dotted, "expected a mapping")
            for k in item:
                if k not in _UPSTREAM_KEYS:
                    raise ProxyConfigError(
                        f"{dotted}.{k}", f"unknown key; use {', '.join(sorted(_UPSTREAM_KEYS))}"
                    )
            if not item.get("prefix"):
                raise ProxyConfigError(
                    f"{dotted}.prefix", "missing: the top-level remoteurl is the default upstream"
                )
            upstreams.append(_upstream(item, dotted, duration, top=False))
    if not upstreams:
        raise ProxyConfigError(f"{key}.remoteurl", "missing: set remoteurl or upstreams")
    seen: set[str] = set()
    for up in upstreams:
        if up.prefix in seen:
            raise ProxyConfigError(f"{key}.upstreams", f"prefix {up.prefix!r} is listed twice")
        seen.add(up.prefix)
    opts: dict[str, Any] = {}
    for k, name in (
        ("interval", "interval"),
        ("timeout", "timeout"),
        ("connecttimeout", "connect_timeout"),
    ):
        if section.get(k) is not None:
            seconds = duration(section[k], f"{key}.{k}")
            if not seconds > 0:
                raise ProxyConfigError(f"{key}.{k}", f"{section[k]!r}: must be longer than 0")
            opts[name] = seconds
    return ProxyConfig(upstreams=tuple(upstreams), **opts)


def _upstream(item: Mapping[str, Any], dotted: str, duration: Any, *, top: bool) -> Upstream:
    url = item.get("remoteurl")
    if not isinstance(url, str) or not url:
        raise ProxyConfigError(f"{dotted}.remoteurl", "missing: the upstream's http(s) URL")
    u = urlsplit(url)
    if u.scheme not in ("http", "https") or not u.hostname:
        raise ProxyConfigError(f"{dotted}.remoteurl", f"{url!r} is not an http(s) URL")
    if u.username or u.password:
        raise ProxyConfigError(
            f"{dotted}.remoteurl", "credentials go in username and password, not in the URL"
        )
    prefix = "" if top else item["prefix"]
    if not isinstance(prefix, str) or (prefix and not prefix.endswith("/")):
        raise ProxyConfigError(f"{dotted}.prefix", f"{prefix!r} must end with '/'")
    username = item.get("username") or ""
    password = item.get("password") or ""
    if not isinstance(username, str) or not isinstance(password, str):
        raise ProxyConfigError(f"{dotted}.username", "username and password must be strings")
    if bool(username) != bool(password):
        raise ProxyConfigError(f"{dotted}.password", "give both username and password, or neither")
    ttl = duration(item["ttl"], f"{dotted}.ttl") if item.get("ttl") is not None else DEFAULT_TTL
    return Upstream(
        remoteurl=url.rstrip("/"), prefix=prefix, username=username, password=password, ttl=ttl
    )
