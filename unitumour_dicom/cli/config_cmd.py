"""``unitumour config show``: the effective settings, secrets masked; ``config reference``."""

from __future__ import annotations

import json
from typing import Any

import typer

from ..errors import UniTumourError
from .common import fail, state

config_app = typer.Typer(help="Inspect the settings.", no_args_is_help=True)


@config_app.command("show")
def show(
    as_json: bool = typer.Option(False, "--json", help="JSON instead of TOML-like text."),
) -> None:
    """Print the effective settings (defaults, TOML file and environment merged)."""
    from ..config import masked_settings

    try:
        data = masked_settings(state.settings())
    except UniTumourError as exc:
        fail(str(exc))
    if as_json:
        typer.echo(json.dumps(data, indent=2, default=str))
        return
    _print_toml(data)


def _print_toml(data: dict[str, Any], prefix: str = "") -> None:
    scalars = {k: v for k, v in data.items() if not isinstance(v, dict)}
    tables = {k: v for k, v in data.items() if isinstance(v, dict)}
    if prefix and scalars:
        typer.echo(f"[{prefix}]")
    for key, value in scalars.items():
        typer.echo(f"{key} = {json.dumps(value, default=str)}")
    if scalars:
        typer.echo("")
    for key, value in tables.items():
        _print_toml(value, f"{prefix}.{key}" if prefix else key)


@config_app.command("reference")
def reference() -> None:
    """Print the configuration reference (Markdown) generated from the settings model.

    Reads no settings: the page documents every key, not this machine's values.
    Regenerate the docs with: unitumour config reference > docs/configuration.md
    """
    from ..config.reference import render_markdown

    typer.echo(render_markdown(), nl=False)
