"""Fitting a domain reference from an image/mask manifest, and scoring images with one.

Images no larger than the card's network input are one tile each (EBHI-Seg's 224 px images);
larger ones are cut into input-sized windows on a grid of the card's tile size, as slide
inference reads them. Train-split tiles fit the group models, val-split images set the scales
and thresholds (``reference.fit_reference``); the result goes into the card's
``domain_reference`` field, leaving the weights and everything else untouched.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..model.card import ModelCard
from ..model.checkpoint import LoadedModel
from .accumulator import DomainAccumulator, DomainResult, describe_tiles
from .features import BottleneckHook
from .reference import DomainReference, fit_reference

logger = logging.getLogger(__name__)


def image_windows(image: np.ndarray, window: int, step: int) -> list[np.ndarray]:
    """The image itself when it fits in ``window``; else windows on a ``step`` grid, the last
    row and column aligned to the far edges so that every pixel is read."""
    h, w = image.shape[:2]
    if h <= window and w <= window:
        return [image]
    ys = _starts(h, window, step)
    xs = _starts(w, window, step)
    return [image[y : y + window, x : x + window] for y in ys for x in xs]


def _starts(size: int, window: int, step: int) -> list[int]:
    if size <= window:
        return [0]
    starts = list(range(0, size - window, step))
    starts.append(size - window)
    return starts


@torch.inference_mode()
def tile_statistics(
    model: LoadedModel,
    images: Sequence[np.ndarray],
    *,
    layer: str = "context",
    batch_size: int = 32,
) -> Iterator[tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]]:
    """For each batch of same-shaped tiles: (owner image numbers, tiles, features per group:
    stain, quality, network). The forward pass is the model's plain one, with a hook."""
    card = model.card
    pending: dict[tuple[int, ...], list[tuple[int, np.ndarray]]] = {}
    with BottleneckHook(model.module, layer) as hook:

        def flush(key: tuple[int, ...]) -> Iterator[Any]:
            batch = pending.pop(key, [])
            if not batch:
                return
            owners = np.array([o for o, _ in batch])
            tiles = np.stack([t for _, t in batch])
            described, masks = describe_tiles(tiles, None)
            model.module(model.preprocess(tiles))
            described["network"] = hook.pooled(masks).astype(np.float64)
            yield owners, tiles, described

        for i, img in enumerate(images):
            for tile in image_windows(img, card.input_size, card.tile_size):
                pending.setdefault(tile.shape, []).append((i, np.ascontiguousarray(tile)))
                if len(pending[tile.shape]) >= batch_size:
                    yield from flush(tile.shape)
        for key in list(pending):
            yield from flush(key)


def collect(
    model: LoadedModel,
    images: Sequence[np.ndarray],
    *,
    layer: str = "context",
    batch_size: int = 32,
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Per-tile features of all images ({"stain", "quality", "network"}) and tile owners."""
    owners: list[np.ndarray] = []
    parts: dict[str, list[np.ndarray]] = {}
    for o, _, feats in tile_statistics(model, images, layer=layer, batch_size=batch_size):
        owners.append(o)
        for k, v in feats.items():
            parts.setdefault(k, []).append(v)
    return {k: np.concatenate(v) for k, v in parts.items()}, np.concatenate(owners)


def score_images(
    model: LoadedModel,
    reference: DomainReference | None,
    images: Sequence[np.ndarray],
    *,
    batch_size: int = 32,
) -> list[DomainResult]:
    """One ``DomainResult`` per image (each image treated as a slide of its tiles)."""
    accs = [DomainAccumulator(reference) for _ in images]
    if reference is None:
        return [a.finish() for a in accs]
    for owners, _, feats in tile_statistics(
        model, images, layer=reference.layer, batch_size=batch_size
    ):
        for o in np.unique(owners):
            sel = owners == o
            accs[o].add({k: v[sel] for k, v in feats.items()})
    return [a.finish() for a in accs]


def load_images(
    paths: Sequence[Path],
    target_mpp: float | None = None,
    mpps: Sequence[float | None] | None = None,
) -> list[np.ndarray]:
    """uint8 RGB images, resampled to ``target_mpp`` where their own pixel size is known."""
    import cv2

    from ..evaluate.manifest import ManifestError

    out = []
    for i, p in enumerate(paths):
        img = cv2.imread(str(p), cv2.IMREAD_COLOR)
        if img is None:
            raise ManifestError(f"cannot decode image {p}")
        img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
        mpp = mpps[i] if mpps is not None else None
        if target_mpp is not None and mpp is not None and abs(mpp / target_mpp - 1) > 1e-3:
            s = mpp / target_mpp
            size = (max(1, round(img.shape[1] * s)), max(1, round(img.shape[0] * s)))
            img = cv2.resize(img, size, interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
        out.append(np.ascontiguousarray(img))
    return out


def fit_domain_reference(
    model: LoadedModel,
    manifest: Path,
    *,
    train_split: str = "train",
    val_split: str = "val",
    n_components: int = 32,
    borderline_quantile: float = 0.975,
    out_quantile: float = 0.995,
    layer: str = "context",
    batch_size: int = 32,
    progress: Callable[[str], None] | None = None,
) -> DomainReference:
    """Fit on ``train_split`` tiles of the manifest, thresholds on ``val_split`` images."""
    from ..evaluate.manifest import read_manifest

    card = model.card
    say = progress or (lambda _m: None)
    feats = {}
    owners = {}
    counts = {}
    for split in (train_split, val_split):
        recs = read_manifest(manifest, splits=[split])
        images = load_images([r.image for r in recs], card.mpp, [r.mpp for r in recs])
        say(f"{split}: {len(images)} images")
        feats[split], owners[split] = collect(model, images, layer=layer, batch_size=batch_size)
        counts[split] = {"images": len(images), "tiles": len(owners[split])}
    info = {
        "manifest": Path(manifest).name,
        "train": {"split": train_split, **counts[train_split]},
        "val": {"split": val_split, **counts[val_split]},
        "tile": f"images up to {card.input_size} px whole, larger ones in "
        f"{card.input_size} px windows every {card.tile_size} px, at {card.mpp} um/px",
        "features": "stain: OD mean/std, Macenko H/E vectors, H/E concentration p05/p50/p99, "
        "H&E colour fraction, 4x4 OD chromaticity histogram; quality: focus, fine-detail "
        "ratio, JPEG blocking (x, y); network: mean and std over tissue of the "
        f"'{layer}' activations",
        "score": "per tile: root sum of squares over groups of Mahalanobis distance / its "
        "val 95th percentile; per slide: median over scored tiles",
    }
    return fit_reference(
        feats[train_split],
        feats[val_split],
        owners[val_split],
        n_components=n_components,
        borderline_quantile=borderline_quantile,
        out_quantile=out_quantile,
        layer=layer,
        info=info,
    )


def with_reference(card: ModelCard, reference: DomainReference | None) -> ModelCard:
    """The card with ``domain_reference`` set (or removed, for None)."""
    return replace(card, domain_reference=None if reference is None else reference.to_dict())
