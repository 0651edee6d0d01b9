"""Tumour segmentation of a whole slide: tissue, tiles, model, stitching, post-processing.

The raster is the model's grid (``card.mpp``) over the slide. Tiles holding tissue are read
from the level nearest that pixel size (never coarser unless allowed), resampled exactly,
decoded by ``read_threads`` threads a bounded number of tiles ahead, run through the model in
batches, blended into the probability map band by band, and post-processed.

The slide-sized rasters, probability map (uint8), tissue and tumour masks (bool), are
:class:`~unitumour_dicom.slide.raster.DiskRaster` scratch files in ``scratch_dir``, written
and read band by band (DESIGN rule 4): memory is bounded by tiles, batches and bands. The
bands that remain: the stitcher's (``input_size x width`` float32, see :mod:`.stitch`), the
tissue band below (``tile_size x width`` bool), post-processing's and component labelling's
(about 4 M pixels each, see :mod:`.postprocess`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..slide.mask import SlideMask
from ..slide.raster import DiskRaster, count_nonzero
from ..slide.reader import DEFAULT_CACHE_BYTES
from ..slide.resample import bilinear_sample
from ..slide.timing import StageTimes
from ..slide.tissue import TissueParams
from ..slide.wsi import WsiSlide
from .forward import ModelRunner, PendingBatch
from .postprocess import PostprocessParams, tumour_mask
from .prefetch import prefetch_map
from .result import InferenceResult
from .stitch import BandStitcher
from .tiling import Tile, TileGrid

if TYPE_CHECKING:
    from ..model import LoadedModel

logger = logging.getLogger(__name__)

Progress = Callable[[int, int], None]


class _TissueRows:
    """The tissue mask of one row of tiles (``tile_size x width`` bool), written to the
    raster when the tiles move on to the next row: tiles come in raster order, and each
    row of the raster is written once, whole."""

    def __init__(self, grid: TileGrid, out: DiskRaster) -> None:
        self.grid, self.out = grid, out
        self.band = np.zeros((grid.tile_size, grid.shape[1]), bool)
        self.row: int | None = None

    def put(self, tile: Tile, core: np.ndarray) -> None:
        if tile.row != self.row:
            self.flush()
            self.row = tile.row
        c_top, c_left, c_bottom, c_right = self.grid.core(tile)
        top = tile.row * self.grid.tile_size
        self.band[c_top - top : c_bottom - top, c_left:c_right] = core

    def flush(self) -> None:
        if self.row is not None:
            top = self.row * self.grid.tile_size
            rows = min(self.grid.tile_size, self.grid.shape[0] - top)
            self.out.write_rows(top, self.band[:rows])
            self.band[:] = False
            self.row = None

    def finish(self) -> None:
        """Write the last row and free the band before post-processing allocates its own."""
        self.flush()
        self.band = np.zeros((0, 0), bool)


def segment_slide(
    slide: WsiSlide,
    model: LoadedModel,
    *,
    batch_size: int = 16,
    read_threads: int = 2,
    tissue_mpp: float | None = None,
    progress: Progress | None = None,
    mixed_precision: bool = True,
    max_coarser_ratio: float = 1.0,
    tissue_params: TissueParams | None = None,
    cache_bytes: int = DEFAULT_CACHE_BYTES,
    scratch_dir: Path | str | None = None,
) -> InferenceResult:
    """Segment the tumour in ``slide`` with ``model``.

    Parameters
    ----------
    slide:
        An opened slide (:func:`~unitumour_dicom.slide.open_slide`).
    model:
        A loaded model; its card gives the pixel size, tile size, halo, normalisation,
        threshold and post-processing.
    batch_size:
        Tiles per forward pass.
    read_threads:
        Threads reading and decoding tiles alongside the model (at least 1).
    tissue_mpp:
        Pixel size of tissue detection (default 8 µm/px).
    progress:
        Called as ``progress(tiles_done, tiles_total)`` after each batch.
    mixed_precision:
        Autocast on CUDA.
    max_coarser_ratio:
        How much coarser than the model's pixel size a level may be (1: never coarser).
    tissue_params:
        Thresholds of tissue detection.
    cache_bytes:
        Bound on decoded frames kept for neighbouring tiles.
    scratch_dir:
        Where the slide-sized rasters' files go (unlinked at once: they vanish with the
        result, see :meth:`InferenceResult.close`); default: the system's temporary folder.
        A job passes its own scratch folder on the store's disk.

    Returns
    -------
    InferenceResult
    """
    if batch_size < 1 or read_threads < 1:
        raise ValueError(f"batch_size and read_threads must be >= 1: {batch_size}, {read_threads}")
    started = time.perf_counter()
    times = StageTimes()
    card = model.card
    mpp = float(card.mpp)
    shape = slide.grid_shape(mpp)
    level = slide.choose_level(mpp, max_coarser_ratio=max_coarser_ratio)
    grid = TileGrid(shape, int(card.tile_size), int(card.overlap))
    logger.info(
        "segmenting %r at %g µm/px from level %d (%g µm/px): raster %d x %d, tiles %d + %d halo",
        slide,
        mpp,
        level.index,
        level.mpp,
        shape[0],
        shape[1],
        grid.tile_size,
        grid.overlap,
    )

    with times.measure("tissue"):
        tissue_low = slide.tissue_mask(tissue_mpp, params=tissue_params, threads=read_threads)
    tiles = grid.tissue_tiles(tissue_low, mpp)
    total_tiles = len(tiles)
    if total_tiles:
        logger.info("%d of %d tiles hold tissue", total_tiles, grid.rows * grid.cols)
    else:
        logger.warning("no tissue detected on %r: no tile runs, the masks stay empty", slide)

    probability = DiskRaster(shape, np.uint8, scratch_dir)
    tissue = DiskRaster(shape, bool, scratch_dir)
    tissue_rows = _TissueRows(grid, tissue)
    runner = ModelRunner(model, mixed_precision=mixed_precision)
    reader = slide.reader(level, mpp, cache_bytes=cache_bytes, times=times)
    stitcher = BandStitcher(grid, probability)
    n = grid.input_size

    def load(tile: Tile) -> tuple[Tile, np.ndarray, np.ndarray]:
        top, left = grid.window(tile)
        pixels = reader.read(top, left, n, n)
        c_top, c_left, c_bottom, c_right = grid.core(tile)
        core_tissue = (
            bilinear_sample(
                np.asarray(tissue_low.array),  # the low-resolution mask is in memory
                tissue_low.mpp,
                c_top,
                c_left,
                (c_bottom - c_top, c_right - c_left),
                mpp,
            )
            >= 0.5
        )
        return tile, pixels, core_tissue

    def batches() -> Iterator[tuple[list[Tile], np.ndarray]]:
        stream = prefetch_map(
            load,
            tiles,
            threads=read_threads,
            depth=2 * batch_size + read_threads,
            waited=lambda s: times.add("wait", s),
        )
        batch_tiles: list[Tile] = []
        buffer = np.empty((batch_size, n, n, 3), np.uint8)
        for tile, pixels, core_tissue in stream:
            tissue_rows.put(tile, core_tissue)
            buffer[len(batch_tiles)] = pixels
            batch_tiles.append(tile)
            if len(batch_tiles) == batch_size:
                yield batch_tiles, buffer
                batch_tiles, buffer = [], np.empty_like(buffer)
        if batch_tiles:
            yield batch_tiles, buffer[: len(batch_tiles)]

    done = 0
    in_flight: tuple[list[Tile], PendingBatch] | None = None

    def drain(item: tuple[list[Tile], PendingBatch]) -> None:
        nonlocal done
        batch_tiles, pending = item
        with times.measure("forward"):
            probabilities = runner.collect(pending)
        with times.measure("stitch"):
            for tile, tile_probability in zip(batch_tiles, probabilities, strict=True):
                stitcher.add(tile, tile_probability)
        done += len(batch_tiles)
        if progress is not None:
            progress(done, total_tiles)

    for batch_tiles, pixels in batches():
        with times.measure("forward"):
            pending = runner.submit(pixels)
        if in_flight is not None:
            drain(in_flight)
        in_flight = (batch_tiles, pending)
    if in_flight is not None:
        drain(in_flight)
    with times.measure("stitch"):
        stitcher.finish()
        tissue_rows.finish()
    # What only the tile loop needed (the band, freed by finish; the decoded frames, here) must
    # not stack on the tumour mask and the temporaries post-processing allocates next.
    reader.release()

    with times.measure("postprocess"):
        tumour = tumour_mask(probability, tissue, mpp, PostprocessParams.from_card(card))
        pixel_area_mm2 = (mpp / 1000.0) ** 2
        tumour_area = float(count_nonzero(tumour)) * pixel_area_mm2
        tissue_area = float(count_nonzero(tissue)) * pixel_area_mm2

    timings = dict.fromkeys(("tissue", "read", "decode", "resample", "wait"), 0.0)
    timings.update(times.as_dict())
    timings["open"] = float(getattr(slide, "open_seconds", 0.0))
    timings["total"] = time.perf_counter() - started
    result = InferenceResult(
        tumour=SlideMask(tumour, mpp),
        probability=SlideMask(probability, mpp, max_value=255),
        tissue=SlideMask(tissue, mpp),
        tumour_area_mm2=tumour_area,
        tissue_area_mm2=tissue_area,
        timings=timings,
        tiles=total_tiles,
        device=runner.description,
        level=level,
        tissue_lowres=tissue_low,
        tiles_in_grid=grid.rows * grid.cols,
        stats={
            "frame_cache_hit_ratio": reader.cache_hit_ratio,
            "frames_decoded": float(reader.frames_decoded),
            "decode_megapixels_per_s": (
                reader.frames_decoded * level.tile_width * level.tile_height / 1e6 / decode_s
                if (decode_s := times.get("decode")) > 0
                else 0.0
            ),
            "tissue_mpp": tissue_low.mpp,
        },
    )
    logger.info(
        "tumour %.3f mm2 of %.3f mm2 tissue; %d tiles in %.2f s (%s); %s",
        tumour_area,
        tissue_area,
        total_tiles,
        timings["total"],
        runner.description,
        ", ".join(f"{k} {v:.2f}" for k, v in sorted(timings.items())),
    )
    return result
