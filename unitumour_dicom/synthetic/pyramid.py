"""Render the base level band by band and build every lower level from it as it goes.

The base level is rendered one row of tiles at a time. Each finished band of a level is cut
into frames for that level's writer and box-filtered 2x into the next level's band, so the
whole pyramid is made in one pass over the base, holding at most about two rows of tiles per
level: memory grows with the slide's width, never with its area.

Tiles of a band are rendered, and frames encoded, on a small thread pool (numpy, OpenCV and
the codecs release the GIL); every tile depends only on its own coordinates and its own
seeded generator, so the bytes do not depend on the number of threads.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Container, Iterable, Iterator, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, Protocol, TypeVar

import numpy as np

from .render import GLASS_OD, pixel_centres_um, render_region
from .scene import Scene
from .spec import PhantomSpec

logger = logging.getLogger(__name__)

#: RGB of bare glass, used to pad frames at the right and bottom edges of a level.
BACKGROUND_RGB = np.rint(255.0 * 10.0 ** (-GLASS_OD)).astype(np.uint8)

ProgressCallback = Callable[[int, int], None]


class FrameSink(Protocol):
    def write_encoded(self, data: bytes) -> None: ...


_T = TypeVar("_T")


class _Serial(Executor):
    """The executor of one worker: runs each call in the caller's thread."""

    def map(
        self,
        fn: Callable[..., _T],
        *iterables: Iterable[Any],
        timeout: float | None = None,
        chunksize: int = 1,
    ) -> Iterator[_T]:
        return map(fn, *iterables)


@contextmanager
def _executor(workers: int) -> Iterator[Executor]:
    if workers <= 1:
        yield _Serial()
        return
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="phantom") as pool:
        yield pool


def downsample_2x(band: np.ndarray) -> np.ndarray:
    """2 x 2 box filter; an odd last row or column is averaged with a copy of itself."""
    rows, cols = band.shape[:2]
    if rows & 1 or cols & 1:
        band = np.pad(band, ((0, rows & 1), (0, cols & 1), (0, 0)), mode="edge")
    acc = band[0::2, 0::2].astype(np.uint16)
    acc += band[1::2, 0::2]
    acc += band[0::2, 1::2]
    acc += band[1::2, 1::2]
    acc += 2
    return (acc >> 2).astype(np.uint8)


class _Level:
    """Rows of one level waiting to fill a row of frames."""

    def __init__(
        self,
        index: int,
        width: int,
        height: int,
        tile: int,
        sink: FrameSink,
        encode: Callable[[np.ndarray], bytes],
        pool: Executor,
        present: Container[int] | None,
    ) -> None:
        self.index = index
        self.encode = encode
        self.pool = pool
        self.present = present
        self.tiles_across = math.ceil(width / tile)
        self.width = width
        self.height = height
        self.tile = tile
        self.sink = sink
        self.pending: list[np.ndarray] = []
        self.pending_rows = 0
        self.rows_done = 0
        self.tile_row = 0

    def ready(self) -> bool:
        if self.pending_rows >= self.tile:
            return True
        return self.pending_rows > 0 and self.rows_done + self.pending_rows >= self.height

    def take_band(self) -> np.ndarray:
        band = self.pending[0] if len(self.pending) == 1 else np.concatenate(self.pending)
        take = min(self.tile, band.shape[0])
        self.tile_row = self.rows_done // self.tile
        rest = band[take:]
        self.pending = [rest] if rest.shape[0] else []
        self.pending_rows = rest.shape[0]
        self.rows_done += take
        return band[:take]

    def emit(self, band: np.ndarray, tile_row: int) -> None:
        first = tile_row * self.tiles_across
        frames = [
            self._frame(band, column * self.tile)
            for column in range(self.tiles_across)
            if self.present is None or first + column in self.present
        ]
        for data in self.pool.map(self.encode, frames):
            self.sink.write_encoded(data)

    def _frame(self, band: np.ndarray, x: int) -> np.ndarray:
        tile = self.tile
        piece = band[:, x : x + tile]
        if piece.shape[0] == tile and piece.shape[1] == tile:
            return np.ascontiguousarray(piece)
        frame = np.empty((tile, tile, 3), dtype=np.uint8)
        frame[:] = BACKGROUND_RGB
        frame[: piece.shape[0], : piece.shape[1]] = piece
        return frame


