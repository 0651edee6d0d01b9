"""A DIMSE source: C-FIND to find slide series, then C-GET or C-MOVE to retrieve them.

The search is hierarchical, as the Study Root model requires of a PACS that does not offer
relational queries: STUDY level (dates, description, ModalitiesInStudy SM), then SERIES level
within each study (Modality SM, station), both counted against ``pull.max_results`` (more
matches abort the association: refused, not truncated). C-GET brings the instances back on
our association, as C-STORE sub-operations to a storage SCP role we propose for each accepted
SOP class; each is streamed into a spool file (the listener's own streaming receive) and
admitted before its C-STORE is answered. C-MOVE asks the PACS to store the series to our
listener (the move destination, an AE title the PACS must know); the listener admits them
as it admits any C-STORE, and the poller checks that they arrived. Every DIMSE exchange has
the ``pull.timeout_s`` deadline.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from pydicom.dataset import Dataset
from pynetdicom import AE, build_role, evt
from pynetdicom.association import Association
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
)

from ..config.sections import PullSettings, PullSourceSettings
from ..errors import InvalidUIDError
from ..ingest.contexts import TRANSFER_SYNTAXES, storage_sop_classes
from ..ingest.spool import SpoolFile, install_spool_factory, uninstall_spool_factory
from .query import PullError, SeriesHit, SeriesQuery

log = logging.getLogger(__name__)

_PENDING = (0xFF00, 0xFF01)
_WARNING = 0xB000
_MOVE = StudyRootQueryRetrieveInformationModelMove
#: Most instances of one series we retrieve (as many parts as a WADO-RS response may have).
MAX_INSTANCES_PER_SERIES = 10_000
#: SOP Instance UIDs per IMAGE level C-GET/C-MOVE request (a list of UIDs, PS3.4 C.2.2.2.2).
_UIDS_PER_REQUEST = 200
_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")
#: Presentation contexts left for storage after the C-GET one (128 is the protocol's limit).
_MAX_CONTEXTS = 127


def _status(status: Dataset | None, what: str) -> int:
    if status is None or "Status" not in status:
        raise PullError(f"{what}: no answer (timed out, or the association was aborted)")
    return int(status.Status)


class DimseSource:
    """Query and retrieve over DIMSE for one configured source."""

    def __init__(
        self,
        source: PullSourceSettings,
        settings: PullSettings,
        *,
        calling_ae_title: str,
        move_destination: str,
        extra_sop_classes: list[str] | None = None,
        max_pdu_bytes: int = 131072,
        check: Callable[[], None] = lambda: None,
    ) -> None:
        self.check = check  # raises PullError to stop a retrieval (stopping, too long)
        self.source = source
        self.settings = settings
        self.calling_ae_title = source.calling_ae_title or calling_ae_title
        self.move_destination = source.move_destination or move_destination
        self.storage_classes = storage_sop_classes(extra_sop_classes or [])
        self.max_pdu_bytes = max_pdu_bytes

    def _ae(self) -> AE:
        ae = AE(ae_title=self.calling_ae_title)
        ae.acse_timeout = self.settings.timeout_s
        ae.dimse_timeout = self.settings.timeout_s
        ae.network_timeout = self.settings.timeout_s
        ae.connection_timeout = self.settings.timeout_s
        ae.maximum_pdu_size = self.max_pdu_bytes
        return ae

    @contextmanager
    def _associate(
        self, ae: AE, *, ext_neg: list[Any] | None = None, handlers: list[Any] | None = None
    ) -> Iterator[Association]:
        assert self.source.host is not None and self.source.port is not None
        assoc = ae.associate(
            self.source.host,
            self.source.port,
            ae_title=str(self.source.ae_title),
            ext_neg=ext_neg,
            evt_handlers=handlers,
        )
        if not assoc.is_established:
            why = "rejected" if assoc.is_rejected else "aborted" if assoc.is_aborted else "failed"
            raise PullError(
                f"association with {self.source.remote} {why} (unreachable, or our AE title "
                f"{self.calling_ae_title} is not known there)"
            )
        try:
            yield assoc
        finally:
            if assoc.is_established:
                assoc.release()

    # -- C-FIND ----------------------------------------------------------------------------
    def find_series(self, query: SeriesQuery) -> list[SeriesHit]:
        keys = query.keys()
        ae = self._ae()
        ae.add_requested_context(StudyRootQueryRetrieveInformationModelFind)
        hits: list[SeriesHit] = []
        with self._associate(ae) as assoc:
            studies = self._find(assoc, self._study_identifier(keys), "study")
            for study in studies:
                uid = str(study.get("StudyInstanceUID", ""))
                for series in self._find(assoc, self._series_identifier(keys, uid), "series"):
                    try:
                        hits.append(
                            SeriesHit.checked(
                                series.get("StudyInstanceUID") or uid,
                                series.get("SeriesInstanceUID"),
                                series.get("NumberOfSeriesRelatedInstances"),
                                study.get("StudyDate"),
                            )
                        )
                    except InvalidUIDError as exc:
                        log.warning("source %s: series skipped: %s", self.source.name, exc)
                    if len(hits) > self.settings.max_results:
                        assoc.abort()
                        raise PullError(self._too_many())
        return hits

    def _too_many(self) -> str:
        return (
            f"the search matched more than {self.settings.max_results} series "
            "(pull.max_results): narrow the source's filters or poll more often"
        )

    @staticmethod
    def _study_identifier(keys: dict[str, str]) -> Dataset:
        ds = Dataset()
        ds.QueryRetrieveLevel = "STUDY"
        ds.StudyInstanceUID = ""
        ds.StudyDate = keys.get("StudyDate", "")
        ds.StudyDescription = keys.get("StudyDescription", "")
        ds.ModalitiesInStudy = keys["Modality"]
        return ds

    @staticmethod
    def _series_identifier(keys: dict[str, str], study_uid: str) -> Dataset:
        ds = Dataset()
        ds.QueryRetrieveLevel = "SERIES"
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = ""
        ds.Modality = keys["Modality"]
        ds.StationName = keys.get("StationName", "")
        ds.NumberOfSeriesRelatedInstances = ""
        return ds

    def _find(
        self, assoc: Association, identifier: Dataset, level: str, *, limit: int | None = None
    ) -> list[Dataset]:
        limit = self.settings.max_results if limit is None else limit
        found: list[Dataset] = []
        responses = assoc.send_c_find(identifier, StudyRootQueryRetrieveInformationModelFind)
        for status, answer in responses:
            code = _status(status, f"C-FIND at {level} level")
            if code in _PENDING:
                if answer is not None:
                    found.append(answer)
                if len(found) > limit:
                    assoc.abort()
                    raise PullError(
                        self._too_many() if level != "image" else f"more than {limit} instances"
                    )
                continue
            if code != 0:
                raise PullError(f"C-FIND at {level} level failed with status 0x{code:04X}")
        return found

    def _plan(self, assoc: Association, hit: SeriesHit) -> tuple[list[Dataset], str | None]:
        """What to retrieve: the series, when each of its instances is of a SOP class we take;
        else, at IMAGE level, lists of the instances we take (a PACS may fail a whole C-GET
        on one instance it has no presentation context for). The note says what is left out.
        """
        ds = Dataset()
        ds.QueryRetrieveLevel = "IMAGE"
        ds.StudyInstanceUID = hit.study_instance_uid
        ds.SeriesInstanceUID = hit.series_instance_uid
        ds.SOPInstanceUID = ""
        ds.SOPClassUID = ""
        found = self._find(assoc, ds, "image", limit=MAX_INSTANCES_PER_SERIES)
        take: list[str] = []
        for answer in found:
            uid = str(answer.get("SOPInstanceUID", ""))
            if str(answer.get("SOPClassUID", "")) in self.storage_classes and _UID.match(uid):
                take.append(uid)
        left_out = len(found) - len(take)
        series = Dataset()
        series.QueryRetrieveLevel = "SERIES"
        series.StudyInstanceUID = hit.study_instance_uid
        series.SeriesInstanceUID = hit.series_instance_uid
        if not left_out:
            return [series], None
        note = f"{left_out} instances of SOP classes we do not accept were not retrieved"
        identifiers = []
        for i in range(0, len(take), _UIDS_PER_REQUEST):
            ds = Dataset()
            ds.QueryRetrieveLevel = "IMAGE"
            ds.StudyInstanceUID = hit.study_instance_uid
            ds.SeriesInstanceUID = hit.series_instance_uid
            ds.SOPInstanceUID = take[i : i + _UIDS_PER_REQUEST]
            identifiers.append(ds)
        return identifiers, note

    def _run(
        self, what: str, responses: Iterator[tuple[Dataset, Any]], assoc: Association
    ) -> tuple[int | None, Dataset | None]:
        final: int | None = None
        last: Dataset | None = None
        for status, _ in responses:
            final, last = _status(status, what), status
            if final not in _PENDING:
                break
            try:
                self.check()
            except PullError:
                assoc.abort()
                raise
        return final, last

    # -- C-GET -----------------------------------------------------------------------------
    def get_series(
        self,
        hit: SeriesHit,
        *,
        new_spool: Callable[[], SpoolFile],
        on_instance: Callable[[SpoolFile], int],
    ) -> tuple[int, str | None]:
        """C-GET one series; each instance goes to ``on_instance`` (which answers its
        status). Returns the number of instances received and a note of what was left out."""
        ae = self._ae()
        ae.add_requested_context(StudyRootQueryRetrieveInformationModelFind)
        ae.add_requested_context(StudyRootQueryRetrieveInformationModelGet)
        roles = []
        per_class = (_MAX_CONTEXTS - 1) // len(self.storage_classes)
        for sop_class in self.storage_classes:
            # one context per transfer syntax: the PACS then finds the one it holds the
            # instance in accepted, and sends it as stored (one context with every syntax
            # lets it accept one, say uncompressed, and decompress every frame to fit)
            for syntax in TRANSFER_SYNTAXES[:per_class]:
                ae.add_requested_context(sop_class, syntax)
            roles.append(build_role(sop_class, scp_role=True))
        spools: dict[str, SpoolFile] = {}
        lock = threading.Lock()
        counts = {"received": 0, "refused": 0}

        def factory(assoc: Any) -> SpoolFile:
            spool = new_spool()
            with lock:
                spools[spool.name] = spool
            return spool

        def handle_store(event: Any) -> int:
            with lock:
                spool = spools.pop(str(event.dataset_path), None)
            if spool is None:  # not ours: cannot happen with the factory installed
                return 0xA700
            counts["received"] += 1
            status = on_instance(spool)
            if status != 0:
                counts["refused"] += 1
            return status

        install_spool_factory(ae, factory)
        try:
            with self._associate(
                ae, ext_neg=roles, handlers=[(evt.EVT_C_STORE, handle_store)]
            ) as assoc:
                identifiers, note = self._plan(assoc, hit)
                for identifier in identifiers:
                    refused_before = counts["refused"]
                    final, last = self._run(
                        "C-GET",
                        assoc.send_c_get(identifier, StudyRootQueryRetrieveInformationModelGet),
                        assoc,
                    )
                    # sub-operations we refused were audited by admission: not a failure
                    self._check_final(
                        "C-GET", final, last, refused_by_us=counts["refused"] - refused_before
                    )
        finally:
            uninstall_spool_factory(ae)
            for spool in spools.values():  # started, never handed over: nothing kept
                spool.discard()
        return counts["received"], note

    @staticmethod
    def _check_final(
        what: str, final: int | None, status: Dataset | None, *, refused_by_us: int = 0
    ) -> None:
        if final is None:
            raise PullError(f"{what}: no final answer")
        if final == 0:
            return
        failed = int(getattr(status, "NumberOfFailedSuboperations", 0) or 0)
        remaining = int(getattr(status, "NumberOfRemainingSuboperations", 0) or 0)
        if final == _WARNING and not remaining and 0 < failed <= refused_by_us:
            return
        completed = int(getattr(status, "NumberOfCompletedSuboperations", 0) or 0)
        if final == _WARNING:
            raise PullError(
                f"{what} ended with warning 0x{final:04X}: {failed} sub-operations failed"
            )
        raise PullError(
            f"{what} failed with status 0x{final:04X} ({completed} sent, {failed} failed, "
            f"{remaining} not attempted)"
        )

    # -- C-MOVE ----------------------------------------------------------------------------
    def move_series(self, hit: SeriesHit) -> tuple[int, str | None]:
        """C-MOVE one series to our listener; returns the completed sub-operations and a
        note of what was left out."""
        ae = self._ae()
        ae.add_requested_context(StudyRootQueryRetrieveInformationModelFind)
        ae.add_requested_context(StudyRootQueryRetrieveInformationModelMove)
        completed = 0
        with self._associate(ae) as assoc:
            identifiers, note = self._plan(assoc, hit)
            for identifier in identifiers:
                final, last = self._run(
                    "C-MOVE",
                    assoc.send_c_move(identifier, self.move_destination, _MOVE),
                    assoc,
                )
                self._check_final("C-MOVE", final, last)
                completed += int(getattr(last, "NumberOfCompletedSuboperations", 0) or 0)
        return completed, note
