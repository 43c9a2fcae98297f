"""Running one worker function in several forked processes that share one listening socket.

``ocistore serve --workers N`` binds its socket in the parent, then forks N
workers that all accept on the inherited socket: the kernel hands each new
connection to one worker blocked in ``accept``. Binding once, without
``SO_REUSEPORT``, means a busy address fails before any worker starts, and a
second server can never quietly share the port (and split uploads between
two upload-token secrets).

The parent only watches. It blocks SIGCHLD, SIGTERM and SIGINT and takes
them with ``sigtimedwait`` instead of running handlers: no handler can fire
in the middle of the bookkeeping, a signal that arrives between two waits
stays pending rather than getting lost, and the wait's timeout is the next
respawn, so the loop sleeps until something happens (no polling). Children
are reaped by pid (``waitpid(pid, WNOHANG)`` for each known worker), so a
coalesced SIGCHLD loses nothing and children the caller made otherwise are
left alone.

Call :func:`supervise` from the main thread *before the process starts any
thread*: a signal mask is per thread, so a thread that does not block these
signals could take them instead of the supervisor's wait, and ``fork`` copies
only the calling thread, so a lock some other thread held at that moment
stays locked forever in every worker. Linux only (``sigtimedwait``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Final, NoReturn

__all__ = ["CRASH_LIMIT", "STABLE_AFTER", "supervise"]

log = logging.getLogger("ocistore.server")

CRASH_LIMIT: Final = 5
"""Workers in a row that may die young before the supervisor gives up and returns 1.

