"""End to end: N phantom slides sent with storescu to ``unitumour serve``, SEGs back at storescp.

Measures the wall time from the first byte sent (storescu starts) to the last SEG instance
received by the destination (DCMTK storescp), and breaks each slide's path down by stage
from what the service recorded in its database:

    receive      first to last instance of the slide stored (listener)
    settle wait  last instance to the slide settled (the quiet time; set by --quiet-s)
    queue wait   job created to the job started on a worker
    read         inputs resolved and verified, slide opened, tissue found, the model waiting
                 for tiles (reading and decoding that the model could not overlap)
    inference    the model's forward passes
    post         stitching and post-processing of the masks
    SEG          the SEG pyramid built and written
    record       provenance, result and deliveries recorded (one transaction)
    delivery     result recorded to the SEG received by the destination

and prints the share of the end-to-end time spent outside model inference (forward passes
summed over the slides, divided by the wall time times the number of segmentation processes).

    .venv/bin/python benchmarks/end_to_end.py [--slides 4] [--width 4096 --height 3072]
        [--quiet-s 2] [--model PATH] [--device cpu|cuda] [--workdir DIR] [--keep]

Runs with the embedded defaults (SQLite database, SQLite broker) unless --broker is given.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

from sqlalchemy import select

from unitumour_dicom.config import load_settings
from unitumour_dicom.db import Delivery, Job, Result, Slide
from unitumour_dicom.runtime import Runtime
from unitumour_dicom.synthetic import PhantomSpec, write_phantom_slide

STAGES = ("receive", "settle wait", "queue wait", "read", "inference", "post", "SEG", "record")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def wait(predicate, timeout: float, what: str, proc: subprocess.Popen | None = None):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise SystemExit(f"{what}: the service exited with {proc.returncode}")
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise SystemExit(f"timed out after {timeout:.0f} s waiting for {what}")


def toml(data: dict) -> str:
    def value(v):  # type: ignore[no-untyped-def]
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, int | float):
            return repr(v)
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        if isinstance(v, dict):
            return "{" + ", ".join(f"{k} = {value(x)}" for k, x in v.items()) + "}"
        return json.dumps(str(v))

    lines = [f"{k} = {value(v)}" for k, v in data.items() if not isinstance(v, dict)]
    for section, values in data.items():
        if isinstance(values, dict):
            lines.append(f"[{section}]")
            lines += [f"{k} = {value(v)}" for k, v in values.items()]
    return "\n".join(lines) + "\n"


def seconds(later: datetime | None, earlier: datetime | None) -> float:
    if later is None or earlier is None:
        return float("nan")
    return (later - earlier).total_seconds()


def breakdown(job: Job, slide: Slide, result: Result, delivered_at: datetime) -> dict[str, float]:
    t = job.timings or {}
    read = sum(
        t.get(k, 0.0)
        for k in ("inputs", "verify", "model_load", "open", "inference.tissue", "inference.wait")
    )
    post = t.get("inference.stitch", 0.0) + t.get("inference.postprocess", 0.0)
    accounted = read + t.get("inference.forward", 0.0) + post + t.get("seg", 0.0)
    return {
        "receive": seconds(slide.last_received_at, slide.first_received_at),
        "settle wait": seconds(slide.settled_at, slide.last_received_at),
        "queue wait": t.get("queue_wait", float("nan")),
        "read": read,
        "inference": t.get("inference.forward", 0.0),
        "post": post,
        "SEG": t.get("seg", 0.0),
        "record": max(seconds(job.finished_at, job.started_at) - accounted, 0.0),
        "delivery": seconds(delivered_at, result.created_at),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--slides", type=int, default=4)
    parser.add_argument("--width", type=int, default=4096)
    parser.add_argument("--height", type=int, default=3072)
    parser.add_argument("--quiet-s", type=float, default=2.0, help="listener quiet time")
    parser.add_argument("--model", default=None, help="checkpoint (default: the demo model)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--broker", default=None, help="broker URL (default: embedded)")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--keep", action="store_true", help="keep the working folder")
    args = parser.parse_args()

    work = Path(args.workdir or tempfile.mkdtemp(prefix="unitumour-e2e-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"working in {work}", flush=True)
    slides = []
    for i in range(args.slides):
        spec = PhantomSpec(
            width=args.width, height=args.height, tile_size=256, levels=3, seed=500 + i
        )
        slides.append(write_phantom_slide(work / f"slide{i}", spec))
    total_mb = sum(p.stat().st_size for s in slides for p in s.instance_paths) / 1e6
    print(f"{args.slides} phantom slides of {args.width} x {args.height}, {total_mb:.1f} MB")

    pacs_dir = work / "pacs"
    pacs_dir.mkdir(exist_ok=True)
    pacs_port, listen_port = free_port(), free_port()
    config = {
        "data_dir": work / "data",
        "model": {"device": args.device} | ({"path": args.model} if args.model else {}),
        "listener": {
            "port": listen_port,
            "accept_any_caller": True,
            "quiet_seconds": args.quiet_s,
            "settle_interval_s": 0.25,
        },
        "delivery": {
            "destinations": [
                {"name": "pacs", "ae_title": "PACS", "host": "127.0.0.1", "port": pacs_port}
            ],
            "always_to": ["pacs"],
        },
        "broker": {"polling_interval_s": 0.1} | ({"url": args.broker} if args.broker else {}),
    }
    config_path = work / "unitumour.toml"
    config_path.write_text(toml(config))
    settings = load_settings(config_path)
    unitumour = str(Path(sys.executable).with_name("unitumour"))
    log = open(work / "serve.log", "wb")  # noqa: SIM115
    storescp = subprocess.Popen(
        ["storescp", "-aet", "PACS", "+uf", "-od", str(pacs_dir), str(pacs_port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    serve = subprocess.Popen(
        [unitumour, "-v", "-c", str(config_path), "serve", "--no-web"],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait(lambda: accepts(pacs_port), 30, "storescp")
        wait(lambda: accepts(listen_port), 180, "the listener", serve)
        wait(
            lambda: (work / "serve.log").read_text(errors="replace").count(" ready.") >= 2,
            300,
            "the workers",
            serve,
        )
        files = [str(p) for s in slides for p in s.instance_paths]
        started = time.time()
        storescu = ["storescu", "-aet", "SCANNER", "-aec", "UNITUMOUR", "-R", "-xy"]
        subprocess.run(
            [*storescu, "127.0.0.1", str(listen_port), *files],
            check=True,
            capture_output=True,
        )
        sent = time.time()
        runtime = Runtime(settings)

        def all_delivered() -> bool:
            with runtime.session() as session:
                states = session.scalars(select(Delivery.state)).all()
            return len(states) == args.slides and all(s == "delivered" for s in states)

        wait(all_delivered, 3600, "every SEG to be delivered", serve)
        last_received = max(p.stat().st_mtime for p in pacs_dir.iterdir())
        wall = last_received - started
    finally:
        serve.send_signal(signal.SIGTERM)
        try:
            serve.wait(timeout=120)
        except subprocess.TimeoutExpired:
            serve.kill()
        storescp.terminate()
        storescp.wait()
        log.close()

    rows = []
    processes = 1
    with runtime.session() as session:
        for job in session.scalars(select(Job).where(Job.state == "succeeded").order_by(Job.id)):
            result = session.scalars(select(Result).where(Result.job_id == job.id)).one()
            delivery = session.scalars(
                select(Delivery).where(Delivery.result_id == result.id)
            ).one()
            rows.append(breakdown(job, job.slide, result, delivery.delivered_at))
        devices = {j.device for j in session.scalars(select(Job))}
    print(f"\nsent in {sent - started:.1f} s; first byte to last SEG received: {wall:.1f} s")
    print(f"device: {', '.join(sorted(d for d in devices if d))}")
    header = f"{'stage':<12}" + "".join(f"{'slide ' + str(i):>10}" for i in range(len(rows)))
    print("\nseconds per stage\n" + header + f"{'mean':>10}")
    for stage in (*STAGES, "delivery"):
        values = [r[stage] for r in rows]
        print(
            f"{stage:<12}"
            + "".join(f"{v:>10.2f}" for v in values)
            + f"{statistics.fmean(values):>10.2f}"
        )
    forward = sum(r["inference"] for r in rows)
    outside = 1.0 - forward / (wall * processes)
    print(
        f"\nmodel inference (forward passes, summed): {forward:.1f} s of {wall:.1f} s wall "
        f"x {processes} segmentation process(es)"
    )
    print(f"share of the end-to-end time spent outside model inference: {outside:.1%}")
    if not args.keep and args.workdir is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
