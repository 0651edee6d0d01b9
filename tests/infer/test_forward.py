"""Batched forward passes: the same numbers as the model's own plain pass, on the CPU."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from tests.infer.oracle import StandInModel, card
from tests.model.checkpoints import write_untrained_checkpoint
from unitumour_dicom.errors import ModelError
from unitumour_dicom.infer import ModelRunner
from unitumour_dicom.model import load_model

pytestmark = pytest.mark.unittest


def test_probabilities_equal_the_models_plain_pass(tmp_path: Path):
    model = load_model(write_untrained_checkpoint(tmp_path), device=torch.device("cpu"))
    tiles = np.random.default_rng(0).integers(0, 256, (3, 80, 80, 3), dtype=np.uint8)
    runner = ModelRunner(model)
    got = runner(tiles)
    assert got.shape == (3, 80, 80) and got.dtype == np.float32
    np.testing.assert_allclose(got, model.predict_proba(tiles), atol=1e-5)
    assert runner.description == "cpu, float32"


class Echo(nn.Module):
    """Returns the normalised red channel: shows exactly what the model was fed."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :1]


def test_tiles_are_normalised_with_the_cards_mean_and_std():
    c = card(normalisation={"mean": [0.5, 0.4, 0.3], "std": [0.25, 0.2, 0.1]})
    runner = ModelRunner(StandInModel(Echo(), c, torch.device("cpu")))
    tiles = np.full((1, 4, 4, 3), 191, np.uint8)
    expected = 1 / (1 + np.exp(-((191 / 255 - 0.5) / 0.25)))
    np.testing.assert_allclose(runner(tiles), expected, rtol=1e-5)


class WrongShape(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :2]


def test_a_model_with_the_wrong_output_is_refused():
    runner = ModelRunner(StandInModel(WrongShape(), card(), torch.device("cpu")))
    with pytest.raises(
        ModelError, match=r"logits of shape \(1, 2, 8, 8\), expected \(1, 1, 8, 8\)"
    ):
        runner(np.zeros((1, 8, 8, 3), np.uint8))


def test_tiles_must_be_uint8_rgb():
    runner = ModelRunner(StandInModel(Echo(), card(), torch.device("cpu")))
    with pytest.raises(ValueError, match="uint8"):
        runner(np.zeros((1, 8, 8, 3), np.float32))
