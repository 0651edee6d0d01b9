"""The shipped demo weights: they load (digest verified), their card says what they are, and
they still segment EBHI-Seg validation images as well as the card claims."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.conftest import SHARED_DATA
from unitumour_dicom.evaluate import evaluate_pairs
from unitumour_dicom.evaluate.manifest import read_manifest
from unitumour_dicom.model import load_model, packaged_model_names, packaged_weights_dir

EBHI = SHARED_DATA / "ebhi-seg" / "manifest.csv"


def _ebhi() -> Path:
    if not EBHI.is_file():
        pytest.fail(f"EBHI-Seg data missing: expected {EBHI} (../shared/data beside the repo)")
    return EBHI


@pytest.mark.unittest
def test_demo_weights_load_and_their_card_is_complete() -> None:
    assert "demo" in packaged_model_names()
    weights = packaged_weights_dir() / "demo.safetensors"
    assert weights.stat().st_size < 5 * 1024 * 1024  # a few MB, shipped in the wheel
    model = load_model(device=torch.device("cpu"))
    card = model.card
    assert card.name == "unitumour-demo" and card.not_for_clinical_use
    assert "NOT a clinical model" in card.intended_use
    assert card.mpp == 0.9 and "0.8-1.0" in card.training_data["pixel_size_assumption"]
    assert "reported once on 'test'" in card.training_data["split"]
    test = card.metrics["test"]["classes"]
    assert test["Adenocarcinoma"]["n"] == 90
    assert len(test["Adenocarcinoma"]["dice_ci95"]) == 2
    for cls in ("Normal", "Polyp"):
        assert test[cls]["false_tumour_area_mean"] is not None
    assert card.training["reproduce"]["cpu"].startswith("unitumour train --manifest")
    assert card.training["device"].startswith("cuda")


@pytest.mark.slow
def test_demo_weights_segment_validation_images() -> None:
    records = read_manifest(_ebhi(), splits=["val"])
    # A fixed, class-stratified subset keeps this under a few seconds on CPU.
    subset = [r for r in records if r.cls == "Adenocarcinoma"][:24]
    subset += [r for r in records if r.cls == "Polyp"][:12]
    model = load_model(device=torch.device("cpu"))
    _, summary = evaluate_pairs(subset, model, batch_size=12, n_resamples=200)
    assert summary["classes"]["Adenocarcinoma"]["dice_mean"] > 0.8
    assert summary["classes"]["Polyp"]["false_tumour_area_mean"] < 0.05


@pytest.mark.unittest
def test_ebhi_split_is_by_case() -> None:
    records = read_manifest(_ebhi(), check_files=False)
    by_split: dict[str, set[str]] = {}
    for r in records:
        by_split.setdefault(r.split, set()).add(r.case)
    assert {k: sum(r.split == k for r in records) for k in by_split} == {
        "train": 919,
        "val": 231,
        "test": 195,
    }
    assert not by_split["train"] & by_split["val"]
    assert not by_split["train"] & by_split["test"]
    assert not by_split["val"] & by_split["test"]
