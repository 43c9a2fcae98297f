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
    finish once the server is told to stop.
    """

    header_timeout: float = 60.0
    keepalive_timeout: float = 75.0
    max_header_bytes: int = 64 << 10
    body_high_water: int = 4 << 20
    shutdown_grace: float = 30.0
    send_timeout: float = 60.0

    def __post_init__(self) -> None:
        for name in ("header_timeout", "keepalive_timeout", "shutdown_grace", "send_timeout"):
            if not getattr(self, name) > 0:
                raise ValueError(f"H1Settings.{name} must be positive, not {getattr(self, name)!r}")
        if self.max_header_bytes < 1024:
            raise ValueError(f"H1Settings.max_header_bytes {self.max_header_bytes} is below 1024")
        if self.body_high_water < 64 << 10:
            raise ValueError(f"H1Settings.body_high_water {self.body_high_water} is below 64 KiB")
