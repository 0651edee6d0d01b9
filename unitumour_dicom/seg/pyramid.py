"""``write_seg_pyramid``: the tumour mask as a DICOM Segmentation pyramid on the source slide,
one SEG instance per source level, each written into the store tile by tile.

Memory is bounded by one row of tiles of the level being written (plus, for compressed
transfer syntaxes, nothing: encoded frames go to a spool file first), never by the slide.
"""

from __future__ import annotations

import functools
import logging
import os
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from pydicom import Dataset

from ..config.sections import SegSettings
from ..errors import SegmentationError
from ..slide.mask import SlideMask
from ..store import FileStore, sha256_file
from .algorithm import AlgorithmInfo
from .encoding import FragmentEncoder, compression_for, native_chunks, native_length
from .header import HeaderContext, build_header
from .levels import SourceLevel, source_levels
from .sampling import LevelSampler, rows_with_values, to_binary, to_fractional
from .uids import SegUIDs, derived_frame_of_reference_uid
from .writer import (
    HashingWriter,
    encapsulated_pixel_element,
    extended_offset_table,
    fits_basic_offset_table,
    native_pixel_element,
    write_streamed,
)

log = logging.getLogger(__name__)

SEGMENTATION_STORAGE = "1.2.840.10008.5.1.4.1.1.66.4"
_LO_MAX = 64


@dataclass(frozen=True)
class SegInstanceInfo:
    """One SEG instance as stored: what it is, which source level it covers, where it lies."""

    sop_instance_uid: str
    sop_class_uid: str
    source_sop_instance_uid: str
    level: int
    rows: int
    columns: int
    path: str  # relative to the store root
    sha256: str
    size_bytes: int
    number_of_frames: int = 0
    transfer_syntax_uid: str = ""


@dataclass(frozen=True)
class SegPyramid:
    """The SEG series made from one mask: one instance per source level, base first."""

    series_instance_uid: str
    study_instance_uid: str
    instances: list[SegInstanceInfo]
    segmentation_type: str = "BINARY"
    frame_of_reference_uid: str = ""
    #: True when the source had no Frame of Reference UID and we assigned one (see
    #: :func:`~unitumour_dicom.seg.uids.derived_frame_of_reference_uid`).
    frame_of_reference_derived: bool = False
    pyramid_uid: str = ""
    timings_s: dict[str, float] = field(default_factory=dict, compare=False)

    @property
    def total_bytes(self) -> int:
        return sum(i.size_bytes for i in self.instances)


def _series_description(template: str, algorithm: AlgorithmInfo) -> str:
    try:
        text = template.format(model_name=algorithm.name, model_version=algorithm.version)
    except (KeyError, IndexError, ValueError) as exc:
        raise SegmentationError(f"seg.series_description {template!r}: {exc}") from exc
    return text if len(text) <= _LO_MAX else text[: _LO_MAX - 1] + "…"


def _check_covers(mask: SlideMask, base: SourceLevel, what: str) -> None:
    """The mask must span the slide (to within a pixel of either grid): a mask at the wrong
    pixel size would otherwise give a SEG that is misaligned without anyone noticing."""
    height_um = base.rows * base.row_spacing_um
    width_um = base.columns * base.column_spacing_um
    for axis, mask_um, slide_um, spacing in (
        ("height", mask.shape[0] * mask.mpp, height_um, base.row_spacing_um),
        ("width", mask.shape[1] * mask.mpp, width_um, base.column_spacing_um),
    ):
        if abs(mask_um - slide_um) > mask.mpp + spacing + 1e-6 * slide_um:
            raise SegmentationError(
                f"{what} {axis} is {mask_um:.1f} um ({mask.shape} px at {mask.mpp} um/px) but "
                f"the slide's is {slide_um:.1f} um: wrong pixel size or wrong slide"
            )
    kind = mask.array.dtype.kind
    if kind not in "buif":
        raise SegmentationError(f"{what} has dtype {mask.array.dtype}; bool, int or float only")


