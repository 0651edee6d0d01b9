"""Augmentation keeps image and mask aligned, is seeded, and stays in range."""

from __future__ import annotations

import numpy as np
import pytest

from unitumour_dicom.train.augment import (
    AugmentConfig,
    augment_pair,
    colour_jitter,
    stain_jitter,
)

pytestmark = pytest.mark.unittest

GEOMETRY_ONLY = AugmentConfig(stain_p=0.0, colour_p=0.0, blur_p=0.0, jpeg_p=0.0)


def _pair(h: int = 40, w: int = 52) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    mask = np.zeros((h, w), bool)
    mask[5:20, 8:30] = True
    mask[25:35, 40:50] = True
    image = rng.integers(0, 100, (h, w, 3), dtype=np.uint8)
    image[mask, 0] = 250  # tumour is marked in the red channel
    return image, mask


@pytest.mark.parametrize("seed", range(12))
def test_geometry_moves_image_and_mask_together(seed: int) -> None:
    image, mask = _pair()
    out_image, out_mask = augment_pair(
        image, mask, np.random.default_rng(seed), GEOMETRY_ONLY, out_size=32
    )
    assert out_image.shape == (32, 32, 3) and out_image.dtype == np.uint8
    assert out_mask.shape == (32, 32) and out_mask.dtype == bool
    red = out_image[..., 0] > 175
    # Resampling blurs the edge by a pixel; inside, image and mask must agree.
    assert (red == out_mask).mean() > 0.93


def test_same_seed_same_result_and_none_is_identity() -> None:
    image, mask = _pair()
    a = augment_pair(image, mask, np.random.default_rng(5), AugmentConfig(), out_size=32)
    b = augment_pair(image, mask, np.random.default_rng(5), AugmentConfig(), out_size=32)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    c = augment_pair(image, mask, np.random.default_rng(6), AugmentConfig(), out_size=32)
    assert not np.array_equal(a[0], c[0])
    same_image, same_mask = augment_pair(
        image, mask, np.random.default_rng(0), AugmentConfig.none()
    )
    np.testing.assert_array_equal(same_image, image)
    np.testing.assert_array_equal(same_mask, mask)


def test_small_images_are_padded_to_the_crop() -> None:
    image, mask = _pair(20, 24)
    out_image, out_mask = augment_pair(
        image, mask, np.random.default_rng(1), AugmentConfig.none(), out_size=64
    )
    assert out_image.shape == (64, 64, 3) and out_mask.shape == (64, 64)
    assert out_mask.sum() > mask.sum()  # reflected copies of the tumour


def test_stain_and_colour_jitter_change_colour_not_structure() -> None:
    rng = np.random.default_rng(3)
    image = rng.integers(30, 230, (16, 16, 3), dtype=np.uint8)
    for fn in (
        lambda im: stain_jitter(im, np.random.default_rng(1), 0.1),
        lambda im: colour_jitter(im, np.random.default_rng(1), 0.2, 0.2, 0.2),
    ):
        out = fn(image)
        assert out.shape == image.shape and out.dtype == np.uint8
        assert not np.array_equal(out, image)
        grey_in = image.astype(float).mean(-1).ravel()
        grey_out = out.astype(float).mean(-1).ravel()
        assert np.corrcoef(grey_in, grey_out)[0, 1] > 0.9
    # Zero jitter is (up to rounding) the identity: the optical-density round trip is exact.
    same = stain_jitter(image, np.random.default_rng(1), 0.0)
    assert np.abs(same.astype(int) - image.astype(int)).max() <= 1
