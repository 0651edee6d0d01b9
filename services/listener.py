"""``unitumour listener``: the DICOM listener process.

Wires the library's :class:`~unitumour_dicom.ingest.ListenerService` into a process: settings,
logging with the association id on every line, the schema check, signals for a graceful stop
(SIGTERM or Ctrl-C: stop accepting, let associations in flight finish, then exit).
"""

from __future__ import annotations

import logging
import signal
import threading
from typing import TYPE_CHECKING, Annotated

import typer

from unitumour_dicom.cli.common import JsonLogFormatter, run_guarded, state
from unitumour_dicom.errors import ConfigError
from unitumour_dicom.liveness import LivenessFile
from unitumour_dicom.permissions import private_dir

if TYPE_CHECKING:  # ingest (wsidicom, OpenCV) is imported where used: not by `unitumour --help`
    from unitumour_dicom.config import Settings
    from unitumour_dicom.ingest import JobsCreatedHook

log = logging.getLogger("unitumour_services.listener")

LOG_FORMAT = "%(asctime)s %(levelname)-7s %(association)s %(name)s: %(message)s"


def configure_logging(settings: Settings) -> None:
    """Put the association id on every line; raise the default level to the configured one."""
    from unitumour_dicom.ingest.logcontext import AssociationLogFilter

    root = logging.getLogger()
    if root.level == logging.WARNING:  # no -v/-d/-q given: the settings decide
        root.setLevel(settings.logging.level)
    for handler in root.handlers:
        if not any(isinstance(f, AssociationLogFilter) for f in handler.filters):
            handler.addFilter(AssociationLogFilter())
        handler.setFormatter(
            JsonLogFormatter() if settings.logging.json_format else logging.Formatter(LOG_FORMAT)
        )
    if root.level > logging.DEBUG:
        logging.getLogger("pynetdicom").setLevel(max(root.level, logging.WARNING))


def check_schema(settings: Settings) -> None:
    """Refuse to start on a database whose schema is not the newest."""
    from unitumour_dicom.db import migrate

    url = settings.database_url
    if url.startswith("sqlite:///"):
        private_dir(settings.data_dir)  # holds the spool and (SQLite) the database: owner-only
    current, head = migrate.current_revision(url), migrate.head_revision(url)
    if current != head:
        raise ConfigError(
            f"database schema is at {current or 'nothing'}, the listener needs {head}: "
            "run 'unitumour db upgrade' first"
        )


def run_listener(
    settings: Settings,
    *,
    on_jobs_created: JobsCreatedHook | None = None,
    stop_event: threading.Event | None = None,
    handle_signals: bool = True,
) -> None:
    """Run the listener until ``stop_event`` is set (or SIGTERM/SIGINT), then stop gracefully."""
    from unitumour_dicom.config.settings import masked_settings
    from unitumour_dicom.ingest import ListenerService
    from unitumour_dicom.runtime import Runtime

    check_schema(settings)
    stop = stop_event or threading.Event()
    if handle_signals and threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())
    log.info("settings in use: %s", masked_settings(settings)["listener"])
    if settings.pull.sources:
        log.info("pull sources (polled by the listener): %s", masked_settings(settings)["pull"])
    service = ListenerService(Runtime(settings), on_jobs_created=on_jobs_created)
    host, port = service.start()
    log.info("listener ready on %s:%d", host, port)
    # for `unitumour health listener` (an exec probe: a probe on the DICOM port is audited)
    liveness = LivenessFile(settings.liveness_dir, "listener") if settings.liveness_dir else None
    try:
        while not stop.wait(0.5):
            if liveness is not None:
                liveness.beat()
        log.info("stopping: finishing associations in flight")
    finally:
        service.stop()
        if liveness is not None:
            liveness.remove()


def listener_command(
    port: Annotated[
        int | None, typer.Option("--port", "-p", help="Listen on this port (overrides settings).")
    ] = None,
    host: Annotated[
        str | None, typer.Option("--host", help="Listen on this address (overrides settings).")
    ] = None,
) -> None:
    """Run the DICOM listener (C-ECHO, C-STORE of whole-slide images) until stopped."""
    settings = run_guarded(state.settings)
    overrides = {k: v for k, v in (("port", port), ("host", host)) if v is not None}
    if overrides:
        settings = settings.model_copy(
            update={"listener": settings.listener.model_copy(update=overrides)}
        )
    configure_logging(settings)
    run_guarded(run_listener, settings)
