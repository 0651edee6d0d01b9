"""Checkpoints: safetensors weights with a model card beside them, verified on load.

The card's ``weights_sha256`` is the digest of the whole .safetensors file. Loading reads the
file once, checks the digest and only then deserialises, so what runs is exactly what the card
(and the provenance recorded from it) describes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from ..errors import ModelError
from .card import ModelCard
from .device import select_device
from .network import build_network

logger = logging.getLogger(__name__)

WEIGHTS_SUFFIX = ".safetensors"
CARD_SUFFIX = ".card.json"
DEMO_NAME = "demo"


@dataclass(frozen=True)
class LoadedModel:
    """A verified network ready for inference, with the card that says how to use it.

    ``module`` is in eval mode on ``device``; it takes float32 N x 3 x H x W, RGB scaled to
    [0, 1] and normalised with ``card.normalisation``, and returns tumour logits N x 1 x H x W.
    """

    module: torch.nn.Module
    card: ModelCard
    device: torch.device
    weights_path: Path | None = None

    def preprocess(self, rgb: np.ndarray | torch.Tensor) -> torch.Tensor:
        """uint8 RGB tiles (N x H x W x 3, or H x W x 3) to the network's input on its device."""
        return normalise_rgb(rgb, self.card, self.device)

    @torch.inference_mode()
    def predict_proba(self, rgb: np.ndarray | torch.Tensor) -> np.ndarray:
        """Tumour probability N x H x W (float32) for uint8 RGB tiles; a plain single pass,
        for evaluation and tests (slide inference batches, overlaps and uses autocast)."""
        x = self.preprocess(rgb)
        return torch.sigmoid(self.module(x)[:, 0].float()).cpu().numpy()


