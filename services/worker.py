"""The worker: a Celery app whose messages carry only ids, over the jobs library.

Queues
------
``segmentation``
    One worker process per GPU (``CUDA_VISIBLE_DEVICES`` set for each), solo pool, prefetch
    1, late acknowledgement: a message is acknowledged only after its job's outcome is in the
    database, so a worker that dies mid-job leaves the message to be delivered again.
``delivery``
    A thread pool (``worker.delivery_concurrency``) that sends results to destinations.

The database holds all state; a task reads the job or delivery by id, claims it with a
compare-and-set lease, and does nothing if it is not its to run, so duplicates are harmless.
Every worker process also runs the reconcile (leases that ran out, messages that were lost,
slides that settled while no listener ran, deliveries that fell due).

This module is wiring only: each task calls one library function (``process_slide``,
``deliver_one``), the reconcile thread is the library's ``ReconcileLoop`` with this broker
as its sender, and the GPUs per process come from ``model.device.segmentation_devices``.

Brokers (one setting, ``broker.url``): Redis, RabbitMQ, or the embedded SQLite broker
(``unitumour_dicom.jobs.sqla_transport``) that needs no server.

Shutdown: SIGTERM makes Celery stop taking messages and finish the running job; after
``worker.shutdown_timeout_s`` (or at once on a cold shutdown) the job is given back to the
queue at its next stage boundary.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from unitumour_dicom.liveness import IdleBeater, LivenessFile, ProgressEvent

if TYPE_CHECKING:  # imported where used: `unitumour --help` needs no broker nor database
    from celery import Celery

    from unitumour_dicom.config import Settings
    from unitumour_dicom.jobs.reconcile import ReconcileLoop
    from unitumour_dicom.runtime import Runtime

__all__ = [
    "DELIVERY_QUEUE",
    "DELIVER_TASK",
    "QUEUES",
    "SEGMENTATION_QUEUE",
    "SEGMENT_TASK",
    "CeleryDispatcher",
    "WorkerContext",
    "bind_context",
    "celery_config",
    "cli_prefix",
    "create_celery_app",
    "make_job_dispatcher",
    "queue_depth",
    "reconciler_for",
    "run_worker",
    "worker_command",
    "worker_specs",
]

log = logging.getLogger(__name__)

SEGMENTATION_QUEUE = "segmentation"
DELIVERY_QUEUE = "delivery"
QUEUES = (SEGMENTATION_QUEUE, DELIVERY_QUEUE)
SEGMENT_TASK = "unitumour.segment"
DELIVER_TASK = "unitumour.deliver"


# -- the app --------------------------------------------------------------------------------
def celery_config(settings: Settings) -> dict[str, Any]:
    """Celery settings from ours: only ids travel, state stays in SQL, nothing is lost."""
    from kombu import Queue

    from unitumour_dicom.jobs.broker import broker_kind, transport_options
    from unitumour_dicom.jobs.sqla_transport import durable_broker_url

    embedded = broker_kind(settings.broker_url) == "embedded"
    return {
        "broker_url": durable_broker_url(settings.broker_url),
        "broker_transport_options": transport_options(settings.broker),
        "broker_connection_timeout": settings.broker.connect_timeout_s,
        "broker_connection_retry_on_startup": True,
        "broker_connection_max_retries": None,  # a broker restart is waited out, not fatal
        "broker_channel_error_retry": True,
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "task_acks_on_failure_or_timeout": True,
        "worker_prefetch_multiplier": 1,
        "task_ignore_result": True,
        "result_backend": None,
        "task_serializer": "json",
        "accept_content": ["json"],
        "task_default_queue": SEGMENTATION_QUEUE,
        "task_queues": [Queue(name, routing_key=name, durable=True) for name in QUEUES],
        "task_routes": {
            SEGMENT_TASK: {"queue": SEGMENTATION_QUEUE, "routing_key": SEGMENTATION_QUEUE},
            DELIVER_TASK: {"queue": DELIVERY_QUEUE, "routing_key": DELIVERY_QUEUE},
        },
        "task_publish_retry": True,
        "task_publish_retry_policy": {
            "max_retries": 10,
            "interval_start": 0.5,
            "interval_step": 1.0,
            "interval_max": 5.0,
        },
        "worker_hijack_root_logger": False,
        "worker_redirect_stdouts": False,
        "worker_send_task_events": False,
        # The embedded transport has no fanout exchange for remote control across processes.
        "worker_enable_remote_control": not embedded,
        "worker_cancel_long_running_tasks_on_connection_loss": False,
        # After a broker restart Celery cuts the prefetch to what the pool was not running and
        # raises it again only as messages are acknowledged; a message received on a channel
        # that then dies is never acknowledged, and the delivery pool was seen to stop taking
        # anything (celery#9512 is the per-consumer-QoS form). Deliveries are claimed in SQL,
        # so taking the full prefetch at once costs nothing.
        "worker_enable_prefetch_count_reduction": False,
        "broker_pool_limit": 4,
    }


def _make_embedded_broker_dir(url: str) -> None:
    """The embedded broker's SQLite file needs its folder (the data directory) to exist."""
    from unitumour_dicom.jobs.broker import broker_kind

    if broker_kind(url) == "embedded" and "sqlite:///" in url:
        path = url.split("sqlite:///", 1)[1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)


