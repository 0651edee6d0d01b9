"""Real parts for the worker and service tests: configs, processes, brokers, DICOM peers.

Everything runs on free ports and under the test's tmp_path: our own processes started with
``python -m unitumour_services.cli`` and a TOML config, DCMTK's storescp as the PACS, and a
private redis-server or RabbitMQ node when a test restarts its broker (the machine's shared
servers are never restarted).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select

from unitumour_dicom.config import Settings, load_settings
from unitumour_dicom.db import migrate
from unitumour_dicom.portcheck import is_listening
from unitumour_dicom.runtime import Runtime

REPO_ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(
    predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.1
) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


# -- configuration --------------------------------------------------------------------------
def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str | Path):
        return json.dumps(str(value))
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"cannot write {value!r} as TOML")


def toml_text(data: dict[str, Any]) -> str:
    """TOML for settings: top-level scalars, then one table per section (nested as inline)."""
    lines = [f"{k} = {_toml_value(v)}" for k, v in data.items() if not isinstance(v, dict)]
    for section, values in data.items():
        if isinstance(values, dict):
            lines.append(f"\n[{section}]")
            lines += [f"{k} = {_toml_value(v)}" for k, v in values.items()]
    return "\n".join(lines) + "\n"


@dataclass
class ServiceConfig:
    path: Path
    settings: Settings

    @property
    def runtime(self) -> Runtime:
        return Runtime(self.settings)


def service_config(
    tmp_path: Path,
    *,
    model_path: Path | None,
    database_url: str | None = None,
    broker_url: str | None = None,
    pacs_port: int | None = None,
    config_name: str = "unitumour.toml",
    **sections: dict[str, Any],
) -> ServiceConfig:
    """A TOML config for fast tests: short leases and quiet times, the CPU, a PACS if given.

    ``sections`` override or add keys per section (``worker={"max_attempts": 2}``).
    """
    data: dict[str, Any] = {
        "data_dir": tmp_path / "data",
        "database": {"url": database_url or f"sqlite:///{tmp_path / 'data' / 'unitumour.db'}"},
        "broker": {"polling_interval_s": 0.2, "visibility_timeout_s": 600.0},
        "model": {"device": "cpu", "batch_size": 8, "read_threads": 1},
        "worker": {
            "lease_seconds": 4.0,
            "heartbeat_seconds": 0.5,
            "reconcile_seconds": 1.0,
            "retry_delay_s": 0.2,
            "redispatch_s": 5.0,
            "max_attempts": 3,
            "shutdown_timeout_s": 60.0,
        },
        "listener": {
            "port": free_port(),  # a second config of the same test gets its own ports
            "accept_any_caller": True,
            "quiet_seconds": 1.0,
            "settle_interval_s": 0.25,
            "shutdown_grace_s": 2.0,
        },
        "web": {"port": free_port(), "secure_cookies": False},  # plain http, as the demo
    }
    if model_path is not None:  # else the shipped demo model
        data["model"]["path"] = model_path
    if broker_url:
        data["broker"]["url"] = broker_url
    if pacs_port is not None:
        data["delivery"] = {
            "destinations": [
                {"name": "pacs", "ae_title": "PACS", "host": "127.0.0.1", "port": pacs_port}
            ],
            "always_to": ["pacs"],
            "initial_delay_s": 0.5,
            "max_delay_s": 2.0,
            "timeout_s": 10.0,
        }
    for section, values in sections.items():
        data.setdefault(section, {}).update(values)
    (tmp_path / "data").mkdir(parents=True, exist_ok=True)
    path = tmp_path / config_name
    path.write_text(toml_text(data))
    settings = load_settings(path)
    migrate.upgrade(settings.database_url)
    return ServiceConfig(path=path, settings=settings)


# -- processes ------------------------------------------------------------------------------
class Proc:
    """One of our processes, its output in a log file; stopped by its pid only."""

    def __init__(self, name: str, argv: list[str], log: Path, env: dict[str, str] | None = None):
        self.name = name
        self.log = log
        self._out = open(log, "ab")  # noqa: SIM115 (closed in stop)
        self.popen = subprocess.Popen(
            argv,
            cwd=REPO_ROOT,
            env={**os.environ, **(env or {})},
            stdout=self._out,
            stderr=subprocess.STDOUT,
        )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def kill9(self) -> None:
        self.popen.send_signal(signal.SIGKILL)
        self.popen.wait(timeout=10)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60.0) -> int:
        if self.alive():
            self.popen.send_signal(sig)
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        self._out.close()
        return self.popen.returncode


def unitumour(config: ServiceConfig, args: list[str], log: Path, name: str = "") -> Proc:
    argv = [sys.executable, "-m", "unitumour_services.cli", "-v", "-c", str(config.path), *args]
    return Proc(name or args[0], argv, log)


def start_worker(
    config: ServiceConfig, tmp_path: Path, queue: str, index: int = 0, log_name: str = ""
) -> Proc:
    name = log_name or f"{queue}{index}"
    args = ["worker", "--queue", queue]
    if queue == "segmentation":
        args += ["--index", str(index)]
    return unitumour(config, args, tmp_path / f"{name}.log", name)


def start_worker_group(config: ServiceConfig, tmp_path: Path) -> Proc:
    """``unitumour worker``: the supervisor with its segmentation and delivery processes."""
    return unitumour(config, ["worker"], tmp_path / "workers.log", "workers")


def group_ready(proc: Proc, processes: int) -> bool:
    if not proc.alive():
        raise AssertionError(f"{proc.name} exited with {proc.popen.returncode}:\n{proc.text()}")
    return proc.text().count(" ready.") >= processes


def worker_ready(proc: Proc) -> bool:
    if not proc.alive():
        raise AssertionError(f"{proc.name} exited with {proc.popen.returncode}:\n{proc.text()}")
    return " ready." in proc.text()  # Celery's own line: consuming from now on


def stop_all(procs: Iterable[Proc]) -> None:
    for proc in procs:
        with contextlib.suppress(Exception):  # keep stopping the others
            proc.stop(timeout=30)


class StoreSCP:
    """DCMTK storescp as the PACS: every instance it receives becomes its own file."""

    def __init__(self, tmp_path: Path, ae_title: str = "PACS") -> None:
        self.port = free_port()
        self.folder = tmp_path / "pacs"
        self.folder.mkdir()
        self.proc = Proc(
            "storescp",
            ["storescp", "-aet", ae_title, "+uf", "-od", str(self.folder), str(self.port)],
            tmp_path / "storescp.log",
        )
        wait_until(self._listening, 10, "storescp to listen")

    def _listening(self) -> bool:
        return is_listening(self.port)  # a probe connection would count as an association

    def files(self) -> list[Path]:
        return sorted(p for p in self.folder.iterdir() if p.is_file())

    def stop(self) -> None:
        self.proc.stop(timeout=10)


class RedisServer:
    """A private redis-server with an fsynced append-only file, so a restart loses nothing."""

    def __init__(self, tmp_path: Path) -> None:
        self.port = free_port()
        self.dir = tmp_path / "redis"
        self.dir.mkdir()
        self.log = tmp_path / "redis.log"
        self.proc: Proc | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = Proc(
            "redis",
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.dir),
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--save",
                "",
            ],
            self.log,
        )
        wait_until(lambda: _accepts(self.port), 10, "redis-server to listen")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop(timeout=10)

    def restart(self) -> None:
        self.stop()
        self.start()


class RabbitServer:
    """A private RabbitMQ node (its own ports and data folder), restartable with its queues."""

    def __init__(self, tmp_path: Path) -> None:
        if shutil.which("rabbitmq-server") is None:
            raise AssertionError(
                "rabbitmq-server is not installed (apt-get install rabbitmq-server)"
            )
        self.port = free_port()
        self.dist_port = free_port()
        self.dir = tmp_path / "rabbit"
        self.dir.mkdir()
        (self.dir / "enabled_plugins").write_text("[].\n")
        (self.dir / "rabbitmq.conf").write_text("loopback_users = none\n")
        self.node = f"ut{self.port}@localhost"
        self.log = tmp_path / "rabbit.log"
        self.proc: Proc | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}//"

    def _env(self) -> dict[str, str]:
        return {
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": str(self.dir / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.dir / "log"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.dir / "enabled_plugins"),
            "RABBITMQ_CONFIG_FILE": str(self.dir / "rabbitmq"),
            "RABBITMQ_PID_FILE": str(self.dir / "pid"),
            "HOME": str(self.dir),
        }

    def start(self) -> None:
        # The Debian wrapper in /usr/sbin switches to the rabbitmq user, who cannot write in
        # tmp_path; the server script itself runs as whoever starts it.
        self.proc = Proc(
            "rabbitmq", ["/usr/lib/rabbitmq/bin/rabbitmq-server"], self.log, env=self._env()
        )
        wait_until(lambda: _accepts(self.port), 60, "RabbitMQ to listen")

    def _beam_pid(self) -> int | None:
        pid_file = self.dir / "pid"
        try:
            return int(pid_file.read_text().strip())
        except (OSError, ValueError):
            return None

    def stop(self) -> None:
        pid = self._beam_pid()
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        if self.proc is not None:
            try:
                self.proc.popen.wait(timeout=30)
            except subprocess.TimeoutExpired:
                if pid is not None:
                    os.kill(pid, signal.SIGKILL)
            self.proc.stop(timeout=10)
        (self.dir / "pid").unlink(missing_ok=True)

    def restart(self) -> None:
        self.stop()
        self.start()


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


# -- slides and jobs ------------------------------------------------------------------------
def phantom_folders(
    root: Path, n: int, *, width: int = 1024, height: int = 768, first_seed: int = 100
) -> list[Path]:
    """``n`` small phantom slides, one folder each; distinct seeds give distinct UIDs."""
    from unitumour_dicom.synthetic import PhantomSpec, write_phantom_slide

    folders = []
    for i in range(n):
        folder = root / f"slide{i:02d}"
        write_phantom_slide(
            folder,
            PhantomSpec(
                width=width,
                height=height,
                tile_size=256,
                levels=3,
                seed=first_seed + i,
                label=False,
                overview=False,
            ),
        )
        folders.append(folder)
    return folders


def queue_jobs(runtime: Runtime, folders: Iterable[Path]) -> list[int]:
    """Admit each folder as the listener would and settle it: queued jobs, not yet sent."""
    from unitumour_dicom.pipeline.local import FolderReport, admit_folder, jobs_for_slides

    job_ids: list[int] = []
    for folder in folders:
        report = FolderReport()
        slides = admit_folder(folder, runtime, report)
        to_run, _ = jobs_for_slides(slides, runtime, report, force=False)
        job_ids += to_run
    return job_ids


def job_states(runtime: Runtime, job_ids: list[int]) -> dict[int, str]:
    from unitumour_dicom.db import Job

    with runtime.session() as session:
        rows = session.execute(select(Job.id, Job.state).where(Job.id.in_(job_ids))).all()
    return {row.id: row.state for row in rows}


def all_finished(runtime: Runtime, job_ids: list[int]) -> bool:
    states = job_states(runtime, job_ids)
    return len(states) == len(job_ids) and all(
        s in ("succeeded", "failed", "superseded", "cancelled") for s in states.values()
    )
