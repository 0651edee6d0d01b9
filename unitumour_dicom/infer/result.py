"""What inference on one slide produces."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..slide.levels import LevelInfo
from ..slide.mask import SlideMask
from ..slide.raster import DiskRaster


@dataclass(frozen=True)
class InferenceResult:
    """Masks at the model's pixel size (``card.mpp``) on the slide's raster, with areas,
    timings and what was read.

    The three slide-sized masks are :class:`~unitumour_dicom.slide.raster.DiskRaster` scratch
    files (read them band by band; ``np.asarray`` reads one whole, for small slides and
    tests). :meth:`close` (or leaving a ``with`` block) frees their disk at once; otherwise
    it goes when the result is garbage collected or the process ends.

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

    def close(self) -> None:
        """Free the scratch files of the slide-sized masks (the areas and figures stay)."""
        for mask in (self.tumour, self.probability, self.tissue):
            if isinstance(mask.array, DiskRaster):
                mask.array.close()

    def __enter__(self) -> InferenceResult:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def megapixels_per_second(self) -> float:
        """Model-resolution megapixels of the whole raster per second of ``total``."""
        total = self.timings.get("total", 0.0)
        return self.tumour.array.size / 1e6 / total if total > 0 else 0.0
