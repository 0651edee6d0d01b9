"""Liveness: the files the listener and workers touch, and ``unitumour health`` that an exec
probe runs. A process that stops making progress (here: SIGSTOP, as a hung CUDA call or a
wedged loop would) goes stale, and the probe fails."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.jobs.servicekit import Proc, service_config, wait_until
from unitumour_dicom.cli import app
from unitumour_dicom.liveness import IdleBeater, LivenessFile, ProgressEvent


def _health(monkeypatch: pytest.MonkeyPatch, directory: Path, *args: str):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("UNITUMOUR_LIVENESS_DIR", str(directory))
    monkeypatch.setenv("UNITUMOUR_DATA_DIR", str(directory.parent / "data"))
    return CliRunner().invoke(app, ["health", *args])


@pytest.mark.unittest
def test_health_command_fails_on_stale_or_missing_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    live = tmp_path / "live"
    missing = _health(monkeypatch, live, "worker")
    assert missing.exit_code == 1 and "no segmentation*.alive or delivery*.alive" in missing.output
    LivenessFile(live, "segmentation0").beat()
    LivenessFile(live, "delivery0").beat()
    ok = _health(monkeypatch, live, "worker", "--max-age", "60")
    assert ok.exit_code == 0, ok.output
    assert "segmentation0: ok" in ok.output and "delivery0: ok" in ok.output
    old = time.time() - 120
    os.utime(live / "segmentation0.alive", (old, old))
    stale = _health(monkeypatch, live, "worker", "--max-age", "60")
    assert stale.exit_code == 1 and "segmentation0: FAILED" in stale.output
    assert _health(monkeypatch, live, "listener").exit_code == 1  # the listener never beat
    monkeypatch.delenv("UNITUMOUR_LIVENESS_DIR")
    unset = CliRunner().invoke(app, ["health", "listener"])
    assert unset.exit_code == 2 and "liveness_dir is not set" in unset.output


@pytest.mark.unittest
def test_a_busy_worker_beats_only_through_its_progress(tmp_path: Path) -> None:
    liveness = LivenessFile(tmp_path, "segmentation0", min_interval_s=0.0)
    busy = threading.Event()
    beater = IdleBeater(liveness, interval_s=0.05, busy=busy)
    beater.start()
    try:
        time.sleep(0.2)
        assert time.time() - liveness.path.stat().st_mtime < 1  # idle: the thread beats
        busy.set()
        old = time.time() - 100
        os.utime(liveness.path, (old, old))
        time.sleep(0.3)  # a job that makes no progress: nobody beats
        assert time.time() - liveness.path.stat().st_mtime > 99
        stop = ProgressEvent(liveness)  # what process_slide asks after each batch
        assert stop.is_set() is False
        assert time.time() - liveness.path.stat().st_mtime < 1
    finally:
        beater.stop()


@pytest.mark.integration
def test_listener_and_worker_beat_and_a_hung_one_goes_stale(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = service_config(tmp_path, model_path=None)
    live = tmp_path / "live"
    env = {"UNITUMOUR_LIVENESS_DIR": str(live)}
    cli = [sys.executable, "-m", "unitumour_services.cli", "-c", str(config.path)]
    procs = [
        Proc("listener", [*cli, "listener"], tmp_path / "listener.log", env),
        Proc("delivery", [*cli, "worker", "--queue", "delivery"], tmp_path / "delivery.log", env),
    ]
    try:
        for name in ("listener", "delivery0"):
            wait_until(lambda n=name: (live / f"{n}.alive").exists(), 90, f"{name} to beat")
        monkeypatch.setenv("UNITUMOUR_CONFIG", str(config.path))
        assert _health(monkeypatch, live, "listener", "--max-age", "5").exit_code == 0
        assert _health(monkeypatch, live, "worker", "--max-age", "30").exit_code == 0
        listener = procs[0]
        listener.popen.send_signal(signal.SIGSTOP)  # hung: alive, but no progress
        try:
            time.sleep(3.5)
            hung = _health(monkeypatch, live, "listener", "--max-age", "2")
            assert hung.exit_code == 1 and "listener: FAILED" in hung.output
        finally:
            listener.popen.send_signal(signal.SIGCONT)
        wait_until(
            lambda: _health(monkeypatch, live, "listener", "--max-age", "2").exit_code == 0,
            10,
            "the listener to beat again",
        )
        for proc in procs:
            assert proc.stop() == 0, proc.text()
        # a clean stop is not a hang: the files go with the processes
        assert list(live.glob("*.alive")) == []
    finally:
        for proc in procs:
            proc.stop(signal.SIGKILL)


@pytest.mark.integration
@pytest.mark.slow
def test_a_segmentation_worker_stays_live_through_a_job(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from unitumour_services.worker import make_job_dispatcher

    from tests.jobs.servicekit import job_states, phantom_folders, queue_jobs, worker_ready
    from tests.model.checkpoints import write_untrained_checkpoint

    config = service_config(tmp_path, model_path=write_untrained_checkpoint(tmp_path))
    live = tmp_path / "live"
    cli = [sys.executable, "-m", "unitumour_services.cli", "-v", "-c", str(config.path)]
    worker = Proc(
        "segmentation0",
        [*cli, "worker", "--queue", "segmentation"],
        tmp_path / "segmentation0.log",
        {"UNITUMOUR_LIVENESS_DIR": str(live)},
    )
    try:
        wait_until(lambda: worker_ready(worker), 120, "the worker")
        beat = live / "segmentation0.alive"
        assert beat.exists()
        (slide,) = phantom_folders(tmp_path / "slides", 1, width=2048, height=1536)
        (job,) = queue_jobs(config.runtime, [slide])
        make_job_dispatcher(config.settings).dispatch_jobs([job])
        wait_until(lambda: job_states(config.runtime, [job])[job] == "succeeded", 180, "the job")
        monkeypatch.setenv("UNITUMOUR_CONFIG", str(config.path))
        ok = _health(monkeypatch, live, "worker", "--max-age", "30")
        assert ok.exit_code == 0, ok.output
        assert worker.stop() == 0, worker.text()[-2000:]
        assert not beat.exists()
    finally:
        worker.stop(signal.SIGKILL)
