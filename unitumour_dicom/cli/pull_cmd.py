"""``unitumour pull run`` and ``unitumour pull status``: query/retrieve from PACS sources.

The listener polls the sources itself (``pull.interval_s``); these commands poll by hand or
from cron (``--once``), and show where each source stands. Pulled slides settle on the
listener's quiet timer, as pushed ones do, so a listener must be running for jobs to start.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Annotated, Any

import typer

from .common import apply_logging_settings, fail, run_guarded, state

if TYPE_CHECKING:
    from ..pull import SourceReport

pull_app = typer.Typer(help="Query/retrieve slide series from PACS sources.", no_args_is_help=True)


def _report_dict(report: SourceReport) -> dict[str, Any]:
    return {
        "source": report.source,
        "started_at": report.started_at.isoformat(),
        "found": report.found,
        "skipped": report.skipped,
        "retrieved": report.retrieved,
        "instances": report.instances,
        "refused": report.refused,
        "deferred": report.deferred,
        "given_up": report.given_up,
        "failed": {uid or "query": why for uid, why in report.failed.items()},
        "complete": report.complete,
    }


def _print(report: SourceReport) -> None:
    line = (
        f"{report.source}: {report.found} series found, {report.skipped} already received, "
        f"{len(report.retrieved)} retrieved ({report.instances} instances admitted"
        + (f", {report.refused} refused" if report.refused else "")
        + ")"
        + (f", {report.deferred} left for the next poll" if report.deferred else "")
        + (f", {report.given_up} given up earlier" if report.given_up else "")
    )
    typer.echo(line)
    for uid, why in report.failed.items():
        typer.secho(f"  {uid or 'query'} failed: {why}", fg=typer.colors.RED, err=True)


@pull_app.command("run")
def run(
    sources: Annotated[
        list[str] | None,
        typer.Argument(metavar="SOURCE", help="Source names; default: every enabled one."),
    ] = None,
    once: Annotated[
        bool, typer.Option("--once", help="Poll once and exit (for cron); else every interval.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print each report as JSON.")] = False,
) -> None:
    """Poll the sources: find new slide series, retrieve and admit them.

    Exit status 1 when a poll of --once failed for some source or series (each failure is
    also in the audit log), 2 for an unknown source name."""
    settings = run_guarded(state.settings)
    apply_logging_settings(settings)
    if not settings.pull.sources:
        fail("no pull sources configured ([[pull.sources]] in the settings)")
    from ..pull import Poller

    poller = run_guarded(Poller, state.runtime())
    run_guarded(poller.sources, sources)  # unknown names fail before any poll
    while True:
        reports = poller.poll(sources)
        for report in reports:
            if as_json:
                typer.echo(json.dumps(_report_dict(report)))
            else:
                _print(report)
        if once:
            if any(not r.ok for r in reports):
                raise typer.Exit(1)
            return
        time.sleep(settings.pull.interval_s)


@pull_app.command("status")
def status(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Each configured source: its watermark, last poll, last success, last error, counts."""
    settings = run_guarded(state.settings)
    from ..pull.watermark import all_watermarks, failed_series

    runtime = state.runtime()
    with runtime.session() as session:
        rows = {row.source: row for row in all_watermarks(session)}
        out = []
        for source in settings.pull.sources:
            row = rows.get(source.name)
            out.append(
                {
                    "source": source.name,
                    "kind": source.kind,
                    "retrieve": "wado-rs" if source.kind == "dicomweb" else source.retrieve,
                    "remote": source.remote,
                    "enabled": source.enabled,
                    "watermark": _iso(row.watermark if row else None),
                    "last_poll_at": _iso(row.last_poll_at if row else None),
                    "last_success_at": _iso(row.last_success_at if row else None),
                    "last_error": row.last_error if row else None,
                    "series_retrieved": row.series_retrieved if row else 0,
                    "instances_received": row.instances_received if row else 0,
                    "series_given_up": failed_series(session, source.name),
                }
            )
    if as_json:
        typer.echo(json.dumps(out, indent=2))
        return
    if not out:
        typer.echo("no pull sources configured")
    for item in out:
        state_word = "" if item["enabled"] else " (disabled)"
        typer.echo(
            f"{item['source']}{state_word}: {item['retrieve']} from {item['remote']}; "
            f"watermark {item['watermark'] or 'none yet'}, last poll "
            f"{item['last_poll_at'] or 'never'}; {item['series_retrieved']} series, "
            f"{item['instances_received']} instances so far"
        )
        if item["series_given_up"]:
            typer.secho(
                f"  {item['series_given_up']} series given up (see the audit log)",
                fg=typer.colors.YELLOW,
            )
        if item["last_error"]:
            typer.secho(f"  last error: {item['last_error']}", fg=typer.colors.RED)


def _iso(value: Any) -> str | None:
    return value.isoformat(timespec="seconds") if value is not None else None
