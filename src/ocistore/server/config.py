"""``ocistore serve`` configuration: distribution's config.yml keys, then flags on top.

A distribution ``config.yml`` limited to the keys below works unchanged::

    version: 0.1
    log: {level: info, accesslog: {disabled: true}, formatter: text | json | logstash,
          fields: {service: registry}}
    health: {storagedriver: {enabled: false, interval: 10s, threshold: 1,
                             timeout: 10s}}   # timeout: ocistore's (default: interval)
    storage:
      filesystem: {rootdirectory: /var/lib/registry}
      # or, instead of filesystem, distribution's S3 driver keys:
      # s3: {region: us-east-1, bucket: registry, regionendpoint: http://127.0.0.1:9000,
      #      rootdirectory: /r, accesskey: …, secretkey: …, chunksize: 10485760, …}
      delete: {enabled: true}
      redirect: {disable: false}             # blob GETs answer 307 to S3 (s3 only)
      cache: {blobdescriptor: lmdb | inmemory | redis}
      maintenance:
        uploadpurging: {enabled: true, age: 168h, interval: 24h, dryrun: false}
        gc: {enabled: false, interval: 24h, deleteuntagged: false, dryrun: false, grace: 1h}
        readonly: {enabled: false}           # refuse writes (405); SIGHUP re-reads it
    http: {addr: 127.0.0.1:5000, secret: s3cr3t, relativeurls: false,
           debug: {addr: 127.0.0.1:5001, prometheus: {enabled: false, path: /metrics}}}
    auth:                                    # one of (see ocistore.server.auth):
      htpasswd: {realm: my-registry, path: /etc/ocistore/htpasswd}
      # token: {realm: https://auth.example/token, service: my-registry,
      #         issuer: my-auth, rootcertbundle: /etc/ocistore/token.pem, jwks: …}
    redis:                                   # for blobdescriptor: redis
      addr: 127.0.0.1:6379
      password: ""
      db: 0
      dialtimeout: 1s
      readtimeout: 1s
      writetimeout: 1s
      pool: {maxidle: 16, maxactive: 64, idletimeout: 300s}
      tls: {enabled: false, certificate: "", key: "", rootcas: []}

With ``storage.s3`` the blobs live in the bucket and ``rootdirectory`` (or
``--root``) only holds this host's local state (locks, the LMDB cache).
Any other key is reported (one warning listing every dotted key) and has no
effect: a setting that silently does nothing is worse than a loud one.
A ``proxy:`` section (distribution's ``remoteurl``, ``username``, ``password``,
``ttl``, plus ocistore's ``upstreams`` by repository prefix) makes the server a
pull-through cache; see :mod:`ocistore.proxy.config`.
ocistore's own keys live under ``ocistore:`` (``workers``, ``idletimeout``,
``maxblobsize``, ``cachedir``, ``redirectexpiry``: the lifetime of redirect
URLs, 20m by default, ``stack``: the HTTP server, ``ocistore`` by default
or ``granian``, ``uploadlocks``: ``auto``, ``local`` or ``redis``, and
``uploadlockttl``, see :mod:`ocistore.server.locks`, and ``limits``, see
:mod:`ocistore.server.limits`). ``http.tls`` serves HTTPS
(:mod:`ocistore.server.tls`). Durations take Go's syntax (``168h``, ``1h30m``,
``500ms``) or seconds as a number.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import secrets
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Final

from ocistore.cache.redis import RedisOptions
from ocistore.driver.base import DEFAULT_URL_EXPIRY, MAX_URL_EXPIRY
from ocistore.server.health import StorageDriverHealth
from ocistore.server.limits import LIMIT_KEYS, HTTPLimits, LimitError, parse_limits
from ocistore.server.tls import TLSError, TLSOptions, parse_tls

__all__ = [
    "ConfigError",
    "GcSchedule",
    "ServerConfig",
    "UploadPurging",
    "load_config",
    "parse_duration",
    "parse_size",
    "unknown_keys",
]

DEFAULT_ROOT: Final = "./data"
DEFAULT_ADDR: Final = "127.0.0.1:5000"
CACHE_DIRNAME: Final = "ocistore-cache"
LOCK_DIRNAME: Final = "ocistore-locks"
NOTIFICATIONS_DIRNAME: Final = "ocistore-notifications"
LOG_LEVELS: Final = ("debug", "info", "warn", "warning", "error", "critical")
LOG_FORMATTERS: Final = ("text", "json", "logstash")
UPLOAD_LOCKS: Final = ("auto", "local", "redis")
"""Where upload locks live (``auto``: Redis with S3 and a ``redis:`` block, else local)."""
STACKS: Final = ("ocistore", "granian")
"""HTTP servers ``ocistore serve`` can run the app on (see :mod:`ocistore.server.run`)."""


class ConfigError(ValueError):
    """A configuration value is unusable; ``key`` is its dotted name."""

    def __init__(self, key: str, reason: str) -> None:
        self.key = key
        self.reason = reason
        super().__init__(f"config {key}: {reason}")


@dataclass(frozen=True, slots=True)
class UploadPurging:
    """distribution's ``storage.maintenance.uploadpurging`` (its defaults)."""

    enabled: bool = True
    age: float = 168 * 3600.0
    interval: float = 24 * 3600.0
    dryrun: bool = False


