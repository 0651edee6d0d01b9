"""``unitumour jobs rerun``: a person asks for a slide's job to run again, from the command
line as from the web app (the same library function, the same audit code)."""

from __future__ import annotations

from typing import Annotated

import typer

from .common import fail, run_guarded, state

jobs_app = typer.Typer(help="Segmentation jobs.", no_args_is_help=True)


@jobs_app.command("rerun")
def rerun(
    job_id: Annotated[int, typer.Argument(metavar="ID")],
    actor: Annotated[
        str, typer.Option("--as", help="Who asks, for the audit log.", show_default=True)
    ] = "cli",
) -> None:
    """Queue a new job for the slide of job ID, superseding it. A running worker's reconcile
    sends it to the segmentation queue within seconds."""
    from ..errors import UniTumourError
    from ..jobs import rerun_job

    runtime = run_guarded(state.runtime)
    with runtime.session() as session:
        try:
            new = rerun_job(session=session, job_id=job_id, actor=actor)
        except UniTumourError as exc:
            fail(str(exc))
        new_id = new.id
    typer.echo(f"job {new_id} queued to re-run job {job_id}")
