"""Compare candidate HTTP server stacks for ``ocistore serve`` with one trivial handler each.

Why: the registry's hot paths are (1) tiny responses (HEAD blob, GET manifest),
(2) large streamed request bodies (blob pushes), (3) large file responses (blob
pulls, ideally zero-copy). Each stack gets the same three handlers and the same
load generators on loopback:

* ``GET /small``   -> 200 with a 71-byte body and a few headers  (wrk, ab -k -c 32)
* ``PUT /upload``  -> streams the body into a file, 201          (curl -T, MB/s)
* ``GET /file``    -> a 64 MiB file, zero-copy where the stack can (curl, MB/s)

Stacks: uvicorn (httptools + uvloop) with a raw ASGI app; granian with the same
ASGI app (it implements the ``http.response.pathsend`` extension); granian's
native RSGI interface; aiohttp (``web.FileResponse`` uses ``sendfile``).

Run: ``.venv/bin/python benchmarks/http/stack_compare.py [--size-mib 64] [--seconds 5]``.
Needs ``wrk``, ``ab`` (apache2-utils) and ``curl`` on PATH. Prints a table (medians of
``--repeat`` runs); every upload is checked by size and sha256, every download by size.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

SMALL = b"sha256:" + b"0" * 64
FILE_NAME = "blob.bin"
HERE = os.path.dirname(os.path.abspath(__file__))

# --------------------------------------------------------------------------- apps

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


def _data_dir() -> str:
    return os.environ["STACK_DIR"]


async def asgi_app(scope: Scope, receive: Receive, send: Send) -> None:
    """One raw ASGI app for uvicorn and granian (no framework overhead)."""
    if scope["type"] == "lifespan":
        while True:
            msg = await receive()
            if msg["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif msg["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    path = scope["path"]
    if path == "/small":
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"application/octet-stream"),
                    (b"docker-content-digest", SMALL),
                    (b"content-length", str(len(SMALL)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": SMALL})
        return
    if path == "/upload":
        fd = os.open(os.path.join(_data_dir(), "up.bin"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        try:
            more = True
            while more:
                msg = await receive()
                body = msg.get("body", b"")
                if body:
                    os.write(fd, body)
                more = msg.get("more_body", False)
        finally:
            os.close(fd)
        await send({"type": "http.response.start", "status": 201, "headers": []})
        await send({"type": "http.response.body", "body": b""})
        return
    if path == "/file":
        fpath = os.path.join(_data_dir(), FILE_NAME)
        size = os.path.getsize(fpath)
        headers = [(b"content-length", str(size).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        if "http.response.pathsend" in scope.get("extensions", {}):
            await send({"type": "http.response.pathsend", "path": fpath})
            return
        with open(fpath, "rb") as f:
            while chunk := f.read(1 << 20):
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
        return
    await send({"type": "http.response.start", "status": 404, "headers": []})
    await send({"type": "http.response.body", "body": b""})


class RSGIApp:
    """granian's native interface."""

    async def __rsgi__(self, scope: Any, proto: Any) -> None:
        path = scope.path
        if path == "/small":
            proto.response_bytes(
                200,
                [
                    ("content-type", "application/octet-stream"),
                    ("docker-content-digest", SMALL.decode()),
                ],
                SMALL,
            )
            return
        if path == "/upload":
            fd = os.open(os.path.join(_data_dir(), "up.bin"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
            try:
                async for chunk in proto:
                    os.write(fd, chunk)
            finally:
                os.close(fd)
            proto.response_empty(201, [])
            return
        if path == "/file":
            proto.response_file(200, [], os.path.join(_data_dir(), FILE_NAME))
            return
        proto.response_empty(404, [])


rsgi_app = RSGIApp()


def aiohttp_main(port: int) -> None:
    from aiohttp import web

    async def small(_req: web.Request) -> web.Response:
        return web.Response(
            body=SMALL,
            content_type="application/octet-stream",
            headers={"Docker-Content-Digest": SMALL.decode()},
        )

    async def upload(req: web.Request) -> web.Response:
        fd = os.open(os.path.join(_data_dir(), "up.bin"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        try:
            async for chunk in req.content.iter_any():
                os.write(fd, chunk)
        finally:
            os.close(fd)
        return web.Response(status=201)

    async def file(_req: web.Request) -> web.FileResponse:
        return web.FileResponse(os.path.join(_data_dir(), FILE_NAME))

    app = web.Application(client_max_size=0)
    app.router.add_get("/small", small)
    app.router.add_put("/upload", upload)
    app.router.add_get("/file", file)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


# ----------------------------------------------------------------------- driver


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def command(stack: str, port: int) -> list[str]:
    py = sys.executable
    bindir = os.path.dirname(py)
    if stack == "uvicorn":
        return [
            os.path.join(bindir, "uvicorn"),
            "--app-dir",
            HERE,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--loop",
            "uvloop",
            "--http",
            "httptools",
            "--no-access-log",
            "--log-level",
            "warning",
            "stack_compare:asgi_app",
        ]
    if stack in ("granian-asgi", "granian-rsgi"):
        iface = stack.split("-")[1]
        return [
            os.path.join(bindir, "granian"),
            "--interface",
            iface,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--no-ws",
            "--log-level",
            "warning",
            "--no-access-log",
            "--working-dir",
            HERE,
            f"stack_compare:{iface}_app",
        ]
    if stack == "aiohttp":
        return [py, os.path.join(HERE, "stack_compare.py"), "--serve-aiohttp", str(port)]
    raise ValueError(stack)


@contextlib.contextmanager
def running(stack: str, data_dir: str) -> Iterator[int]:
    port = free_port()
    env = dict(os.environ, STACK_DIR=data_dir)
    proc = subprocess.Popen(command(stack, port), env=env)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{stack} did not start") from None
                time.sleep(0.1)
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wrk_rps(port: int, seconds: int) -> float:
    out = subprocess.run(
        ["wrk", "-t2", "-c32", f"-d{seconds}s", f"http://127.0.0.1:{port}/small"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    assert m and "Non-2xx" not in out, out
    return float(m.group(1))


def ab_rps(port: int, requests: int) -> float:
    out = subprocess.run(
        ["ab", "-k", "-c", "32", "-n", str(requests), f"http://127.0.0.1:{port}/small"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    m = re.search(r"Requests per second:\s+([\d.]+)", out)
    failed = re.search(r"Failed requests:\s+(\d+)", out)
    assert m and failed and failed.group(1) == "0", out
    return float(m.group(1))


def curl_upload(port: int, src: str, data_dir: str, expect: str) -> float:
    out = subprocess.run(
        [
            "curl",
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %{speed_upload}",
            "-X",
            "PUT",
            "-H",
            "Content-Type: application/octet-stream",
            "-T",
            src,
            f"http://127.0.0.1:{port}/upload",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    code, speed = out.split()
    assert code == "201", out
    with open(os.path.join(data_dir, "up.bin"), "rb") as f:
        assert hashlib.file_digest(f, "sha256").hexdigest() == expect
    return float(speed) / 1e6


def curl_download(port: int, size: int) -> float:
    out = subprocess.run(
        [
            "curl",
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %{size_download} %{speed_download}",
            f"http://127.0.0.1:{port}/file",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    code, got, speed = out.split()
    assert code == "200" and int(got) == size, out
    return float(speed) / 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--size-mib", type=int, default=64)
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument(
        "--stacks", default="uvicorn,granian-asgi,granian-rsgi,aiohttp", help="comma list"
    )
    ap.add_argument("--serve-aiohttp", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve_aiohttp:
        aiohttp_main(args.serve_aiohttp)
        return
    for tool in ("wrk", "ab", "curl"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} not found (apt-get install wrk apache2-utils curl)")
    stacks = args.stacks.split(",")
    size = args.size_mib << 20
    results: dict[str, dict[str, list[float]]] = {
        s: {"wrk": [], "ab": [], "up": [], "down": []} for s in stacks
    }
    with tempfile.TemporaryDirectory(prefix="stack-compare-") as data_dir:
        src = os.path.join(data_dir, FILE_NAME)
        payload = os.urandom(size)
        with open(src, "wb") as f:
            f.write(payload)
        expect = hashlib.sha256(payload).hexdigest()
        del payload
        # Interleave stacks inside each repetition so drifting machine load hits all alike.
        for _ in range(args.repeat):
            for stack in stacks:
                with running(stack, data_dir) as port:
                    r = results[stack]
                    r["wrk"].append(wrk_rps(port, args.seconds))
                    r["ab"].append(ab_rps(port, 20000))
                    r["up"].append(curl_upload(port, src, data_dir, expect))
                    r["down"].append(curl_download(port, size))
    print(f"\nmedians of {args.repeat} runs, {args.size_mib} MiB bodies, 1 worker, loopback")
    print(f"{'stack':<14} {'wrk req/s':>10} {'ab -k req/s':>12} {'PUT MB/s':>9} {'GET MB/s':>9}")
    for stack in stacks:
        r = results[stack]
        print(
            f"{stack:<14} {statistics.median(r['wrk']):>10.0f} {statistics.median(r['ab']):>12.0f}"
            f" {statistics.median(r['up']):>9.0f} {statistics.median(r['down']):>9.0f}"
        )


if __name__ == "__main__":
    main()
