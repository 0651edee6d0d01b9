"""``unitumour demo``: the whole system, seen working, with one command.

It sets up a data directory (settings TOML, database, a web user), starts DCMTK ``storescp``
as the PACS and ``unitumour serve`` as the service, builds the sample slides (a phantom, and a
mosaic of real EBHI-Seg test images when the data is at hand), sends them with DCMTK
``storescu`` as a scanner would, follows each slide through the database while it runs, and
prints for each: Dice of the SEG the PACS received against the known mask, areas, stage
timings, the SEG's UIDs and the case's page in the web app. Then it stops everything, or
keeps it running (``--keep-running``) so a person can look around.

Everything here is process plumbing and printing; what is decided or measured lives in
:mod:`unitumour_dicom.demo`, which the end-to-end tests call too.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Annotated

import typer

from unitumour_dicom.cli.common import fail, state
from unitumour_dicom.demo.config import CONFIG_NAME, PACS_AE, SCANNER_AE
from unitumour_dicom.demo.errors import DemoError
from unitumour_dicom.errors import UniTumourError
from unitumour_dicom.portcheck import is_listening

from .worker import verbosity_flags

if TYPE_CHECKING:  # the demo library (wsidicom, highdicom) is imported where used
    from unitumour_dicom.demo import SampleSlide, SlideProgress, SlideReport
    from unitumour_dicom.runtime import Runtime

log = logging.getLogger(__name__)

#: Written into a data directory the demo made, so that a later run may clear it (and only
#: such a directory: the demo never deletes a folder it did not create).
MARKER = ".unitumour-demo"
DEMO_USER = "admin"
DCMTK_TOOLS = ("storescp", "storescu")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.3):
            return True
    except OSError:
        return False


class Child:
    """A process the demo started; its output goes to a log file; stopped by its own pid."""

    def __init__(self, name: str, argv: Sequence[str], log_path: Path) -> None:
        self.name = name
        self.log_path = log_path
        self._log: IO[bytes] = open(log_path, "ab")  # noqa: SIM115 (closed in stop)
        self.popen = subprocess.Popen(
            list(argv), stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )

    def alive(self) -> bool:
        return self.popen.poll() is None

    def tail(self, lines: int = 25) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout: float) -> int | None:
        if self.alive():
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        self._log.close()
        return self.popen.returncode


class Console:
    """Progress lines on standard error, stamped with the seconds since the demo started."""

    def __init__(self) -> None:
        self.t0 = time.monotonic()

    def say(self, message: str) -> None:
        typer.echo(f"[{time.monotonic() - self.t0:6.1f} s] {message}", err=True)


# -- setting up ---------------------------------------------------------------------------------
def prepare_data_dir(data_dir: Path) -> None:
    """An empty data directory: made, or cleared when an earlier demo run left it."""
    if data_dir.exists() and any(data_dir.iterdir()):
        if not (data_dir / MARKER).is_file():
            raise DemoError(
                f"{data_dir} already holds files that the demo did not make; "
                "choose another folder with --data-dir"
            )
        shutil.rmtree(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / MARKER).write_text("made by 'unitumour demo'; a new run clears this folder\n")
    for sub in ("logs", "pacs", "slides"):
        (data_dir / sub).mkdir()


def cli(config: Path, *args: str) -> list[str]:
    """``unitumour -c CONFIG ARGS...`` in a child, with this process's log level."""
    prefix = [sys.executable, "-m", "unitumour_services.cli", *verbosity_flags()]
    return [*prefix, "-c", str(config), *args]


def run_step(argv: list[str], what: str, *, stdin: str | None = None) -> str:
    result = subprocess.run(
        argv, input=stdin, capture_output=True, text=True, timeout=300, check=False
    )
    if result.returncode != 0:
        raise DemoError(f"{what} failed ({result.returncode}): {result.stderr or result.stdout}")
    return result.stdout


