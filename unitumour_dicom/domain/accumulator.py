"""Per-slide domain score from the tiles inference already reads: no second pass over a slide.

The inference loop calls ``DomainAccumulator.update`` once per batch with the batch's uint8
tiles, their tissue masks and the pooled bottleneck features (``BottleneckHook.pooled``), then
``finish`` once. Memory is one small record per scored tile (its index, score and per-group
scores: 4 + 4 + 4 G bytes), capped at ``max_tiles`` records by reservoir sampling, so a slide
of any size costs at most a few megabytes.

Why the median over tissue tiles: a slide's verdict must describe the bulk of its tissue. Every
slide has a few odd tiles (folds, ink, the cut edge, a bubble), and a mean, or a max, would let
them flag an otherwise ordinary slide; the median ignores up to half the tiles being odd. A
slide that is partly unlike the training data still shows in ``fraction_tiles_out`` and in the
per-tile scores, which the web app can draw as a map.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..slide.tissue import TissueParams
from .features import pool_features
from .reference import DomainReference, combine
from .stain import (
    QUALITY_FEATURE_NAMES,
    STAIN_FEATURE_NAMES,
    foreground,
    quality_features,
    stain_features,
)

DEFAULT_MAX_TILES = 1 << 20  # ~12 MB of records with two groups


@dataclass(frozen=True)
class DomainResult:
    """A slide's (or image's) domain check.

    ``score`` is the median over scored tiles of the per-tile score (the root sum of squares
    of each feature group's distance over its validation 95th percentile); ``verdict`` is one
    of in_domain, borderline, out_of_domain, unknown. ``components`` holds the median scaled
    score of each group and the fractions of tiles over each threshold. ``tile_indices`` and
    ``tile_scores`` are the kept per-tile records (all of them unless more than ``max_tiles``
    tiles were scored).
    """

    score: float | None
    verdict: str
    components: dict[str, float] = field(default_factory=dict)
    thresholds: dict[str, float] = field(default_factory=dict)
    n_tiles: int = 0
    n_scored: int = 0
    reason: str = ""
    tile_indices: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    tile_scores: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))

    def to_dict(self, *, tiles: bool = False) -> dict[str, Any]:
        """JSON-ready summary; with ``tiles`` also the per-tile indices and scores."""
        out: dict[str, Any] = {
            "score": None if self.score is None else round(float(self.score), 4),
            "verdict": self.verdict,
            "components": {k: round(float(v), 4) for k, v in self.components.items()},
            "thresholds": {k: round(float(v), 4) for k, v in self.thresholds.items()},
            "n_tiles": self.n_tiles,
            "n_scored": self.n_scored,
            "reason": self.reason,
        }
        if tiles:
            out["tile_indices"] = [int(i) for i in self.tile_indices]
            out["tile_scores"] = [round(float(s), 4) for s in self.tile_scores]
        return out


def unknown_result(reason: str, n_tiles: int = 0) -> DomainResult:
    return DomainResult(score=None, verdict="unknown", n_tiles=n_tiles, reason=reason)


def as_nhwc(tiles: np.ndarray | torch.Tensor) -> np.ndarray:
    """uint8 tiles N x H x W x 3 (given as NHWC or NCHW, numpy or torch) as numpy NHWC."""
    a = tiles.detach().cpu().numpy() if torch.is_tensor(tiles) else np.asarray(tiles)
    if a.ndim == 3:
        a = a[None]
    if a.ndim != 4 or a.dtype != np.uint8:
        raise ValueError(
            f"expected uint8 tiles N x H x W x 3 or N x 3 x H x W, got {a.dtype} {a.shape}"
        )
    if a.shape[-1] == 3:
        return a
    if a.shape[1] == 3:
        return np.ascontiguousarray(a.transpose(0, 2, 3, 1))
    raise ValueError(f"tiles have no channel axis of 3: shape {a.shape}")


def describe_tiles(
    tiles: np.ndarray,
    masks: np.ndarray | None,
    params: TissueParams | None = None,
    min_pixels: int | None = None,
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Per-tile stain and quality features ({"stain": N x Ds, "quality": N x Dq}, NaN rows for
    tiles with too little foreground) and the effective masks N x H x W (foreground inside
    the caller's masks) of NHWC uint8 tiles."""
    from . import stain

    limit = stain.MIN_PIXELS if min_pixels is None else min_pixels
    n = tiles.shape[0]
    eff = np.empty(tiles.shape[:3], bool)
    colour = np.full((n, len(STAIN_FEATURE_NAMES)), np.nan)
    quality = np.full((n, len(QUALITY_FEATURE_NAMES)), np.nan)
    for i in range(n):
        m = foreground(tiles[i], params)
        if masks is not None:
            m &= np.asarray(masks[i], bool)
        eff[i] = m
        if m.sum() >= limit:
            f = stain_features(tiles[i], m, params, mask_is_foreground=True)
            q = quality_features(tiles[i], m)
            if f is not None and q is not None:
                colour[i], quality[i] = f, q
    return {"stain": colour, "quality": quality}, eff


class DomainAccumulator:
    """Collects per-tile domain scores for one slide; see the module docstring.

    ``reference`` None (a card without a domain reference) makes every call cheap and the
    result "unknown". ``tile_indices`` in ``update`` default to a running count.
    """

    def __init__(
        self,
        reference: DomainReference | None,
        *,
        max_tiles: int = DEFAULT_MAX_TILES,
        params: TissueParams | None = None,
        seed: int = 0,
        sample_every: int = 1,
    ) -> None:
        if max_tiles < 1:
            raise ValueError("max_tiles must be positive")
        if sample_every < 1:
            raise ValueError("sample_every must be positive")
        self.sample_every = int(sample_every)
        self.reference = reference
        self.max_tiles = int(max_tiles)
        self.params = params
        self._rng = np.random.default_rng(seed)
        n_groups = len(reference.groups) if reference is not None else 0
        self._cap = 0
        self._index = np.zeros(0, np.int64)
        self._score = np.zeros(0, np.float32)
        self._groups = np.zeros((0, n_groups), np.float32)
        self._kept = 0
        self.n_tiles = 0  # tiles seen
        self.n_scored = 0  # tiles with enough foreground to score
        self._n_borderline = 0
        self._n_out = 0

    @property
    def record_bytes(self) -> int:
        """Bytes held by the per-tile records now (for tests of the memory bound)."""
        return self._index.nbytes + self._score.nbytes + self._groups.nbytes

    def update(
        self,
        tiles: np.ndarray | torch.Tensor,
        masks: np.ndarray | torch.Tensor | None,
        features: np.ndarray | torch.Tensor,
        tile_indices: np.ndarray | list[int] | None = None,
    ) -> np.ndarray:
        """Score one batch; returns its per-tile scores (NaN where not scored).

        ``tiles``: uint8 N x H x W x 3 or N x 3 x H x W. ``masks``: N x H x W tissue masks (or
        None: the whole tile). ``features``: the pooled bottleneck features N x 2C, or the raw
        bottleneck maps N x C x h x w, which are then pooled here over the effective masks.
        With ``sample_every`` k > 1 only every k-th tile seen is described and scored (the
        others count in ``n_tiles`` and score NaN): the colour statistics cost CPU time per
        tile, and the median of a systematic sample is as good a slide score.
        """
        rgb = as_nhwc(tiles)
        n = rgb.shape[0]
        if self.reference is None:
            self.n_tiles += n
            return np.full(n, np.nan, np.float32)
        idx = (
            np.arange(self.n_tiles, self.n_tiles + n, dtype=np.int64)
            if tile_indices is None
            else np.asarray(tile_indices, np.int64).reshape(-1)
        )
        if len(idx) != n:
            raise ValueError(f"{len(idx)} tile indices for {n} tiles")
        pick = np.flatnonzero((np.arange(self.n_tiles, self.n_tiles + n) % self.sample_every) == 0)
        scores = np.full(n, np.nan, np.float32)
        if len(pick) == 0:
            self.n_tiles += n
            return scores
        self.n_tiles += n - len(pick)  # ``add`` counts the picked ones
        m = None
        if masks is not None:
            m = masks.detach().cpu().numpy() if torch.is_tensor(masks) else np.asarray(masks)
            if m.shape != rgb.shape[:3]:
                raise ValueError(f"masks shape {m.shape} does not match tiles {rgb.shape[:3]}")
            m = m[pick]
        described, eff = describe_tiles(
            rgb[pick], m, self.params, min_pixels=self.reference.min_foreground_pixels
        )
        if torch.is_tensor(features) and features.ndim == 4:
            net = pool_features(features[torch.as_tensor(pick, device=features.device)], eff)
        else:
            net = features.detach().cpu().numpy() if torch.is_tensor(features) else features
            net = np.asarray(net)
            if net.shape[0] != n:
                raise ValueError(f"{net.shape[0]} feature rows for {n} tiles")
            net = net[pick]
        described["network"] = np.asarray(net, np.float64)
        scores[pick] = self.add(described, idx[pick])
        return scores

    def add(
        self,
        features: dict[str, np.ndarray],
        tile_indices: np.ndarray | list[int] | None = None,
    ) -> np.ndarray:
        """Score tiles already described per group ({"stain", "quality", "network"}: N rows
        each, NaN rows for tiles without enough tissue); returns their scores."""
        n = len(next(iter(features.values()))) if features else 0
        start = self.n_tiles
        self.n_tiles += n
        scores = np.full(n, np.nan, np.float32)
        if self.reference is None or n == 0:
            return scores
        idx = (
            np.arange(start, start + n, dtype=np.int64)
            if tile_indices is None
            else np.asarray(tile_indices, np.int64).reshape(-1)
        )
        if len(idx) != n or any(len(v) != n for v in features.values()):
            raise ValueError(f"every group and the tile indices need {n} rows")
        ok = np.ones(n, bool)
        for name in self.reference.groups:
            if name not in features:
                raise ValueError(f"no features for group {name!r}")
            ok &= np.all(np.isfinite(features[name]), axis=1)
        if not ok.any():
            return scores
        per_group = self.reference.group_scores({k: v[ok] for k, v in features.items()})
        tile = combine(per_group)
        scores[ok] = tile
        self._record(idx[ok], tile, per_group)
        return scores

    def _record(self, idx: np.ndarray, tile: np.ndarray, per_group: np.ndarray) -> None:
        ref = self.reference
        assert ref is not None
        self._n_borderline += int(np.sum(tile >= ref.borderline))
        self._n_out += int(np.sum(tile >= ref.out_of_domain))
        for j in range(len(idx)):
            self.n_scored += 1
            if self._kept < self.max_tiles:
                slot = self._kept
                self._kept += 1
                self._grow(self._kept)
            else:  # reservoir sampling: every scored tile is kept with equal probability
                slot = int(self._rng.integers(self.n_scored))
                if slot >= self.max_tiles:
                    continue
            self._index[slot] = idx[j]
            self._score[slot] = tile[j]
            self._groups[slot] = per_group[j]

    def _grow(self, need: int) -> None:
        if need <= self._cap:
            return
        cap = min(self.max_tiles, max(need, 2 * self._cap, 256))
        g = self._groups.shape[1]
        index, score, groups = (
            np.zeros(cap, np.int64),
            np.zeros(cap, np.float32),
            np.zeros((cap, g), np.float32),
        )
        k = self._kept - 1
        index[:k], score[:k], groups[:k] = self._index[:k], self._score[:k], self._groups[:k]
        self._index, self._score, self._groups, self._cap = index, score, groups, cap

    def finish(self) -> DomainResult:
        ref = self.reference
        if ref is None:
            return unknown_result("the model card has no domain reference", self.n_tiles)
        thresholds = {"borderline": ref.borderline, "out_of_domain": ref.out_of_domain}
        if self._kept == 0:
            return DomainResult(
                score=None,
                verdict="unknown",
                thresholds=thresholds,
                n_tiles=self.n_tiles,
                reason="no tile had enough tissue to score",
            )
        k = self._kept
        score = float(np.median(self._score[:k]))
        components = {
            name: float(np.median(self._groups[:k, j])) for j, name in enumerate(ref.groups)
        }
        components["fraction_tiles_borderline"] = self._n_borderline / max(self.n_scored, 1)
        components["fraction_tiles_out"] = self._n_out / max(self.n_scored, 1)
        order = np.argsort(self._index[:k], kind="stable")
        return DomainResult(
            score=score if math.isfinite(score) else None,
            verdict=ref.verdict(score),
            components=components,
            thresholds=thresholds,
            n_tiles=self.n_tiles,
            n_scored=self.n_scored,
            tile_indices=self._index[:k][order].copy(),
            tile_scores=self._score[:k][order].copy(),
        )
