"""SEG pyramid writing: time and peak memory of write_seg_pyramid against highdicom's default
path (the whole mask to ``highdicom.seg.Segmentation(tile_pixel_array=True)``), on the same
masks, in one run.

Two masks (the larger 4x the area of the smaller, by default 10,000 and 20,000 pixels square)
on a source slide whose base level has the mask's pixel size, with levels 2x apart down to a
thumbnail. Each measurement runs in its own process after a small warm-up call; peak
resident memory is sampled every 5 ms during the measured call, and "above mask" is that peak
less what the process held when the call began (the mask included). Ours writes the whole
pyramid into a store, fsynced, and also reports its base level alone; highdicom's path builds
the base level only, in memory (its pyramid helper needs every level as a whole array too),
from the same boolean mask, and saves it. When highdicom's path would need more memory than
the machine has free (bytes per pixel measured on the smaller mask), it is not run and its
figures are projected from the smaller mask, and said to be.

    python benchmarks/seg_writing.py [--sizes 10000 20000] [--json-out seg.json]
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import platform
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # tests.seg.wsi_headers: source headers of any size


def _status_mib(field: str) -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


class _PeakRSS:
    """Highest resident size seen while the block runs, sampled every 5 ms by a thread
    (portable where resetting the kernel's high-water mark is not)."""

    def __enter__(self) -> _PeakRSS:
        self.start = _status_mib("VmRSS")
        self.peak = self.start
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, _status_mib("VmRSS"))

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _status_mib("VmRSS"))


def _mem_available_mib() -> float:
    with open("/proc/meminfo") as fh:
        for line in fh:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def _mask(size: int, seed: int = 0):  # type: ignore[no-untyped-def]
    """About a fifth of the slide as tumour: ellipses on a grid 16x coarser, with a ragged
    edge, then repeated up (no temporary larger than the mask)."""
    import numpy as np

    from unitumour_dicom.slide.mask import SlideMask

    coarse = math.ceil(size / 16)
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:coarse, 0:coarse].astype(np.float32)
    small = np.zeros((coarse, coarse), dtype=bool)
    for _ in range(6):
        cy, cx = rng.uniform(0.15, 0.85, 2) * coarse
        ry, rx = rng.uniform(0.06, 0.18, 2) * coarse
        small |= ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0
    small ^= rng.random((coarse, coarse)) > 0.995
    full = np.repeat(np.repeat(small, 16, axis=0)[:size], 16, axis=1)[:, :size]
    return SlideMask(np.ascontiguousarray(full), 0.5)


def _levels_for(size: int) -> int:
    n = 1
    while math.ceil(size / 2 ** (n - 1)) > 1024:
        n += 1
    return n


def _run_ours(size: int, queue: mp.Queue) -> None:
    from datetime import UTC, datetime

    from tests.seg.wsi_headers import make_wsi_headers
    from unitumour_dicom.config import load_settings
    from unitumour_dicom.seg import AlgorithmInfo, write_seg_pyramid
    from unitumour_dicom.store import FileStore

    mask = _mask(size)
    src = make_wsi_headers(size, size, tile=256, levels=_levels_for(size), mpp=0.5)
    with tempfile.TemporaryDirectory(dir=REPO / "benchmarks") as tmp:
        store = FileStore(Path(tmp))
        settings = load_settings(data_dir=Path(tmp)).seg

        def write(source, values, seed):  # type: ignore[no-untyped-def]
            return write_seg_pyramid(
                source_datasets=source,
                mask=values,
                probability=None,
                algorithm=AlgorithmInfo(name="benchmark", version="1"),
                settings=settings,
                uid_seed=seed,
                store=store,
                content_datetime=datetime(2026, 1, 1, tzinfo=UTC),
            )

        write(make_wsi_headers(512, 512, levels=1, mpp=0.5), _mask(512), "warm-up")
        with _PeakRSS() as mem:
            t0 = time.perf_counter()
            pyramid = write(src, mask, f"bench-{size}")
            seconds = time.perf_counter() - t0
    peak, baseline = mem.peak, mem.start
    queue.put(
        {
            "seconds": seconds,
            "peak_rss_mib": peak,
            "above_mask_mib": peak - baseline,
            "instances": len(pyramid.instances),
            "bytes": pyramid.total_bytes,
            "frames": sum(i.number_of_frames for i in pyramid.instances),
            "base_level_seconds": pyramid.timings_s["level_0"],
        }
    )


