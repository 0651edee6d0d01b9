"""``unitumour serve``: the whole service on one machine, with the embedded defaults.

One command runs the DICOM listener, the segmentation worker(s) (one per GPU, or one on the
CPU), the delivery worker and the web app, each in its own process under a supervisor that
restarts a process that dies and stops them all cleanly on Ctrl-C or SIGTERM (workers finish
their running job first, up to ``worker.shutdown_timeout_s``). By default everything lives in
the data directory: a SQLite database, the embedded SQLite broker, the file store.

The listener and the web app are started with the worker's dispatch hooks, so a settled
slide's job, a re-run or a re-sent delivery reaches the queue at once (the reconcile would
find them anyway).
"""

from __future__ import annotations

import importlib.util
import logging
from typing import TYPE_CHECKING, Annotated

import typer

from unitumour_dicom.cli.common import apply_logging_settings, fail, run_guarded, state
from unitumour_dicom.permissions import private_dir

from .worker import cli_prefix, make_job_dispatcher, verbosity_flags, worker_specs

if TYPE_CHECKING:  # imported where used: `unitumour --help` needs no jobs or settings layer
    from unitumour_dicom.config import Settings
    from unitumour_dicom.jobs.supervisor import ChildSpec

log = logging.getLogger(__name__)

ROLES = ("listener", "web", "watch")


def web_available() -> bool:
    """Whether the web app (services/web) is installed with its app factory."""
    try:
        return importlib.util.find_spec("unitumour_services.web.app") is not None
    except ModuleNotFoundError:
        return False


def serve_specs(settings: Settings, *, prefix: list[str], web: bool) -> list[ChildSpec]:
    """The processes of a one-machine service."""
    from unitumour_dicom.jobs.supervisor import ChildSpec

    specs = [ChildSpec(name="listener", argv=[*prefix, "serve", "--role", "listener"])]
    specs += worker_specs(settings, cli_prefix=prefix)
    if settings.watch.folder is not None:  # the watched folder: a process of its own
        specs.append(ChildSpec(name="watch", argv=[*prefix, "serve", "--role", "watch"]))
    if web:
        specs.append(ChildSpec(name="web", argv=[*prefix, "serve", "--role", "web"]))
    return specs


def run_role(settings: Settings, role: str) -> None:
    """One child of ``serve``: the listener or the web app, wired to the dispatcher."""
    dispatcher = make_job_dispatcher(settings)
    if role == "listener":
        from .listener import configure_logging, run_listener

        configure_logging(settings)
        run_listener(settings, on_jobs_created=dispatcher)
        return
    if role == "watch":
        from .watch import run_watch

        run_watch(settings, on_jobs_created=dispatcher)
        return
    if role == "web":
        import uvicorn

        from .web.app import create_app
        from .web.command import UVICORN_OPTIONS

        app = create_app(
            settings,
            dispatch_job=dispatcher.dispatch_job,
            dispatch_delivery=dispatcher.dispatch_delivery,
        )
        uvicorn.run(
            app,
            host=settings.web.host,
            port=settings.web.port,
            log_config=None,
            **UVICORN_OPTIONS,  # type: ignore[arg-type]
        )
        return
    raise ValueError(f"unknown role {role!r}: use one of {', '.join(ROLES)}")


def serve_command(
    web: Annotated[bool, typer.Option("--web/--no-web", help="Run the web app too.")] = True,
    role: Annotated[
        str | None, typer.Option("--role", hidden=True, help="Run one part (listener, web, watch).")
    ] = None,
) -> None:
    """Run listener, workers and web app on this machine until Ctrl-C or SIGTERM."""
    settings = run_guarded(state.settings)
    apply_logging_settings(settings)
    if role is not None:
        if role not in ROLES:
            fail(f"unknown role {role!r}: use one of {', '.join(ROLES)}")
        run_guarded(run_role, settings, role)
        return
    if settings.database_url.startswith("sqlite:///"):
        private_dir(settings.data_dir)
    from unitumour_dicom.db import migrate

    # One machine, embedded defaults: bring the schema to the newest revision on start.
    migrate.upgrade(settings.database_url)
    with_web = web and web_available()
    if web and not with_web:
        log.warning("the web app is not installed here; serving without it")
    config = str(state.config_file) if state.config_file else None
    specs = serve_specs(settings, prefix=cli_prefix(config, verbosity_flags()), web=with_web)
    listener = settings.listener
    typer.echo(
        f"unitumour serve: data in {settings.data_dir}\n"
        f"  DICOM listener  {listener.ae_title} on {listener.host}:{listener.port}\n"
        f"  workers         {', '.join(s.name for s in specs if s.name not in ROLES)}\n"
        + (
            f"  web app         http://{settings.web.host}:{settings.web.port}/\n"
            if with_web
            else ""
        )
        + (
            f"  watched folder  {settings.watch.folder}\n"
            if settings.watch.folder is not None
            else ""
        )
        + "Ctrl-C stops (running jobs finish first).",
        err=True,
    )
    from unitumour_dicom.jobs.supervisor import Supervisor

    supervisor = Supervisor(specs, stop_timeout_s=settings.worker.shutdown_timeout_s + 30)
    supervisor.install_signal_handlers()
    raise typer.Exit(supervisor.run())
