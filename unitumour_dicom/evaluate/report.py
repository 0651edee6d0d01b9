"""Per-item results gathered into the report operators read: per class (cohort) and overall,
n, mean Dice and its 95% bootstrap CI; false tumour area on tumour-free items."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .metrics import bootstrap_ci, dice, false_tumour_fraction


@dataclass(frozen=True)
class ItemResult:
    """One image or slide: its Dice and what is needed to summarise it."""

    key: str  # image path or slide UID
    cls: str  # cohort / class
    case: str  # the patient or case, the unit of resampling
    dice: float
    tumour_free: bool  # the reference mask is empty
    predicted_fraction: float  # of the image (or tissue) called tumour
    reference_fraction: float

    @classmethod
    def from_masks(
        cls,
        key: str,
        cohort: str,
        case: str,
        prediction: np.ndarray,
        reference: np.ndarray,
        region: np.ndarray | None = None,
    ) -> ItemResult:
        return cls(
            key=key,
            cls=cohort,
            case=case,
            dice=dice(prediction, reference),
            tumour_free=not bool(np.any(reference)),
            predicted_fraction=false_tumour_fraction(prediction, region),
            reference_fraction=false_tumour_fraction(reference, region),
        )


def _stat(values: list[float], cases: list[str], n_resamples: int, seed: int) -> dict[str, Any]:
    lo, hi = bootstrap_ci(values, clusters=cases, n_resamples=n_resamples, seed=seed)
    mean = float(np.mean(values)) if values else math.nan
    return {"mean": _num(mean), "ci95": [_num(lo), _num(hi)]}


def _num(value: float) -> float | None:
    """JSON has no NaN: an undefined statistic is null."""
    return None if math.isnan(value) else round(float(value), 6)


def _group(items: Sequence[ItemResult], n_resamples: int, seed: int) -> dict[str, Any]:
    cases = [r.case for r in items]
    out: dict[str, Any] = {
        "n": len(items),
        "n_cases": len(set(cases)),
        "n_tumour_free": sum(r.tumour_free for r in items),
    }
    d = _stat([r.dice for r in items], cases, n_resamples, seed)
    out["dice_mean"], out["dice_ci95"] = d["mean"], d["ci95"]
    bearing = [r for r in items if not r.tumour_free]
    if bearing and len(bearing) != len(items):
        s = _stat([r.dice for r in bearing], [r.case for r in bearing], n_resamples, seed)
        out["dice_tumour_bearing_mean"] = s["mean"]
        out["dice_tumour_bearing_ci95"] = s["ci95"]
    free = [r for r in items if r.tumour_free]
    if free:
        s = _stat([r.predicted_fraction for r in free], [r.case for r in free], n_resamples, seed)
        out["false_tumour_area_mean"] = s["mean"]
        out["false_tumour_area_ci95"] = s["ci95"]
    return out


def summarise(
    items: Sequence[ItemResult], *, n_resamples: int = 2000, seed: int = 0
) -> dict[str, Any]:
    """``{"classes": {cls: stats}, "overall": stats}``; stats hold n, n_cases, n_tumour_free,
    dice_mean, dice_ci95 and, where the group has tumour-free items, false_tumour_area_mean
    and _ci95 (fraction of area, 0..1). CIs resample cases (cluster bootstrap)."""
    by_class: dict[str, list[ItemResult]] = {}
    for r in items:
        by_class.setdefault(r.cls, []).append(r)
    return {
        "classes": {c: _group(v, n_resamples, seed) for c, v in sorted(by_class.items())},
        "overall": _group(list(items), n_resamples, seed),
    }


def format_table(summary: dict[str, Any]) -> str:
    """A plain-text table per class for people (the JSON is for scripts)."""

    def ci(v: list[float | None] | None) -> str:
        if not v or v[0] is None or v[1] is None:
            return "-"
        return f"[{v[0]:.3f}, {v[1]:.3f}]"

    def pct(v: float | None) -> str:
        return "-" if v is None else f"{100 * v:.2f}%"

    header = (
        f"{'class':<20} {'n':>5} {'cases':>5} {'Dice':>6} {'95% CI':>16} "
        f"{'false tumour area':>18} {'95% CI':>18}"
    )
    lines = [header, "-" * len(header)]
    rows = [*summary["classes"].items(), ("overall", summary["overall"])]
    for name, s in rows:
        fta = s.get("false_tumour_area_mean")
        fta_ci = s.get("false_tumour_area_ci95")
        fta_ci_text = (
            "-" if not fta_ci or fta_ci[0] is None else (f"[{pct(fta_ci[0])}, {pct(fta_ci[1])}]")
        )
        dice_text = "-" if s["dice_mean"] is None else f"{s['dice_mean']:.3f}"
        lines.append(
            f"{name:<20} {s['n']:>5} {s['n_cases']:>5} {dice_text:>6} "
            f"{ci(s['dice_ci95']):>16} {pct(fta):>18} {fta_ci_text:>18}"
        )
    return "\n".join(lines)