def _run_highdicom(size: int, queue: mp.Queue) -> None:
    import highdicom as hd
    import numpy as np

    from tests.seg.wsi_headers import make_wsi_headers

    mask = _mask(size)
    src = make_wsi_headers(size, size, tile=256, levels=1, mpp=0.5)[0]
    description = hd.seg.SegmentDescription(
        segment_number=1,
        segment_label="Tumour",
        segmented_property_category=hd.sr.CodedConcept("49755003", "SCT", "Morph. Abnormal"),
        segmented_property_type=hd.sr.CodedConcept("108369006", "SCT", "Neoplasm"),
        algorithm_type="AUTOMATIC",
        algorithm_identification=hd.AlgorithmIdentificationSequence(
            name="benchmark",
            version="1",
            family=hd.sr.CodedConcept("123110", "DCM", "Artificial Intelligence"),
        ),
    )

    def build(source, array):  # type: ignore[no-untyped-def]
        return hd.seg.Segmentation(
            source_images=[source],
            pixel_array=array,
            segmentation_type="BINARY",
            segment_descriptions=[description],
            series_instance_uid=hd.UID(),
            series_number=1,
            sop_instance_uid=hd.UID(),
            instance_number=1,
            manufacturer="bench",
            manufacturer_model_name="bench",
            software_versions="1",
            device_serial_number="1",
            tile_pixel_array=True,
            omit_empty_frames=False,
            dimension_organization_type="TILED_FULL",
        )

    build(make_wsi_headers(512, 512, levels=1)[0], _mask(512).array.view(np.uint8))  # warm-up
    with tempfile.TemporaryDirectory(dir=REPO / "benchmarks") as tmp, _PeakRSS() as mem:
        t0 = time.perf_counter()
        seg = build(src, mask.array)  # the boolean mask, as the model hands it over
        seg.save_as(Path(tmp) / "seg.dcm")
        seconds = time.perf_counter() - t0
    peak, baseline = mem.peak, mem.start
    queue.put({"seconds": seconds, "peak_rss_mib": peak, "above_mask_mib": peak - baseline})


def _measure(target: Any, size: int) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    queue: mp.Queue = ctx.Queue()
    proc = ctx.Process(target=target, args=(size, queue))
    proc.start()
    proc.join()
    if proc.exitcode != 0:
        return {"error": f"exit code {proc.exitcode}"}
    return queue.get(timeout=5)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs=2, default=[10_000, 20_000])
    parser.add_argument("--json-out", type=Path)
    args = parser.parse_args(argv)
    rows: list[dict[str, Any]] = []
    per_pixel: float | None = None
    seconds_per_pixel: float | None = None
    print(f"host {platform.node()}, {mp.cpu_count()} CPUs, python {platform.python_version()}")
    for size in sorted(args.sizes):
        pixels = size * size
        ours = _measure(_run_ours, size)
        need_mib = (per_pixel or 32.0) * pixels / 2**20
        available = _mem_available_mib()
        if need_mib < 0.5 * available:
            ref = _measure(_run_highdicom, size)
            ref["projected"] = False
            if "error" not in ref:
                per_pixel = ref["above_mask_mib"] * 2**20 / pixels
                seconds_per_pixel = ref["seconds"] / pixels
        else:
            ref = {
                "projected": True,
                "seconds": (seconds_per_pixel or float("nan")) * pixels,
                "above_mask_mib": need_mib,
                "why": f"needs ~{need_mib / 1024:.1f} GiB, {available / 1024:.1f} GiB free",
            }
        rows.append({"size": size, "pixels": pixels, "ours": ours, "highdicom": ref})
        speed = ref.get("seconds", float("nan")) / ours["seconds"] if "seconds" in ours else None
        print(
            f"\n{size} x {size} mask ({pixels / 1e6:.0f} Mpx), {ours.get('instances')} SEG "
            f"levels, {ours.get('frames')} frames, {ours.get('bytes', 0) / 2**20:.1f} MiB written"
        )
        print(
            f"  ours (whole pyramid):     {ours.get('seconds', float('nan')):8.2f} s  "
            f"peak {ours.get('peak_rss_mib', float('nan')):8.0f} MiB  "
            f"above mask {ours.get('above_mask_mib', float('nan')):7.0f} MiB"
        )
        print(f"  ours (base level only):   {ours.get('base_level_seconds', float('nan')):8.2f} s")
        label = "projected" if ref.get("projected") else "measured"
        peak = "" if ref.get("projected") else f"peak {ref.get('peak_rss_mib', 0):8.0f} MiB  "
        print(
            f"  highdicom (base level):   {ref.get('seconds', float('nan')):8.2f} s  {peak}"
            f"above mask {ref.get('above_mask_mib', float('nan')):7.0f} MiB  ({label}"
            + (f": {ref['why']})" if ref.get("why") else ")")
        )
        if speed:
            print(
                f"  ratio highdicom / ours:   time {speed:6.1f}x, memory above mask "
                f"{ref.get('above_mask_mib', float('nan')) / max(ours['above_mask_mib'], 1):6.1f}x"
            )
    if len(rows) == 2 and all("seconds" in r["ours"] for r in rows):
        growth = rows[1]["ours"]["seconds"] / rows[0]["ours"]["seconds"]
        mem = rows[1]["ours"]["above_mask_mib"] / max(rows[0]["ours"]["above_mask_mib"], 1)
        area = rows[1]["pixels"] / rows[0]["pixels"]
        print(
            f"\nours, larger vs smaller mask ({area:.0f}x area): time {growth:.2f}x, "
            f"memory above mask {mem:.2f}x"
        )
    if args.json_out:
        args.json_out.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
