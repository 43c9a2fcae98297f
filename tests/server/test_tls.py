"""``http.tls``: HTTPS on both stacks, with a CA the test makes (``tls_certs``).

1. The configuration: distribution's keys, every file checked at load, TLS 1.0
   and 1.1 refused as values, the options carried to granian's workers.
2. Each stack (``ocistore`` and ``granian``) for real, as ``ocistore serve``:
   - with a certificate: skopeo pushes and pulls with TLS verification on
     (``--dest-cert-dir``/``--src-cert-dir`` holding the test's CA), a TLS 1.2
     client is served, TLS 1.0 and 1.1 clients are refused by the server;
   - with ``clientcas`` and ``minimumtls: tls1.3``: skopeo without a client
     certificate is refused, with one it pushes and pulls; a TLS 1.2 client
     is refused even with a certificate.
"""

from __future__ import annotations

import random
import shutil
import signal
import socket
import ssl
import subprocess
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import ocistore
from conftest import require_peers
from interop._oci import Layout, make_image
from interop._peers import OcistoreServer
from ocistore.server.config import ConfigError, ServerConfig, load_config, unknown_keys

from .tls_certs import CA, Issued

pytestmark = pytest.mark.one_core  # TLS sits in front of the app: the core plays no part

SKOPEO_TIMEOUT = 120.0


@dataclass(frozen=True)
class PKI:
    ca: CA
    server: Issued
    clients_ca: CA
    client: Issued
    stranger: Issued  # a client certificate from a CA the server does not trust


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    d = tmp_path_factory.mktemp("pki")
    ca = CA(d, "test-ca")
    clients = CA(d, "clients-ca")
    other = CA(d, "other-ca")
    return PKI(
        ca=ca,
        server=ca.issue("server", server=True),
        clients_ca=clients,
        client=clients.issue("client", server=False),
        stranger=other.issue("stranger", server=False),
    )


# -- 1. configuration ------------------------------------------------------------------------


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yml"
    path.write_text(text)
    return path


@pytest.mark.one_core
def test_tls_keys_are_read(tmp_path: Path, pki: PKI) -> None:
    path = _write(
        tmp_path,
        f"http:\n  addr: 127.0.0.1:5000\n  tls:\n"
        f"    certificate: {pki.server.cert}\n    key: {pki.server.key}\n"
        f"    clientcas: [{pki.clients_ca.path}, {pki.ca.path}]\n    minimumtls: tls1.3\n",
    )
    cfg, unknown = load_config(path)
    assert unknown == []
    assert cfg.tls is not None
    assert (cfg.tls.certificate, cfg.tls.key) == (str(pki.server.cert), str(pki.server.key))
    assert cfg.tls.clientcas == (str(pki.clients_ca.path), str(pki.ca.path))
    assert cfg.tls.minimumtls == "tls1.3"
    assert ServerConfig.from_env(cfg.to_env()) == cfg  # how granian's workers get it


@pytest.mark.one_core
def test_tls_defaults_to_tls12_and_no_client_certificates(tmp_path: Path, pki: PKI) -> None:
    path = _write(
        tmp_path, f"http:\n  tls:\n    certificate: {pki.server.cert}\n    key: {pki.server.key}\n"
    )
    cfg, _ = load_config(path)
    assert cfg.tls is not None
    assert (cfg.tls.minimumtls, cfg.tls.clientcas) == ("tls1.2", ())
    assert load_config(_write(tmp_path, "http: {addr: ':5000'}\n"))[0].tls is None
    assert load_config(_write(tmp_path, "http: {tls: {certificate: ''}}\n"))[0].tls is None


@pytest.mark.one_core
def test_distribution_keys_ocistore_does_not_read_are_reported(pki: PKI) -> None:
    doc = {
        "http": {
            "tls": {
                "certificate": str(pki.server.cert),
                "key": str(pki.server.key),
                "ciphersuites": ["TLS_AES_128_GCM_SHA256"],
                "letsencrypt": {"email": "a@b"},
            }
        }
    }
    assert unknown_keys(doc) == ["http.tls.ciphersuites", "http.tls.letsencrypt"]


