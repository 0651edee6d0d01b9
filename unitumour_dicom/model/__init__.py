"""The network, its checkpoints with model cards, and device choice.

``register_model`` needs the database layer; it is imported on first use so that training
and inference hosts need only torch, numpy and safetensors to use this package.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .card import CARD_SCHEMA_VERSION, ModelCard
from .checkpoint import (
    DEMO_NAME,
    LoadedModel,
    card_path_for,
    load_model,
    normalise_rgb,
    packaged_model_names,
    packaged_weights_dir,
    save_checkpoint,
    sha256_bytes,
)
from .device import select_device
from .network import ARCHITECTURES, TumourUNet, build_network, count_parameters
from .postprocess import postprocess_probability, postprocess_with_card

if TYPE_CHECKING:
    from .registry import register_model

__all__ = [
    "ARCHITECTURES",
    "CARD_SCHEMA_VERSION",
    "DEMO_NAME",
    "LoadedModel",
    "ModelCard",
    "TumourUNet",
    "build_network",
    "card_path_for",
    "count_parameters",
    "load_model",
    "normalise_rgb",
    "packaged_model_names",
    "packaged_weights_dir",
    "postprocess_probability",
    "postprocess_with_card",
    "register_model",
    "save_checkpoint",
    "select_device",
    "sha256_bytes",
]


def __getattr__(name: str) -> Any:
    if name == "register_model":
        from .registry import register_model

        return register_model
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
