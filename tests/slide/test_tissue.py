"""Tissue detection: H&E counts, glass, marker ink and glass edges do not."""

from __future__ import annotations

import numpy as np
import pytest

from unitumour_dicom.slide.tissue import (
    TissueParams,
    clean_tissue,
    detect_tissue,
    otsu_threshold,
    tissue_pixels,
)

pytestmark = pytest.mark.unittest

GLASS = (243, 241, 244)
TINTED_GLASS = (236, 226, 240)
EOSIN = (232, 160, 205)
HAEMATOXYLIN = (95, 75, 155)
PALE_STROMA = (240, 205, 228)
BLUE_INK = (40, 90, 185)
GREEN_INK = (50, 150, 90)
RED_INK = (200, 40, 55)
BLACK_INK = (35, 35, 45)
GLASS_EDGE = (120, 120, 122)


def colour_block(colour, shape=(8, 8)) -> np.ndarray:
    return np.broadcast_to(np.array(colour, np.uint8), (*shape, 3)).copy()


@pytest.mark.parametrize("colour", [EOSIN, HAEMATOXYLIN, PALE_STROMA])
def test_stains_are_tissue(colour):
    image = np.concatenate([colour_block(GLASS, (8, 16)), colour_block(colour, (8, 16))])
    pixels = tissue_pixels(image)
    assert pixels[8:].all() and not pixels[:8].any()


@pytest.mark.parametrize(
    "colour", [GLASS, TINTED_GLASS, BLUE_INK, GREEN_INK, RED_INK, BLACK_INK, GLASS_EDGE]
)
def test_glass_ink_and_edges_are_not_tissue(colour):
    image = np.concatenate([colour_block(EOSIN, (8, 16)), colour_block(colour, (8, 16))])
    pixels = tissue_pixels(image)
    assert pixels[:8].all() and not pixels[8:].any()


def test_a_slide_with_artefacts():
    """Tissue ellipse with a nucleus-rich region; a blue pen stroke and a black one beside it;
    a grey glass edge at the right; dust specks. Only the ellipse survives, whole."""
    rows, cols, mpp = 200, 300, 8.0
    y, x = np.mgrid[:rows, :cols]
    image = colour_block(GLASS, (rows, cols))
    tissue = ((y - 100) / 70) ** 2 + ((x - 120) / 90) ** 2 < 1
    image[tissue] = EOSIN
    image[tissue & ((y - 90) ** 2 + (x - 110) ** 2 < 30**2)] = HAEMATOXYLIN
    lumen = tissue & ((y - 120) ** 2 + (x - 150) ** 2 < 3**2)
    image[lumen] = GLASS
    image[(np.abs(x - 230) < 3) & (y > 20) & (y < 180)] = BLUE_INK
    image[(np.abs(x - 250) < 2) & (y > 20) & (y < 180)] = BLACK_INK
    image[:, 290:] = GLASS_EDGE
    image[10:12, 10:12] = EOSIN  # dust: 4 px of 64 µm2 each, far below 5,000 µm2
    mask = detect_tissue(image, mpp)
    assert mask.mpp == mpp and mask.shape == (rows, cols)
    assert mask.array[lumen].all(), "the small lumen is filled"
    # the opening may shave single pixels off the ellipse's extreme points, nothing more
    assert np.count_nonzero(tissue & ~mask.array) <= 4
    assert not mask.array[~tissue].any(), "ink, glass edge and dust are not tissue"


def test_large_holes_stay_open_and_border_gaps_are_not_holes():
    mask = np.zeros((100, 100), bool)
    mask[10:90, 10:90] = True
    mask[30:70, 30:70] = False  # 1600 px = 102,400 µm2 at 8 µm/px: above the 50,000 limit
    mask[0:5, 40:60] = True
    cleaned = clean_tissue(mask, 8.0, TissueParams(opening_um=0))
    assert not cleaned[30:70, 30:70].any()
    small = mask.copy()
    small[30:70, 30:70] = True
    small[45:50, 45:50] = False  # 25 px = 1,600 µm2: filled
    assert clean_tissue(small, 8.0, TissueParams(opening_um=0))[45:50, 45:50].all()


def test_otsu_splits_two_populations():
    values = np.concatenate([np.full(1000, 0.02), np.full(300, 0.4)])
    assert 0.02 < otsu_threshold(values) <= 0.4
    assert otsu_threshold(np.zeros(0)) == 0


def test_rgb_is_required():
    with pytest.raises(ValueError, match="RGB"):
        tissue_pixels(np.zeros((4, 4), np.uint8))


def test_blocks_of_rows_decide_as_the_whole_image_does(monkeypatch: pytest.MonkeyPatch):
    import unitumour_dicom.slide.tissue as tissue

    rng = np.random.default_rng(5)
    image = colour_block(GLASS, (60, 50))
    image[10:50, 5:45] = EOSIN
    image[20:30, 10:20] = HAEMATOXYLIN
    image[:, 47:] = BLUE_INK
    image = np.clip(image + rng.integers(-12, 13, image.shape), 0, 255).astype(np.uint8)
    whole = tissue_pixels(image)
    monkeypatch.setattr(tissue, "_CHUNK_PIXELS", 7 * 50)
    np.testing.assert_array_equal(tissue_pixels(image), whole)
    assert whole[12:48, 7:43].mean() > 0.95 and not whole[:, 47:].any()
