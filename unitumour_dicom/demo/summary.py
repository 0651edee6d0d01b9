"""What the demo prints at the end, one block per slide: Dice against the known mask, areas,
the stage timings from the job row, the SEG's UIDs and the case's page in the web app."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .progress import SlideProgress
from .samples import SampleSlide
from .score import SegScore

#: Job.timings keys in pipeline order, with the words the summary uses for them.
STAGES = (
    ("receive", "receive (first to last instance)"),
    ("settle_wait", "quiet time until settled"),
    ("queue_wait", "queued until a worker took it"),
    ("inputs", "read the job's inputs"),
    ("verify", "verify input sha256"),
    ("model_load", "load the model"),
    ("open", "open the slide"),
    ("inference", "inference"),
    ("seg", "SEG pyramid"),
    ("total", "job total (worker)"),
)


@dataclass(frozen=True)
class SlideReport:
    sample: SampleSlide
    progress: SlideProgress
    score: SegScore | None
    score_error: str | None
    case_url: str | None
    seg_files: int = 0


def _timings(timings: dict[str, float]) -> list[str]:
    known = dict(STAGES)
    names = [k for k, _ in STAGES if k in timings]
    names += sorted(k for k in timings if k not in known and "." not in k)
    return [f"      {known.get(k, k):<34} {float(timings[k]):8.2f} s" for k in names]


def format_slide(report: SlideReport) -> str:
    p, sample = report.progress, report.sample
    lines = [f"{sample.name}: {sample.description}"]
    lines.append(f"  patient ID           {sample.patient_id}")
    lines.append(f"  slide series UID     {sample.series_uid}")
    lines.append(f"  outcome              {p.stage}")
    if p.why and p.stage != "delivered":
        lines.append(f"  why                  {p.why}")
    if report.score is not None:
        s = report.score
        lines.append(
            f"  Dice                 {s.dice:.3f}  (received SEG vs known mask at {s.mpp:g} µm/px)"
        )
        lines.append(
            f"  tumour area          {s.seg_tumour_mm2:.3f} mm² found, "
            f"{s.truth_tumour_mm2:.3f} mm² known"
        )
    elif report.score_error:
        lines.append(f"  Dice                 not measured: {report.score_error}")
    if p.tissue_area_mm2 is not None:
        lines.append(
            f"  areas (job's record) tumour {p.tumour_area_mm2:.3f} mm², "
            f"tissue {p.tissue_area_mm2:.3f} mm²"
        )
    if p.model:
        lines.append(f"  model                {p.model['name']} {p.model['version']}")
    if p.seg_series_uid:
        lines.append(f"  SEG series UID       {p.seg_series_uid}")
        lines.append(
            f"  SEG instances        {len(p.seg_instance_uids)} "
            f"({report.seg_files} received by the PACS)"
        )
        for uid in p.seg_instance_uids:
            lines.append(f"      {uid}")
    if p.timings:
        lines.append("  stage timings (job row)")
        lines += _timings(p.timings)
    if report.case_url:
        lines.append(f"  case in the web app  {report.case_url}")
    return "\n".join(lines)


def format_report(reports: Sequence[SlideReport]) -> str:
    return "\n\n".join(format_slide(r) for r in reports)
