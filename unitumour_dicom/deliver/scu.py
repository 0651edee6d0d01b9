"""The C-STORE SCU: send stored DICOM files to one destination over one association.

Negotiation: for each SOP class, one presentation context per transfer syntax we can send
without loss, the stored one first, so that the destination accepts or refuses each on its
own. A file goes as stored, streamed from disk byte for byte, when its own transfer syntax is
accepted; a native or deflated file goes re-encoded (Explicit/Implicit VR Little Endian,
inflated) when only those are; an encapsulated file needs its own. Every outcome is a
:class:`SendReport` that says whether to try again.

A destination may take some SOP classes and not others (a PACS that stores images and SR but
no SEG or bulk annotations): a class it refuses, in the negotiation or with status 0x0122
(SOP class not supported), is recorded in ``SendReport.refused_classes`` and its files are
left out; the send succeeds when every file of every other class was stored, and fails only
when the destination takes none of the classes offered.
"""

from __future__ import annotations

import logging
import ssl
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pydicom
from pydicom.filereader import read_file_meta_info
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)
from pynetdicom import AE, _config, evt
from pynetdicom.presentation import build_context

from ..config.sections import TLSSettings
from ..errors import DeliveryError

log = logging.getLogger(__name__)

# Stored files are sent from disk in chunks, never loaded whole: a SEG of a slide's base
# level can be a gigabyte. (A pynetdicom process-wide switch; our processes only ever send
# stored files, and pynetdicom still loads a Dataset when one is passed instead of a path.)
_config.STORE_SEND_CHUNKED_DATASET = True

SUCCESS = 0x0000
WARNINGS = {0xB000, 0xB006, 0xB007}
#: Failure statuses that no retry will change: the data set or SOP class is refused as such.
PERMANENT_STATUSES = {0x0122, 0x0124} | set(range(0xA900, 0xAA00))
#: C-STORE status "Refused: SOP Class not supported": the class is refused, not the file.
SOP_CLASS_NOT_SUPPORTED = 0x0122
_MAX_CONTEXTS = 128


@dataclass(frozen=True)
class Destination:
    """Where to send: the peer's AE title and address, and how to secure the connection."""

    name: str
    ae_title: str
    host: str
    port: int
    tls: TLSSettings = field(default_factory=TLSSettings)


@dataclass
class SendReport:
    """What happened: per-instance statuses, the worst status, and whether to retry."""

    ok: bool = False
    statuses: dict[str, int] = field(default_factory=dict)
    status: int | None = None
    error: str | None = None
    permanent: bool = False
    transfer_syntaxes: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    #: SOP class UID -> why the destination does not take it; its files were not sent.
    refused_classes: dict[str, str] = field(default_factory=dict)
    #: SOP Instance UIDs left out because their class was refused.
    skipped: list[str] = field(default_factory=list)

    @property
    def note(self) -> str | None:
        """One line on the classes refused, for a delivery that otherwise succeeded."""
        if not self.refused_classes:
            return None
        parts = [f"{_class_name(uid)} ({why})" for uid, why in self.refused_classes.items()]
        return (
            f"not taken by the destination, {len(self.skipped)} instance(s) left out: "
            + "; ".join(parts)
        )

    def fail(self, error: str, *, permanent: bool, status: int | None = None) -> SendReport:
        self.ok = False
        self.error = error
        self.permanent = permanent
        if status is not None:
            self.status = status
        return self


@dataclass(frozen=True)
class _FileInfo:
    path: Path
    sop_class_uid: UID
    sop_instance_uid: str
    transfer_syntax_uid: UID


class RejectionRecorder:
    """Keeps the A-ASSOCIATE-RJ a peer sent, which pynetdicom's association does not expose.

    Bind ``handler`` to the association; afterwards ``text`` says why (result, source,
    reason), and ``permanent`` whether the peer said it would refuse again.
    """

    def __init__(self) -> None:
        self.result: int | None = None
        self.text: str | None = None
        self.handler = (evt.EVT_ACSE_RECV, self._on_acse)

    def _on_acse(self, event: evt.Event) -> None:
        primitive = event.primitive  # type: ignore[attr-defined]
        if getattr(primitive, "result", None) in (0x01, 0x02):
            self.result = primitive.result
            self.text = f"{primitive.result_str}, {primitive.source_str}: {primitive.reason_str}"

    @property
    def permanent(self) -> bool:
        return self.result == 0x01


