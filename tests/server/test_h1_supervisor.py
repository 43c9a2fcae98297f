"""``supervise``: N forked workers on one socket, respawned when they die, stopped on SIGTERM/SIGINT.

The supervisor forks, so each multi-worker test runs it in a process of its
own (``h1_supervisor_script.py``) and watches it from outside: the pids its
workers answer with, its children in ``/proc``, its log and exit status.
Nothing here depends on the hashing core, so the tests run once.
"""

from __future__ import annotations

import os
import selectors
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ocistore.server.h1.supervisor import CRASH_LIMIT, supervise
from waiting import wait_until

from .h1_supervisor_script import children_of

pytestmark = pytest.mark.one_core

SCRIPT = Path(__file__).with_name("h1_supervisor_script.py")
WAIT = 10.0
"""Generous bound for anything to happen; never a measure of speed."""


@dataclass
class Run:
    """One supervisor process and the port its workers accept on."""

    proc: subprocess.Popen[str]
    port: int

    def finish(self) -> tuple[int, dict[str, str], str]:
        """Wait for the exit: the status, the script's closing report, and the log."""
        out, err = self.proc.communicate(timeout=60)
        report = dict(line.partition(" ")[::2] for line in out.splitlines())
        return self.proc.returncode, report, err


@pytest.fixture
def run_supervisor() -> Iterator[Callable[..., Run]]:
    started: list[subprocess.Popen[str]] = []

    def start(mode: str, *, workers: int, **options: object) -> Run:
        argv = [sys.executable, str(SCRIPT), mode, "--workers", str(workers)]
        for name, value in options.items():
            flag = "--" + name.replace("_", "-")
            argv += [flag] if value is True else [flag, str(value)]
        proc = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # its own process group, for the Ctrl-C test
        )
        started.append(proc)
        assert proc.stdout is not None
        with selectors.DefaultSelector() as sel:
            sel.register(proc.stdout, selectors.EVENT_READ)
            assert sel.select(WAIT), "the supervisor script did not start listening"
        word, _, port = proc.stdout.readline().partition(" ")
        assert word == "port", proc.communicate()
        return Run(proc, int(port))

    yield start
    for proc in started:
        if proc.poll() is None:  # a failed test: leave nothing behind
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()


def ask_pids(port: int, connections: int) -> list[int]:
    """The pids answering ``connections`` connections held open together.

    A worker holds its connection until the client closes it, so each one
    is answered by a different worker (a worker still starting takes its
    connection from the backlog once it accepts).
    """
    socks = [
        socket.create_connection(("127.0.0.1", port), timeout=WAIT) for _ in range(connections)
    ]
    try:
        pids = []
        for sock in socks:
            data = b""
            while not data.endswith(b"\n"):
                chunk = sock.recv(64)
                assert chunk, "the worker closed the connection without its pid"
                data += chunk
            pids.append(int(data))
        return pids
    finally:
        for sock in socks:
            sock.close()


def gone(pid: int) -> bool:
    """The process has ended and been reaped (a zombie still has its /proc entry)."""
    return not Path(f"/proc/{pid}").exists()


def workers_of(run: Run, count: int) -> list[int]:
    """The supervisor's ``count`` live workers, once it has them all."""
    wait_until(lambda: len(children_of(run.proc.pid)) == count, f"{count} workers run")
    return children_of(run.proc.pid)


def assert_clean_exit(run: Run, workers: list[int], status: int = 0) -> str:
    returncode, report, log = run.finish()
    assert returncode == status, log
    assert report["status"] == str(status)
    assert report["children"] == "", log  # every worker reaped before supervise returned
    assert report["restored"] == "True"
    assert all(gone(pid) for pid in workers)
    return log


def test_each_worker_answers_on_the_shared_socket(run_supervisor: Callable[..., Run]) -> None:
    run = run_supervisor("serve", workers=3)
    workers = workers_of(run, 3)
    pids = ask_pids(run.port, 3)
    assert sorted(pids) == workers
    assert run.proc.pid not in pids
    run.proc.send_signal(signal.SIGTERM)
    log = assert_clean_exit(run, workers)
    assert "received SIGTERM: stopping 3 workers" in log
    assert "starting another" not in log


