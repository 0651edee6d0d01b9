"""Dice, false tumour area, the bootstrap and the per-class summary on hand-made arrays."""

from __future__ import annotations

import math

import numpy as np
import pytest

from unitumour_dicom.evaluate import ItemResult, bootstrap_ci, dice, false_tumour_fraction
from unitumour_dicom.evaluate.report import format_table, summarise

pytestmark = pytest.mark.unittest


def test_dice_by_hand() -> None:
    pred = np.array([[1, 1, 0], [0, 0, 0]], bool)
    ref = np.array([[1, 0, 0], [1, 0, 0]], bool)
    assert dice(pred, ref) == pytest.approx(2 * 1 / (2 + 2))
    pred = np.array([[1, 1, 1], [1, 0, 0]], bool)
    ref = np.array([[1, 1, 0], [0, 0, 0]], bool)
    assert dice(pred, ref) == pytest.approx(2 * 2 / (4 + 2))
    assert dice(ref, ref) == 1.0


def test_dice_with_empty_masks() -> None:
    empty = np.zeros((4, 5), bool)
    some = empty.copy()
    some[1, 2] = True
    assert dice(empty, empty) == 1.0  # correctly no tumour
    assert dice(some, empty) == 0.0  # false tumour on a tumour-free image
    assert dice(empty, some) == 0.0  # tumour missed entirely
    with pytest.raises(ValueError, match="shape"):
        dice(empty, np.zeros((5, 4), bool))


def test_false_tumour_fraction() -> None:
    pred = np.zeros((10, 10), bool)
    pred[:2] = True
    assert false_tumour_fraction(pred) == pytest.approx(0.2)
    region = np.zeros((10, 10), bool)
    region[:, :5] = True  # tissue: left half, 50 px; tumour called there: 10 px
    assert false_tumour_fraction(pred, region) == pytest.approx(10 / 50)
    assert false_tumour_fraction(pred, np.zeros((10, 10), bool)) == 0.0


def test_bootstrap_ci_edge_cases_and_determinism() -> None:
    assert all(math.isnan(v) for v in bootstrap_ci([]))
    assert bootstrap_ci([0.7]) == (0.7, 0.7)
    assert bootstrap_ci([0.5, 0.5, 0.5]) == (0.5, 0.5)
    values = np.random.default_rng(1).random(40)
    a = bootstrap_ci(values, seed=3)
    assert a == bootstrap_ci(values, seed=3)
    assert a[0] < values.mean() < a[1]
    # Standard error of the mean of U(0,1) x 40 is ~0.046: a 95% CI spans about 0.18.
    assert 0.1 < a[1] - a[0] < 0.3


def test_cluster_bootstrap_resamples_cases_not_images() -> None:
    # Case A: two images with Dice 0; case B: one with 1. Drawing two cases gives
    # {A,A} -> 0, {B,B} -> 1, {A,B} -> 1/3, so the 95% interval is [0, 1] exactly,
    # whereas resampling the three images independently would give 1/3 and 2/3 often.
    lo, hi = bootstrap_ci([0.0, 0.0, 1.0], clusters=["A", "A", "B"], n_resamples=4000)
    assert (lo, hi) == (0.0, 1.0)
    with pytest.raises(ValueError):
        bootstrap_ci([1.0, 2.0], clusters=["A"])


def test_summary_per_class_and_overall_by_hand() -> None:
    items = [
        ItemResult("a1", "Adenocarcinoma", "c1", 0.8, False, 0.5, 0.6),
        ItemResult("a2", "Adenocarcinoma", "c2", 0.6, False, 0.3, 0.4),
        ItemResult("n1", "Normal", "c3", 1.0, True, 0.0, 0.0),
        ItemResult("n2", "Normal", "c3", 0.0, True, 0.04, 0.0),
    ]
    s = summarise(items, n_resamples=500)
    adeno, normal, overall = s["classes"]["Adenocarcinoma"], s["classes"]["Normal"], s["overall"]
    assert adeno["n"] == 2 and adeno["n_cases"] == 2
    assert adeno["dice_mean"] == pytest.approx(0.7)
    assert adeno["dice_ci95"][0] >= 0.6 and adeno["dice_ci95"][1] <= 0.8
    assert "false_tumour_area_mean" not in adeno
    assert normal["dice_mean"] == pytest.approx(0.5)
    assert normal["false_tumour_area_mean"] == pytest.approx(0.02)
    assert normal["dice_ci95"] == [0.5, 0.5]  # one case: nothing to resample
    assert overall["n"] == 4 and overall["n_tumour_free"] == 2
    assert overall["dice_mean"] == pytest.approx((0.8 + 0.6 + 1.0 + 0.0) / 4)
    assert overall["dice_tumour_bearing_mean"] == pytest.approx(0.7)
    table = format_table(s)
    assert "Adenocarcinoma" in table and "2.00%" in table and "overall" in table