def _class_name(uid: str) -> str:
    name = UID(uid).name
    return f"{name} {uid}" if name != uid else uid


def _alternatives(ts: UID) -> list[UID]:
    """Transfer syntaxes a file stored in ``ts`` can be sent in without loss, best first."""
    if ts == DeflatedExplicitVRLittleEndian:
        return [ts, ExplicitVRLittleEndian, ImplicitVRLittleEndian]
    if ts == ExplicitVRLittleEndian:
        return [ts, ImplicitVRLittleEndian]
    if ts == ImplicitVRLittleEndian:
        return [ts, ExplicitVRLittleEndian]
    return [ts]


def _read_meta(path: Path) -> _FileInfo:
    try:
        meta = read_file_meta_info(path)
        return _FileInfo(
            path=path,
            sop_class_uid=UID(meta.MediaStorageSOPClassUID),
            sop_instance_uid=str(meta.MediaStorageSOPInstanceUID),
            transfer_syntax_uid=UID(meta.TransferSyntaxUID),
        )
    except (OSError, AttributeError, pydicom.errors.InvalidDicomError) as exc:
        raise DeliveryError(f"{path}: not a readable DICOM file ({exc})") from exc


def tls_context(tls: TLSSettings, host: str) -> tuple[ssl.SSLContext, str] | None:
    """Client TLS: verify the destination against ``ca_file`` (or the system's CAs) and
    present ``certfile``/``keyfile`` when set."""
    if not tls.enabled:
        return None
    context = ssl.create_default_context(
        ssl.Purpose.SERVER_AUTH, cafile=str(tls.ca_file) if tls.ca_file else None
    )
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if tls.certfile:
        context.load_cert_chain(str(tls.certfile), str(tls.keyfile) if tls.keyfile else None)
    return context, host


