"""A received series opened as a whole-slide image: levels by pixel size, tissue, regions.

wsidicom does the DICOM work (TILED_FULL and TILED_SPARSE, concatenations, several focal
planes and optical paths, levels grouped into pyramids); this module adds what the pipeline
needs on top: levels described in micrometres, the choice of one for a pixel size, frames
read encoded and decoded in the caller's threads, and tissue detection on a coarse grid.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
from pydicom import dcmread
from pydicom.uid import VLWholeSlideMicroscopyImageStorage
from wsidicom import WsiDicom
from wsidicom.config import get_settings
from wsidicom.geometry import Point

from ..errors import SlideError
from .levels import LevelInfo, choose_level
from .mask import SlideMask
from .reader import DEFAULT_CACHE_BYTES, LevelReader
from .timing import StageTimes
from .tissue import TissueParams, detect_tissue

logger = logging.getLogger(__name__)

DEFAULT_TISSUE_MPP = 8.0
# A raster at a requested pixel size is refused beyond this many pixels (the default allows a
# 50 x 50 mm scan at 1 µm/px); it protects against absurd dimensions in a received header.
MAX_RASTER_PIXELS = 4_000_000_000
# The most frame positions (tiles across x down x planes x optical paths) a level may state:
# 2**24 covers a 200,000 x 200,000 pixel level in 64-pixel frames.
MAX_FRAME_POSITIONS = 1 << 24
_HEADER_TAGS = [
    "SOPClassUID",
    "TotalPixelMatrixColumns",
    "TotalPixelMatrixRows",
    "Columns",
    "Rows",
    "TotalPixelMatrixFocalPlanes",
    "NumberOfOpticalPaths",
]
# Tissue detection reads the level in blocks of at most about this many source pixels a side.
_TISSUE_BLOCK_SOURCE_PIXELS = 2048


class _WsidicomFrames:
    """One level's frames for one optical path and focal plane, through wsidicom."""

    def __init__(self, info: LevelInfo, level: Any, z: float, path: str) -> None:
        self.level = info
        instance = level.get_instance(z, path)
        self._image_data = instance.image_data
        self._decoder = getattr(self._image_data, "decoder", None)
        self._z, self._path = z, path

    def encoded_frame(self, column: int, row: int) -> bytes | None:
        point = Point(column, row)
        is_sparse = getattr(self._image_data, "is_sparse", None)
        if is_sparse is not None and is_sparse(point, self._z, self._path):
            return None
        return self._image_data.get_encoded_tile(point, self._z, self._path)

    def decode(self, data: bytes) -> np.ndarray:
        if self._decoder is None:  # image data without a decoder of its own
            raise SlideError(f"no decoder for {self.level.transfer_syntax_uid}")
        pixels = self._decoder.decode(data)
        return np.asarray(pixels)


