"""Batched forward passes of the model on uint8 RGB tiles, on whatever device it lives on.

On CUDA, tiles travel as uint8 (a quarter of the bytes of float32) from pinned memory, are
normalised on the device, run in channels_last under autocast (bfloat16 where the device
supports it, else float16), and results come back asynchronously: ``submit`` returns at
once, so the caller stitches the previous batch while the GPU computes this one. On the CPU
everything runs in float32 and ``submit`` computes before it returns.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from ..errors import ModelError

if TYPE_CHECKING:
    from ..model import LoadedModel

logger = logging.getLogger(__name__)


@dataclass
class PendingBatch:
    """A batch whose probabilities are on their way to host memory."""

    host: torch.Tensor
    event: torch.cuda.Event | None
    count: int


class ModelRunner:
    """Runs ``model.module`` on batches of tiles and returns tumour probabilities.

    Parameters
    ----------
    model:
        A loaded model (module in eval mode on ``model.device``, card with normalisation).
    mixed_precision:
        Use autocast on CUDA (ignored on the CPU, where float32 is both safer and faster).
    channels_last:
        Convert the module and inputs to channels_last on CUDA (default: on CUDA only).
        The module's parameters are converted in place, once.
    """

    def __init__(
        self,
        model: LoadedModel,
        *,
        mixed_precision: bool = True,
        channels_last: bool | None = None,
    ) -> None:
        self.module = model.module
        self.device = torch.device(model.device)
        self.cuda = self.device.type == "cuda"
        mean = [float(v) for v in model.card.normalisation["mean"]]
        std = [float(v) for v in model.card.normalisation["std"]]
        if len(mean) != 3 or len(std) != 3 or any(s <= 0 for s in std):
            raise ModelError(f"normalisation needs 3 means and 3 positive stds: {mean}, {std}")
        # x_normalised = (x_uint8 / 255 - mean) / std = x_uint8 * scale + shift
        self._scale = torch.tensor([1 / (255.0 * s) for s in std], device=self.device).view(
            1, 3, 1, 1
        )
        self._shift = torch.tensor(
            [-m / s for m, s in zip(mean, std, strict=True)], device=self.device
        ).view(1, 3, 1, 1)
        self.channels_last = self.cuda if channels_last is None else bool(channels_last)
        self.autocast_dtype: torch.dtype | None = None
        if self.cuda and mixed_precision:
            self.autocast_dtype = (
                torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
            )
        if self.channels_last:
            # torch's overloads of Module.to() omit its documented memory_format keyword.
            self.module.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        self.module.eval()

    @property
    def description(self) -> str:
        """Device and numeric mode, as recorded with results."""
        precision = (
            str(self.autocast_dtype).removeprefix("torch.") if self.autocast_dtype else "float32"
        )
        name = str(self.device)
        if self.cuda:
            name += f" ({torch.cuda.get_device_name(self.device)})"
        layout = ", channels_last" if self.channels_last else ""
        return f"{name}, {precision}{layout}"

    @torch.inference_mode()
    def submit(self, tiles: np.ndarray) -> PendingBatch:
        """Start the forward pass of uint8 tiles (N x H x W x 3)."""
        if tiles.ndim != 4 or tiles.shape[-1] != 3 or tiles.dtype != np.uint8:
            raise ValueError(f"expected uint8 N x H x W x 3 tiles, not {tiles.dtype} {tiles.shape}")
        x = torch.from_numpy(tiles)
        if self.cuda:
            x = x.pin_memory().to(self.device, non_blocking=True)
        x = x.permute(0, 3, 1, 2).float() * self._scale + self._shift
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        else:
            x = x.contiguous()
        with torch.autocast(
            device_type=self.device.type,
            dtype=self.autocast_dtype or torch.float32,
            enabled=self.autocast_dtype is not None,
        ):
            logits = self.module(x)
        expected = (tiles.shape[0], 1, tiles.shape[1], tiles.shape[2])
        if tuple(logits.shape) != expected:
            raise ModelError(
                f"model returned logits of shape {tuple(logits.shape)}, expected {expected}"
            )
        probability = torch.sigmoid(logits[:, 0].float())
        if not self.cuda:
            return PendingBatch(probability, None, tiles.shape[0])
        host = torch.empty(probability.shape, dtype=torch.float32, pin_memory=True)
        host.copy_(probability, non_blocking=True)
        event = torch.cuda.Event()
        event.record()
        return PendingBatch(host, event, tiles.shape[0])

    def collect(self, pending: PendingBatch) -> np.ndarray:
        """Probabilities (N x H x W float32) of a submitted batch, waiting if needed."""
        if pending.event is not None:
            pending.event.synchronize()
        return pending.host.numpy()

    def __call__(self, tiles: np.ndarray) -> np.ndarray:
        return self.collect(self.submit(tiles))
