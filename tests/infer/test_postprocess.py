"""Slide post-processing in bands gives exactly the card's post-processing."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from unitumour_dicom.infer import PostprocessParams, probability_cut, tumour_mask

pytestmark = pytest.mark.unittest


def whole_array_postprocessing(probability, tissue, mpp, params: PostprocessParams):
    """The card's steps on whole arrays (as unitumour_dicom.model.postprocess applies them
    to image tiles in evaluation): threshold, limit to tissue, fill holes up to the area
    (4-connected background off the edge), limit to tissue, remove 8-connected components
    below the area."""
    mask = (probability >= round(params.threshold * 255)) & tissue
    area = mpp * mpp
    if params.fill_holes_max_area_um2 > 0:
        holes, n = ndimage.label(~mask)
        sizes = np.bincount(holes.ravel(), minlength=n + 1)
        edge = np.unique(np.concatenate([holes[0], holes[-1], holes[:, 0], holes[:, -1]]))
        fill = sizes * area <= params.fill_holes_max_area_um2
        fill[0] = False
        fill[edge] = False
        mask = (mask | fill[holes]) & tissue
    if params.min_tumour_area_um2 > 0:
        labels, n = ndimage.label(mask, structure=np.ones((3, 3), bool))
        sizes = np.bincount(labels.ravel(), minlength=n + 1)
        keep = sizes * area >= params.min_tumour_area_um2
        keep[0] = False
        mask = keep[labels]
    return mask


def random_inputs(seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    smooth = ndimage.gaussian_filter(rng.random((160, 140)), 3.0)
    smooth = (smooth - smooth.min()) / (smooth.max() - smooth.min())
    probability = np.clip(smooth * 255 + 0.5, 0, 255).astype(np.uint8)
    tissue = ndimage.gaussian_filter(rng.random((160, 140)), 6.0) > 0.48
    return probability, tissue


CASES = [(0.5, 0.0, 0.0), (0.3, 400.0, 250.0), (0.6, 90.0, 5000.0)]


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize(("threshold", "min_area", "max_hole"), CASES)
def test_equals_whole_array_postprocessing(seed, threshold, min_area, max_hole):
    probability, tissue = random_inputs(seed)
    params = PostprocessParams(threshold, min_area, max_hole)
    got = tumour_mask(probability, tissue, 1.5, params)
    np.testing.assert_array_equal(got, whole_array_postprocessing(probability, tissue, 1.5, params))
    assert got.any() and not (got & ~tissue).any()


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize(("threshold", "min_area", "max_hole"), CASES)
def test_equals_the_cards_postprocessing_used_in_evaluation(seed, threshold, min_area, max_hole):
    card_postprocess = pytest.importorskip(
        "unitumour_dicom.model.postprocess", reason="the model package's post-processing"
    )
    postprocess_probability = card_postprocess.postprocess_probability
    probability, tissue = random_inputs(seed)
    params = PostprocessParams(threshold, min_area, max_hole)
    got = tumour_mask(probability, tissue, 1.5, params)
    expected = postprocess_probability(
        probability,
        threshold=threshold,
        mpp=1.5,
        min_tumour_area_um2=min_area,
        fill_holes_max_area_um2=max_hole,
        tissue=tissue,
    )
    np.testing.assert_array_equal(got, expected)
    assert not (got & ~tissue).any()


def test_threshold_in_uint8():
    assert probability_cut(0.5) == 128
    with pytest.raises(ValueError, match="strictly between"):
        probability_cut(1.0)


def test_mismatched_inputs_are_refused():
    params = PostprocessParams(0.5, 0, 0)
    with pytest.raises(ValueError, match="shapes differ"):
        tumour_mask(np.zeros((4, 4), np.uint8), np.zeros((4, 5), bool), 1.0, params)
    with pytest.raises(ValueError, match="uint8"):
        tumour_mask(np.zeros((4, 4), np.float32), np.zeros((4, 4), bool), 1.0, params)
