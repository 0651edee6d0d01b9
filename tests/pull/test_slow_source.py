"""A DICOMweb source that answers the search, then sends a series a byte at a time for
ever: every read meets its deadline, so only the series' own time limit, or a stopping
listener, ends the retrieval; nothing of the cut-off part is kept."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from unitumour_dicom.config.sections import PullSettings, PullSourceSettings
from unitumour_dicom.ingest import ListenerService
from unitumour_dicom.pull import Poller
from unitumour_dicom.runtime import Runtime

pytestmark = pytest.mark.integration

STUDY, SERIES = "1.2.826.0.1.3680043.8.498.1", "1.2.826.0.1.3680043.8.498.2"


class _Dribbler(BaseHTTPRequestHandler):
    started = threading.Event()
    closing = threading.Event()

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        if self.path.startswith("/series?"):
            body = json.dumps(
                [
                    {
                        "0020000D": {"vr": "UI", "Value": [STUDY]},
                        "0020000E": {"vr": "UI", "Value": [SERIES]},
                        "00201209": {"vr": "IS", "Value": [1]},
                    }
                ]
            ).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/dicom+json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        self.send_response(200)
        self.send_header("Content-Type", 'multipart/related; type="application/dicom"; boundary=b')
        self.end_headers()
        self.wfile.write(b"--b\r\nContent-Type: application/dicom\r\n\r\n" + b"\0" * 200)
        type(self).started.set()
        deadline = time.monotonic() + 60
        try:
            while time.monotonic() < deadline and not type(self).closing.is_set():
                self.wfile.write(b"\0" * 64)
                self.wfile.flush()
                time.sleep(0.05)
        except OSError:
            pass  # the client went away: what the test wants


@pytest.fixture
def dribbler() -> Iterator[str]:
    _Dribbler.started.clear()
    _Dribbler.closing.clear()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Dribbler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        _Dribbler.closing.set()
        server.shutdown()
        server.server_close()


def test_a_series_past_its_time_limit_is_cut_off(sqlite_runtime: Runtime, dribbler: str) -> None:
    source = PullSourceSettings(name="slow", kind="dicomweb", url=dribbler)
    settings = sqlite_runtime.settings.model_copy(
        update={"pull": PullSettings(sources=[source], retrieve_timeout_s=1, timeout_s=5)}
    )
    runtime = Runtime(settings)
    poller = Poller(runtime)
    began = time.monotonic()
    report = poller.poll_source(source)
    assert time.monotonic() - began < 10
    assert "took longer than 1 s" in report.failed[SERIES]
    assert not report.complete
    assert list(poller.receiver.spool_dir.glob("*.part")) == []  # the cut-off part is gone


def test_a_stopping_listener_ends_a_retrieval_in_flight(
    sqlite_runtime: Runtime, dribbler: str
) -> None:
    source = PullSourceSettings(name="slow", kind="dicomweb", url=dribbler)
    listener = sqlite_runtime.settings.listener.model_copy(update={"port": 0})
    settings = sqlite_runtime.settings.model_copy(
        update={"listener": listener, "pull": PullSettings(sources=[source], timeout_s=5)}
    )
    service = ListenerService(Runtime(settings))
    service.start()
    try:
        assert _Dribbler.started.wait(30), "the pull loop never began the retrieval"
    finally:
        began = time.monotonic()
        service.stop(grace_s=1)
        stopped_in = time.monotonic() - began
    assert stopped_in < 8
