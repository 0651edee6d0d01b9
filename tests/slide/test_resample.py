"""Exact area resampling: the arithmetic every tile and mask at the model's grid rests on."""

from __future__ import annotations

import numpy as np
import pytest

from unitumour_dicom.slide.resample import (
    area_weights,
    bilinear_sample,
    resample_area,
    source_span,
    to_uint8,
)

pytestmark = pytest.mark.unittest


def supersampled_reference(src: np.ndarray, origin, scale, shape, k: int) -> np.ndarray:
    """Area means computed the slow, obvious way: blow every source pixel up into k x k
    sub-pixels and average the sub-pixels inside each target pixel. Exact when the target
    grid's edges fall on multiples of 1/k."""
    fine = np.repeat(np.repeat(src.astype(np.float64), k, 0), k, 1)
    out = np.zeros(shape + src.shape[2:])
    for i in range(shape[0]):
        r0, r1 = round((origin[0] + i * scale[0]) * k), round((origin[0] + (i + 1) * scale[0]) * k)
        for j in range(shape[1]):
            c0 = round((origin[1] + j * scale[1]) * k)
            c1 = round((origin[1] + (j + 1) * scale[1]) * k)
            out[i, j] = fine[r0:r1, c0:c1].mean(axis=(0, 1))
    return out


@pytest.mark.parametrize(
    ("origin", "scale", "shape"),
    [
        ((0.0, 0.0), (2.0, 2.0), (10, 12)),  # integer shrink
        ((0.25, 0.75), (1.75, 1.25), (9, 13)),  # fractional scale and offset
        ((1.5, 0.25), (3.25, 2.5), (5, 6)),  # different per axis
        ((0.5, 0.5), (0.5, 0.75), (20, 20)),  # enlarging
    ],
)
def test_area_means_match_supersampled_reference(origin, scale, shape):
    rng = np.random.default_rng(1)
    src = rng.integers(0, 256, (24, 28, 3), dtype=np.uint8)
    got = resample_area(src, origin, scale, shape)
    want = supersampled_reference(src, origin, scale, shape, k=4)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, atol=1e-3)


def test_two_dimensional_input_keeps_its_shape():
    src = np.arange(64, dtype=np.uint8).reshape(8, 8)
    got = resample_area(src, (0.0, 0.0), (2.0, 2.0), (4, 4))
    np.testing.assert_allclose(got, src.reshape(4, 2, 4, 2).mean(axis=(1, 3)))


def test_constant_image_stays_constant_at_any_offset_and_scale():
    src = np.full((50, 60, 3), 137, np.uint8)
    for origin, scale in [((0.3, 0.9), (1.84, 1.84)), ((2.2, 0.1), (3.68, 2.9))]:
        out = resample_area(src, origin, scale, (10, 12))
        np.testing.assert_allclose(out, 137, atol=1e-3)


def test_identity_returns_the_exact_crop():
    src = np.random.default_rng(2).integers(0, 256, (10, 10, 3), dtype=np.uint8)
    np.testing.assert_array_equal(resample_area(src, (2.0, 3.0), (1.0, 1.0), (5, 4)), src[2:7, 3:7])


def test_weights_of_covered_target_pixels_sum_to_one():
    weights = area_weights(100, 0.37, 2.71, 30).toarray()
    np.testing.assert_allclose(weights.sum(axis=1), 1.0, atol=1e-6)
    # and each source pixel's total contribution equals its covered share, times 1 / scale
    assert weights.min() >= 0


def test_source_span_covers_the_target_pixels():
    for start, count, scale in [(0, 10, 1.84), (7, 33, 3.68), (3, 5, 1.0), (11, 4, 0.5)]:
        first, stop = source_span(start, count, scale)
        assert first <= start * scale + 1e-9
        assert stop >= (start + count) * scale - 1e-9
        assert stop - first <= count * scale + 2


def test_rounding_is_half_up_and_clipped():
    np.testing.assert_array_equal(
        to_uint8(np.array([-3.0, 0.49, 0.5, 254.5, 300.0])), [0, 0, 1, 255, 255]
    )


def test_bilinear_sample_reproduces_a_linear_ramp_between_coarse_centres():
    coarse = np.arange(10, dtype=np.float32)[None, :].repeat(3, 0)  # value = column index
    # target pixels 8x finer: the centre of fine column j sits at coarse column (j + .5) / 8 - .5
    got = bilinear_sample(coarse, 8.0, 0, 8, (1, 56), 1.0)
    expected = (np.arange(8, 64) + 0.5) / 8 - 0.5
    np.testing.assert_allclose(got[0], expected, atol=1e-6)


def test_bilinear_sample_holds_the_edge_value_outside():
    coarse = np.array([[0.0, 1.0]], np.float32)
    got = bilinear_sample(coarse, 10.0, 0, -5, (1, 30), 1.0)
    assert got[0, 0] == 0.0 and got[0, -1] == 1.0