@dataclass(frozen=True, slots=True)
class GcSchedule:
    """``storage.maintenance.gc`` (ocistore's): collect once per interval for the whole root.

    ``grace``: blobs and links younger than this are never swept; ``settle``:
    the wait between announcing a collection and marking (docs/gc.md).
    """

    enabled: bool = False
    interval: float = 24 * 3600.0
    deleteuntagged: bool = False
    dryrun: bool = False
    grace: float = 3600.0
    settle: float = 5.0


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """Everything ``ocistore serve`` needs; every field has a working default."""

    root: str = DEFAULT_ROOT
    addr: str = DEFAULT_ADDR
    secret: str = ""
    delete_enabled: bool = False
    cache: str = "lmdb"  # lmdb | inmemory | redis | none
    redis: RedisOptions | None = None  # the redis: block (needed by cache "redis")
    cache_dir: str = ""  # default <root>/ocistore-cache
    log_level: str = "info"
    access_log: bool = False
    relative_urls: bool = False
    workers: int = 1
    stack: str = "ocistore"
    idle_timeout: float = 60.0
    max_blob_size: int = 0  # 0: no limit
    upload_purging: UploadPurging = field(default_factory=UploadPurging)
    gc: GcSchedule = field(default_factory=GcSchedule)
    s3: str = ""  # storage.s3 as JSON (checked by parse_s3_options); empty: filesystem
    # storage.redirect.disable; only a driver with url_for (S3) redirects at all
    redirect_disable: bool = False
    redirect_expiry: float = DEFAULT_URL_EXPIRY  # ocistore.redirectexpiry, seconds
    upload_locks: str = "auto"  # auto | local | redis (ocistore.uploadlocks)
    upload_lock_ttl: float = 30.0  # seconds (ocistore.uploadlockttl)
    # notifications as JSON (checked by ocistore.server.notifications.parse_endpoints)
    notifications: str = ""
    notifications_dir: str = ""  # default <root>/ocistore-notifications
    notifications_max_events: int = 100_000  # per endpoint (ocistore.notificationsmaxevents)
    # Observability (issue 15): distribution's debug server, health checks, log format.
    debug_addr: str = ""  # http.debug.addr; empty: no debug server
    prometheus: bool = False  # http.debug.prometheus.enabled
    prometheus_path: str = "/metrics"  # http.debug.prometheus.path
    health: StorageDriverHealth = field(default_factory=StorageDriverHealth)
    log_formatter: str = "text"  # log.formatter: text | json | logstash
    log_fields: str = ""  # log.fields as JSON
    tls: TLSOptions | None = None  # http.tls (ocistore.server.tls); None: plain HTTP
    limits: HTTPLimits = field(default_factory=HTTPLimits)  # ocistore.limits
    # proxy: as JSON (ocistore.proxy.config.ProxyConfig); empty: not a proxy. Holds passwords.
    proxy: str = field(default="", repr=False)
    auth: str = ""  # the auth: section as JSON (checked by ocistore.server.auth); empty: none
    readonly: bool = False  # storage.maintenance.readonly.enabled

    @property
    def redis_upload_locks(self) -> bool:
        """Whether upload locks live in Redis: ``redis``, or ``auto`` with S3 and a redis block."""
        if self.upload_locks == "auto":
            return self.s3 != "" and self.redis is not None
        return self.upload_locks == "redis"

    @property
    def s3_params(self) -> dict[str, Any] | None:
        """The ``storage.s3`` mapping, or None when blobs are on the filesystem."""
        if not self.s3:
            return None
        params: dict[str, Any] = json.loads(self.s3)
        return params

    @property
    def host(self) -> str:
        return split_addr(self.addr)[0]

    @property
    def port(self) -> int:
        return split_addr(self.addr)[1]

    @property
    def cache_path(self) -> str:
        return self.cache_dir or os.path.join(self.root, CACHE_DIRNAME)

    @property
    def notifications_path(self) -> str:
        return self.notifications_dir or os.path.join(self.root, NOTIFICATIONS_DIRNAME)

    @property
    def lock_dir(self) -> str:
        return os.path.join(self.root, LOCK_DIRNAME)

    def with_secret(self) -> ServerConfig:
        """This config with a random secret if none was set (as distribution does).

        Generated once in the parent so that every worker signs with the same one.
        """
        return self if self.secret else replace(self, secret=secrets.token_urlsafe(32))

    def to_env(self) -> dict[str, str]:
        """Flat string form, to hand the config to worker processes (see :func:`from_env`)."""
        p = self.upload_purging
        return {
            "root": self.root,
            "addr": self.addr,
            "secret": self.secret,
            "delete_enabled": str(int(self.delete_enabled)),
            "cache": self.cache,
            "cache_dir": self.cache_dir,
            "redis": json.dumps(dataclasses.asdict(self.redis)) if self.redis else "",
            "log_level": self.log_level,
            "access_log": str(int(self.access_log)),
            "relative_urls": str(int(self.relative_urls)),
            "workers": str(self.workers),
            "stack": self.stack,
            "idle_timeout": repr(self.idle_timeout),
            "max_blob_size": str(self.max_blob_size),
            "purge_enabled": str(int(p.enabled)),
            "purge_age": repr(p.age),
            "purge_interval": repr(p.interval),
            "purge_dryrun": str(int(p.dryrun)),
            "s3": self.s3,
            "redirect_disable": str(int(self.redirect_disable)),
            "redirect_expiry": repr(self.redirect_expiry),
            "upload_locks": self.upload_locks,
            "upload_lock_ttl": repr(self.upload_lock_ttl),
            "notifications": self.notifications,
            "notifications_dir": self.notifications_dir,
            "notifications_max_events": str(self.notifications_max_events),
            "log_formatter": self.log_formatter,
            "log_fields": self.log_fields,
            "debug_addr": self.debug_addr,
            "prometheus": str(int(self.prometheus)),
            "prometheus_path": self.prometheus_path,
            "health": json.dumps(dataclasses.asdict(self.health)),
            "tls": json.dumps(self.tls.to_json()) if self.tls else "",
            "limits": json.dumps(dataclasses.asdict(self.limits)),
            "proxy": self.proxy,
            "auth": self.auth,
            "readonly": str(int(self.readonly)),
            "gc": json.dumps(dataclasses.asdict(self.gc)),
        }

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> ServerConfig:
        return cls(
            root=env["root"],
            addr=env["addr"],
            secret=env["secret"],
            delete_enabled=env["delete_enabled"] == "1",
            cache=env["cache"],
            cache_dir=env["cache_dir"],
            redis=RedisOptions(**json.loads(env["redis"])) if env.get("redis") else None,
            log_level=env["log_level"],
            access_log=env["access_log"] == "1",
            relative_urls=env["relative_urls"] == "1",
            workers=int(env["workers"]),
            stack=env["stack"],
            idle_timeout=float(env["idle_timeout"]),
            max_blob_size=int(env["max_blob_size"]),
            upload_purging=UploadPurging(
                enabled=env["purge_enabled"] == "1",
                age=float(env["purge_age"]),
                interval=float(env["purge_interval"]),
                dryrun=env["purge_dryrun"] == "1",
            ),
            s3=env.get("s3", ""),
            redirect_disable=env.get("redirect_disable") == "1",
            redirect_expiry=float(env.get("redirect_expiry") or DEFAULT_URL_EXPIRY),
            upload_locks=env.get("upload_locks", "auto"),
            upload_lock_ttl=float(env.get("upload_lock_ttl", "30.0")),
            notifications=env.get("notifications", ""),
            notifications_dir=env.get("notifications_dir", ""),
            notifications_max_events=int(env.get("notifications_max_events", "100000")),
            log_formatter=env.get("log_formatter", "text"),
            log_fields=env.get("log_fields", ""),
            debug_addr=env.get("debug_addr", ""),
            prometheus=env.get("prometheus") == "1",
            prometheus_path=env.get("prometheus_path", "/metrics"),
            health=StorageDriverHealth(**json.loads(env["health"]))
            if env.get("health")
            else StorageDriverHealth(),
            tls=_tls_from_env(env.get("tls", "")),
            limits=HTTPLimits(**json.loads(env["limits"])) if env.get("limits") else HTTPLimits(),
            proxy=env.get("proxy", ""),
            auth=env.get("auth", ""),
            readonly=env.get("readonly") == "1",
            gc=GcSchedule(**json.loads(env["gc"])) if env.get("gc") else GcSchedule(),
        )


