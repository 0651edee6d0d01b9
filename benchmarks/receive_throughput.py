"""Receive throughput of the listener against DCMTK's storescp, side by side in one run.

The same phantom instances are sent with DCMTK storescu over loopback, alternately to
``unitumour listener`` (a real process, fresh data directory each round) and to
``storescp +B`` (DCMTK's fastest, bit-preserving mode), in two sets of at least 500 MB each:

* large: one slide whose base level is one instance of 200 MB or more;
* small: the same slide written as concatenations of a few frames (many instances of ~1.5 MB).

Both receivers get the same maximum PDU (128 KiB), and every run starts after ``sync`` with
no dirty pages left by the run before. What differs is what they promise: the listener
validates each instance's header, hashes it, fsyncs it into the store and commits its row
before it answers success; storescp +B writes to the page cache and answers, and its files
reach the disk whenever the kernel gets round to it. So two references are printed:

* ``storescp`` alone (the issue's reference; ratio = median listener MB/s over its median);
* ``storescp+fsync``: the same run with the time to fsync everything it received added
  afterwards, once, in one pass (a lower bound on what storescp would need to make its
  files durable, since it batches the flush that the listener must do before each answer).

Also printed: the disk's own rate for a large write followed by fsync, which caps any receiver
that makes its data durable before it answers, whatever its code.

    .venv/bin/python benchmarks/receive_throughput.py [--rounds 2] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from unitumour_dicom.portcheck import is_listening
from unitumour_dicom.store.filestore import fsync_dir
from unitumour_dicom.synthetic import PhantomSpec, load_phantom, write_phantom_slide

UNITUMOUR = str(Path(sys.executable).with_name("unitumour"))
PDU = 131072
SIDE = 11520  # 45 x 45 tiles of 256: a 398 MB native RGB base level, 523 MB in three levels


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"receiver exited with {proc.returncode} before listening")
        if is_listening(port):  # no probe connection: storescp would take it for an association
            return
        time.sleep(0.1)
    raise SystemExit(f"nothing listens on {port} after {timeout} s")


def phantom_set(workdir: Path, name: str, concatenation_frames: int | None) -> list[Path]:
    out = workdir / name
    if (out / "phantom.json").exists():
        return load_phantom(out).instance_paths
    print(f"writing the {name} phantom set into {out} ...", flush=True)
    spec = PhantomSpec(
        width=SIDE,
        height=SIDE,
        tile_size=256,
        levels=3,
        seed=7,
        transfer_syntax="explicit_vr_little_endian",
        label=False,
        overview=False,
        concatenation_frames=concatenation_frames,
    )
    return write_phantom_slide(out, spec).instance_paths


def send(port: int, files: list[Path], aec: str) -> float:
    """Seconds storescu takes to send every file (association included)."""
    args = ["storescu", "-aet", "BENCH", "-aec", aec, "-R", "-xe", "-pdu", str(PDU)]
    started = time.perf_counter()
    result = subprocess.run(
        [*args, "127.0.0.1", str(port), *map(str, files)],
        capture_output=True,
        text=True,
        check=False,
    )
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"storescu failed: {result.stderr[-2000:]}")
    return elapsed


def fsync_tree(root: Path) -> float:
    """Seconds to fsync every file under ``root`` and its directories."""
    started = time.perf_counter()
    for path in sorted(root.rglob("*")):
        if path.is_dir():
            fsync_dir(path)
            continue
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    fsync_dir(root)
    return time.perf_counter() - started


def disk_rate(scratch: Path, megabytes: int = 512) -> float:
    """MB/s of one large sequential write followed by fsync (the disk's durable rate)."""
    chunk = os.urandom(8 * 1024 * 1024)
    path = scratch / "disk-rate.bin"
    os.sync()
    started = time.perf_counter()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        written = 0
        while written < megabytes * 1e6:
            written += os.write(fd, chunk)
        os.fsync(fd)
    finally:
        os.close(fd)
    seconds = time.perf_counter() - started
    path.unlink()
    return written / 1e6 / seconds


def run_storescp(files: list[Path], scratch: Path) -> tuple[float, float]:
    """(seconds to receive everything, seconds to fsync it all afterwards)."""
    out = scratch / "storescp"
    out.mkdir()
    port = free_port()
    proc = subprocess.Popen(
        ["storescp", "+B", "--max-pdu", str(PDU), "-od", str(out), str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_port(port, proc)
        seconds = send(port, files, "STORESCP")
    finally:
        proc.terminate()
        proc.wait(30)
    received = len(list(out.iterdir()))
    if received != len(files):
        raise SystemExit(f"storescp kept {received} of {len(files)} files")
    flush = fsync_tree(out)
    shutil.rmtree(out)
    return seconds, flush


def run_listener(files: list[Path], scratch: Path, database_url: str | None) -> float:
    data = scratch / "unitumour"
    port = free_port()
    config = scratch / "listener.toml"
    database = f'[database]\nurl = "{database_url}"\n' if database_url else ""
    config.write_text(
        f'data_dir = "{data}"\n{database}'
        f"[listener]\nport = {port}\nmax_pdu_bytes = {PDU}\n"
        'callers = [{ae_title = "BENCH"}]\n'
        '[logging]\nlevel = "WARNING"\n'
    )
    subprocess.run(
        [UNITUMOUR, "-q", "-c", str(config), "db", "upgrade"], check=True, capture_output=True
    )
    log = open(scratch / "listener.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([UNITUMOUR, "-c", str(config), "listener"], stdout=log, stderr=log)
    try:
        wait_port(port, proc)
        seconds = send(port, files, "UNITUMOUR")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
        log.close()
    stored = list((data / "store" / "instances").rglob("*.dcm"))
    if len(stored) != len(files):
        raise SystemExit(f"the listener kept {len(stored)} of {len(files)} instances")
    shutil.rmtree(data)
    return seconds


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=2, help="Rounds per receiver and set.")
    parser.add_argument(
        "--workdir",
        type=Path,
        default=Path(tempfile.gettempdir()) / "unitumour-bench",
        help="Phantoms are kept here between runs.",
    )
    parser.add_argument("--database-url", default=None, help="Default: SQLite in the data dir.")
    args = parser.parse_args(argv)
    # DCMTK leaves Nagle's algorithm on unless told: its responses then wait for delayed ACKs
    # (about 35 MB/s on small instances). Both DCMTK tools here run with TCP_NODELAY, as the
    # listener's sockets do.
    os.environ["TCP_NODELAY"] = "1"
    for tool in ("storescu", "storescp"):
        if shutil.which(tool) is None:
            raise SystemExit(f"DCMTK {tool} is needed")
    args.workdir.mkdir(parents=True, exist_ok=True)
    sets = {
        "large (one instance per level)": phantom_set(args.workdir, "large", None),
        "small (concatenations of 8 frames)": phantom_set(args.workdir, "small", 8),
    }
    with tempfile.TemporaryDirectory(dir=args.workdir) as scratch_text:
        rates = [disk_rate(Path(scratch_text)) for _ in range(2)]
    print(f"disk: large write + fsync {statistics.median(rates):.0f} MB/s (median of 2)\n")
    print(
        f"{'set':36} {'files':>5} {'MB':>5} {'listener':>9} {'storescp':>9} {'ratio':>6}"
        f" {'storescp+fsync':>15} {'ratio':>6}"
    )
    for name, files in sets.items():
        megabytes = sum(p.stat().st_size for p in files) / 1e6
        ours: list[float] = []
        theirs: list[float] = []
        durable: list[float] = []
        for round_ in range(args.rounds):
            with tempfile.TemporaryDirectory(dir=args.workdir) as scratch_text:
                scratch = Path(scratch_text)
                # alternate who goes first, so that neither always meets a warmer cache
                order = ("listener", "storescp") if round_ % 2 == 0 else ("storescp", "listener")
                for who in order:
                    # start each run with no dirty pages left over from the one before, so
                    # that neither pays for the other's writeback (storescp +B leaves 500 MB)
                    os.sync()
                    if who == "listener":
                        ours.append(megabytes / run_listener(files, scratch, args.database_url))
                    else:
                        seconds, flush = run_storescp(files, scratch)
                        theirs.append(megabytes / seconds)
                        durable.append(megabytes / (seconds + flush))
        mine = statistics.median(ours)
        dcmtk, dcmtk_durable = statistics.median(theirs), statistics.median(durable)
        print(
            f"{name:36} {len(files):5d} {megabytes:5.0f} {mine:9.1f} {dcmtk:9.1f} "
            f"{mine / dcmtk:6.2f} {dcmtk_durable:15.1f} {mine / dcmtk_durable:6.2f}",
            flush=True,
        )
        print(
            f"{'':36} MB/s per round: listener {', '.join(f'{v:.0f}' for v in ours)}; "
            f"storescp {', '.join(f'{v:.0f}' for v in theirs)}; "
            f"storescp+fsync {', '.join(f'{v:.0f}' for v in durable)}"
        )


if __name__ == "__main__":
    main()