def make_header_context(
    *,
    settings: SegSettings,
    algorithm: AlgorithmInfo,
    uid_seed: str,
    frame_of_reference_uid: str,
    content_datetime: datetime | None = None,
    research_use_only: bool = False,
) -> HeaderContext:
    """What every instance of one pyramid shares, from the settings and the job."""
    when = content_datetime or datetime.now(UTC)
    if when.tzinfo is None:
        raise SegmentationError("content_datetime must be timezone-aware")
    return HeaderContext(
        segmentation_type=settings.segmentation_type,
        fractional_type=settings.fractional_type,
        compression=compression_for(settings.compression, settings.segmentation_type),
        uids=SegUIDs(uid_seed),
        frame_of_reference_uid=frame_of_reference_uid,
        algorithm=algorithm,
        series_number=settings.series_number,
        series_description=_series_description(settings.series_description, algorithm),
        manufacturer=settings.manufacturer,
        manufacturer_model_name=settings.manufacturer_model_name,
        device_serial_number=(settings.device_serial_number or platform.node() or "unknown")[
            :_LO_MAX
        ],
        content_creator_name=settings.content_creator_name,
        segment_label=settings.segment_label,
        institution_name=settings.institution_name,
        content_datetime=when,
        pyramid_label=f"{settings.segment_label} ({algorithm.name} {algorithm.version})",
        research_use_only=research_use_only,
    )


def write_seg_pyramid(
    *,
    source_datasets: Sequence[Dataset],
    mask: SlideMask,
    probability: SlideMask | None,
    algorithm: AlgorithmInfo,
    settings: SegSettings,
    uid_seed: str,
    store: FileStore,
    content_datetime: datetime | None = None,
    research_use_only: bool = False,
) -> SegPyramid:
    """Build every level of the SEG pyramid tile by tile and write each into the store
    (``results/<study>/<series>/<sop>.dcm``).

    ``uid_seed`` (the job's UUID) fixes every UID, so a retried job rewrites the same
    instances; an instance left by an earlier, unrecorded try is kept if its bytes are the
    same and replaced otherwise. FRACTIONAL stores ``probability`` (or the mask, as 0/255 when
    there is none); BINARY stores the mask. ``research_use_only`` (the model card says not
    for clinical use) puts "RESEARCH USE ONLY" in the Series and Content Description and
    ``RUO_`` in front of the Content Label.
    """
    started = time.perf_counter()
    seg_type = settings.segmentation_type
    compression_for(settings.compression, seg_type)
    levels = source_levels(source_datasets)
    base = levels[0]
    values = mask if seg_type == "BINARY" or probability is None else probability
    _check_covers(mask, base, "mask")
    if values is not mask:
        _check_covers(values, base, "probability map")
    convert: Callable[[np.ndarray], np.ndarray] = to_binary
    if seg_type != "BINARY":
        convert = functools.partial(to_fractional, source_max=values.max_value)

    frame_of_reference = base.frame_of_reference_uid
    derived = frame_of_reference is None
    if frame_of_reference is None:
        frame_of_reference = derived_frame_of_reference_uid(str(base.dataset.SeriesInstanceUID))
        log.warning(
            "source series %s has no Frame of Reference UID; the SEG uses the derived %s "
            "(viewers can only overlay it on a copy of the slide that carries it)",
            base.dataset.SeriesInstanceUID,
            frame_of_reference,
        )

    ctx = make_header_context(
        settings=settings,
        algorithm=algorithm,
        uid_seed=uid_seed,
        frame_of_reference_uid=frame_of_reference,
        content_datetime=content_datetime,
        research_use_only=research_use_only,
    )
    uids = ctx.uids
    row_has_values = rows_with_values(values, convert)
    timings: dict[str, float] = {"prepare": time.perf_counter() - started}

    instances = []
    for level in levels:
        t0 = time.perf_counter()
        header = build_header(level, ctx)
        sampler = LevelSampler(values, level, convert, row_has_values)
        info = _write_level(store, header, level, sampler)
        instances.append(info)
        timings[f"level_{level.index}"] = time.perf_counter() - t0
        log.info(
            "SEG level %d: %d x %d, %d frames, %s bytes in %.2f s",
            level.index,
            level.rows,
            level.columns,
            level.number_of_frames,
            f"{info.size_bytes:,}",
            timings[f"level_{level.index}"],
        )
    timings["total"] = time.perf_counter() - started
    return SegPyramid(
        series_instance_uid=uids.series_instance_uid,
        study_instance_uid=str(base.dataset.StudyInstanceUID),
        instances=instances,
        segmentation_type=seg_type,
        frame_of_reference_uid=frame_of_reference,
        frame_of_reference_derived=derived,
        pyramid_uid=uids.pyramid_uid,
        timings_s=timings,
    )