def test_a_killed_worker_is_replaced(run_supervisor: Callable[..., Run]) -> None:
    run = run_supervisor("serve", workers=2, respawn_delay=0.2)
    first = workers_of(run, 2)
    victim = first[0]
    os.kill(victim, signal.SIGKILL)
    wait_until(lambda: victim not in children_of(run.proc.pid), "the killed worker is gone")
    now = workers_of(run, 2)
    assert victim not in now
    pids = ask_pids(run.port, 2)
    assert sorted(pids) == now
    assert set(pids) - set(first), "no new worker answered"
    run.proc.send_signal(signal.SIGTERM)
    log = assert_clean_exit(run, [*now, victim])
    assert f"worker {victim} was killed by SIGKILL" in log
    assert "starting another in 0.2 s" in log


def test_ctrl_c_stops_the_process_group_cleanly(run_supervisor: Callable[..., Run]) -> None:
    run = run_supervisor("serve", workers=2)
    workers = workers_of(run, 2)
    assert sorted(ask_pids(run.port, 2)) == workers
    # What a terminal's Ctrl-C does: SIGINT to the supervisor and every worker.
    os.killpg(run.proc.pid, signal.SIGINT)
    log = assert_clean_exit(run, workers)
    assert "received SIGINT" in log
    assert "starting another" not in log  # the workers' own exits are not deaths
    assert "killing them" not in log


def test_a_worker_ignoring_sigterm_is_killed_after_the_grace(
    run_supervisor: Callable[..., Run],
) -> None:
    run = run_supervisor("stubborn", workers=2, grace=1)
    workers = workers_of(run, 2)
    assert sorted(ask_pids(run.port, 2)) == workers
    run.proc.send_signal(signal.SIGTERM)
    run.proc.send_signal(signal.SIGTERM)  # a second one does not hurry the kill
    log = assert_clean_exit(run, workers)
    assert "did not stop within 1 s: killing them" in log


def test_a_worker_that_cannot_start_stops_the_supervisor(
    run_supervisor: Callable[..., Run],
) -> None:
    run = run_supervisor("crash", workers=2, respawn_delay=0.05)
    log = assert_clean_exit(run, [], status=1)
    assert "RuntimeError: this worker cannot start" in log
    assert f"{CRASH_LIMIT} workers in a row died within" in log
    # Two at first, then one replacement per death until the limit.
    assert log.count(" started") <= CRASH_LIMIT + 1


def test_workers_are_reaped_even_when_the_caller_ignores_sigchld(
    run_supervisor: Callable[..., Run],
) -> None:
    # An ignored SIGCHLD would let the kernel reap workers before waitpid saw them.
    run = run_supervisor("serve", workers=2, ignore_chld=True)
    victim = workers_of(run, 2)[0]
    os.kill(victim, signal.SIGKILL)
    wait_until(lambda: victim not in children_of(run.proc.pid), "the killed worker is gone")
    workers = workers_of(run, 2)
    assert victim not in workers
    run.proc.send_signal(signal.SIGTERM)
    log = assert_clean_exit(run, [*workers, victim])
    assert f"worker {victim} was killed by SIGKILL" in log


def test_one_worker_runs_in_this_process() -> None:
    calls: list[tuple[int, socket.socket]] = []
    handlers = [signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD)]
    with socket.socket() as sock:
        assert supervise(sock, 1, lambda s: calls.append((os.getpid(), s))) == 0
        assert calls == [(os.getpid(), sock)]
        assert supervise(sock, 0, lambda s: calls.append((os.getpid(), s))) == 0
        assert len(calls) == 2

        def fail(s: socket.socket) -> None:
            raise OSError("no")

        with pytest.raises(OSError, match="no"):
            supervise(sock, 1, fail)
    assert handlers == [
        signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD)
    ]
