"""``unitumour process SLIDE_DIR --out DIR``: the pipeline on a folder, without the network."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from ..errors import ConfigError
from ..permissions import private_dir
from ..progress_bars import Bars, progress_wanted
from .common import fail, run_guarded, state

if TYPE_CHECKING:
    from ..pipeline.local import FolderReport
    from ..pipeline.process import JobOutcome


def _check_schema(url: str) -> None:
    from ..db import migrate

    if not migrate.is_current(url):
        raise ConfigError(
            f"the database is at revision {migrate.current_revision(url) or 'base'}, not "
            f"{migrate.head_revision(url)}: run 'unitumour db upgrade' first"
        )


def process(
    slide_dir: Annotated[
        Path, typer.Argument(help="Folder of DICOM instances (one or more slides, any depth).")
    ],
    out: Annotated[
        Path,
        typer.Option("--out", "-o", help="Folder that receives the result objects (SEG, SR, ...)."),
    ],
    force: Annotated[
        bool,
        typer.Option(
            "--force", help="Run again a slide already processed (a new, superseding job)."
        ),
    ] = False,
    png: Annotated[
        Path | None,
        typer.Option(
            "--png",
            help="QA picture per slide (thumbnail, tumour outlined and tinted): a .png file "
            "for one slide, else a folder that receives <series UID>.png.",
        ),
    ] = None,
    png_size: Annotated[
        int, typer.Option("--png-size", min=64, max=4096, help="Longest side of the picture.")
    ] = 1024,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    no_progress: Annotated[
        bool, typer.Option("--no-progress", help="No progress bars (shown on a terminal).")
    ] = False,
) -> None:
    """Admit the folder's instances, segment each slide, write its result objects to --out
    (SEG, SR, bulk annotations, key image: ``results.kinds``), a folder per series.

    Everything is recorded as for a slide received over the network: instances with their
    digests, the job with its provenance, the result, and the deliveries the routing rules
    plan (sent later by a running worker).
    """
    from ..db import JobState
    from ..jobs import worker_name
    from ..pipeline.local import process_folder, write_overlays
    from ..seg.overlay import PictureError

    runtime = run_guarded(state.runtime)
    settings = runtime.settings
    if settings.database_url.startswith("sqlite:///"):
        private_dir(settings.data_dir)
    run_guarded(_check_schema, settings.database_url)

    def show(outcome: JobOutcome) -> None:
        if not as_json:
            typer.echo(f"job {outcome.job_id}: {outcome.message}")

    with Bars(progress_wanted(no_progress=no_progress, as_json=as_json)) as bars:
        report = run_guarded(
            process_folder,
            slide_dir,
            out,
            runtime=runtime,
            worker=worker_name("process"),
            force=force,
            on_outcome=show,
            on_progress=bars,
        )
    drawn = [o.job_id for o in report.outcomes if o.state == JobState.SUCCEEDED]
    drawn += report.reused
    pictures: list[Path] = []
    if png is not None and drawn:
        try:
            pictures = run_guarded(write_overlays, drawn, runtime, png, max_pixels=png_size)
        except PictureError as exc:
            fail(f"the QA picture could not be drawn: {exc}", code=1)
    summary = {
        "admitted": len(report.admitted),
        "duplicates": len(report.duplicates),
        "refused": report.refused,
        "unprocessable": report.unprocessable,
        "jobs": [
            {
                "job_id": o.job_id,
                "state": o.state,
                "message": o.message,
                "result_id": o.result_id,
                "deliveries": list(o.delivery_ids),
                "timings_s": o.timings,
            }
            for o in report.outcomes
        ],
        "reused_jobs": report.reused,
        "written": [str(p) for p in report.written],
        "pictures": [str(p) for p in pictures],
    }
    if as_json:
        typer.echo(json.dumps(summary, indent=2, default=str))
    else:
        typer.echo(
            f"{len(report.admitted)} instance(s) admitted, {len(report.duplicates)} already "
            f"held, {len(report.refused)} refused"
        )
        for path, reason in report.refused.items():
            typer.echo(f"  refused {path}: {reason}")
        for series, reason in report.unprocessable.items():
            typer.echo(f"  slide {series} cannot be processed: {reason}")
        for job_id in report.reused:
            typer.echo(
                f"job {job_id}: already succeeded; its result is copied (use --force to rerun)"
            )
        for written in report.written:
            typer.echo(f"wrote {written}")
        for picture in pictures:
            typer.echo(f"drew {picture}")
    succeeded = [o for o in report.outcomes if o.state == JobState.SUCCEEDED]
    if not succeeded and not report.reused:
        fail(f"nothing was processed: {_why_nothing(report, slide_dir)}", code=1)
    if not report.ok:
        fail("not every slide was processed", code=1)


def _why_nothing(report: FolderReport, slide_dir: Path) -> str:
    """Why a run made no SEG at all, for the one-line error (a script sees status 1)."""
    if report.unprocessable:
        n = len(report.unprocessable)
        return f"none of the {n} slide(s) in {slide_dir} could be processed"
    if report.outcomes:
        return f"none of the {len(report.outcomes)} job(s) succeeded"
    refused = f" ({len(report.refused)} file(s) refused)" if report.refused else ""
    return f"{slide_dir} holds no whole-slide image series{refused}"
