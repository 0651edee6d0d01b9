"""Stain statistics: Macenko's method gives back the stain vectors of a synthetic H/E mixture,
and the tile summary ignores glass and refuses tiles without tissue."""

from __future__ import annotations

import numpy as np
import pytest

from unitumour_dicom.domain.stain import (
    QUALITY_FEATURE_NAMES,
    STAIN_FEATURE_NAMES,
    macenko_vectors,
    optical_density,
    quality_features,
    stain_concentrations,
    stain_features,
)


def _unit(v: list[float]) -> np.ndarray:
    a = np.asarray(v, np.float64)
    return a / np.linalg.norm(a)


def _mixture(h: np.ndarray, e: np.ndarray, n: int = 128, seed: int = 0) -> np.ndarray:
    """uint8 RGB n x n tile: OD = c_h h + c_e e, with pure-H, pure-E and mixed pixels."""
    rng = np.random.default_rng(seed)
    c = rng.uniform(0.0, 1.0, size=(n * n, 2))
    kind = rng.integers(0, 3, size=n * n)
    c[kind == 0, 1] = 0.0  # nuclei: haematoxylin only
    c[kind == 1, 0] = 0.0  # cytoplasm, stroma: eosin only
    c *= np.array([1.2, 0.9])
    c += 0.1  # every tissue pixel carries a little of both, as real tissue does... mostly
    c[kind == 0, 1] = 0.0
    c[kind == 1, 0] = 0.0
    od = c @ np.stack([h, e])
    rgb = np.clip(256.0 * np.exp(-od) - 1.0, 0, 255).round().astype(np.uint8)
    return rgb.reshape(n, n, 3)


def _angle_deg(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.degrees(np.arccos(np.clip(abs(a @ b), -1, 1))))


@pytest.mark.parametrize(
    ("h", "e"),
    [
        (_unit([0.65, 0.70, 0.29]), _unit([0.07, 0.99, 0.11])),  # Ruifrok & Johnston
        (_unit([0.55, 0.75, 0.37]), _unit([0.20, 0.90, 0.40])),  # a different lab's pair
    ],
)
def test_macenko_recovers_known_stain_vectors(h: np.ndarray, e: np.ndarray) -> None:
    rgb = _mixture(h, e)
    od = optical_density(rgb).reshape(-1, 3).astype(np.float64)
    found = macenko_vectors(od)
    assert found is not None
    h_found, e_found = found
    assert _angle_deg(h_found, h) < 3.0
    assert _angle_deg(e_found, e) < 3.0
    # Through the tile summary too (sampled pixels, uint8 rounding).
    f = stain_features(rgb)
    assert f is not None and f.shape == (len(STAIN_FEATURE_NAMES),)
    names = list(STAIN_FEATURE_NAMES)
    h_feat = f[names.index("h_r") : names.index("h_b") + 1]
    e_feat = f[names.index("e_r") : names.index("e_b") + 1]
    assert _angle_deg(h_feat, h) < 3.0 and _angle_deg(e_feat, e) < 3.0
    # A swapped pair would be a different stain: the angle between H and E is large.
    assert _angle_deg(h_feat, e) > 20.0


def test_concentrations_invert_the_mixture() -> None:
    h, e = _unit([0.65, 0.70, 0.29]), _unit([0.07, 0.99, 0.11])
    c = np.array([[0.5, 0.0], [0.0, 0.8], [0.3, 0.4]])
    assert np.allclose(stain_concentrations(c @ np.stack([h, e]), h, e), c, atol=1e-9)


def test_glass_is_not_described_and_the_mask_restricts() -> None:
    glass = np.full((64, 64, 3), 245, np.uint8)
    assert stain_features(glass) is None
    tissue = _mixture(_unit([0.65, 0.70, 0.29]), _unit([0.07, 0.99, 0.11]), n=64)
    assert stain_features(tissue, np.zeros((64, 64), bool)) is None
    half = np.concatenate([glass[:, :32], tissue[:, 32:]], axis=1)
    only_tissue = stain_features(half)
    masked = np.zeros((64, 64), bool)
    masked[:, 32:] = True
    assert only_tissue is not None
    assert np.allclose(only_tissue, stain_features(half, masked))  # glass adds nothing


def test_quality_features_see_blur_and_jpeg_blocking() -> None:
    import cv2

    rng = np.random.default_rng(1)
    tile = _mixture(_unit([0.65, 0.70, 0.29]), _unit([0.07, 0.99, 0.11]), n=128)
    tile = cv2.GaussianBlur(tile, (0, 0), 1.0)  # some spatial correlation, like tissue
    tile = np.clip(tile.astype(int) + rng.integers(-3, 4, tile.shape), 0, 255).astype(np.uint8)
    mask = np.ones(tile.shape[:2], bool)
    sharp = quality_features(tile, mask)
    blurred = quality_features(cv2.GaussianBlur(tile, (0, 0), 3.0), mask)
    ok, buf = cv2.imencode(".jpg", tile, [cv2.IMWRITE_JPEG_QUALITY, 10])
    assert ok
    jpeg = quality_features(cv2.imdecode(buf, cv2.IMREAD_COLOR), mask)
    assert sharp is not None and blurred is not None and jpeg is not None
    names = list(QUALITY_FEATURE_NAMES)
    assert blurred[names.index("focus")] < sharp[names.index("focus")] - 1.0
    assert jpeg[names.index("block_x")] > sharp[names.index("block_x")] + 0.1
    assert jpeg[names.index("block_y")] > sharp[names.index("block_y")] + 0.1
