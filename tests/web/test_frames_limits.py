"""WADO-RS frames within bounds: a frame list of unique numbers within the instance, a
response size limit, and bodies streamed a frame at a time, never built whole in memory."""

from __future__ import annotations

import tracemalloc

import pydicom
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydicom.encaps import generate_frames
from unitumour_services.web import create_app

from unitumour_dicom.dicomweb import BadQueryError, DicomWeb, ResponseTooLargeError
from unitumour_dicom.runtime import Runtime

from .access_urls import FRAMES, base_level
from .conftest import Dispatches, SeededCase, login

pytestmark = [pytest.mark.integration]

NATIVE = 'multipart/related; type="application/octet-stream"'
JPEG_BASELINE = "1.2.840.10008.1.2.4.50"


def _frames_url(case: SeededCase) -> tuple[str, str]:
    sop = base_level(case)
    return sop, (
        f"/dicomweb/studies/{case.study_uid}/series/{case.series_uid}/instances/{sop}/frames"
    )


def _n_frames(case: SeededCase, sop: str) -> int:
    return int(pydicom.dcmread(case.instance_files[sop], stop_before_pixels=True).NumberOfFrames)


def test_repeated_and_out_of_range_frames_are_refused(client: TestClient, case: SeededCase) -> None:
    login(client, "vic")
    sop, url = _frames_url(case)
    n = _n_frames(case, sop)
    repeated = client.get(f"{url}/{','.join(['1'] * 256)}", headers={"Accept": FRAMES})
    assert repeated.status_code == 400
    assert "more than once" in repeated.json()["detail"]
    assert client.get(f"{url}/2,1,2", headers={"Accept": FRAMES}).status_code == 400
    beyond = client.get(f"{url}/1,{n + 1}", headers={"Accept": FRAMES})
    assert beyond.status_code == 404 and f"has {n}" in beyond.json()["detail"]
    assert client.get(f"{url}/0", headers={"Accept": FRAMES}).status_code == 400
    too_many = ",".join(str(i) for i in range(1, 258))
    assert client.get(f"{url}/{too_many}", headers={"Accept": FRAMES}).status_code == 400
    with pytest.raises(BadQueryError):
        DicomWeb.parse_frame_list(",".join(["7"] * 256))


def test_multi_frame_body_is_byte_identical_to_the_stored_frames(
    client: TestClient, case: SeededCase
) -> None:
    """The whole multipart body, framed by hand from the frames pydicom finds in the file."""
    login(client, "vic")
    sop, url = _frames_url(case)
    n = _n_frames(case, sop)
    ds = pydicom.dcmread(case.instance_files[sop])
    stored = [f.rstrip(b"\x00") for f in generate_frames(ds.PixelData, number_of_frames=n)]
    wanted = [1, n, 2]
    r = client.get(f"{url}/{','.join(map(str, wanted))}", headers={"Accept": FRAMES})
    assert r.status_code == 200
    boundary = r.headers["content-type"].split("boundary=")[1].split(";")[0]
    expected = b""
    for number in wanted:
        expected += (
            (
                f"--{boundary}\r\nContent-Type: image/jpeg; transfer-syntax={JPEG_BASELINE}\r\n"
                f"Content-Location: {url}/{number}\r\n\r\n"
            ).encode()
            + stored[number - 1]
            + b"\r\n"
        )
    expected += f"--{boundary}--\r\n".encode()
    assert r.content == expected


def test_frames_are_streamed_with_memory_of_one_frame(
    web_runtime: Runtime, case: SeededCase
) -> None:
    """Decoded (native) frames, the largest kind: the traced peak of sending every frame
    of the instance is that of sending one, plus less than two frames' worth."""
    service = DicomWeb(web_runtime.store)
    sop, _url = _frames_url(case)
    n = _n_frames(case, sop)

    def send(frame_list: str) -> tuple[int, int]:
        """(bytes sent, traced peak) of a frames response, consumed chunk by chunk."""
        tracemalloc.start()
        try:
            with web_runtime.session() as db:
                response = service.frames(
                    db, NATIVE, "/dicomweb", study_uid=case.study_uid,
                    series_uid=case.series_uid, sop_uid=sop, frame_list=frame_list,
                )  # fmt: skip
            assert not isinstance(response.body, bytes), "the body was built in memory"
            sent = sum(len(chunk) for chunk in response.body)
            return sent, tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    send("1")  # the file's layout is indexed (and cached) once
    _one, peak_one = send("1")
    total, peak_all = send(",".join(str(i) for i in range(1, n + 1)))
    ds = pydicom.dcmread(case.instance_files[sop], stop_before_pixels=True)
    frame_bytes = ds.Rows * ds.Columns * 3
    assert n >= 8 and total > n * frame_bytes  # every decoded frame was sent...
    assert peak_all < peak_one + 2 * frame_bytes, (peak_one, peak_all, total)


def test_response_size_limit_is_a_setting(
    web_runtime: Runtime, accounts: dict[str, str], dispatches: Dispatches, case: SeededCase
) -> None:
    sop, url = _frames_url(case)
    ds = pydicom.dcmread(case.instance_files[sop], stop_before_pixels=True)
    decoded = ds.Rows * ds.Columns * 3
    limit_mb = 1.5 * decoded / 2**20  # one decoded frame fits, two do not
    settings = web_runtime.settings.model_copy(
        update={
            "web": web_runtime.settings.web.model_copy(update={"dicomweb_max_frames_mb": limit_mb})
        }
    )
    app: FastAPI = create_app(settings, runtime=web_runtime)
    with TestClient(app) as client:
        login(client, "vic")
        assert client.get(f"{url}/1", headers={"Accept": NATIVE}).status_code == 200
        r = client.get(f"{url}/1,2", headers={"Accept": NATIVE})
        assert r.status_code == 413
        assert "web.dicomweb_max_frames_mb" in r.json()["detail"]
        # as stored (JPEG), the same two frames are small enough
        assert client.get(f"{url}/1,2", headers={"Accept": FRAMES}).status_code == 200
    with pytest.raises(ResponseTooLargeError), web_runtime.session() as db:
        DicomWeb(web_runtime.store, max_frames_bytes=10).frames(
            db, FRAMES, "/dicomweb", study_uid=case.study_uid,
            series_uid=case.series_uid, sop_uid=sop, frame_list="1",
        )  # fmt: skip
