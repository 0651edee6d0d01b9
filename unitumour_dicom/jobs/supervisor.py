"""A small process supervisor: start child processes, restart the ones that die, stop them all.

``unitumour worker`` runs one segmentation process per GPU and one delivery process;
``unitumour serve`` adds the listener and the web app. Each child is a plain command line, so
each can be run by hand the same way. On SIGTERM or Ctrl-C the supervisor sends SIGTERM to
every child once (Celery workers then finish their running job), waits for them up to a
timeout, and kills what is left. A child that dies unasked is restarted after a short pause,
with a limit so a child that cannot start does not spin.

Children run in their own session (a terminal's Ctrl-C reaches only the supervisor, which
forwards one SIGTERM) and, on Linux, are sent SIGTERM if the supervisor itself dies.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import FrameType

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # pragma: no cover (runs in the child before exec)
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass


@dataclass
class ChildSpec:
    """One child process: a name for the logs, its command line and extra environment."""

    name: str
    argv: Sequence[str]
    env: Mapping[str, str] = field(default_factory=dict)
    restart: bool = True


@dataclass
class _Child:
    spec: ChildSpec
    process: subprocess.Popen[bytes] | None = None
    starts: deque[float] = field(default_factory=lambda: deque(maxlen=10))
    gave_up: bool = False


class Supervisor:
    """Run ``specs`` until asked to stop; :meth:`run` returns the exit status to use."""

    def __init__(
        self,
        specs: Sequence[ChildSpec],
        *,
        stop_timeout_s: float = 60.0,
        restart_delay_s: float = 1.0,
        max_restarts: int = 5,
        restart_window_s: float = 60.0,
    ) -> None:
        names = [s.name for s in specs]
        if len(set(names)) != len(names):
            raise ValueError(f"child names must be unique: {names}")
        self.children = [_Child(spec) for spec in specs]
        self.stop_timeout_s = stop_timeout_s
        self.restart_delay_s = restart_delay_s
        self.max_restarts = max_restarts
        self.restart_window_s = restart_window_s
        self._stop = threading.Event()
        self._failed = False

    # -- control -------------------------------------------------------------------------
    def request_stop(self, *_args: object) -> None:
        self._stop.set()

    def install_signal_handlers(self) -> None:
        def handler(signum: int, frame: FrameType | None) -> None:
            log.info("supervisor: %s received, stopping", signal.Signals(signum).name)
            self._stop.set()

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)

    def pids(self) -> dict[str, int]:
        return {c.spec.name: c.process.pid for c in self.children if c.process is not None}

    # -- running -------------------------------------------------------------------------
    def _start(self, child: _Child) -> None:
        env = {**os.environ, **child.spec.env}
        child.starts.append(time.monotonic())
        child.process = subprocess.Popen(
            list(child.spec.argv),
            env=env,
            start_new_session=True,
            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
        )
        log.info("started %s (pid %d): %s", child.spec.name, child.process.pid, child.spec.argv)

    def _may_restart(self, child: _Child) -> bool:
        now = time.monotonic()
        recent = [t for t in child.starts if now - t < self.restart_window_s]
        return child.spec.restart and len(recent) < self.max_restarts

    def run(self, poll_s: float = 0.5) -> int:
        for child in self.children:
            self._start(child)
        try:
            while not self._stop.wait(poll_s):
                for child in self.children:
                    process = child.process
                    if process is None or child.gave_up or process.poll() is None:
                        continue
                    code = process.returncode
                    if self._may_restart(child):
                        log.warning(
                            "%s (pid %d) exited with %s; restarting",
                            child.spec.name,
                            process.pid,
                            code,
                        )
                        time.sleep(self.restart_delay_s)
                        self._start(child)
                    else:
                        log.error("%s exited with %s; not restarting it", child.spec.name, code)
                        child.gave_up = True
                        self._failed = True
                        self._stop.set()
        finally:
            self.stop()
        return 1 if self._failed else 0

    def stop(self) -> None:
        """SIGTERM every child once, wait up to ``stop_timeout_s``, then SIGKILL the rest."""
        running = [c for c in self.children if c.process and c.process.poll() is None]
        for child in running:
            assert child.process is not None
            log.info("stopping %s (pid %d)", child.spec.name, child.process.pid)
            child.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.stop_timeout_s
        for child in running:
            assert child.process is not None
            try:
                child.process.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                log.error(
                    "%s did not stop in %.0f s: killing it", child.spec.name, self.stop_timeout_s
                )
                child.process.kill()
                child.process.wait()
