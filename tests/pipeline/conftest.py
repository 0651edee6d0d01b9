"""A small untrained model (fast on the CPU) and runtimes set up for quick pipeline runs."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.jobs.servicekit import phantom_folders, queue_jobs
from tests.model.checkpoints import write_untrained_checkpoint
from unitumour_dicom.model import LoadedModel, load_model
from unitumour_dicom.pipeline import ModelProvider
from unitumour_dicom.runtime import Runtime


@pytest.fixture(scope="session")
def untrained_model(tmp_path_factory: pytest.TempPathFactory) -> LoadedModel:
    folder = tmp_path_factory.mktemp("model")
    return load_model(write_untrained_checkpoint(folder), device="cpu")


@pytest.fixture
def models(untrained_model: LoadedModel) -> ModelProvider:
    return ModelProvider.of(untrained_model)


@pytest.fixture
def fast_runtime(runtime: Runtime) -> Runtime:
    """The test's runtime (SQLite and PostgreSQL) with short leases and a retry limit of 2."""
    settings = runtime.settings
    updated = settings.model_copy(
        update={
            "worker": settings.worker.model_copy(
                update={"lease_seconds": 5.0, "heartbeat_seconds": 0.5, "max_attempts": 2}
            ),
            "model": settings.model.model_copy(update={"device": "cpu", "batch_size": 8}),
        }
    )
    return Runtime(updated)


@pytest.fixture
def queued(fast_runtime: Runtime, tmp_path: Path) -> Callable[..., list[int]]:
    """Phantom slides admitted and settled as the listener would: their queued job ids."""

    def make(
        n: int = 1, *, prepare: Callable[[Path], None] | None = None, **size: int
    ) -> list[int]:
        batch = len(list(tmp_path.glob("slides*")))
        folders = phantom_folders(tmp_path / f"slides{batch}", n, first_seed=100 * batch, **size)
        if prepare is not None:
            for folder in folders:
                prepare(folder)
        return queue_jobs(fast_runtime, folders)

    return make
