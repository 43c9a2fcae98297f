"""The proxy's upstream health check (issue 15: /debug/health reports the upstream)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ocistore.proxy import ProxyConfig, Upstream
from ocistore.proxy.health import upstream_check
from ocistore.server import health
from ocistore.server.config import ServerConfig
from redis_peer import free_port
from threaded_http import QuietHandler, ThreadedServer


def serving(status: int) -> Iterator[str]:
    class Handler(QuietHandler):
        def do_GET(self) -> None:
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

    with ThreadedServer(Handler) as server:
        yield server.url


def proxy_config(url: str) -> ServerConfig:
    up = Upstream(prefix="", remoteurl=url, username="alice", password="s3cret", ttl=60.0)
    return ServerConfig(proxy=ProxyConfig(upstreams=(up,), connect_timeout=5.0).to_json())


def test_registered_and_only_for_a_proxy() -> None:
    assert "proxy_upstream" in [r.name for r in health._EXTRA]
    assert upstream_check(ServerConfig()) is None


@pytest.mark.parametrize("status", [200, 401])
def test_an_upstream_that_answers_is_healthy(status: int) -> None:
    for url in serving(status):
        check = upstream_check(proxy_config(url))
        assert check is not None
        check()


def test_an_upstream_in_trouble_fails_the_check_by_its_url() -> None:
    for url in serving(503):
        check = upstream_check(proxy_config(url))
        assert check is not None
        with pytest.raises(OSError) as info:
            check()
        assert str(info.value) == f"upstream {url}: answered 503"  # no credentials
    down = f"http://127.0.0.1:{free_port()}"
    check = upstream_check(proxy_config(down))
    assert check is not None
    with pytest.raises(OSError) as info:
        check()
    assert str(info.value) == f"upstream {down}: [Errno 111] Connection refused"
