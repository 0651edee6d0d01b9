"""Does the domain check tell shifted slides from ones like the validation data?

EBHI-Seg test images (never used to fit anything) are scored as they are and as shifted
copies (``unitumour_dicom.domain.shifts``: stain, blur, JPEG, scale, grayscale, IHC-like brown),
and the prostate (RINGS) and breast (BCSS) sets are scored as other organs from other labs.
Per shift: the AUROC of the per-image score for telling the shifted copies from the clean test
images, and the fraction flagged (borderline or out of domain) and out of domain. The false
alarm rate is the fraction of clean test images flagged.

    python benchmarks/domain_shift.py --model demo --json-out domain.json [--every 1]

Each image is one "slide" of its tiles (EBHI's 224 px images are one tile each), scored by the
same accumulator inference uses. With ``--by-case`` each test case instead is one "slide" whose
tiles are all its images, and a shift's random parameters are drawn once per case, as a slide
from another laboratory is shifted throughout:

    python benchmarks/domain_shift.py --by-case --shifts stain_hed_0.3,stain_hed_0.5
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from unitumour_dicom.domain.accumulator import DomainAccumulator
from unitumour_dicom.domain.fit import load_images, score_images, tile_statistics
from unitumour_dicom.domain.shifts import SHIFTS, STRONG_SHIFTS, apply_shift
from unitumour_dicom.evaluate.manifest import read_manifest
from unitumour_dicom.evaluate.report import auroc
from unitumour_dicom.model import load_model

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def _summary(results: list[Any], clean: np.ndarray | None) -> dict[str, Any]:
    scores = np.array([np.nan if r.score is None else r.score for r in results])
    verdicts = [r.verdict for r in results]
    out: dict[str, Any] = {
        "n": len(results),
        "score_median": round(float(np.nanmedian(scores)), 3),
        "score_p05_p95": [round(float(v), 3) for v in np.nanquantile(scores, [0.05, 0.95])],
        "flagged": round(
            sum(v in ("borderline", "out_of_domain") for v in verdicts) / len(verdicts), 3
        ),
        "out_of_domain": round(sum(v == "out_of_domain" for v in verdicts) / len(verdicts), 3),
        "unknown": round(sum(v == "unknown" for v in verdicts) / len(verdicts), 3),
    }
    if clean is not None:
        # An unscored image (no tissue found) counts as maximally unusual.
        s = np.where(np.isfinite(scores), scores, np.inf)
        out["auroc_vs_ebhi_test"] = round(auroc(clean, s), 4)
    return out


def score_groups(
    model: Any, reference: Any, images: list[np.ndarray], groups: list[int]
) -> list[Any]:
    """One result per group of images (a group's images are the tiles of one slide)."""
    accs = {g: DomainAccumulator(reference) for g in sorted(set(groups))}
    owner_group = np.asarray(groups)
    for owners, _, feats in tile_statistics(model, images, layer=reference.layer):
        g_of = owner_group[owners]
        for g in np.unique(g_of):
            sel = g_of == g
            accs[int(g)].add({k: v[sel] for k, v in feats.items()})
    return [accs[g].finish() for g in sorted(accs)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="demo")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--every", type=int, default=1, help="Use every n-th EBHI test image.")
    ap.add_argument("--shifts", default=",".join(SHIFTS))
    ap.add_argument("--json-out", type=Path)
    ap.add_argument("--by-case", action="store_true", help="One slide per test case.")
    args = ap.parse_args()
    model = load_model(args.model, device=args.device)
    reference = model.card.domain()
    if reference is None:
        raise SystemExit(
            f"model {args.model} has no domain reference: run unitumour model fit-domain"
        )
    t0 = time.perf_counter()
    report: dict[str, Any] = {
        "model": {"name": model.card.name, "version": model.card.version},
        "thresholds": {
            "borderline": reference.borderline,
            "out_of_domain": reference.out_of_domain,
        },
        "cohorts": {},
    }
    ebhi = read_manifest(args.data / "ebhi-seg" / "manifest.csv", splits=["test"])[:: args.every]
    images = load_images([r.image for r in ebhi])
    cases = sorted({r.case for r in ebhi})
    group = [cases.index(r.case) for r in ebhi]
    seeds = group if args.by_case else list(range(len(images)))

    def score(imgs: list[np.ndarray]) -> list[Any]:
        if args.by_case:
            return score_groups(model, reference, imgs, group)
        return score_images(model, reference, imgs)

    report["unit"] = "case (its images as one slide)" if args.by_case else "image"
    clean_results = score(images)
    clean = np.array([np.inf if r.score is None else r.score for r in clean_results])
    report["cohorts"]["ebhi_test"] = _summary(clean_results, None)
    print("ebhi_test", report["cohorts"]["ebhi_test"], flush=True)
    for name in [s for s in args.shifts.split(",") if s]:
        shifted = [apply_shift(name, img, s) for s, img in zip(seeds, images, strict=True)]
        entry = _summary(score(shifted), clean)
        entry["strong"] = name in STRONG_SHIFTS
        report["cohorts"][name] = entry
        print(name, entry, flush=True)
    others = (
        ()
        if args.by_case
        else (("prostate_rings", "rings-prostate"), ("breast_bcss", "bcss-breast"))
    )
    for cohort, folder in others:
        recs = read_manifest(args.data / folder / "manifest.csv")
        imgs = load_images([r.image for r in recs], model.card.mpp, [r.mpp for r in recs])
        entry = _summary(score_images(model, reference, imgs), clean)
        entry["pixel_size"] = (
            "resampled to the card's from the manifest's mpp"
            if any(r.mpp for r in recs)
            else "unknown (about 1.5-2.7 um/px by the README); used as is"
        )
        report["cohorts"][cohort] = entry
        print(cohort, entry, flush=True)
    report["seconds"] = round(time.perf_counter() - t0, 1)
    text = json.dumps(report, indent=2)
    if args.json_out:
        args.json_out.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
