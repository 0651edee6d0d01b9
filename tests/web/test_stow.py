"""STOW-RS in: dicomweb-client and curl store slides through the one receive path; every
refusal answers as PS3.18 says and leaves nothing half-kept."""

from __future__ import annotations

import base64
import json
import shutil
import socket
import subprocess
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pydicom
import pytest
from dicomweb_client.api import DICOMwebClient
from fastapi import FastAPI
from sqlalchemy import func, select
from unitumour_services.web.app import create_app

from tests.slide.wsi_files import write_wsi
from tests.web.conftest import LiveServer
from unitumour_dicom import sender_tokens
from unitumour_dicom.config import Settings
from unitumour_dicom.config.sections import CallerRule
from unitumour_dicom.db import AuditEvent, Instance, Slide
from unitumour_dicom.dicomweb.multipart import Part, iter_multipart
from unitumour_dicom.runtime import Runtime
from unitumour_dicom.synthetic import PhantomSlide

pytestmark = [pytest.mark.integration]

SM = "1.2.840.10008.5.1.4.1.1.77.1.6"
CT = "1.2.840.10008.5.1.4.1.1.2"
BOUNDARY = "stow-test-boundary"


@pytest.fixture
def web_settings(web_settings: Settings) -> Settings:
    """SCANNER1 may send from anywhere; FARAWAY only from a network the tests are not on."""
    listener = web_settings.listener.model_copy(
        update={
            "callers": [
                CallerRule(ae_title="SCANNER1", quiet_seconds=120),
                CallerRule(ae_title="FARAWAY", networks=["10.99.0.0/16"]),
            ]
        }
    )
    return web_settings.model_copy(update={"listener": listener})


@pytest.fixture
def tokens(web_runtime: Runtime) -> dict[str, str]:
    with web_runtime.session() as db:
        made = {
            name: sender_tokens.create_token(session=db, sender=name, actor="test").secret
            for name in ("SCANNER1", "FARAWAY")
        }
        revoked = sender_tokens.create_token(session=db, sender="SCANNER1", actor="test")
        db.flush()
        sender_tokens.revoke_token(session=db, token_id=revoked.id, actor="test")
        made["revoked"] = revoked.secret
    return made


@pytest.fixture
def server(web_runtime: Runtime) -> Iterator[LiveServer]:
    app: FastAPI = create_app(web_runtime.settings, runtime=web_runtime)
    with LiveServer(app) as live:
        yield live


def body(*paths_or_bytes: Path | bytes, media: str = "application/dicom") -> bytes:
    parts = [
        Part(media, path=p) if isinstance(p, Path) else Part(media, data=p) for p in paths_or_bytes
    ]
    return b"".join(iter_multipart(parts, BOUNDARY))


def post(
    server: LiveServer,
    data: bytes,
    token: str | None,
    *,
    study: str | None = None,
    accept: str = "application/dicom+json",
    content_type: str = f'multipart/related; type="application/dicom"; boundary={BOUNDARY}',
) -> subprocess.CompletedProcess[str]:
    """POST with curl (a client that is not ours), the body from a file."""
    url = f"{server.url}/dicomweb/studies" + (f"/{study}" if study else "")
    args = [
        "curl",
        "-sS",
        "-o",
        "-",
        "-w",
        "\n%{http_code}",
        "-X",
        "POST",
        url,
        "-H",
        f"Content-Type: {content_type}",
        "-H",
        f"Accept: {accept}",
        "-D",
        "/dev/stderr",
        "--data-binary",
        "@-",
    ]
    if token is not None:
        args += ["-H", f"Authorization: Bearer {token}"]
    return subprocess.run(
        args,
        input=data.decode("latin-1"),
        capture_output=True,
        text=True,
        encoding="latin-1",
        timeout=120,
        check=True,
    )


def answer(result: subprocess.CompletedProcess[str]) -> tuple[int, str]:
    text, _, code = result.stdout.rpartition("\n")
    return int(code), text


def stored(runtime: Runtime) -> list[Instance]:
    with runtime.session() as db:
        rows = list(db.scalars(select(Instance).order_by(Instance.id)))
        db.expunge_all()
    return rows


def events(runtime: Runtime, name: str) -> list[AuditEvent]:
    with runtime.session() as db:
        rows = list(db.scalars(select(AuditEvent).where(AuditEvent.event == name)))
        db.expunge_all()
    return rows