def worker_config(settings: Settings, queue: str) -> dict[str, Any]:
    """What a worker of ``queue`` changes in the app's settings.

    The segmentation pool is solo: while a job runs nothing serves the broker connection, so
    RabbitMQ's heartbeats go unanswered and after two of them (a job on a CPU takes minutes)
    the server closes the connection and hands the message to another worker, whose database
    claim then drops it. Heartbeats are off for that worker: a dead process's connection is
    closed by its operating system, and a dead host's job comes back through its lease, as on
    every broker. (RabbitMQ's ``consumer_timeout`` must still exceed the longest job.)
    """
    from unitumour_dicom.jobs.broker import broker_kind

    if queue == SEGMENTATION_QUEUE and broker_kind(settings.broker_url) == "rabbitmq":
        return {"broker_heartbeat": 0}
    return {}


def create_celery_app(settings: Settings) -> Celery:
    """The Celery app for ``settings``; tasks are registered on it, not on a global app."""
    from celery import Celery

    app = Celery("unitumour", set_as_current=False)
    app.conf.update(celery_config(settings))
    setattr(app, _SETTINGS_ATTR, settings)
    _make_embedded_broker_dir(settings.broker_url)

    @app.task(name=SEGMENT_TASK, bind=True)
    def segment(self: Any, job_id: int) -> str:
        return _segment(context_of(self.app), int(job_id))

    @app.task(name=DELIVER_TASK, bind=True)
    def deliver(self: Any, delivery_id: int) -> str:
        return _deliver(context_of(self.app), int(delivery_id))

    return app


