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
    domain_score: float | None = None  # see unitumour_dicom.domain; None: not scored
    domain_verdict: str = "unknown"

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


def auroc(negatives: Sequence[float], positives: Sequence[float]) -> float:
    """Area under the ROC curve of a score for telling positives from negatives (ties count
    half): the probability that a random positive scores above a random negative."""
    from scipy.stats import rankdata

    neg = np.asarray(negatives, np.float64)
    pos = np.asarray(positives, np.float64)
    if len(neg) == 0 or len(pos) == 0:
        return math.nan
    ranks = rankdata(np.concatenate([neg, pos]))  # ties get their average rank
    u = ranks[len(neg) :].sum() - len(pos) * (len(pos) + 1) / 2  # Mann-Whitney U
    return float(u / (len(neg) * len(pos)))


def domain_summary(
    items: Sequence[ItemResult], baseline: Sequence[str] | None = None
) -> dict[str, Any] | None:
    """Domain scores per class (cohort): n scored, median score, fraction flagged (borderline
    or out of domain), fraction out of domain, and the AUROC of the score for telling the class
    from the ``baseline`` classes (the training cohort) pooled. None when nothing was scored
    (the model card has no domain reference)."""
    scored = [r for r in items if r.domain_score is not None]
    if not scored:
        return None
    base = set(baseline or ())
    base_scores = [r.domain_score for r in scored if r.cls in base]
    by_class: dict[str, list[ItemResult]] = {}
    for r in items:
        by_class.setdefault(r.cls, []).append(r)
    classes: dict[str, Any] = {}
    for name, group in sorted(by_class.items()):
        s = [r.domain_score for r in group if r.domain_score is not None]
        verdicts = [r.domain_verdict for r in group]
        entry: dict[str, Any] = {
            "n": len(group),
            "n_scored": len(s),
            "score_median": _num(float(np.median(s))) if s else None,
            "flagged_fraction": _num(
                sum(v in ("borderline", "out_of_domain") for v in verdicts) / len(group)
            ),
            "out_of_domain_fraction": _num(
                sum(v == "out_of_domain" for v in verdicts) / len(group)
            ),
        }
        if base and name not in base and base_scores and s:
            entry["auroc_vs_baseline"] = _num(auroc(base_scores, s))  # type: ignore[arg-type]
        classes[name] = entry
    return {"baseline": sorted(base), "classes": classes}


def format_domain_table(domain: dict[str, Any]) -> str:
    """Per class: the domain score and how often it flags, for people."""

    def num(v: float | None, fmt: str) -> str:
        return "-" if v is None else format(v, fmt)

    header = (
        f"{'domain check':<20} {'n':>5} {'median score':>12} {'flagged':>8} {'out':>8} "
        f"{'AUROC vs training cohort':>24}"
    )
    lines = [header, "-" * len(header)]
    for name, s in domain["classes"].items():
        flagged = s["flagged_fraction"]
        out = s["out_of_domain_fraction"]
        lines.append(
            f"{name:<20} {s['n']:>5} {num(s['score_median'], '.2f'):>12} "
            f"{num(None if flagged is None else 100 * flagged, '.1f'):>7}% "
            f"{num(None if out is None else 100 * out, '.1f'):>7}% "
            f"{num(s.get('auroc_vs_baseline'), '.3f'):>24}"
        )
    lines.append(f"training cohort: {', '.join(domain['baseline']) or '-'}")
    return "\n".join(lines)
