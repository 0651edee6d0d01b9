"""Progress bars (rich) on standard error for the long commands: synth, process, evaluate,
train. The library reports through a plain ``report(stage, done, total)``
(:mod:`unitumour_dicom.progress`); this, the commands' terminal side, turns the reports into
one bar per stage. No library function imports it.

Bars are drawn only when standard error is a terminal, and never with ``--no-progress`` or
``--json``; ``UNITUMOUR_PROGRESS=1`` (or ``0``) forces them on (or off) whatever the rest says.
Standard output is never written to, so ``--json`` output stays one JSON document.

It lives outside ``unitumour_dicom.cli`` (whose package imports the whole command tree) and
imports only the standard library at import time, because ``train.command`` uses it on
training hosts that have neither the settings nor the database layer; rich comes with typer
and is imported when a bar is drawn.
"""

from __future__ import annotations

import os
import sys
from types import TracebackType
from typing import Any

#: Forces bars on (1, true, yes, on) or off (0, false, no, off).
PROGRESS_ENV = "UNITUMOUR_PROGRESS"


def progress_wanted(*, no_progress: bool = False, as_json: bool = False) -> bool:
    """Whether to draw bars: never with --no-progress; else as the environment forces; else
    on a terminal, unless the output is JSON."""
    if no_progress:
        return False
    forced = os.environ.get(PROGRESS_ENV, "").strip().lower()
    if forced in ("1", "true", "yes", "on"):
        return True
    if forced in ("0", "false", "no", "off"):
        return False
    if as_json:
        return False
    return sys.stderr.isatty()


class Bars:
    """One bar per stage on standard error while in use; a no-op when not enabled.

    Called as ``bars(stage, done, total)``, so it is a :data:`~unitumour_dicom.progress.
    StageProgress`; :meth:`echo` prints a line on standard error above the bars."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._progress: Any = None
        self._tasks: dict[str, Any] = {}

    def __enter__(self) -> Bars:
        if self.enabled:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self._progress = Progress(
                TextColumn("{task.description:<12}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=Console(stderr=True),
                redirect_stdout=False,  # standard output is the command's, bars or not
                redirect_stderr=False,
            )
            self._progress.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def __call__(self, stage: str, done: int, total: int | None) -> None:
        if self._progress is None:
            return
        task = self._tasks.get(stage)
        if task is None:
            task = self._tasks[stage] = self._progress.add_task(stage, total=total)
        self._progress.update(task, completed=done, total=total)

    def echo(self, message: str) -> None:
        """A line on standard error: above the bars while they are drawn."""
        if self._progress is not None:
            self._progress.console.print(message, markup=False, highlight=False)
        else:
            print(message, file=sys.stderr, flush=True)
