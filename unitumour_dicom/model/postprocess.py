"""The card's post-processing, applied to a probability map at the model's pixel size.

It lives beside the card because its parameters are part of the model's definition: Dice is
reported for exactly this mask, so slide inference and evaluation must apply the same steps.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from .card import ModelCard

_FOUR_CONNECTED = ndimage.generate_binary_structure(2, 1)
_EIGHT_CONNECTED = ndimage.generate_binary_structure(2, 2)


def postprocess_probability(
    probability: np.ndarray,
    *,
    threshold: float,
    mpp: float,
    min_tumour_area_um2: float = 0.0,
    fill_holes_max_area_um2: float = 0.0,
    tissue: np.ndarray | None = None,
) -> np.ndarray:
    """Boolean tumour mask: probability >= threshold, limited to tissue, holes up to
    ``fill_holes_max_area_um2`` filled, then components under ``min_tumour_area_um2`` removed.

    ``probability`` is float in [0, 1] or uint8 in 0..255 (compared with round(threshold*255)).
    Components are 8-connected for tumour and 4-connected for holes (the usual digital-topology
    pair, so a diagonal gap neither splits a tumour nor opens a hole). A hole is background
    not connected to the array's edge.
    """
    if probability.dtype == np.uint8:
        mask = probability >= round(threshold * 255)
    else:
        mask = probability >= threshold
    if tissue is not None:
        mask &= tissue.astype(bool)
    pixel_area = mpp * mpp
    if fill_holes_max_area_um2 > 0 and mask.any():
        holes, n = ndimage.label(~mask, structure=_FOUR_CONNECTED)
        if n:
            sizes = np.bincount(holes.ravel(), minlength=n + 1)
            edge = np.unique(np.concatenate([holes[0], holes[-1], holes[:, 0], holes[:, -1]]))
            fill = sizes * pixel_area <= fill_holes_max_area_um2
            fill[0] = False
            fill[edge] = False
            mask |= fill[holes]
            if tissue is not None:
                mask &= tissue.astype(bool)
    if min_tumour_area_um2 > 0 and mask.any():
        labels, n = ndimage.label(mask, structure=_EIGHT_CONNECTED)
        sizes = np.bincount(labels.ravel(), minlength=n + 1)
        keep = sizes * pixel_area >= min_tumour_area_um2
        keep[0] = False
        mask = keep[labels]
    return mask


def postprocess_with_card(
    probability: np.ndarray, card: ModelCard, *, tissue: np.ndarray | None = None
) -> np.ndarray:
    """``postprocess_probability`` with the card's threshold, areas and pixel size."""
    return postprocess_probability(
        probability,
        threshold=card.threshold,
        mpp=card.mpp,
        min_tumour_area_um2=card.min_tumour_area_um2,
        fill_holes_max_area_um2=card.fill_holes_max_area_um2,
        tissue=tissue,
    )
