"""Tiled, batched, overlapped inference streamed from a slide; stitching; post-processing."""

from .components import fill_small_holes, remove_small_objects
from .forward import ModelRunner
from .postprocess import PostprocessParams, probability_cut, tumour_mask
from .prefetch import prefetch_map
from .result import InferenceResult
from .segment import segment_slide
from .stitch import BandStitcher
from .tiling import Tile, TileGrid

__all__ = [
    "BandStitcher",
    "InferenceResult",
    "ModelRunner",
    "PostprocessParams",
    "Tile",
    "TileGrid",
    "fill_small_holes",
    "prefetch_map",
    "probability_cut",
    "remove_small_objects",
    "segment_slide",
    "tumour_mask",
]
