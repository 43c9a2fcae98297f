"""Pull-through cache: ocistore as a mirror of other registries (issue 14).

:mod:`.config` reads the ``proxy:`` section, :mod:`.auth` and :mod:`.client`
talk to the upstreams, :mod:`.fill` makes one upstream download serve every
client, :mod:`.expiry` keeps what was fetched for its TTL, and :mod:`.service`
puts them behind the registry's read routes.
"""

from ocistore.proxy.config import DEFAULT_TTL, ProxyConfig, ProxyConfigError, Upstream, parse_proxy

__all__ = ["DEFAULT_TTL", "ProxyConfig", "ProxyConfigError", "Upstream", "parse_proxy"]

from ocistore.proxy.health import upstream_check
from ocistore.server.health import register_check

register_check("proxy_upstream", upstream_check)
