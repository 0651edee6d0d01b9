"""Whole-slide inference throughput against the model's pure forward pass, and peak memory at
two slide sizes, measured side by side in one run.

Speed: a phantom slide goes through ``segment_slide`` (tissue detection, reading, decoding,
resampling, tiling, batching, forward, stitching, post-processing). The same model then runs
the same number of tiles, already in memory as uint8 (the slide's own tissue tiles, read
beforehand and reused in turn), through the same batched forward (normalisation included).
The two are alternated ``--repeat`` times and the fastest of each counts. Both are reported
in megapixels per second of kept tile area at the model's resolution (tiles x tile_size^2 /
seconds), with their ratio (target: whole path within 1.3 x the pure forward's time on a CPU).

Memory: each of two phantom slides (the second with 4 x the area) is segmented in a fresh
process that samples its resident memory while ``segment_slide`` runs (glibc told to return
large freed blocks at once, so residency follows live memory), and also traces the peak of
numpy and Python allocations (everything but torch's own). Both peaks, above the state just
before the call, are compared with the bytes of the outputs (at the model's resolution: uint8
probability, bool tumour, bool tissue; and the low-resolution tissue mask): between the two
sizes a peak should grow by no more than the outputs do. The resident peak includes the
model's activations for one batch, the same at both sizes but noisy by tens of MiB; the
traced peak isolates the pipeline. Both sizes must be large enough for the bounded buffers
(prefetched tiles, decoded frames) to fill: on a slide of a few dozen tiles they never do,
and their filling would pass for growth with size.

    python benchmarks/inference_throughput.py --model demo --device cpu \\
        --speed-size 3072x3072 --memory-sizes 8192x8192,16384x16384 --json-out bench.json

Phantoms are written once into --workdir (default: a temporary folder) and reused. On a GPU
host, ``--device cuda --agreement-size 4096x4096`` also segments one phantom with CUDA
(autocast, channels_last) and with the CPU and reports how far the two masks agree.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
import torch

PAGE = os.sysconf("SC_PAGE_SIZE")


def parse_size(text: str) -> tuple[int, int]:
    width, height = text.lower().split("x")
    return int(width), int(height)


def phantom(workdir: Path, size: tuple[int, int], seed: int) -> Any:
    """A phantom slide of ``size`` base pixels at 0.5 µm/px (written once, then reused)."""
    from unitumour_dicom.errors import UniTumourError
    from unitumour_dicom.synthetic import PhantomSpec, load_phantom, write_phantom_slide

    folder = workdir / f"phantom-{size[0]}x{size[1]}-seed{seed}"
    if (folder / "phantom.json").exists():
        try:
            return load_phantom(folder)
        except UniTumourError as exc:  # written by another version of the generator
            print(f"  rewriting {folder.name}: {exc}", flush=True)
    spec = PhantomSpec(
        width=size[0], height=size[1], tile_size=256, levels=4, mpp=0.5, seed=seed,
        n_tumours=4, label=False, overview=False,
    )  # fmt: skip
    start = time.perf_counter()
    slide = write_phantom_slide(folder, spec, overwrite=True)
    print(f"  wrote phantom {size[0]}x{size[1]} in {time.perf_counter() - start:.1f} s", flush=True)
    return slide


def load(model: str, device: str) -> Any:
    from unitumour_dicom.model import load_model, select_device

    return load_model(None if model == "demo" else model, device=select_device(device))


def resident_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * PAGE


class PeakSampler:
    """Samples resident memory every few milliseconds in a thread; keeps the peak."""

    def __init__(self, interval_s: float = 0.005) -> None:
        self.interval_s = interval_s
        self.peak = resident_bytes()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, resident_bytes())
            time.sleep(self.interval_s)

    def __enter__(self) -> PeakSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, resident_bytes())


def slide_tiles(slide: Any, model: Any, count: int) -> np.ndarray:
    """Up to ``count`` of the slide's own tissue tiles (inputs with halo), read into memory,
    so that the pure forward pass sees the same kind of pixels as the whole path."""
    from unitumour_dicom.infer import TileGrid

    card = model.card
    grid = TileGrid(slide.grid_shape(card.mpp), card.tile_size, card.overlap)
    tiles = grid.tissue_tiles(slide.tissue_mask(), card.mpp)[:count]
    reader = slide.reader(slide.choose_level(card.mpp), card.mpp)
    n = grid.input_size
    return np.stack([reader.read(*grid.window(tile), n, n) for tile in tiles])


def pure_forward_seconds(model: Any, pixels: np.ndarray, tiles: int, batch_size: int) -> float:
    """Seconds for ``tiles`` tiles already in memory (``pixels``, reused in turn) through the
    batched forward pass."""
    from unitumour_dicom.infer import ModelRunner

    runner = ModelRunner(model)
    if runner.cuda:
        torch.cuda.synchronize()
    start = time.perf_counter()
    left, first = tiles, 0
    pending = None
    while left > 0:
        count = min(batch_size, left)
        index = (first + np.arange(count)) % len(pixels)
        first += count
        submitted = runner.submit(np.ascontiguousarray(pixels[index]))
        if pending is not None:
            runner.collect(pending)
        pending = submitted
        left -= count
    if pending is not None:
        runner.collect(pending)
    return time.perf_counter() - start


def measure_speed(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    from unitumour_dicom.infer import segment_slide
    from unitumour_dicom.slide import open_slide

    size = parse_size(args.speed_size)
    truth = phantom(workdir, size, args.seed)
    model = load(args.model, args.device)
    card = model.card
    # warm the model (allocator, oneDNN/cuDNN plans) at the batch size used, then alternate
    # the two measurements and keep the fastest of each, so that neither pays the warm-up
    # and a busy neighbour on a shared machine is less likely to decide the ratio
    with open_slide(truth.instance_paths) as slide:
        pixels = slide_tiles(slide, model, 4 * args.batch_size)
    pure_forward_seconds(model, pixels, args.batch_size, args.batch_size)
    whole_runs, forward_runs = [], []
    for _ in range(args.repeat):
        with open_slide(truth.instance_paths) as slide:
            result = segment_slide(
                slide, model, batch_size=args.batch_size, read_threads=args.read_threads
            )
        whole_runs.append(result.timings["total"])
        forward_runs.append(pure_forward_seconds(model, pixels, result.tiles, args.batch_size))
    whole_s, forward_s = min(whole_runs), min(forward_runs)
    kept_mp = result.tiles * card.tile_size**2 / 1e6
    raster_mp = result.tumour.array.size / 1e6
    reference = truth.tumour_mask(card.mpp).array
    return {
        "slide_base_pixels": list(size),
        "raster_shape": list(result.tumour.shape),
        "level_read_mpp": result.level.mpp if result.level else None,
        "tiles": result.tiles,
        "tiles_in_grid": result.tiles_in_grid,
        "device": result.device,
        "whole_path_s": whole_s,
        "pure_forward_s": forward_s,
        "whole_path_runs_s": whole_runs,
        "pure_forward_runs_s": forward_runs,
        "whole_path_mp_per_s": kept_mp / whole_s,
        "pure_forward_mp_per_s": kept_mp / forward_s,
        "raster_mp_per_s": raster_mp / whole_s,
        "ratio_whole_to_forward": whole_s / forward_s,
        "timings_s": result.timings,
        "frame_cache_hit_ratio": result.stats.get("frame_cache_hit_ratio"),
        "decode_megapixels_per_s": result.stats.get("decode_megapixels_per_s"),
        "tumour_area_mm2": result.tumour_area_mm2,
        "tissue_area_mm2": result.tissue_area_mm2,
        "dice_vs_phantom_truth": dice(result.tumour.array, reference),
    }


def measure_agreement(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """The same phantom segmented on two devices (e.g. CUDA with autocast and channels_last
    against the CPU in float32): Dice between the masks and probability differences."""
    from unitumour_dicom.infer import segment_slide
    from unitumour_dicom.slide import open_slide

    size = parse_size(args.agreement_size)
    truth = phantom(workdir, size, args.seed)
    devices = args.agreement_devices.split(",")
    results, report = {}, {}
    for device in devices:
        model = load(args.model, device)
        for _ in range(2):  # the second run is kept: allocator and cuDNN warm
            with open_slide(truth.instance_paths) as slide:
                result = segment_slide(
                    slide, model, batch_size=args.batch_size, read_threads=args.read_threads
                )
        results[device] = result
        reference = truth.tumour_mask(model.card.mpp).array
        report[device] = {
            "device": result.device,
            "tiles": result.tiles,
            "total_s": result.timings["total"],
            "dice_vs_phantom_truth": dice(result.tumour.array, reference),
        }
    if len(devices) == 2:
        first, second = (results[d] for d in devices)
        a = first.probability.array.astype(np.int16)
        b = second.probability.array.astype(np.int16)
        report["dice_between_devices"] = dice(first.tumour.array, second.tumour.array)
        report["probability_abs_diff_mean"] = float(np.abs(a - b).mean()) / 255
        report["probability_abs_diff_max"] = int(np.abs(a - b).max()) / 255
    return report


def dice(a: np.ndarray, b: np.ndarray) -> float:
    b = b[: a.shape[0], : a.shape[1]]
    a = a[: b.shape[0], : b.shape[1]]
    return 2 * np.count_nonzero(a & b) / max(np.count_nonzero(a) + np.count_nonzero(b), 1)


def memory_child(args: argparse.Namespace) -> None:
    """Runs in a fresh process: segment one slide, print peak memory figures as JSON."""
    from unitumour_dicom.infer import segment_slide
    from unitumour_dicom.slide import open_slide
    from unitumour_dicom.synthetic import load_phantom

    truth = load_phantom(args.child_memory)
    model = load(args.model, args.device)
    with open_slide(truth.instance_paths) as slide:
        before = resident_bytes()
        tracemalloc.start()  # numpy reports its buffers to tracemalloc; torch does not
        with PeakSampler() as sampler:
            result = segment_slide(
                slide, model, batch_size=args.batch_size, read_threads=args.read_threads
            )
        _, traced_peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        outputs = result.probability.array.nbytes + result.tumour.array.nbytes
        outputs += result.tissue.array.nbytes + result.tissue_lowres.array.nbytes
    print(
        json.dumps(
            {
                "slide_base_pixels": list(truth.size),
                "raster_shape": list(result.tumour.shape),
                "tiles": result.tiles,
                "resident_before_bytes": before,
                "peak_bytes": sampler.peak,
                "peak_above_before_bytes": sampler.peak - before,
                "numpy_python_peak_bytes": traced_peak,
                "output_bytes": outputs,
                "total_s": result.timings["total"],
            }
        )
    )


def measure_memory(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    sizes = [parse_size(s) for s in args.memory_sizes.split(",")]
    runs = []
    for size in sizes:
        folder = phantom(workdir, size, args.seed).root
        command = [
            sys.executable, __file__, "--child-memory", str(folder), "--model", args.model,
            "--device", args.device, "--batch-size", str(args.batch_size),
            "--read-threads", str(args.read_threads),
        ]  # fmt: skip
        # glibc then returns freed large blocks at once, so resident memory follows what is
        # live instead of what the allocator kept
        env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="131072", MALLOC_ARENA_MAX="2")
        done = subprocess.run(command, capture_output=True, text=True, check=True, env=env)
        runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(f"  memory run {size[0]}x{size[1]}: {runs[-1]}", flush=True)
    small, large = runs[0], runs[-1]
    peak_growth = large["peak_above_before_bytes"] - small["peak_above_before_bytes"]
    traced_growth = large["numpy_python_peak_bytes"] - small["numpy_python_peak_bytes"]
    output_growth = large["output_bytes"] - small["output_bytes"]
    return {
        "runs": runs,
        "area_ratio": (large["raster_shape"][0] * large["raster_shape"][1])
        / (small["raster_shape"][0] * small["raster_shape"][1]),
        "peak_growth_bytes": peak_growth,
        "output_growth_bytes": output_growth,
        "peak_growth_over_output_growth": peak_growth / output_growth if output_growth else None,
        "numpy_python_peak_growth_bytes": traced_growth,
        "numpy_python_peak_growth_over_output_growth": (
            traced_growth / output_growth if output_growth else None
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="demo", help="demo, or a .safetensors with its card")
    parser.add_argument("--device", default="cpu", help="cpu, auto, cuda or cuda:N")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--read-threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--repeat", type=int, default=2, help="speed runs; the fastest counts")
    parser.add_argument("--speed-size", default="3072x3072", help="base WxH at 0.5 µm/px")
    parser.add_argument("--memory-sizes", default="8192x8192,16384x16384")
    parser.add_argument(
        "--agreement-size", default=None, help="also segment a phantom of this size on two devices"
    )
    parser.add_argument("--agreement-devices", default="cuda,cpu")
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--json-out", type=Path, default=None)
    parser.add_argument("--child-memory", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_memory is not None:
        memory_child(args)
        return
    with tempfile.TemporaryDirectory(prefix="unitumour-bench-") as tmp:
        workdir = args.workdir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        report: dict[str, Any] = {
            "host": platform.node(),
            "cpu_count": os.cpu_count(),
            "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
            "model": args.model,
            "batch_size": args.batch_size,
            "read_threads": args.read_threads,
        }
        if not args.skip_speed:
            print("speed:", flush=True)
            report["speed"] = measure_speed(args, workdir)
            s = report["speed"]
            print(
                f"  {s['tiles']} tiles ({s['device']}): whole path {s['whole_path_s']:.2f} s = "
                f"{s['whole_path_mp_per_s']:.2f} MP/s; pure forward {s['pure_forward_s']:.2f} s "
                f"= {s['pure_forward_mp_per_s']:.2f} MP/s; ratio {s['ratio_whole_to_forward']:.3f} "
                f"(target <= 1.3); Dice vs phantom truth {s['dice_vs_phantom_truth']:.3f}",
                flush=True,
            )
            print(
                "  timings: " + ", ".join(f"{k} {v:.2f}" for k, v in sorted(s["timings_s"].items()))
            )
        if not args.skip_memory:
            print("memory:", flush=True)
            report["memory"] = m = measure_memory(args, workdir)
            print(
                f"  area x{m['area_ratio']:.2f}: peak grew "
                f"{m['peak_growth_bytes'] / 2**20:.1f} MiB, outputs grew "
                f"{m['output_growth_bytes'] / 2**20:.1f} MiB "
                f"(ratio {m['peak_growth_over_output_growth']:.2f}; target <= 1); numpy and "
                f"Python peak grew {m['numpy_python_peak_growth_bytes'] / 2**20:.1f} MiB (ratio "
                f"{m['numpy_python_peak_growth_over_output_growth']:.2f})",
                flush=True,
            )
        if args.agreement_size:
            print("agreement:", flush=True)
            report["agreement"] = measure_agreement(args, workdir)
            print("  " + json.dumps(report["agreement"]), flush=True)
        if args.json_out:
            args.json_out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