BAD = {
    "tls1.0": ("{cert}", "{key}", "[]", "tls1.0", "http.tls.minimumtls", "TLS 1.0 and 1.1"),
    "tls1.1": ("{cert}", "{key}", "[]", "TLS1.1", "http.tls.minimumtls", "TLS 1.0 and 1.1"),
    "ssl3": ("{cert}", "{key}", "[]", "ssl3", "http.tls.minimumtls", "'ssl3'"),
    "no-key": ("{cert}", "''", "[]", "tls1.2", "http.tls.key", "missing"),
    "no-cert": ("''", "{key}", "[]", "tls1.2", "http.tls.certificate", "missing"),
    "missing-file": (
        "{cert}.nope",
        "{key}",
        "[]",
        "tls1.2",
        "http.tls.certificate",
        "no such file",
    ),
    "wrong-key": (
        "{cert}",
        "{other_key}",
        "[]",
        "tls1.2",
        "http.tls.certificate",
        "cannot be loaded",
    ),
    "key-as-cert": ("{key}", "{key}", "[]", "tls1.2", "http.tls.certificate", "cannot be loaded"),
    "cas-not-list": ("{cert}", "{key}", "{ca}", "tls1.2", "http.tls.clientcas", "not a list"),
    "cas-missing": (
        "{cert}",
        "{key}",
        "[{ca}.nope]",
        "tls1.2",
        "http.tls.clientcas",
        "no such file",
    ),
    "cas-not-pem": ("{cert}", "{key}", "[{key}]", "tls1.2", "http.tls.clientcas", "{key}"),
}


@pytest.mark.one_core
@pytest.mark.parametrize("case", list(BAD))
def test_bad_tls_settings_name_the_key_and_the_value(tmp_path: Path, pki: PKI, case: str) -> None:
    cert, key, cas, floor, where, said = BAD[case]
    values = {
        "cert": pki.server.cert,
        "key": pki.server.key,
        "other_key": pki.client.key,
        "ca": pki.ca.path,
    }
    text = (
        "http:\n  tls:\n"
        f"    certificate: {cert.format(**values)}\n    key: {key.format(**values)}\n"
        f"    clientcas: {cas.format(**values)}\n    minimumtls: {floor}\n"
    )
    with pytest.raises(ConfigError) as info:
        load_config(_write(tmp_path, text))
    assert info.value.key == where
    assert said.format(**values) in str(info.value)


# -- 2. both stacks, for real ---------------------------------------------------------------


def _need(program: str) -> None:
    if shutil.which(program) is None:
        if require_peers():
            pytest.fail(f"{program} is required (OCISTORE_REQUIRE_PEERS=1) but not installed")
        pytest.skip(f"{program} not installed")