A worker that cannot start (a bad configuration, an unwritable root, a
missing module) would otherwise be forked again every ``respawn_delay``
seconds forever, filling the log while serving nothing.
"""

STABLE_AFTER: Final = 10.0
"""Seconds a worker must live to count as started; one that does resets the crash count."""

_SHUTDOWN: Final = frozenset({signal.SIGTERM, signal.SIGINT})
_WATCHED: Final = frozenset({signal.SIGCHLD, signal.SIGTERM, signal.SIGINT})


def supervise(
    sock: socket.socket,
    workers: int,
    worker_main: Callable[[socket.socket], None],
    *,
    grace: float = 30.0,
    respawn_delay: float = 1.0,
) -> int:
    """Run worker_main(sock) in `workers` forked processes until SIGTERM/SIGINT; return an exit status.

    With ``workers <= 1`` there is nothing to supervise: ``worker_main`` runs
    in this process (and handles its own signals), and the status is 0 when
    it returns. Otherwise a worker that dies is logged and replaced after
    ``respawn_delay`` seconds; SIGTERM or SIGINT sends SIGTERM to every
    worker, waits up to ``grace`` seconds for them, SIGKILLs the rest, and
    returns 0. When :data:`CRASH_LIMIT` workers in a row die within
    :data:`STABLE_AFTER` seconds of starting (and no worker reaches that age
    in between), the others are stopped the same way and 1 is returned.
    Every worker is reaped before this returns, and the signal mask and
    SIGCHLD disposition are as they were. See the module docstring for why
    no thread may run when this is called.
    """
    if workers <= 1:
        worker_main(sock)
        return 0
    return _Supervisor(sock, workers, worker_main, grace=grace, respawn_delay=respawn_delay).run()


@dataclass(slots=True)
class _Worker:
    started: float
    """``time.monotonic()`` when it was forked."""
    proven: bool = False
    """Whether it has been seen alive at :data:`STABLE_AFTER` seconds of age."""


class _Supervisor:
    """The parent's state: live workers, pending respawns, and the count of young deaths."""

    def __init__(
        self,
        sock: socket.socket,
        workers: int,
        worker_main: Callable[[socket.socket], None],
        *,
        grace: float,
        respawn_delay: float,
    ) -> None:
        self._sock = sock
        self._size = workers
        self._worker_main = worker_main
        self._grace = grace
        self._respawn_delay = respawn_delay
        self._workers: dict[int, _Worker] = {}
        self._respawn_at: list[float] = []
        self._young_deaths = 0
        self._stopping = False
        self._failed = False
        self._caller_mask: frozenset[int] = frozenset()

    def run(self) -> int:
        """Block the watched signals, supervise, and leave the process as it was found."""
        if threading.active_count() > 1:
            log.warning(
                "forking %d workers while %d threads run: locks they hold stay locked "
                "in the workers, and they may take the supervisor's signals",
                self._size,
                threading.active_count() - 1,
            )
        self._caller_mask = frozenset(signal.pthread_sigmask(signal.SIG_BLOCK, _WATCHED))
        # An ignored SIGCHLD makes the kernel reap children itself, and waitpid
        # could then never report a worker's exit.
        old_chld = signal.getsignal(signal.SIGCHLD)
        if old_chld == signal.SIG_IGN:
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        try:
            self._supervise()
            self._stop_all()
        finally:
            if self._workers:  # only when the supervisor itself failed
                self._kill_and_reap()
            # A second SIGTERM or Ctrl-C during the shutdown was part of the same
            # request to stop: unblocked, it would kill the caller after the fact.
            _drain()
            if old_chld == signal.SIG_IGN:
                signal.signal(signal.SIGCHLD, signal.SIG_IGN)
            signal.pthread_sigmask(signal.SIG_SETMASK, self._caller_mask)
        return 1 if self._failed else 0

    def _supervise(self) -> None:
        """Keep the pool full until a shutdown signal or too many young deaths."""
        for _ in range(self._size):
            self._spawn()
        while not self._stopping:
            timeout = None
            if self._respawn_at:
                timeout = max(0.0, min(self._respawn_at) - time.monotonic())
            received = _wait(timeout)
            if received & _SHUTDOWN:
                self._stopping = True
                log.info(
                    "received %s: stopping %d workers",
                    _names(received & _SHUTDOWN),
                    len(self._workers),
                )
            self._note_proven()
            for pid, status in self._reap():
                self._died(pid, status)
            if self._stopping:
                return
            now = time.monotonic()
            due = [t for t in self._respawn_at if t <= now]
            self._respawn_at = [t for t in self._respawn_at if t > now]
            for _ in due:
                self._spawn()

    def _spawn(self) -> None:
        """Fork one worker; a failed fork counts as a worker that died young."""
        if self._stopping:
            return
        try:
            pid = os.fork()
        except OSError:
            log.exception("could not fork a worker")
            self._young_deaths += 1
            self._replace_or_give_up()
            return
        if pid == 0:
            _worker_process(self._sock, self._worker_main, self._caller_mask)
        self._workers[pid] = _Worker(time.monotonic())
        log.info("worker %d started", pid)

    def _note_proven(self) -> None:
        """Reset the crash count once any worker has lived :data:`STABLE_AFTER` seconds.

        Checked at each wake-up rather than on a timer: a worker that reached
        that age before a later death was noticed is seen here first, so the
        order of the two events is kept.
        """
        now = time.monotonic()
        for worker in self._workers.values():
            if not worker.proven and now - worker.started >= STABLE_AFTER:
                worker.proven = True
                self._young_deaths = 0

    def _died(self, pid: int, status: int | None) -> None:
        """Log a worker's end; replace it, unless stopping or it was one young death too many."""
        worker = self._workers.pop(pid)
        if self._stopping:
            log.debug("worker %d %s", pid, _describe(status))
            return
        age = time.monotonic() - worker.started
        if age >= STABLE_AFTER:
            self._young_deaths = 0
        else:
            self._young_deaths += 1
        replace = self._young_deaths < CRASH_LIMIT
        log.warning(
            "worker %d %s after %.1f s%s",
            pid,
            _describe(status),
            age,
            f"; starting another in {self._respawn_delay:g} s" if replace else "",
        )
        self._replace_or_give_up()

    def _replace_or_give_up(self) -> None:
        """Schedule a new worker, or stop everything after :data:`CRASH_LIMIT` young deaths."""
        if self._young_deaths < CRASH_LIMIT:
            self._respawn_at.append(time.monotonic() + self._respawn_delay)
            return
        log.error(
            "%d workers in a row died within %g s of starting: giving up",
            self._young_deaths,
            STABLE_AFTER,
        )
        self._failed = True
        self._stopping = True
        self._respawn_at.clear()

    def _stop_all(self) -> None:
        """SIGTERM every worker, wait up to the grace period, then SIGKILL what is left.

        Further SIGTERMs or Ctrl-Cs during the wait change nothing: with
        Ctrl-C the workers got SIGINT from the terminal too and are already
        stopping; killing them early would cut off requests still in flight.
        """
        self._respawn_at.clear()
        for pid in self._workers:
            _signal(pid, signal.SIGTERM)
        deadline = time.monotonic() + self._grace
        while self._workers:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            received = _wait(remaining)
            if received & _SHUTDOWN:
                log.info(
                    "received %s while stopping: still waiting for %d workers",
                    _names(received & _SHUTDOWN),
                    len(self._workers),
                )
            for pid, status in self._reap():
                self._died(pid, status)
        if self._workers:
            log.warning(
                "workers %s did not stop within %g s: killing them",
                ", ".join(map(str, self._workers)),
                self._grace,
            )
            self._kill_and_reap()

    def _kill_and_reap(self) -> None:
        for pid in self._workers:
            _signal(pid, signal.SIGKILL)
        for pid in list(self._workers):
            try:
                _, status = os.waitpid(pid, 0)
            except ChildProcessError:
                self._workers.pop(pid)
            else:
                self._died(pid, status)

    def _reap(self) -> list[tuple[int, int | None]]:
        """The workers that have ended, with their wait status (None when someone else reaped it)."""
        ended: list[tuple[int, int | None]] = []
        for pid in self._workers:
            try:
                done, status = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                ended.append((pid, None))
                continue
            if done:
                ended.append((pid, status))
        return ended


