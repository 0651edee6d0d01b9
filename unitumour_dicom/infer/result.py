"""What inference on one slide produces."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..slide.levels import LevelInfo
from ..slide.mask import SlideMask


@dataclass(frozen=True)
class InferenceResult:
    """Masks at the model's pixel size (``card.mpp``) on the slide's raster, with areas,
    timings and what was read.

    Attributes
    ----------
    tumour:
        bool; the post-processed tumour mask (threshold, small objects removed, small holes
        filled, limited to tissue).
    probability:
        uint8 with ``max_value=255``: the blended tumour probability times 255, rounded
        (0 outside read tiles); ``probability.fraction()`` gives floats.
    tissue:
        bool; tissue detected on the coarse level, brought up to the model's grid.
    tumour_area_mm2, tissue_area_mm2:
        Areas of ``tumour`` and ``tissue``.
    timings:
        Seconds per stage. Wall-clock: ``open`` (opening the series), ``tissue``,
        ``wait`` (the model waiting for tiles), ``forward``, ``stitch``, ``postprocess``,
        ``total`` (everything after opening). Summed over the reading threads, which run
        alongside the model: ``read`` (encoded frames), ``decode``, ``resample``.
    tiles:
        Tiles run through the model.
    device:
        Where and how the model ran, e.g. "cpu, float32" or "cuda:0 (...), bfloat16, ...".
    level:
        The pyramid level read for the model.
    tissue_lowres:
        The tissue mask as detected, at its own coarse pixel size.
    tiles_in_grid:
        Tiles the whole raster has (read or skipped for holding no tissue).
    stats:
        Other figures: ``frame_cache_hit_ratio`` (decoded frames reused by overlapping
        tiles), ``frames_decoded``, ``decode_megapixels_per_s`` (per decoding thread-second),
        ``tissue_mpp``.
    """

    tumour: SlideMask
    probability: SlideMask
    tissue: SlideMask
    tumour_area_mm2: float
    tissue_area_mm2: float
    timings: dict[str, float]
    tiles: int
    device: str
    level: LevelInfo | None = None
    tissue_lowres: SlideMask | None = None
    tiles_in_grid: int = 0
    stats: dict[str, float] = field(default_factory=dict)

    @property
    def megapixels_per_second(self) -> float:
        """Model-resolution megapixels of the whole raster per second of ``total``."""
        total = self.timings.get("total", 0.0)
        return self.tumour.array.size / 1e6 / total if total > 0 else 0.0
