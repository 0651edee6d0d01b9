"""``unitumour destinations echo [NAME]``: C-ECHO each configured destination, as delivered to.

The logic is :mod:`unitumour_dicom.deliver.echo`; this module only prints its reports."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from .common import fail, run_guarded, state

destinations_app = typer.Typer(help="The destinations results are sent to.", no_args_is_help=True)


@destinations_app.command("echo")
def echo(
    name: Annotated[
        str | None, typer.Argument(help="Only this destination (default: every one).")
    ] = None,
    timeout_s: Annotated[
        float, typer.Option("--timeout", min=0.1, help="Seconds to wait for each answer.")
    ] = 10.0,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object a line.")] = False,
) -> None:
    """C-ECHO (over TLS where configured) each destination; exit 1 if any did not answer."""
    settings = run_guarded(state.settings)
    destinations = settings.delivery.destinations
    if name is not None:
        destinations = [d for d in destinations if d.name == name]
        if not destinations:
            known = ", ".join(d.name for d in settings.delivery.destinations) or "none"
            fail(f"no destination named {name!r} (configured: {known})")
    if not destinations:
        fail("no destinations configured (delivery.destinations)")
    from ..deliver.echo import echo_destinations  # pynetdicom: not for --help

    reports = echo_destinations(
        destinations,
        calling_ae_title=settings.delivery.calling_ae_title,
        timeout_s=timeout_s,
    )
    for r in reports:
        if as_json:
            typer.echo(json.dumps(r.as_dict()))
            continue
        line = (
            f"{r.name:<14} {r.ae_title:<16} {r.host}:{r.port:<6} "
            f"{'TLS' if r.tls else 'plain':<5} {r.outcome}"
            + ("" if r.ok else f" ({r.detail})")
            + f" {r.seconds * 1000:.0f} ms"
        )
        typer.secho(line, fg=None if r.ok else typer.colors.RED)
    if not all(r.ok for r in reports):
        raise typer.Exit(1)
