"""From the stitched probability map to the tumour mask, band by band.

The steps and their order are the card's (``unitumour_dicom.model.postprocess``, which
evaluation applies to image tiles, so Dice measures exactly what the slide path delivers):
threshold, limit to tissue, fill holes inside tumour up to the card's area, limit to tissue
again, remove tumour components below the card's area. Here they run on slide-sized masks
without slide-sized temporaries: thresholding and masking in bands of rows, components with
the banded labelling of :mod:`.components`. The masks may be numpy arrays or
:class:`~unitumour_dicom.slide.raster.DiskRaster` scratch files (then the tumour mask is one
too, beside the probability map): the result is the same bit for bit, and what is held in
memory is one band of about :data:`~unitumour_dicom.slide.raster.BAND_PIXELS` pixels of each
input (uint8 and bool: about 8 MB with the temporaries), whatever the slide's size.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..slide.raster import DiskRaster, empty_like, read_rows, row_bands, write_rows
from ..slide.raster import band_rows as rows_per_band
from .components import fill_small_holes, remove_small_objects

Raster = np.ndarray | DiskRaster


@dataclass(frozen=True)
class PostprocessParams:
    """The card's post-processing, in its own units."""

    threshold: float  # probability at or above which a pixel is tumour
    min_tumour_area_um2: float  # tumour components smaller than this are removed
    fill_holes_max_area_um2: float  # holes inside tumour up to this are filled

    @classmethod
    def from_card(cls, card: object) -> PostprocessParams:
        return cls(
            threshold=float(card.threshold),  # type: ignore[attr-defined]
            min_tumour_area_um2=float(card.min_tumour_area_um2),  # type: ignore[attr-defined]
            fill_holes_max_area_um2=float(card.fill_holes_max_area_um2),  # type: ignore[attr-defined]
        )


def probability_cut(threshold: float) -> int:
    """The uint8 level (probabilities stored as 255 p, rounded) at or above which a pixel
    is tumour: ``round(threshold * 255)``, as the card's post-processing compares."""
    if not 0 < threshold < 1:
        raise ValueError(f"threshold must lie strictly between 0 and 1, not {threshold}")
    return round(threshold * 255)


def tumour_mask(
    probability: Raster,
    tissue: Raster,
    mpp: float,
    params: PostprocessParams,
    *,
    out: Raster | None = None,
    band_rows: int | None = None,
) -> Raster:
    """Boolean tumour mask from a uint8 probability map and a boolean tissue mask, both at
    ``mpp`` micrometres per pixel; written into ``out`` when given, else into a new array (or
    a new scratch raster beside ``probability`` when that is one). ``band_rows`` (default:
    about 4 M pixels a band) changes how the work is cut, never the result."""
    if probability.shape != tissue.shape:
        raise ValueError(f"shapes differ: {probability.shape} and {tissue.shape}")
    if probability.dtype != np.uint8:
        raise ValueError(f"probability must be uint8 (255 p), not {probability.dtype}")
    cut = probability_cut(params.threshold)
    mask = empty_like(probability, bool) if out is None else out
    if mask.shape != probability.shape or mask.dtype != np.bool_:
        raise ValueError(f"out must be bool {probability.shape}, not {mask.dtype} {mask.shape}")
    step = band_rows or rows_per_band(mask.shape[1])
    bands = list(row_bands(mask.shape[0], step))

    def limit_to_tissue() -> None:
        for r0, r1 in bands:
            band = read_rows(mask, r0, r1)
            np.logical_and(band, read_rows(tissue, r0, r1), out=band)
            write_rows(mask, r0, band)

    for r0, r1 in bands:
        band = np.greater_equal(read_rows(probability, r0, r1), cut)
        np.logical_and(band, read_rows(tissue, r0, r1), out=band)
        write_rows(mask, r0, band)
    pixel_area = mpp * mpp
    filled = fill_small_holes(
        mask, params.fill_holes_max_area_um2, pixel_area=pixel_area, band_rows=band_rows
    )
    if filled:
        limit_to_tissue()
    remove_small_objects(
        mask, params.min_tumour_area_um2, pixel_area=pixel_area, band_rows=band_rows
    )
    return mask