#: Renders the base level's pixels (rows, columns, 3) uint8 of the tile whose top-left pixel
#: is (x0, y0), of ``columns`` x ``rows`` pixels (smaller at the right and bottom edges), given
#: the tile's column and row in the grid.
TileRenderer = Callable[[int, int, int, int, int, int], np.ndarray]


def write_pyramid(
    spec: PhantomSpec,
    scene: Scene,
    sinks: Sequence[FrameSink],
    encode: Callable[[np.ndarray], bytes],
    *,
    workers: int = 1,
    present: Sequence[Container[int] | None] | None = None,
    progress: ProgressCallback | None = None,
) -> None:
    """Render the phantom and send every level's frames, encoded by ``encode``, row-major,
    to ``sinks[level]``; only the tiles in ``present[level]`` (row-major indices) when that
    is given, every tile when it is None."""

    def render(tx: int, ty: int, x0: int, y0: int, cols: int, rows: int) -> np.ndarray:
        rng = np.random.default_rng([spec.seed, 0, ty, tx])
        x_um = pixel_centres_um(x0, cols, spec.mpp)
        y_um = pixel_centres_um(y0, rows, spec.mpp)
        return render_region(scene, x_um, y_um, spec.mpp, spec.seed, rng)

    write_pyramid_from(
        spec, render, sinks, encode, workers=workers, present=present, progress=progress
    )


def write_pyramid_from(
    spec: PhantomSpec,
    render_tile: TileRenderer,
    sinks: Sequence[FrameSink],
    encode: Callable[[np.ndarray], bytes],
    *,
    workers: int = 1,
    present: Sequence[Container[int] | None] | None = None,
    progress: ProgressCallback | None = None,
) -> None:
    """The pyramid of any base image that ``render_tile`` paints tile by tile (the phantom's
    scene, or a mosaic of real images), with the geometry of ``spec``; as
    :func:`write_pyramid` otherwise. ``render_tile`` runs on the worker threads."""
    if len(sinks) != spec.levels:
        raise ValueError(f"{spec.levels} levels need {spec.levels} sinks, not {len(sinks)}")
    tile = spec.tile_size
    width, height = spec.width, spec.height
    tiles_across, tiles_down = math.ceil(width / tile), math.ceil(height / tile)
    total = tiles_across * tiles_down
    with _executor(workers) as pool:
        levels = [
            _Level(k, w, h, tile, sinks[k], encode, pool, present[k] if present else None)
            for k, (w, h) in enumerate(spec.level_sizes)
        ]
        for ty in range(tiles_down):
            y0 = ty * tile
            rows = min(tile, height - y0)

            def render(tx: int, ty: int = ty, y0: int = y0, rows: int = rows) -> np.ndarray:
                x0 = tx * tile
                pixels = render_tile(tx, ty, x0, y0, min(tile, width - x0), rows)
                if pixels.shape != (rows, min(tile, width - x0), 3) or pixels.dtype != np.uint8:
                    raise ValueError(
                        f"tile ({tx}, {ty}) rendered as {pixels.shape} {pixels.dtype}, expected "
                        f"{(rows, min(tile, width - x0), 3)} uint8"
                    )
                return pixels

            band = np.concatenate(list(pool.map(render, range(tiles_across))), axis=1)
            _feed(levels, 0, band)
            if progress is not None:
                progress((ty + 1) * tiles_across, total)
    for level in levels:
        if level.pending_rows or level.rows_done != level.height:
            raise RuntimeError(
                f"level {level.index}: {level.rows_done} of {level.height} rows written"
            )


def _feed(levels: list[_Level], index: int, rows: np.ndarray) -> None:
    level = levels[index]
    level.pending.append(rows)
    level.pending_rows += rows.shape[0]
    while level.ready():
        band = level.take_band()
        level.emit(band, level.tile_row)
        if index + 1 < len(levels):
            _feed(levels, index + 1, downsample_2x(band))