class WsiSlide:
    """A whole-slide image: pyramid levels, physical size, tissue and pixel regions.

    Geometry follows :class:`~unitumour_dicom.slide.mask.SlideMask`: everything is placed in
    micrometres from the top-left corner of the base level's total pixel matrix.

    Use :func:`open_slide` to make one; close it (or use it as a context manager) to release
    the files.
    """

    def __init__(self, wsi: WsiDicom, paths: Sequence[Path], open_seconds: float) -> None:
        self._wsi = wsi
        self.paths = tuple(paths)
        self.open_seconds = open_seconds
        pyramid = wsi.pyramids[0]
        if len(wsi.pyramids) > 1:
            logger.info(
                "series holds %d pyramids (different origins or depth of field); using the "
                "first, of base size %s",
                len(wsi.pyramids),
                pyramid.size,
            )
        self._pyramid = pyramid
        self._levels_wsidicom = list(pyramid.levels)
        self.levels: tuple[LevelInfo, ...] = tuple(
            _level_info(i, level) for i, level in enumerate(self._levels_wsidicom)
        )
        base = self._levels_wsidicom[0].default_instance
        planes = sorted(float(z) for z in self._levels_wsidicom[0].focal_planes)
        paths_ = list(self._levels_wsidicom[0].optical_paths)
        # The plane nearest the middle of the stack: scanners put the focus there and
        # acquire extra planes symmetrically around it.
        middle = (planes[0] + planes[-1]) / 2 if planes else 0.0
        self.focal_plane_um: float = (
            min(planes, key=lambda z: (abs(z - middle), z)) if planes else float(base.default_z)
        )
        self.optical_path: str = str(paths_[0]) if paths_ else str(base.default_path)
        if len(planes) > 1 or len(paths_) > 1:
            logger.info(
                "base level has focal planes %s and optical paths %s; reading plane %g µm "
                "(the middle one) of optical path %r (the first)",
                planes,
                paths_,
                self.focal_plane_um,
                self.optical_path,
            )
        uids = wsi.uids
        self.study_instance_uid = str(uids.study_instance) if uids else None
        self.series_instance_uid = str(uids.series_instance) if uids else None
        self.frame_of_reference_uid = (
            str(uids.frame_of_reference) if uids and uids.frame_of_reference else None
        )

    # -- description -------------------------------------------------------------------

    @property
    def base(self) -> LevelInfo:
        return self.levels[0]

    @property
    def base_mpp(self) -> float:
        """Micrometres per pixel of the base level (the coarser axis if they differ)."""
        return self.base.mpp

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the base level in pixels."""
        return self.base.width, self.base.height

    @property
    def extent_um(self) -> tuple[float, float]:
        """(width, height) of the base total pixel matrix in micrometres."""
        return self.base.width * self.base.mpp_x, self.base.height * self.base.mpp_y

    @property
    def instance_uids(self) -> list[str]:
        """SOP Instance UIDs of the pyramid's level instances (concatenation parts included)."""
        uids: list[str] = []
        for level in self._levels_wsidicom:
            for instance in level.instances.values():
                uids.extend(str(ds.instance_uid) for ds in instance.datasets)
        return uids

    def grid_shape(self, mpp: float) -> tuple[int, int]:
        """(rows, columns) of a raster of pixel size ``mpp`` that covers the whole slide.

        Raises
        ------
        SlideError
            If that raster would exceed ``MAX_RASTER_PIXELS``.
        """
        if not mpp > 0:
            raise ValueError(f"pixel size must be positive, not {mpp}")
        width_um, height_um = self.extent_um
        rows = max(math.ceil(height_um / mpp - 1e-6), 1)
        cols = max(math.ceil(width_um / mpp - 1e-6), 1)
        if rows * cols > MAX_RASTER_PIXELS:
            raise SlideError(
                f"a raster of the slide at {mpp:g} µm/px would have {rows} x {cols} pixels, "
                f"more than the {MAX_RASTER_PIXELS} allowed"
            )
        return rows, cols

    def choose_level(self, mpp: float, *, max_coarser_ratio: float = 1.0) -> LevelInfo:
        """See :func:`~unitumour_dicom.slide.levels.choose_level`."""
        return choose_level(self.levels, mpp, max_coarser_ratio=max_coarser_ratio)

    # -- pixels ------------------------------------------------------------------------

    def reader(
        self,
        level: LevelInfo,
        target_mpp: float,
        *,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
        times: StageTimes | None = None,
    ) -> LevelReader:
        """A thread-safe reader of ``level`` resampled onto a grid of ``target_mpp``."""
        frames = _WsidicomFrames(
            level, self._levels_wsidicom[level.index], self.focal_plane_um, self.optical_path
        )
        return LevelReader(frames, target_mpp, cache_bytes=cache_bytes, times=times)

    def read_raster(
        self,
        mpp: float,
        *,
        max_coarser_ratio: float = math.inf,
        threads: int = 2,
        times: StageTimes | None = None,
    ) -> np.ndarray:
        """The whole slide as uint8 RGB at ``mpp`` micrometres per pixel (for coarse pixel
        sizes: overviews and tissue detection), read block by block from the level nearest
        ``mpp`` so that memory stays at the raster plus a few blocks."""
        rows, cols = self.grid_shape(mpp)
        level = self.choose_level(mpp, max_coarser_ratio=max_coarser_ratio)
        reader = self.reader(level, mpp, times=times)
        scale = max(reader.scale)
        block = max(16, int(_TISSUE_BLOCK_SOURCE_PIXELS / max(scale, 1.0)))
        raster = np.empty((rows, cols, 3), np.uint8)
        boxes = [
            (top, left, min(block, rows - top), min(block, cols - left))
            for top in range(0, rows, block)
            for left in range(0, cols, block)
        ]

        def fill(box: tuple[int, int, int, int]) -> None:
            top, left, h, w = box
            raster[top : top + h, left : left + w] = reader.read(top, left, h, w)

        with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
            for _ in pool.map(fill, boxes):
                pass
        return raster

    def tissue_mask(
        self,
        mpp: float | None = None,
        *,
        params: TissueParams | None = None,
        threads: int = 2,
        times: StageTimes | None = None,
    ) -> SlideMask:
        """Boolean tissue mask at ``mpp`` micrometres per pixel (default 8), detected on the
        slide resampled from its nearest level (see :mod:`~unitumour_dicom.slide.tissue`)."""
        mpp = float(mpp if mpp is not None else DEFAULT_TISSUE_MPP)
        mpp = max(mpp, self.base.mpp)  # finer than the scan would only invent pixels
        start = time.perf_counter()
        raster = self.read_raster(mpp, threads=threads, times=times)
        mask = detect_tissue(raster, mpp, params)
        logger.debug(
            "tissue at %g µm/px: %d x %d, %.1f%% tissue, %.2f s",
            mpp,
            mask.shape[0],
            mask.shape[1],
            100.0 * float(np.asarray(mask.array).mean()),
            time.perf_counter() - start,
        )
        return mask

    # -- lifetime ----------------------------------------------------------------------

    def close(self) -> None:
        self._wsi.close()

    def __enter__(self) -> WsiSlide:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        levels = ", ".join(f"{lv.width}x{lv.height}@{lv.mpp:.4g}" for lv in self.levels)
        return f"WsiSlide(series={self.series_instance_uid}, levels=[{levels}])"

    def __iter__(self) -> Iterator[LevelInfo]:
        return iter(self.levels)


