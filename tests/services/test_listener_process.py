"""`unitumour listener` as a process: kill -9 in the middle of a transfer, then a restart, and
a graceful SIGTERM that lets the association in flight finish."""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
from pydicom import dcmread
from pynetdicom import AE
from pynetdicom import _config as pynetdicom_config
from sqlalchemy import select

from unitumour_dicom.config import load_settings
from unitumour_dicom.db import AuditEvent, Instance, dispose_engines, migrate
from unitumour_dicom.ingest import IngestEvent
from unitumour_dicom.runtime import Runtime
from unitumour_dicom.synthetic import load_phantom

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _load_listener_test_helpers() -> ModuleType:
    """tests/ingest/helpers.py (real peers, byte comparisons), loaded by path: tests/services
    is no package, so a relative import cannot reach it."""
    path = Path(__file__).parents[1] / "ingest" / "helpers.py"
    spec = importlib.util.spec_from_file_location("listener_test_helpers", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


_helpers = _load_listener_test_helpers()
dataset_sha256 = _helpers.dataset_sha256
echo = _helpers.echo
free_port = _helpers.free_port
native_instance = _helpers.native_instance
uid_of = _helpers.uid_of
wait_until = _helpers.wait_until

UNITUMOUR = str(Path(sys.executable).with_name("unitumour"))


class ListenerProcess:
    def __init__(self, config: Path, port: int, log: Path) -> None:
        self.config, self.port, self.log = config, port, log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [UNITUMOUR, "-c", str(self.config), "listener"], stdout=log, stderr=log
            )
        wait_until(lambda: self._ready(), timeout=60, interval=0.2)

    def _ready(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"listener exited: {self.log.read_text()[-3000:]}")
        return echo("127.0.0.1", self.port) == 0

    def stop(self) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(60)


@pytest.fixture
def deployment(tmp_path: Path) -> Iterator[tuple[ListenerProcess, Runtime]]:
    port = free_port()
    data = tmp_path / "data"
    config = tmp_path / "unitumour.toml"
    config.write_text(
        f'data_dir = "{data}"\n'
        "[listener]\n"
        f"port = {port}\n"
        "quiet_seconds = 1.0\n"
        "settle_interval_s = 0.2\n"
        "shutdown_grace_s = 20.0\n"
        'callers = [{ae_title = "SENDER"}, {ae_title = "PYSENDER"}]\n'
        "[logging]\n"
        'level = "INFO"\n'
    )
    settings = load_settings(config)
    data.mkdir(parents=True)
    migrate.upgrade(settings.database_url)
    process = ListenerProcess(config, port, tmp_path / "listener.log")
    yield process, Runtime(settings)
    if process.proc is not None and process.proc.poll() is None:
        process.proc.kill()
        process.proc.wait(10)
    dispose_engines()


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Path], Path]:
    root = tmp_path_factory.mktemp("process-phantom")
    synth = [UNITUMOUR, "synth", str(root / "slide"), "--width", "1024", "--height", "768"]
    subprocess.run(synth, check=True, capture_output=True, timeout=300)
    slide = load_phantom(root / "slide")
    big = native_instance(slide.level_paths[0][0], root / "big.dcm", tiles=16)  # 50 MB
    return slide.instance_paths, big


def _association(port: int, paths: list[Path]) -> object:
    ae = AE(ae_title="PYSENDER")
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 10
    for path in paths:
        meta = dcmread(path, stop_before_pixels=True).file_meta
        ae.add_requested_context(str(meta.MediaStorageSOPClassUID), str(meta.TransferSyntaxUID))
    assoc = ae.associate("127.0.0.1", port, ae_title="UNITUMOUR")
    assert assoc.is_established
    return assoc


def _partial_spool(runtime: Runtime) -> bool:
    spool = runtime.store.spool_dir / "listener"
    for part in spool.glob("*.part"):
        try:
            if part.stat().st_size > (1 << 20):
                return True
        except FileNotFoundError:  # complete, and moved into the store since the listing
            continue
    return False


def test_kill_9_mid_transfer_then_restart_keeps_exactly_the_acknowledged(deployment, files):
    process, runtime = deployment
    small, big = files
    process.start()
    acknowledged: list[str] = []
    pynetdicom_config.STORE_SEND_CHUNKED_DATASET = True

    def send() -> None:
        assoc = _association(process.port, [*small, big])
        try:
            for path in [*small, big, *small]:
                status = assoc.send_c_store(path)
                if status and status.Status == 0:
                    acknowledged.append(str(uid_of(path)))
        except Exception:  # the listener vanishes under it
            pass

    sender = threading.Thread(target=send)
    try:
        sender.start()
        wait_until(lambda: _partial_spool(runtime), timeout=60, interval=0.002)
        assert process.proc is not None
        os.kill(process.proc.pid, signal.SIGKILL)
        process.proc.wait(10)
        sender.join(30)
    finally:
        pynetdicom_config.STORE_SEND_CHUNKED_DATASET = False
    assert len(acknowledged) == len(small)  # the big one was cut, nothing after it was sent

    process.start()  # reconcile runs before it listens
    with runtime.session() as session:
        rows = {r.sop_instance_uid: r for r in session.scalars(select(Instance))}
        reconciled = session.scalars(
            select(AuditEvent).where(AuditEvent.event == IngestEvent.LISTENER_RECONCILED)
        ).all()
    sources = {str(uid_of(p)): p for p in [*small, big]}
    assert set(acknowledged) <= set(rows)
    assert str(uid_of(big)) not in rows
    # anything else stored must be complete and identical (a file moved in but not yet
    # acknowledged when the process died is admitted by the reconcile, never a partial one)
    for uid, row in rows.items():
        assert dataset_sha256(runtime.store.abspath(row.path)) == dataset_sha256(sources[uid])
    assert list((runtime.store.spool_dir / "listener").glob("*.part")) == []
    assert "1 partial spool file(s) removed" in reconciled[-1].message
    assert "1 open association(s) closed" in reconciled[-1].message
    assert process.stop() == 0


def test_sigterm_lets_the_association_in_flight_finish(deployment, files):
    process, runtime = deployment
    small, _ = files
    process.start()
    assoc = _association(process.port, small)
    assert process.proc is not None
    process.proc.send_signal(signal.SIGTERM)
    # no new association is accepted once shutdown began ...
    wait_until(lambda: echo("127.0.0.1", process.port) is None, timeout=10)
    # ... but the one in flight is served to its end
    statuses = [assoc.send_c_store(path).Status for path in small]
    assoc.release()
    assert statuses == [0] * len(small)
    assert process.proc.wait(30) == 0
    with runtime.session() as session:
        stored = set(session.scalars(select(Instance.sop_instance_uid)))
    assert stored == {str(uid_of(p)) for p in small}
    log = process.log.read_text()
    assert "stopping: finishing associations in flight" in log
    assert "assoc=1" in log  # the association id on its log lines
