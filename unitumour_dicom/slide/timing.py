"""Seconds spent per named stage, summed safely across the threads that do the work."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager


class StageTimes:
    """Accumulates seconds per stage. Stages run in several threads at once report the sum of
    their threads' time (CPU-seconds of work), not wall-clock time."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seconds: dict[str, float] = {}

    def add(self, stage: str, seconds: float) -> None:
        with self._lock:
            self._seconds[stage] = self._seconds.get(stage, 0.0) + seconds

    @contextmanager
    def measure(self, stage: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.add(stage, time.perf_counter() - start)

    def as_dict(self) -> dict[str, float]:
        with self._lock:
            return dict(self._seconds)

    def get(self, stage: str) -> float:
        with self._lock:
            return self._seconds.get(stage, 0.0)