def test_dicomweb_client_stores_a_phantom_through_the_receive_path(
    server: LiveServer, tokens: dict[str, str], phantom: PhantomSlide, web_runtime: Runtime
) -> None:
    client = DICOMwebClient(
        f"{server.url}/dicomweb", headers={"Authorization": f"Bearer {tokens['SCANNER1']}"}
    )
    datasets = [pydicom.dcmread(p) for p in phantom.instance_paths]
    response = client.store_instances(datasets)
    assert len(response.ReferencedSOPSequence) == len(datasets)
    assert "FailedSOPSequence" not in response
    urls = {i.ReferencedSOPInstanceUID: i.RetrieveURL for i in response.ReferencedSOPSequence}
    rows = stored(web_runtime)
    assert {r.sop_instance_uid for r in rows} == {d.SOPInstanceUID for d in datasets}
    for row in rows:
        assert (row.intake, row.sender) == ("stow-rs", "SCANNER1")
        assert urls[row.sop_instance_uid] == (
            f"/dicomweb/studies/{row.study_instance_uid}/series/{row.series_instance_uid}"
            f"/instances/{row.sop_instance_uid}"
        )
        kept = web_runtime.store.root / row.path
        assert kept.stat().st_size == row.size_bytes
    # byte for byte what was sent
    sent = {pydicom.dcmread(p).SOPInstanceUID: p.read_bytes() for p in phantom.instance_paths}
    for row in rows:
        assert (web_runtime.store.root / row.path).read_bytes() == sent[row.sop_instance_uid]
    with web_runtime.session() as db:
        slides = db.scalar(
            select(func.count()).select_from(Instance).where(Instance.slide_id.is_not(None))
        )
    assert slides == len(rows)
    # the caller rule of the token's AE title applies, as to a C-STORE from it
    with web_runtime.session() as db:
        slide = db.scalar(select(Slide))
        assert slide is not None
        assert (slide.source_ae, slide.quiet_seconds) == ("SCANNER1", 120)
    # the same again: duplicates, success, nothing new kept
    again = client.store_instances(datasets[:2])
    assert len(again.ReferencedSOPSequence) == 2 and len(stored(web_runtime)) == len(rows)


def test_curl_stores_a_slide_from_another_writer_and_reads_xml(
    server: LiveServer, tokens: dict[str, str], web_runtime: Runtime, tmp_path: Path
) -> None:
    """A sparse, concatenated pyramid from the test writer (not our phantom generator),
    sent by curl to /studies/{study}, answered in the Native DICOM Model."""
    base = np.random.default_rng(3).integers(0, 255, (300, 400, 3), dtype=np.uint8)
    paths = write_wsi(tmp_path / "wsi", base, sparse=True, concatenation_frames=5)
    study = pydicom.dcmread(paths[0]).StudyInstanceUID
    code, text = answer(
        post(server, body(*paths), tokens["SCANNER1"], study=study, accept="application/dicom+xml")
    )
    assert code == 200, text
    root = ET.fromstring(text)
    ns = {"n": "http://dicom.nema.org/PS3.19/models/NativeDICOM"}
    items = root.findall("n:DicomAttribute[@keyword='ReferencedSOPSequence']/n:Item", ns)
    assert len(items) == len(paths) == len(stored(web_runtime))


