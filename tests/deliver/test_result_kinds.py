"""One result, many objects, to destinations that take some kinds and classes and not others:
DCMTK storescp gets every kind byte for byte; a storescp whose profile has no SR class, and a
pynetdicom SCP that answers 0x0122 for the SR, get the rest, and the SR's refusal is on
record without failing the delivery; a destination's ``kinds`` chooses what it gets."""

from __future__ import annotations

import random
from pathlib import Path

import pydicom
import pytest
from pynetdicom import AE, evt
from pynetdicom.sop_class import (
    Comprehensive3DSRStorage,
    MicroscopyBulkSimpleAnnotationsStorage,
    SecondaryCaptureImageStorage,
    SegmentationStorage,
)
from sqlalchemy import select

from tests.findings.resultkit import UID_SEED, WHEN, make_case
from unitumour_dicom.db import AuditEvent, Delivery, DeliveryState, Job, Result, Slide
from unitumour_dicom.db.types import utcnow
from unitumour_dicom.deliver import attempt_delivery, plan_deliveries
from unitumour_dicom.deliver.routing import instances_for
from unitumour_dicom.results import WriterInputs, write_result_objects
from unitumour_dicom.runtime import Runtime
from unitumour_dicom.seg import record_result

from .conftest import delivery_settings, destination, free_port
from .test_delivery import dataset_bytes

pytestmark = pytest.mark.integration

SR = str(Comprehensive3DSRStorage)
KINDS = ["seg", "seg", "seg", "sr", "ann", "key_image"]

#: A storescp profile that stores SEG, bulk annotations and Secondary Capture, and no SR.
NO_SR_PROFILE = r"""
[[TransferSyntaxes]]
[Uncompressed]
TransferSyntax1 = LocalEndianExplicit
TransferSyntax2 = OppositeEndianExplicit
TransferSyntax3 = LittleEndianImplicit

[[PresentationContexts]]
[NoSR]
PresentationContext1 = VerificationSOPClass\Uncompressed
PresentationContext2 = SegmentationStorage\Uncompressed
PresentationContext3 = 1.2.840.10008.5.1.4.1.1.91.1\Uncompressed
PresentationContext4 = SecondaryCaptureImageStorage\Uncompressed

[[Profiles]]
[NoSR]
PresentationContexts = NoSR
"""


def make_full_result(runtime: Runtime) -> int:
    """A phantom slide's SEG pyramid, SR, bulk annotations and key image in the runtime's
    store, recorded as one result; returns its id."""
    root = runtime.settings.data_dir  # make_case's store is root/store: the runtime's
    case = make_case(root)
    inputs = WriterInputs(
        source_datasets=case.headers,
        slide_paths=case.phantom.instance_paths,
        result=case.result,
        seg=case.seg,
        identity=case.identity,
        seg_settings=case.seg_settings,
        results_settings=runtime.settings.results,
        uid_seed=UID_SEED,
        content_datetime=WHEN,
    )
    objects = write_result_objects(inputs, runtime.settings.results.kinds, runtime.store)
    assert [o.kind for o in objects] == ["sr", "ann", "key_image"]
    base = case.headers[0]
    with runtime.session() as session:
        slide = Slide(
            study_instance_uid=str(base.StudyInstanceUID),
            series_instance_uid=str(base.SeriesInstanceUID),
            source_ae="SCANNER",
        )
        job = Job(uuid=UID_SEED, slide=slide)
        session.add_all([slide, job])
        session.flush()
        result = record_result(
            session=session,
            job=job,
            pyramid=case.seg,
            tumour_area_mm2=case.result.tumour_area_mm2,
            tissue_area_mm2=case.result.tissue_area_mm2,
            objects=objects,
        )
        return int(result.id)


def send(runtime: Runtime, result_id: int, settings) -> int:  # type: ignore[no-untyped-def]
    with runtime.session() as session:
        result = session.get(Result, result_id)
        (delivery,) = plan_deliveries(
            session=session, result=result, source_ae=None, settings=settings, caller_rules=[]
        )
        attempt_delivery(
            session=session,
            delivery=delivery,
            store=runtime.store,
            settings=settings,
            now=utcnow(),
            rng=random.Random(0),
        )
        return int(delivery.id)


def stored_by_uid(runtime: Runtime, result_id: int) -> dict[str, tuple[str, Path]]:
    with runtime.session() as session:
        result = session.get(Result, result_id)
        return {
            i.sop_instance_uid: (i.kind, runtime.store.abspath(i.path)) for i in result.instances
        }