def _worker_process(
    sock: socket.socket,
    worker_main: Callable[[socket.socket], None],
    mask: Iterable[int],
) -> NoReturn:
    """A forked worker's whole life: it never returns into the supervisor's code.

    The default dispositions come back first (the worker installs its own
    handling), then the caller's signal mask, which the supervisor had
    widened. ``os._exit`` skips ``atexit`` handlers and buffered output that
    belong to the parent, so the standard streams are flushed by hand.
    """
    status = 1
    try:
        for signum in _WATCHED:
            signal.signal(signum, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        worker_main(sock)
        status = 0
    except SystemExit as exc:
        status = _exit_status(exc)
    except KeyboardInterrupt:
        status = 0  # the worker let Ctrl-C end it: that is how it was asked to stop
    except BaseException:
        log.exception("worker %d failed", os.getpid())
    finally:
        for stream in (sys.stdout, sys.stderr):
            if stream is not None:
                with contextlib.suppress(Exception):
                    stream.flush()
        os._exit(status)


def _exit_status(exc: SystemExit) -> int:
    """What the interpreter itself would exit with for ``exc``."""
    if exc.code is None:
        return 0
    if isinstance(exc.code, int):
        return exc.code
    log.error("worker %d exited: %s", os.getpid(), exc.code)
    return 1


def _wait(timeout: float | None) -> set[int]:
    """Sleep until a watched signal arrives (or ``timeout``), then take every pending one."""
    if timeout is None:
        info = signal.sigwaitinfo(_WATCHED)
        received = {info.si_signo}
    else:
        first = signal.sigtimedwait(_WATCHED, timeout)
        if first is None:
            return set()
        received = {first.si_signo}
    received |= _drain()
    return received


def _drain() -> set[int]:
    """Take the watched signals that are pending now, without waiting."""
    received: set[int] = set()
    while (info := signal.sigtimedwait(_WATCHED, 0)) is not None:
        received.add(info.si_signo)
    return received


def _signal(pid: int, signum: signal.Signals) -> None:
    # A worker that has exited but is not reaped yet still takes signals
    # harmlessly; only one reaped behind our back is gone.
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)


def _names(signums: Iterable[int]) -> str:
    return " and ".join(sorted(signal.Signals(s).name for s in signums))


def _describe(status: int | None) -> str:
    if status is None:
        return "ended (reaped elsewhere, status unknown)"
    code = os.waitstatus_to_exitcode(status)
    if code < 0:
        return f"was killed by {signal.Signals(-code).name}"
    return f"exited with status {code}"
