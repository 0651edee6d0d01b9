"""Fixtures of the delivery tests: real DICOM peers on free ports (DCMTK storescp as a
subprocess, pynetdicom SCPs that answer a chosen status) and a recorded SEG result."""

from __future__ import annotations

import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pynetdicom import AE, evt
from pynetdicom.sop_class import SegmentationStorage

from tests.seg.conftest import blob_mask
from tests.seg.wsi_headers import make_wsi_headers
from unitumour_dicom.config.sections import DeliverySettings, DestinationSettings
from unitumour_dicom.db import Job, Result, Slide
from unitumour_dicom.portcheck import is_listening
from unitumour_dicom.runtime import Runtime
from unitumour_dicom.seg import AlgorithmInfo, record_result, write_seg_pyramid

STORESCP_AET = "STORESCP"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_listening(port: int, proc: subprocess.Popen | None = None, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"peer exited with {proc.returncode}: {proc.stderr.read()!r}")  # type: ignore[union-attr]
        if is_listening(port):  # no probe connection: storescp would take it for an association
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port} after {timeout} s")


@dataclass
class StoreSCP:
    port: int
    out_dir: Path
    proc: subprocess.Popen

    def received(self) -> list[Path]:
        return sorted(p for p in self.out_dir.iterdir() if p.is_file())


@pytest.fixture
def storescp(tmp_path: Path) -> Iterator[Callable[..., StoreSCP]]:
    """Start DCMTK storescp (bit-preserving, into a temporary folder) on a given or free port."""
    started: list[subprocess.Popen] = []

    def start(*options: str, port: int | None = None) -> StoreSCP:
        port = port or free_port()
        out = tmp_path / f"storescp-{port}-{len(started)}"
        out.mkdir()
        proc = subprocess.Popen(
            ["storescp", "-aet", STORESCP_AET, "+B", "-od", str(out), *options, str(port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        started.append(proc)
        wait_listening(port, proc)
        return StoreSCP(port=port, out_dir=out, proc=proc)

    yield start
    for proc in started:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def status_scp() -> Iterator[Callable[[int], int]]:
    """A pynetdicom Storage SCP on a free port that answers every C-STORE with ``status``."""
    servers = []

    def start(status: int) -> int:
        ae = AE(ae_title="REFUSER")
        ae.add_supported_context(SegmentationStorage, ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2"])
        port = free_port()

        def handle(event):  # type: ignore[no-untyped-def]
            return status

        servers.append(
            ae.start_server(
                ("127.0.0.1", port), block=False, evt_handlers=[(evt.EVT_C_STORE, handle)]
            )
        )
        return port

    yield start
    for server in servers:
        server.shutdown()


def destination(port: int, name: str = "pacs", ae_title: str = STORESCP_AET) -> DestinationSettings:
    return DestinationSettings(name=name, ae_title=ae_title, host="127.0.0.1", port=port)


def delivery_settings(*dests: DestinationSettings, **kw) -> DeliverySettings:  # type: ignore[no-untyped-def]
    values = {
        "destinations": list(dests),
        "always_to": [d.name for d in dests],
        "initial_delay_s": 10.0,
        "max_delay_s": 600.0,
        "jitter": 0.2,
        "timeout_s": 10.0,
    }
    values.update(kw)
    return DeliverySettings(**values)


def make_result(runtime: Runtime, compression: str = "none", slide_ae: str = "SCANNER") -> int:
    """A slide, a job and its recorded two-level SEG result; returns the result id."""
    src = make_wsi_headers(600, 400, tile=128, levels=2)
    job_uuid = str(uuid.uuid4())
    settings = runtime.settings.seg.model_copy(update={"compression": compression})
    pyramid = write_seg_pyramid(
        source_datasets=src,
        mask=blob_mask(400, 600, 0.5),
        probability=None,
        algorithm=AlgorithmInfo(name="UniTumour-UNet", version="1.0"),
        settings=settings,
        uid_seed=job_uuid,
        store=runtime.store,
        content_datetime=datetime(2026, 2, 3, 4, 5, 6, tzinfo=UTC),
    )
    with runtime.session() as session:
        slide = Slide(
            study_instance_uid=str(src[0].StudyInstanceUID),
            series_instance_uid=str(src[0].SeriesInstanceUID),
            source_ae=slide_ae,
        )
        job = Job(uuid=job_uuid, slide=slide)
        session.add_all([slide, job])
        session.flush()
        result: Result = record_result(
            session=session, job=job, pyramid=pyramid, tumour_area_mm2=1.5, tissue_area_mm2=20.0
        )
        return int(result.id)
