"""Log lines as distribution writes them: ``log.formatter``, ``log.fields``, request ids.

- ``log.formatter``: ``text`` (one line, ``key=value`` extras after the
  message), ``json`` (one object per line: ``time``, ``level``, ``msg``,
  ``logger`` and the extras, as logrus' JSON formatter) or ``logstash``
  (``@timestamp``, ``@version``, ``message``, ``level`` and the extras).
- ``log.fields``: a mapping added to every line.
- A request id on every line logged while a request is handled: the
  client's ``X-Request-Id`` when it sends a usable one, else a new one; the
  app returns it in ``X-Request-Id``. It lives in a context variable, which
  asyncio copies into the tasks a request starts and
  :mod:`ocistore.server.ctxpool` into the threads that do its blocking work.
- Access logs (``log.accesslog.disabled: false``): Apache's combined format
  with the text formatter; with ``json``/``logstash`` the same facts as fields.
"""

from __future__ import annotations

import contextvars
import itertools
import json
import logging
import os
import re
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final

__all__ = [
    "FORMATTERS",
    "REQUEST_ID",
    "access_line",
    "configure_logging",
    "make_formatter",
    "request_id_from",
]

FORMATTERS: Final = ("text", "json", "logstash")
REQUEST_ID: Final[contextvars.ContextVar[str | None]] = contextvars.ContextVar(
    "ocistore_request_id", default=None
)
_HANDLER_NAME: Final = "ocistore"
_USABLE_ID: Final = re.compile(r"[\x21-\x7e]{1,128}")
_ids: tuple[str, itertools.count[int]] = ("", itertools.count(1))


def _new_ids() -> None:
    """A prefix of this process's own (random, and its pid) for the ids it makes."""
    global _ids
    _ids = (f"{os.urandom(6).hex()}-{os.getpid():x}-", itertools.count(1))


_new_ids()
os.register_at_fork(after_in_child=_new_ids)

# Attributes every LogRecord has; anything else on a record is an extra field.
_STANDARD: Final = frozenset(logging.LogRecord("x", 0, "x", 0, "x", None, None).__dict__) | {
    "message",
    "asctime",
    "request_id",
    "taskName",
}


def request_id_from(header: str | None) -> str:
    """The client's id when it is 1-128 printable ASCII characters, else a new unique one."""
    if header is not None and _USABLE_ID.fullmatch(header):
        return header
    prefix, counter = _ids
    return f"{prefix}{next(counter):x}"


class _RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = REQUEST_ID.get()
        return True


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in record.__dict__.items() if k not in _STANDARD}


class _TextFormatter(logging.Formatter):
    def __init__(self, fields: Mapping[str, Any]) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")
        self.fields = dict(fields)

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extra = {**self.fields, **_extras(record)}
        rid = getattr(record, "request_id", None)
        if rid:
            extra["request_id"] = rid
        if record.name == "ocistore.access":
            return line  # the combined line is the message
        if extra:
            line += " " + " ".join(f"{k}={_text_value(v)}" for k, v in extra.items())
        return line


def _text_value(value: Any) -> str:
    text = str(value)
    return json.dumps(text) if (not text or any(c in text for c in ' "=')) else text


class _JsonFormatter(logging.Formatter):
    def __init__(self, fields: Mapping[str, Any], *, logstash: bool) -> None:
        super().__init__()
        self.fields = dict(fields)
        self.logstash = logstash

    def format(self, record: logging.LogRecord) -> str:
        stamp = datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
        doc: dict[str, Any] = dict(self.fields)
        if self.logstash:
            doc.update({"@timestamp": stamp, "@version": "1", "level": record.levelname.lower()})
            doc["message"] = record.getMessage()
        else:
            doc.update({"time": stamp, "level": record.levelname.lower()})
            doc["msg"] = record.getMessage()
        doc["logger"] = record.name
        rid = getattr(record, "request_id", None)
        if rid:
            doc["request_id"] = rid
        doc.update(_extras(record))
        if record.exc_info:
            doc["error"] = self.formatException(record.exc_info)
        return json.dumps(doc, default=str, ensure_ascii=False)


def make_formatter(kind: str, fields: Mapping[str, Any] | None = None) -> logging.Formatter:
    """The formatter for ``log.formatter`` ``kind`` with ``log.fields`` on every line."""
    if kind == "text":
        return _TextFormatter(fields or {})
    if kind in ("json", "logstash"):
        return _JsonFormatter(fields or {}, logstash=kind == "logstash")
    raise ValueError(f"log.formatter {kind!r}: use one of {', '.join(FORMATTERS)}")


def configure_logging(
    level: str, formatter: str = "text", fields: Mapping[str, Any] | None = None
) -> None:
    """Root logging to stderr at ``level`` with the chosen formatter (replacing an earlier call's)."""
    handler = logging.StreamHandler()
    handler.setFormatter(make_formatter(formatter, fields))
    handler.addFilter(_RequestIdFilter())
    handler.set_name(_HANDLER_NAME)
    root = logging.getLogger()
    for old in list(root.handlers):
        if old.get_name() == _HANDLER_NAME:
            root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel({"warn": "WARNING"}.get(level, level.upper()))


def access_line(
    scope: Mapping[str, Any],
    method: str,
    path: str,
    status: int,
    sent: int,
    seconds: float,
    referer: str | None,
    agent: str | None,
) -> tuple[str, dict[str, Any]]:
    """The combined-format line of a request, and the same facts as fields for JSON logs."""
    client = scope.get("client")
    host = client[0] if client else "-"
    query: bytes = scope.get("query_string", b"")
    target = f"{path}?{query.decode('latin-1')}" if query else path
    version = scope.get("http_version", "1.1")
    stamp = time.strftime("%d/%b/%Y:%H:%M:%S %z")
    line = (
        f'{host} - - [{stamp}] "{method} {target} HTTP/{version}" {status} {sent} '
        f'"{referer or ""}" "{agent or ""}"'
    )
    fields = {
        "http.request.remoteaddr": host,
        "http.request.method": method,
        "http.request.uri": target,
        "http.request.useragent": agent or "",
        "http.response.status": status,
        "http.response.written": sent,
        "http.response.duration": round(seconds, 6),
    }
    return line, fields
