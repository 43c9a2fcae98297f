"""The physical floor of a pull-through cache on this machine, beside a direct pull.

Issue 14 asks a cold pull through the proxy to take at most 1/0.9 of a direct
pull from the upstream, and 32 clients pulling one cold blob at most 1.2 x one
client's cold pull. Whether any server can meet that here depends on how much
CPU the work that must happen costs, and how many cores share it. This
measures, in one run, with a Go registry 2.8.2 as the upstream and ``curl``
as the client (as ``benchmarks/proxy.py`` does):

1. a direct pull: its wall time, and the CPU seconds per GiB of its two
   parties (the Go upstream, from ``/proc``; curl, from ``getrusage``);
2. one extra loopback hop, a byte relay between curl and the upstream (no
   HTTP, no store): with ``splice`` (no copy through user space) and with
   ``recv`` into a buffer + ``send`` (what a proxy that must see the bytes
   pays at least); the relay thread's CPU (``thread_time``) and the wall time;
3. SHA-256 over 1 GiB in memory (the native core and hashlib);
4. writing 1 GiB into the page cache (a new file, 256 KiB writes);
5. the fill's own work in one step: the upstream's body read from its
   socket, hashed and written into a file (``_core.copy_hashed``, as the
   proxy does it);
6. sending a file from the page cache to curl from a minimal HTTP server (the
   least any server spends on a warm client), from a mapping (as ocistore
   sends a blob) and with ``sendfile``, one client with the large blob, then
   ``--clients`` clients with the shared blob; the sender's CPU and the
   receivers' (``sendfile`` moves part of the copy to the receiver);
7. ocistore's own cold pulls, 1 client (large and shared blob), for the ratios.

From these it prints the floors: the CPU a cold pull must spend (upstream +
fill + send + client) spread over the machine's cores, against the direct
pull's wall time; and the CPU 32 clients need (their receive + the sends)
against 1.2 x one cold pull. Medians over ``--rounds``.

    BENCH_TMP=/tmp .venv/bin/python benchmarks/proxy_floor.py [--mib 1024] [--shared-mib 256]
        [--clients 32] [--rounds 3]
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import importlib.util
import mmap
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

_HERE = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("proxy_bench", _HERE / "proxy.py")
assert _spec is not None and _spec.loader is not None
bench = importlib.util.module_from_spec(_spec)
sys.modules["proxy_bench"] = bench
_spec.loader.exec_module(bench)

from interop._peers import GoRegistry  # noqa: E402  (proxy.py put tests/ on the path)
from ocistore import _core  # noqa: E402

MiB = 1 << 20
GiB = 1 << 30
BUF = 256 << 10


def children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def curl(url: str, out: str) -> subprocess.Popen[str]:
    exe = shutil.which("curl")
    assert exe is not None, "curl is needed"
    return subprocess.Popen(
        [exe, "-s", "-w", "%{http_code} %{size_download}", "-o", out, url],
        stdout=subprocess.PIPE,
        text=True,
    )


def pull(urls: list[str], size: int, outs: list[str]) -> tuple[float, float]:
    """curls GET ``urls`` at once; (wall seconds, the curls' CPU seconds)."""
    cpu = children_cpu()
    start = time.perf_counter()
    procs = [curl(u, o) for u, o in zip(urls, outs, strict=True)]
    results = [p.communicate(timeout=600)[0] for p in procs]
    wall = time.perf_counter() - start
    cpu = children_cpu() - cpu
    for r in results:
        assert r == f"200 {size}", f"curl got {r!r}"
    for o in set(outs) - {os.devnull}:
        os.unlink(o)  # not truncated by the next curl: freeing its pages is no client's work
    return wall, cpu


@contextlib.contextmanager
def listener(handle: Callable[[socket.socket], None]) -> Iterator[str]:
    """A TCP server on 127.0.0.1 running ``handle(conn)`` on a thread per connection."""
    srv = socket.create_server(("127.0.0.1", 0), backlog=128)
    stop = False

    def accept() -> None:
        while not stop:
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            threading.Thread(target=handle, args=(conn,), daemon=True).start()

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{srv.getsockname()[1]}"
    finally:
        stop = True
        # Wake the accept first: a socket closed under a blocked accept leaves the thread
        # in it, and the descriptor's number may be the next listener's.
        with contextlib.suppress(OSError):
            srv.shutdown(socket.SHUT_RDWR)
        t.join()
        srv.close()


class Cpu:
    """Thread CPU seconds (``thread_time``) that handler threads add up."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.seconds = 0.0

    def add(self, seconds: float) -> None:
        with self.lock:
            self.seconds += seconds


def relay_to(
    upstream: tuple[str, int], cpu: Cpu, *, splice: bool
) -> Callable[[socket.socket], None]:
    """A byte relay from a client connection to ``upstream`` (the response side timed)."""

    def handle(client: socket.socket) -> None:
        up = socket.create_connection(upstream)

        def requests() -> None:
            t0 = time.thread_time()
            with contextlib.suppress(OSError):
                while data := client.recv(65536):
                    up.sendall(data)
            with contextlib.suppress(OSError):
                up.shutdown(socket.SHUT_RDWR)  # the client is gone: end the response side
            cpu.add(time.thread_time() - t0)

        threading.Thread(target=requests, daemon=True).start()
        t0 = time.thread_time()
        try:
            if splice:
                r, w = os.pipe()
                fcntl.fcntl(w, fcntl.F_SETPIPE_SZ, 1 << 20)
                try:
                    while n := os.splice(up.fileno(), w, 1 << 20, flags=os.SPLICE_F_MOVE):
                        while n:
                            n -= os.splice(r, client.fileno(), n, flags=os.SPLICE_F_MOVE)
                finally:
                    os.close(r)
                    os.close(w)
            else:
                buf = bytearray(BUF)
                view = memoryview(buf)
                while n := up.recv_into(buf):
                    client.sendall(view[:n])
        except OSError:
            pass
        finally:
            cpu.add(time.thread_time() - t0)
            client.close()
            up.close()

    return handle


def file_server(path: Path, cpu: Cpu, *, mapped: bool = False) -> Callable[[socket.socket], None]:
    """Any GET answered with ``path``'s bytes (a minimal warm server): by ``sendfile``, or
    ``mapped`` from a mapping of the file written in 1 MiB pieces (as ocistore sends a blob)."""
    size = path.stat().st_size

    def handle(conn: socket.socket) -> None:
        t0 = time.thread_time()
        try:
            head = b""
            while b"\r\n\r\n" not in head:
                got = conn.recv(65536)
                if not got:
                    return
                head += got
            conn.sendall(
                b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % size
            )
            with path.open("rb") as f:
                sent = 0
                if mapped:
                    with mmap.mmap(f.fileno(), size, prot=mmap.PROT_READ) as m:
                        view = memoryview(m)
                        while sent < size:
                            sent += conn.send(view[sent : sent + MiB])
                        view.release()
                while sent < size:
                    sent += os.sendfile(conn.fileno(), f.fileno(), sent, size - sent)
        except Exception as exc:
            print(f"file server: {exc!r}", file=sys.stderr)
            raise
        finally:
            cpu.add(time.thread_time() - t0)
            conn.close()

    return handle


def sha_cpu(make: Callable[[], object], total: int) -> float:
    """Thread CPU seconds per GiB of feeding ``total`` bytes to ``make()`` in 4 MiB updates."""
    block = os.urandom(4 * MiB)
    h = make()
    t0 = time.thread_time()
    for _ in range(total // len(block)):
        h.update(block)  # type: ignore[attr-defined]
    return (time.thread_time() - t0) / (total / GiB)


def page_cache_cpu(work: Path, total: int) -> float:
    """Thread CPU seconds per GiB of writing ``total`` bytes to a new file (no fsync)."""
    buf = os.urandom(BUF)
    path = work / "pagecache"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    t0 = time.thread_time()
    try:
        for _ in range(total // BUF):
            os.write(fd, buf)
        return (time.thread_time() - t0) / (total / GiB)
    finally:
        os.close(fd)
        path.unlink()  # its dirty pages go with it, never written back


def fill_cpu(go: GoRegistry, digest: str, size: int, work: Path) -> tuple[float, float]:
    """The upstream body read from its socket, hashed and written in one step (as the proxy's
    fill does): (this thread's CPU s/GiB, the upstream's CPU s/GiB)."""
    host, port = go.url.removeprefix("http://").split(":")
    path = work / "fill"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    go_cpu = bench.server_cpu(go)
    t0 = time.thread_time()
    try:
        with socket.create_connection((host, int(port))) as s:
            s.sendall(
                f"GET /v2/{bench.REPO}/blobs/{digest} HTTP/1.1\r\nHost: {host}\r\n"
                "Connection: close\r\n\r\n".encode()
            )
            head = b""
            while b"\r\n\r\n" not in head:
                head += s.recv(65536)
            head, _, held = head.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200"), head[:40]
            h = _core.Sha256(held)
            os.write(fd, held)
            got, _ = _core.copy_hashed(h, s.fileno(), fd, size - len(held), bytearray(BUF), 30.0)
            assert got + len(held) == size
        assert f"sha256:{h.hexdigest()}" == digest
        return (time.thread_time() - t0) / (size / GiB), (bench.server_cpu(go) - go_cpu) / (
            size / GiB
        )
    finally:
        os.close(fd)
        path.unlink()


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds (user + system) of each live thread of ``pid``, from /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[str, float] = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(OSError):
            stat = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
            fields = stat[stat.rindex(")") + 2 :].split()
            out[tid] = (int(fields[11]) + int(fields[12])) / tick
    return out


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def med(xs: list[float]) -> float:
    return statistics.median(xs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mib", type=int, default=1024, help="the blob of the single cold pull")
    ap.add_argument("--shared-mib", type=int, default=256, help="the blob the clients share")
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--cores", type=int, default=os.cpu_count() or 1)
    args = ap.parse_args()
    size, shared_size = args.mib * MiB, args.shared_mib * MiB
    gib, shared_gib = size / GiB, shared_size / GiB
    loads = [loadavg()]
    r: dict[str, list[float]] = {}

    def rec(name: str, value: float) -> None:
        r.setdefault(name, []).append(value)

    with tempfile.TemporaryDirectory(prefix="proxy-floor-", dir=os.environ.get("BENCH_TMP")) as tmp:
        work = Path(tmp)
        up_root = work / "upstream"
        big_data = os.urandom(size)
        big = bench.seed_blob(up_root, bench.REPO, big_data)
        shared = bench.seed_blob(up_root, bench.REPO, os.urandom(shared_size))
        big_file = work / "big"
        big_file.write_bytes(big_data)
        del big_data
        shared_file = next(
            (up_root / "docker/registry/v2/blobs/sha256").glob(f"*/{shared[7:]}/data")
        )
        go = GoRegistry(up_root, work)
        go.start()
        host, port = go.url.removeprefix("http://").split(":")
        out = str(work / "out")
        try:
            for n in range(args.rounds):
                # 1. direct
                go_cpu = bench.server_cpu(go)
                wall, c = pull([f"{go.url}/v2/{bench.REPO}/blobs/{big}"], size, [out])
                rec("direct wall", wall)
                rec("direct go", (bench.server_cpu(go) - go_cpu) / gib)
                rec("direct curl", c / gib)
                # 2. relays
                for kind in ("splice", "copy"):
                    cpu = Cpu()
                    with listener(relay_to((host, int(port)), cpu, splice=kind == "splice")) as url:
                        go_cpu = bench.server_cpu(go)
                        wall, c = pull([f"{url}/v2/{bench.REPO}/blobs/{big}"], size, [out])
                        time.sleep(0.2)  # the relay threads see the client's close and stop
                    rec(f"relay {kind} wall", wall)
                    rec(f"relay {kind} cpu", cpu.seconds / gib)
                    rec(f"relay {kind} go", (bench.server_cpu(go) - go_cpu) / gib)
                    rec(f"relay {kind} curl", c / gib)
                # 3, 4, 5
                rec("sha native", sha_cpu(_core.load("native").Sha256, GiB))
                rec("sha hashlib", sha_cpu(hashlib.sha256, GiB))
                rec("page cache", page_cache_cpu(work, GiB))
                fill, fill_go = fill_cpu(go, big, size, work)
                rec("fill", fill)
                rec("fill go", fill_go)
                # 6. a minimal server sending from the page cache: one client, then many
                for mapped in (n % 2 == 0, n % 2 == 1):
                    how = "mapped" if mapped else "sendfile"
                    cpu = Cpu()
                    with listener(file_server(big_file, cpu, mapped=mapped)) as url:
                        wall, c = pull([url], size, [out])
                    rec(f"{how} 1 wall", wall)
                    rec(f"{how} 1 cpu", cpu.seconds / gib)
                    rec(f"{how} 1 curl", c / gib)
                    cpu = Cpu()
                    with listener(file_server(shared_file, cpu, mapped=mapped)) as url:
                        wall, c = pull([url], shared_size, [out])
                    rec(f"{how} shared 1 wall", wall)
                    cpu = Cpu()
                    with listener(file_server(shared_file, cpu, mapped=mapped)) as url:
                        outs = [out] + [os.devnull] * (args.clients - 1)
                        wall, c = pull([url] * args.clients, shared_size, outs)
                    rec(f"{how} many wall", wall)
                    rec(f"{how} many cpu", cpu.seconds / (args.clients * shared_gib))
                    rec(f"{how} many curl", c / (args.clients * shared_gib))
                # 7. ocistore, cold, one client
                for blob, bsize, key in (
                    (big, size, "ocistore cold"),
                    (shared, shared_size, "ocistore cold shared"),
                ):
                    server = bench.start_proxy("ocistore", work, go, 1000 + n)
                    try:
                        assert server.proc is not None
                        s_cpu, t_cpu = bench.server_cpu(server), thread_cpu(server.proc.pid)
                        wall, c = pull([f"{server.url}/v2/{bench.REPO}/blobs/{blob}"], bsize, [out])
                        rec(f"{key} wall", wall)
                        rec(f"{key} cpu", (bench.server_cpu(server) - s_cpu) / (bsize / GiB))
                        if blob == big:  # its three busiest threads, most first
                            after = thread_cpu(server.proc.pid)
                            busy = sorted(
                                (after[t] - t_cpu.get(t, 0.0) for t in after), reverse=True
                            )
                            for i, v in enumerate((busy + [0.0] * 3)[:3]):
                                rec(f"ocistore cold thread {i + 1}", v / gib)
                    finally:
                        server.stop()
                        shutil.rmtree(work / f"ocistore-root-{1000 + n}", ignore_errors=True)
                loads.append(loadavg())
                print(f"round {n + 1} done, load average {loads[-1]}", flush=True)
        finally:
            go.stop()

    m = {k: med(v) for k, v in r.items()}
    cores = args.cores
    print(f"\nload average: {' -> '.join(loads)}; {cores} cores; medians of {args.rounds} rounds")
    print("\nCPU seconds per GiB (medians):")
    rows = [
        ("direct pull: Go upstream sending (sendfile)", m["direct go"]),
        ("direct pull: curl receiving (into a file)", m["direct curl"]),
        ("relay hop, splice (relay thread)", m["relay splice cpu"]),
        ("relay hop, recv + send (relay thread)", m["relay copy cpu"]),
        ("SHA-256, native core", m["sha native"]),
        ("SHA-256, hashlib", m["sha hashlib"]),
        ("write into the page cache", m["page cache"]),
        ("fill: socket -> hash -> file (copy_hashed)", m["fill"]),
        ("fill: the Go upstream sending to it", m["fill go"]),
    ]
    for how in ("mapped", "sendfile"):
        rows += [
            (f"{how}: server sending to 1 curl", m[f"{how} 1 cpu"]),
            (f"{how}: that curl receiving (into a file)", m[f"{how} 1 curl"]),
            (f"{how}: server sending to {args.clients} curls", m[f"{how} many cpu"]),
            (
                f"{how}: {args.clients} curls receiving (1 file, rest /dev/null)",
                m[f"{how} many curl"],
            ),
        ]
    rows.append(("ocistore proxy, cold 1 client (server)", m["ocistore cold cpu"]))
    rows += [
        (f"  its thread {i} (busiest first)", m[f"ocistore cold thread {i}"]) for i in (1, 2, 3)
    ]
    for name, v in rows:
        print(f"  {name:58s} {v:5.2f}")
    print("\nWall seconds (medians):")
    for name in (
        "direct wall",
        "relay splice wall",
        "relay copy wall",
        "mapped 1 wall",
        "sendfile 1 wall",
        "ocistore cold wall",
        "mapped shared 1 wall",
        "sendfile shared 1 wall",
        "ocistore cold shared wall",
        "mapped many wall",
        "sendfile many wall",
    ):
        print(f"  {name:30s} {m[name]:6.2f}")

    # The cheaper way to send from the page cache, counting the sender and the receiver.
    def both(k: str) -> float:
        return m[f"{k} cpu"] + m[f"{k} curl"]

    one_how = min(("mapped", "sendfile"), key=lambda h: both(f"{h} 1"))
    many_how = min(("mapped", "sendfile"), key=lambda h: both(f"{h} many"))

    # (a) one cold pull. curl is one thread: its CPU is a serial bound of both pulls.
    direct = m["direct wall"]
    go, client = m["direct go"], m["direct curl"]
    direct_floor = max(client, (go + client) / cores) * gib
    up, fill = m["fill go"], m["fill"]
    send, recv = m[f"{one_how} 1 cpu"], m[f"{one_how} 1 curl"]
    must = up + fill + send + recv
    floor_a = max(recv, fill, must / cores) * gib
    ideal = max(recv, m["sha native"], (up + m["sha native"] + send + recv) / cores) * gib
    print(f"\n(a) cold pull of {args.mib} MiB, CPU s/GiB of the work that must happen:")
    print(
        f"  direct: upstream {go:.2f} + client {client:.2f} = {go + client:.2f};"
        f" floor max(client, sum / {cores}) = {direct_floor:.2f} s, measured {direct:.2f} s"
    )
    print(
        f"  cold: upstream {up:.2f} + fill (read, hash, write: one thread) {fill:.2f}"
        f" + send ({one_how}) {send:.2f} + client {recv:.2f} = {must:.2f};"
        f" floor max(client, fill, sum / {cores}) = {floor_a:.2f} s"
    )
    print(
        f"  best possible direct/cold: {direct / floor_a:.2f} against the measured direct pull,"
        f" {direct_floor / floor_a:.2f} floor against floor (target 0.90)"
    )
    print(
        f"  a proxy whose only work were the SHA-256 (receive and store free): floor"
        f" {ideal:.2f} s -> {direct / ideal:.2f} against the measured direct,"
        f" {direct_floor / ideal:.2f} floor against floor"
    )
    print(
        f"  measured direct/this: relay splice {direct / m['relay splice wall']:.2f},"
        f" relay recv+send {direct / m['relay copy wall']:.2f},"
        f" minimal server (warm, mapped) {direct / m['mapped 1 wall']:.2f},"
        f" ocistore cold {direct / m['ocistore cold wall']:.2f}"
    )
    # (b) many clients, one cold blob
    one = m["ocistore cold shared wall"]
    total = args.clients * shared_gib
    per = both(f"{many_how} many")
    need = total * per + shared_gib * (up + fill)
    floor_b = need / cores
    fastest = min(m["mapped shared 1 wall"], m["sendfile shared 1 wall"])
    print(
        f"\n(b) {args.clients} clients, one cold {args.shared_mib} MiB blob ({total:.0f} GiB sent):"
    )
    print(
        f"  sends + receives ({many_how}) {total:.0f} x {per:.2f} + one fill {shared_gib:.2f} x"
        f" {up + fill:.2f} = {need:.2f} CPU s -> floor {floor_b:.2f} s on {cores} cores"
    )
    print(
        f"  target 1.2 x one cold pull: 1.2 x {one:.2f} = {1.2 * one:.2f} s (ocistore, this run);"
        f" floor / one cold pull = {floor_b / one:.2f} (target 1.2)"
    )
    print(
        f"  with the fastest single pull here (minimal server, warm) 1.2 x {fastest:.2f}"
        f" = {1.2 * fastest:.2f} s; measured: {args.clients} curls from the minimal server"
        f" {m['mapped many wall']:.2f} s (mapped), {m['sendfile many wall']:.2f} s (sendfile)"
    )


if __name__ == "__main__":
    main()