def _tls_from_env(raw: str) -> TLSOptions | None:
    if not raw:
        return None
    doc = json.loads(raw)
    return TLSOptions(
        certificate=doc["certificate"],
        key=doc["key"],
        clientcas=tuple(doc["clientcas"]),
        minimumtls=doc["minimumtls"],
    )


def split_addr(addr: str) -> tuple[str, int]:
    """``host:port`` (``:5000`` means all interfaces, as Go's net.Listen reads it)."""
    host, sep, port = addr.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError("http.addr", f"{addr!r} is not host:port")
    host = host.strip("[]") or "0.0.0.0"
    return host, int(port)


_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNIT_SECONDS: Final = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}


def parse_duration(value: object, key: str = "duration") -> float:
    """Seconds from Go's duration syntax (``168h``, ``1h30m``, ``250ms``) or a number."""
    if isinstance(value, bool):
        raise ConfigError(key, f"{value!r} is not a duration")
    if isinstance(value, int | float):
        if value < 0:
            raise ConfigError(key, f"{value!r} is negative")
        return float(value)
    if not isinstance(value, str) or not value:
        raise ConfigError(key, f"{value!r} is not a duration")
    text = value.strip()
    if text == "0":
        return 0.0
    pos, total = 0, 0.0
    while pos < len(text):
        m = _DURATION_PART.match(text, pos)
        if m is None:
            raise ConfigError(key, f"{value!r} is not a duration like 168h, 1h30m or 500ms")
        total += float(m.group(1)) * _UNIT_SECONDS[m.group(2)]
        pos = m.end()
    return total


