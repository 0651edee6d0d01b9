"""Pyramid levels described by their physical pixel size, and the choice of one for a task."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import SlideError

# DICOM pixel spacings are decimal strings written by different converters; a level whose
# pixel size exceeds the asked one by less than this fraction still counts as "not coarser".
MPP_TOLERANCE = 1e-3


@dataclass(frozen=True)
class LevelInfo:
    """One resolution level of a slide's pyramid.

    Attributes
    ----------
    index:
        Position in the slide's level list, base first (0 is the base level).
    mpp_x, mpp_y:
        Micrometres per pixel along columns and rows, from the level's PixelSpacing.
    width, height:
        Total pixel matrix columns and rows.
    tile_width, tile_height:
        Frame columns and rows.
    transfer_syntax_uid:
        How the frames are encoded.
    """

    index: int
    mpp_x: float
    mpp_y: float
    width: int
    height: int
    tile_width: int
    tile_height: int
    transfer_syntax_uid: str

    @property
    def mpp(self) -> float:
        """The coarser of the two axes' pixel sizes: what "not coarser than" is judged on."""
        return max(self.mpp_x, self.mpp_y)

    @property
    def size(self) -> tuple[int, int]:
        return self.width, self.height

    @property
    def tiled_size(self) -> tuple[int, int]:
        """Frames across and down."""
        return math.ceil(self.width / self.tile_width), math.ceil(self.height / self.tile_height)


def choose_level(
    levels: Sequence[LevelInfo], target_mpp: float, *, max_coarser_ratio: float = 1.0
) -> LevelInfo:
    """The level to read for work at ``target_mpp`` micrometres per pixel.

    Among the levels whose pixel size is at most ``target_mpp * max_coarser_ratio`` (with a
    0.1% tolerance for rounded spacings), the one nearest to ``target_mpp`` on a log scale.
    With the default ratio of 1 that is the coarsest level not coarser than asked, which is
    then shrunk to the exact target: reading finer than needed costs decoding time, reading
    coarser loses detail the model was trained to see. A ratio above 1 lets a slightly
    coarser level win when it is nearer (it is then enlarged); ``math.inf`` accepts any.

    Raises
    ------
    SlideError
        When every level is coarser than allowed.
    """
    if not target_mpp > 0:
        raise ValueError(f"target pixel size must be positive, not {target_mpp}")
    if not max_coarser_ratio >= 1:
        raise ValueError(f"max_coarser_ratio must be at least 1, not {max_coarser_ratio}")
    limit = target_mpp * max_coarser_ratio * (1 + MPP_TOLERANCE)
    candidates = [level for level in levels if level.mpp <= limit]
    if not candidates:
        finest = min(levels, key=lambda level: level.mpp)
        raise SlideError(
            f"the slide's finest level has {finest.mpp:.4g} µm/px, coarser than the "
            f"{target_mpp:.4g} µm/px asked for (allowed up to {max_coarser_ratio:g}x coarser)"
        )
    return min(
        candidates,
        key=lambda level: (abs(math.log(level.mpp / target_mpp)), level.mpp, level.index),
    )