def client_context(
    pki: PKI,
    *,
    cert: Issued | None = None,
    minimum: ssl.TLSVersion = ssl.TLSVersion.TLSv1_2,
    maximum: ssl.TLSVersion = ssl.TLSVersion.MAXIMUM_SUPPORTED,
) -> ssl.SSLContext:
    """A verifying client context for the test CA, optionally with a client certificate."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(cafile=pki.ca.path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # TLSv1 and TLSv1_1 on purpose
        ctx.minimum_version = minimum
        ctx.maximum_version = maximum
    if maximum < ssl.TLSVersion.TLSv1_2:
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")  # let OpenSSL offer the old protocol at all
    if cert is not None:
        ctx.load_cert_chain(cert.cert, cert.key)
    return ctx


def get_v2(port: int, ctx: ssl.SSLContext) -> tuple[int, str]:
    """GET /v2/ over TLS; the status and the negotiated protocol version."""
    with (
        socket.create_connection(("127.0.0.1", port), timeout=30) as raw,
        ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        tls.sendall(b"GET /v2/ HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        data = b""
        while b"\r\n" not in data:
            piece = tls.recv(4096)
            if not piece:
                break
            data += piece
        version = tls.version() or ""
    line = data.split(b"\r\n", 1)[0].split()
    assert len(line) >= 2, data
    return int(line[1]), version


def refused_by_server(port: int, ctx: ssl.SSLContext) -> None:
    """The server refuses the handshake: it fails, or (TLS 1.3, where the client's
    certificate is checked after the client finished) the connection ends unanswered."""
    try:
        status = get_v2(port, ctx)
    except (ssl.SSLError, ConnectionResetError, BrokenPipeError) as exc:
        # A refusal by the client's own OpenSSL would prove nothing about the server.
        reason = getattr(exc, "reason", None)
        assert reason not in ("NO_PROTOCOLS_AVAILABLE", "UNSUPPORTED_PROTOCOL"), exc
    except AssertionError as exc:
        assert "b''" in str(exc), exc  # closed before any status line
    else:
        raise AssertionError(f"the server answered {status}")


class TLSServer(OcistoreServer):
    """``ocistore serve`` with an ``http.tls`` block; ready once GET /v2/ answers over TLS."""

    def __init__(
        self, work: Path, stack: str, tls_yaml: str, probe: ssl.SSLContext, name: str
    ) -> None:
        work.mkdir(parents=True, exist_ok=True)
        super().__init__(work / "root", work, core=ocistore.BACKEND, extra=["--stack", stack])
        self.config.write_text(self.config.read_text() + tls_yaml)
        self.probe = probe
        self.name = f"{self.name}[{stack},{name}]"

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def ready(self) -> bool:
        return get_v2(self.port, self.probe)[0] == 200

    def stop(self) -> None:
        proc = self.proc
        super().stop()
        if proc is not None:
            assert proc.returncode in (0, -signal.SIGTERM), self.log()


def tls_block(pki: PKI, *, clientcas: bool, minimum: str) -> str:
    text = (
        f"  tls:\n    certificate: {pki.server.cert}\n    key: {pki.server.key}\n"
        f"    minimumtls: {minimum}\n"
    )
    if clientcas:
        text += f"    clientcas: [{pki.clients_ca.path}]\n"
    return text


def cert_dir(path: Path, pki: PKI, client: Issued | None) -> Path:
    """A containers-style certificate directory: ``ca.crt``, and ``client.cert``/``.key``."""
    path.mkdir(parents=True, exist_ok=True)
    shutil.copy(pki.ca.path, path / "ca.crt")
    if client is not None:
        shutil.copy(client.cert, path / "client.cert")
        shutil.copy(client.key, path / "client.key")
    return path


def skopeo(*args: str) -> subprocess.CompletedProcess[str]:
    argv = ["skopeo", "--insecure-policy", *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=SKOPEO_TIMEOUT, check=False)


@pytest.fixture(scope="module")
def layout(tmp_path_factory: pytest.TempPathFactory) -> Layout:
    out = Layout(tmp_path_factory.mktemp("tls-layout") / "src")
    out.tag("v1", make_image(random.Random(13), layers=2, layer_size=50_000))
    return out


def push_pull(server: TLSServer, layout: Layout, certs: Path, work: Path) -> None:
    """skopeo push then pull over verified TLS; the pulled manifest is the pushed one."""
    ref = f"docker://{server.host}/tls/app:v1"
    done = skopeo(
        "copy", "--preserve-digests", "--dest-cert-dir", str(certs), f"oci:{layout.root}:v1", ref
    )
    assert done.returncode == 0, done.stderr
    out = Layout(work / "pulled")
    done = skopeo("copy", "--src-cert-dir", str(certs), ref, f"oci:{out.root}:v1")
    assert done.returncode == 0, done.stderr
    assert out.read_ref("v1") == layout.read_ref("v1")


STACKS = ["ocistore", "granian"]


@pytest.fixture(scope="module", params=STACKS)
def stack(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def tls_server(
    stack: str, pki: PKI, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TLSServer]:
    work = tmp_path_factory.mktemp(f"tls-{stack}")
    server = TLSServer(
        work, stack, tls_block(pki, clientcas=False, minimum="tls1.2"), client_context(pki), "tls"
    )
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def mtls_server(
    stack: str, pki: PKI, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TLSServer]:
    work = tmp_path_factory.mktemp(f"mtls-{stack}")
    probe = client_context(pki, cert=pki.client)
    server = TLSServer(work, stack, tls_block(pki, clientcas=True, minimum="tls1.3"), probe, "mtls")
    server.start()
    yield server
    server.stop()


@pytest.mark.peer
def test_skopeo_pushes_and_pulls_with_verification(
    tls_server: TLSServer, pki: PKI, layout: Layout, tmp_path: Path
) -> None:
    _need("skopeo")
    push_pull(tls_server, layout, cert_dir(tmp_path / "certs", pki, None), tmp_path)
    # verification is on: without the CA, skopeo refuses the server's certificate
    bare = tmp_path / "no-ca"
    bare.mkdir()
    done = skopeo("inspect", "--cert-dir", str(bare), f"docker://{tls_server.host}/tls/app:v1")
    assert done.returncode != 0
    assert "certificate" in done.stderr, done.stderr


def test_tls12_and_tls13_are_served(tls_server: TLSServer, pki: PKI) -> None:
    tls12 = client_context(pki, maximum=ssl.TLSVersion.TLSv1_2)
    assert get_v2(tls_server.port, tls12) == (200, "TLSv1.2")
    assert get_v2(tls_server.port, client_context(pki)) == (200, "TLSv1.3")


@pytest.mark.parametrize("old", ["TLSv1", "TLSv1_1"])
def test_tls10_and_tls11_are_refused(tls_server: TLSServer, pki: PKI, old: str) -> None:
    version = ssl.TLSVersion[old]
    ctx = client_context(pki, minimum=version, maximum=version)
    refused_by_server(tls_server.port, ctx)


def test_plain_http_to_a_tls_port_gets_no_answer(tls_server: TLSServer) -> None:
    with socket.create_connection(("127.0.0.1", tls_server.port), timeout=30) as s:
        s.sendall(b"GET /v2/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        try:
            while piece := s.recv(4096):
                data += piece
        except ConnectionResetError:
            pass
    assert not data.startswith(b"HTTP/1.1 200"), data[:200]


@pytest.mark.peer
def test_client_certificate_is_required_with_clientcas(
    mtls_server: TLSServer, pki: PKI, layout: Layout, tmp_path: Path
) -> None:
    _need("skopeo")
    push_pull(mtls_server, layout, cert_dir(tmp_path / "with", pki, pki.client), tmp_path)
    ref = f"docker://{mtls_server.host}/tls/app:v1"
    for name, client in (("without", None), ("stranger", pki.stranger)):
        certs = cert_dir(tmp_path / name, pki, client)
        done = skopeo("inspect", "--cert-dir", str(certs), ref)
        assert done.returncode != 0, f"{name}: {done.stdout}"
        assert "certificate" in done.stderr or "tls" in done.stderr, done.stderr


def test_clientcas_refuses_a_handshake_without_a_certificate(
    mtls_server: TLSServer, pki: PKI
) -> None:
    assert get_v2(mtls_server.port, client_context(pki, cert=pki.client))[0] == 200
    refused_by_server(mtls_server.port, client_context(pki))
    refused_by_server(mtls_server.port, client_context(pki, cert=pki.stranger))


def test_minimumtls_13_refuses_tls12(mtls_server: TLSServer, pki: PKI) -> None:
    ctx = client_context(pki, cert=pki.client, maximum=ssl.TLSVersion.TLSv1_2)
    refused_by_server(mtls_server.port, ctx)


@pytest.mark.one_core
def test_the_readme_tls_example_loads(tmp_path: Path, pki: PKI) -> None:
    """README's ``### TLS`` block, with this test's files in place of its paths."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme.split("### TLS", 1)[1]
    block = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    block = (
        block.replace("/etc/ocistore/server.crt", str(pki.server.cert))
        .replace("/etc/ocistore/server.key", str(pki.server.key))
        .replace("/etc/ocistore/clients-ca.crt", str(pki.clients_ca.path))
    )
    cfg, unknown = load_config(_write(tmp_path, block))
    assert unknown == []
    assert cfg.tls is not None
    assert (cfg.tls.minimumtls, cfg.tls.clientcas) == ("tls1.2", (str(pki.clients_ca.path),))
