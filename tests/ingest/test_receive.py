"""Receiving real phantom slides from real peers: stored byte-identical, recorded, audited."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from pydicom import dcmread
from sqlalchemy import select

from unitumour_dicom.db import AuditEvent, Instance, Slide
from unitumour_dicom.ingest import IngestEvent
from unitumour_dicom.store import sha256_file

from .helpers import (
    Listening,
    associations_closed,
    dataset_sha256,
    dcmtk_reference,
    echo,
    pynetdicom_send,
    rewrite,
    storescu,
    uid_of,
)

pytestmark = [pytest.mark.integration]


def _stored(listening: Listening) -> dict[str, Instance]:
    with listening.runtime.session() as session:
        return {i.sop_instance_uid: i for i in session.scalars(select(Instance))}


def assert_stored_identically(
    listening: Listening, files: list[Path], reference: dict[str, str] | None = None
) -> dict[str, Instance]:
    """Each data set is stored bit for bit as sent, and recorded so.

    ``reference``: SOP Instance UID -> sha256 of the data set the peer sent (see
    :func:`dcmtk_reference`); None when the peer sent the files' own data set bytes.
    """
    rows = _stored(listening)
    store = listening.runtime.store
    for path in files:
        uid = str(uid_of(path))
        row = rows[uid]
        stored = store.abspath(row.path)
        expected = reference[uid] if reference is not None else dataset_sha256(path)
        assert dataset_sha256(stored) == expected, f"{path.name} changed in transit"
        assert row.sha256 == sha256_file(stored)
        assert row.size_bytes == stored.stat().st_size
        meta = dcmread(stored, stop_before_pixels=True).file_meta
        assert (
            meta.TransferSyntaxUID
            == dcmread(path, stop_before_pixels=True).file_meta.TransferSyntaxUID
        )
    return rows


def test_storescu_phantom_is_stored_identically_and_recorded(listening_both, phantom, tmp_path):
    result = storescu(listening_both.host, listening_both.port, phantom.instance_paths)
    assert result.returncode == 0, result.stderr
    reference = dcmtk_reference(phantom.instance_paths, tmp_path)
    rows = assert_stored_identically(listening_both, phantom.instance_paths, reference)
    assert len(rows) == len(phantom.instance_paths)
    with listening_both.runtime.session() as session:
        slide = session.scalars(select(Slide)).one()
        events = session.scalars(select(AuditEvent.event)).all()
    (association,) = associations_closed(listening_both)
    assert slide.series_instance_uid == phantom.series_uid
    assert slide.study_instance_uid == phantom.study_uid
    assert slide.source_ae == "SENDER"
    assert {r.slide_id for r in rows.values()} == {slide.id}
    assert association.calling_ae == "SENDER" and association.state == "released"
    assert association.n_instances == len(phantom.instance_paths)
    assert association.n_bytes == sum(r.size_bytes for r in rows.values())
    assert events.count(IngestEvent.INSTANCE_STORED) == len(phantom.instance_paths)
    assert IngestEvent.ASSOCIATION_ACCEPTED in events
    image_types = {r.image_type.split("\\")[2] for r in rows.values()}
    assert image_types == {"VOLUME", "LABEL", "OVERVIEW"}


def test_echo_answers_success(listening):
    assert echo(listening.host, listening.port) == 0x0000


@pytest.mark.slow
@pytest.mark.parametrize(
    "transfer_syntax",
    ["jpeg2000_lossless", "jpeg2000", "jpegls_lossless", "rle", "explicit_vr_little_endian"],
)
def test_each_transfer_syntax_from_storescu(listening, phantoms, transfer_syntax, tmp_path):
    slide = phantoms(transfer_syntax=transfer_syntax, label=False, overview=False, levels=2)
    result = storescu(listening.host, listening.port, slide.instance_paths)
    assert result.returncode == 0, result.stderr
    reference = dcmtk_reference(slide.instance_paths, tmp_path)
    rows = assert_stored_identically(listening, slide.instance_paths, reference)
    expected = dcmread(slide.instance_paths[0], stop_before_pixels=True).file_meta.TransferSyntaxUID
    assert {r.transfer_syntax_uid for r in rows.values()} == {str(expected)}


@pytest.mark.slow
def test_htj2k_from_pynetdicom(listening, phantoms):
    """DCMTK 3.6.7 knows no HTJ2K, so a pynetdicom SCU sends it."""
    slide = phantoms(transfer_syntax="htj2k_lossless", label=False, overview=False, levels=2)
    statuses = pynetdicom_send(listening.host, listening.port, slide.instance_paths)
    assert statuses == [0] * len(slide.instance_paths)
    assert_stored_identically(listening, slide.instance_paths)


def test_implicit_and_deflated_encodings(listening, phantom, tmp_path):
    """Converters send native WSI implicit or deflated; both are kept exactly as sent."""
    base = phantom.level_paths[0][0]
    implicit = tmp_path / "implicit.dcm"
    ds = dcmread(base)
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = "1.2.826.0.1.3680043.8.498.1"
    ds.decompress()
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2"
    ds.save_as(implicit, enforce_file_format=True)
    deflated = tmp_path / "deflated.dcm"
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = "1.2.826.0.1.3680043.8.498.2"
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.1.99"
    ds.save_as(deflated, enforce_file_format=True)
    for path in (implicit, deflated):
        result = storescu(listening.host, listening.port, [path])
        assert result.returncode == 0, result.stderr
    reference = dcmtk_reference([implicit, deflated], tmp_path)
    assert_stored_identically(listening, [implicit, deflated], reference)


def test_pynetdicom_sender(listening, phantom):
    statuses = pynetdicom_send(listening.host, listening.port, phantom.instance_paths)
    assert statuses == [0] * len(phantom.instance_paths)
    assert_stored_identically(listening, phantom.instance_paths)


def test_concurrent_associations_from_several_senders(listening, phantoms, tmp_path):
    slides = [phantoms(seed=seed, label=False, overview=False) for seed in (11, 12, 13)]
    results: dict[str, object] = {}

    def send(aet: str, files: list[Path]) -> None:
        if aet == "PYSENDER":
            results[aet] = pynetdicom_send(listening.host, listening.port, files, aet=aet)
        else:
            results[aet] = storescu(listening.host, listening.port, files, aet=aet).returncode

    threads = [
        threading.Thread(target=send, args=(aet, slide.instance_paths))
        for aet, slide in zip(("SENDER", "SENDER2", "PYSENDER"), slides, strict=True)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert results["SENDER"] == 0 and results["SENDER2"] == 0
    assert results["PYSENDER"] == [0] * len(slides[2].instance_paths)
    for slide in slides[:2]:
        reference = dcmtk_reference(slide.instance_paths, tmp_path)
        assert_stored_identically(listening, slide.instance_paths, reference)
    assert_stored_identically(listening, slides[2].instance_paths)
    with listening.runtime.session() as session:
        by_series = {s.series_instance_uid: s.source_ae for s in session.scalars(select(Slide))}
    associations = associations_closed(listening)
    assert by_series == {
        slides[0].series_uid: "SENDER",
        slides[1].series_uid: "SENDER2",
        slides[2].series_uid: "PYSENDER",
    }
    assert sorted(a.calling_ae for a in associations) == ["PYSENDER", "SENDER", "SENDER2"]


def test_same_bytes_again_is_success_without_a_duplicate(listening_both, phantom):
    files = phantom.level_paths[0]
    for _ in range(2):
        result = storescu(listening_both.host, listening_both.port, files)
        assert result.returncode == 0, result.stderr
    with listening_both.runtime.session() as session:
        rows = session.scalars(select(Instance)).all()
        events = session.scalars(select(AuditEvent.event)).all()
    assert len(rows) == len(files)
    assert events.count(IngestEvent.INSTANCE_DUPLICATE) == len(files)
    assert sorted(p.name for p in listening_both.runtime.store.spool_dir.rglob("*.part")) == []


def test_same_uid_with_other_bytes_is_kept_as_a_new_version(listening_both, phantom, tmp_path):
    original = phantom.level_paths[1][0]
    changed = rewrite(
        original,
        tmp_path / "changed.dcm",
        lambda ds: setattr(ds, "ContentTime", "101010"),
        new_uid=False,
    )
    assert pynetdicom_send(listening_both.host, listening_both.port, [original]) == [0]
    assert pynetdicom_send(listening_both.host, listening_both.port, [changed]) == [0]
    with listening_both.runtime.session() as session:
        rows = session.scalars(select(Instance).order_by(Instance.version)).all()
        events = session.scalars(select(AuditEvent.event)).all()
    assert [r.version for r in rows] == [1, 2]
    assert rows[0].sop_instance_uid == rows[1].sop_instance_uid
    assert rows[0].sha256 != rows[1].sha256
    assert rows[0].path != rows[1].path
    store = listening_both.runtime.store
    assert dataset_sha256(store.abspath(rows[0].path)) == dataset_sha256(original)
    assert dataset_sha256(store.abspath(rows[1].path)) == dataset_sha256(changed)
    assert IngestEvent.INSTANCE_VERSION in events
