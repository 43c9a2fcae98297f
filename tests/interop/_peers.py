"""Real peers for the interop tests: the Go registry, ``ocistore serve`` and skopeo.

Each server runs as a subprocess on a free 127.0.0.1 port over a storage root
the test chooses (often the same root for both), and is stopped by the test
that started it: terminate, wait, kill. Readiness is a poll of ``GET /v2/``.
Their logs go to files next to the root so a failure can show them.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from conftest import core_env
from redis_peer import free_port

from ._http import request

GO_REGISTRY = "docker-registry"
SKOPEO = "skopeo"
SECRET = "ocistore-interop-shared-secret"
START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0


def go_config(
    root: Path,
    port: int,
    *,
    secret: str = SECRET,
    delete: bool = True,
    cache: str = "inmemory",
    redis_addr: str | None = None,
    tail: str = "",
) -> str:
    """A distribution config.yml with only the keys ocistore also reads (issue 5).

    Both servers are started from this one template: ``ocistore serve --config``
    must take a distribution config limited to these keys unchanged. With
    ``redis_addr`` the config gets distribution's ``redis:`` block; ``tail`` is
    more top-level YAML (e.g. a ``notifications:`` section).
    """
    redis = f"redis:\n  addr: {redis_addr}\n" if redis_addr else ""
    return (
        redis
        + f"""\
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: {root}
  delete:
    enabled: {"true" if delete else "false"}
  cache:
    blobdescriptor: {cache}
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: 127.0.0.1:{port}
  secret: {secret}
"""
        + tail
    )


class ServerError(RuntimeError):
    pass


@dataclass
class Server:
    """A registry subprocess; ``url`` is its base (``http://127.0.0.1:PORT``)."""

    name: str
    argv: list[str]
    port: int
    log_path: Path
    env: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                start_new_session=True,
            )
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self.proc.poll() is not None:
                raise ServerError(
                    f"{self.name} exited with {self.proc.returncode} before answering:\n{self.log()}"
                )
            try:
                if self.ready():
                    return
            except (OSError, AssertionError):
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise ServerError(f"{self.name} did not answer GET /v2/ in time:\n{self.log()}")
            time.sleep(0.05)  # polling with a deadline (and the process's exit) for it to answer

    def ready(self) -> bool:
        """Whether the started server answers (subclasses probe as their server needs)."""
        return request("GET", self.url + "/v2/", timeout=2).status == 200

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            # Only our own process group (start_new_session): workers of --workers N too.
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(STOP_TIMEOUT)

    def restart(self) -> None:
        self.stop()
        self.start()

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return ""


class GoRegistry(Server):
    """distribution 2.8.2 (``docker-registry serve CONFIG``) on a storage root."""

    def __init__(
        self,
        root: Path,
        workdir: Path,
        *,
        secret: str = SECRET,
        cache: str = "inmemory",
        redis_addr: str | None = None,
        config_tail: str = "",
    ) -> None:
        binary = shutil.which(GO_REGISTRY)
        if binary is None:
            raise FileNotFoundError(GO_REGISTRY)
        port = free_port()
        self.root = root
        self.config = workdir / f"go-registry-{port}.yml"
        self.config.write_text(
            go_config(
                root, port, secret=secret, cache=cache, redis_addr=redis_addr, tail=config_tail
            )
        )
        super().__init__(
            name="go-registry",
            argv=[binary, "serve", str(self.config)],
            port=port,
            log_path=workdir / f"go-registry-{port}.log",
        )

    def garbage_collect(
        self, *, delete_untagged: bool = False, dry_run: bool = False
    ) -> subprocess.CompletedProcess[str]:
        """Run ``docker-registry garbage-collect`` over the same config (and root)."""
        argv = [self.argv[0], "garbage-collect", str(self.config)]
        if delete_untagged:
            argv.append("--delete-untagged")
        if dry_run:
            argv.append("--dry-run")
        done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
        assert done.returncode == 0, f"garbage-collect failed: {done.stdout}\n{done.stderr}"
        return done


def ocistore_argv() -> list[str]:
    """The ``ocistore`` console script of the interpreter running the tests."""
    script = Path(sys.executable).with_name("ocistore")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "import sys; from ocistore.cli import main; sys.exit(main())"]


class OcistoreServer(Server):
    """``ocistore serve --config`` on a storage root, on the core the test session has active.

    The config is the Go registry's template with the LMDB descriptor cache
    (ocistore's default, kept under the root where distribution never looks).
    """

    def __init__(
        self,
        root: Path,
        workdir: Path,
        *,
        core: str,
        secret: str = SECRET,
        cache: str = "lmdb",
        redis_addr: str | None = None,
        extra: Sequence[str] = (),
        config_tail: str = "",
    ) -> None:
        port = free_port()
        self.config = workdir / f"ocistore-{port}.yml"
        self.config.write_text(
            go_config(
                root, port, secret=secret, cache=cache, redis_addr=redis_addr, tail=config_tail
            )
        )
        env = core_env(core)
        argv = [*ocistore_argv(), "serve", "--config", str(self.config), *extra]
        self.root = root
        super().__init__(
            name=f"ocistore[{core}]",
            argv=argv,
            port=port,
            log_path=workdir / f"ocistore-{port}.log",
            env=env,
        )


def skopeo(*args: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    """Run skopeo with no signature policy and no TLS (loopback registries speak plain HTTP)."""
    binary = shutil.which(SKOPEO)
    if binary is None:
        raise FileNotFoundError(SKOPEO)
    argv = [binary, "--insecure-policy", *args]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    assert done.returncode == 0, f"{' '.join(argv)} failed:\n{done.stdout}\n{done.stderr}"
    return done


def push(layout: Path, tag: str, registry_url: str, repo: str, dest_tag: str | None = None) -> None:
    """skopeo copy --all oci:LAYOUT:TAG docker://HOST/REPO:TAG (digests preserved)."""
    host = registry_url.removeprefix("http://")
    skopeo(
        "copy",
        "--all",
        "--preserve-digests",
        "--dest-tls-verify=false",
        f"oci:{layout}:{tag}",
        f"docker://{host}/{repo}:{dest_tag or tag}",
    )


def pull(registry_url: str, repo: str, ref: str, layout: Path, dest_tag: str) -> None:
    """skopeo copy --all docker://HOST/REPO{:TAG|@DIGEST} oci:LAYOUT:DEST_TAG."""
    host = registry_url.removeprefix("http://")
    sep = "@" if ":" in ref else ":"
    skopeo(
        "copy",
        "--all",
        "--preserve-digests",
        "--src-tls-verify=false",
        f"docker://{host}/{repo}{sep}{ref}",
        f"oci:{layout}:{dest_tag}",
    )