# -- sending ids ----------------------------------------------------------------------------
class CeleryDispatcher:
    """Sends job and delivery ids to their queues and notes the dispatch in the database.

    Also the hook others take: the listener's ``on_jobs_created(job_ids)`` and the web app's
    ``dispatch_job(job_id)`` / ``dispatch_delivery(delivery_id)``.
    """

    def __init__(self, app: Celery, runtime: Runtime, *, actor: str | None = None) -> None:
        from unitumour_dicom.jobs import worker_name

        self.app = app
        self.runtime = runtime
        self.actor = actor or worker_name("dispatcher")

    def send_jobs(self, job_ids: Sequence[int], *, delay_s: float = 0.0) -> None:
        """Send messages for jobs already marked as sent (by a claim, a retry, a release)."""
        for job_id in job_ids:
            self.app.send_task(
                SEGMENT_TASK,
                args=[int(job_id)],
                queue=SEGMENTATION_QUEUE,
                routing_key=SEGMENTATION_QUEUE,
                countdown=delay_s or None,
            )
        if job_ids:
            due = f" due in {delay_s:.1f} s" if delay_s else ""
            log.info("sent job(s) %s%s", list(job_ids), due)

    def dispatch_jobs(self, job_ids: Sequence[int], *, reason: str | None = None) -> list[int]:
        """Send the jobs among ``job_ids`` that nobody has sent yet; return those sent.

        The marking is the library's (``claim_job_messages``); this only sends.
        """
        from unitumour_dicom.db.types import utcnow
        from unitumour_dicom.jobs.reconcile import claim_job_messages

        ids = [int(i) for i in job_ids]
        if not ids:
            return []
        with self.runtime.session() as session:
            won = claim_job_messages(
                session=session,
                now=utcnow(),
                job_ids=ids,
                actor=self.actor,
                reason=reason,
                queue=SEGMENTATION_QUEUE,
            )
        self.send_jobs(won)
        return won

    def dispatch_deliveries(self, delivery_ids: Sequence[int]) -> list[int]:
        """Send the deliveries among ``delivery_ids`` that are due and have no message yet."""
        from unitumour_dicom.db.types import utcnow
        from unitumour_dicom.jobs.deliveries import claim_delivery_dispatches

        ids = [int(i) for i in delivery_ids]
        if not ids:
            return []
        with self.runtime.session() as session:
            won = claim_delivery_dispatches(session=session, now=utcnow(), delivery_ids=ids)
        self.send_deliveries(won)
        return won

    def send_deliveries(self, delivery_ids: Sequence[int], *, delay_s: float = 0.0) -> None:
        """Put messages on the delivery queue (the caller has marked them sent)."""
        for delivery_id in delivery_ids:
            self.app.send_task(
                DELIVER_TASK,
                args=[int(delivery_id)],
                queue=DELIVERY_QUEUE,
                routing_key=DELIVERY_QUEUE,
                countdown=delay_s or None,
            )
        if delivery_ids:
            log.info("sent delivery(ies) %s", list(delivery_ids))

    # hooks in the shapes the other processes take
    def __call__(self, job_ids: Sequence[int]) -> None:
        self.dispatch_jobs(job_ids)

    def dispatch_job(self, job_id: int) -> None:
        self.dispatch_jobs([job_id])

    def dispatch_delivery(self, delivery_id: int) -> None:
        self.dispatch_deliveries([delivery_id])


def make_job_dispatcher(settings: Settings) -> CeleryDispatcher:
    """A dispatcher for a process that only sends (the listener, the web app)."""
    from unitumour_dicom.runtime import Runtime

    runtime = Runtime(settings)
    return CeleryDispatcher(create_celery_app(settings), runtime)


def queue_depth(app: Celery, queue: str) -> int | None:
    """Messages waiting in ``queue`` (None when the broker cannot tell or cannot be reached)."""
    try:
        with app.connection_for_read() as conn:
            conn.ensure_connection(max_retries=1)
            ok = conn.default_channel.queue_declare(queue=queue, passive=True)
            return int(ok.message_count)
    except Exception as exc:
        log.debug("queue depth of %s unknown: %s", queue, exc)
        return None


# -- per-process state ----------------------------------------------------------------------
@dataclass
class WorkerContext:
    """What the tasks of one worker process share: runtime, model, dispatcher, stop flag."""

    runtime: Runtime
    dispatcher: CeleryDispatcher
    name: str
    models: Any = None  # unitumour_dicom.pipeline.ModelProvider, made on first use
    #: Set when a shutdown begins: messages that still arrive go back to the broker untouched.
    shutting_down: threading.Event = field(default_factory=threading.Event)
    #: Set when the running job must stop (shutdown timeout passed, or a cold shutdown).
    #: A liveness.ProgressEvent where liveness files are on: each look at it is a beat.
    stop_requested: threading.Event = field(default_factory=threading.Event)
    #: Set while a segmentation job runs: its progress beats, not the idle thread.
    busy: threading.Event = field(default_factory=threading.Event)

    def model_provider(self) -> Any:
        if self.models is None:
            from unitumour_dicom.pipeline import ModelProvider

            self.models = ModelProvider(self.runtime.settings.model)
        return self.models


