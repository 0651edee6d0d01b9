"""What the SR, ANN and key-image tests share: a phantom slide, a real InferenceResult on it
(the phantom's ground truth as the model's masks), its SEG pyramid, a model identity from a
real model card, and dciodvfy with a per-IOD list of the errors its 2022 tables raise
against what the current standard allows."""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pydicom
import pytest

from unitumour_dicom.config import load_settings
from unitumour_dicom.findings import ModelIdentity
from unitumour_dicom.infer.result import InferenceResult
from unitumour_dicom.model.card import ModelCard
from unitumour_dicom.seg import SegPyramid, write_seg_pyramid
from unitumour_dicom.store import FileStore

WHEN = datetime(2026, 5, 6, 7, 8, 9, tzinfo=UTC)
UID_SEED = "0b5c6a52-2f7e-4c61-9d0f-6a1e1f4f7c11"
MODEL_MPP = 1.0


def model_card(*, not_for_clinical_use: bool = True) -> ModelCard:
    return ModelCard.from_dict(
        {
            "name": "UniTumour-UNet",
            "version": "1.2.0",
            "architecture": "unet",
            "architecture_args": {"channels": 16},
            "mpp": MODEL_MPP,
            "tile_size": 256,
            "overlap": 32,
            "normalisation": {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]},
            "threshold": 0.5,
            "min_tumour_area_um2": 0.0,
            "fill_holes_max_area_um2": 0.0,
            "training_data": {"phantom": "synthetic"},
            "metrics": {},
            "intended_use": "Tests of the result writers.",
            "not_for_clinical_use": not_for_clinical_use,
            "weights_sha256": "ab" * 32,
        }
    )


@dataclass(frozen=True)
class PhantomCase:
    """One slide with everything a result writer takes."""

    phantom: object  # PhantomSlide
    headers: list[pydicom.Dataset]
    result: InferenceResult
    seg: SegPyramid
    store: FileStore
    identity: ModelIdentity
    seg_settings: object  # SegSettings


def make_case(root: Path, *, not_for_clinical_use: bool = True) -> PhantomCase:
    from unitumour_dicom.synthetic import PhantomSpec, write_phantom_slide

    spec = PhantomSpec(width=2048, height=1536, tile_size=256, levels=3, mpp=0.5, seed=11)
    phantom = write_phantom_slide(root / "phantom", spec)
    headers = [pydicom.dcmread(p, stop_before_pixels=True) for p in phantom.instance_paths]
    tumour = phantom.tumour_mask(MODEL_MPP)
    tissue = phantom.tissue_mask(MODEL_MPP)
    assert tumour.array.any(), "the phantom has tumour"
    result = InferenceResult(
        tumour=tumour,
        probability=tumour,
        tissue=tissue,
        tumour_area_mm2=tumour.area_mm2(),
        tissue_area_mm2=tissue.area_mm2(),
        timings={},
        tiles=0,
        device="none (ground truth)",
    )
    settings = load_settings(data_dir=root / "data").seg
    store = FileStore(root / "store")
    card = model_card(not_for_clinical_use=not_for_clinical_use)
    identity = ModelIdentity.from_card(card)
    seg = write_seg_pyramid(
        source_datasets=headers,
        mask=tumour,
        probability=None,
        algorithm=identity.algorithm_info(),
        settings=settings,
        uid_seed=UID_SEED,
        store=store,
        content_datetime=WHEN,
    )
    return PhantomCase(phantom, headers, result, seg, store, identity, settings)


def dciodvfy_errors(path: Path, allowed: dict[str, str]) -> list[str]:
    """Error lines dciodvfy prints for ``path`` that are not in ``allowed`` (message: the
    reference that allows it)."""
    if shutil.which("dciodvfy") is None:
        pytest.fail("dciodvfy (Debian package dicom3tools) is not installed")
    proc = subprocess.run(
        ["dciodvfy", str(path)], capture_output=True, text=True, timeout=120, check=False
    )
    lines = (proc.stdout + proc.stderr).splitlines()
    errors = [re.sub(r"\s+", " ", line).strip() for line in lines if line.startswith("Error")]
    return [e for e in errors if e not in allowed]


def dciodvfy_output(path: Path) -> str:
    proc = subprocess.run(
        ["dciodvfy", str(path)], capture_output=True, text=True, timeout=120, check=False
    )
    return proc.stdout + proc.stderr
