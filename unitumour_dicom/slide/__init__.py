"""A received series as a whole-slide image: levels chosen by pixel size, exact resampling,
tissue detection, and the raster contract (SlideMask) shared with the SEG writer."""

from .levels import LevelInfo, choose_level
from .mask import SlideMask
from .reader import FrameSource, LevelReader
from .resample import area_weights, bilinear_sample, resample_area
from .timing import StageTimes
from .tissue import TissueParams, clean_tissue, detect_tissue, tissue_pixels
from .wsi import DEFAULT_TISSUE_MPP, MAX_RASTER_PIXELS, WsiSlide, open_slide

__all__ = [
    "DEFAULT_TISSUE_MPP",
    "MAX_RASTER_PIXELS",
    "FrameSource",
    "LevelInfo",
    "LevelReader",
    "SlideMask",
    "StageTimes",
    "TissueParams",
    "WsiSlide",
    "area_weights",
    "bilinear_sample",
    "choose_level",
    "clean_tissue",
    "detect_tissue",
    "open_slide",
    "resample_area",
    "tissue_pixels",
]
