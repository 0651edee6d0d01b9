"""``unitumour watch``: the watched folder as a process of its own.

Why a process and not a thread of the listener: a conversion reads and writes gigabytes for
minutes, and the listener's one job is to answer DICOM peers at once; the watcher is
restarted by the supervisor on its own if it dies; and in production it can run where the
scanners' share is mounted, apart from the listener's host. It shares only the database and
the store with the others, and settles its own slides (the settle is safe from several
processes at once), so it works with or without a listener running. ``unitumour serve``
starts it when ``watch.folder`` is set.
"""

from __future__ import annotations

import logging
import signal
import threading
from typing import TYPE_CHECKING

from unitumour_dicom.cli.common import run_guarded, state
from unitumour_dicom.errors import ConfigError

if TYPE_CHECKING:  # the database and DICOM stacks are imported where used (`--help` stays light)
    from collections.abc import Callable

    from unitumour_dicom.config import Settings

log = logging.getLogger("unitumour_services.watch")


def run_watch(
    settings: Settings,
    *,
    on_jobs_created: Callable[[list[int]], None] | None = None,
    stop_event: threading.Event | None = None,
    handle_signals: bool = True,
) -> None:
    """Watch ``watch.folder`` until ``stop_event`` is set (or SIGTERM/SIGINT)."""
    from unitumour_dicom.config.settings import masked_settings
    from unitumour_dicom.runtime import Runtime
    from unitumour_dicom.watch import WatchService

    from .listener import check_schema

    if settings.watch.folder is None:
        raise ConfigError(
            "watch.folder is not set (UNITUMOUR_WATCH__FOLDER or [watch] folder = ...)"
        )
    check_schema(settings)
    stop = stop_event or threading.Event()
    if handle_signals and threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())
    log.info("settings in use: %s", masked_settings(settings)["watch"])
    service = WatchService(Runtime(settings), on_jobs_created=on_jobs_created)
    service.start()
    log.info("watching %s", service.folder)
    try:
        stop.wait()
    finally:
        service.stop()


def watch_command() -> None:
    """Watch the folder where scanners drop vendor files; convert and admit each once."""
    from unitumour_dicom.cli.common import apply_logging_settings

    from .worker import make_job_dispatcher

    settings = run_guarded(state.settings)
    apply_logging_settings(settings)
    run_guarded(run_watch, settings, on_jobs_created=make_job_dispatcher(settings))