def received_kinds(paths: list[Path], stored: dict[str, tuple[str, Path]]) -> list[str]:
    """The kinds of the received files, each checked byte for byte against the store."""
    kinds = []
    for path in paths:
        uid = str(pydicom.filereader.read_file_meta_info(path).MediaStorageSOPInstanceUID)
        kind, original = stored[uid]
        assert dataset_bytes(path) == dataset_bytes(original), kind
        kinds.append(kind)
    return sorted(kinds)


def audit_details(runtime: Runtime, delivery_id: int, event: str) -> dict:
    with runtime.session() as session:
        row = session.scalars(
            select(AuditEvent)
            .where(AuditEvent.delivery_id == delivery_id, AuditEvent.event == event)
            .order_by(AuditEvent.id.desc())
        ).first()
        assert row is not None, event
        return dict(row.details)


@pytest.fixture
def full_result(sqlite_runtime: Runtime) -> int:
    return make_full_result(sqlite_runtime)


def test_every_kind_reaches_storescp_byte_for_byte(sqlite_runtime, full_result, storescp) -> None:
    scp = storescp()  # DCMTK 3.6.7 knows every class, bulk annotations included
    settings = delivery_settings(destination(scp.port))
    with sqlite_runtime.session() as session:
        result = session.get(Result, full_result)
        order = [i.kind for i in instances_for(result, ["seg", "sr", "ann", "key_image"])]
        assert order == KINDS  # SEG levels (base first), then the registry's order
    delivery_id = send(sqlite_runtime, full_result, settings)
    with sqlite_runtime.session() as session:
        delivery = session.get(Delivery, delivery_id)
        assert delivery.state == DeliveryState.DELIVERED, delivery.last_error
        assert delivery.last_error is None
    stored = stored_by_uid(sqlite_runtime, full_result)
    assert received_kinds(scp.received(), stored) == sorted(KINDS)
    assert audit_details(sqlite_runtime, delivery_id, "delivery.attempt")["refused_classes"] == {}


def test_a_destination_without_the_sr_class_gets_the_rest_and_the_refusal_is_recorded(
    runtime, storescp, tmp_path: Path
) -> None:
    """DCMTK storescp with a profile of SEG, bulk annotations and Secondary Capture only:
    the SR's presentation context is refused; everything else is stored; the delivery is
    delivered with a note, and the attempt row and the audit say which class was refused."""
    config = tmp_path / "no-sr.cfg"
    config.write_text(NO_SR_PROFILE)
    scp = storescp("--config-file", str(config), "NoSR")
    result_id = make_full_result(runtime)
    delivery_id = send(runtime, result_id, delivery_settings(destination(scp.port)))
    stored = stored_by_uid(runtime, result_id)
    assert received_kinds(scp.received(), stored) == sorted(k for k in KINDS if k != "sr")
    with runtime.session() as session:
        delivery = session.get(Delivery, delivery_id)
        assert delivery.state == DeliveryState.DELIVERED
        [attempt] = delivery.attempts_log
        assert attempt.ok and attempt.status == 0
        assert "Comprehensive 3D SR Storage" in attempt.error and "negotiation" in attempt.error
        assert delivery.last_error == attempt.error
        [sr_uid] = [uid for uid, (kind, _) in stored.items() if kind == "sr"]
    for event in ("delivery.attempt", "delivery.delivered"):
        details = audit_details(runtime, delivery_id, event)
        assert details["refused_classes"] == {SR: "refused in negotiation"}
        assert details["skipped"] == [sr_uid]
        assert sr_uid not in details["statuses"] and len(details["statuses"]) == 5


