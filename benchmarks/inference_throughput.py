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

Scale: peak memory of one whole job (``segment_slide``, the SEG pyramid written from the
masks on disk, the overlay picture) against slide area at 1 x, 4 x and 16 x, each size in a
fresh process whose resident high-water mark (VmHWM, reset with /proc/self/clear_refs before
each stage) is read after each stage. Two layouts: ``glass``, a mostly-glass slide whose one
piece of tissue keeps its size while the glass grows (the slide grows in height), and
``full``, the same kind of phantom grown in both directions with tissue detection told that
everything is tissue, so the model, the masks and post-processing cover the whole area. The
model is small and cheap (``--scale-model tiny``: random-init 8 x 8 pooling, a 1 x 1
convolution and upsampling, 128 px inputs) so the sizes stay quick on two CPU cores; its
activations do not depend on the slide. Target: the peak grows by less than 64 MB from 1 x
to 16 x, where in-memory masks would have grown by 3 bytes a pixel.

    python benchmarks/inference_throughput.py --skip-speed --skip-memory \
        --scale-glass 4096x4096 --scale-full 2048x2048 --workdir /tmp/bench

Phantoms are written once into --workdir (default: a temporary folder) and reused. On a GPU
host, ``--device cuda --agreement-size 4096x4096`` also segments one phantom with CUDA
(autocast, channels_last) and with the CPU and reports how far the two masks agree.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
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
        a = np.asarray(first.probability.array).astype(np.int16)  # scratch rasters, read whole
        b = np.asarray(second.probability.array).astype(np.int16)
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


# -- scale: peak memory against slide area ---------------------------------------------------

SCALE_TARGET_BYTES = 64 * 2**20
# Tissue detection that calls everything tissue (glass included): the "full" layout.
EVERYTHING_IS_TISSUE = {
    "min_saturation": 0.0,
    "max_saturation": 0.0,
    "min_green_od": -1.0,
    "min_brightness": 0,
    "min_green_to_red_od": -1.0e9,
    "max_blue_to_green_od": 1.0e9,
}


def status_bytes(field: str) -> int:
    """A memory figure of /proc/self/status (VmRSS, VmHWM) in bytes."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(field)


def reset_peak() -> bool:
    """Reset VmHWM to the present resident size (Linux 4.0+); False where not allowed."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def scale_sizes(layout: str, base: tuple[int, int], factor: int) -> tuple[int, int]:
    """Base-level (width, height) of a layout at ``factor`` times the area: ``glass`` grows
    in height only (its one tissue piece, sized by the width, stays as it is), ``full``
    in both directions."""
    width, height = base
    if layout == "glass":
        return width, height * factor
    side = round(factor**0.5)
    if side * side != factor:
        raise ValueError(f"area factors of the full layout must be squares, not {factor}")
    return width * side, height * side


def scale_phantom(workdir: Path, layout: str, size: tuple[int, int], seed: int) -> Any:
    """A phantom of mostly glass (one tissue piece for ``glass``, a piece per 1 x area for
    ``full``) whose glass tiles are not written, as tissue-finding scanners do: cheap to
    write and to read at any size."""
    from unitumour_dicom.errors import UniTumourError
    from unitumour_dicom.synthetic import PhantomSpec, load_phantom, write_phantom_slide

    folder = workdir / f"scale-{layout}-{size[0]}x{size[1]}-seed{seed}"
    if (folder / "phantom.json").exists():
        try:
            return load_phantom(folder)
        except UniTumourError as exc:
            print(f"  rewriting {folder.name}: {exc}", flush=True)
    spec = PhantomSpec(
        width=size[0], height=size[1], tile_size=256, levels=4, mpp=0.5, seed=seed,
        n_tumours=2, n_tissue_pieces=1, label=False, overview=False,
        dimension_organization="TILED_SPARSE", omit_empty_tiles=True,
    )  # fmt: skip
    start = time.perf_counter()
    slide = write_phantom_slide(folder, spec, overwrite=True)
    print(f"  wrote {folder.name} in {time.perf_counter() - start:.1f} s", flush=True)
    return slide


