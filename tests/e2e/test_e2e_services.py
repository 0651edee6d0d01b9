"""End to end, with every part a real process: DCMTK storescu as the scanner, our listener,
workers and web app (separately on SQLite; as ``unitumour serve`` on PostgreSQL and a
private Redis), DCMTK storescp as the PACS. Each test sends a 2048 x 1536 phantom and holds
the whole chain to account (tests.e2e.flow.check_case): the SEG the PACS received equals the
stored one, highdicom reads it on the slide's frame of reference, its Dice against the known
mask is high, the provenance rows link up, and the web case page shows it delivered."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import pytest
from sqlalchemy import func, select

from tests.e2e.flow import (
    add_web_user,
    check_case,
    listener_settings,
    small_phantom,
    storescu,
    wait_delivered,
)
from tests.jobs.servicekit import (
    RedisServer,
    StoreSCP,
    _accepts,
    group_ready,
    service_config,
    start_worker_group,
    stop_all,
    unitumour,
    wait_until,
)
from unitumour_dicom.db import Association, Slide

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_listener_workers_and_web_as_separate_processes_on_sqlite(tmp_path: Path):
    pacs = StoreSCP(tmp_path)
    config = service_config(
        tmp_path, model_path=None, pacs_port=pacs.port, listener=listener_settings()
    )
    settings = config.settings
    phantom = small_phantom(tmp_path / "slide", seed=11, patient_id="E2E-SQLITE-1")
    add_web_user(config)
    procs = [
        unitumour(config, ["listener"], tmp_path / "listener.log", "listener"),
        start_worker_group(config, tmp_path),
        unitumour(config, ["web"], tmp_path / "web.log", "web"),
    ]
    try:
        wait_until(lambda: _accepts(settings.listener.port), 120, "the listener")
        wait_until(lambda: _accepts(settings.web.port), 120, "the web app")
        wait_until(lambda: group_ready(procs[1], 2), 180, "the workers")
        # a sender the listener does not know is refused, and leaves only an audit trail
        stranger = subprocess.run(
            ["storescu", "-aet", "STRANGER", "-aec", "UNITUMOUR", "-R", "-xy", "127.0.0.1",
             str(settings.listener.port), str(phantom.instance_paths[0])],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert stranger.returncode != 0 and "Association Rejected" in stranger.stderr
        storescu(settings.listener.port, phantom.instance_paths)
        wait_delivered(config, phantom.series_uid, pacs, timeout=240)
        check_case(config, phantom, pacs, web_port=settings.web.port)
        with config.runtime.session() as session:
            refused = session.scalars(
                select(Association).where(Association.calling_ae == "STRANGER")
            ).one()
            assert refused.state == "rejected" and refused.n_instances == 0
            assert session.scalar(select(func.count()).select_from(Slide)) == 1
    finally:
        stop_all(procs)
        pacs.stop()
    listener, workers, web = procs
    for proc in (listener, workers):
        assert proc.popen.returncode == 0, f"{proc.name}:\n{proc.text()[-3000:]}"
    # uvicorn ends a graceful SIGTERM shutdown by re-raising the signal on itself
    assert web.popen.returncode in (0, -signal.SIGTERM), web.text()[-3000:]
    assert "Finished server process" in web.text()


@pytest.mark.postgres
def test_unitumour_serve_on_postgresql_and_redis(tmp_path: Path, postgres_database: str):
    from tests.conftest import _drop_everything

    _drop_everything(postgres_database)
    redis = RedisServer(tmp_path)
    pacs = StoreSCP(tmp_path)
    config = service_config(
        tmp_path,
        model_path=None,
        database_url=postgres_database,
        broker_url=redis.url,
        pacs_port=pacs.port,
        listener=listener_settings(),
    )
    settings = config.settings
    assert settings.database_url.startswith("postgresql")
    phantom = small_phantom(tmp_path / "slide", seed=12, patient_id="E2E-PG-1")
    add_web_user(config, "e2e-admin", role="admin")
    serve = unitumour(config, ["serve"], tmp_path / "serve.log", "serve")
    try:
        wait_until(lambda: _accepts(settings.listener.port), 120, "the listener")
        wait_until(lambda: _accepts(settings.web.port), 120, "the web app")
        storescu(settings.listener.port, phantom.instance_paths)
        wait_delivered(config, phantom.series_uid, pacs, timeout=240)
        check_case(config, phantom, pacs, web_port=settings.web.port, username="e2e-admin")
    finally:
        code = serve.stop(signal.SIGTERM, timeout=120)
        pacs.stop()
        redis.stop()
        _drop_everything(postgres_database)
    assert code == 0, serve.text()[-3000:]