def _level_info(index: int, level: Any) -> LevelInfo:
    instance = level.default_instance
    image_data = instance.image_data
    spacing = level.pixel_spacing  # SizeMm(width=column spacing, height=row spacing) in mm
    if spacing is None or not (spacing.width > 0 and spacing.height > 0):
        imaged = image_data.imaged_size
        if imaged is None:
            raise SlideError(f"level {index} states neither PixelSpacing nor ImagedVolume size")
        mpp_x = imaged.width * 1000.0 / level.size.width
        mpp_y = imaged.height * 1000.0 / level.size.height
    else:
        mpp_x, mpp_y = spacing.width * 1000.0, spacing.height * 1000.0
    if image_data.samples_per_pixel != 3:
        raise SlideError(
            f"level {index} has {image_data.samples_per_pixel} sample(s) per pixel; an H&E "
            "slide must be colour (3 samples: RGB or YBR)"
        )
    if image_data.bits != 8:
        raise SlideError(f"level {index} stores {image_data.bits} bits per sample, not 8")
    return LevelInfo(
        index=index,
        mpp_x=float(mpp_x),
        mpp_y=float(mpp_y),
        width=int(level.size.width),
        height=int(level.size.height),
        tile_width=int(level.tile_size.width),
        tile_height=int(level.tile_size.height),
        transfer_syntax_uid=str(image_data.transfer_syntax),
    )


