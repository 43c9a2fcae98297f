"""Progress bars and JSON summaries for the maintenance commands (scrub, du, export, import).

Progress goes to stderr through ``tqdm`` (chosen because it is small, has no
dependencies and is already in most environments), and only when stderr is a
terminal and the command was not asked for ``--json``: a pipe or a log file
gets the summary and nothing else. ``--json`` prints one JSON object on
stdout, so a script can ``json.loads`` the whole output.
"""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Mapping
from types import TracebackType
from typing import Any, TextIO

__all__ = ["Progress", "emit_json", "human_bytes", "progress"]


class Progress:
    """A counter with a bar on a terminal (tqdm) or none; safe to update from several threads."""

    def __init__(
        self, description: str, *, total: int | None, unit: str, enabled: bool, scale: bool
    ) -> None:
        self._lock = threading.Lock()
        self._bar: Any = None
        if enabled:
            from tqdm import tqdm

            self._bar = tqdm(
                desc=description,
                total=total,
                unit=unit,
                unit_scale=scale,
                unit_divisor=1024 if scale else 1000,
                file=sys.stderr,
                dynamic_ncols=True,
                leave=True,
            )

    def update(self, n: int = 1) -> None:
        """Advance by ``n`` units."""
        if self._bar is not None:
            with self._lock:
                self._bar.update(n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def progress(
    description: str,
    *,
    total: int | None = None,
    unit: str = "it",
    enabled: bool = True,
    scale: bool = False,
    stream: TextIO | None = None,
) -> Progress:
    """A :class:`Progress`, shown only when ``enabled`` and ``stream`` (stderr) is a terminal.

    ``scale=True`` counts bytes (shown as KiB, MiB, ...).
    """
    out = stream if stream is not None else sys.stderr
    shown = enabled and out.isatty()
    return Progress(description, total=total, unit=unit, enabled=shown, scale=scale)


def emit_json(summary: Mapping[str, Any], stream: TextIO | None = None) -> None:
    """Print ``summary`` as one JSON object (keys sorted, a newline at the end)."""
    out = stream if stream is not None else sys.stdout
    out.write(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    out.flush()


def human_bytes(n: int) -> str:
    """``n`` bytes in binary units with one decimal (``1.5 MiB``); plain bytes below 1 KiB."""
    if n < 1024:
        return f"{n} B"
    value = float(n)
    for unit in ("KiB", "MiB", "GiB", "TiB", "PiB"):
        value /= 1024
        if value < 1024 or unit == "PiB":
            return f"{value:.1f} {unit}"
    raise AssertionError("unreachable")  # pragma: no cover
