"""Training tiles from DICOM slides with reference SEGs, and `unitumour train --slides`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from tests.evaluate.conftest import write_phantom_with_reference, write_slide_list
from unitumour_dicom.cli import app
from unitumour_dicom.evaluate.slides import read_slide_manifest
from unitumour_dicom.model import load_model
from unitumour_dicom.train.slides import sample_slide_tiles

from .conftest import TINY_ARGS

pytestmark = [pytest.mark.integration, pytest.mark.slow]
runner = CliRunner()


@pytest.fixture(scope="module")
def slide_list(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("train-slides")
    write_phantom_with_reference(root)
    # One phantom serves as both splits here: this tests the plumbing, not generalisation.
    return write_slide_list(
        root / "slides.csv",
        [
            {"slide": "slide", "seg": "reference", "cls": "Phantom", "case": "p", "split": s}
            for s in ("train", "val")
        ],
    )


def test_tiles_match_the_ground_truth_and_half_are_on_tumour(slide_list: Path) -> None:
    from unitumour_dicom.synthetic import load_phantom

    record = read_slide_manifest(slide_list, splits=["train"])[0]
    images, masks = sample_slide_tiles(record, mpp=1.0, crop_size=64, tiles=12, seed=0)
    assert len(images) == len(masks) == 12
    assert all(i.shape == (64, 64, 3) and i.dtype == np.uint8 for i in images)
    centred_on_tumour = [bool(m[32, 32]) for m in masks]
    assert sum(centred_on_tumour) >= 5  # about half, where tumour is large enough
    # Tumour pixels are darker than the rest of the tissue in the same tiles (the phantom's
    # tumour is denser in nuclei): pixels and labels come from the same place.
    grey = np.concatenate([i.mean(-1)[m] for i, m in zip(images, masks, strict=True)])
    rest = np.concatenate([i.mean(-1)[~m] for i, m in zip(images, masks, strict=True)])
    assert grey.mean() < rest.mean() - 10
    again = sample_slide_tiles(record, mpp=1.0, crop_size=64, tiles=12, seed=0)
    assert all(np.array_equal(a, b) for a, b in zip(images, again[0], strict=True))
    phantom = load_phantom(record.slide)
    truth = phantom.tumour_mask(1.0).array
    assert 0 < truth.mean() < 0.5


def test_train_from_slides_writes_a_checkpoint(slide_list: Path, tmp_path: Path) -> None:
    out = tmp_path / "slides.safetensors"
    result = runner.invoke(
        app,
        [
            "train",
            "--slides",
            str(slide_list),
            "--out",
            str(out),
            "--device",
            "cpu",
            "--widths",
            TINY_ARGS,
            "--epochs",
            "1",
            "--batch-size",
            "4",
            "--crop-size",
            "48",
            "--tile-size",
            "64",
            "--overlap",
            "8",
            "--mpp",
            "1.0",
            "--tiles-per-slide",
            "8",
            "--threads",
            "1",
            "--test-split",
            "",
        ],
    )
    assert result.exit_code == 0, result.output
    card = load_model(out, device="cpu").card
    assert card.mpp == 1.0
    assert card.training_data["slides"] == "slides.csv"
    assert card.training_data["counts"]["train"]["images"] == 8
