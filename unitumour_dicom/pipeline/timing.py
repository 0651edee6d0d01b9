"""Seconds per stage, recorded on every job (Job.timings) for the audit pages and benchmarks."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager


class StageTimer:
    """Wall-clock seconds per named stage; a stage timed twice adds up."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._started = time.perf_counter()

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.add(name, time.perf_counter() - t0)

    def add(self, name: str, seconds: float) -> None:
        self.seconds[name] = self.seconds.get(name, 0.0) + float(seconds)

    def merge(self, prefix: str, seconds: dict[str, float]) -> None:
        """Add another component's own breakdown (inference, SEG) under ``prefix.``."""
        for name, value in seconds.items():
            self.add(f"{prefix}.{name}", value)

    def elapsed(self) -> float:
        return time.perf_counter() - self._started

    def as_record(self) -> dict[str, float]:
        record = {name: round(value, 4) for name, value in self.seconds.items()}
        record["total"] = round(self.elapsed(), 4)
        return record