_CONTEXT_ATTR = "unitumour_context"
_SETTINGS_ATTR = "unitumour_settings"


def context_of(app: Celery) -> WorkerContext:
    """The process's worker context, made on first use from the app's settings."""
    context = getattr(app, _CONTEXT_ATTR, None)
    if context is None:
        settings = getattr(app, _SETTINGS_ATTR, None)
        if settings is None:
            raise RuntimeError("this Celery app was not made by create_celery_app")
        context = bind_context(app, settings)
    return context


def bind_context(app: Celery, settings: Settings, *, role: str = "worker") -> WorkerContext:
    from unitumour_dicom.jobs import worker_name
    from unitumour_dicom.runtime import Runtime

    runtime = Runtime(settings)
    context = WorkerContext(
        runtime=runtime,
        dispatcher=CeleryDispatcher(app, runtime, actor=worker_name(role)),
        name=worker_name(role),
    )
    setattr(app, _CONTEXT_ATTR, context)
    return context


# -- task bodies ----------------------------------------------------------------------------
def _refuse_when_stopping(ctx: WorkerContext, what: str) -> None:
    """A stopping worker takes no new work: the message goes back to the queue as it was."""
    from celery.exceptions import Reject

    if ctx.shutting_down.is_set():
        raise Reject(f"{what}: the worker is stopping", requeue=True)


def _segment(ctx: WorkerContext, job_id: int) -> str:
    from unitumour_dicom.pipeline import process_slide

    _refuse_when_stopping(ctx, f"job {job_id}")

    ctx.busy.set()
    try:
        outcome = process_slide(
            job_id,
            runtime=ctx.runtime,
            worker=ctx.name,
            models=ctx.model_provider(),
            stop_requested=ctx.stop_requested,
        )
    finally:
        ctx.busy.clear()
    if outcome.delivery_ids:
        ctx.dispatcher.dispatch_deliveries(outcome.delivery_ids)
    if outcome.retry_delay_s is not None:  # marked as due then by fail_attempt
        ctx.dispatcher.send_jobs([job_id], delay_s=outcome.retry_delay_s)
    elif outcome.released:  # marked as sent by release_job
        ctx.dispatcher.send_jobs([job_id])
    return outcome.message


def _deliver(ctx: WorkerContext, delivery_id: int) -> str:
    from unitumour_dicom.deliver import deliver_one

    _refuse_when_stopping(ctx, f"delivery {delivery_id}")
    outcome = deliver_one(
        delivery_id,
        runtime=ctx.runtime,
        worker=ctx.name,
        # a retry due soon is sent now, delayed; later ones by the reconcile
        send_again_within_s=ctx.runtime.settings.worker.reconcile_seconds * 2,
    )
    if outcome.send_again_in_s is not None:
        ctx.dispatcher.send_deliveries([delivery_id], delay_s=outcome.send_again_in_s)
    return outcome.message


# -- the reconcile loop ---------------------------------------------------------------------
def reconciler_for(ctx: WorkerContext, *, interval_s: float | None = None) -> ReconcileLoop:
    """The library's reconcile loop for this worker process, sending through its broker."""
    from unitumour_dicom.jobs.reconcile import ReconcileLoop

    app = ctx.dispatcher.app
    return ReconcileLoop(
        runtime=ctx.runtime,
        worker=ctx.name,
        sender=ctx.dispatcher,
        interval_s=interval_s,
        jobs_queue_depth=lambda: queue_depth(app, SEGMENTATION_QUEUE),
        deliveries_queue_depth=lambda: queue_depth(app, DELIVERY_QUEUE),
    )


