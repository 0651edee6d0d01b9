"""Which pyramid level is read for a given pixel size."""

from __future__ import annotations

import math

import pytest

from unitumour_dicom.errors import SlideError
from unitumour_dicom.slide.levels import LevelInfo, choose_level

pytestmark = pytest.mark.unittest


def level(index: int, mpp: float, mpp_y: float | None = None) -> LevelInfo:
    side = round(40000 * 0.25 / mpp)
    return LevelInfo(index, mpp, mpp_y or mpp, side, side, 256, 256, "1.2.840.10008.1.2.4.50")


PYRAMID_40X = [level(0, 0.25), level(1, 0.5), level(2, 1.0), level(3, 2.0), level(4, 4.0)]


@pytest.mark.parametrize(
    ("target", "expected"),
    [(0.92, 0.5), (1.0, 1.0), (0.25, 0.25), (3.9, 2.0), (8.0, 4.0), (0.5, 0.5)],
)
def test_the_coarsest_level_not_coarser_than_asked(target, expected):
    assert choose_level(PYRAMID_40X, target).mpp == expected


def test_rounded_spacings_within_a_tenth_of_a_percent_count_as_equal():
    pyramid = [level(0, 0.2502), level(1, 0.5004), level(2, 1.0008)]
    assert choose_level(pyramid, 1.0).index == 2
    assert choose_level(pyramid, 0.998).index == 1


def test_a_coarser_level_wins_only_when_allowed_and_nearer():
    assert choose_level(PYRAMID_40X, 0.92).mpp == 0.5
    assert choose_level(PYRAMID_40X, 0.92, max_coarser_ratio=1.1).mpp == 1.0
    assert choose_level(PYRAMID_40X, 0.6, max_coarser_ratio=2.0).mpp == 0.5  # nearer in log
    assert choose_level(PYRAMID_40X, 100.0, max_coarser_ratio=math.inf).mpp == 4.0


def test_every_level_coarser_than_asked_is_an_error_that_says_so():
    pyramid = [level(0, 2.0), level(1, 4.0)]
    with pytest.raises(SlideError, match=r"finest level has 2 µm/px, coarser than the 0.92"):
        choose_level(pyramid, 0.92)
    assert choose_level(pyramid, 0.92, max_coarser_ratio=3).mpp == 2.0


def test_anisotropic_pixels_are_judged_by_the_coarser_axis():
    pyramid = [level(0, 0.25, 0.3), level(1, 0.5, 0.6), level(2, 1.0, 1.2)]
    assert choose_level(pyramid, 1.0).index == 1


def test_base_only_pyramid():
    assert choose_level([level(0, 0.25)], 0.92).index == 0


def test_nonsense_arguments_are_refused():
    with pytest.raises(ValueError, match="positive"):
        choose_level(PYRAMID_40X, 0.0)
    with pytest.raises(ValueError, match="at least 1"):
        choose_level(PYRAMID_40X, 1.0, max_coarser_ratio=0.5)
