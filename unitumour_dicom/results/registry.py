"""The result kinds beyond the SEG, as a table: kind -> the function that writes its object.

Adding a kind means a writer module (its own package, as ``sr``, ``ann``, ``keyimage``), a
:class:`~unitumour_dicom.db.ResultKind` value, one entry in :data:`WRITERS` and its name in
the settings' ``results.kinds`` choices; the pipeline, the result rows, routing per
destination and delivery take every kind alike.

Each writer gets the same :class:`WriterInputs` (the slide's headers and files, the job's
masks, the SEG pyramid already written, the model's identity, the settings, the job's UUID
and time, so that a retried job writes the same bytes) and returns one dataset, or None when
its kind has nothing to say for this slide (bulk annotations of a slide without tumour).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from pathlib import Path

from pydicom import Dataset

from ..config.sections import ResultsSettings, SegSettings
from ..db.enums import ResultKind
from ..findings import MaskResult, ModelIdentity, SlideFigures, slide_figures
from ..seg.pyramid import SegPyramid
from ..store import FileStore
from .objects import ResultObject, store_dataset

log = logging.getLogger(__name__)


@dataclass
class WriterInputs:
    """Everything a result writer may read; the figures are counted once, on first use."""

    source_datasets: Sequence[Dataset]  # the slide's VOLUME headers (no pixel data)
    slide_paths: Sequence[Path]  # the slide's stored files (for a thumbnail)
    result: MaskResult
    seg: SegPyramid
    identity: ModelIdentity
    seg_settings: SegSettings
    results_settings: ResultsSettings
    uid_seed: str
    content_datetime: datetime
    timings: dict[str, float] = field(default_factory=dict)

    @cached_property
    def figures(self) -> SlideFigures:
        return slide_figures(self.result)


def _sr(inputs: WriterInputs) -> Dataset | None:
    from ..sr import write_measurement_report

    return write_measurement_report(
        source_datasets=inputs.source_datasets,
        seg=inputs.seg,
        figures=inputs.figures,
        identity=inputs.identity,
        settings=inputs.seg_settings,
        uid_seed=inputs.uid_seed,
        content_datetime=inputs.content_datetime,
    )


def _ann(inputs: WriterInputs) -> Dataset | None:
    from ..ann import write_bulk_annotations

    return write_bulk_annotations(
        source_datasets=inputs.source_datasets,
        result=inputs.result,
        identity=inputs.identity,
        settings=inputs.seg_settings,
        uid_seed=inputs.uid_seed,
        content_datetime=inputs.content_datetime,
    )


def _key_image(inputs: WriterInputs) -> Dataset | None:
    from ..keyimage import read_thumbnail, write_key_image

    thumbnail = read_thumbnail(inputs.slide_paths, inputs.results_settings.key_image_max_side)
    return write_key_image(
        source_datasets=inputs.source_datasets,
        thumbnail=thumbnail,
        result=inputs.result,
        figures=inputs.figures,
        identity=inputs.identity,
        settings=inputs.seg_settings,
        uid_seed=inputs.uid_seed,
        content_datetime=inputs.content_datetime,
    )


ObjectWriter = Callable[[WriterInputs], Dataset | None]

#: kind -> writer, in the order they are written (and sent, after the SEG).
WRITERS: dict[ResultKind, ObjectWriter] = {
    ResultKind.SR: _sr,
    ResultKind.ANN: _ann,
    ResultKind.KEY_IMAGE: _key_image,
}


def kind_order(kind: str) -> int:
    """Sort key of a kind: the SEG first, then the table's order (unknown kinds last)."""
    order = [ResultKind.SEG, *WRITERS]
    return order.index(ResultKind(kind)) if kind in order else len(order)


def write_result_objects(
    inputs: WriterInputs, kinds: Sequence[str], store: FileStore
) -> list[ResultObject]:
    """Write and store the object of each kind in ``kinds`` that has a writer (the SEG is
    written before, by ``write_seg_pyramid``); ``inputs.timings`` gets seconds per kind."""
    objects: list[ResultObject] = []
    for kind, writer in WRITERS.items():
        if kind not in kinds:
            continue
        started = time.perf_counter()
        ds = writer(inputs)
        if ds is None:
            log.info("no %s object for this slide (nothing to show)", kind)
        else:
            objects.append(store_dataset(store, ds, str(kind)))
        inputs.timings[str(kind)] = round(time.perf_counter() - started, 4)
    return objects