# -- running a worker process ---------------------------------------------------------------
def _on_shutdown(ctx: WorkerContext, timeout_s: float) -> Callable[..., None]:
    def handler(sender: Any = None, sig: Any = None, how: str = "Warm", **_: Any) -> None:
        ctx.shutting_down.set()
        if how == "Cold":
            log.warning("cold shutdown: the running job goes back to the queue")
            ctx.stop_requested.set()
            return
        log.info(
            "warm shutdown: finishing the running job (at most %.0f s, then it goes back)",
            timeout_s,
        )
        timer = threading.Timer(timeout_s, ctx.stop_requested.set)
        timer.daemon = True
        timer.start()

    return handler


def _quiet_logging_receiver(**_: Any) -> None:
    """Receiving Celery's setup_logging signal keeps it from adding its own root handler."""


def _keep_our_logging() -> None:
    """Log lines once, through the handlers the command set up; libraries stay quiet."""
    from celery import signals

    signals.setup_logging.connect(_quiet_logging_receiver, weak=False)
    if logging.getLogger().level > logging.DEBUG:
        for name in ("highdicom", "pynetdicom", "wsidicom", "PIL"):
            logging.getLogger(name).setLevel(logging.WARNING)


def _liveness(settings: Settings, ctx: WorkerContext, name: str) -> IdleBeater | None:
    """Liveness beats for ``unitumour health worker`` (see unitumour_dicom.liveness): from the
    job's progress while busy, from a thread while idle. None when liveness_dir is unset."""
    if settings.liveness_dir is None:
        return None
    liveness = LivenessFile(settings.liveness_dir, name)
    ctx.stop_requested = ProgressEvent(liveness)
    return IdleBeater(liveness, interval_s=10.0, busy=ctx.busy)


def run_worker(
    settings: Settings,
    *,
    queue: str,
    concurrency: int | None = None,
    index: int = 0,
    loglevel: str = "INFO",
) -> int:
    """Run one Celery worker consuming ``queue`` in this process until it is told to stop.

    ``segmentation``: solo pool (the job runs in this process, one at a time; the model is
    loaded before the first message is taken). ``delivery``: a pool of threads.
    """
    from unitumour_dicom.jobs.lifecycle import record_worker_started, record_worker_stopped

    if queue not in QUEUES:
        raise ValueError(f"unknown queue {queue!r}: use one of {', '.join(QUEUES)}")
    from celery import signals

    from unitumour_dicom.db import migrate

    if not migrate.is_current(settings.database_url):
        raise RuntimeError(
            "the database schema is not at the current revision: run 'unitumour db upgrade'"
        )
    _keep_our_logging()
    app = create_celery_app(settings)
    app.conf.update(worker_config(settings, queue))
    ctx = bind_context(app, settings, role=f"{queue}{index}")
    beater = _liveness(settings, ctx, f"{queue}{index}")
    if queue == SEGMENTATION_QUEUE:
        model = ctx.model_provider().get()  # fail before taking a message, not after
        log.info(
            "segmentation worker %s ready with %s on %s", ctx.name, model.card.name, model.device
        )
        pool, workers = "solo", 1
    else:
        pool, workers = "threads", concurrency or settings.worker.delivery_concurrency
    handler = _on_shutdown(ctx, settings.worker.shutdown_timeout_s)
    signals.worker_shutting_down.connect(handler, weak=False)
    record_worker_started(
        runtime=ctx.runtime, worker=ctx.name, queue=queue, pool=pool, concurrency=workers
    )
    reconciler = reconciler_for(ctx)
    reconciler.start()
    if beater is not None:
        beater.start()
    worker = app.Worker(
        hostname=f"{queue}{index}-{os.getpid()}@{socket.gethostname()}",
        queues=[queue],
        pool_cls=pool,
        concurrency=workers,
        loglevel=loglevel,
        without_gossip=True,
        without_mingle=True,
        without_heartbeat=True,
        optimization="fair",
    )
    try:
        worker.start()
    finally:
        reconciler.stop()
        if beater is not None:
            beater.stop()
            beater.liveness.remove()
        signals.worker_shutting_down.disconnect(handler)
        record_worker_stopped(runtime=ctx.runtime, worker=ctx.name)
    return int(worker.exitcode or 0)


