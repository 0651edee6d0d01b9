"""A trivial real Celery app for the broker tests: its task notes when it starts and ends.

Run as ``python -m celery -A celery_probe worker`` from this folder, with PROBE_BROKER (the
broker URL), PROBE_LOG (a file to append to) and PROBE_VT (visibility timeout, seconds).
"""

from __future__ import annotations

import os
import time

from celery import Celery

from unitumour_dicom.jobs.sqla_transport import durable_broker_url

app = Celery("probe", set_as_current=False)
app.conf.update(
    broker_url=durable_broker_url(os.environ["PROBE_BROKER"]),
    broker_transport_options={
        "visibility_timeout": float(os.environ.get("PROBE_VT", "3600")),
        "polling_interval": 0.1,
    },
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    task_ignore_result=True,
    worker_hijack_root_logger=False,
    worker_enable_remote_control=False,
    broker_connection_retry_on_startup=True,
)


@app.task(name="probe.work")
def work(n: int, seconds: float) -> None:
    log = os.environ["PROBE_LOG"]
    with open(log, "a") as fh:
        fh.write(f"start {n} {os.getpid()}\n")
    time.sleep(seconds)
    with open(log, "a") as fh:
        fh.write(f"done {n} {os.getpid()}\n")
