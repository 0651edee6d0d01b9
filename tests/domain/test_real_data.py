"""The shipped demo card's domain reference on real images: EBHI-Seg test images (never used
to fit it) are in domain, their grayscale and IHC-brown copies are not; ``evaluate`` reports
it per item with the AUROC against the training cohort; and the inference-style feed (NCHW
tiles and raw bottleneck maps) scores exactly as the evaluation path does."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import SHARED_DATA
from unitumour_dicom.domain.accumulator import DomainAccumulator
from unitumour_dicom.domain.features import BottleneckHook
from unitumour_dicom.domain.fit import load_images, score_images
from unitumour_dicom.domain.shifts import apply_shift
from unitumour_dicom.evaluate.images import evaluate_pairs
from unitumour_dicom.evaluate.manifest import PairRecord, read_manifest
from unitumour_dicom.evaluate.report import domain_summary
from unitumour_dicom.model import load_model
from unitumour_dicom.model.checkpoint import card_path_for

EBHI = SHARED_DATA / "ebhi-seg" / "manifest.csv"
N_IMAGES = 4


@pytest.fixture(scope="module")
def demo():  # type: ignore[no-untyped-def]
    if not EBHI.is_file():
        pytest.fail(f"EBHI-Seg data missing: expected {EBHI}")
    torch.set_num_threads(min(2, torch.get_num_threads()))
    model = load_model("demo", device="cpu")
    assert model.card.domain() is not None, "the demo card lost its domain reference"
    records = read_manifest(EBHI, splits=["test"])[:: 195 // N_IMAGES][:N_IMAGES]
    return model, records, load_images([r.image for r in records])


def test_demo_card_reference_is_small_and_says_how_it_was_fitted(demo) -> None:  # type: ignore[no-untyped-def]
    model, _, _ = demo
    ref = model.card.domain()
    assert set(ref.groups) == {"stain", "quality", "network"}
    assert ref.info["train"]["split"] == "train" and ref.info["val"]["split"] == "val"
    assert card_path_for(model.weights_path).stat().st_size < 200_000


def test_ebhi_test_images_in_domain_grey_and_brown_copies_out(demo) -> None:  # type: ignore[no-untyped-def]
    model, _, images = demo
    ref = model.card.domain()
    clean = score_images(model, ref, images)
    assert all(r.verdict in ("in_domain", "borderline") for r in clean)
    assert sum(r.verdict == "in_domain" for r in clean) >= N_IMAGES - 1
    for shift in ("grayscale", "ihc_brown"):
        shifted = score_images(
            model, ref, [apply_shift(shift, im, i) for i, im in enumerate(images)]
        )
        assert all(r.verdict in ("borderline", "out_of_domain") for r in shifted), shift
        assert min(s.score for s in shifted) > max(c.score for c in clean), shift


def test_inference_feed_scores_as_evaluation_does(demo) -> None:  # type: ignore[no-untyped-def]
    model, _, images = demo
    ref = model.card.domain()
    expected = score_images(model, ref, images[:2])
    acc = [DomainAccumulator(ref) for _ in range(2)]
    batch = np.stack(images[:2])
    with torch.inference_mode(), BottleneckHook(model.module, ref.layer) as hook:
        model.module(model.preprocess(batch))
        maps = hook.maps
        nchw = torch.from_numpy(batch).permute(0, 3, 1, 2)  # as a loader might hold them
        for i in range(2):
            acc[i].update(nchw[i : i + 1], np.ones((1, 224, 224), bool), maps[i : i + 1])
    got = [a.finish() for a in acc]
    for g, e in zip(got, expected, strict=True):
        assert g.score == pytest.approx(e.score, rel=1e-5)
        assert g.verdict == e.verdict


def test_evaluate_reports_domain_per_item_and_auroc(demo, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import cv2

    model, records, images = demo
    grey_records = []
    for i, (rec, img) in enumerate(zip(records, images, strict=True)):
        path = tmp_path / f"grey{i}.png"
        cv2.imwrite(str(path), apply_shift("grayscale", img, i)[..., ::-1])
        grey_records.append(PairRecord(path, rec.mask, "Grey", f"g{i}", "test"))
    items, _ = evaluate_pairs([*records, *grey_records], model, n_resamples=100)
    assert all(it.domain_score is not None for it in items)
    summary = domain_summary(items, ["Adenocarcinoma", "Normal", "Polyp"])
    assert summary is not None
    grey = summary["classes"]["Grey"]
    assert grey["auroc_vs_baseline"] == 1.0 and grey["flagged_fraction"] == 1.0
