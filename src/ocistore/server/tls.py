"""``http.tls``: serving HTTPS, with distribution's keys and values.

::

    http:
      tls:
        certificate: /etc/ocistore/server.crt   # PEM, the chain after the leaf
        key: /etc/ocistore/server.key           # PEM, unencrypted
        clientcas: [/etc/ocistore/clients-ca.crt]  # optional: require client certificates
        minimumtls: tls1.2                      # tls1.2 (the default) or tls1.3

With ``clientcas`` a client must present a certificate signed by one of those
CAs, or the handshake fails (distribution's ``RequireAndVerifyClientCert``).
TLS 1.0 and 1.1 are refused (distribution still accepts ``tls1.0`` and
``tls1.1`` as values; ocistore names them as errors rather than serve them).
Every file is read and checked when the configuration is loaded, so a wrong
path, a key that does not match the certificate or an unreadable CA fails at
start, naming the key and the file, never at the first handshake.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

__all__ = ["MINIMUM_TLS", "TLSError", "TLSOptions", "parse_tls", "server_context"]

MINIMUM_TLS: Final = {"tls1.2": ssl.TLSVersion.TLSv1_2, "tls1.3": ssl.TLSVersion.TLSv1_3}
"""``http.tls.minimumtls`` values ocistore serves, and the protocol version each means."""

_REFUSED: Final = ("tls1.0", "tls1.1")
KEYS: Final = ("certificate", "key", "clientcas", "minimumtls")
"""The keys of ``http.tls`` ocistore reads (distribution's ``letsencrypt`` and
``ciphersuites`` are not among them: reported as unknown, like any other)."""


class TLSError(ValueError):
    """An unusable ``http.tls`` value; ``key`` is its dotted name."""

    def __init__(self, key: str, reason: str) -> None:
        self.key = key
        self.reason = reason
        super().__init__(f"config {key}: {reason}")


@dataclass(frozen=True, slots=True)
class TLSOptions:
    """Where the server's certificate and key are, which client CAs to require, the floor."""

    certificate: str
    key: str
    clientcas: tuple[str, ...] = ()
    minimumtls: str = "tls1.2"

    def to_json(self) -> dict[str, Any]:
        return {
            "certificate": self.certificate,
            "key": self.key,
            "clientcas": list(self.clientcas),
            "minimumtls": self.minimumtls,
        }


def parse_tls(section: object) -> TLSOptions | None:
    """``http.tls`` checked and loaded once; None when it names no certificate (plain HTTP)."""
    if section is None:
        return None
    if not isinstance(section, Mapping):
        raise TLSError("http.tls", f"expected a mapping, got {type(section).__name__}")
    cert = _path(section.get("certificate"), "http.tls.certificate")
    key = _path(section.get("key"), "http.tls.key")
    cas_value = section.get("clientcas")
    if cas_value is None:
        cas: tuple[str, ...] = ()
    elif isinstance(cas_value, list):
        cas = tuple(_path(c, "http.tls.clientcas") or "" for c in cas_value)
        if "" in cas:
            raise TLSError("http.tls.clientcas", f"{cas_value!r} holds an empty entry")
    else:
        raise TLSError("http.tls.clientcas", f"{cas_value!r} is not a list of files")
    floor = section.get("minimumtls")
    minimum = "tls1.2" if floor in (None, "") else str(floor).lower()
    if minimum in _REFUSED:
        raise TLSError(
            "http.tls.minimumtls",
            f"{floor!r}: TLS 1.0 and 1.1 are not served; use tls1.2 or tls1.3",
        )
    if minimum not in MINIMUM_TLS:
        raise TLSError("http.tls.minimumtls", f"{floor!r}: use tls1.2 or tls1.3")
    if not cert:
        if key or cas:
            raise TLSError("http.tls.certificate", "missing: http.tls needs a certificate file")
        return None
    if not key:
        raise TLSError("http.tls.key", "missing: the certificate needs its private key file")
    opts = TLSOptions(certificate=cert, key=key, clientcas=cas, minimumtls=minimum)
    server_context(opts)  # every file read now: a bad one fails at start, named
    return opts


def _path(value: object, key: str) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise TLSError(key, f"{value!r} is not a file path")
    if not os.path.isfile(value):
        raise TLSError(key, f"{value!r}: no such file")
    return value


def server_context(opts: TLSOptions) -> ssl.SSLContext:
    """A server-side context: the certificate chain, the floor, client CAs when configured.

    HTTP/1.1 is the only protocol offered through ALPN. Raises :class:`TLSError`
    naming the file when a certificate, key or CA cannot be loaded.
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = MINIMUM_TLS[opts.minimumtls]
    ctx.set_alpn_protocols(["http/1.1"])
    try:
        ctx.load_cert_chain(opts.certificate, opts.key)
    except (ssl.SSLError, OSError) as exc:
        raise TLSError(
            "http.tls.certificate",
            f"{opts.certificate!r} with key {opts.key!r} cannot be loaded: {_why(exc)}",
        ) from None
    if opts.clientcas:
        for path in opts.clientcas:
            try:
                ctx.load_verify_locations(cafile=path)
            except (ssl.SSLError, OSError) as exc:
                raise TLSError("http.tls.clientcas", f"{path!r}: {_why(exc)}") from None
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def _why(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None)
    return str(reason or exc.args[-1] if exc.args else exc)
