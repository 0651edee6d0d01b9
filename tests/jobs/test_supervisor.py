"""The process supervisor of `unitumour worker` and `unitumour serve`."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.jobs.servicekit import wait_until
from unitumour_dicom.jobs.supervisor import ChildSpec, Supervisor

pytestmark = pytest.mark.integration

SLEEPER = """
import os, signal, sys, time
open(sys.argv[1], "a").write(f"{os.getpid()}\\n")
if sys.argv[2] == "stubborn":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
if sys.argv[2] == "crash":
    sys.exit(3)
time.sleep(120)
"""


def child(tmp_path: Path, name: str, mode: str = "sleep") -> ChildSpec:
    return ChildSpec(name=name, argv=[sys.executable, "-c", SLEEPER, str(tmp_path / name), mode])


def pids(tmp_path: Path, name: str) -> list[int]:
    path = tmp_path / name
    return [int(x) for x in path.read_text().split()] if path.exists() else []


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is not alive for our purposes
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def run_in_thread(supervisor: Supervisor) -> tuple[threading.Thread, list[int]]:
    codes: list[int] = []
    thread = threading.Thread(target=lambda: codes.append(supervisor.run(poll_s=0.05)))
    thread.start()
    return thread, codes


def test_a_child_that_dies_is_restarted_and_stop_ends_them_all(tmp_path):
    supervisor = Supervisor(
        [child(tmp_path, "a"), child(tmp_path, "b")], stop_timeout_s=10, restart_delay_s=0.1
    )
    thread, codes = run_in_thread(supervisor)
    wait_until(lambda: len(pids(tmp_path, "a")) == 1 and len(pids(tmp_path, "b")) == 1, 20, "start")
    [first] = pids(tmp_path, "a")
    os.kill(first, signal.SIGKILL)
    wait_until(lambda: len(pids(tmp_path, "a")) == 2, 20, "the restart of a")
    supervisor.request_stop()
    thread.join(timeout=30)
    assert codes == [0]
    assert not any(alive(pid) for pid in pids(tmp_path, "a") + pids(tmp_path, "b"))


def test_a_child_that_cannot_stay_up_stops_the_group_with_an_error(tmp_path):
    supervisor = Supervisor(
        [child(tmp_path, "ok"), child(tmp_path, "bad", "crash")],
        stop_timeout_s=10,
        restart_delay_s=0.05,
        max_restarts=3,
    )
    started = time.monotonic()
    assert supervisor.run(poll_s=0.05) == 1
    assert time.monotonic() - started < 30
    assert len(pids(tmp_path, "bad")) == 3
    assert not any(alive(pid) for pid in pids(tmp_path, "ok"))


def test_a_child_that_ignores_sigterm_is_killed_after_the_timeout(tmp_path):
    supervisor = Supervisor([child(tmp_path, "stubborn", "stubborn")], stop_timeout_s=1.0)
    thread, codes = run_in_thread(supervisor)
    wait_until(lambda: pids(tmp_path, "stubborn"), 20, "start")
    time.sleep(0.3)  # let it install its handler
    supervisor.request_stop()
    thread.join(timeout=30)
    assert codes == [0] and not alive(pids(tmp_path, "stubborn")[0])


def test_names_must_be_unique(tmp_path):
    with pytest.raises(ValueError, match="child names must be unique"):
        Supervisor([child(tmp_path, "x"), child(tmp_path, "x")])
