"""The network's own view of a tile: its bottleneck activations, pooled per tile.

A forward hook on the bottleneck (the deepest stage, the one the decoder starts from) keeps a
reference to its output; nothing is copied or changed, so the forward pass and the logits are
exactly those without the hook. After each batch the caller pools the kept map per tile over
tissue (mean and standard deviation over space, weighted by the tile's tissue fraction at each
bottleneck position) and hands the small N x 2C array to the ``DomainAccumulator``. The pooling
runs on the map's device, so only N x 2C floats cross to the host.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ModelError

DEFAULT_LAYER = "context"  # TumourUNet: the dilated blocks after the deepest encoder stage


def bottleneck_module(module: nn.Module, layer: str = DEFAULT_LAYER) -> nn.Module:
    """The submodule named ``layer`` (dotted path, e.g. ``context`` or ``encoder.3``)."""
    try:
        return module.get_submodule(layer)
    except AttributeError as exc:
        raise ModelError(
            f"the network has no layer {layer!r} to read domain features from"
        ) from exc


class BottleneckHook:
    """Context manager: while open, ``maps`` is the bottleneck output of the latest forward.

    Use ``with BottleneckHook(model.module) as hook: logits = model.module(x); feats =
    hook.pooled(masks)``. The hook keeps only the latest batch's map (a reference, freed on the
    next forward or on exit), so memory stays that of one batch.
    """

    def __init__(self, module: nn.Module, layer: str = DEFAULT_LAYER) -> None:
        self.layer = layer
        self._target = bottleneck_module(module, layer)
        self._handle: Any = None
        self.maps: torch.Tensor | None = None

    def _hook(self, _module: nn.Module, _inputs: Any, output: torch.Tensor) -> None:
        self.maps = output.detach()

    def __enter__(self) -> BottleneckHook:
        self._handle = self._target.register_forward_hook(self._hook)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None
        self.maps = None

    def pooled(self, masks: np.ndarray | torch.Tensor | None = None) -> np.ndarray:
        """Mean and std over space per tile of the latest map, N x 2C float32 on the host;
        see ``pool_features``. Clears the kept map."""
        if self.maps is None:
            raise RuntimeError("no forward pass has run since the hook was opened")
        maps, self.maps = self.maps, None
        return pool_features(maps, masks)


@torch.no_grad()
def pool_features(
    maps: torch.Tensor,
    masks: np.ndarray | torch.Tensor | None = None,
) -> np.ndarray:
    """Per-tile mean and standard deviation over space of N x C x h x w activations.

    ``masks`` (N x H x W, bool or [0, 1]) are the tiles' tissue masks at input resolution; each
    is averaged onto the map's grid (its area fraction per position) and used as weights, so
    glass in a tile does not dilute the statistics. Where the network padded its input (bottom
    and right) to a multiple of its stride, the mask is padded with zeros alike, so padded
    positions carry no weight. Tiles whose weights sum to zero fall back to uniform weights.
    """
    x = maps.float()
    n, _, h, w = x.shape
    if masks is not None:
        m = torch.as_tensor(np.asarray(masks) if not torch.is_tensor(masks) else masks)
        m = m.to(device=x.device, dtype=torch.float32)
        if m.ndim != 3 or m.shape[0] != n:
            raise ValueError(f"masks must be N x H x W with N = {n}, got {tuple(m.shape)}")
        hh, ww = m.shape[-2:]
        # Pad the mask like the network pads its input, then average onto the grid.
        ph, pw = h * -(-hh // h) - hh, w * -(-ww // w) - ww
        if ph or pw:
            m = F.pad(m, (0, pw, 0, ph))
        weights = F.adaptive_avg_pool2d(m[:, None], (h, w))[:, 0]
    else:
        weights = torch.ones((n, h, w), device=x.device)
    total = weights.sum(dim=(1, 2))
    empty = total <= 1e-6
    if bool(empty.any()):
        weights[empty] = 1.0
        total = weights.sum(dim=(1, 2))
    wn = (weights / total[:, None, None])[:, None]
    mean = (x * wn).sum(dim=(2, 3))
    var = ((x - mean[..., None, None]) ** 2 * wn).sum(dim=(2, 3))
    std = torch.sqrt(var.clamp_min(0) + 1e-12)
    return torch.cat([mean, std], dim=1).cpu().numpy().astype(np.float32)