def normalise_rgb(
    rgb: np.ndarray | torch.Tensor, card: ModelCard, device: torch.device | None = None
) -> torch.Tensor:
    """uint8 (or [0, 1] float) RGB, N x H x W x 3 or H x W x 3, to normalised N x 3 x H x W."""
    x = torch.as_tensor(rgb)
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(f"expected RGB tiles N x H x W x 3, got shape {tuple(x.shape)}")
    integer = not torch.is_floating_point(x)
    if device is not None:
        x = x.to(device, non_blocking=True)
    x = x.permute(0, 3, 1, 2).float()
    if integer:
        x = x / 255.0
    mean = torch.tensor(card.mean, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(card.std, device=x.device).view(1, 3, 1, 1)
    return ((x - mean) / std).contiguous()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def card_path_for(weights_path: Path) -> Path:
    """``x.safetensors`` -> ``x.card.json`` beside it."""
    name = weights_path.name
    stem = name[: -len(WEIGHTS_SUFFIX)] if name.endswith(WEIGHTS_SUFFIX) else weights_path.stem
    return weights_path.with_name(stem + CARD_SUFFIX)


def packaged_weights_dir() -> Path:
    return Path(str(resources.files("unitumour_dicom.model") / "weights"))


def packaged_model_names() -> list[str]:
    """Names of the checkpoints shipped inside the package (e.g. ``demo``)."""
    folder = packaged_weights_dir()
    if not folder.is_dir():
        return []
    return sorted(
        p.name[: -len(WEIGHTS_SUFFIX)]
        for p in folder.glob(f"*{WEIGHTS_SUFFIX}")
        if card_path_for(p).is_file()
    )


def resolve_checkpoint(source: str | Path | None) -> tuple[Path, Path]:
    """(weights, card) paths for a packaged model name, a .safetensors or a .card.json."""
    if source is None or (isinstance(source, str) and source.strip() == ""):
        source = DEMO_NAME
    path = Path(source)
    is_name = isinstance(source, str) and "/" not in source and os.sep not in source
    if is_name and not path.exists() and not path.name.endswith((WEIGHTS_SUFFIX, CARD_SUFFIX)):
        weights = packaged_weights_dir() / f"{source}{WEIGHTS_SUFFIX}"
        if not weights.is_file():
            known = ", ".join(packaged_model_names()) or "none"
            raise ModelError(
                f"no packaged model named {source!r} (packaged: {known}); "
                "give a path to a .safetensors checkpoint with its .card.json beside it"
            )
        return weights, card_path_for(weights)
    if path.name.endswith(CARD_SUFFIX):
        weights = path.with_name(path.name[: -len(CARD_SUFFIX)] + WEIGHTS_SUFFIX)
        return weights, path
    if path.is_dir():
        found = sorted(path.glob(f"*{WEIGHTS_SUFFIX}"))
        if len(found) != 1:
            raise ModelError(f"{path} holds {len(found)} checkpoints; name the .safetensors file")
        path = found[0]
    return path, card_path_for(path)


def load_model(
    source: str | Path | None = None, *, device: torch.device | str | None = None
) -> LoadedModel:
    """Load and verify a checkpoint with its card.

    Parameters
    ----------
    source:
        None or ``"demo"`` for the shipped demo weights; another packaged name; or a path to a
        ``.safetensors`` file (its card is ``<stem>.card.json`` beside it) or to the card.
    device:
        Where to put the module; default ``select_device("auto")``.

    Raises
    ------
    ModelError
        The files are missing, the card is invalid (the field is named), the weights' sha256
        differs from the card's, or the tensors do not fit the card's architecture.
    """
    weights_path, card_path = resolve_checkpoint(source)
    if not card_path.is_file():
        raise ModelError(f"model card {card_path} not found beside {weights_path.name}")
    card = ModelCard.read(card_path)
    try:
        blob = weights_path.read_bytes()
    except OSError as exc:
        raise ModelError(f"cannot read weights {weights_path}: {exc}") from exc
    digest = sha256_bytes(blob)
    if digest != card.weights_sha256:
        raise ModelError(
            f"weights {weights_path} have sha256 {digest}, but card {card_path.name} says "
            f"{card.weights_sha256}: refusing a checkpoint that is not the one its card describes"
        )
    module = build_network(card.architecture, dict(card.architecture_args))
    try:
        state = load_safetensors(blob)
    except (SafetensorError, ValueError) as exc:
        raise ModelError(f"weights {weights_path} are not a valid safetensors file: {exc}") from exc
    _load_state(module, state, weights_path)
    target = device if isinstance(device, torch.device) else select_device(device or "auto")
    module.eval().requires_grad_(False).to(target)
    logger.info(
        "loaded model %s %s (sha256 %s) on %s", card.name, card.version, digest[:12], target
    )
    return LoadedModel(module=module, card=card, device=target, weights_path=weights_path)


def _load_state(module: torch.nn.Module, state: Mapping[str, torch.Tensor], where: Path) -> None:
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise ModelError(
            f"weights {where} do not fit the card's architecture: "
            f"missing {missing[:5]}{'...' if len(missing) > 5 else ''}, "
            f"unexpected {unexpected[:5]}{'...' if len(unexpected) > 5 else ''}"
        )
    converted = {}
    for key, tensor in state.items():
        ref = expected[key]
        if tuple(tensor.shape) != tuple(ref.shape):
            raise ModelError(
                f"weights {where}: tensor {key} has shape {tuple(tensor.shape)}, "
                f"the architecture needs {tuple(ref.shape)}"
            )
        # Checkpoints may store floating tensors in half precision to stay small.
        converted[key] = tensor.to(ref.dtype) if tensor.is_floating_point() else tensor
    module.load_state_dict(converted, strict=True)


def save_checkpoint(
    module: torch.nn.Module,
    weights_path: Path,
    card_fields: Mapping[str, Any],
    *,
    storage_dtype: torch.dtype = torch.float32,
) -> ModelCard:
    """Write ``module``'s weights and a card for them; return the card.

    ``card_fields`` holds every card field except ``weights_sha256``, which is computed here
    from the bytes written. Both files are written atomically (temporary file, fsync,
    rename), the weights first, so a card never points to weights that are not there.
    ``storage_dtype=torch.float16`` halves the file; floating tensors are loaded back into
    the network's own precision.
    """
    weights_path = Path(weights_path)
    if not weights_path.name.endswith(WEIGHTS_SUFFIX):
        raise ModelError(f"checkpoint file name must end in {WEIGHTS_SUFFIX}: {weights_path}")
    unwrapped = getattr(module, "module", module)  # DistributedDataParallel
    unwrapped = getattr(unwrapped, "_orig_mod", unwrapped)  # torch.compile
    state = {
        k: (v.detach().to("cpu", storage_dtype) if v.is_floating_point() else v.detach().cpu())
        .contiguous()
        .clone()
        for k, v in unwrapped.state_dict().items()
    }
    # One metadata key: safetensors writes a map of several in no fixed order, and the
    # same weights must give the same bytes (and digest) every time.
    metadata = {
        "unitumour": json.dumps(
            {k: str(card_fields.get(k, "")) for k in ("name", "version", "architecture")},
            sort_keys=True,
        )
    }
    blob = save_safetensors(state, metadata=metadata)
    card = ModelCard.from_dict({**card_fields, "weights_sha256": sha256_bytes(blob)})
    _write_bytes_atomic(weights_path, blob)
    card.write(card_path_for(weights_path))
    return card


def _write_bytes_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, 0o644)  # mkstemp makes 0600; published files are world-readable
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
