"""Progress of long library calls, reported through a plain callable: the library never
draws, it calls ``report(stage, done, total)`` (``total`` None when unknown) and the caller
shows it as it likes (the commands draw bars on standard error: unitumour_dicom.progress_bars).

Older calls take ``progress(done, total)`` for their one stage; :func:`for_stage` adapts a
stage report to that shape.
"""

from __future__ import annotations

from collections.abc import Callable

#: ``report(stage, done, total)``: ``done`` of ``total`` units of ``stage`` are finished.
StageProgress = Callable[[str, int, int | None], None]


def for_stage(report: StageProgress | None, stage: str) -> Callable[[int, int], None] | None:
    """``report`` as a ``progress(done, total)`` callback of one stage (None stays None)."""
    if report is None:
        return None

    def progress(done: int, total: int) -> None:
        report(stage, done, total)

    return progress
