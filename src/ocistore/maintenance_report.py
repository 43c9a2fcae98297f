"""Progress bars and reports shared by the maintenance commands (``ocistore gc``, ...).

:func:`progress` gives a per-phase bar (``rich``) with counts and bytes when
stderr is a terminal, and an object that draws nothing otherwise, so a
command's output stays parseable when piped or with ``--json``.
"""

from __future__ import annotations

import json
import sys
from typing import IO, Any

__all__ = ["TerminalProgress", "print_json", "progress"]


class _Silent:
    def phase(self, name: str, total: int | None) -> None:
        pass

    def advance(self, count: int = 1, nbytes: int = 0) -> None:
        pass

    def finish(self) -> None:
        pass


class TerminalProgress:
    """One ``rich`` bar per phase: ``name``, done/total, bytes and elapsed time."""

    def __init__(self, stream: IO[str]) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        self._progress = Progress(
            TextColumn("{task.description:<16}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[size]}"),
            TimeElapsedColumn(),
            console=Console(file=stream),
            transient=False,
        )
        self._task: Any = None
        self._bytes = 0
        self._progress.start()

    def phase(self, name: str, total: int | None) -> None:
        self._bytes = 0
        self._task = self._progress.add_task(name, total=total, size="")

    def advance(self, count: int = 1, nbytes: int = 0) -> None:
        if self._task is None:
            return
        self._bytes += nbytes
        size = _human(self._bytes) if self._bytes else ""
        self._progress.update(self._task, advance=count, size=size)

    def finish(self) -> None:
        self._progress.stop()


def _human(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024:
            return f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


def progress(enabled: bool, stream: IO[str] | None = None) -> TerminalProgress | _Silent:
    """A terminal progress display if ``enabled`` and ``stream`` (stderr) is a TTY, else a silent one."""
    out = stream if stream is not None else sys.stderr
    if enabled and out.isatty():
        return TerminalProgress(out)
    return _Silent()


def print_json(doc: object, stream: IO[str] | None = None) -> None:
    """One JSON document on stdout (or ``stream``), keys sorted, newline-terminated."""
    out = stream if stream is not None else sys.stdout
    out.write(json.dumps(doc, sort_keys=True) + "\n")
    out.flush()
