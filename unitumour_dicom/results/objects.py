"""A result object other than the SEG pyramid (SR, bulk annotations, key image), as stored.

Such an object is one dataset of a few megabytes at most, so it is encoded whole, written to
a spool file, fsynced and moved into place like every SEG instance (``store.put_file``); an
identical file left by an earlier, unrecorded try of the same job is kept.
"""

from __future__ import annotations

from dataclasses import dataclass

import pydicom
from pydicom import Dataset

from ..errors import SegmentationError
from ..seg.pyramid import put_result_file
from ..store import FileStore, sha256_file


@dataclass(frozen=True)
class ResultObject:
    """One stored object of a result: what ``result_instances`` records of it."""

    kind: str  # a db.ResultKind value
    study_instance_uid: str
    series_instance_uid: str
    sop_instance_uid: str
    sop_class_uid: str
    path: str  # relative to the store root
    sha256: str
    size_bytes: int
    source_sop_instance_uid: str | None = None
    rows: int | None = None
    columns: int | None = None


def _source_of(ds: Dataset) -> str | None:
    """The instance the object derives from or refers to first (its base level)."""
    for keyword in ("SourceImageSequence", "ReferencedImageSequence"):
        items = ds.get(keyword) or []
        if items and "ReferencedSOPInstanceUID" in items[0]:
            return str(items[0].ReferencedSOPInstanceUID)
    for item in ds.get("CurrentRequestedProcedureEvidenceSequence", []):
        for series in item.get("ReferencedSeriesSequence", []):
            for ref in series.get("ReferencedSOPSequence", []):
                return str(ref.ReferencedSOPInstanceUID)
    return None


def store_dataset(store: FileStore, ds: Dataset, kind: str) -> ResultObject:
    """Write ``ds`` as a DICOM file (Part 10) into the store at its result path."""
    try:
        study, series, sop = (
            str(ds.StudyInstanceUID),
            str(ds.SeriesInstanceUID),
            str(ds.SOPInstanceUID),
        )
    except AttributeError as exc:
        raise SegmentationError(f"the {kind} object lacks a UID: {exc}") from exc
    relpath = store.result_relpath(study, series, sop)
    store.check_space()
    with store.spool_writer() as (tmp, fh):
        pydicom.dcmwrite(fh, ds, enforce_file_format=True)
    try:
        digest = sha256_file(tmp)
        size = tmp.stat().st_size
        put_result_file(store, tmp, relpath, digest)
    finally:
        tmp.unlink(missing_ok=True)  # moved into place already, unless that failed
    return ResultObject(
        kind=kind,
        study_instance_uid=study,
        series_instance_uid=series,
        sop_instance_uid=sop,
        sop_class_uid=str(ds.SOPClassUID),
        path=relpath,
        sha256=digest,
        size_bytes=size,
        source_sop_instance_uid=_source_of(ds),
        rows=int(ds.Rows) if "Rows" in ds else None,
        columns=int(ds.Columns) if "Columns" in ds else None,
    )
