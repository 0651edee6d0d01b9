"""From the stitched probability map to the tumour mask, band by band.

The steps and their order are the card's (``unitumour_dicom.model.postprocess``, which
evaluation applies to image tiles, so Dice measures exactly what the slide path delivers):
threshold, limit to tissue, fill holes inside tumour up to the card's area, limit to tissue
again, remove tumour components below the card's area. Here they run on slide-sized masks
without slide-sized temporaries: thresholding and masking in bands of rows, components with
the banded labelling of :mod:`.components`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .components import fill_small_holes, remove_small_objects

_BAND_PIXELS = 1 << 24


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


def _in_bands(shape: tuple[int, int]) -> range:
    step = max(1, _BAND_PIXELS // max(shape[1], 1))
    return range(0, shape[0], step)


def tumour_mask(
    probability: np.ndarray,
    tissue: np.ndarray,
    mpp: float,
    params: PostprocessParams,
) -> np.ndarray:
    """Boolean tumour mask from a uint8 probability map and a boolean tissue mask, both at
    ``mpp`` micrometres per pixel."""
    if probability.shape != tissue.shape:
        raise ValueError(f"shapes differ: {probability.shape} and {tissue.shape}")
    if probability.dtype != np.uint8:
        raise ValueError(f"probability must be uint8 (255 p), not {probability.dtype}")
    cut = probability_cut(params.threshold)
    mask = np.empty(probability.shape, bool)
    bands = _in_bands(probability.shape)
    step = bands.step

    def limit_to_tissue() -> None:
        for r0 in bands:
            rows = slice(r0, r0 + step)
            np.logical_and(mask[rows], tissue[rows], out=mask[rows])

    for r0 in bands:
        rows = slice(r0, r0 + step)
        np.greater_equal(probability[rows], cut, out=mask[rows])
    limit_to_tissue()
    pixel_area = mpp * mpp
    if fill_small_holes(mask, params.fill_holes_max_area_um2, pixel_area=pixel_area):
        limit_to_tissue()
    remove_small_objects(mask, params.min_tumour_area_um2, pixel_area=pixel_area)
    return mask