def worker_specs(
    settings: Settings,
    *,
    cli_prefix: Sequence[str],
    queues: Sequence[str] = QUEUES,
) -> list[Any]:
    """Child processes of ``unitumour worker``: segmentation per GPU, one delivery pool."""
    from unitumour_dicom.jobs.supervisor import ChildSpec
    from unitumour_dicom.model.device import segmentation_devices

    specs = []
    if SEGMENTATION_QUEUE in queues:
        gpus = segmentation_devices(settings.model.device, settings.worker.segmentation_processes)
        for index, gpu in enumerate(gpus):
            env = {} if gpu is None else {"CUDA_VISIBLE_DEVICES": gpu}
            specs.append(
                ChildSpec(
                    name=f"segmentation-{index}",
                    argv=[
                        *cli_prefix,
                        "worker",
                        "--queue",
                        SEGMENTATION_QUEUE,
                        "--index",
                        str(index),
                    ],
                    env=env,
                )
            )
    if DELIVERY_QUEUE in queues:
        specs.append(
            ChildSpec(
                name="delivery",
                argv=[*cli_prefix, "worker", "--queue", DELIVERY_QUEUE],
            )
        )
    return specs


def cli_prefix(config_file: str | None, verbosity: Sequence[str] = ()) -> list[str]:
    """The command line that runs ``unitumour`` again in a child, with the same settings."""
    prefix = [sys.executable, "-m", "unitumour_services.cli", *verbosity]
    if config_file:
        prefix += ["--config", str(config_file)]
    return prefix


# -- the command ----------------------------------------------------------------------------
def verbosity_flags() -> list[str]:
    """The -v/-d/-q flag that reproduces this process's log level in a child."""
    level = logging.getLogger().level
    if level <= logging.DEBUG:
        return ["--debug"]
    if level <= logging.INFO:
        return ["--verbose"]
    if level >= logging.ERROR:
        return ["--quiet"]
    return []


def worker_command(
    queue: Annotated[
        str,
        typer.Option(
            "--queue",
            "-Q",
            help="segmentation, delivery, or all (one process per GPU plus a delivery pool).",
        ),
    ] = "all",
    index: Annotated[
        int, typer.Option("--index", hidden=True, help="Which segmentation process this is.")
    ] = 0,
    concurrency: Annotated[
        int | None,
        typer.Option(
            "--concurrency", help="Delivery threads (default worker.delivery_concurrency)."
        ),
    ] = None,
) -> None:
    """Run the workers of this host: segmentation (one per GPU) and delivery, until stopped."""
    from unitumour_dicom.cli.common import apply_logging_settings, fail, run_guarded, state
    from unitumour_dicom.errors import UniTumourError
    from unitumour_dicom.jobs.supervisor import Supervisor

    settings = run_guarded(state.settings)
    apply_logging_settings(settings)
    if queue in QUEUES:
        try:
            code = run_worker(settings, queue=queue, concurrency=concurrency, index=index)
        except (RuntimeError, ValueError) as exc:
            fail(str(exc))
        except UniTumourError as exc:
            fail(str(exc))
        raise typer.Exit(code)
    if queue != "all":
        fail(f"unknown queue {queue!r}: use segmentation, delivery or all")
    config = str(state.config_file) if state.config_file else None
    specs = worker_specs(settings, cli_prefix=cli_prefix(config, verbosity_flags()))
    supervisor = Supervisor(specs, stop_timeout_s=settings.worker.shutdown_timeout_s + 30)
    supervisor.install_signal_handlers()
    raise typer.Exit(supervisor.run())
