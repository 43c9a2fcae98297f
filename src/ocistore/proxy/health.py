"""The proxy's health check: every upstream answers ``GET /v2/`` (issue 15's "the upstream").

Registered with :func:`ocistore.server.health.register_check` when the proxy
package is imported, it applies only to a server with a ``proxy:`` section.
An upstream answering 200 or 401 (it wants credentials: it is up) is
healthy; a refused connection, a timeout or any other status is not, and
the error names the upstream by its URL, never its credentials.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from typing import Any

from ocistore.proxy.config import ProxyConfig
from ocistore.server.health import Check

__all__ = ["upstream_check"]


def upstream_check(cfg: Any) -> Check | None:
    """The check of ``cfg``'s upstreams, or None when it is not a proxy."""
    if not getattr(cfg, "proxy", ""):
        return None
    proxy = ProxyConfig.from_json(cfg.proxy)
    # (URL to ask, URL to name in errors: the host only, no userinfo)
    urls = sorted({(up.remoteurl.rstrip("/") + "/v2/", up.host) for up in proxy.upstreams})
    timeout = proxy.connect_timeout

    def check() -> None:
        for url, shown in urls:
            try:
                with urllib.request.urlopen(url, timeout=timeout) as resp:
                    status = resp.status
            except urllib.error.HTTPError as exc:
                status = exc.code
                exc.close()
            except OSError as exc:  # URLError wraps the socket's error as its reason
                reason = getattr(exc, "reason", exc)
                raise OSError(f"upstream {shown}: {reason}") from None
            if status not in (200, 401):
                raise OSError(f"upstream {shown}: answered {status}")

    return check
