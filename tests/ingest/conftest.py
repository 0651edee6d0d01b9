"""Fixtures of the listener tests: small phantom slides (made once per session) and listeners."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from unitumour_dicom.config import Settings
from unitumour_dicom.config.sections import ListenerSettings
from unitumour_dicom.ingest import ListenerService
from unitumour_dicom.runtime import Runtime
from unitumour_dicom.synthetic import PhantomSlide, PhantomSpec, write_phantom_slide

from .helpers import Listening

#: Small but real: three levels, label and overview, 1024 x 768 at tile 256.
SMALL = {"width": 1024, "height": 768, "tile_size": 256, "levels": 3}

#: What every test listener allows unless a test says otherwise.
TEST_LISTENER: dict[str, Any] = {
    "port": 0,
    "callers": [
        {"ae_title": "SENDER"},
        {"ae_title": "PYSENDER"},
        {"ae_title": "SENDER2"},
        {"ae_title": "SENDER3"},
    ],
    "quiet_seconds": 1.0,
    "settle_interval_s": 0.1,
    "network_timeout_s": 10.0,
    "acse_timeout_s": 10.0,
    "shutdown_grace_s": 5.0,
}


@pytest.fixture(scope="session")
def phantoms(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., PhantomSlide]:
    """phantoms(**spec) -> a phantom slide, written once per distinct spec per session."""
    made: dict[tuple[tuple[str, Any], ...], PhantomSlide] = {}

    def make(**spec: Any) -> PhantomSlide:
        full = {**SMALL, **spec}
        key = tuple(sorted(full.items()))
        if key not in made:
            out = tmp_path_factory.mktemp("phantom")
            made[key] = write_phantom_slide(out, PhantomSpec(**full))
        return made[key]

    return make


@pytest.fixture(scope="session")
def phantom(phantoms: Callable[..., PhantomSlide]) -> PhantomSlide:
    return phantoms()


def listener_settings(
    settings: Settings, *, store: dict[str, Any] | None = None, **listener: Any
) -> Settings:
    """The test settings with the listener section replaced (test defaults plus overrides)."""
    update: dict[str, Any] = {"listener": ListenerSettings(**{**TEST_LISTENER, **listener})}
    if store:
        update["store"] = settings.store.model_copy(update=store)
    return settings.model_copy(update=update)


@pytest.fixture
def start_listener(
    request: pytest.FixtureRequest,
) -> Iterator[Callable[..., Listening]]:
    """start_listener(runtime, **listener_settings) -> a running listener, stopped afterwards."""
    running: list[ListenerService] = []

    def start(
        runtime: Runtime,
        on_jobs_created: Any = None,
        store: dict[str, Any] | None = None,
        **listener: Any,
    ) -> Listening:
        settings = listener_settings(runtime.settings, store=store, **listener)
        rt = Runtime(settings)
        service = ListenerService(rt, on_jobs_created=on_jobs_created)
        host, port = service.start()
        running.append(service)
        return Listening(service, rt, host, port)

    yield start
    for service in running:
        service.stop(grace_s=2)


@pytest.fixture
def listening(sqlite_runtime: Runtime, start_listener: Callable[..., Listening]) -> Listening:
    """A listener on SQLite with the test defaults."""
    return start_listener(sqlite_runtime)


@pytest.fixture
def listening_both(runtime: Runtime, start_listener: Callable[..., Listening]) -> Listening:
    """A listener on SQLite and, in a second run, on PostgreSQL."""
    return start_listener(runtime)