def send_instances(
    *,
    destination: Destination,
    calling_ae_title: str,
    paths: Sequence[Path],
    timeout_s: float = 60.0,
) -> SendReport:
    """Send ``paths`` over one association; stop at the first failure (the rest would only be
    sent again on the next try), except for a SOP class the destination does not take:
    that is recorded in ``refused_classes`` and its files skipped. Never raises for network
    or peer trouble: the report says."""
    started = time.monotonic()
    report = SendReport()
    try:
        files = [_read_meta(Path(p)) for p in paths]
    except DeliveryError as exc:
        return report.fail(str(exc), permanent=True)
    if not files:
        return report.fail("nothing to send", permanent=True)

    ae = AE(ae_title=calling_ae_title)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout_s
    ae.connection_timeout = timeout_s
    ae.maximum_pdu_size = 0  # whatever the destination can take
    requested: list[tuple[UID, UID]] = []
    for info in files:
        for ts in _alternatives(info.transfer_syntax_uid):
            if (info.sop_class_uid, ts) not in requested:
                requested.append((info.sop_class_uid, ts))
    if len(requested) > _MAX_CONTEXTS:
        return report.fail("more presentation contexts than one association allows", permanent=True)
    ae.requested_contexts = [build_context(sop, [ts]) for sop, ts in requested]

    rejection = RejectionRecorder()

    try:
        tls_args = tls_context(destination.tls, destination.host)
    except (OSError, ssl.SSLError) as exc:
        return report.fail(f"TLS settings of {destination.name}: {exc}", permanent=True)
    where = f"{destination.ae_title}@{destination.host}:{destination.port}"
    try:
        assoc = ae.associate(
            destination.host,
            destination.port,
            ae_title=destination.ae_title,
            tls_args=tls_args,
            evt_handlers=[rejection.handler],
        )
    except (OSError, ValueError, RuntimeError) as exc:
        return report.fail(f"cannot associate with {where}: {exc}", permanent=False)
    try:
        if not assoc.is_established:
            if assoc.is_rejected:
                text = (
                    f"association rejected ({rejection.text})"
                    if rejection.text
                    else "association rejected"
                )
                return report.fail(f"{where}: {text}", permanent=rejection.permanent)
            if assoc.is_aborted and not assoc.accepted_contexts and assoc.rejected_contexts:
                offered = sorted({str(cx.abstract_syntax) for cx in assoc.rejected_contexts})
                return report.fail(
                    f"{where} accepted none of the presentation contexts offered "
                    f"({', '.join(offered)})",
                    permanent=True,
                )
            why = "down, unreachable, aborted" + (" or TLS handshake failed" if tls_args else "")
            return report.fail(f"{where} did not answer ({why})", permanent=False)
        taken = assoc.accepted_contexts
        for info in files:
            accepted = {
                UID(cx.transfer_syntax[0])
                for cx in assoc.accepted_contexts
                if cx.abstract_syntax == info.sop_class_uid
            }
            choice = next(
                (ts for ts in _alternatives(info.transfer_syntax_uid) if ts in accepted), None
            )
            if info.sop_class_uid in report.refused_classes:
                report.skipped.append(info.sop_instance_uid)
                continue
            if choice is None:
                if not any(cx.abstract_syntax == info.sop_class_uid for cx in taken):
                    # the class itself is refused: record it, send the others
                    report.refused_classes[str(info.sop_class_uid)] = "refused in negotiation"
                    report.skipped.append(info.sop_instance_uid)
                    log.warning("%s does not take %s", where, _class_name(info.sop_class_uid))
                    continue
                return report.fail(
                    f"{where} accepts {info.sop_class_uid.name} in none of "
                    f"{', '.join(t.name for t in _alternatives(info.transfer_syntax_uid))}",
                    permanent=True,
                )
            payload: Path | pydicom.Dataset = info.path
            if choice != info.transfer_syntax_uid:
                log.info(
                    "sending %s as %s (destination does not accept %s)",
                    info.sop_instance_uid,
                    choice.name,
                    info.transfer_syntax_uid.name,
                )
                # pynetdicom re-encodes a Dataset for the accepted context (explicit <->
                # implicit VR, deflated -> inflated); only then is the file read whole.
                payload = pydicom.dcmread(info.path)
            try:
                rsp = assoc.send_c_store(payload)
            except (OSError, ValueError, RuntimeError, AttributeError) as exc:
                return report.fail(
                    f"C-STORE of {info.sop_instance_uid} to {where}: {exc}", permanent=False
                )
            status = int(rsp.Status) if rsp and "Status" in rsp else None
            if status is None:
                return report.fail(
                    f"{where} gave no C-STORE response for {info.sop_instance_uid} "
                    "(timeout or aborted)",
                    permanent=False,
                )
            report.statuses[info.sop_instance_uid] = status
            if status == SOP_CLASS_NOT_SUPPORTED:
                # accepted in the negotiation, refused at the store: the class, not the file
                comment = rsp.get("ErrorComment", "")
                report.refused_classes[str(info.sop_class_uid)] = "status 0x0122" + (
                    f" ({comment})" if comment else ""
                )
                report.skipped.append(info.sop_instance_uid)
                continue
            report.transfer_syntaxes[info.sop_instance_uid] = str(choice)
            report.status = status if report.status in (None, SUCCESS) else report.status
            if status != SUCCESS and status not in WARNINGS:
                comment = rsp.get("ErrorComment", "")
                return report.fail(
                    f"{where} refused {info.sop_instance_uid}: status 0x{status:04X}"
                    + (f" ({comment})" if comment else ""),
                    permanent=status in PERMANENT_STATUSES,
                    status=status,
                )
        if len(report.skipped) == len(files):
            return report.fail(
                f"{where} takes none of the classes offered: {report.note}", permanent=True
            )
        report.ok = True
        return report
    finally:
        if assoc.is_established:
            assoc.release()
        report.seconds = time.monotonic() - started
