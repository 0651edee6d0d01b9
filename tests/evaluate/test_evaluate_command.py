"""`unitumour evaluate` end to end: real files, real checkpoints whose output is known, so
the JSON it prints can be checked against Dice values computed by hand."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from unitumour_dicom.cli import app
from unitumour_dicom.model import card_path_for, load_model

from .conftest import block, write_manifest

pytestmark = pytest.mark.unittest
runner = CliRunner()

ROWS = [
    # name, mask, cls, case, split
    {
        "name": "a1",
        "mask": block((16, 16), slice(0, 8), slice(None)),
        "cls": "Adenocarcinoma",
        "case": "c1",
        "split": "test",
    },  # 128 of 256 px tumour
    {
        "name": "a2",
        "mask": block((20, 24), slice(None), slice(0, 6)),
        "cls": "Adenocarcinoma",
        "case": "c2",
        "split": "test",
    },  # 120 of 480 px
    {
        "name": "n1",
        "mask": np.zeros((16, 16), bool),
        "cls": "Normal",
        "case": "c3",
        "split": "test",
    },
    {"name": "p1", "mask": np.zeros((16, 16), bool), "cls": "Polyp", "case": "c4", "split": "val"},
]


def evaluate_json(*args: str) -> dict:
    result = runner.invoke(app, ["evaluate", *args, "--json", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_all_tumour_model_gives_the_hand_computed_dice(
    tmp_path: Path, all_tumour_model: Path
) -> None:
    manifest = write_manifest(tmp_path / "data", ROWS)
    out = evaluate_json(
        "--manifest", str(manifest), "--split", "test", "--model", str(all_tumour_model)
    )
    a1, a2 = 2 * 128 / (128 + 256), 2 * 120 / (120 + 480)
    adeno = out["classes"]["Adenocarcinoma"]
    assert adeno["n"] == 2
    assert adeno["dice_mean"] == pytest.approx((a1 + a2) / 2, abs=1e-6)
    lo, hi = adeno["dice_ci95"]
    assert lo == pytest.approx(a2, abs=1e-6) and hi == pytest.approx(a1, abs=1e-6)
    normal = out["classes"]["Normal"]
    assert normal["n"] == 1 and normal["dice_mean"] == 0.0
    assert normal["false_tumour_area_mean"] == 1.0
    assert "Polyp" not in out["classes"]  # other split
    assert out["overall"]["n"] == 3
    assert out["overall"]["dice_mean"] == pytest.approx((a1 + a2 + 0) / 3, abs=1e-6)
    assert (
        out["model"]["weights_sha256"]
        == load_model(all_tumour_model, device="cpu").card.weights_sha256
    )


def test_no_tumour_model_and_empty_references(tmp_path: Path, no_tumour_model: Path) -> None:
    manifest = write_manifest(tmp_path / "data", ROWS)
    out = evaluate_json("--manifest", str(manifest), "--model", str(no_tumour_model))
    assert out["classes"]["Adenocarcinoma"]["dice_mean"] == 0.0
    for cls in ("Normal", "Polyp"):  # both empty: Dice 1, no false area
        assert out["classes"][cls]["dice_mean"] == 1.0
        assert out["classes"][cls]["false_tumour_area_mean"] == 0.0
    assert out["overall"]["n"] == 4
    assert out["overall"]["dice_mean"] == pytest.approx(0.5)


def test_mpp_column_resamples_images_to_the_models_pixel_size(
    tmp_path: Path, all_tumour_model: Path
) -> None:
    stripes = np.zeros((16, 16), bool)
    stripes[:, ::2] = True  # every other column: at half the resolution, every pixel is half tumour
    rows = [
        {"name": "fine", "mask": stripes, "cls": "A", "case": "c1", "split": "test", "mpp": "0.5"},
        {"name": "native", "mask": stripes, "cls": "B", "case": "c2", "split": "test", "mpp": ""},
    ]
    manifest = write_manifest(tmp_path / "data", rows, extra_columns=("mpp",))
    out = evaluate_json("--manifest", str(manifest), "--model", str(all_tumour_model))
    # 0.5 µm/px resampled to the card's 1.0: area fraction 0.5 per pixel -> all tumour -> 1.0
    assert out["classes"]["A"]["dice_mean"] == pytest.approx(1.0)
    # at its own size: 128 of 256 px
    assert out["classes"]["B"]["dice_mean"] == pytest.approx(2 * 128 / (128 + 256))


def test_table_output_and_per_item_csv(tmp_path: Path, all_tumour_model: Path) -> None:
    manifest = write_manifest(tmp_path / "data", ROWS)
    per_item = tmp_path / "items.csv"
    result = runner.invoke(
        app,
        [
            "evaluate",
            "--manifest",
            str(manifest),
            "--model",
            str(all_tumour_model),
            "--device",
            "cpu",
            "--per-item",
            str(per_item),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "Adenocarcinoma" in result.stdout and "95% CI" in result.stdout
    lines = per_item.read_text().splitlines()
    assert lines[0].startswith("key,cls,case,dice") and len(lines) == 1 + len(ROWS)


def test_write_card_records_the_split_and_keeps_the_digest(
    tmp_path: Path, all_tumour_model: Path
) -> None:
    manifest = write_manifest(tmp_path / "data", ROWS)
    before = load_model(all_tumour_model, device="cpu").card
    evaluate_json(
        "--manifest",
        str(manifest),
        "--split",
        "test",
        "--model",
        str(all_tumour_model),
        "--write-card",
    )
    after = load_model(all_tumour_model, device="cpu").card  # sha256 still verifies
    assert after.weights_sha256 == before.weights_sha256
    assert after.metrics["test"]["classes"]["Adenocarcinoma"]["n"] == 2
    assert (
        json.loads(card_path_for(all_tumour_model).read_text())["metrics"]["test"]["split"]
        == "test"
    )


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda p: p.write_text("image,mask,cls\nx.jpg,x.png,A\n"), "lacks column"),
        (
            lambda p: p.write_text(p.read_text().replace("images/a1.jpg", "images/zz.jpg")),
            "does not exist",
        ),
        (lambda p: p.write_text(p.read_text().replace("images/a1.jpg", "/etc/passwd")), "relative"),
        (
            lambda p: (p.parent / "images" / "a1.jpg").write_bytes(b"\xff\xd8 truncated"),
            "cannot decode",
        ),
    ],
)
def test_bad_manifests_fail_with_a_clear_message(
    tmp_path: Path,
    all_tumour_model: Path,
    edit,
    message: str,  # type: ignore[no-untyped-def]
) -> None:
    manifest = write_manifest(tmp_path / "data", ROWS)
    edit(manifest)
    result = runner.invoke(
        app,
        [
            "evaluate",
            "--manifest",
            str(manifest),
            "--model",
            str(all_tumour_model),
            "--device",
            "cpu",
            "--json",
        ],
    )
    assert result.exit_code == 2
    assert message in result.output


def test_unknown_split_and_tampered_model_are_refused(
    tmp_path: Path, all_tumour_model: Path
) -> None:
    manifest = write_manifest(tmp_path / "data", ROWS)
    result = runner.invoke(
        app,
        [
            "evaluate",
            "--manifest",
            str(manifest),
            "--split",
            "nope",
            "--model",
            str(all_tumour_model),
            "--device",
            "cpu",
        ],
    )
    assert result.exit_code == 2 and "splits present" in result.output
    blob = bytearray(all_tumour_model.read_bytes())
    blob[-1] ^= 1
    all_tumour_model.write_bytes(bytes(blob))
    result = runner.invoke(
        app,
        [
            "evaluate",
            "--manifest",
            str(manifest),
            "--model",
            str(all_tumour_model),
            "--device",
            "cpu",
        ],
    )
    assert result.exit_code == 2 and "sha256" in result.output


def test_progress_bar_goes_to_stderr_and_json_stays_on_stdout(
    tmp_path: Path, all_tumour_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("UNITUMOUR_PROGRESS", "1")  # forced on: CliRunner's stderr is no tty
    manifest = write_manifest(tmp_path / "data", ROWS)
    args = ["--manifest", str(manifest), "--model", str(all_tumour_model)]
    result = runner.invoke(app, ["evaluate", *args, "--json", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["unit"] == "image"  # stdout: the JSON, nothing else
    assert "images" in result.stderr and "4/4" in result.stderr