def send_slide(sample: SampleSlide, port: int, log_path: Path) -> None:
    """storescu as a scanner: only the slide's own SOP class and transfer syntax proposed."""
    from unitumour_dicom.demo import storescu_transfer_option

    argv = [
        "storescu",
        "-aet", SCANNER_AE,
        "-aec", "UNITUMOUR",
        "-R",  # propose only what the files need (DCMTK proposes no WSI context by default)
        storescu_transfer_option(sample.transfer_syntax_uid),
        "127.0.0.1", str(port),
        *[str(p) for p in sample.files],
    ]  # fmt: skip
    with open(log_path, "ab") as out:
        result = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, timeout=300)
    if result.returncode != 0:
        raise DemoError(f"storescu could not send the {sample.name} (see {log_path})")


def wait_for(
    predicate: Callable[[], bool], timeout: float, what: str, *, watch: Child | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        if watch is not None and not watch.alive():
            raise DemoError(
                f"{watch.name} exited ({watch.popen.returncode}) while waiting for {what}:\n"
                f"{watch.tail()}"
            )
        time.sleep(0.25)
    raise DemoError(f"timed out after {timeout:.0f} s waiting for {what}")


def _web_ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


# -- following the slides -----------------------------------------------------------------------
def follow(
    samples: Sequence[SampleSlide],
    runtime: Runtime,
    pacs_dir: Path,
    console: Console,
    timeout: float,
    serve: Child,
) -> dict[str, SlideProgress]:
    """Poll the database until every slide is delivered and its SEG is at the PACS, or has
    failed for good, or ``timeout`` seconds pass. Prints each change of stage."""
    from unitumour_dicom.demo import received_seg_files, slide_progress

    deadline = time.monotonic() + timeout
    latest: dict[str, SlideProgress] = {}
    shown: dict[str, str] = {}
    arrived: set[str] = set()
    while True:
        with runtime.session() as session:
            for sample in samples:
                latest[sample.name] = slide_progress(session, sample.series_uid)
        for sample in samples:
            p = latest[sample.name]
            stage = p.stage
            if stage == "delivered":
                have = received_seg_files(pacs_dir, p.seg_instance_uids)
                if len(have) == len(p.seg_instance_uids):
                    stage = "SEG received by the PACS"
                    arrived.add(sample.name)
            if shown.get(sample.name) != stage:
                failed = p.finished and p.stage != "delivered"
                extra = f" ({p.why})" if failed and p.why else ""
                console.say(f"{sample.name}: {stage}{extra}")
                shown[sample.name] = stage
        done = all(
            s.name in arrived or (latest[s.name].finished and latest[s.name].stage != "delivered")
            for s in samples
        )
        if done or time.monotonic() > deadline:
            return latest
        if not serve.alive():
            console.say(f"unitumour serve exited ({serve.popen.returncode}):\n{serve.tail()}")
            return latest
        time.sleep(0.5)


def report_for(
    sample: SampleSlide, progress: SlideProgress, pacs_dir: Path, web_port: int
) -> SlideReport:
    from unitumour_dicom.demo import SlideReport, received_seg_files, score_seg

    files = received_seg_files(pacs_dir, progress.seg_instance_uids)
    score = error = None
    if progress.seg_instance_uids and len(files) == len(progress.seg_instance_uids):
        mpp = (progress.model or {}).get("mpp") or sample.mpp
        try:
            score = score_seg(
                list(files.values()),
                sample.tumour_mask(mpp),
                series_uid=sample.series_uid,
                frame_of_reference_uid=sample.frame_of_reference_uid,
                base_mpp=sample.mpp,
            )
        except UniTumourError as exc:
            error = str(exc)
    elif progress.seg_instance_uids:
        error = f"{len(files)} of {len(progress.seg_instance_uids)} SEG instances at the PACS"
    else:
        error = "no SEG was made"
    url = f"http://127.0.0.1:{web_port}/cases/{progress.slide_id}" if progress.slide_id else None
    return SlideReport(sample, progress, score, error, url, seg_files=len(files))


# -- the command --------------------------------------------------------------------------------
def demo_command(
    data_dir: Annotated[
        Path, typer.Option("--data-dir", help="Where the demo keeps everything.")
    ] = Path("var/demo"),
    data: Annotated[
        Path | None,
        typer.Option(
            "--data",
            help="EBHI-Seg folder (with manifest.csv). Default: $UNITUMOUR_DEMO_DATA, else "
            "../shared/data/ebhi-seg beside the repository.",
        ),
    ] = None,
    password: Annotated[
        str | None,
        typer.Option("--password", help="Password of the web user 'admin' (default: random)."),
    ] = None,
    keep_running: Annotated[
        bool,
        typer.Option("--keep-running", help="Leave the services running until Ctrl-C."),
    ] = False,
    timeout: Annotated[
        float, typer.Option("--timeout", min=1, help="Seconds to wait for the SEGs.")
    ] = 900.0,
    phantom_width: Annotated[int, typer.Option(min=256, help="Phantom width, pixels.")] = 4096,
    phantom_height: Annotated[int, typer.Option(min=256, help="Phantom height, pixels.")] = 3072,
    mosaic_images: Annotated[
        int, typer.Option(min=0, max=1024, help="EBHI-Seg images in the mosaic (0: none).")
    ] = 12,
    seed: Annotated[int, typer.Option(min=0, help="Seed of the sample slides.")] = 0,
    quiet_seconds: Annotated[
        float, typer.Option(min=0.1, help="Quiet time after the last instance of a slide.")
    ] = 3.0,
    device: Annotated[str, typer.Option(help="Model device: cpu, cuda, auto.")] = "cpu",
    web_port: Annotated[int, typer.Option(min=0, max=65535, help="0: a free port.")] = 0,
) -> None:
    """Run the whole service on this machine and send it sample slides: prints Dice against
    the known masks, stage timings and the web app's address of each case."""
    if state.config_file is not None:
        fail("'unitumour demo' writes its own settings; run it without -c/--config")
    missing = [tool for tool in DCMTK_TOOLS if shutil.which(tool) is None]
    if missing:
        fail(f"{', '.join(missing)} not found: install DCMTK (make system-deps)")
    console = Console()
    children: list[Child] = []
    interrupted = False

    def on_sigterm(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    code = 1
    try:
        options = DemoOptions(
            data_dir=data_dir.resolve(),
            data=data,
            password=password,
            keep_running=keep_running,
            timeout=timeout,
            phantom_size=(phantom_width, phantom_height),
            mosaic_images=mosaic_images,
            seed=seed,
            quiet_seconds=quiet_seconds,
            device=device,
            web_port=web_port,
        )
        code = _run(console, children, options)
    except KeyboardInterrupt:
        interrupted = True
        code = 130
    except UniTumourError as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        code = 2
    finally:
        if children:
            console.say("stopping the services" + (" (interrupted)" if interrupted else ""))
        for child in reversed(children):  # serve first (it finishes a running job), then PACS
            rc = child.stop(timeout=120 if child.name == "unitumour serve" else 10)
            if child.name == "unitumour serve" and rc not in (0, None, -signal.SIGTERM):
                console.say(f"unitumour serve exited with {rc}; see {child.log_path}")
        signal.signal(signal.SIGTERM, previous)
    raise typer.Exit(code)


@dataclass(frozen=True)
class DemoOptions:
    """What the command line asked for."""

    data_dir: Path
    data: Path | None
    password: str | None
    keep_running: bool
    timeout: float
    phantom_size: tuple[int, int]
    mosaic_images: int
    seed: int
    quiet_seconds: float
    device: str
    web_port: int


def _run(console: Console, children: list[Child], options: DemoOptions) -> int:
    """The demo from an empty folder to the summary; the children it starts are appended to
    ``children`` at once, so that the caller stops them whatever happens here."""
    from unitumour_dicom.config import load_settings
    from unitumour_dicom.demo import (
        DemoPorts,
        build_samples,
        demo_settings,
        format_report,
        locate_ebhi_data,
        settings_toml,
    )
    from unitumour_dicom.runtime import Runtime

    data_dir = options.data_dir
    prepare_data_dir(data_dir)
    logs, pacs_dir = data_dir / "logs", data_dir / "pacs"
    ports = DemoPorts(listener=free_port(), web=options.web_port or free_port(), pacs=free_port())
    config = data_dir / CONFIG_NAME
    config.write_text(
        settings_toml(
            demo_settings(
                data_dir, ports, quiet_seconds=options.quiet_seconds, device=options.device
            )
        )
    )
    settings = load_settings(config)
    console.say(f"data directory {data_dir}; settings in {config}")

    children.append(
        Child(
            "storescp (PACS)",
            ["storescp", "-aet", PACS_AE, "+uf", "-od", str(pacs_dir), str(ports.pacs)],
            logs / "storescp.log",
        )
    )
    wait_for(lambda: is_listening(ports.pacs), 15, "storescp to listen", watch=children[-1])
    console.say(f"PACS: DCMTK storescp {PACS_AE} on port {ports.pacs}, writing into {pacs_dir}")

    run_step(cli(config, "db", "upgrade"), "unitumour db upgrade")
    console.say("database ready (unitumour db upgrade)")
    serve = Child("unitumour serve", cli(config, "serve"), logs / "serve.log")
    children.append(serve)
    console.say(f"started unitumour serve (log: {serve.log_path})")
    web_password = options.password or secrets.token_urlsafe(12)
    # While the service starts: the web user, then the sample slides.
    run_step(
        cli(config, "users", "add", DEMO_USER, "--role", "admin", "--password-stdin"),
        "unitumour users add",
        stdin=web_password + "\n",
    )
    console.say(f"web user '{DEMO_USER}' added (role admin)")

    ebhi, looked = locate_ebhi_data(options.data)
    if ebhi is None and options.mosaic_images > 0:
        places = ", ".join(str(p) for p in looked) or "nowhere"
        console.say(
            f"EBHI-Seg data not found (looked in {places}; pass --data DIR or set "
            "UNITUMOUR_DEMO_DATA): running with the phantom only"
        )
    t0 = time.monotonic()
    samples = build_samples(
        data_dir / "slides",
        ebhi_data=ebhi,
        phantom_size=options.phantom_size,
        mosaic_images=options.mosaic_images,
        seed=options.seed,
    )
    for sample in samples:
        console.say(f"sample slide {sample.name}: {sample.description}")
    console.say(f"sample slides written in {time.monotonic() - t0:.1f} s")

    listener = settings.listener
    wait_for(lambda: _accepts(listener.port), 180, "the DICOM listener", watch=serve)
    wait_for(lambda: _web_ready(ports.web), 180, "the web app", watch=serve)
    console.say(f"service up: listener {listener.ae_title} on port {listener.port}")
    for sample in samples:
        send_slide(sample, listener.port, logs / "storescu.log")
        console.say(
            f"{sample.name}: sent {len(sample.files)} instances with storescu "
            f"({SCANNER_AE} -> {listener.ae_title})"
        )
    runtime = Runtime(settings)
    latest = follow(samples, runtime, pacs_dir, console, options.timeout, serve)
    reports = [report_for(s, latest[s.name], pacs_dir, ports.web) for s in samples]
    ok = all(r.score is not None for r in reports)

    web = f"http://127.0.0.1:{ports.web}/"
    typer.echo("")
    typer.echo(format_report(reports))
    typer.echo("")
    typer.echo(f"web app   {web}  (log in as '{DEMO_USER}', password: {web_password})")
    typer.echo(f"PACS      {pacs_dir}  (what DCMTK storescp received)")
    typer.echo(f"logs      {logs}")
    if not ok:
        missing = [r.sample.name for r in reports if r.score is None]
        typer.secho(
            f"not every SEG came back within {options.timeout:g} s: {', '.join(missing)}",
            fg=typer.colors.RED,
            err=True,
        )
    if options.keep_running and serve.alive():
        typer.echo(
            f"The services keep running: open {web} in a browser. Ctrl-C stops them.\n"
            f"(Settings: {config}; e.g. '.venv/bin/unitumour -c {config} deliveries list'.)"
        )
        with contextlib.suppress(KeyboardInterrupt):
            while serve.alive():
                time.sleep(0.5)
    return 0 if ok else 1
