"""``unitumour retention purge``: remove received slide files after an age, keep the results."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated

import typer

from .common import fail, run_guarded, state

if TYPE_CHECKING:
    from ..retention import PurgeReport

retention_app = typer.Typer(help="Data retention of received slides.", no_args_is_help=True)


def _size(n: int) -> str:
    if n < 1_000_000:
        return f"{n / 1e3:.1f} kB"
    if n < 1_000_000_000:
        return f"{n / 1e6:.1f} MB"
    return f"{n / 1e9:.2f} GB"


def _print_report(report: PurgeReport) -> None:
    verb = "would purge" if report.dry_run else "purged"
    for p in report.purged:
        typer.echo(
            f"{verb} slide {p.slide_id} {p.series_instance_uid}: "
            f"{p.instances} instances, {_size(p.size_bytes)} "
            f"(last received {p.last_received_at:%Y-%m-%d %H:%M} UTC)"
        )
    for k in report.kept:
        typer.echo(f"kept slide {k.slide_id} {k.series_instance_uid}: {k.reason}")
    for error in report.errors:
        typer.secho(f"error: {error}", fg=typer.colors.RED, err=True)
    total = sum(p.size_bytes for p in report.purged)
    summary = (
        f"{verb} {len(report.purged)} slides ({_size(total)}), kept {len(report.kept)} "
        f"older than {report.cutoff:%Y-%m-%d %H:%M} UTC"
    )
    if not report.dry_run:
        summary += f"; {report.files_removed} files removed, {_size(report.bytes_freed)} freed"
        if report.leftovers_removed:
            summary += f" (of which {report.leftovers_removed} left over from an earlier run)"
    typer.echo(summary)


@retention_app.command("purge")
def purge(
    older_than: Annotated[
        float | None,
        typer.Option(
            "--older-than",
            metavar="DAYS",
            min=0,
            help="Age in days since a slide's last instance arrived. "
            "Default: the setting retention.purge_after_days.",
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show what would be purged; change nothing.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    actor: Annotated[
        str, typer.Option("--actor", help="Who runs the purge, for the audit log.")
    ] = "retention",
) -> None:
    """Remove the received instance files of slides that are processed and delivered.

    A slide qualifies when its newest instance is older than DAYS, its last job succeeded,
    no job is queued or running and none of its deliveries is still pending. Slide and
    instance rows (UIDs, digests), results (SEGs), jobs, deliveries and audit events stay;
    the rows are marked purged and each purge is audited. Exit status 1 if a file could not
    be removed (the next run retries it).
    """
    settings = run_guarded(state.settings)
    days = older_than if older_than is not None else settings.retention.purge_after_days
    if days is None:
        fail("give --older-than DAYS or set retention.purge_after_days")
    runtime = state.runtime()
    from ..retention import purge_slides

    report = run_guarded(purge_slides, runtime, older_than_days=days, dry_run=dry_run, actor=actor)
    if as_json:
        typer.echo(json.dumps(report.as_dict(), indent=2))
    else:
        _print_report(report)
    if report.errors:
        raise typer.Exit(1)
