"""What "in domain" means for a model: a Gaussian model of its training tiles per feature group,
and the score thresholds chosen on validation data.

Per group (stain/colour statistics; image quality; pooled bottleneck activations) the training
tiles' features are standardised, reduced by PCA to ``k`` components (32 by default), and
modelled as probabilistic PCA: a full covariance in the k-dimensional subspace, estimated with
Ledoit-Wolf shrinkage (a few hundred tiles do not pin down a 32 x 32 covariance without it),
plus one isotropic variance for everything the subspace leaves out. A tile's distance is the
Mahalanobis distance under that model: sqrt(y' C^-1 y + |r|^2 / sigma^2) with y the projection
and r the residual. Keeping the residual term matters: a shifted tile often moves along
directions the training data barely varied in, which the projection alone would discard.

Each group's distance is divided by its 95th percentile on validation tiles, so groups of any
dimension are comparable; a tile's score is the root sum of squares of these scaled distances
(the Mahalanobis distance of all groups together, were they independent). On the shifted-copy
benchmark this beat the largest of them for every shift: a stain shift moves the colour
statistics a lot and the network's features a little, and the sum keeps both. Thresholds on
the per-item score ("borderline", "out of domain") are percentiles of the validation items'
scores, so their false alarm rate on data like the validation data is known by construction.

The reference is small JSON (arrays as base64 of little-endian float32), stored in the model
card's ``domain_reference`` field.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

REFERENCE_SCHEMA = 1
GROUP_SCALE_QUANTILE = 0.95


class DomainReferenceError(ValueError):
    """A serialised reference is malformed or does not fit the features given to it."""


def ledoit_wolf(x: np.ndarray) -> tuple[np.ndarray, float]:
    """Ledoit-Wolf shrunk covariance of ``x`` (n x p, rows are samples) and the shrinkage.

    The covariance is (1 - a) S + a mu I, with S the (biased) sample covariance, mu its mean
    eigenvalue, and a the shrinkage that minimises the expected Frobenius error (Ledoit & Wolf,
    J. Multivariate Anal. 2004; the same formula as scikit-learn's ``ledoit_wolf``).
    """
    x = np.asarray(x, np.float64)
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"need at least two samples as rows, got shape {x.shape}")
    n, p = x.shape
    x = x - x.mean(axis=0)
    s = x.T @ x / n
    mu = np.trace(s) / p
    x2 = x * x
    delta_ = np.sum(s * s)  # |S|_F^2
    beta_ = np.sum(x2.T @ x2) / n  # (1/n) sum_k |x_k|^4-ish terms, per sklearn
    beta = (beta_ - delta_) / (p * n)
    delta = (delta_ - 2 * mu * np.trace(s) + p * mu * mu) / p
    beta = min(beta, delta)
    shrinkage = 0.0 if delta <= 0 else float(beta / delta)
    cov = (1 - shrinkage) * s
    cov[np.diag_indices(p)] += shrinkage * mu
    return cov, shrinkage


def encode_array(a: np.ndarray) -> dict[str, Any]:
    arr = np.ascontiguousarray(a, dtype="<f4")
    return {"shape": list(arr.shape), "f32": base64.b64encode(arr.tobytes()).decode("ascii")}


def decode_array(d: Any, what: str) -> np.ndarray:
    try:
        shape = tuple(int(v) for v in d["shape"])
        raw = base64.b64decode(d["f32"], validate=True)
    except (KeyError, TypeError, ValueError) as exc:
        raise DomainReferenceError(f"{what}: not an encoded array ({exc})") from exc
    if len(shape) > 2 or any(v < 0 or v > 100_000 for v in shape):
        raise DomainReferenceError(f"{what}: implausible shape {shape}")
    if len(raw) != 4 * math.prod(shape):
        raise DomainReferenceError(f"{what}: {len(raw)} bytes do not make shape {shape}")
    arr = np.frombuffer(raw, "<f4").reshape(shape).astype(np.float64)
    if not np.all(np.isfinite(arr)):
        raise DomainReferenceError(f"{what}: holds non-finite values")
    return arr


@dataclass
class GroupModel:
    """Probabilistic-PCA Gaussian of one feature group (see the module docstring)."""

    mean: np.ndarray  # p
    scale: np.ndarray  # p, standard deviations used to standardise
    components: np.ndarray  # p x k, orthonormal columns
    covariance: np.ndarray  # k x k, Ledoit-Wolf
    residual_var: float  # sigma^2 per left-out dimension (0 when k == p)
    shrinkage: float = 0.0
    _precision: np.ndarray | None = field(default=None, repr=False, compare=False)

    @property
    def dim(self) -> int:
        return int(self.mean.shape[0])

    @classmethod
    def fit(cls, x: np.ndarray, n_components: int = 32) -> GroupModel:
        x = np.asarray(x, np.float64)
        x = x[np.all(np.isfinite(x), axis=1)]
        n, p = x.shape
        if n < 8:
            raise ValueError(f"need at least 8 tiles to fit a group, got {n}")
        mean = x.mean(axis=0)
        sd = x.std(axis=0)
        floor = 1e-3 * float(np.median(sd[sd > 0])) if np.any(sd > 0) else 1.0
        scale = np.maximum(sd, floor)
        z = (x - mean) / scale
        k = int(min(n_components, p, n - 1))
        _, _, vt = np.linalg.svd(z, full_matrices=False)
        comps = vt[:k].T
        y = z @ comps
        cov, shrink = ledoit_wolf(y)
        if k < p:
            resid = z - y @ comps.T
            residual_var = float(max(np.sum(resid**2) / (n * (p - k)), 1e-6))
        else:
            residual_var = 0.0
        return cls(mean, scale, comps, cov, residual_var, shrink)

    def distance(self, x: np.ndarray) -> np.ndarray:
        """Mahalanobis distance of each row of ``x`` (n x p); NaN rows give NaN."""
        x = np.atleast_2d(np.asarray(x, np.float64))
        if x.shape[1] != self.dim:
            raise DomainReferenceError(
                f"features have {x.shape[1]} dimensions, expected {self.dim}"
            )
        if self._precision is None:
            self._precision = np.linalg.inv(self.covariance)
        z = (x - self.mean) / self.scale
        y = z @ self.components
        d2 = np.einsum("ij,jk,ik->i", y, self._precision, y)
        if self.residual_var > 0:
            r = z - y @ self.components.T
            d2 = d2 + np.sum(r * r, axis=1) / self.residual_var
        return np.sqrt(np.maximum(d2, 0.0))

    def to_dict(self) -> dict[str, Any]:
        return {
            "mean": encode_array(self.mean),
            "scale": encode_array(self.scale),
            "components": encode_array(self.components),
            "covariance": encode_array(self.covariance),
            "residual_var": float(self.residual_var),
            "shrinkage": round(float(self.shrinkage), 6),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], what: str) -> GroupModel:
        if not isinstance(d, Mapping):
            raise DomainReferenceError(f"{what} must be an object")
        mean = decode_array(d.get("mean"), f"{what}.mean")
        scale = decode_array(d.get("scale"), f"{what}.scale")
        comps = decode_array(d.get("components"), f"{what}.components")
        cov = decode_array(d.get("covariance"), f"{what}.covariance")
        p = mean.shape[0] if mean.ndim == 1 else -1
        k = comps.shape[1] if comps.ndim == 2 else -1
        if (
            p < 1
            or scale.shape != (p,)
            or comps.shape != (p, k)
            or cov.shape != (k, k)
            or np.any(scale <= 0)
        ):
            raise DomainReferenceError(f"{what}: array shapes do not fit together")
        try:
            residual_var = float(d.get("residual_var", 0.0))
            shrinkage = float(d.get("shrinkage", 0.0))
        except (TypeError, ValueError) as exc:
            raise DomainReferenceError(f"{what}: residual_var must be a number") from exc
        if not (math.isfinite(residual_var) and residual_var >= 0):
            raise DomainReferenceError(f"{what}: residual_var must be >= 0")
        if np.linalg.eigvalsh(cov).min() <= 0:
            raise DomainReferenceError(f"{what}: covariance is not positive definite")
        return cls(mean, scale, comps, cov, residual_var, shrinkage)


VERDICTS = ("in_domain", "borderline", "out_of_domain", "unknown")


@dataclass
class DomainReference:
    """Group models, their scales, and the verdict thresholds on the per-item score.

    ``groups`` maps a group name (``stain``, ``quality``, ``network``) to its model;
    ``group_scales`` to the distance that is its 95th percentile on validation tiles.
    ``borderline`` and
    ``out_of_domain`` are thresholds on the item score (median over tissue tiles of the
    combined scaled group distances). ``layer`` names the network layer the features come from.
    """

    groups: dict[str, GroupModel]
    group_scales: dict[str, float]
    borderline: float
    out_of_domain: float
    layer: str = "context"
    aggregate: str = "median"
    min_foreground_pixels: int = 256
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if set(self.groups) != set(self.group_scales):
            raise DomainReferenceError("every group needs a scale, and only groups have one")
        if not self.groups:
            raise DomainReferenceError("a reference needs at least one feature group")
        for name, s in self.group_scales.items():
            if not (math.isfinite(s) and s > 0):
                raise DomainReferenceError(f"group {name!r} scale must be positive")
        if not (0 < self.borderline <= self.out_of_domain < math.inf):
            raise DomainReferenceError("thresholds must satisfy 0 < borderline <= out_of_domain")
        if self.aggregate != "median":
            raise DomainReferenceError(f"unknown aggregate {self.aggregate!r}")

    @property
    def group_names(self) -> tuple[str, ...]:
        return tuple(self.groups)

    def group_scores(self, features: Mapping[str, np.ndarray]) -> np.ndarray:
        """n x G scaled distances (columns in ``group_names`` order) for per-group features."""
        cols = []
        for name, model in self.groups.items():
            if name not in features:
                raise DomainReferenceError(f"no features given for group {name!r}")
            cols.append(model.distance(features[name]) / self.group_scales[name])
        return np.stack(cols, axis=1)

    def tile_scores(self, features: Mapping[str, np.ndarray]) -> np.ndarray:
        """The per-tile score: root sum of squares of the scaled group distances."""
        return combine(self.group_scores(features))

    def verdict(self, score: float | None) -> str:
        if score is None or not math.isfinite(score):
            return "unknown"
        if score >= self.out_of_domain:
            return "out_of_domain"
        if score >= self.borderline:
            return "borderline"
        return "in_domain"

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": REFERENCE_SCHEMA,
            "layer": self.layer,
            "aggregate": self.aggregate,
            "min_foreground_pixels": self.min_foreground_pixels,
            "thresholds": {
                "borderline": round(float(self.borderline), 6),
                "out_of_domain": round(float(self.out_of_domain), 6),
            },
            "group_scales": {k: round(float(v), 6) for k, v in self.group_scales.items()},
            "groups": {k: v.to_dict() for k, v in self.groups.items()},
            "info": self.info,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> DomainReference:
        if not isinstance(d, Mapping):
            raise DomainReferenceError("domain_reference must be an object")
        if d.get("schema") != REFERENCE_SCHEMA:
            raise DomainReferenceError(
                f"domain_reference schema {d.get('schema')!r} is not {REFERENCE_SCHEMA}"
            )
        groups_d = d.get("groups")
        scales_d = d.get("group_scales")
        thresholds = d.get("thresholds")
        if not isinstance(groups_d, Mapping) or not isinstance(scales_d, Mapping):
            raise DomainReferenceError("domain_reference needs groups and group_scales objects")
        if not isinstance(thresholds, Mapping):
            raise DomainReferenceError("domain_reference needs a thresholds object")
        try:
            scales = {str(k): float(v) for k, v in scales_d.items()}
            borderline = float(thresholds["borderline"])
            out = float(thresholds["out_of_domain"])
            min_fg = int(d.get("min_foreground_pixels", 256))
        except (KeyError, TypeError, ValueError) as exc:
            raise DomainReferenceError(f"domain_reference thresholds or scales: {exc}") from exc
        groups = {str(k): GroupModel.from_dict(v, f"groups.{k}") for k, v in groups_d.items()}
        layer = d.get("layer", "context")
        if not isinstance(layer, str) or not layer:
            raise DomainReferenceError("domain_reference layer must be a non-empty string")
        info = d.get("info", {})
        return cls(
            groups=groups,
            group_scales=scales,
            borderline=borderline,
            out_of_domain=out,
            layer=layer,
            aggregate=str(d.get("aggregate", "median")),
            min_foreground_pixels=min_fg,
            info=dict(info) if isinstance(info, Mapping) else {},
        )


def fit_reference(
    train: Mapping[str, np.ndarray],
    val: Mapping[str, np.ndarray],
    val_items: Sequence[int] | np.ndarray | None = None,
    *,
    n_components: int = 32,
    borderline_quantile: float = 0.975,
    out_quantile: float = 0.995,
    layer: str = "context",
    info: Mapping[str, Any] | None = None,
) -> DomainReference:
    """Fit group models on training tiles and choose scales and thresholds on validation tiles.

    ``train`` and ``val`` map group names to per-tile features (rows are tiles; rows with NaN,
    e.g. glass tiles, are ignored). ``val_items`` gives each validation tile's item (image or
    slide) number, so thresholds are percentiles of per-item scores (the median of each item's
    tile scores); without it every tile is its own item.
    """
    groups = {name: GroupModel.fit(x, n_components) for name, x in train.items()}
    scales = {}
    for name, model in groups.items():
        d = model.distance(val[name])
        d = d[np.isfinite(d)]
        scales[name] = float(np.quantile(d, GROUP_SCALE_QUANTILE))
    ref = DomainReference(groups, scales, 1.0, 1.0, layer=layer, info=dict(info or {}))
    tile = ref.tile_scores(val)
    items = np.arange(len(tile)) if val_items is None else np.asarray(val_items)
    per_item = item_medians(tile, items)
    ref.borderline = float(np.quantile(per_item, borderline_quantile))
    ref.out_of_domain = float(max(np.quantile(per_item, out_quantile), ref.borderline))
    ref.info.setdefault(
        "thresholds_basis",
        f"validation per-item scores: borderline = {100 * borderline_quantile:g}th, "
        f"out_of_domain = {100 * out_quantile:g}th percentile "
        f"(n = {len(per_item)} items)",
    )
    return ref


def combine(group_scores: np.ndarray) -> np.ndarray:
    """Per-tile score from n x G scaled group distances."""
    return np.sqrt(np.sum(np.square(group_scores), axis=1))


def item_medians(tile_scores: np.ndarray, items: np.ndarray) -> np.ndarray:
    """The median of finite tile scores per item (items without one are left out)."""
    out = []
    for item in np.unique(items):
        s = tile_scores[(items == item) & np.isfinite(tile_scores)]
        if len(s):
            out.append(float(np.median(s)))
    return np.asarray(out)
