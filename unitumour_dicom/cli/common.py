"""Options and helpers shared by every command."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import typer

from ..config import Settings, load_settings
from ..errors import UniTumourError
from ..runtime import Runtime


class State:
    """Global options, resolved into settings on first use."""

    config_file: Path | None = None
    _settings: Settings | None = None

    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = load_settings(self.config_file)
        return self._settings

    def runtime(self) -> Runtime:
        return Runtime(self.settings())


state = State()


def setup_logging(level: int) -> None:
    """Only entry points add handlers (the library logs through module loggers)."""
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def fail(message: str, code: int = 2) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def run_guarded(func, *args, **kwargs):  # type: ignore[no-untyped-def]
    """Turn our own errors into a one-line message and exit status 2, not a traceback."""
    try:
        return func(*args, **kwargs)
    except UniTumourError as exc:
        fail(str(exc))
