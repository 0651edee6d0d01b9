"""Training and pure-forward throughput of the segmentation network, measured side by side.

Training: optimiser steps on batches already on the device (no data loading), images/s at
the training crop. Forward: inference-mode passes at the card's input size (tile + 2 x halo),
megapixels/s of network input and of kept tile centre, for each batch size and precision
(float32; bf16/fp16 autocast with channels_last on CUDA). The ratio columns compare each
configuration with float32 at the same batch size on the same device in the same run.

    python benchmarks/model_throughput.py --model demo --device auto --json-out bench.json

Runs on the training host's bare torch (no settings or database layer needed).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Any

import torch

from unitumour_dicom.model import build_network, count_parameters, load_model, select_device
from unitumour_dicom.train.loss import DiceBCELoss
from unitumour_dicom.train.trainer import TrainConfig


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time(fn: Any, device: torch.device, iters: int, warmup: int) -> float:
    for _ in range(warmup):
        fn()
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(iters):
        fn()
    _sync(device)
    return (time.perf_counter() - t0) / iters


def bench_training(
    arch: str,
    args: dict[str, Any],
    device: torch.device,
    batch: int,
    crop: int,
    iters: int,
    amp_dtype: torch.dtype | None,
) -> dict[str, Any]:
    torch.manual_seed(0)
    net = build_network(arch, args).to(device).train()
    channels_last = device.type == "cuda"
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
    loss_fn = DiceBCELoss()
    x = torch.randn(batch, 3, crop, crop, device=device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    y = (torch.rand(batch, 1, crop, crop, device=device) > 0.5).float()

    def step() -> None:
        with torch.autocast(
            device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None
        ):
            out = net(x)
        loss = loss_fn(out, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    sec = _time(step, device, iters, warmup=max(2, iters // 5))
    return {
        "batch": batch,
        "crop": crop,
        "precision": str(amp_dtype) if amp_dtype else "float32",
        "step_ms": round(sec * 1000, 2),
        "images_per_s": round(batch / sec, 1),
    }


@torch.inference_mode()
def bench_forward(
    module: torch.nn.Module,
    device: torch.device,
    batch: int,
    size: int,
    core: int,
    iters: int,
    amp_dtype: torch.dtype | None,
    channels_last: bool,
) -> dict[str, Any]:
    net = module.to(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    x = torch.randn(batch, 3, size, size, device=device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)

    def fwd() -> None:
        with torch.autocast(
            device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None
        ):
            net(x)

    sec = _time(fwd, device, iters, warmup=max(2, iters // 5))
    return {
        "batch": batch,
        "input": size,
        "precision": str(amp_dtype) if amp_dtype else "float32",
        "channels_last": channels_last,
        "ms": round(sec * 1000, 3),
        "input_mpix_per_s": round(batch * size * size / sec / 1e6, 1),
        "tile_mpix_per_s": round(batch * core * core / sec / 1e6, 1),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--model",
        default=None,
        help="Checkpoint or packaged name (default: recipe "
        "network, untrained, at the recipe's tile geometry).",
    )
    p.add_argument("--device", default="auto")
    p.add_argument("--train-batches", default="16,64")
    p.add_argument("--forward-batches", default="16,32,64")
    p.add_argument("--iters", type=int, default=20)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--json-out", type=Path, default=None)
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    device = select_device(a.device)
    recipe = TrainConfig(out=Path("x.safetensors"))
    if a.model:
        loaded = load_model(a.model, device=device)
        arch, args = loaded.card.architecture, dict(loaded.card.architecture_args)
        size, core, module = loaded.card.input_size, loaded.card.tile_size, loaded.module
    else:
        arch, args = recipe.architecture, recipe.architecture_args
        size, core = recipe.tile_size + 2 * recipe.overlap, recipe.tile_size
        module = build_network(arch, args).to(device).eval()
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        name = torch.cuda.get_device_name(device)
        half = [torch.bfloat16, torch.float16]
    else:
        name = platform.processor() or "cpu"
        half = []
    result: dict[str, Any] = {
        "device": f"{device.type}: {name}",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "architecture": arch,
        "parameters": count_parameters(module),
        "training": [],
        "forward": [],
    }
    for b in (int(v) for v in a.train_batches.split(",")):
        for dt in [None, *half[:1]]:
            r = bench_training(arch, args, device, b, recipe.crop_size, a.iters, dt)
            result["training"].append(r)
            print(json.dumps({"training": r}), flush=True)
    for b in (int(v) for v in a.forward_batches.split(",")):
        base = None
        for dt, cl in [(None, False), *[(h, True) for h in half]]:
            r = bench_forward(module, device, b, size, core, a.iters, dt, cl)
            if base is None:
                base = r["input_mpix_per_s"]
            r["ratio_to_float32"] = round(r["input_mpix_per_s"] / base, 2)
            result["forward"].append(r)
            print(json.dumps({"forward": r}), flush=True)
    if a.json_out:
        a.json_out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
