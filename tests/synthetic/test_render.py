"""Pixels: H&E-like colours, darker tumour, no seams between separately rendered tiles."""

from __future__ import annotations

import numpy as np
import pytest

from unitumour_dicom.synthetic import PhantomSpec, Scene, rasterise
from unitumour_dicom.synthetic.noise import hash_uniform, value_noise
from unitumour_dicom.synthetic.pyramid import downsample_2x
from unitumour_dicom.synthetic.render import pixel_centres_um, render_region

pytestmark = pytest.mark.unittest

SPEC = PhantomSpec(width=1024, height=768, mpp=0.5, seed=3, n_tumours=3)


def _render(scene: Scene, left: int, top: int, width: int, height: int) -> np.ndarray:
    return render_region(
        scene, pixel_centres_um(left, width, 0.5), pixel_centres_um(top, height, 0.5), 0.5, 3
    )


def test_regions_rendered_apart_join_without_seams() -> None:
    scene = Scene.from_spec(SPEC)
    whole = _render(scene, 256, 256, 256, 256)
    quarters = [
        [_render(scene, 256 + dx, 256 + dy, 128, 128) for dx in (0, 128)] for dy in (0, 128)
    ]
    top, bottom = (np.concatenate(row, axis=1) for row in quarters)
    assert np.array_equal(np.concatenate([top, bottom]), whole)


def test_tumour_is_darker_and_bluer_than_normal_tissue_and_glass_is_bright() -> None:
    scene = Scene.from_spec(SPEC)
    pixels = _render(scene, 0, 0, 1024, 768).astype(np.float64)
    tumour = rasterise(scene, 0.5, "tumour").array
    tissue = rasterise(scene, 0.5, "tissue").array
    normal = tissue & ~tumour
    glass = ~rasterise(scene, 0.5, "tissue").array
    luminance = pixels @ np.array([0.299, 0.587, 0.114])
    assert luminance[glass].mean() > 230
    assert luminance[normal].mean() < luminance[glass].mean() - 40
    assert luminance[tumour].mean() < luminance[normal].mean() - 25
    # Eosin pink: red above green in normal tissue; haematoxylin pulls red down in tumour.
    r, g, b = (pixels[..., i] for i in range(3))
    assert r[normal].mean() > g[normal].mean() + 40
    assert (b - r)[tumour].mean() > (b - r)[normal].mean()


def test_noise_is_a_function_of_global_coordinates() -> None:
    x = np.arange(0, 64, 0.5)
    y = np.arange(10, 42, 0.5)
    whole = value_noise(x, y, 4.0, salt=9)
    assert np.allclose(value_noise(x[40:], y[10:], 4.0, salt=9), whole[10:, 40:], atol=1e-6)
    assert whole.min() >= 0.0 and whole.max() < 1.0
    # Finer than the pixels: the mean, not aliasing.
    assert np.all(value_noise(x, y, 0.2, salt=9) == 0.5)
    u = hash_uniform(np.arange(-1000, 1000), np.zeros(2000, dtype=np.int64), 1)
    assert 0.45 < u.mean() < 0.55 and u.min() >= 0 and u.max() < 1


def test_downsample_averages_and_rounds_up_odd_sizes() -> None:
    band = np.arange(5 * 3 * 3, dtype=np.uint8).reshape(5, 3, 3)
    half = downsample_2x(band)
    assert half.shape == (3, 2, 3)
    assert half[0, 0, 0] == round(
        (band[0, 0, 0] + band[0, 1, 0] + band[1, 0, 0] + band[1, 1, 0]) / 4
    )
    assert half[2, 1, 0] == band[4, 2, 0]
