"""Orthanc (Debian's package, with its DICOMweb plugin) as the PACS that pull tests query.

Started on free loopback ports with a temporary configuration derived from the shipped
deploy/orthanc/orthanc.json: Basic authentication on, the DICOMweb plugin loaded, and our AE
title known as a modality that may find, get and move (and, for C-MOVE, be stored to at the
listener's port).
"""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from tests.deploy.helpers import DEPLOY, load_orthanc_json

PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")
AVAILABLE = shutil.which("Orthanc") is not None and PLUGIN.exists()
WHY_NOT = "Orthanc and orthanc-dicomweb are not installed (scripts/system-deps.sh)"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def _connectable(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


class Orthanc:
    """A running Orthanc; ``stop()`` ends it."""

    def __init__(self, workdir: Path, *, our_ae: str, our_port: int = 11112) -> None:
        config = load_orthanc_json(DEPLOY / "orthanc" / "orthanc.json")
        self.dicom_port, self.http_port = free_port(), free_port()
        self.aet = "PACS"
        config.update(
            DicomAet=self.aet,
            StorageDirectory=str(workdir / "orthanc-db"),
            IndexDirectory=str(workdir / "orthanc-db"),
            DicomPort=self.dicom_port,
            HttpPort=self.http_port,
            RemoteAccessAllowed=False,
            LuaScripts=[],
            Plugins=[str(PLUGIN)],
            DicomWeb={"Enable": True, "Root": "/dicom-web/"},
            DicomModalities={
                "unitumour": {
                    "AET": our_ae,
                    "Host": "127.0.0.1",
                    "Port": our_port,
                    "AllowEcho": True,
                    "AllowFind": True,
                    "AllowGet": True,
                    "AllowMove": True,
                    "AllowStore": True,
                }
            },
        )
        self.user, self.password = next(iter(config["RegisteredUsers"].items()))
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "orthanc.json").write_text(json.dumps(config))
        self.log = workdir / "orthanc.log"
        self.process = subprocess.Popen(
            ["Orthanc", "--verbose", str(workdir / "orthanc.json")],
            stdout=self.log.open("wb"),
            stderr=subprocess.STDOUT,
        )
        wait_for(
            lambda: _connectable(self.dicom_port) and _connectable(self.http_port), 30, "Orthanc"
        )

    @property
    def dicomweb_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}/dicom-web"

    def _http(self) -> httpx.Client:
        return httpx.Client(
            base_url=f"http://127.0.0.1:{self.http_port}",
            auth=(self.user, self.password),
            timeout=30,
        )

    def upload(self, files: list[Path]) -> None:
        """REST POST /instances, one file at a time."""
        with self._http() as client:
            for path in files:
                answer = client.post("/instances", content=path.read_bytes())
                assert answer.status_code == 200, answer.text

    def instances(self) -> list[str]:
        with self._http() as client:
            return client.get("/instances").json()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
