"""Manifest reading and the loss."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tests.evaluate.conftest import block, write_manifest
from unitumour_dicom.train import DiceBCELoss, ManifestError, load_pair, read_manifest

pytestmark = pytest.mark.unittest


def _rows() -> list[dict]:
    return [
        {
            "name": "a",
            "mask": block((10, 12), slice(0, 5), slice(None)),
            "cls": "T",
            "case": "1",
            "split": "train",
            "mpp": "0.45",
        },
        {
            "name": "b",
            "mask": np.zeros((10, 12), bool),
            "cls": "N",
            "case": "2",
            "split": "val",
            "mpp": "",
        },
    ]


def test_read_manifest_filters_splits_and_keeps_mpp(tmp_path: Path) -> None:
    path = write_manifest(tmp_path, _rows(), extra_columns=("mpp",))
    records = read_manifest(path)
    assert [r.split for r in records] == ["train", "val"]
    assert records[0].mpp == 0.45 and records[1].mpp is None
    assert records[0].image == tmp_path / "images" / "a.jpg"
    assert [r.cls for r in read_manifest(path, splits=["val"])] == ["N"]


def test_load_pair_resamples_to_the_target_pixel_size(tmp_path: Path) -> None:
    path = write_manifest(tmp_path, _rows(), extra_columns=("mpp",))
    rec = read_manifest(path)[0]
    image, mask = load_pair(rec)
    assert image.shape == (10, 12, 3) and mask.sum() == 60
    image, mask = load_pair(rec, target_mpp=0.9)
    assert image.shape == (5, 6, 3) and mask.shape == (5, 6)
    assert mask[:2].all() and not mask[3:].any()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("image,mask,cls,case\n", "lacks column"),
        ("image,mask,cls,case,split,mpp\nimages/a.jpg,masks/a.png,T,1,train,-1\n", "mpp"),
        ("image,mask,cls,case,split\nimages/a.jpg,masks/zz.png,T,1,train\n", "does not exist"),
        ("image,mask,cls,case,split\n/abs/a.jpg,masks/a.png,T,1,train\n", "relative"),
    ],
)
def test_bad_manifests(tmp_path: Path, text: str, message: str) -> None:
    write_manifest(tmp_path, _rows(), extra_columns=("mpp",))
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(ManifestError, match=message):
        read_manifest(path)


def test_mask_and_image_of_different_sizes_are_refused(tmp_path: Path) -> None:
    import cv2

    path = write_manifest(tmp_path, _rows())
    cv2.imwrite(str(tmp_path / "masks" / "a.png"), np.zeros((3, 3), np.uint8))
    with pytest.raises(ManifestError, match="mask"):
        load_pair(read_manifest(path)[0])


def test_dice_bce_loss() -> None:
    loss = DiceBCELoss()
    target = torch.zeros(2, 1, 8, 8)
    target[0, :, :4] = 1
    perfect = (target * 2 - 1) * 20
    wrong = -perfect
    assert loss(perfect, target).item() < 0.01
    assert loss(wrong, target).item() > 1.5
    empty = torch.zeros(2, 1, 8, 8)
    value = loss(torch.full((2, 1, 8, 8), -20.0), empty)
    assert torch.isfinite(value) and value.item() < 0.01  # all-empty batch: no division by zero


def test_per_image_dice_weighs_a_small_tumour_like_a_large_one() -> None:
    """Missing a small tumour entirely costs a whole image's Dice in "image" mode (as in the
    metric), but next to nothing when the batch is pooled."""
    target = torch.zeros(2, 1, 16, 16)
    target[0, :, :, :14] = 1  # large tumour (224 px), predicted perfectly
    target[1, :, :4, :4] = 1  # small tumour (16 px), missed
    logits = (target * 2 - 1) * 20
    logits[1] = -20.0
    batch = DiceBCELoss(bce_weight=0.0, mode="batch")(logits, target).item()
    image = DiceBCELoss(bce_weight=0.0, mode="image")(logits, target).item()
    assert batch < 0.05
    assert image == pytest.approx(0.5 * (1 - 1 / 17), abs=0.01)  # smooth 1 over 16 px


def test_per_image_dice_skips_tumour_free_images() -> None:
    loss = DiceBCELoss(mode="image")
    target = torch.zeros(2, 1, 8, 8)
    target[0, :, :4] = 1
    logits = (target * 2 - 1) * 20
    # A false positive on the tumour-free image costs cross-entropy, not Dice.
    noisy = logits.clone()
    noisy[1, :, 0, 0] = 20.0
    assert loss(logits, target).item() < 0.01
    assert 0.01 < loss(noisy, target).item() < 0.5
    empty = torch.zeros(2, 1, 8, 8)
    value = loss(torch.full((2, 1, 8, 8), -20.0), empty)
    assert torch.isfinite(value) and value.item() < 0.01


def test_dice_mode_is_checked() -> None:
    with pytest.raises(ValueError, match="Dice mode"):
        DiceBCELoss(mode="pixel")  # type: ignore[arg-type]
