"""The per-slide figures every result object reports, computed once from the job's result so
that the SR, the bulk annotations and the key image state the same numbers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from ..slide.mask import SlideMask
from .regions import RegionStats, tumour_regions


class MaskResult(Protocol):
    """What the writers read of :class:`~unitumour_dicom.infer.result.InferenceResult`."""

    @property
    def tumour(self) -> SlideMask: ...

    @property
    def tumour_area_mm2(self) -> float: ...

    @property
    def tissue_area_mm2(self) -> float: ...


@dataclass(frozen=True)
class SlideFigures:
    """Tumour and tissue areas (mm2), the tumour fraction of the tissue (%), the connected
    tumour regions at the mask's resolution and the largest one's area (mm2)."""

    tumour_area_mm2: float
    tissue_area_mm2: float
    region_count: int
    largest_region_mm2: float
    mask_mpp: float

    @property
    def tumour_fraction_percent(self) -> float:
        """Tumour area over tissue area, in percent (0 when no tissue was found)."""
        if self.tissue_area_mm2 <= 0:
            return 0.0
        return 100.0 * self.tumour_area_mm2 / self.tissue_area_mm2


def slide_figures(result: MaskResult, regions: RegionStats | None = None) -> SlideFigures:
    """The figures of ``result``; ``regions`` when already counted (it reads the whole mask)."""
    regions = regions if regions is not None else tumour_regions(result.tumour)
    return SlideFigures(
        tumour_area_mm2=float(result.tumour_area_mm2),
        tissue_area_mm2=float(result.tissue_area_mm2),
        region_count=regions.count,
        largest_region_mm2=regions.largest_mm2,
        mask_mpp=float(result.tumour.mpp),
    )