def test_refusals_answer_as_ps3_18_says_and_keep_nothing_bad(
    server: LiveServer,
    tokens: dict[str, str],
    phantom: PhantomSlide,
    web_runtime: Runtime,
    tmp_path: Path,
) -> None:
    good = phantom.instance_paths[0]
    ok = pydicom.dcmread(good)
    # who may send
    assert answer(post(server, body(good), None))[0] == 401
    assert answer(post(server, body(good), "utk_" + "A" * 43))[0] == 401
    assert answer(post(server, body(good), tokens["revoked"]))[0] == 401
    assert answer(post(server, body(good), tokens["FARAWAY"]))[0] == 403
    basic = base64.b64encode(f"SCANNER1:{tokens['SCANNER1']}".encode()).decode()
    refused_basic = subprocess.run(
        [
            "curl",
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-X",
            "POST",
            f"{server.url}/dicomweb/studies",
            "-H",
            f"Authorization: Basic {basic}",
            "-H",
            f'Content-Type: multipart/related; type="application/dicom"; boundary={BOUNDARY}',
            "--data-binary",
            "@" + str(good),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert refused_basic.stdout == "401"  # Basic over plain http: refused
    # what may be sent
    assert (
        answer(post(server, body(good), tokens["SCANNER1"], content_type="application/dicom"))[0]
        == 415
    )
    assert (
        answer(
            post(
                server,
                body(good),
                tokens["SCANNER1"],
                content_type='multipart/related; type="application/dicom+json"; '
                f"boundary={BOUNDARY}",
            )
        )[0]
        == 415
    )
    assert stored(web_runtime) == []
    refusals = events(web_runtime, "stow.refused")
    assert refusals and all(r.details and r.details["status"] in (401, 403, 415) for r in refusals)

    # wrong SOP class, truncated part, not DICOM at all, another study: 409, nothing kept
    ct = pydicom.dcmread(good)
    ct.SOPClassUID = ct.file_meta.MediaStorageSOPClassUID = CT
    ct.SOPInstanceUID = ct.file_meta.MediaStorageSOPInstanceUID = "1.2.826.0.1.3680043.99.1"
    ct_path = tmp_path / "ct.dcm"
    ct.save_as(ct_path, enforce_file_format=True)
    truncated = good.read_bytes()[: good.stat().st_size // 2]
    code, text = answer(
        post(server, body(ct_path, truncated, b"hello", good), tokens["SCANNER1"], study="1.2.3.4")
    )
    assert code == 409, text
    reply = pydicom.Dataset.from_json(json.loads(text))
    reasons = {i.ReferencedSOPInstanceUID: i.FailureReason for i in reply.FailedSOPSequence}
    assert reasons["1.2.826.0.1.3680043.99.1"] in (0x0122, 0xA900)
    assert reasons[ok.SOPInstanceUID] == 0xA900  # not the study the URL names
    other = [i.FailureReason for i in reply.OtherFailuresSequence]
    assert 0xC000 in other  # the truncated part and "hello" have no readable UIDs
    assert stored(web_runtime) == []

    # some good, one bad: 202, the good one stored, the reason in a Warning header
    result = post(server, body(good, ct_path), tokens["SCANNER1"])
    code, text = answer(result)
    assert code == 202
    assert "warning: 299 unitumour" in result.stderr.lower()
    assert [r.sop_instance_uid for r in stored(web_runtime)] == [ok.SOPInstanceUID]


def test_a_client_that_vanishes_mid_part_keeps_the_parts_it_finished(
    server: LiveServer, tokens: dict[str, str], phantom: PhantomSlide, web_runtime: Runtime
) -> None:
    first, second = phantom.instance_paths[:2]
    data = body(first, second)
    cut = len(data) - second.stat().st_size // 2
    head = (
        f"POST /dicomweb/studies HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Bearer {tokens['SCANNER1']}\r\n"
        f'Content-Type: multipart/related; type="application/dicom"; boundary={BOUNDARY}\r\n'
        f"Content-Length: {len(data)}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(head + data[:cut])
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not events(web_runtime, "instance.incomplete"):
        time.sleep(0.2)
    assert [r.sop_instance_uid for r in stored(web_runtime)] == [
        pydicom.dcmread(first).SOPInstanceUID
    ]
    incomplete = events(web_runtime, "instance.incomplete")
    assert len(incomplete) == 1 and incomplete[0].details["intake"] == "stow-rs"
    assert not any(web_runtime.store.spool_dir.rglob("*.part"))


def test_oversize_instances_are_refused_out_of_resources(
    web_settings: Settings, tokens: dict[str, str], phantom: PhantomSlide, tmp_path: Path
) -> None:
    listener = web_settings.listener.model_copy(update={"max_instance_bytes": 64 * 1024})
    settings = web_settings.model_copy(update={"listener": listener})
    runtime = Runtime(settings)
    big = max(phantom.instance_paths, key=lambda p: p.stat().st_size)
    assert big.stat().st_size > 64 * 1024
    with LiveServer(create_app(settings, runtime=runtime)) as live:
        code, text = answer(post(live, body(big), tokens["SCANNER1"]))
    assert code == 409
    reply = pydicom.Dataset.from_json(json.loads(text))
    failures = list(reply.get("FailedSOPSequence", [])) + list(
        reply.get("OtherFailuresSequence", [])
    )
    assert [f.FailureReason for f in failures] == [0xA700]
    assert stored(runtime) == []
    assert shutil.which("curl")
