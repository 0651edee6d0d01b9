"""``unitumour health listener|worker --max-age S``: exit 1 when a process stopped beating.

For exec liveness probes (Kubernetes) and monitoring scripts; the beats and their meaning are
in :mod:`unitumour_dicom.liveness`. Reads only files: no database, broker or DICOM traffic, so
a probe never restarts a process for a dependency's outage, and is never audited."""

from __future__ import annotations

from typing import Annotated

import typer

from ..liveness import check_liveness
from .common import fail, run_guarded, state

health_app = typer.Typer(help="Liveness of this host's processes.", no_args_is_help=True)

_MAX_AGE = typer.Option(
    "--max-age", min=1.0, help="Seconds since the last beat after which a process is hung."
)


def _check(prefixes: tuple[str, ...], max_age_s: float) -> None:
    directory = run_guarded(state.settings).liveness_dir
    if directory is None:
        fail("liveness_dir is not set: the processes write no liveness files")
    statuses = check_liveness(directory, prefixes, max_age_s)
    for s in statuses:
        typer.echo(f"{s.name}: {'ok' if s.ok else 'FAILED'}, {s.detail}")
    if not all(s.ok for s in statuses):
        raise typer.Exit(1)


@health_app.command("listener")
def listener(max_age_s: Annotated[float, _MAX_AGE] = 60.0) -> None:
    """The listener's main loop beat within --max-age seconds."""
    _check(("listener",), max_age_s)


@health_app.command("worker")
def worker(max_age_s: Annotated[float, _MAX_AGE] = 900.0) -> None:
    """Every worker process of this pod or host beat within --max-age seconds (a running
    job beats after each inference batch and stage; pick more than its slowest stage)."""
    _check(("segmentation", "delivery"), max_age_s)
