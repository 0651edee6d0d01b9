"""Checkpoints: round trip, digest check, strict cards, architecture fit, devices."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from unitumour_dicom.errors import ModelError
from unitumour_dicom.model import (
    LoadedModel,
    ModelCard,
    TumourUNet,
    card_path_for,
    load_model,
    save_checkpoint,
    select_device,
)

from .checkpoints import card_fields, write_untrained_checkpoint

pytestmark = pytest.mark.unittest


def test_round_trip_gives_the_same_outputs(tmp_path: Path) -> None:
    torch.manual_seed(3)
    fields = card_fields()
    net = TumourUNet(**fields["architecture_args"]).eval()
    path = tmp_path / "m.safetensors"
    card = save_checkpoint(net, path, fields)
    loaded = load_model(path, device=torch.device("cpu"))
    assert isinstance(loaded, LoadedModel)
    assert loaded.card == card
    assert not loaded.module.training
    x = torch.randn(2, 3, 50, 70)
    with torch.no_grad():
        np.testing.assert_array_equal(net(x).numpy(), loaded.module(x).numpy())
    assert loaded.module(x).shape == (2, 1, 50, 70)


def test_loading_by_card_path_and_by_folder(tmp_path: Path) -> None:
    path = write_untrained_checkpoint(tmp_path)
    a = load_model(card_path_for(path), device="cpu")
    b = load_model(str(tmp_path), device="cpu")
    assert a.card.weights_sha256 == b.card.weights_sha256


def test_wrong_sha256_is_refused(tmp_path: Path) -> None:
    path = write_untrained_checkpoint(tmp_path)
    card_file = card_path_for(path)
    data = json.loads(card_file.read_text())
    data["weights_sha256"] = "0" * 64
    card_file.write_text(json.dumps(data))
    with pytest.raises(ModelError, match="sha256"):
        load_model(path, device="cpu")


def test_tampered_weights_are_refused(tmp_path: Path) -> None:
    path = write_untrained_checkpoint(tmp_path)
    blob = bytearray(path.read_bytes())
    blob[-3] ^= 0x01  # one bit in the last tensor
    path.write_bytes(bytes(blob))
    with pytest.raises(ModelError, match="sha256"):
        load_model(path, device="cpu")


@pytest.mark.parametrize(
    "field",
    [
        "mpp",
        "tile_size",
        "overlap",
        "normalisation",
        "threshold",
        "weights_sha256",
        "metrics",
        "training_data",
        "intended_use",
        "not_for_clinical_use",
        "architecture_args",
        "name",
    ],
)
def test_card_missing_a_field_is_refused_with_the_field_named(tmp_path: Path, field: str) -> None:
    path = write_untrained_checkpoint(tmp_path)
    card_file = card_path_for(path)
    data = json.loads(card_file.read_text())
    del data[field]
    card_file.write_text(json.dumps(data))
    with pytest.raises(ModelError, match=field):
        load_model(path, device="cpu")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("mpp", -1.0),
        ("mpp", "0.9"),
        ("mpp", float("nan")),
        ("tile_size", 256.5),
        ("overlap", 40),  # not below half the tile
        ("threshold", 1.0),
        ("not_for_clinical_use", "yes"),
        ("normalisation", {"mean": [0.5, 0.5], "std": [0.2, 0.2, 0.2]}),
        ("normalisation", {"mean": [0.5, 0.5, 0.5], "std": [0.2, 0.0, 0.2]}),
        ("weights_sha256", "ABC"),
        ("name", "../../etc/passwd"),
        ("schema_version", 99),
    ],
)
def test_card_with_an_invalid_field_is_refused(field: str, value: object) -> None:
    data = card_fields(weights_sha256="a" * 64)
    data[field] = value
    with pytest.raises(ModelError, match=field):
        ModelCard.from_dict(data)


def test_card_with_unknown_field_is_refused() -> None:
    data = card_fields(weights_sha256="a" * 64, surprise=1)
    with pytest.raises(ModelError, match="surprise"):
        ModelCard.from_dict(data)


def test_card_is_frozen_all_the_way_down() -> None:
    card = ModelCard.from_dict(card_fields(weights_sha256="a" * 64))
    with pytest.raises(AttributeError):
        card.mpp = 2.0  # type: ignore[misc]
    with pytest.raises(TypeError):
        card.normalisation["mean"] = [0, 0, 0]  # type: ignore[index]
    assert ModelCard.from_dict(json.loads(card.to_json())) == card


def test_weights_of_another_architecture_are_refused(tmp_path: Path) -> None:
    path = write_untrained_checkpoint(tmp_path)
    card_file = card_path_for(path)
    data = json.loads(card_file.read_text())
    data["architecture_args"] = {"widths": [8, 16, 32]}
    card_file.write_text(json.dumps(data))
    with pytest.raises(ModelError, match="shape"):
        load_model(path, device="cpu")


def test_unknown_architecture_is_refused(tmp_path: Path) -> None:
    path = write_untrained_checkpoint(tmp_path)
    card_file = card_path_for(path)
    data = json.loads(card_file.read_text())
    data["architecture"] = "ResNet9000"
    card_file.write_text(json.dumps(data))
    with pytest.raises(ModelError, match="unknown architecture"):
        load_model(path, device="cpu")


def test_truncated_weights_are_refused(tmp_path: Path) -> None:
    path = write_untrained_checkpoint(tmp_path)
    blob = path.read_bytes()[:100]
    path.write_bytes(blob)
    card_file = card_path_for(path)
    data = json.loads(card_file.read_text())
    import hashlib

    data["weights_sha256"] = hashlib.sha256(blob).hexdigest()
    card_file.write_text(json.dumps(data))
    with pytest.raises(ModelError, match="safetensors"):
        load_model(path, device="cpu")


def test_missing_files_and_unknown_names_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="not found"):
        load_model(tmp_path / "nothing.safetensors", device="cpu")
    with pytest.raises(ModelError, match="no packaged model"):
        load_model("no-such-model", device="cpu")


def test_half_precision_storage_loads_into_float32(tmp_path: Path) -> None:
    torch.manual_seed(0)
    fields = card_fields()
    net = TumourUNet(**fields["architecture_args"]).eval()
    path = tmp_path / "half.safetensors"
    save_checkpoint(net, path, fields, storage_dtype=torch.float16)
    loaded = load_model(path, device="cpu")
    assert all(p.dtype == torch.float32 for p in loaded.module.parameters())
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        np.testing.assert_allclose(net(x), loaded.module(x), atol=5e-2)


def test_preprocess_normalises_uint8_rgb(tmp_path: Path) -> None:
    model = load_model(write_untrained_checkpoint(tmp_path), device="cpu")
    rgb = np.zeros((2, 8, 9, 3), np.uint8)
    rgb[..., 0] = 255
    x = model.preprocess(rgb)
    assert x.shape == (2, 3, 8, 9) and x.dtype == torch.float32
    mean, std = model.card.mean, model.card.std
    assert x[0, 0, 0, 0].item() == pytest.approx((1 - mean[0]) / std[0])
    assert x[0, 1, 0, 0].item() == pytest.approx((0 - mean[1]) / std[1])
    proba = model.predict_proba(rgb)
    assert proba.shape == (2, 8, 9) and ((proba >= 0) & (proba <= 1)).all()


def test_select_device() -> None:
    assert select_device("cpu") == torch.device("cpu")
    assert select_device("auto").type in {"cpu", "cuda"}
    with pytest.raises(ModelError, match="unknown device"):
        select_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ModelError, match="no CUDA"):
            select_device("cuda")
        with pytest.raises(ModelError, match="no CUDA"):
            select_device("cuda:1")
    else:
        with pytest.raises(ModelError, match="device"):
            select_device(f"cuda:{torch.cuda.device_count()}")
