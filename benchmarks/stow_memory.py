"""STOW-RS memory and speed: does a large instance pass through ``unitumour web`` with flat
memory, and how fast against copying the same bytes to disk with an fsync?

A phantom slide with a ~400 MB native base level (one instance) and a small one (~1.5 MB,
the same slide's lowest level) are each wrapped in a multipart/related body on disk and
POSTed with curl (``-T``: streamed from the file, never read whole by the client) to a real
``unitumour web`` process, authenticated with a sender token. Printed side by side: the web
process's peak resident memory (VmHWM) after the small and after the large request, and the
growth between them (target: well under 64 MB for a 400 MB instance, i.e. nothing scales
with the body); MB/s of the large request against ``cp`` + fsync of the same file.

    .venv/bin/python benchmarks/stow_memory.py [--side 11520] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from unitumour_dicom.dicomweb.multipart import Part, iter_multipart
from unitumour_dicom.synthetic import PhantomSpec, write_phantom_slide

UNITUMOUR = str(Path(sys.executable).with_name("unitumour"))
BOUNDARY = "stow-benchmark"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def hwm_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM")


def write_body(instance: Path, out: Path) -> Path:
    with open(out, "wb") as fh:
        for chunk in iter_multipart([Part("application/dicom", path=instance)], BOUNDARY):
            fh.write(chunk)
    return out


def post(port: int, token: str, body: Path) -> tuple[int, float]:
    started = time.perf_counter()
    result = subprocess.run(
        [
            "curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST",
            "-T", str(body), f"http://127.0.0.1:{port}/dicomweb/studies",
            "-H", f"Authorization: Bearer {token}",
            "-H", f'Content-Type: multipart/related; type="application/dicom"; boundary={BOUNDARY}',
        ],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return int(result.stdout), time.perf_counter() - started


def copy_fsync_s(src: Path, dst: Path) -> float:
    started = time.perf_counter()
    shutil.copyfile(src, dst)
    fd = os.open(dst, os.O_RDONLY)
    os.fsync(fd)
    os.close(fd)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", type=int, default=11520, help="base level side in pixels")
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="stow-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    spec = PhantomSpec(
        width=args.side, height=args.side, tile_size=256, levels=3, seed=7,
        transfer_syntax="explicit_vr_little_endian", label=False, overview=False,
    )  # fmt: skip
    slide = write_phantom_slide(work / "slide", spec)
    large, small = slide.level_paths[0][0], slide.level_paths[-1][0]
    bodies = write_body(small, work / "small.body"), write_body(large, work / "large.body")
    data = work / "data"
    config = work / "unitumour.toml"
    config.write_text(
        f'data_dir = "{data}"\n[listener]\ncallers = [{{ae_title = "BENCH"}}]\n'
        f"max_instance_bytes = {4 * large.stat().st_size}\n"
    )
    env = {**os.environ, "UNITUMOUR_CONFIG": str(config)}
    subprocess.run([UNITUMOUR, "db", "upgrade"], env=env, check=True, capture_output=True)
    token = subprocess.run(
        [UNITUMOUR, "tokens", "create", "BENCH"], env=env, check=True, capture_output=True,
        text=True,
    ).stdout.strip()  # fmt: skip
    port = free_port()
    web = subprocess.Popen(
        [UNITUMOUR, "web", "--host", "127.0.0.1", "--port", str(port)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or web.poll() is not None:
                    raise SystemExit("unitumour web did not start") from None
                time.sleep(0.2)
        code_small, _ = post(port, token, bodies[0])
        after_small = hwm_mb(web.pid)
        code_large, seconds = post(port, token, bodies[1])
        after_large = hwm_mb(web.pid)
    finally:
        web.terminate()
        web.wait(timeout=30)
    reference = copy_fsync_s(large, work / "copy.dcm")
    size_mb = large.stat().st_size / 1e6
    print(f"instances: small {small.stat().st_size / 1e6:.1f} MB, large {size_mb:.0f} MB")
    print(f"HTTP status: small {code_small}, large {code_large} (200 = stored)")
    print(f"web peak RSS after small: {after_small:.0f} MB; after large: {after_large:.0f} MB")
    print(f"peak growth for the large instance: {after_large - after_small:.1f} MB")
    print(
        f"large: STOW-RS {size_mb / seconds:.0f} MB/s, cp+fsync {size_mb / reference:.0f} MB/s, "
        f"ratio {reference / seconds:.2f}"
    )
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
