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


def write_phantom_with_reference(root: Path, *, seed: int = 7, tumours: int = 3):  # type: ignore[no-untyped-def]
    """A small phantom WSI and its ground truth written as a reference DICOM SEG pyramid (by
    the project's own SEG writer), plus a slide list CSV naming them."""
    import pydicom

    from unitumour_dicom.config import load_settings
    from unitumour_dicom.seg import AlgorithmInfo, write_seg_pyramid
    from unitumour_dicom.store import FileStore
    from unitumour_dicom.synthetic import PhantomSpec, write_phantom_slide

    spec = PhantomSpec(
        width=1024,
        height=768,
        tile_size=256,
        levels=3,
        mpp=0.5,
        seed=seed,
        n_tumours=tumours,
        layout="blobs" if tumours else "none",
        label=False,
        overview=False,
    )
    phantom = write_phantom_slide(root / "slide", spec)
    store = FileStore(root / "store")
    pyramid = write_seg_pyramid(
        source_datasets=[
            pydicom.dcmread(p, stop_before_pixels=True) for p in phantom.instance_paths
        ],
        mask=phantom.tumour_mask(phantom.mpp),
        probability=None,
        algorithm=AlgorithmInfo(name="ground-truth", version="1"),
        settings=load_settings(data_dir=root / "data").seg,
        uid_seed=f"reference-{seed}",
        store=store,
    )
    seg_dir = root / "reference"
    seg_dir.mkdir()
    for info in pyramid.instances:
        src = store.abspath(info.path)
        (seg_dir / src.name).write_bytes(src.read_bytes())
    return phantom, seg_dir


def write_slide_list(path: Path, rows: list[dict]) -> Path:
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["slide", "seg", "cls", "case", "split"])
        writer.writeheader()
        writer.writerows(rows)
    return path


@pytest.fixture(scope="session")
def phantom_pair(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    root = tmp_path_factory.mktemp("phantom-ref")
    phantom, seg_dir = write_phantom_with_reference(root)
    return root, phantom, seg_dir
