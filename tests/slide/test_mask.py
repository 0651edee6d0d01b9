"""The SlideMask contract: geometry of sampling and the meaning of its values."""

from __future__ import annotations

import numpy as np
import pytest

from unitumour_dicom.slide import SlideMask

pytestmark = pytest.mark.unittest


def test_integer_probabilities_carry_their_scale():
    probability = SlideMask(np.array([[255, 128], [0, 51]], np.uint8), 2.0, max_value=255)
    assert probability.is_probability
    np.testing.assert_allclose(probability.fraction(), [[1.0, 128 / 255], [0.0, 0.2]])
    assert probability.area_mm2() == pytest.approx((1 + 128 / 255 + 0.2) * 4e-6)
    np.testing.assert_allclose(probability.fraction(np.array([255], np.uint8)), [1.0])


def test_masks_and_float_maps_keep_their_meaning():
    mask = SlideMask(np.array([[True, False]]), 1.0)
    assert not mask.is_probability and mask.max_value is None
    assert mask.area_mm2() == pytest.approx(1e-6)
    np.testing.assert_array_equal(mask.fraction(), [[1.0, 0.0]])
    floats = SlideMask(np.array([[0.25, 0.5]], np.float32), 1.0)
    assert floats.is_probability and floats.area_mm2() == pytest.approx(0.75e-6)


def test_a_scale_needs_unsigned_integers_that_hold_it():
    with pytest.raises(ValueError, match="unsigned integers"):
        SlideMask(np.zeros((2, 2), np.float32), 1.0, max_value=255)
    with pytest.raises(ValueError, match="does not fit"):
        SlideMask(np.zeros((2, 2), np.uint8), 1.0, max_value=1000)


def test_region_samples_pixel_centres_on_another_grid():
    mask = SlideMask(np.array([[1, 0], [0, 1]], bool), 4.0)
    # a 1 µm grid: pixel (r, c) centre at (r + .5, c + .5) µm falls in coarse pixel // 4
    region = mask.region(0, 0, 8, 8, 1.0)
    np.testing.assert_array_equal(region, np.kron([[1, 0], [0, 1]], np.ones((4, 4))).astype(bool))
