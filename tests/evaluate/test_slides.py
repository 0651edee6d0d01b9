"""Evaluation on DICOM slides with reference SEGs: the reference is read on the slide's own
grid, and the production slide path's mask is compared with it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from unitumour_dicom.cli import app
from unitumour_dicom.evaluate.metrics import dice
from unitumour_dicom.evaluate.reference import ReferenceError, read_reference_seg

from .conftest import write_slide_list

pytestmark = [pytest.mark.integration, pytest.mark.slow]
runner = CliRunner()


def test_reference_seg_equals_the_ground_truth_at_the_chosen_level(phantom_pair) -> None:  # type: ignore[no-untyped-def]
    _, phantom, seg_dir = phantom_pair
    files = sorted(seg_dir.glob("*.dcm"))
    ref = read_reference_seg(files, target_mpp=0.9)
    assert ref.mask.mpp == pytest.approx(0.5)  # 1.0 µm/px would be coarser than asked
    truth = phantom.tumour_mask(0.5).array
    assert ref.mask.array[: truth.shape[0], : truth.shape[1]].tolist() == truth.tolist()
    coarse = read_reference_seg(files, target_mpp=4.0)
    assert coarse.mask.mpp == pytest.approx(2.0)
    assert ref.frame_of_reference_uid == phantom.frame_of_reference_uid


def test_a_slide_is_not_a_reference(phantom_pair) -> None:  # type: ignore[no-untyped-def]
    _, phantom, _ = phantom_pair
    with pytest.raises(ReferenceError, match="not a Segmentation"):
        read_reference_seg(phantom.level_paths[0], target_mpp=1.0)
    with pytest.raises(ReferenceError):
        read_reference_seg([], target_mpp=1.0)


def test_evaluate_slides_compares_on_the_models_grid(
    phantom_pair,
    tmp_path: Path,
    all_tumour_model: Path,
    no_tumour_model: Path,  # type: ignore[no-untyped-def]
) -> None:
    root, phantom, _ = phantom_pair
    slides = write_slide_list(
        root / "slides.csv",
        [{"slide": "slide", "seg": "reference", "cls": "Phantom", "case": "p1", "split": "test"}],
    )
    result = runner.invoke(
        app,
        [
            "evaluate",
            "--slides",
            str(slides),
            "--model",
            str(no_tumour_model),
            "--device",
            "cpu",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["unit"] == "slide" and out["classes"]["Phantom"]["n"] == 1
    assert out["classes"]["Phantom"]["dice_mean"] == 0.0  # tumour there, none found

    result = runner.invoke(
        app,
        [
            "evaluate",
            "--slides",
            str(slides),
            "--model",
            str(all_tumour_model),
            "--device",
            "cpu",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    got = json.loads(result.stdout)["classes"]["Phantom"]["dice_mean"]
    # Calling all tissue tumour: Dice = 2|tissue & tumour| / (|tissue| + |tumour|), from the
    # phantom's analytic ground truth at the card's 1.0 µm/px. Misaligned or transposed
    # grids would give a different value.
    tissue = phantom.tissue_mask(1.0).array
    tumour = phantom.tumour_mask(1.0).array
    expected = dice(tissue, tumour & tissue)
    assert got == pytest.approx(expected, abs=0.05)
    assert 0.05 < expected < 0.95
    assert not np.isnan(got)


def test_tumour_free_slide_reports_false_tumour_area_of_tissue(
    tmp_path: Path, all_tumour_model: Path, no_tumour_model: Path
) -> None:
    from .conftest import write_phantom_with_reference

    write_phantom_with_reference(tmp_path, seed=11, tumours=0)
    slides = write_slide_list(
        tmp_path / "slides.csv",
        [{"slide": "slide", "seg": "reference", "cls": "Normal", "case": "n", "split": "test"}],
    )
    for model, dice_expected, area_expected in (
        (no_tumour_model, 1.0, 0.0),
        (all_tumour_model, 0.0, 1.0),  # every tissue pixel called tumour
    ):
        result = runner.invoke(
            app,
            [
                "evaluate",
                "--slides",
                str(slides),
                "--model",
                str(model),
                "--device",
                "cpu",
                "--json",
            ],
        )
        assert result.exit_code == 0, result.output
        normal = json.loads(result.stdout)["classes"]["Normal"]
        assert normal["n_tumour_free"] == 1
        assert normal["dice_mean"] == dice_expected
        assert normal["false_tumour_area_mean"] == pytest.approx(area_expected)