_SIZE = re.compile(r"(\d+)\s*([kmgt]i?b?|b)?", re.IGNORECASE)


def parse_size(value: object, key: str = "size") -> int:
    """Bytes from ``1073741824``, ``512M``, ``1GiB`` (binary multiples)."""
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0:
            raise ConfigError(key, f"{value!r} is negative")
        return value
    m = _SIZE.fullmatch(value.strip()) if isinstance(value, str) else None
    if m is None:
        raise ConfigError(key, f"{value!r} is not a size like 1073741824, 512M or 1GiB")
    unit = (m.group(2) or "b")[0].lower()
    return int(m.group(1)) << {"b": 0, "k": 10, "m": 20, "g": 30, "t": 40}[unit]


def _bool(value: object, key: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
        return value.lower() in ("true", "yes", "1")
    raise ConfigError(key, f"{value!r} is not a boolean")


def _str(value: object, key: str) -> str:
    if isinstance(value, str | int | float) and not isinstance(value, bool):
        return str(value)
    raise ConfigError(key, f"{value!r} is not a string")


# The keys ocistore reads; a dict value means "a section", None means "a leaf we accept".
_KNOWN: Final[dict[str, Any]] = {
    "version": None,
    "log": {"level": None, "accesslog": {"disabled": None}, "formatter": None, "fields": None},
    "health": {
        "storagedriver": {"enabled": None, "interval": None, "threshold": None, "timeout": None}
    },
    "storage": {
        "filesystem": {"rootdirectory": None},
        "s3": None,  # checked as a whole by ocistore.driver.s3_options
        "delete": {"enabled": None},
        "redirect": {"disable": None},
        "cache": {"blobdescriptor": None},
        "maintenance": {
            "uploadpurging": {"enabled": None, "age": None, "interval": None, "dryrun": None},
            "readonly": {"enabled": None},
            "gc": {
                "enabled": None,
                "interval": None,
                "deleteuntagged": None,
                "dryrun": None,
                "grace": None,
                "settle": None,
            },
        },
    },
    "http": {
        "addr": None,
        "secret": None,
        "relativeurls": None,
        "debug": {"addr": None, "prometheus": {"enabled": None, "path": None}},
        "tls": {"certificate": None, "key": None, "clientcas": None, "minimumtls": None},
    },
    "auth": None,  # checked as a whole by ocistore.server.auth
    "redis": {
        "addr": None,
        "password": None,
        "db": None,
        "dialtimeout": None,
        "readtimeout": None,
        "writetimeout": None,
        "pool": {"maxidle": None, "maxactive": None, "idletimeout": None},
        "tls": {"enabled": None, "certificate": None, "key": None, "rootcas": None},
    },
    "ocistore": {
        "workers": None,
        "idletimeout": None,
        "maxblobsize": None,
        "cachedir": None,
        "redirectexpiry": None,
        "stack": None,
        "uploadlocks": None,
        "uploadlockttl": None,
        "notificationsdir": None,
        "notificationsmaxevents": None,
        "limits": dict.fromkeys(LIMIT_KEYS),
    },
    "notifications": {"endpoints": None, "events": {"includereferences": None}},
    "proxy": None,  # checked as a whole by ocistore.proxy.config
}


def unknown_keys(doc: Mapping[str, Any]) -> list[str]:
    """Every dotted key of ``doc`` that ocistore does not read, in document order."""
    return list(_walk_unknown(doc, _KNOWN, ""))


def _walk_unknown(doc: Mapping[str, Any], known: Mapping[str, Any], prefix: str) -> Iterator[str]:
    for key, value in doc.items():
        dotted = f"{prefix}{key}"
        if key not in known:
            yield dotted
            continue
        sub = known[key]
        if isinstance(sub, dict):
            if isinstance(value, Mapping):
                yield from _walk_unknown(value, sub, dotted + ".")
            elif value is not None:
                yield dotted  # a scalar where a section belongs: not something we read


def _get(doc: Mapping[str, Any], dotted: str) -> Any:
    cur: Any = doc
    for part in dotted.split("."):
        if not isinstance(cur, Mapping) or part not in cur:
            return None
        cur = cur[part]
    return cur


def config_from_mapping(doc: Mapping[str, Any], base: ServerConfig | None = None) -> ServerConfig:
    """Apply the keys of a parsed config document over ``base`` (defaults when None)."""
    cfg = base or ServerConfig()
    changes: dict[str, Any] = {}
    if (v := _get(doc, "storage.filesystem.rootdirectory")) is not None:
        changes["root"] = _str(v, "storage.filesystem.rootdirectory")
    if (v := _get(doc, "storage.s3")) is not None:
        changes["s3"] = _s3(v, filesystem=_get(doc, "storage.filesystem") is not None)
    if (v := _get(doc, "storage.delete.enabled")) is not None:
        changes["delete_enabled"] = _bool(v, "storage.delete.enabled")
    if (v := _get(doc, "storage.redirect.disable")) is not None:
        changes["redirect_disable"] = _bool(v, "storage.redirect.disable")
    if (v := _get(doc, "ocistore.redirectexpiry")) is not None:
        changes["redirect_expiry"] = _redirect_expiry(v, "ocistore.redirectexpiry")
    if (v := _get(doc, "storage.cache.blobdescriptor")) is not None:
        changes["cache"] = _cache_kind(_str(v, "storage.cache.blobdescriptor"))
    if (v := _get(doc, "http.addr")) is not None:
        addr = _str(v, "http.addr")
        split_addr(addr)
        changes["addr"] = addr
    if (v := _get(doc, "http.secret")) is not None:
        changes["secret"] = _str(v, "http.secret")
    if (v := _get(doc, "http.relativeurls")) is not None:
        changes["relative_urls"] = _bool(v, "http.relativeurls")
    if (v := _get(doc, "log.level")) is not None:
        changes["log_level"] = _log_level(_str(v, "log.level"))
    if (v := _get(doc, "log.accesslog.disabled")) is not None:
        changes["access_log"] = not _bool(v, "log.accesslog.disabled")
    if (v := _get(doc, "ocistore.workers")) is not None:
        changes["workers"] = _workers(v)
    if (v := _get(doc, "ocistore.stack")) is not None:
        changes["stack"] = _stack(_str(v, "ocistore.stack"))
    if (v := _get(doc, "ocistore.idletimeout")) is not None:
        changes["idle_timeout"] = parse_duration(v, "ocistore.idletimeout")
    if (v := _get(doc, "ocistore.maxblobsize")) is not None:
        changes["max_blob_size"] = parse_size(v, "ocistore.maxblobsize")
    if (v := _get(doc, "ocistore.cachedir")) is not None:
        changes["cache_dir"] = _str(v, "ocistore.cachedir")
    if (v := _get(doc, "ocistore.uploadlocks")) is not None:
        changes["upload_locks"] = _upload_locks(v)
    if (v := _get(doc, "ocistore.uploadlockttl")) is not None:
        changes["upload_lock_ttl"] = _lock_ttl(v)
    if (v := _get(doc, "notifications")) is not None:
        changes["notifications"] = _notifications(v)
    if (v := _get(doc, "ocistore.notificationsdir")) is not None:
        changes["notifications_dir"] = _str(v, "ocistore.notificationsdir")
    if (v := _get(doc, "ocistore.notificationsmaxevents")) is not None:
        k = "ocistore.notificationsmaxevents"
        if (n := _count(v, k)) < 1:
            raise ConfigError(k, "a queue must hold at least one event")
        changes["notifications_max_events"] = n
    if (v := _get(doc, "proxy")) is not None:
        changes["proxy"] = _proxy(v)
    if isinstance(section := _get(doc, "redis"), Mapping):
        changes["redis"] = _redis(section)
    if (v := _get(doc, "http.tls")) is not None:
        try:
            changes["tls"] = parse_tls(v)
        except TLSError as exc:
            raise ConfigError(exc.key, exc.reason) from None
    if (v := _get(doc, "ocistore.limits")) is not None:
        try:
            changes["limits"] = parse_limits(v, cfg.limits)
        except LimitError as exc:
            raise ConfigError(exc.key, exc.reason) from None
    if (v := _get(doc, "auth")) is not None:
        from ocistore.server.auth import check_auth_section

        changes["auth"] = check_auth_section(v)
    if (v := _get(doc, "storage.maintenance.readonly.enabled")) is not None:
        changes["readonly"] = _bool(v, "storage.maintenance.readonly.enabled")
    purge = _get(doc, "storage.maintenance.uploadpurging")
    if isinstance(purge, Mapping):
        p = cfg.upload_purging
        k = "storage.maintenance.uploadpurging."
        changes["upload_purging"] = UploadPurging(
            enabled=_bool(purge["enabled"], k + "enabled") if "enabled" in purge else p.enabled,
            age=parse_duration(purge["age"], k + "age") if "age" in purge else p.age,
            interval=(
                parse_duration(purge["interval"], k + "interval")
                if "interval" in purge
                else p.interval
            ),
            dryrun=_bool(purge["dryrun"], k + "dryrun") if "dryrun" in purge else p.dryrun,
        )
    changes.update(_observability(doc, cfg))
    gc = _get(doc, "storage.maintenance.gc")
    if isinstance(gc, Mapping):
        changes["gc"] = _gc_schedule(gc, cfg.gc)
    cfg = replace(cfg, **changes)
    if cfg.cache == "redis" and cfg.redis is None:
        raise ConfigError("redis.addr", "storage.cache.blobdescriptor is redis: set redis.addr")
    if cfg.upload_locks == "redis" and cfg.redis is None:
        raise ConfigError("redis.addr", "ocistore.uploadlocks is redis: set redis.addr")
    return cfg


def _notifications(value: object) -> str:
    """The ``notifications`` section, checked now and kept as JSON for the workers."""
    from ocistore.server.notifications import (
        NotificationsError,
        include_references,
        parse_endpoints,
    )

    try:
        include_references(value)
        parse_endpoints(value)
    except NotificationsError as exc:
        raise ConfigError(exc.key, exc.reason) from None
    return json.dumps(value)


def _observability(doc: Mapping[str, Any], cfg: ServerConfig) -> dict[str, Any]:
    """``http.debug``, ``health.storagedriver``, ``log.formatter`` and ``log.fields``."""
    changes: dict[str, Any] = {}
    if (v := _get(doc, "http.debug.addr")) is not None:
        addr = _str(v, "http.debug.addr")
        if addr:
            try:
                split_addr(addr)
            except ConfigError:
                raise ConfigError("http.debug.addr", f"{addr!r} is not host:port") from None
        changes["debug_addr"] = addr
    if (v := _get(doc, "http.debug.prometheus.enabled")) is not None:
        changes["prometheus"] = _bool(v, "http.debug.prometheus.enabled")
    if (v := _get(doc, "http.debug.prometheus.path")) is not None:
        path = _str(v, "http.debug.prometheus.path")
        if not path.startswith("/") or path == "/debug/health":
            raise ConfigError(
                "http.debug.prometheus.path", f"{path!r}: must be a path like /metrics"
            )
        changes["prometheus_path"] = path
    hc = _get(doc, "health.storagedriver")
    if isinstance(hc, Mapping):
        k = "health.storagedriver."
        h = cfg.health
        threshold = _count(hc["threshold"], k + "threshold") if "threshold" in hc else h.threshold
        interval = (
            parse_duration(hc["interval"], k + "interval") if "interval" in hc else h.interval
        )
        if interval <= 0:
            raise ConfigError(k + "interval", f"{hc.get('interval')!r}: must be longer than 0")
        timeout = parse_duration(hc["timeout"], k + "timeout") if "timeout" in hc else h.timeout
        if timeout is not None and timeout <= 0:
            raise ConfigError(k + "timeout", f"{hc.get('timeout')!r}: must be longer than 0")
        changes["health"] = StorageDriverHealth(
            enabled=_bool(hc["enabled"], k + "enabled") if "enabled" in hc else h.enabled,
            interval=interval,
            threshold=max(threshold, 1),  # distribution's 0 also fails at the first error
            timeout=timeout,
        )
    if (v := _get(doc, "log.formatter")) is not None:
        kind = _str(v, "log.formatter").lower()
        if kind not in LOG_FORMATTERS:
            raise ConfigError("log.formatter", f"{v!r}: use one of {', '.join(LOG_FORMATTERS)}")
        changes["log_formatter"] = kind
    if (v := _get(doc, "log.fields")) is not None:
        if not isinstance(v, Mapping):
            raise ConfigError("log.fields", f"expected a mapping of names to values, got {v!r}")
        changes["log_fields"] = json.dumps({str(key): val for key, val in v.items()}, default=str)
    return changes


def _proxy(value: object) -> str:
    """``proxy`` checked now (a bad key fails at start, naming it) and kept as JSON."""
    from ocistore.proxy.config import ProxyConfig, ProxyConfigError, parse_proxy

    if isinstance(value, ProxyConfig):
        return value.to_json()
    try:
        return parse_proxy(value).to_json()
    except ProxyConfigError as exc:
        raise ConfigError(exc.key, exc.reason) from None


def _gc_schedule(section: Mapping[str, Any], base: GcSchedule) -> GcSchedule:
    k = "storage.maintenance.gc."
    out = GcSchedule(
        enabled=_bool(section["enabled"], k + "enabled") if "enabled" in section else base.enabled,
        interval=(
            parse_duration(section["interval"], k + "interval")
            if "interval" in section
            else base.interval
        ),
        deleteuntagged=(
            _bool(section["deleteuntagged"], k + "deleteuntagged")
            if "deleteuntagged" in section
            else base.deleteuntagged
        ),
        dryrun=_bool(section["dryrun"], k + "dryrun") if "dryrun" in section else base.dryrun,
        grace=parse_duration(section["grace"], k + "grace") if "grace" in section else base.grace,
        settle=(
            parse_duration(section["settle"], k + "settle") if "settle" in section else base.settle
        ),
    )
    if out.interval <= 0:
        raise ConfigError(k + "interval", f"must be positive, got {out.interval}")
    if out.grace < 0:
        raise ConfigError(k + "grace", f"must be >= 0, got {out.grace}")
    return out


def _upload_locks(value: object) -> str:
    kind = _str(value, "ocistore.uploadlocks").lower()
    if kind not in UPLOAD_LOCKS:
        raise ConfigError("ocistore.uploadlocks", f"{value!r}: use {', '.join(UPLOAD_LOCKS)}")
    return kind


def _lock_ttl(value: object) -> float:
    ttl = parse_duration(value, "ocistore.uploadlockttl")
    if not ttl > 0:
        raise ConfigError("ocistore.uploadlockttl", f"{value!r}: must be longer than 0")
    return ttl


def _s3(value: object, *, filesystem: bool) -> str:
    """``storage.s3`` checked now (a bad key fails at start, naming it) and kept as JSON."""
    from ocistore.driver.s3_options import S3OptionsError, parse_s3_options

    if filesystem:
        raise ConfigError("storage", "configure one driver: filesystem or s3, not both")
    if not isinstance(value, Mapping):
        raise ConfigError("storage.s3", f"expected a mapping, got {type(value).__name__}")
    try:
        parse_s3_options(value)
    except S3OptionsError as exc:
        raise ConfigError(exc.key, exc.reason) from None
    return json.dumps(dict(value), sort_keys=True, default=str)


def _redirect_expiry(value: object, key: str) -> float:
    """A redirect URL lifetime: a duration from 1s to 7 days (the most S3 signs)."""
    seconds = parse_duration(value, key)
    if not 1 <= seconds <= MAX_URL_EXPIRY:
        raise ConfigError(key, f"{value!r} is outside 1s .. 168h (what S3 presigns)")
    return seconds


def _cache_kind(value: str) -> str:
    kind = value.lower()
    if kind not in ("lmdb", "inmemory", "redis", "none"):
        raise ConfigError(
            "storage.cache.blobdescriptor", f"{value!r}: use lmdb, inmemory, redis or none"
        )
    return kind


def _redis(section: Mapping[str, Any]) -> RedisOptions:
    """distribution's ``redis:`` block; a key left out keeps :class:`RedisOptions`' default."""
    fields: dict[str, Any] = {}
    if "addr" not in section:
        raise ConfigError("redis.addr", "missing: the redis block needs host:port")
    fields["addr"] = _str(section["addr"], "redis.addr")
    if section.get("password") is not None:
        fields["password"] = _str(section["password"], "redis.password")
    if section.get("db") is not None:
        fields["db"] = _count(section["db"], "redis.db")
    for key, name in (
        ("dialtimeout", "dial_timeout"),
        ("readtimeout", "read_timeout"),
        ("writetimeout", "write_timeout"),
    ):
        if section.get(key) is not None:
            fields[name] = parse_duration(section[key], f"redis.{key}")
    pool = section.get("pool")
    if isinstance(pool, Mapping):
        for key, name in (("maxidle", "max_idle"), ("maxactive", "max_active")):
            if pool.get(key) is not None:
                fields[name] = _count(pool[key], f"redis.pool.{key}")
        if pool.get("idletimeout") is not None:
            fields["idle_timeout"] = parse_duration(pool["idletimeout"], "redis.pool.idletimeout")
    tls = section.get("tls")
    if isinstance(tls, Mapping):
        if tls.get("enabled") is not None:
            fields["tls"] = _bool(tls["enabled"], "redis.tls.enabled")
        for key, name in (("certificate", "tls_certificate"), ("key", "tls_key")):
            if tls.get(key) is not None:
                fields[name] = _str(tls[key], f"redis.tls.{key}")
        cas = tls.get("rootcas")
        if cas is not None:
            if not isinstance(cas, list):
                raise ConfigError("redis.tls.rootcas", f"{cas!r} is not a list of files")
            fields["tls_root_cas"] = tuple(_str(c, "redis.tls.rootcas") for c in cas)
        for key, name in (("certificate", "tls_certificate"), ("key", "tls_key")):
            if fields.get(name) and not os.path.isfile(fields[name]):
                raise ConfigError(f"redis.tls.{key}", f"{fields[name]!r}: no such file")
        for path in fields.get("tls_root_cas", ()):
            if not os.path.isfile(path):
                raise ConfigError("redis.tls.rootcas", f"{path!r}: no such file")
    try:
        return RedisOptions(**fields)
    except ValueError as exc:
        raise ConfigError("redis", str(exc)) from None


def _count(value: object, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ConfigError(key, f"{value!r} is not a number")
    try:
        n = int(value)
    except ValueError:
        raise ConfigError(key, f"{value!r} is not a number") from None
    if n < 0:
        raise ConfigError(key, f"{n} is negative")
    return n


def _log_level(value: str) -> str:
    level = value.lower()
    if level not in LOG_LEVELS:
        raise ConfigError("log.level", f"{value!r}: use one of {', '.join(LOG_LEVELS)}")
    return level


def _stack(value: str) -> str:
    stack = value.lower()
    if stack not in STACKS:
        raise ConfigError("ocistore.stack", f"{value!r}: use one of {', '.join(STACKS)}")
    return stack


def _workers(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ConfigError("ocistore.workers", f"{value!r} is not a number")
    try:
        n = int(value)
    except ValueError:
        raise ConfigError("ocistore.workers", f"{value!r} is not a number") from None
    if n < 1:
        raise ConfigError("ocistore.workers", f"{n} must be at least 1")
    return n


def load_config(path: str | os.PathLike[str]) -> tuple[ServerConfig, list[str]]:
    """Read a YAML config file; returns the config and the unknown dotted keys."""
    import yaml

    with open(path, encoding="utf-8") as f:
        try:
            doc = yaml.safe_load(f)
        except yaml.YAMLError as exc:
            raise ConfigError("(file)", f"{os.fspath(path)} is not valid YAML: {exc}") from None
        except UnicodeDecodeError as exc:  # found by tests/fuzz/fuzz_config.py
            raise ConfigError(
                "(file)", f"{os.fspath(path)} is not UTF-8 text: {exc.reason} at byte {exc.start}"
            ) from None
    if doc is None:
        doc = {}
    if not isinstance(doc, Mapping):
        raise ConfigError("(file)", f"{os.fspath(path)} must hold a mapping at the top level")
    return config_from_mapping(doc), unknown_keys(doc)


def apply_overrides(cfg: ServerConfig, **flags: Any) -> ServerConfig:
    """Command-line flags over the file: every flag that was given (not None) wins."""
    changes: dict[str, Any] = {}
    for name, value in flags.items():
        if value is None:
            continue
        if name == "addr":
            split_addr(value)
        elif name == "cache":
            value = _cache_kind(value)
        elif name == "log_level":
            value = _log_level(value)
        elif name == "workers":
            value = _workers(value)
        elif name == "stack":
            value = _stack(value)
        elif name == "max_blob_size":
            value = parse_size(value, "--max-blob-size")
        elif name == "idle_timeout":
            value = parse_duration(value, "--idle-timeout")
        elif name == "s3":
            value = _s3(value, filesystem=False)
        elif name == "redirect_expiry":
            value = _redirect_expiry(value, "redirect_expiry")
        elif name == "upload_locks":
            value = _upload_locks(value)
        elif name == "upload_lock_ttl":
            value = _lock_ttl(value)
        elif name == "notifications":
            value = _notifications(value)
        elif name == "notifications_dir":
            value = os.fspath(value)
        elif name == "notifications_max_events" and _count(value, name) < 1:
            raise ConfigError(name, "a queue must hold at least one event")
        elif name == "proxy":
            value = _proxy(value)
        elif name == "auth":
            from ocistore.server.auth import check_auth_section

            value = check_auth_section(value)
        changes[name] = value
    cfg = replace(cfg, **changes)
    if cfg.cache == "redis" and cfg.redis is None:
        raise ConfigError("--cache", "redis needs the config file's redis block (redis.addr)")
    if cfg.upload_locks == "redis" and cfg.redis is None:
        raise ConfigError("upload_locks", "redis needs the config file's redis block (redis.addr)")
    return cfg