class PooledColour(torch.nn.Module):
    """A cheap stand-in network: mean colour over 8 x 8 pixels, a random 1 x 1 convolution,
    bilinear upsampling. Smooth tumour logits that follow the stain, at a fraction of a real
    network's cost; its memory does not depend on the slide."""

    def __init__(self, seed: int) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.pool = torch.nn.AvgPool2d(8)
        self.mix = torch.nn.Conv2d(3, 1, 1)
        with torch.no_grad():
            self.mix.weight.copy_(torch.randn(1, 3, 1, 1, generator=generator))
            self.mix.bias.zero_()
        self.up = torch.nn.Upsample(scale_factor=8, mode="bilinear", align_corners=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(self.mix(self.pool(x)))


def scale_model(args: argparse.Namespace) -> Any:
    import dataclasses

    from unitumour_dicom.model.checkpoint import LoadedModel

    demo = load("demo", args.device)
    if args.scale_model == "demo":
        return demo
    card = dataclasses.replace(
        demo.card,
        name="scale-benchmark-stand-in",
        mpp=0.5,  # the phantoms' base pixel: the raster is the base level
        tile_size=args.scale_tile,
        overlap=args.scale_overlap,
        min_tumour_area_um2=200.0,
        fill_holes_max_area_um2=2000.0,
    )
    module = PooledColour(args.seed).eval().to(demo.device)
    return LoadedModel(module=module, card=card, device=demo.device)


def scale_child(args: argparse.Namespace) -> None:
    """Runs in a fresh process: one job on one phantom (segment, SEG pyramid, picture);
    prints its peak memory per stage as JSON."""
    import pydicom

    from unitumour_dicom.config import load_settings
    from unitumour_dicom.infer import segment_slide
    from unitumour_dicom.seg import AlgorithmInfo, write_seg_pyramid
    from unitumour_dicom.seg.overlay import render_overlay_png
    from unitumour_dicom.slide import TissueParams, open_slide
    from unitumour_dicom.store import FileStore
    from unitumour_dicom.synthetic import load_phantom

    truth = load_phantom(args.child_scale)
    model = scale_model(args)
    params = TissueParams(**EVERYTHING_IS_TISSUE) if args.scale_layout == "full" else None
    work = Path(tempfile.mkdtemp(prefix="scale-job-", dir=args.child_scale.parent))
    settings = load_settings(data_dir=work / "data")
    store = FileStore(work / "store")
    peaks: dict[str, int] = {}
    seconds: dict[str, float] = {}
    try:
        headers = [
            ds
            for ds in (pydicom.dcmread(p, stop_before_pixels=True) for p in truth.instance_paths)
            if len(ds.ImageType) >= 3 and str(ds.ImageType[2]).upper() == "VOLUME"
        ]
        with open_slide(truth.instance_paths) as slide:
            resettable = reset_peak()
            before = status_bytes("VmRSS")
            with PeakSampler() as sampler:
                start = time.perf_counter()
                result = segment_slide(
                    slide,
                    model,
                    batch_size=args.batch_size,
                    read_threads=args.read_threads,
                    tissue_params=params,
                    scratch_dir=work,
                )
                seconds["segment"] = time.perf_counter() - start
                peaks["segment"] = status_bytes("VmHWM") if resettable else sampler.peak
                reset_peak()
                start = time.perf_counter()
                pyramid = write_seg_pyramid(
                    source_datasets=headers,
                    mask=result.tumour,
                    probability=result.probability,
                    algorithm=AlgorithmInfo(name=model.card.name, version=model.card.version),
                    settings=settings.seg,
                    uid_seed="scale-benchmark",
                    store=store,
                )
                seconds["seg"] = time.perf_counter() - start
                peaks["seg"] = status_bytes("VmHWM") if resettable else sampler.peak
                reset_peak()
                start = time.perf_counter()
                render_overlay_png(
                    slide_paths=truth.instance_paths,
                    seg_paths=[store.abspath(i.path) for i in pyramid.instances],
                    max_pixels=1024,
                )
                seconds["picture"] = time.perf_counter() - start
                peaks["picture"] = status_bytes("VmHWM") if resettable else sampler.peak
        rasters = (result.probability.array, result.tissue.array, result.tumour.array)
        disk = sum(int(getattr(r, "disk_bytes", 0)) for r in rasters)
        rows, cols = result.tumour.shape
        result.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(
        json.dumps(
            {
                "layout": args.scale_layout,
                "slide_base_pixels": list(truth.size),
                "raster_shape": [rows, cols],
                "raster_megapixels": rows * cols / 1e6,
                "tiles": result.tiles,
                "tiles_in_grid": result.tiles_in_grid,
                "tissue_fraction": result.tissue_area_mm2
                / (rows * cols * result.tumour.pixel_area_mm2),
                "tumour_area_mm2": result.tumour_area_mm2,
                "peak_source": "VmHWM" if resettable else "sampled VmRSS",
                "resident_before_bytes": before,
                "peak_bytes": max(peaks.values()),
                "peak_above_before_bytes": max(peaks.values()) - before,
                "stage_peak_above_before_bytes": {k: v - before for k, v in peaks.items()},
                "in_memory_masks_bytes": 3 * rows * cols,
                "scratch_disk_bytes": disk,
                "seconds": seconds,
                "segment_timings_s": {k: round(v, 3) for k, v in result.timings.items()},
                "seg_instances": len(pyramid.instances),
                "process_max_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
            }
        )
    )


def measure_scale(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    factors = [int(f) for f in args.scale_factors.split(",")]
    report: dict[str, Any] = {"factors": factors, "target_growth_bytes": SCALE_TARGET_BYTES}
    for layout, base in (("glass", args.scale_glass), ("full", args.scale_full)):
        if not base:
            continue
        runs = []
        for factor in factors:
            size = scale_sizes(layout, parse_size(base), factor)
            folder = scale_phantom(workdir, layout, size, args.seed).root
            command = [
                sys.executable, __file__, "--child-scale", str(folder), "--scale-layout", layout,
                "--scale-model", args.scale_model, "--scale-tile", str(args.scale_tile),
                "--scale-overlap", str(args.scale_overlap), "--device", args.device,
                "--batch-size", str(args.batch_size), "--read-threads", str(args.read_threads),
                "--seed", str(args.seed),
            ]  # fmt: skip
            env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="131072", MALLOC_ARENA_MAX="2")
            done = subprocess.run(command, capture_output=True, text=True, env=env)
            if done.returncode:
                raise RuntimeError(f"scale run {layout} x{factor} failed:\n{done.stderr[-4000:]}")
            run = json.loads(done.stdout.strip().splitlines()[-1])
            run["factor"] = factor
            runs.append(run)
            print(
                f"  {layout} x{factor}: raster {run['raster_megapixels']:.1f} Mpx, peak "
                f"{run['peak_above_before_bytes'] / 2**20:.1f} MiB above the start "
                f"({run['seconds']['segment']:.1f} s)",
                flush=True,
            )
        first, last = runs[0], runs[-1]
        growth = last["peak_above_before_bytes"] - first["peak_above_before_bytes"]
        report[layout] = {
            "runs": runs,
            "peak_growth_bytes": growth,
            "in_memory_masks_growth_bytes": last["in_memory_masks_bytes"]
            - first["in_memory_masks_bytes"],
            "within_target": growth < SCALE_TARGET_BYTES,
        }
    return report


def print_scale(report: dict[str, Any]) -> None:
    """Each layout's sizes side by side, with ratios to the 1 x run."""
    mib = 2**20
    for layout in ("glass", "full"):
        if layout not in report:
            continue
        runs = report[layout]["runs"]
        base = runs[0]
        header = f"  {layout:<28}" + "".join(f"{'x' + str(r['factor']):>12}" for r in runs)
        rows = [
            ("base pixels (W x H)", lambda r: "x".join(str(v) for v in r["slide_base_pixels"])),
            ("raster (Mpx)", lambda r: f"{r['raster_megapixels']:.1f}"),
            (
                "area ratio",
                lambda r, b=base: f"{r['raster_megapixels'] / b['raster_megapixels']:.2f}",
            ),
            ("tissue fraction", lambda r: f"{r['tissue_fraction']:.3f}"),
            ("tiles run", lambda r: str(r["tiles"])),
            ("in-memory masks (MiB)", lambda r: f"{r['in_memory_masks_bytes'] / mib:.1f}"),
            ("scratch on disk (MiB)", lambda r: f"{r['scratch_disk_bytes'] / mib:.1f}"),
            ("resident at start (MiB)", lambda r: f"{r['resident_before_bytes'] / mib:.1f}"),
            *(
                (
                    f"peak above start: {stage} (MiB)",
                    lambda r, s=stage: f"{r['stage_peak_above_before_bytes'][s] / mib:.1f}",
                )
                for stage in ("segment", "seg", "picture")
            ),
            ("peak above start (MiB)", lambda r: f"{r['peak_above_before_bytes'] / mib:.1f}"),
            (
                "peak ratio to x1",
                lambda r, b=base: (
                    f"{r['peak_above_before_bytes'] / max(b['peak_above_before_bytes'], 1):.2f}"
                ),
            ),
            ("seconds (segment)", lambda r: f"{r['seconds']['segment']:.1f}"),
            (
                "seconds (SEG, picture)",
                lambda r: f"{r['seconds']['seg']:.1f}, {r['seconds']['picture']:.1f}",
            ),
        ]
        print(header)
        for name, cell in rows:
            print(f"  {name:<28}" + "".join(f"{cell(r):>12}" for r in runs))
        m = report[layout]
        print(
            f"  {layout}: peak grew {m['peak_growth_bytes'] / mib:.1f} MiB from x{base['factor']} "
            f"to x{runs[-1]['factor']} (target < {SCALE_TARGET_BYTES / mib:.0f} MiB: "
            f"{'met' if m['within_target'] else 'NOT met'}); in-memory masks would have grown "
            f"{m['in_memory_masks_growth_bytes'] / mib:.1f} MiB",
            flush=True,
        )


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
    parser.add_argument("--skip-scale", action="store_true")
    parser.add_argument(
        "--scale-glass", default="4096x4096", help="base WxH of the mostly-glass slide at 1 x"
    )
    parser.add_argument(
        "--scale-full", default="2048x2048", help="base WxH of the all-tissue slide at 1 x"
    )
    parser.add_argument("--scale-factors", default="1,4,16", help="areas, relative to 1 x")
    parser.add_argument("--scale-model", default="tiny", choices=("tiny", "demo"))
    parser.add_argument("--scale-tile", type=int, default=96)
    parser.add_argument("--scale-overlap", type=int, default=16)
    parser.add_argument("--child-memory", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--child-scale", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--scale-layout", default="glass", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_memory is not None:
        memory_child(args)
        return
    if args.child_scale is not None:
        scale_child(args)
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
        if not args.skip_scale:
            print("scale:", flush=True)
            report["scale"] = measure_scale(args, workdir)
            print_scale(report["scale"])
        if args.agreement_size:
            print("agreement:", flush=True)
            report["agreement"] = measure_agreement(args, workdir)
            print("  " + json.dumps(report["agreement"]), flush=True)
        if args.json_out:
            args.json_out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
