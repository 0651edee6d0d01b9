"""Regions of one pyramid level, read from its encoded frames and resampled exactly onto a
target pixel grid.

Frames are fetched encoded and decoded here (for JPEG by libjpeg-turbo through imagecodecs,
which releases the GIL), so several threads decode at once while the model computes. A small
cache of decoded frames, shared by those threads, keeps neighbouring tiles (whose halos
overlap) from decoding the same frame twice; a frame being decoded by one thread is waited
for, not decoded again, by another.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future
from typing import Protocol

import numpy as np

from ..errors import SlideError
from .levels import LevelInfo
from .resample import resample_area, source_span, to_uint8
from .timing import StageTimes

logger = logging.getLogger(__name__)

BACKGROUND = 255  # what lies outside the scanned area, or in a frame a sparse level omits
# A fixed bound, not one that grows with the slide: it holds the frames under several
# neighbouring tiles, so horizontal neighbours never decode a frame twice; on levels up to
# about 30 frames of 256 pixels across it also keeps the frames the next row of tiles shares.
DEFAULT_CACHE_BYTES = 32 * 1024**2


class FrameSource(Protocol):
    """Encoded frames of one level, and how to decode them (one optical path, one plane)."""

    level: LevelInfo

    def encoded_frame(self, column: int, row: int) -> bytes | None:
        """The frame at frame column/row, or None where a sparse level has none."""
        ...

    def decode(self, data: bytes) -> np.ndarray:
        """RGB uint8 pixels, tile_height x tile_width x 3."""
        ...


class _FrameCache:
    """Least-recently-used decoded frames; concurrent requests for one frame decode it once."""

    def __init__(self, capacity: int) -> None:
        self._capacity = max(int(capacity), 1)
        self._lock = threading.Lock()
        self._items: OrderedDict[tuple[int, int], Future[np.ndarray | None]] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def get(self, key: tuple[int, int], load: Callable[[], np.ndarray | None]) -> np.ndarray | None:
        with self._lock:
            future = self._items.get(key)
            owner = future is None
            if future is None:
                future = Future()
                self._items[key] = future
                while len(self._items) > self._capacity:
                    self._items.popitem(last=False)
                self.misses += 1
            else:
                self._items.move_to_end(key)
                self.hits += 1
        if owner:
            try:
                future.set_result(load())
            except BaseException as exc:
                future.set_exception(exc)
                with self._lock:
                    if self._items.get(key) is future:
                        del self._items[key]
                raise
        return future.result()

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


class LevelReader:
    """Reads any rectangle of a target grid (pixel size ``target_mpp``, origin at the slide's
    top-left corner) from one level, as uint8 RGB.

    The rectangle may extend past the slide: what lies outside reads as background white, as
    on glass. Thread-safe; meant to be called from several decoding threads at once.

    Parameters
    ----------
    source:
        The level's frames.
    target_mpp:
        Micrometres per pixel of the grid regions are asked on.
    cache_bytes:
        Upper bound on decoded frames kept for reuse by overlapping regions.
    times:
        Where seconds spent reading encoded frames ("read"), decoding them ("decode") and
        resampling onto the target grid ("resample") are added up.
    """

    def __init__(
        self,
        source: FrameSource,
        target_mpp: float,
        *,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
        times: StageTimes | None = None,
    ) -> None:
        self.source = source
        self.level = source.level
        self.target_mpp = float(target_mpp)
        self.scale = (self.target_mpp / self.level.mpp_y, self.target_mpp / self.level.mpp_x)
        frame_bytes = self.level.tile_width * self.level.tile_height * 3
        self._cache = _FrameCache(cache_bytes // frame_bytes)
        self.times = times if times is not None else StageTimes()

    @property
    def frames_decoded(self) -> int:
        """Frames fetched and decoded so far (a frame evicted and needed again counts twice)."""
        return self._cache.misses

    @property
    def cache_hit_ratio(self) -> float:
        total = self._cache.hits + self._cache.misses
        return self._cache.hits / total if total else 0.0

    def _load(self, column: int, row: int) -> np.ndarray | None:
        start = time.perf_counter()
        try:
            data = self.source.encoded_frame(column, row)
        except Exception as exc:
            raise SlideError(
                f"frame ({column}, {row}) of level {self.level.index} could not be read: {exc}"
            ) from exc
        decoded = time.perf_counter()
        self.times.add("read", decoded - start)
        if data is None:
            return None
        try:
            pixels = self.source.decode(data)
        except Exception as exc:
            raise SlideError(
                f"frame ({column}, {row}) of level {self.level.index} "
                f"({self.level.transfer_syntax_uid}) could not be decoded: {exc}"
            ) from exc
        self.times.add("decode", time.perf_counter() - decoded)
        expected = (self.level.tile_height, self.level.tile_width, 3)
        if pixels.shape != expected or pixels.dtype != np.uint8:
            raise SlideError(
                f"frame ({column}, {row}) of level {self.level.index} decoded to "
                f"{pixels.dtype} {pixels.shape}, not uint8 {expected}"
            )
        return pixels

    def release(self) -> None:
        """Drop the decoded frames kept for reuse (once no more regions will be read)."""
        self._cache.clear()

    def frame(self, column: int, row: int) -> np.ndarray | None:
        """Decoded frame (shared, read-only), or None for a frame a sparse level omits."""
        return self._cache.get((column, row), lambda: self._load(column, row))

    def read_source(self, row0: int, col0: int, row1: int, col1: int) -> np.ndarray:
        """Level pixels ``[row0, row1) x [col0, col1)``, background outside the level."""
        level = self.level
        out = np.full((row1 - row0, col1 - col0, 3), BACKGROUND, np.uint8)
        r0, r1 = max(row0, 0), min(row1, level.height)
        c0, c1 = max(col0, 0), min(col1, level.width)
        if r0 >= r1 or c0 >= c1:
            return out
        th, tw = level.tile_height, level.tile_width
        for frame_row in range(r0 // th, (r1 - 1) // th + 1):
            for frame_col in range(c0 // tw, (c1 - 1) // tw + 1):
                pixels = self.frame(frame_col, frame_row)
                if pixels is None:
                    continue
                fr0, fc0 = frame_row * th, frame_col * tw
                a0, a1 = max(r0, fr0), min(r1, fr0 + th)
                b0, b1 = max(c0, fc0), min(c1, fc0 + tw)
                out[a0 - row0 : a1 - row0, b0 - col0 : b1 - col0] = pixels[
                    a0 - fr0 : a1 - fr0, b0 - fc0 : b1 - fc0
                ]
        return out

    def read(self, top: int, left: int, rows: int, cols: int) -> np.ndarray:
        """Target-grid pixels ``[top, top + rows) x [left, left + cols)`` as uint8 RGB."""
        scale_y, scale_x = self.scale
        if self.scale == (1.0, 1.0):
            return self.read_source(top, left, top + rows, left + cols)
        row0, row1 = source_span(top, rows, scale_y)
        col0, col1 = source_span(left, cols, scale_x)
        source = self.read_source(row0, col0, row1, col1)
        start = time.perf_counter()
        values = resample_area(
            source, (top * scale_y - row0, left * scale_x - col0), self.scale, (rows, cols)
        )
        pixels = to_uint8(values)
        self.times.add("resample", time.perf_counter() - start)
        return pixels
