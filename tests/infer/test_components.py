"""Banded component filters equal whole-array labelling, whatever the band height."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from unitumour_dicom.infer import fill_small_holes, remove_small_objects

pytestmark = pytest.mark.unittest


def reference_remove(mask: np.ndarray, min_area: float) -> np.ndarray:
    labels, n = ndimage.label(mask, structure=np.ones((3, 3), bool))
    sizes = np.bincount(labels.ravel(), minlength=n + 1)
    keep = sizes >= min_area
    keep[0] = False
    return keep[labels]


def reference_fill(mask: np.ndarray, max_area: float) -> np.ndarray:
    holes, n = ndimage.label(~mask)
    sizes = np.bincount(holes.ravel(), minlength=n + 1)
    edge = np.unique(np.concatenate([holes[0], holes[-1], holes[:, 0], holes[:, -1]]))
    fill = sizes <= max_area
    fill[0] = False
    fill[edge] = False
    return mask | fill[holes]


def blobby(seed: int, shape=(120, 90), density=0.45) -> np.ndarray:
    rng = np.random.default_rng(seed)
    noise = ndimage.gaussian_filter(rng.random(shape), 2.0)
    return noise > np.quantile(noise, 1 - density)


@pytest.mark.parametrize("band_rows", [1, 2, 7, 16, 1000])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_banded_filters_equal_whole_array_labelling(seed, band_rows):
    mask = blobby(seed)
    for min_area in (5, 40, 200):
        got = mask.copy()
        removed = remove_small_objects(got, min_area, band_rows=band_rows)
        expected = reference_remove(mask, min_area)
        np.testing.assert_array_equal(got, expected)
        assert removed == np.count_nonzero(mask & ~expected)
    for max_area in (3, 30, 300):
        got = mask.copy()
        filled = fill_small_holes(got, max_area, band_rows=band_rows)
        expected = reference_fill(mask, max_area)
        np.testing.assert_array_equal(got, expected)
        assert filled == np.count_nonzero(expected & ~mask)


def test_a_u_shape_joined_only_at_the_bottom_band_is_one_object():
    mask = np.zeros((30, 20), bool)
    mask[0:25, 2] = mask[0:25, 17] = True  # two arms of 25 px each...
    mask[24, 2:18] = True  # ...joined at row 24
    remove_small_objects(mask, 30, band_rows=5)
    assert mask.sum() == 25 + 25 + 14, "seen band by band the arms are apart, yet kept"


def test_diagonal_contact_across_a_band_boundary_joins_objects_but_not_holes():
    mask = np.zeros((10, 10), bool)
    mask[2:5, 2:5] = True
    mask[5:8, 5:8] = True  # touches the first square only at a corner, across rows 4/5
    remove_small_objects(mask, 10, band_rows=5)
    assert mask.sum() == 18  # 9 + 9 >= 10: one 8-connected object


def test_holes_touching_the_edge_stay_open():
    mask = np.ones((12, 12), bool)
    mask[0:4, 5:7] = False  # a notch from the top edge
    mask[6:8, 6:8] = False  # a real hole
    fill_small_holes(mask, 100, pixel_area=1.0, band_rows=3)
    assert not mask[0:4, 5:7].any() and mask[6:8, 6:8].all()


def test_pixel_area_scales_the_limits():
    mask = np.zeros((20, 20), bool)
    mask[5:8, 5:8] = True  # 9 px
    remove_small_objects(mask, 10.0, pixel_area=1.0)
    assert not mask.any()
    mask[5:8, 5:8] = True
    remove_small_objects(mask, 10.0, pixel_area=1.25)  # 11.25 >= 10: kept
    assert mask.sum() == 9


def test_empty_and_disabled_filters_do_nothing():
    mask = np.zeros((5, 5), bool)
    assert remove_small_objects(mask, 10) == 0 and fill_small_holes(mask, 10) == 0
    full = np.ones((5, 5), bool)
    assert remove_small_objects(full, 0) == 0 and fill_small_holes(full, 0) == 0
