"""The paper's metric and its uncertainty: Dice per slide (or image), averaged per cohort,
with percentile-bootstrap 95% confidence intervals.

Conventions, stated once: Dice of two empty masks is 1 (the model correctly found no tumour);
Dice of an empty reference and a non-empty prediction is 0, and vice versa. On tumour-free
images Dice is therefore all-or-nothing, which is why the false tumour area (the fraction of
the image, or of its tissue, called tumour) is reported beside it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def dice(prediction: np.ndarray, reference: np.ndarray) -> float:
    """Sørensen-Dice coefficient of two boolean masks of the same shape."""
    pred = np.asarray(prediction, dtype=bool)
    ref = np.asarray(reference, dtype=bool)
    if pred.shape != ref.shape:
        raise ValueError(f"masks differ in shape: {pred.shape} vs {ref.shape}")
    total = int(pred.sum()) + int(ref.sum())
    if total == 0:
        return 1.0
    return 2.0 * int(np.logical_and(pred, ref).sum()) / total


def false_tumour_fraction(prediction: np.ndarray, region: np.ndarray | None = None) -> float:
    """Fraction of ``region`` (default: the whole array) predicted tumour; for tumour-free
    references every predicted pixel is false. An empty region gives 0."""
    pred = np.asarray(prediction, dtype=bool)
    if region is None:
        return float(pred.mean()) if pred.size else 0.0
    region = np.asarray(region, dtype=bool)
    n = int(region.sum())
    return float(np.logical_and(pred, region).sum()) / n if n else 0.0


def bootstrap_ci(
    values: Sequence[float] | np.ndarray,
    *,
    clusters: Sequence[str] | None = None,
    n_resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile-bootstrap confidence interval of the mean of ``values``.

    With ``clusters`` (e.g. the case each image came from) whole clusters are resampled, since
    images of one patient are not independent; the statistic is then the mean over all images
    of the drawn clusters. One value gives a zero-width interval; none gives (nan, nan).
    Deterministic for a given seed.
    """
    x = np.asarray(values, dtype=np.float64)
    if x.size == 0:
        return (math.nan, math.nan)
    if not 0 < confidence < 1:
        raise ValueError("confidence must lie in (0, 1)")
    rng = np.random.default_rng(seed)
    sums: np.ndarray
    counts: np.ndarray
    if clusters is None:
        sums, counts = x, np.ones_like(x)
    else:
        if len(clusters) != x.size:
            raise ValueError("clusters must give one label per value")
        _, inverse = np.unique(np.asarray(clusters, dtype=str), return_inverse=True)
        sums = np.bincount(inverse, weights=x)
        counts = np.bincount(inverse).astype(np.float64)
    k = sums.size
    if k == 1:
        m = float(sums[0] / counts[0])
        return (m, m)
    stats = np.empty(n_resamples)
    chunk = max(1, 2_000_000 // k)
    for start in range(0, n_resamples, chunk):
        stop = min(n_resamples, start + chunk)
        draws = rng.integers(0, k, size=(stop - start, k))
        stats[start:stop] = sums[draws].sum(axis=1) / counts[draws].sum(axis=1)
    alpha = (1 - confidence) / 2
    lo, hi = np.quantile(stats, [alpha, 1 - alpha])
    return (float(lo), float(hi))
