"""Rows for job tests: a slide with one stored instance, and jobs on it."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TypeVar

import pytest

from unitumour_dicom.db import Job, JobState, Slide
from unitumour_dicom.runtime import Runtime

T0 = datetime(2026, 1, 5, 9, 0, 0, tzinfo=UTC)
R = TypeVar("R")


def race(n: int, attempt: Callable[[int], R]) -> list[R]:
    """``attempt(i)`` for i in 0..n-1, in n threads released at once; what each returned."""
    barrier = threading.Barrier(n)
    results: list[R] = []

    def run(i: int) -> None:
        barrier.wait()
        results.append(attempt(i))

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


@pytest.fixture
def make_job(runtime: Runtime) -> Callable[..., int]:
    """Create a queued job on a fresh slide; returns its id."""

    def make(**values: object) -> int:
        with runtime.session() as session:
            n = uuid.uuid4().int % 10**12
            slide = Slide(
                study_instance_uid=f"1.2.826.0.1.3680043.10.1.{n}",
                series_instance_uid=f"1.2.826.0.1.3680043.10.2.{n}",
                state="settled",
            )
            session.add(slide)
            session.flush()
            job = Job(slide_id=slide.id, state=values.pop("state", JobState.QUEUED), **values)
            session.add(job)
            session.flush()
            return job.id

    return make
