"""DICOMweb over the store: QIDO-RS searches, WADO-RS metadata, frames, instances and bulk
data, checked against the stored files with pydicom, through the app and through an
independent client (the Python dicomweb-client) over real HTTP."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pydicom
import pytest
from dicomweb_client.api import DICOMwebClient
from fastapi.testclient import TestClient
from pydicom.encaps import generate_frames

from unitumour_dicom.dicomweb.multipart import parse_multipart

from .conftest import LiveServer, SeededCase, login

pytestmark = [pytest.mark.integration]

OCTET_ANY = 'multipart/related; type="application/octet-stream"; transfer-syntax=*'


def boundary(content_type: str) -> str:
    return content_type.split("boundary=")[1].split(";")[0].strip().strip('"')


def base_instance(case: SeededCase) -> tuple[str, Path]:
    for uid, path in case.instance_files.items():
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        if "ORIGINAL" in ds.ImageType and int(ds.get("NumberOfFrames", 1)) > 1:
            return uid, path
    raise AssertionError("no base level")


@pytest.fixture
def viewer_client(client: TestClient, case: SeededCase) -> TestClient:
    login(client, "vic")
    return client


def test_qido_searches(viewer_client: TestClient, case: SeededCase) -> None:
    c = viewer_client
    studies = c.get("/dicomweb/studies").json()
    assert len(studies) == 1
    study = studies[0]
    assert study["0020000D"]["Value"] == [case.study_uid]
    assert study["00100010"]["Value"] == [{"Alphabetic": "Phantom^Web"}]
    assert study["00080061"]["Value"] == ["SEG", "SM"]
    assert study["00201206"]["Value"] == [2]
    n = len(case.instance_files) + len(case.seg_files)
    assert study["00201208"]["Value"] == [n]
    assert c.get("/dicomweb/studies", params={"PatientID": "PHANTOM*"}).json()
    assert c.get("/dicomweb/studies", params={"00100020": "PHANTOM-WE?"}).json()
    assert c.get("/dicomweb/studies", params={"PatientID": "OTHER"}).json() == []
    assert c.get("/dicomweb/studies", params={"StudyDate": "20240301-20240331"}).json()
    assert c.get("/dicomweb/studies", params={"StudyDate": "-20240101"}).json() == []
    assert c.get("/dicomweb/studies", params={"ModalitiesInStudy": "SEG"}).json()
    series = c.get(f"/dicomweb/studies/{case.study_uid}/series").json()
    assert {(s["0020000E"]["Value"][0], s["00080060"]["Value"][0]) for s in series} == {
        (case.series_uid, "SM"),
        (case.seg_series_uid, "SEG"),
    }
    segs = c.get("/dicomweb/series", params={"Modality": "SEG"}).json()
    assert [s["0020000E"]["Value"][0] for s in segs] == [case.seg_series_uid]
    instances = c.get(
        f"/dicomweb/studies/{case.study_uid}/series/{case.seg_series_uid}/instances"
    ).json()
    assert {i["00080018"]["Value"][0] for i in instances} == set(case.seg_files)
    one = c.get("/dicomweb/instances", params={"SOPInstanceUID": next(iter(case.seg_files))})
    assert len(one.json()) == 1
    assert len(c.get("/dicomweb/instances", params={"limit": 2}).json()) == 2
    r = c.get("/dicomweb/instances", params={"NoSuchKey": "x"})
    assert r.status_code == 200 and "NoSuchKey" in r.headers["warning"]


def test_qido_refuses_bad_input(viewer_client: TestClient) -> None:
    c = viewer_client
    for params in (
        {"StudyInstanceUID": "1.2.abc"},
        {"StudyInstanceUID": "01.2"},
        {"StudyDate": "2024"},
        {"limit": "-1"},
        {"SOPInstanceUID": "1." * 40},
    ):
        assert c.get("/dicomweb/instances", params=params).status_code == 400, params
    assert c.get("/dicomweb/studies/1.2.3/series").status_code == 404
    assert c.get("/dicomweb/studies/1.2.abc/series").status_code == 422
    assert c.get("/dicomweb/studies", headers={"Accept": "image/png"}).status_code == 406


def test_metadata_round_trips_the_stored_header(
    viewer_client: TestClient, case: SeededCase
) -> None:
    c = viewer_client
    r = c.get(f"/dicomweb/studies/{case.study_uid}/series/{case.series_uid}/metadata")
    assert r.status_code == 200 and r.headers["content-type"] == "application/dicom+json"
    items = r.json()
    assert len(items) == len(case.instance_files)
    for item in items:
        uid = item["00080018"]["Value"][0]
        stored = pydicom.dcmread(case.instance_files[uid], stop_before_pixels=True)
        uris = {k: v.pop("BulkDataURI") for k, v in _bulk_elements(item)}
        assert "7FE00010" in item and item["7FE00010"].get("BulkDataURI", uris.get("7FE00010"))
        restored = pydicom.Dataset.from_json(
            {k: v for k, v in item.items() if k not in ("7FE00010", "00083002")},
            bulk_data_uri_handler=lambda tag, vr, uri: b"",
        )
        for elem in stored:
            if elem.VR in ("SQ", "OB", "OW", "UN") or elem.tag.group == 0x0002:
                continue
            assert restored[elem.tag].value == elem.value, elem.keyword
        assert item["00083002"]["Value"] == [str(stored.file_meta.TransferSyntaxUID)]
    seg_item = c.get(
        f"/dicomweb/studies/{case.study_uid}/series/{case.seg_series_uid}/metadata"
    ).json()[0]
    assert seg_item["00200052"]["Value"] == items[0]["00200052"]["Value"]  # frame of reference


def _bulk_elements(item: dict, prefix: str = "") -> list[tuple[str, dict]]:  # type: ignore[type-arg]
    out = []
    for key, value in item.items():
        if "BulkDataURI" in value:
            out.append((prefix + key, value))
        for sub in value.get("Value", []) if value.get("vr") == "SQ" else []:
            out.extend(_bulk_elements(sub, prefix + key + "/"))
    return out


def test_frames_as_stored_and_decoded(viewer_client: TestClient, case: SeededCase) -> None:
    c = viewer_client
    uid, path = base_instance(case)
    ds = pydicom.dcmread(path)
    n = int(ds.NumberOfFrames)
    stored = [f.rstrip(b"\x00") for f in generate_frames(ds.PixelData, number_of_frames=n)]
    url = f"/dicomweb/studies/{case.study_uid}/series/{case.series_uid}/instances/{uid}/frames"
    r = c.get(f"{url}/1,{n},2", headers={"Accept": OCTET_ANY})
    assert r.status_code == 200
    parts = parse_multipart(r.content, boundary(r.headers["content-type"]))
    assert [p.rstrip(b"\x00") for _, p in parts] == [stored[0], stored[n - 1], stored[1]]
    assert parts[0][0]["content-type"] == "image/jpeg; transfer-syntax=1.2.840.10008.1.2.4.50"
    jpeg = c.get(f"{url}/3", headers={"Accept": 'multipart/related; type="image/jpeg"'})
    assert parse_multipart(jpeg.content, boundary(jpeg.headers["content-type"]))[0][1] == stored[2]
    native = c.get(
        f"{url}/3", headers={"Accept": 'multipart/related; type="application/octet-stream"'}
    )
    ((headers, payload),) = parse_multipart(
        native.content, boundary(native.headers["content-type"])
    )
    assert headers["content-type"].endswith("transfer-syntax=1.2.840.10008.1.2.1")
    decoded = np.frombuffer(payload, np.uint8).reshape(ds.Rows, ds.Columns, 3)
    assert np.array_equal(decoded, ds.pixel_array[2])
    assert c.get(f"{url}/{n + 1}", headers={"Accept": OCTET_ANY}).status_code == 404
    assert c.get(f"{url}/0", headers={"Accept": OCTET_ANY}).status_code == 400
    assert c.get(f"{url}/1", headers={"Accept": "image/png"}).status_code == 406


def test_binary_seg_frames_are_bit_exact(viewer_client: TestClient, case: SeededCase) -> None:
    c = viewer_client
    for uid, path in case.seg_files.items():
        ds = pydicom.dcmread(path)
        expected = ds.pixel_array.reshape(-1, ds.Rows, ds.Columns)
        url = (
            f"/dicomweb/studies/{case.study_uid}/series/{case.seg_series_uid}/instances/{uid}"
            f"/frames/{','.join(str(i + 1) for i in range(len(expected)))}"
        )
        r = c.get(url, headers={"Accept": OCTET_ANY})
        parts = parse_multipart(r.content, boundary(r.headers["content-type"]))
        for i, (_, payload) in enumerate(parts):
            bits = np.unpackbits(np.frombuffer(payload, np.uint8), bitorder="little")
            assert np.array_equal(bits[: ds.Rows * ds.Columns].reshape(ds.Rows, ds.Columns),
                                  expected[i]), (uid, i)  # fmt: skip


def test_instances_are_served_byte_identical(viewer_client: TestClient, case: SeededCase) -> None:
    c = viewer_client
    uid, path = next(iter(case.seg_files.items()))
    base = f"/dicomweb/studies/{case.study_uid}/series/{case.seg_series_uid}"
    single = c.get(f"{base}/instances/{uid}", headers={"Accept": "application/dicom"})
    assert single.content == path.read_bytes()
    r = c.get(base, headers={"Accept": 'multipart/related; type="application/dicom"'})
    parts = parse_multipart(r.content, boundary(r.headers["content-type"]))
    digests = {hashlib.sha256(p).hexdigest() for _, p in parts}
    assert digests == {hashlib.sha256(p.read_bytes()).hexdigest() for p in case.seg_files.values()}
    wrong = 'multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.4.50'
    assert c.get(f"{base}/instances/{uid}", headers={"Accept": wrong}).status_code == 406


def test_bulkdata_by_tag_path(viewer_client: TestClient, case: SeededCase) -> None:
    c = viewer_client
    uid, path = base_instance(case)
    stored = pydicom.dcmread(path, stop_before_pixels=True)
    icc = stored.OpticalPathSequence[0].ICCProfile
    url = f"/dicomweb/studies/{case.study_uid}/series/{case.series_uid}/instances/{uid}/bulkdata"
    r = c.get(f"{url}/00480105/0/00282000", headers={"Accept": "application/octet-stream"})
    assert r.status_code == 200 and r.content == icc
    for bad in ("00480105/9/00282000", "00100010", "zz/0/00282000", "00480105/0"):
        assert c.get(f"{url}/{bad}").status_code in (400, 404), bad


def test_an_independent_dicomweb_client_reads_everything(
    live_server: LiveServer, case: SeededCase
) -> None:
    import requests

    session = requests.Session()
    r = session.post(
        f"{live_server.url}/api/login",
        json={"username": "vic", "password": "correct horse battery"},
    )
    assert r.status_code == 200
    client = DICOMwebClient(f"{live_server.url}/dicomweb", session=session)
    assert [s["0020000D"]["Value"][0] for s in client.search_for_studies()] == [case.study_uid]
    metadata = client.retrieve_series_metadata(case.study_uid, case.seg_series_uid)
    assert {m["00080018"]["Value"][0] for m in metadata} == set(case.seg_files)
    uid, path = base_instance(case)
    frames = client.retrieve_instance_frames(
        case.study_uid, case.series_uid, uid, frame_numbers=[1, 2],
        media_types=(("application/octet-stream", "*"),),
    )  # fmt: skip
    ds = pydicom.dcmread(path)
    stored = list(generate_frames(ds.PixelData, number_of_frames=int(ds.NumberOfFrames)))
    assert [f.rstrip(b"\x00") for f in frames] == [s.rstrip(b"\x00") for s in stored[:2]]
    seg_uid = next(iter(case.seg_files))
    instance = client.retrieve_instance(case.study_uid, case.seg_series_uid, seg_uid)
    assert instance.SOPInstanceUID == seg_uid
    anonymous = DICOMwebClient(f"{live_server.url}/dicomweb")
    with pytest.raises(requests.HTTPError) as refused:
        anonymous.search_for_studies()
    assert refused.value.response.status_code == 401
