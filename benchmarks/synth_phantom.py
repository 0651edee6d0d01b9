"""Phantom generation: throughput, and peak memory that follows the slide's width, not its area.

Writes phantoms of one width and growing heights, each in a fresh process so its peak RSS is
its own, and prints megapixels per second, bytes written and peak RSS side by side. The
reference is the first (smallest) run: the ratio columns compare each run with it. Flat
memory shows as a peak-RSS ratio near 1.0 while the area ratio grows.

    python benchmarks/synth_phantom.py                      # 8192 wide, 2048 / 8192 high
    python benchmarks/synth_phantom.py --width 40000 --heights 5000 40000   # the 200 MB+ case
    python benchmarks/synth_phantom.py --keep /data/phantom-40k              # keep the last one
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

_CHILD = r"""
import json, resource, sys, time
from unitumour_dicom.synthetic import PhantomSpec, write_phantom_slide
args = json.loads(sys.argv[1])
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
spec = PhantomSpec(width=args["width"], height=args["height"], tile_size=args["tile"],
                   levels=args["levels"], mpp=args["mpp"], seed=args["seed"],
                   transfer_syntax=args["ts"], label=False, overview=False)
t0 = time.perf_counter()
slide = write_phantom_slide(args["out"], spec, workers=args["workers"] or None)
seconds = time.perf_counter() - t0
base_bytes = sum(p.stat().st_size for p in slide.level_paths[0])
all_bytes = sum(p.stat().st_size for p in slide.instance_paths)
print(json.dumps({"seconds": seconds, "base_bytes": base_bytes, "all_bytes": all_bytes,
                  "rss_after_import_kib": before}))
"""


def run_one(out: Path, width: int, height: int, ns: argparse.Namespace) -> dict[str, float]:
    args = {
        "out": str(out),
        "width": width,
        "height": height,
        "tile": ns.tile_size,
        "levels": ns.levels,
        "mpp": ns.mpp,
        "seed": ns.seed,
        "ts": ns.transfer_syntax,
        "workers": ns.workers,
    }
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, json.dumps(args)],
        capture_output=True,
        text=True,
        check=True,
    )
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    # RUSAGE_CHILDREN reports the largest child so far; runs go from small to large.
    result["peak_rss_mib"] = max(peak, before) / 1024
    result["megapixels"] = width * height / 1e6
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=8192)
    parser.add_argument("--heights", type=int, nargs="+", default=[2048, 8192])
    parser.add_argument("--tile-size", type=int, default=256)
    parser.add_argument("--levels", type=int, default=4)
    parser.add_argument("--mpp", type=float, default=0.25)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--transfer-syntax", default="jpeg_baseline")
    parser.add_argument("--workers", type=int, default=0, help="0: the library's default")
    parser.add_argument("--keep", type=Path, help="Write the last phantom here and keep it.")
    parser.add_argument("--json-out", type=Path)
    ns = parser.parse_args(argv)

    rows = []
    scratch = Path(tempfile.mkdtemp(prefix="synth-bench-"))
    try:
        for i, height in enumerate(sorted(ns.heights)):
            last = i == len(ns.heights) - 1
            out = ns.keep if (last and ns.keep) else scratch / f"h{height}"
            rows.append({"width": ns.width, "height": height, **run_one(out, ns.width, height, ns)})
            if out.parent == scratch:
                shutil.rmtree(out, ignore_errors=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    ref = rows[0]
    header = (
        f"{'size':>13} {'Mpx':>8} {'s':>7} {'Mpx/s':>7} {'base MB':>8} {'all MB':>8} "
        f"{'peak RSS MiB':>12} | {'area x':>6} {'RSS x':>6} {'s/Mpx x':>7}"
    )
    print(header)
    for row in rows:
        rate = row["megapixels"] / row["seconds"]
        print(
            f"{row['width']:>6}x{row['height']:<6} {row['megapixels']:8.1f} {row['seconds']:7.1f} "
            f"{rate:7.2f} {row['base_bytes'] / 1e6:8.1f} {row['all_bytes'] / 1e6:8.1f} "
            f"{row['peak_rss_mib']:12.0f} | {row['megapixels'] / ref['megapixels']:6.2f} "
            f"{row['peak_rss_mib'] / ref['peak_rss_mib']:6.2f} "
            f"{(row['seconds'] / row['megapixels']) / (ref['seconds'] / ref['megapixels']):7.2f}"
        )
    if ns.json_out:
        ns.json_out.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
