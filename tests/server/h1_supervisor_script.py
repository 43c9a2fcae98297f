"""A process for ``test_h1_supervisor.py`` to supervise: its workers answer each connection with their pid.

Run as ``python h1_supervisor_script.py MODE --workers N [--grace S] [--respawn-delay S]
[--ignore-chld]``. The supervisor forks, so it runs in a process of its own,
never inside pytest. MODE picks the worker:

- ``serve``: accepts, answers its pid and a newline, then holds the
  connection until the client closes it; SIGTERM or SIGINT end it. A worker
  serves one connection at a time, so N connections held open together reach
  N different workers.
- ``stubborn``: the same, but ignores SIGTERM and SIGINT (only SIGKILL ends it).
- ``crash``: raises at once, like a worker that cannot start.

Prints ``port N`` once listening, and after ``supervise`` returns:
``status N``, ``children PID,...`` (its children still unreaped, zombies
included) and ``restored True|False`` (signal mask and handlers as before).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import sys
from pathlib import Path
from types import FrameType

from ocistore.server.h1.supervisor import supervise


def processes_where(field: int, value: int) -> list[int]:
    """Processes (zombies included, from ``/proc``) whose stat field ``field`` is ``value``.

    Fields count after the command name: 1 is the parent pid, 2 the process group.
    """
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # ended meanwhile
        # "pid (comm) state ppid pgrp ...": comm may hold spaces and parentheses
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[field]) == value:
            found.append(int(entry.name))
    return sorted(found)


def children_of(pid: int) -> list[int]:
    """Processes whose parent is ``pid``."""
    return processes_where(1, pid)


def _stop(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


def _answer(sock: socket.socket) -> None:
    while True:
        conn, _ = sock.accept()
        with conn:
            conn.sendall(f"{os.getpid()}\n".encode())
            conn.recv(1)


def serve(sock: socket.socket) -> None:
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    _answer(sock)


def stubborn(sock: socket.socket) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _answer(sock)


def crash(sock: socket.socket) -> None:
    raise RuntimeError("this worker cannot start")


def _signal_state() -> tuple[object, ...]:
    handlers = tuple(signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD))
    return (*handlers, frozenset(signal.pthread_sigmask(signal.SIG_BLOCK, [])))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["serve", "stubborn", "crash"])
    parser.add_argument("--workers", type=int, required=True)
    parser.add_argument("--grace", type=float, default=10.0)
    parser.add_argument("--respawn-delay", type=float, default=0.1)
    parser.add_argument("--ignore-chld", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.DEBUG, format="%(levelname)s %(name)s: %(message)s")
    if args.ignore_chld:
        signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    before = _signal_state()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    print("port", sock.getsockname()[1], flush=True)
    status = supervise(
        sock,
        args.workers,
        {"serve": serve, "stubborn": stubborn, "crash": crash}[args.mode],
        grace=args.grace,
        respawn_delay=args.respawn_delay,
    )
    print("status", status)
    print("children", ",".join(map(str, children_of(os.getpid()))))
    print("restored", _signal_state() == before, flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
