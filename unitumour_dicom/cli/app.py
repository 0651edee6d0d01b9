"""The Typer application and its global options (-c/--config, -v, -d, -q)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from .. import __version__
from .common import setup_logging, state
from .config_cmd import config_app
from .convert_cmd import convert_command
from .db_cmd import db_app
from .deliveries_cmd import deliveries_app
from .destinations_cmd import destinations_app
from .evaluate_cmd import evaluate_command
from .health_cmd import health_app
from .jobs_cmd import jobs_app
from .model_cmd import model_app
from .process_cmd import process
from .pull_cmd import pull_app
from .retention_cmd import retention_app
from .synth_cmd import synth
from .tokens_cmd import tokens_app
from .train_cmd import train_command
from .users_cmd import users_app

app = typer.Typer(
    name="unitumour",
    help="UniTumour DICOM: tumour segmentation of whole-slide images, behind DICOM.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(config_app, name="config")
app.add_typer(db_app, name="db")
app.command("train")(train_command)
app.command("evaluate")(evaluate_command)
app.add_typer(deliveries_app, name="deliveries")
app.add_typer(destinations_app, name="destinations")
app.add_typer(jobs_app, name="jobs")
app.add_typer(health_app, name="health")
app.add_typer(model_app, name="model")
app.command("synth")(synth)
app.add_typer(users_app, name="users")
app.add_typer(tokens_app, name="tokens")
app.add_typer(retention_app, name="retention")
app.add_typer(pull_app, name="pull")
app.command("process")(process)
app.command("convert")(convert_command)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"unitumour {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", envvar="UNITUMOUR_CONFIG", help="TOML settings file."),
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log INFO.")] = False,
    debug: Annotated[bool, typer.Option("--debug", "-d", help="Log DEBUG.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Log errors only.")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print version.")
    ] = False,
) -> None:
    state.config_file = config
    state._settings = None
    level = logging.WARNING
    if verbose:
        level = logging.INFO
    if debug:
        level = logging.DEBUG
    if quiet:
        level = logging.ERROR
    setup_logging(level)
