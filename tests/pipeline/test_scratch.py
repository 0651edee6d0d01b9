"""A job's slide-sized masks live in a scratch folder of its own under the store's spool/,
which is gone when the job's compute ends, whether it succeeded or failed."""

from __future__ import annotations

import pytest

from tests.pipeline.slides import corrupt_frames, model_level
from unitumour_dicom.pipeline import process_slide
from unitumour_dicom.runtime import Runtime

WORKER = "scratch@test:1"

pytestmark = pytest.mark.integration


def job_folders(runtime):  # type: ignore[no-untyped-def]
    return sorted(p.name for p in runtime.store.spool_dir.iterdir() if p.is_dir())


def test_the_scratch_folder_exists_while_the_job_runs_and_goes_after(
    fast_runtime, models, queued
) -> None:
    [job_id] = queued()
    seen: list[list[str]] = []

    def progress(stage: str, done: int, total: int) -> None:
        seen.append(job_folders(fast_runtime))

    outcome = process_slide(
        job_id, runtime=fast_runtime, worker=WORKER, models=models, on_progress=progress
    )
    assert outcome.state == "succeeded", outcome.message
    assert seen and all(len(f) == 1 and f[0].startswith(f"job-{job_id}-") for f in seen)
    assert job_folders(fast_runtime) == []


def test_a_failed_job_leaves_no_scratch_folder(fast_runtime, models, queued) -> None:
    mpp = models.get().card.mpp
    [job_id] = queued(prepare=lambda folder: corrupt_frames(model_level(folder, mpp)))
    outcome = process_slide(job_id, runtime=fast_runtime, worker=WORKER, models=models)
    assert outcome.state == "queued" and outcome.retry_delay_s is not None
    assert job_folders(fast_runtime) == []


def test_worker_scratch_dir_moves_the_scratch_folders(fast_runtime, models, queued, tmp_path):
    local = tmp_path / "local-disk" / "scratch"  # made on first use, owner-only
    settings = fast_runtime.settings
    runtime = Runtime(
        settings.model_copy(
            update={"worker": settings.worker.model_copy(update={"scratch_dir": local})}
        )
    )
    [job_id] = queued()
    seen: list[list[str]] = []

    def progress(stage: str, done: int, total: int) -> None:
        seen.append(sorted(p.name for p in local.iterdir()))

    outcome = process_slide(
        job_id, runtime=runtime, worker=WORKER, models=models, on_progress=progress
    )
    assert outcome.state == "succeeded", outcome.message
    assert seen and all(len(f) == 1 and f[0].startswith(f"job-{job_id}-") for f in seen)
    assert list(local.iterdir()) == [] and (local.stat().st_mode & 0o777) == 0o700
    assert job_folders(runtime) == []
