"""``unitumour model fit-domain`` on a copy of the demo checkpoint and a small manifest: the
card gains a reference fitted on train and thresholded on val; nothing else in it changes."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.conftest import SHARED_DATA
from unitumour_dicom.cli.app import app
from unitumour_dicom.evaluate.manifest import read_manifest
from unitumour_dicom.model.card import ModelCard
from unitumour_dicom.model.checkpoint import packaged_weights_dir

EBHI = SHARED_DATA / "ebhi-seg"


def _small_manifest(root: Path) -> Path:
    rows = []
    for split, n in (("train", 12), ("val", 8)):
        recs = read_manifest(EBHI / "manifest.csv", splits=[split])
        for rec in recs[:: len(recs) // n][:n]:
            for col in ("image", "mask"):
                src = getattr(rec, col)
                dst = root / col / src.name
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(src, dst)
            rows.append(
                {
                    "image": f"image/{rec.image.name}",
                    "mask": f"mask/{rec.mask.name}",
                    "cls": rec.cls,
                    "case": rec.case,
                    "split": split,
                }
            )
    path = root / "manifest.csv"
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def test_fit_domain_writes_the_reference_and_only_it(tmp_path: Path) -> None:
    if not (EBHI / "manifest.csv").is_file():
        pytest.fail(f"EBHI-Seg data missing: expected {EBHI}")
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    for name in ("demo.safetensors", "demo.card.json"):
        shutil.copyfile(packaged_weights_dir() / name, model_dir / name)
    card_file = model_dir / "demo.card.json"
    before = ModelCard.from_dict(
        {k: v for k, v in json.loads(card_file.read_text()).items() if k != "domain_reference"}
    )
    card_file.write_text(before.to_json())  # start from a card without a reference
    manifest = _small_manifest(tmp_path / "data")
    result = CliRunner().invoke(
        app,
        [
            "model",
            "fit-domain",
            "--card",
            str(card_file),
            "--manifest",
            str(manifest),
            "--device",
            "cpu",
            "--components",
            "8",
        ],
    )
    assert result.exit_code == 0, result.output
    after = ModelCard.read(card_file)
    ref = after.domain()
    assert ref is not None
    assert ref.info["train"]["images"] == 12 and ref.info["val"]["images"] == 8
    assert 0 < ref.borderline <= ref.out_of_domain
    assert ref.groups["network"].components.shape == (320, 8)
    unchanged = {k: v for k, v in after.to_dict().items() if k != "domain_reference"}
    assert unchanged == before.to_dict()  # weights digest, metrics and the rest untouched
