"""Health, readiness (database, broker, store) and Prometheus metrics."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from unitumour_services.web import create_app

from unitumour_dicom.config import Settings
from unitumour_dicom.runtime import Runtime

from .conftest import SeededCase, free_port, with_viewer

pytestmark = [pytest.mark.integration]


def _ready(settings: Settings, runtime: Runtime, path: str = "/readyz") -> tuple[int, dict]:  # type: ignore[type-arg]
    app = create_app(settings, runtime=Runtime(settings))
    with TestClient(app) as c:
        r = c.get(path)
    return r.status_code, r.json()


def test_healthz_needs_nothing(client: TestClient) -> None:
    r = client.get("/healthz")
    assert r.status_code == 200 and r.json() == {"status": "ok"}


@pytest.mark.parametrize(
    "broker", ["redis://127.0.0.1:6379/15", "amqp://guest:guest@127.0.0.1:5672//"]
)
def test_ready_with_real_brokers(web_runtime: Runtime, broker: str) -> None:
    settings = web_runtime.settings.model_copy(
        update={"broker": web_runtime.settings.broker.model_copy(update={"url": broker})}
    )
    status, body = _ready(settings, web_runtime)
    assert status == 200, body
    assert body["ready"] is True
    assert set(body["checks"]) == {"database", "broker", "store"}


def test_not_ready_when_broker_is_down_or_store_is_full(web_runtime: Runtime) -> None:
    s = web_runtime.settings
    down = s.model_copy(
        update={
            "broker": s.broker.model_copy(update={"url": f"redis://127.0.0.1:{free_port()}/0"}),
            "web": s.web.model_copy(update={"readiness_timeout_s": 1.0}),
        }
    )
    status, body = _ready(down, web_runtime)
    assert status == 503 and body["ready"] is False
    assert body["checks"]["broker"]["ok"] is False and body["checks"]["database"]["ok"] is True
    full = s.model_copy(update={"store": s.store.model_copy(update={"min_free_percent": 99.99})})
    status, body = _ready(full, web_runtime)
    assert status == 503 and "watermark" in body["checks"]["store"]["detail"]
    # the web replica's readiness probe: its pages need the database only
    for settings in (down, full):
        status, body = _ready(settings, web_runtime, "/readyz?check=database")
        assert status == 200 and body["ready"] is True, body
        assert set(body["checks"]) == {"database"}
    status, body = _ready(down, web_runtime, "/readyz?check=database&check=broker")
    assert status == 503 and set(body["checks"]) == {"database", "broker"}
    status, _ = _ready(down, web_runtime, "/readyz?check=disk")
    assert status == 422


def test_not_ready_when_database_is_down(web_runtime: Runtime) -> None:
    s = web_runtime.settings
    gone = s.model_copy(
        update={
            "database": s.database.model_copy(
                update={"url": f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/x"}
            ),
            "web": s.web.model_copy(update={"readiness_timeout_s": 2.0}),
        }
    )
    status, body = _ready(with_viewer(gone), web_runtime)
    assert status == 503 and body["checks"]["database"]["ok"] is False
    status, body = _ready(with_viewer(gone), web_runtime, "/readyz?check=database")
    assert status == 503 and body["checks"]["database"]["ok"] is False


def test_metrics_count_what_the_database_holds(client: TestClient, case: SeededCase) -> None:
    r = client.get("/metrics")
    assert r.status_code == 200
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(r.text)
        for s in family.samples
    }
    n = len(case.instance_files)
    assert samples[("unitumour_instances_received_total", ())] == n
    assert samples[("unitumour_received_bytes_total", ())] > 0
    assert samples[("unitumour_jobs", (("state", "succeeded"),))] == 1
    assert samples[("unitumour_jobs", (("state", "superseded"),))] == 1
    assert samples[("unitumour_deliveries", (("state", "failed"),))] == 1
    assert samples[("unitumour_delivery_attempts_failed_total", ())] == 2
    infer = ("unitumour_job_stage_duration_seconds_bucket", (("le", "60.0"), ("stage", "infer")))
    assert samples[infer] == 1
    assert (
        samples[
            ("unitumour_job_stage_duration_seconds_bucket", (("le", "30.0"), ("stage", "infer")))
        ]
        == 0
    )
    assert samples[("unitumour_job_stage_duration_seconds_sum", (("stage", "infer"),))] == 42.0
    # counted once: a second scrape does not double the stage durations
    again = client.get("/metrics").text
    assert 'unitumour_job_stage_duration_seconds_count{stage="infer"} 1.0' in again
    assert "PHANTOM" not in again  # no patient data in metrics


def test_service_metrics_come_from_one_replica_only(web_runtime: Runtime, case: SeededCase) -> None:
    # Every replica reads the same database: two exporting replicas would double a sum().
    s = web_runtime.settings
    quiet = s.model_copy(update={"web": s.web.model_copy(update={"service_metrics": False})})
    for settings, exported in ((s, True), (quiet, False)):
        with TestClient(create_app(settings, runtime=Runtime(settings))) as c:
            r = c.get("/metrics")
        assert r.status_code == 200
        names = {f.name for f in text_string_to_metric_families(r.text)}
        assert ("unitumour_jobs" in names) is exported, names
        assert ("unitumour_deliveries" in names) is exported
