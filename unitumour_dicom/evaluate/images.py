"""Evaluation on image/mask pairs listed in a manifest (the EBHI-Seg form).

Each image is resampled to the model's pixel size when the manifest gives one, segmented with
the card's threshold and post-processing (the mask slide inference would produce), and
compared with its reference at that resolution.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from ..model.checkpoint import LoadedModel
from ..model.postprocess import postprocess_with_card
from .manifest import PairRecord, load_pair
from .report import ItemResult, summarise

logger = logging.getLogger(__name__)


def _autocast(device: torch.device, amp: bool) -> Any:
    if amp and device.type == "cuda":
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.autocast("cuda", dtype=dtype)
    return torch.autocast("cpu", enabled=False)


@torch.inference_mode()
def forward_probabilities(
    module: torch.nn.Module,
    images: Sequence[np.ndarray],
    *,
    mean: Sequence[float],
    std: Sequence[float],
    device: torch.device,
    batch_size: int = 32,
    amp: bool = False,
    window: int | None = None,
    halo: int = 0,
    observer: Callable[[np.ndarray, list[int]], None] | None = None,
) -> list[np.ndarray]:
    """Tumour probability (float32 H x W) for each uint8 RGB image.

    Images of one shape go through together in batches. An image with a side longer than
    ``window`` (when given) is cut into windows of that size overlapping by ``halo`` pixels on
    each side, whose centres are kept, so memory stays bounded on large images.
    ``observer`` (when given) is called after each forward with the batch's uint8 tiles and
    the image number of each: the domain check reads the same tiles, and the bottleneck's
    activations through a hook, without a second pass.
    """
    mean_t = torch.tensor(mean, device=device, dtype=torch.float32).view(1, 3, 1, 1)
    std_t = torch.tensor(std, device=device, dtype=torch.float32).view(1, 3, 1, 1)
    channels_last = device.type == "cuda"

    def run(batch: np.ndarray, owners: list[int]) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(batch)).to(device)
        x = (x.permute(0, 3, 1, 2).float() / 255.0 - mean_t) / std_t
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with _autocast(device, amp):
            logits = module(x)
        if observer is not None:
            observer(batch, owners)
        return torch.sigmoid(logits[:, 0].float()).cpu().numpy()

    out: list[np.ndarray | None] = [None] * len(images)
    by_shape: dict[tuple[int, ...], list[int]] = {}
    for i, img in enumerate(images):
        if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
            raise ValueError(f"image {i}: expected uint8 H x W x 3, got {img.dtype} {img.shape}")
        if window is not None and max(img.shape[:2]) > window:

            def run_owned(batch: np.ndarray, owner: int = i) -> np.ndarray:
                return run(batch, [owner] * len(batch))

            out[i] = _windowed(run_owned, img, window, halo, batch_size)
        else:
            by_shape.setdefault(img.shape, []).append(i)
    for indices in by_shape.values():
        for start in range(0, len(indices), batch_size):
            chunk = indices[start : start + batch_size]
            probs = run(np.stack([images[i] for i in chunk]), chunk)
            for i, p in zip(chunk, probs, strict=True):
                out[i] = p
    return out  # type: ignore[return-value]


def _windowed(
    run: Callable[[np.ndarray], np.ndarray],
    image: np.ndarray,
    window: int,
    halo: int,
    batch_size: int,
) -> np.ndarray:
    core = window - 2 * halo
    h, w = image.shape[:2]
    ny, nx = -(-h // core), -(-w // core)
    pad = ((halo, ny * core - h + halo), (halo, nx * core - w + halo), (0, 0))
    mode: Literal["reflect", "edge"] = (
        "reflect" if min(h, w) > max(p for p, _ in pad[:2]) + halo else "edge"
    )
    padded = np.pad(image, pad, mode=mode)
    result = np.zeros((ny * core, nx * core), np.float32)
    origins = [(y * core, x * core) for y in range(ny) for x in range(nx)]
    for start in range(0, len(origins), batch_size):
        chunk = origins[start : start + batch_size]
        tiles = np.stack([padded[y : y + window, x : x + window] for y, x in chunk])
        for (y, x), p in zip(chunk, run(tiles), strict=True):
            result[y : y + core, x : x + core] = p[halo : halo + core, halo : halo + core]
    return result[:h, :w]


def evaluate_pairs(
    records: Sequence[PairRecord],
    model: LoadedModel,
    *,
    batch_size: int = 32,
    amp: bool = False,
    n_resamples: int = 2000,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[list[ItemResult], dict[str, Any]]:
    """Per-image results and their summary (see ``report.summarise``). Where the card has a
    domain reference each item also gets its domain score and verdict, from the tiles and the
    bottleneck activations of the same forward pass."""
    from ..domain.accumulator import DomainAccumulator, describe_tiles
    from ..domain.features import BottleneckHook

    card = model.card
    reference = card.domain()
    items: list[ItemResult] = []
    chunk_size = max(batch_size, 64)
    hook = BottleneckHook(model.module, reference.layer) if reference is not None else None
    accs: list[DomainAccumulator] = []

    def observe(batch: np.ndarray, owners: list[int]) -> None:
        assert hook is not None
        described, masks = describe_tiles(batch, None)
        described["network"] = hook.pooled(masks).astype(np.float64)
        owner = np.asarray(owners)
        for o in np.unique(owner):
            sel = owner == o
            accs[o].add({k: v[sel] for k, v in described.items()})

    for start in range(0, len(records), chunk_size):
        chunk = records[start : start + chunk_size]
        pairs = [load_pair(r, target_mpp=card.mpp) for r in chunk]
        accs = [DomainAccumulator(reference) for _ in chunk]
        if hook is not None:
            hook.__enter__()
        try:
            probs = forward_probabilities(
                model.module,
                [p[0] for p in pairs],
                mean=card.mean,
                std=card.std,
                device=model.device,
                batch_size=batch_size,
                amp=amp,
                window=max(card.input_size, 1024),
                halo=card.overlap,
                observer=observe if hook is not None else None,
            )
        finally:
            if hook is not None:
                hook.__exit__()
        for rec, (_, ref), prob, acc in zip(chunk, pairs, probs, accs, strict=True):
            pred = postprocess_with_card(prob, card)
            domain = acc.finish()
            item = ItemResult.from_masks(str(rec.image), rec.cls, rec.case, pred, ref)
            items.append(replace(item, domain_score=domain.score, domain_verdict=domain.verdict))
        if progress is not None:
            progress(len(items), len(records))
    summary = summarise(items, n_resamples=n_resamples, seed=seed)
    return items, summary


def model_summary(model: LoadedModel) -> dict[str, Any]:
    card = model.card
    return {
        "name": card.name,
        "version": card.version,
        "weights_sha256": card.weights_sha256,
        "mpp": card.mpp,
        "threshold": card.threshold,
        "path": str(model.weights_path) if model.weights_path else None,
    }


def relative_keys(items: Sequence[ItemResult], root: Path) -> list[ItemResult]:
    """Items with keys relative to ``root`` where possible (shorter, portable reports)."""
    out = []
    for r in items:
        try:
            key = str(Path(r.key).relative_to(root))
        except ValueError:
            key = r.key
        out.append(replace(r, key=key))
    return out
