"""Liveness files: a long-running process proves it still makes progress by touching a file.

An orchestrator restarts what its probe says is dead. A process that merely exists proves
nothing: a segmentation worker stuck in a CUDA call holds its GPU forever while its lease
keeper thread goes on renewing the job. So the beats come from where the work happens:

- a segmentation worker beats at every stage boundary and after every inference batch (the
  points where :func:`~unitumour_dicom.pipeline.process_slide` asks whether to stop: its
  ``stop_requested`` event is a :class:`ProgressEvent`), and from a thread only while idle;
- the listener and the delivery pool beat from their main loops.

``unitumour health worker|listener --max-age S`` (an exec probe) fails when a file is older
than ``S`` or missing. Files live in ``liveness_dir`` (per pod or host, never the shared
store): ``listener.alive``, ``segmentation0.alive``, ``delivery0.alive``.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

SUFFIX = ".alive"


class LivenessFile:
    """One process's liveness file; :meth:`beat` is cheap to call often (at most one touch
    per ``min_interval_s``) and never raises: a full disk shows as a stale file."""

    def __init__(self, directory: Path, name: str, *, min_interval_s: float = 1.0) -> None:
        self.path = Path(directory) / f"{name}{SUFFIX}"
        self.min_interval_s = min_interval_s
        self._last = float("-inf")
        self._lock = threading.Lock()

    def beat(self) -> None:
        now = time.monotonic()
        with self._lock:
            if now - self._last < self.min_interval_s:
                return
            self._last = now
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600)
            os.close(fd)
            os.utime(self.path)
        except OSError:
            log.warning("cannot touch liveness file %s", self.path, exc_info=True)

    def remove(self) -> None:
        """On a clean stop: a stopped process is not a hung one."""
        self.path.unlink(missing_ok=True)


class ProgressEvent(threading.Event):
    """A stop flag whose every look is a sign of progress: the pipeline asks it at each
    stage boundary and after each inference batch, so each ask beats ``liveness``."""

    def __init__(self, liveness: LivenessFile) -> None:
        super().__init__()
        self.liveness = liveness

    def is_set(self) -> bool:
        self.liveness.beat()
        return super().is_set()


class IdleBeater:
    """Beat every ``interval_s`` from a thread, but only while ``busy`` is clear: an idle
    worker's main thread waits on the broker and cannot beat, a busy one beats itself."""

    def __init__(
        self, liveness: LivenessFile, interval_s: float, busy: threading.Event | None = None
    ) -> None:
        self.liveness = liveness
        self.interval_s = interval_s
        self.busy = busy or threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="liveness", daemon=True)

    def start(self) -> None:
        self.liveness.beat()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=self.interval_s + 1)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            if not self.busy.is_set():
                self.liveness.beat()


@dataclass(frozen=True)
class LivenessStatus:
    name: str
    age_s: float | None
    ok: bool
    detail: str


def check_liveness(
    directory: Path, prefixes: tuple[str, ...], max_age_s: float
) -> list[LivenessStatus]:
    """Every liveness file in ``directory`` whose name starts with one of ``prefixes``, with
    its age; none at all is a failure too (the process never started to beat)."""
    now = time.time()
    out: list[LivenessStatus] = []
    files = sorted(directory.glob(f"*{SUFFIX}")) if directory.is_dir() else []
    for path in files:
        name = path.name[: -len(SUFFIX)]
        if not name.startswith(prefixes):
            continue
        try:
            age = max(0.0, now - path.stat().st_mtime)
        except OSError:
            continue
        ok = age <= max_age_s
        detail = f"beat {age:.0f} s ago" + ("" if ok else f" (more than {max_age_s:g} s)")
        out.append(LivenessStatus(name=name, age_s=age, ok=ok, detail=detail))
    if not out:
        wanted = " or ".join(f"{p}*{SUFFIX}" for p in prefixes)
        out.append(LivenessStatus(name=",".join(prefixes), age_s=None, ok=False,
                                  detail=f"no {wanted} in {directory}"))  # fmt: skip
    return out
