"""Options and helpers shared by every command."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn, ParamSpec, TypeVar

import typer

from ..errors import UniTumourError

if TYPE_CHECKING:  # imported where used: `unitumour --help` loads no settings or database
    from ..config import Settings
    from ..runtime import Runtime


class State:
    """Global options, resolved into settings on first use."""

    config_file: Path | None = None
    _settings: Settings | None = None

    def settings(self) -> Settings:
        if self._settings is None:
            from ..config import load_settings

            self._settings = load_settings(self.config_file)
        return self._settings

    def runtime(self) -> Runtime:
        from ..runtime import Runtime

        return Runtime(self.settings())


state = State()


def setup_logging(level: int) -> None:
    """Only entry points add handlers (the library logs through module loggers)."""
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        stream=sys.stderr,
    )


class JsonLogFormatter(logging.Formatter):
    """One JSON object a line, for the journal and log shippers (``logging.json_format``).

    Carries the association id that the listener's log filter puts on each record, so a
    shipper can group one association's lines."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "process": record.process,
            "message": record.getMessage(),
        }
        association = getattr(record, "association", None)
        if association not in (None, "", "-"):
            data["association"] = association
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return json.dumps(data, ensure_ascii=False, default=str)


def apply_logging_settings(settings: Settings) -> None:
    """Once the settings are known: their level, unless -v/-d/-q chose one, and their format."""
    root = logging.getLogger()
    if root.level == logging.WARNING:  # no -v/-d/-q given: the settings decide
        root.setLevel(settings.logging.level)
    if settings.logging.json_format:
        for handler in root.handlers:
            handler.setFormatter(JsonLogFormatter())


def fail(message: str, code: int = 2) -> NoReturn:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


_P = ParamSpec("_P")
_R = TypeVar("_R")


def run_guarded(func: Callable[_P, _R], *args: _P.args, **kwargs: _P.kwargs) -> _R:
    """Turn our own errors into a one-line message and exit status 2, not a traceback."""
    try:
        return func(*args, **kwargs)
    except UniTumourError as exc:
        fail(str(exc))
