"""The Orthanc routing example, run for real: Orthanc (Debian's package) with deploy/orthanc's
configuration and Lua script forwards a phantom slide to our listener, started as
``unitumour listener`` with deploy/orthanc's settings, and archives a Segmentation sent back
from our AE title without routing it again; an unknown AE cannot store into it.

Only ports, folders, our listener's address (loopback, free ports) and a short StableAge
differ from the committed files; the scanner's host name and the host check stay as shipped,
so what is tested is the example an operator copies.
"""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from sqlalchemy import create_engine, text

from unitumour_dicom.synthetic import PhantomSpec, write_phantom_slide

from .helpers import DEPLOY, load_orthanc_json, read_toml

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("Orthanc") is None, reason="Orthanc is not installed"),
    pytest.mark.skipif(shutil.which("storescu") is None, reason="DCMTK is not installed"),
]

ORTHANC_DIR = DEPLOY / "orthanc"
SEG_STORAGE = "1.2.840.10008.5.1.4.1.1.66.4"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def _connectable(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


class Orthanc:
    def __init__(self, workdir: Path, listener_port: int) -> None:
        config = load_orthanc_json(ORTHANC_DIR / "orthanc.json")
        self.dicom_port, self.http_port = _free_port(), _free_port()
        config.update(
            StorageDirectory=str(workdir / "orthanc-db"),
            IndexDirectory=str(workdir / "orthanc-db"),
            DicomPort=self.dicom_port,
            HttpPort=self.http_port,
            RemoteAccessAllowed=False,
            StableAge=1,
            LuaScripts=[str(ORTHANC_DIR / Path(p).name) for p in config["LuaScripts"]],
        )
        # Only our listener's address changes (Orthanc must reach it to route): the scanner's
        # Host stays the shipped host name, and stores from it and from us arrive from
        # 127.0.0.1, as from any address Orthanc cannot match a host name against.
        config["DicomModalities"]["unitumour"].update(Host="127.0.0.1", Port=listener_port)
        self.aet = config["DicomAet"]
        self.user, self.password = next(iter(config["RegisteredUsers"].items()))
        (workdir / "orthanc.json").write_text(json.dumps(config))
        self.log = workdir / "orthanc.log"
        self.process = subprocess.Popen(
            ["Orthanc", "--verbose", str(workdir / "orthanc.json")],
            stdout=self.log.open("wb"),
            stderr=subprocess.STDOUT,
        )
        _wait(lambda: _connectable(self.dicom_port) and _connectable(self.http_port), 30, "Orthanc")

    def get(self, path: str) -> Any:
        request = urllib.request.Request(f"http://127.0.0.1:{self.http_port}{path}")
        token = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
        with urllib.request.urlopen(request, timeout=10) as answer:
            return json.loads(answer.read())

    def store(self, files: list[Path], *, aet: str) -> subprocess.CompletedProcess[str]:
        # -xy: propose JPEG baseline (the phantom's frames) and the uncompressed syntaxes
        peer = ["-aet", aet, "-aec", self.aet, "127.0.0.1", str(self.dicom_port)]
        return subprocess.run(
            ["storescu", "-R", "-xy", *peer, *map(str, files)],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """``unitumour listener`` with deploy/orthanc/unitumour.toml, on loopback."""
    port = _free_port()
    ours = read_toml(ORTHANC_DIR / "unitumour.toml")
    (caller,) = ours["listener"]["callers"]
    caller["networks"] = ["127.0.0.1/32"]  # the example's placeholder address, made local
    env = {
        **os.environ,
        "UNITUMOUR_CONFIG": str(ORTHANC_DIR / "unitumour.toml"),
        "UNITUMOUR_DATA_DIR": str(tmp_path / "data"),
        "UNITUMOUR_LISTENER__HOST": "127.0.0.1",
        "UNITUMOUR_LISTENER__PORT": str(port),
        "UNITUMOUR_LISTENER__CALLERS": json.dumps([caller]),
    }
    unitumour = [sys.executable, "-m", "unitumour_services.cli"]
    subprocess.run([*unitumour, "db", "upgrade"], env=env, check=True, capture_output=True)
    log = tmp_path / "listener.log"
    process = subprocess.Popen(
        [*unitumour, "-v", "listener"], env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT
    )
    try:
        _wait(lambda: _connectable(port) or process.poll() is not None, 90, "the listener")
        assert process.poll() is None, log.read_text()
        yield {
            "port": port,
            "ae_title": ours["listener"]["ae_title"],
            "database": f"sqlite:///{tmp_path / 'data' / 'unitumour.db'}",
            "log": log,
        }
    finally:
        _stop(process)


def _segmentation(study_uid: str) -> bytes:
    ds = Dataset()
    ds.SOPClassUID = SEG_STORAGE
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality = "SEG"
    ds.PatientID = "PHANTOM-0001"
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = SEG_STORAGE
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, ds, enforce_file_format=True)
    return buffer.getvalue()


def test_orthanc_routes_slides_to_the_listener_and_archives_segmentations(
    tmp_path: Path, listener: dict[str, Any]
) -> None:
    slide = write_phantom_slide(
        tmp_path / "slide", PhantomSpec(width=1024, height=768, tile_size=256, levels=3)
    )
    orthanc = Orthanc(tmp_path, listener["port"])
    try:
        sent = orthanc.store(slide.instance_paths, aet="SCANNER1")
        assert sent.returncode == 0, sent.stderr
        engine = create_engine(listener["database"])

        def received() -> int:
            with engine.connect() as conn:
                return conn.execute(
                    text("SELECT count(*) FROM instances WHERE series_instance_uid = :s"),
                    {"s": slide.series_uid},
                ).scalar_one()

        # StableAge passes, the Lua script sends the whole series to the listener
        _wait(lambda: received() == len(slide.instance_paths), 60, "the routed series")
        with engine.connect() as conn:
            callers = conn.execute(
                text("SELECT DISTINCT calling_ae FROM associations WHERE state != 'rejected'")
            ).scalars()
            assert set(callers) == {orthanc.aet}

        # a Segmentation from our AE title is archived, and not routed anywhere
        seg = tmp_path / "seg.dcm"
        seg.write_bytes(_segmentation(slide.study_uid))
        stored = orthanc.store([seg], aet=listener["ae_title"])
        assert stored.returncode == 0, stored.stderr
        assert len(orthanc.get("/instances")) == len(slide.instance_paths) + 1
        time.sleep(3)  # past StableAge: the SEG series is stable and the script has looked
        assert received() == len(slide.instance_paths)
        log = orthanc.log.read_text(errors="replace")
        assert log.count("UniTumour: sending whole-slide series") == 1
        assert "Lua: Error" not in log

        # the archive takes stores only from the modalities it knows
        refused = orthanc.store([seg], aet="STRANGER")
        assert refused.returncode != 0
    finally:
        _stop(orthanc.process)
