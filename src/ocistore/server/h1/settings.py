"""The knobs of ocistore's HTTP/1.1 server, with the defaults ``ocistore serve`` uses."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["H1Settings"]


@dataclass(frozen=True, slots=True, kw_only=True)
class H1Settings:
    """Limits and timeouts of one server; every field has a working default.

    ``header_timeout`` bounds how long a request's line and headers may take
    to arrive (a client that opens a connection and trickles, or sends
    nothing, is closed); ``keepalive_timeout`` how long a connection may sit
    idle between requests. Neither applies while a request is being served:
    the app bounds its own waits for body bytes (the registry's idle timeout).
    ``body_high_water`` is how many received body bytes may wait for the app
    before the server stops reading the socket (TCP then holds the client
    back). ``shutdown_grace`` is how long requests in flight may take to
    finish once the server is told to stop. ``send_timeout`` is how long a
    client may take no byte of a response before it is cut off (a client
    timeout, logged at INFO). ``max_header_bytes`` bounds the request line
    and headers together (431), ``max_headers`` their number (431),
    ``max_request_line`` the request target (414); ``max_connections`` is how
    many connections one worker keeps open (one more is answered 503 and closed).
    """

    header_timeout: float = 60.0
    keepalive_timeout: float = 75.0
    max_header_bytes: int = 64 << 10
    body_high_water: int = 4 << 20
    shutdown_grace: float = 30.0
    send_timeout: float = 60.0
    max_headers: int = 100
    max_request_line: int = 8 << 10
    max_connections: int = 4096

    def __post_init__(self) -> None:
        for name in ("header_timeout", "keepalive_timeout", "shutdown_grace", "send_timeout"):
            if not getattr(self, name) > 0:
                raise ValueError(f"H1Settings.{name} must be positive, not {getattr(self, name)!r}")
        if self.max_header_bytes < 1024:
            raise ValueError(f"H1Settings.max_header_bytes {self.max_header_bytes} is below 1024")
        for name in ("max_headers", "max_request_line", "max_connections"):
            if getattr(self, name) < 1:
                raise ValueError(
                    f"H1Settings.{name} must be at least 1, not {getattr(self, name)!r}"
                )
        if self.body_high_water < 64 << 10:
            raise ValueError(f"H1Settings.body_high_water {self.body_high_water} is below 64 KiB")