def _check_header(path: Path) -> bool:
    """Whether ``path`` is a VL Whole Slide Microscopy instance; refuses one whose stated
    dimensions would make reading it allocate without bound (wsidicom indexes every frame
    position of a level) before anything is allocated."""
    try:
        ds = dcmread(path, stop_before_pixels=True, specific_tags=_HEADER_TAGS)
    except Exception as exc:  # pydicom raises several kinds for what is not DICOM
        raise SlideError(f"{path.name} cannot be read as DICOM: {exc}") from exc
    if ds.get("SOPClassUID") != VLWholeSlideMicroscopyImageStorage:
        return False  # not a WSI instance: wsidicom leaves it out
    try:
        columns = int(ds.TotalPixelMatrixColumns)
        rows = int(ds.TotalPixelMatrixRows)
        frame_columns, frame_rows = int(ds.Columns), int(ds.Rows)
        planes = int(ds.get("TotalPixelMatrixFocalPlanes", 1) or 1)
        paths = int(ds.get("NumberOfOpticalPaths", 1) or 1)
    except (AttributeError, TypeError, ValueError) as exc:
        raise SlideError(f"{path.name} lacks a usable image geometry: {exc}") from exc
    if min(columns, rows, frame_columns, frame_rows, planes, paths) < 1:
        raise SlideError(f"{path.name} states a non-positive image dimension")
    positions = math.ceil(columns / frame_columns) * math.ceil(rows / frame_rows) * planes * paths
    if positions > MAX_FRAME_POSITIONS:
        raise SlideError(
            f"{path.name} states {columns} x {rows} pixels in {frame_columns} x {frame_rows} "
            f"frames ({positions} frame positions), more than the {MAX_FRAME_POSITIONS} allowed"
        )
    return True


def _uncached_settings() -> Any:
    """wsidicom's settings in effect, with its frame caches off.

    wsidicom keeps up to 100 MB of encoded and 100 MB of decoded frames per open slide. Every
    frame here goes through ``LevelReader``, which decodes it itself and keeps a bounded LRU
    of the decoded frames that neighbouring tiles share; a second copy of what was read would
    only make a worker's memory grow with the slide's size (up to those bounds) for nothing.
    """
    return replace(get_settings(), encoded_frame_cache_size=0, decoded_frame_cache_size=0)


def open_slide(paths: Sequence[Path] | Sequence[str]) -> WsiSlide:
    """Open the instances of one series as a whole-slide image.

    Instances that are not VL Whole Slide Microscopy volume images (labels and overviews are
    fine, other SOP classes are skipped by wsidicom) do not count; at least one pyramid
    level must remain.

    Raises
    ------
    SlideError
        No files, a missing file, nothing wsidicom can open as a pyramid, or a pyramid the
        pipeline cannot use (not 8-bit colour, no pixel size).
    """
    files = [Path(p) for p in paths]
    if not files:
        raise SlideError("no files given for the slide")
    missing = [str(p) for p in files if not p.is_file()]
    if missing:
        raise SlideError(f"slide file(s) missing: {', '.join(missing[:5])}")
    start = time.perf_counter()
    wsi_files = [path for path in files if _check_header(path)]  # checks every header
    if not wsi_files:
        raise SlideError(
            f"none of the {len(files)} file(s) is a VL Whole Slide Microscopy Image "
            f"({VLWholeSlideMicroscopyImageStorage})"
        )
    try:
        wsi = WsiDicom.open(files, settings=_uncached_settings())
    except Exception as exc:  # wsidicom raises many kinds; all mean the series is unusable
        raise SlideError(f"cannot open the series as a whole-slide image: {exc}") from exc
    try:
        if len(wsi.pyramids) == 0 or len(wsi.pyramids[0].levels) == 0:
            raise SlideError(
                "the files hold no VL Whole Slide Microscopy volume (pyramid) image that "
                "wsidicom can read"
            )
        slide = WsiSlide(wsi, files, open_seconds=0.0)
    except SlideError:
        wsi.close()
        raise
    except Exception as exc:
        wsi.close()
        raise SlideError(f"cannot use the series as a whole-slide image: {exc}") from exc
    slide.open_seconds = time.perf_counter() - start
    used = wsi.files or []
    if len(used) < len(files):
        logger.info(
            "%d of %d file(s) are not part of the slide's images",
            len(files) - len(used),
            len(files),
        )
    logger.info("opened %r in %.2f s", slide, slide.open_seconds)
    return slide
