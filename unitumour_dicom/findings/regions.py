"""Tumour regions of a mask, counted exactly at the mask's resolution in bounded memory.

The mask may be a disk-backed array far larger than memory allows to label at once, so it is
labelled in strips of rows (scipy.ndimage.label, 8-connected, as post-processing removes
small objects) and the labels that touch across a strip boundary are merged with a
union-find. Memory: one strip's labels plus one integer per provisional region.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ..slide.mask import SlideMask

#: Tumour is 8-connected (as in ``model.postprocess``); holes in it are then 4-connected.
EIGHT_CONNECTED = ndimage.generate_binary_structure(2, 2)
#: Pixels labelled at once (int32 labels): about 64 MiB of labels per strip.
STRIP_PIXELS = 1 << 24


@dataclass(frozen=True)
class RegionStats:
    """Connected tumour regions: how many, and each one's area (largest first)."""

    count: int
    areas_mm2: tuple[float, ...]

    @property
    def largest_mm2(self) -> float:
        return self.areas_mm2[0] if self.areas_mm2 else 0.0


class _UnionFind:
    def __init__(self) -> None:
        self.parent = np.zeros(0, dtype=np.int64)
        self.size = np.zeros(0, dtype=np.int64)

    def add(self, sizes: np.ndarray) -> int:
        """Add regions with these pixel counts; returns the id of the first."""
        first = len(self.parent)
        self.parent = np.concatenate([self.parent, np.arange(first, first + len(sizes))])
        self.size = np.concatenate([self.size, sizes.astype(np.int64)])
        return first

    def find(self, i: int) -> int:
        root = i
        while self.parent[root] != root:
            root = int(self.parent[root])
        while self.parent[i] != root:  # path compression
            self.parent[i], i = root, int(self.parent[i])
        return root

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[rb] = ra
            self.size[ra] += self.size[rb]
            self.size[rb] = 0


def _global(row: np.ndarray, first: int) -> np.ndarray:
    """A row of strip labels as union-find ids (-1: background)."""
    return np.where(row > 0, row.astype(np.int64) - 1 + first, -1)


def tumour_regions(mask: SlideMask, *, strip_rows: int | None = None) -> RegionStats:
    """Count the 8-connected regions of ``mask`` (values not 0, or >= 0.5 for
    probabilities) and measure each, reading ``strip_rows`` rows at a time (default: about
    :data:`STRIP_PIXELS` pixels)."""
    if strip_rows is None:
        strip_rows = max(1, STRIP_PIXELS // max(1, mask.shape[1]))
    uf = _UnionFind()
    previous: np.ndarray | None = None  # global ids of the previous strip's last row (-1: none)
    height = mask.shape[0]
    for top in range(0, height, strip_rows):
        block = np.asarray(mask.array[top : top + strip_rows])
        binary = block >= 0.5 if block.dtype.kind == "f" else block != 0
        labels, n = ndimage.label(binary, structure=EIGHT_CONNECTED)
        if n == 0:
            previous = None
            continue
        sizes = np.bincount(labels.ravel(), minlength=n + 1)[1:]
        first = uf.add(sizes)
        del binary, block
        if previous is not None:
            current = _global(labels[0], first)
            for shift in (-1, 0, 1):  # 8-connectivity: straight down and both diagonals
                above = np.roll(previous, shift)
                if shift == 1:
                    above[0] = -1
                elif shift == -1:
                    above[-1] = -1
                both = (above >= 0) & (current >= 0)
                for a, b in set(zip(above[both].tolist(), current[both].tolist(), strict=True)):
                    uf.union(a, b)
        previous = _global(labels[-1], first)
    roots = [i for i in range(len(uf.parent)) if uf.parent[i] == i and uf.size[i] > 0]
    pixel_area = mask.pixel_area_mm2
    areas = sorted((float(uf.size[i]) * pixel_area for i in roots), reverse=True)
    return RegionStats(count=len(areas), areas_mm2=tuple(areas))
