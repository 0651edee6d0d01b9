"""Fixtures of the evaluation tests: models whose output is known in advance, and small
image/mask manifests written as real JPEG/PNG files."""

from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from tests.model.checkpoints import card_fields
from unitumour_dicom.model import TumourUNet, save_checkpoint


def write_constant_checkpoint(folder: Path, logit: float, **overrides: object) -> Path:
    """A real checkpoint whose network outputs ``logit`` everywhere (head weights zero):
    positive calls every pixel tumour, negative none, so Dice can be computed by hand."""
    fields = card_fields(name="constant", **overrides)
    net = TumourUNet(**fields["architecture_args"])
    with torch.no_grad():
        net.head.weight.zero_()
        net.head.bias.fill_(logit)
    path = Path(folder) / f"constant{'+' if logit > 0 else '-'}.safetensors"
    save_checkpoint(net, path, fields)
    return path


@pytest.fixture
def all_tumour_model(tmp_path: Path) -> Path:
    return write_constant_checkpoint(tmp_path / "all", 10.0)


@pytest.fixture
def no_tumour_model(tmp_path: Path) -> Path:
    return write_constant_checkpoint(tmp_path / "none", -10.0)


def write_manifest(root: Path, rows: list[dict], *, extra_columns: tuple[str, ...] = ()) -> Path:
    """Each row: name, mask (bool array), cls, case, split[, mpp]; images are noise JPEGs."""
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    out = []
    for row in rows:
        mask = np.asarray(row["mask"], dtype=bool)
        image = rng.integers(0, 256, (*mask.shape, 3), dtype=np.uint8)
        cv2.imwrite(str(root / "images" / f"{row['name']}.jpg"), image)
        cv2.imwrite(str(root / "masks" / f"{row['name']}.png"), mask.astype(np.uint8) * 255)
        entry = {
            "image": f"images/{row['name']}.jpg",
            "mask": f"masks/{row['name']}.png",
            "cls": row["cls"],
            "case": row["case"],
            "split": row["split"],
        }
        for c in extra_columns:
            entry[c] = row.get(c, "")
        out.append(entry)
    path = root / "manifest.csv"
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(out[0]))
        writer.writeheader()
        writer.writerows(out)
    return path


def block(shape: tuple[int, int], rows: slice, cols: slice) -> np.ndarray:
    m = np.zeros(shape, bool)
    m[rows, cols] = True
    return m
