"""Training end to end on a tiny data set: checkpoint and card, reproducibility, the CLI,
and DistributedDataParallel through torchrun."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from unitumour_dicom.cli import app
from unitumour_dicom.model import load_model

from .conftest import TINY_ARGS

pytestmark = [pytest.mark.slow]
runner = CliRunner()


def _args(manifest: Path, out: Path, *extra: str) -> list[str]:
    return [
        "train",
        "--manifest",
        str(manifest),
        "--out",
        str(out),
        "--device",
        "cpu",
        "--widths",
        TINY_ARGS,
        "--epochs",
        "3",
        "--batch-size",
        "4",
        "--crop-size",
        "48",
        "--tile-size",
        "64",
        "--overlap",
        "8",
        "--threads",
        "1",
        "--workers",
        "0",
        "--name",
        "tiny",
        "--version",
        "0.1",
        *extra,
    ]


def test_train_writes_a_verified_checkpoint_with_a_complete_card(
    tiny_manifest: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "tiny.safetensors"
    log = tmp_path / "epochs.jsonl"
    args = _args(tiny_manifest, out, "--log-file", str(log))
    # The card records how the process was started, as a console-script user starts it.
    monkeypatch.setattr(sys, "argv", ["/opt/venv/bin/unitumour", *args])
    monkeypatch.setenv("UNITUMOUR_PROGRESS", "1")  # bars forced on: CliRunner's stderr is no tty
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)  # bars or not, stdout is the JSON alone
    assert "epochs" in result.stderr and "3/3" in result.stderr and "steps" in result.stderr
    model = load_model(out, device="cpu")  # digest verified
    card = model.card
    assert printed["weights_sha256"] == card.weights_sha256
    assert card.name == "tiny" and card.version == "0.1"
    assert card.mpp == 0.9 and card.tile_size == 64 and card.overlap == 8
    assert list(card.architecture_args["widths"]) == [8, 16, 24]
    assert 0 < card.threshold < 1 and card.not_for_clinical_use
    assert len(card.normalisation["mean"]) == 3
    assert card.training["epochs_run"] == 3 and len(card.training["history"]) == 3
    assert 1 <= card.training["best_epoch"] <= 3
    assert card.training["command"] == " ".join(["unitumour", *map(shlex.quote, args)])
    assert card.training_data["counts"]["train"]["images"] == 24
    assert set(card.metrics) >= {"val", "test", "protocol"}
    test = card.metrics["test"]["overall"]
    assert test["n"] == 8 and test["dice_ci95"][0] <= test["dice_mean"] <= test["dice_ci95"][1]
    assert len(log.read_text().splitlines()) == 3
    # The task is easy (dark disc on pink): even three epochs find it.
    assert card.metrics["val"]["classes"]["Tumour"]["dice_mean"] > 0.5


def test_same_seed_same_weights_other_seed_other_weights(
    tiny_manifest: Path, tmp_path: Path
) -> None:
    digests, recipes = [], []
    runs = (("a", "0"), ("b", "0"), ("c", "1"), ("d", "0", "--dice-mode", "image"))
    for name, seed, *extra in runs:
        out = tmp_path / f"{name}.safetensors"
        result = runner.invoke(
            app,
            _args(tiny_manifest, out, "--seed", seed, "--epochs", "1", "--test-split", "", *extra),
        )
        assert result.exit_code == 0, result.output
        card = load_model(out, device="cpu").card
        digests.append(card.weights_sha256)
        recipes.append(card.training["recipe"])
    assert digests[0] == digests[1]
    assert digests[0] != digests[2]
    # The loss's pooling changes the weights and is recorded, so the run can be repeated.
    assert digests[0] != digests[3]
    assert [r["dice_mode"] for r in recipes] == ["batch", "batch", "batch", "image"]


def test_workers_do_not_change_the_result(tiny_manifest: Path, tmp_path: Path) -> None:
    """Augmentation is seeded per (seed, epoch, index), not per worker process."""
    digests = []
    for workers in ("0", "2"):
        out = tmp_path / f"w{workers}.safetensors"
        result = runner.invoke(
            app,
            [*_args(tiny_manifest, out, "--epochs", "1", "--test-split", ""), "--workers", workers],
        )
        assert result.exit_code == 0, result.output
        digests.append(load_model(out, device="cpu").card.weights_sha256)
    assert digests[0] == digests[1]


def test_bad_inputs_are_clear_errors(tiny_manifest: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["train", "--out", str(tmp_path / "x.safetensors")])
    assert result.exit_code == 2 and "manifest" in result.output
    result = runner.invoke(app, _args(tiny_manifest, tmp_path / "x.pt"))
    assert result.exit_code == 2 and ".safetensors" in result.output
    result = runner.invoke(
        app, _args(tiny_manifest, tmp_path / "x.safetensors", "--val-split", "nope")
    )
    assert result.exit_code == 2 and "nope" in result.output
    result = runner.invoke(
        app, _args(tiny_manifest, tmp_path / "x.safetensors", "--batch-size", "100")
    )
    assert result.exit_code == 2 and "full batch" in result.output
    result = runner.invoke(
        app, _args(tiny_manifest, tmp_path / "x.safetensors", "--dice-mode", "pixel")
    )
    assert result.exit_code == 2 and "pixel" in result.output


@pytest.mark.integration
def test_distributed_data_parallel_under_torchrun(tiny_manifest: Path, tmp_path: Path) -> None:
    out = tmp_path / "ddp.safetensors"
    args = _args(tiny_manifest, out, "--epochs", "1", "--batch-size", "2")[1:]
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK")}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            "2",
            "-m",
            "unitumour_dicom.train",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    card = load_model(out, device="cpu").card
    assert card.training["processes"] == 2
    # Each process takes half of every epoch: 24 images / 2 processes / batch 2 = 6 steps.
    assert card.training["history"][0]["step"] == 6