@pytest.fixture
def sr_refusing_scp(tmp_path: Path):  # type: ignore[no-untyped-def]
    """A pynetdicom SCP that negotiates every kind's class, stores all but the SR, and
    answers the SR with 0x0122 (SOP Class not supported)."""
    received: list[str] = []
    ae = AE(ae_title="PICKY")
    for sop in (
        SegmentationStorage,
        Comprehensive3DSRStorage,
        MicroscopyBulkSimpleAnnotationsStorage,
        SecondaryCaptureImageStorage,
    ):
        ae.add_supported_context(sop, ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2"])

    def handle(event):  # type: ignore[no-untyped-def]
        if event.request.AffectedSOPClassUID == SR:
            return 0x0122
        received.append(str(event.request.AffectedSOPInstanceUID))
        return 0x0000

    port = free_port()
    server = ae.start_server(
        ("127.0.0.1", port), block=False, evt_handlers=[(evt.EVT_C_STORE, handle)]
    )
    yield port, received
    server.shutdown()


def test_a_class_refused_at_the_store_is_recorded_not_fatal(
    sqlite_runtime, full_result, sr_refusing_scp
) -> None:
    port, received = sr_refusing_scp
    settings = delivery_settings(destination(port, ae_title="PICKY"))
    delivery_id = send(sqlite_runtime, full_result, settings)
    stored = stored_by_uid(sqlite_runtime, full_result)
    assert sorted(stored[uid][0] for uid in received) == sorted(k for k in KINDS if k != "sr")
    with sqlite_runtime.session() as session:
        delivery = session.get(Delivery, delivery_id)
        assert delivery.state == DeliveryState.DELIVERED
        assert "status 0x0122" in delivery.last_error
    details = audit_details(sqlite_runtime, delivery_id, "delivery.delivered")
    assert details["refused_classes"] == {SR: "status 0x0122"}


def test_a_destination_gets_only_the_kinds_it_lists(sqlite_runtime, full_result, storescp) -> None:
    scp = storescp()
    dest = destination(scp.port).model_copy(update={"kinds": ["sr", "key_image"]})
    delivery_id = send(sqlite_runtime, full_result, delivery_settings(dest))
    stored = stored_by_uid(sqlite_runtime, full_result)
    assert received_kinds(scp.received(), stored) == ["key_image", "sr"]
    with sqlite_runtime.session() as session:
        delivery = session.get(Delivery, delivery_id)
        assert delivery.state == DeliveryState.DELIVERED and delivery.last_error is None


def test_a_destination_that_takes_none_of_the_kinds_fails_for_good(
    sqlite_runtime, full_result, sr_refusing_scp
) -> None:
    port, received = sr_refusing_scp
    dest = destination(port, ae_title="PICKY").model_copy(update={"kinds": ["sr"]})
    delivery_id = send(sqlite_runtime, full_result, delivery_settings(dest))
    with sqlite_runtime.session() as session:
        delivery = session.get(Delivery, delivery_id)
        assert delivery.state == DeliveryState.FAILED
        assert "takes none of the classes offered" in delivery.last_error
    assert received == []


def test_the_kinds_settings_refuse_what_cannot_be() -> None:
    from pydantic import ValidationError

    from unitumour_dicom.config.sections import (
        DeliverySettings,
        DestinationSettings,
        ResultsSettings,
    )
    from unitumour_dicom.deliver.routing import kinds_for

    assert ResultsSettings().kinds == ["seg", "sr", "ann", "key_image"]
    with pytest.raises(ValidationError, match="must hold seg"):
        ResultsSettings(kinds=["sr", "ann"])
    with pytest.raises(ValidationError, match="names a kind twice"):
        ResultsSettings(kinds=["seg", "sr", "sr"])
    with pytest.raises(ValidationError):
        ResultsSettings(kinds=["seg", "pdf"])
    with pytest.raises(ValidationError):
        DestinationSettings(name="x", ae_title="X", host="h", port=104, kinds=[])
    settings = DeliverySettings(
        destinations=[destination(104).model_copy(update={"kinds": ["seg", "sr"]})]
    )
    assert kinds_for("pacs", settings) == ("seg", "sr")
    # a destination removed from the settings since it was planned: every kind, as before
    assert kinds_for("gone", settings) == ("seg", "sr", "ann", "key_image")


def test_a_destination_with_nothing_of_its_kinds_gets_no_delivery(sqlite_runtime) -> None:
    """A SEG-only result (a slide without tumour, say) and a destination of annotations
    only: no delivery is planned (it could only fail), and the audit says why."""
    from tests.deliver.conftest import make_result

    result_id = make_result(sqlite_runtime)
    ann_only = destination(104, name="viewer").model_copy(update={"kinds": ["ann"]})
    settings = delivery_settings(ann_only, destination(105))
    with sqlite_runtime.session() as session:
        result = session.get(Result, result_id)
        planned = plan_deliveries(
            session=session, result=result, source_ae=None, settings=settings, caller_rules=[]
        )
        assert [d.destination for d in planned] == ["pacs"]
        [why] = session.scalars(
            select(AuditEvent).where(AuditEvent.event == "delivery.unrouted")
        ).all()
        assert "nothing for viewer, which takes ann only" in why.message