def _write_level(
    store: FileStore, header: Dataset, level: SourceLevel, sampler: LevelSampler
) -> SegInstanceInfo:
    ts = header.file_meta.TransferSyntaxUID
    bits = int(header.BitsAllocated)
    rows, columns = level.tile_rows, level.tile_columns
    frames = sampler.frames()
    relpath = store.result_relpath(
        str(header.StudyInstanceUID), str(header.SeriesInstanceUID), str(header.SOPInstanceUID)
    )
    store.check_space()
    fragments_path: Path | None = None
    try:
        if ts.is_encapsulated:
            encoder = FragmentEncoder(ts, bits_allocated=bits, rows=rows, columns=columns)
            lengths: list[int] = []
            with store.spool_writer() as (fragments_path, fh):
                for frame in frames:
                    data = encoder.encode(frame)
                    lengths.append(len(data))
                    fh.write(data)
            use_bot = fits_basic_offset_table(lengths)
            if not use_bot:
                header.ExtendedOffsetTable, header.ExtendedOffsetTableLengths = (
                    extended_offset_table(lengths)
                )
            with open(fragments_path, "rb") as fragments, store.spool_writer() as (tmp, out):
                writer = HashingWriter(out)
                write_streamed(
                    writer,
                    header,
                    encapsulated_pixel_element(fragments, lengths, basic_offset_table=use_bot),
                )
        else:
            length = native_length(bits, rows, columns, level.number_of_frames)
            chunks = native_chunks(frames, bits_allocated=bits, rows=rows, columns=columns)
            with store.spool_writer() as (tmp, out):
                writer = HashingWriter(out)
                write_streamed(writer, header, native_pixel_element(length, chunks))
    finally:
        if fragments_path is not None:
            fragments_path.unlink(missing_ok=True)
    digest = writer.sha256.hexdigest()
    put_result_file(store, tmp, relpath, digest)
    return SegInstanceInfo(
        sop_instance_uid=str(header.SOPInstanceUID),
        sop_class_uid=str(header.SOPClassUID),
        source_sop_instance_uid=level.sop_instance_uid,
        level=level.index,
        rows=level.rows,
        columns=level.columns,
        path=relpath,
        sha256=digest,
        size_bytes=writer.size,
        number_of_frames=level.number_of_frames,
        transfer_syntax_uid=str(ts),
    )


def put_result_file(store: FileStore, tmp: Path, relpath: str, digest: str) -> None:
    """Move a written instance into place; an earlier try's instance at the same path is
    kept when identical and replaced when not (it was never recorded, so never sent)."""
    if store.exists(relpath):
        if sha256_file(store.abspath(relpath)) == digest:
            log.info("%s already stored with the same bytes (a retried job)", relpath)
            os.unlink(tmp)
            return
        log.warning("%s left by an earlier, unrecorded try differs: replacing it", relpath)
        store.remove(relpath)
    store.put_file(tmp, relpath, sha256=digest)
