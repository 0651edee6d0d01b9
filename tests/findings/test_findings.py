"""Region counting in strips equals labelling the whole mask; the model identity and the
RESEARCH USE ONLY labels."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from tests.findings.resultkit import model_card
from unitumour_dicom.findings import ModelIdentity, content_label, labelled, tumour_regions
from unitumour_dicom.slide.mask import SlideMask

pytestmark = pytest.mark.unittest


@pytest.mark.parametrize("strip_rows", [1, 7, 64, 5000])
def test_regions_in_strips_equal_whole_mask_labelling(strip_rows: int) -> None:
    rng = np.random.default_rng(5)
    mask = ndimage.binary_opening(rng.random((600, 300)) > 0.55)
    labels, n = ndimage.label(mask, structure=np.ones((3, 3)))
    sizes = np.sort(np.bincount(labels.ravel())[1:])[::-1]
    stats = tumour_regions(SlideMask(mask, 2.0), strip_rows=strip_rows)
    assert stats.count == n > 100
    assert np.allclose(stats.areas_mm2, sizes * (2.0e-3) ** 2)
    assert stats.largest_mm2 == pytest.approx(sizes[0] * 4e-6)


def test_diagonal_neighbours_across_a_strip_edge_are_one_region() -> None:
    mask = np.zeros((4, 4), bool)
    mask[1, 1] = mask[2, 2] = True  # touch at a corner, across the edge between rows 1 and 2
    mask[0, 3] = mask[3, 0] = True  # touching nothing
    stats = tumour_regions(SlideMask(mask, 1.0), strip_rows=2)
    assert stats.count == 3


def test_empty_mask_has_no_regions() -> None:
    stats = tumour_regions(SlideMask(np.zeros((10, 10), bool), 1.0), strip_rows=3)
    assert (stats.count, stats.largest_mm2) == (0, 0.0)


def test_identity_from_card_and_labels() -> None:
    research = ModelIdentity.from_card(model_card(not_for_clinical_use=True))
    clinical = ModelIdentity.from_card(model_card(not_for_clinical_use=False))
    assert research.card_sha256 != clinical.card_sha256
    assert len(research.card_sha256) == 64
    assert research.parameters()["not_for_clinical_use"] == "true"
    assert research.algorithm_info().parameters["weights_sha256"] == "ab" * 32
    text = labelled("Tumour annotations, " + "x" * 80, research, 64)
    assert text.startswith("RESEARCH USE ONLY ") and len(text) == 64
    assert labelled("Tumour", clinical, 64) == "Tumour"
    assert content_label("Tumour", research) == "RUO_TUMOUR"
    assert content_label("Tumour", clinical) == "TUMOUR"
