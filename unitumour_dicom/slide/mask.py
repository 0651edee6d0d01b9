"""A raster over a slide's whole image area at a stated pixel size: the contract between the
model side (which makes masks at the model's resolution) and the SEG writer (which resamples
them onto every pyramid level of the source).

Geometry: pixel (r, c) of the array covers the physical square whose top-left corner lies at
(c * mpp, r * mpp) micrometres from the top-left corner of the slide's total pixel matrix at
the base level. Both axes share one pixel size. The array may extend past the slide's edge by
less than one pixel; nothing outside the slide is meaningful.

Values: bool for a mask; float in [0, 1] for probabilities; or unsigned integers holding
probabilities scaled to ``0..max_value`` (inference stores its probability map as uint8 with
``max_value=255``, a quarter of float32's memory), so ``fraction()`` gives back [0, 1].

Storage: a numpy array, or for slide-sized rasters a :class:`~.raster.DiskRaster` (a scratch
file read band by band): ``area_mm2``, ``sample`` and ``region`` then read only the bands or
points they need; ``fraction()`` without arguments reads the whole array (small masks only).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .raster import DiskRaster, total


@dataclass(frozen=True)
class SlideMask:
    """A boolean mask (or float probabilities in [0, 1]) on a slide, with its pixel size."""

    array: np.ndarray | DiskRaster
    mpp: float  # micrometres per pixel, both axes
    max_value: int | None = None  # for integer probabilities: the stored value meaning 1.0

    def __post_init__(self) -> None:
        if self.array.ndim != 2:
            raise ValueError(f"a slide mask is 2-D, not {self.array.ndim}-D")
        if not self.mpp > 0:
            raise ValueError(f"mpp must be positive, not {self.mpp}")
        if self.max_value is not None:
            if self.array.dtype.kind != "u":
                raise ValueError(f"max_value applies to unsigned integers, not {self.array.dtype}")
            if not 0 < self.max_value <= np.iinfo(self.array.dtype).max:
                raise ValueError(f"max_value {self.max_value} does not fit {self.array.dtype}")

    @property
    def is_probability(self) -> bool:
        """Whether values are probabilities (float, or integers scaled by ``max_value``)."""
        return self.array.dtype.kind == "f" or self.max_value is not None

    def fraction(self, values: np.ndarray | None = None) -> np.ndarray:
        """``values`` (default: the whole array) as probabilities in [0, 1], float32; a mask
        becomes 0 or 1. Pass blocks to convert a large map piece by piece."""
        block = np.asarray(self.array) if values is None else np.asarray(values)
        if self.max_value is not None:
            return block.astype(np.float32) / np.float32(self.max_value)
        if block.dtype.kind == "f":
            return block.astype(np.float32, copy=False)
        return (block != 0).astype(np.float32)

    @property
    def shape(self) -> tuple[int, int]:
        rows, cols = self.array.shape
        return rows, cols

    @property
    def pixel_area_mm2(self) -> float:
        return (self.mpp / 1000.0) ** 2

    def area_mm2(self) -> float:
        """Area of the mask (sum of probabilities for a probability map) in square
        millimetres."""
        summed = total(self.array)
        if self.max_value is not None:
            summed /= self.max_value
        return summed * self.pixel_area_mm2

    def sample(self, rows: np.ndarray, cols: np.ndarray, target_mpp: float) -> np.ndarray:
        """Nearest-neighbour values at the centres of target pixels (rows, cols) of size
        ``target_mpp``; pixels outside the array read as 0. ``rows`` and ``cols`` broadcast."""
        r = np.floor((np.asarray(rows) + 0.5) * target_mpp / self.mpp).astype(np.int64)
        c = np.floor((np.asarray(cols) + 0.5) * target_mpp / self.mpp).astype(np.int64)
        r, c = np.broadcast_arrays(r, c)
        inside = (r >= 0) & (r < self.shape[0]) & (c >= 0) & (c < self.shape[1])
        out = np.zeros(r.shape, dtype=self.array.dtype)
        out[inside] = self.array[r[inside], c[inside]]
        return out

    def region(self, top: int, left: int, height: int, width: int, target_mpp: float) -> np.ndarray:
        """The mask resampled onto a (height, width) window of a grid of pixel size
        ``target_mpp`` whose pixel (0, 0) is the slide's top-left corner."""
        rows = np.arange(top, top + height)[:, None]
        cols = np.arange(left, left + width)[None, :]
        return self.sample(rows, cols, target_mpp)
