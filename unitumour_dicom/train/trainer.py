"""Training: from image/mask pairs and/or DICOM slides with reference SEGs to a checkpoint and
its card.

The recipe (the defaults of ``TrainConfig``) is the demo model's: AdamW with a short warm-up
and cosine decay, Dice + cross-entropy, an exponential moving average of the weights (which is
what gets validated and exported), selection of the best epoch on the validation split, then
threshold and post-processing tuned on validation, then one evaluation on test whose figures go
into the card. Seeds are fixed and each sample's augmentation is drawn from a generator seeded
by (seed, epoch, index), so a run does not depend on the number of loader workers; on one
device with one thread count, a rerun gives the same weights.

Multi-GPU: start under ``torchrun --nproc_per_node N`` and each process trains on its share of
every epoch through DistributedDataParallel (SyncBatchNorm, NCCL); the global batch is
``batch_size * N``. Mixed precision (bf16, or fp16 with loss scaling where bf16 is missing) and
channels_last on CUDA; float32 on CPU.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import logging
import math
import os
import platform
import shlex
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler

from .. import __version__
from ..errors import UniTumourError
from ..evaluate.images import forward_probabilities
from ..evaluate.manifest import PairRecord, load_pair, read_manifest
from ..evaluate.report import ItemResult, summarise
from ..model.card import ModelCard
from ..model.checkpoint import load_model, save_checkpoint
from ..model.device import select_device
from ..model.network import build_network, count_parameters
from ..model.postprocess import postprocess_probability
from ..progress import StageProgress
from .augment import AugmentConfig, augment_pair
from .config import TrainConfig
from .loss import DiceBCELoss
from .split import Split

logger = logging.getLogger(__name__)

EBHI_TRAINING_DATA = {
    "name": "EBHI-Seg (subset: Adenocarcinoma, Normal, Polyp)",
    "source": "Shi L. et al., Frontiers in Medicine 2023; "
    "figshare doi:10.6084/m9.figshare.21540159.v1",
    "licence": "CC BY 4.0",
    "content": "224x224 px H&E images of colorectal enteroscope biopsies ('400x' capture), "
    "Adenocarcinoma with carcinoma masks drawn by the dataset's authors; Normal and Polyp "
    "tumour-free (empty masks)",
    "pixel_size_assumption": "The authors state no pixel size. Colonic crypts measure about "
    "80 px across, which suggests roughly 0.8-1.0 µm/px; this model assumes 0.9 µm/px. On "
    "slides scanned at a known pixel size the input is resampled to 0.9 µm/px, so a wrong "
    "assumption scales every structure by the same error.",
}


class TrainingError(UniTumourError):
    """Training cannot start or cannot finish (bad data, bad configuration)."""


@dataclass
class TrainResult:
    card: ModelCard
    weights_path: Path
    history: list[dict[str, Any]]
    best_epoch: int
    duration_s: float


# --------------------------------------------------------------------------- data


class PairDataset(Dataset):
    """In-memory images and masks; item ``(epoch, index)`` is one augmented crop."""

    def __init__(
        self,
        images: Sequence[np.ndarray],
        masks: Sequence[np.ndarray],
        augment: AugmentConfig,
        crop_size: int,
        seed: int,
    ) -> None:
        self.images = list(images)
        self.masks = list(masks)
        self.augment = augment
        self.crop_size = crop_size
        self.seed = seed

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        epoch, index = key
        rng = np.random.default_rng([self.seed, epoch, index])
        image, mask = augment_pair(
            self.images[index], self.masks[index], rng, self.augment, out_size=self.crop_size
        )
        return torch.from_numpy(image), torch.from_numpy(mask)


class EpochSampler(Sampler):
    """A seeded permutation per epoch, cut into this rank's share (equal for every rank)."""

    def __init__(self, n: int, seed: int, rank: int = 0, world: int = 1) -> None:
        self.n, self.seed, self.rank, self.world = n, seed, rank, world
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n // self.world

    def __iter__(self) -> Iterator[tuple[int, int]]:
        order = np.random.default_rng([self.seed, self.epoch, 7919]).permutation(self.n)
        share = order[: len(self) * self.world][self.rank :: self.world]
        return iter([(self.epoch, int(i)) for i in share])


def _load_split(records: list[PairRecord], mpp: float) -> Split:
    images, masks = [], []
    for rec in records:
        image, mask = load_pair(rec, target_mpp=mpp)
        images.append(image)
        masks.append(mask)
    return Split(records, images, masks)


def load_manifest_splits(config: TrainConfig) -> dict[str, Split]:
    assert config.manifest is not None
    names = [config.train_split, config.val_split]
    if config.test_split:
        names.append(config.test_split)
    out = {}
    for name in names:
        records = read_manifest(config.manifest, splits=[name])
        if config.limit:
            records = _stratified_head(records, config.limit)
        out[name] = _load_split(records, config.mpp)
    return out


def _stratified_head(records: list[PairRecord], limit: int) -> list[PairRecord]:
    """About ``limit`` records with every class represented (for smoke runs)."""
    by_class: dict[str, list[PairRecord]] = {}
    for r in records:
        by_class.setdefault(r.cls, []).append(r)
    per = max(1, limit // max(1, len(by_class)))
    return [r for group in by_class.values() for r in group[:per]]


def channel_statistics(images: Sequence[np.ndarray]) -> dict[str, list[float]]:
    """Per-channel mean and std of RGB in [0, 1] over the training images."""
    total = np.zeros(3)
    total_sq = np.zeros(3)
    count = 0
    for img in images:
        x = img.reshape(-1, 3).astype(np.float64) / 255.0
        total += x.sum(0)
        total_sq += (x * x).sum(0)
        count += x.shape[0]
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - mean * mean, 1e-12))
    return {"mean": [round(float(v), 4) for v in mean], "std": [round(float(v), 4) for v in std]}


# --------------------------------------------------------------------------- distributed


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def _init_distributed(config: TrainConfig) -> tuple[Dist, torch.device]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist(), select_device(config.device)
    import torch.distributed as torch_dist

    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available() and config.device != "cpu":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
        backend = "nccl"
    else:
        device = torch.device("cpu")
        backend = "gloo"
    if not torch_dist.is_initialized():
        torch_dist.init_process_group(backend=backend)
    return Dist(rank, world, local_rank), device


# --------------------------------------------------------------------------- training


class WeightEMA:
    """Exponential moving average of parameters; buffers (BN statistics) copied."""

    def __init__(self, module: nn.Module, decay: float) -> None:
        self.decay = decay
        self.module = copy.deepcopy(module).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, module: nn.Module, step: int) -> None:
        # Short warm-up of the decay so the average is not dominated by the random start.
        d = min(self.decay, (1 + step) / (10 + step))
        for e, p in zip(self.module.parameters(), module.parameters(), strict=True):
            e.lerp_(p.detach(), 1 - d)
        for mine, theirs in zip(self.module.buffers(), module.buffers(), strict=True):
            mine.copy_(theirs)


def _param_groups(module: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for p in module.parameters():
        (decay if p.ndim > 1 else no_decay).append(p)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def _lr_lambda(total_steps: int, warmup_steps: int) -> Callable[[int], float]:
    def f(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return f


def _amp_dtype(device: torch.device, amp: bool) -> torch.dtype | None:
    if not amp or device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def _score(items: Sequence[ItemResult]) -> tuple[float, float, float]:
    """(selection score, Dice on tumour-bearing images, mean false tumour area per tumour-free
    class): higher Dice and lower false area are both wanted, weighted alike."""
    bearing = [r.dice for r in items if not r.tumour_free]
    by_class: dict[str, list[float]] = {}
    for r in items:
        if r.tumour_free:
            by_class.setdefault(r.cls, []).append(r.predicted_fraction)
    d = float(np.mean(bearing)) if bearing else 1.0
    fta = float(np.mean([np.mean(v) for v in by_class.values()])) if by_class else 0.0
    return d - fta, d, fta


def _items(
    split: Split, probs: Sequence[np.ndarray], post: Callable[[np.ndarray], np.ndarray]
) -> list[ItemResult]:
    return [
        ItemResult.from_masks(str(r.image), r.cls, r.case, post(p), m)
        for r, p, m in zip(split.records, probs, split.masks, strict=True)
    ]


def tune_postprocessing(
    split: Split, probs: Sequence[np.ndarray], config: TrainConfig
) -> tuple[dict[str, float], dict[str, float]]:
    """Threshold, then minimum tumour area and hole filling, chosen on validation."""
    best: tuple[float, dict[str, float], dict[str, float]] | None = None
    for t in config.thresholds:

        def above(p: np.ndarray, t: float = t) -> np.ndarray:
            return p >= t

        s = _score(_items(split, probs, above))
        if best is None or s[0] > best[0] + 1e-9:
            best = (s[0], {"threshold": t}, {"score": s[0], "dice": s[1], "fta": s[2]})
    assert best is not None
    threshold = best[1]["threshold"]
    best = None
    for area in config.min_areas_um2:
        for holes in config.fill_holes_um2:
            params = {
                "threshold": threshold,
                "min_tumour_area_um2": area,
                "fill_holes_max_area_um2": holes,
            }

            def post(p: np.ndarray, area: float = area, holes: float = holes) -> np.ndarray:
                return postprocess_probability(
                    p,
                    mpp=config.mpp,
                    threshold=threshold,
                    min_tumour_area_um2=area,
                    fill_holes_max_area_um2=holes,
                )

            s = _score(_items(split, probs, post))
            if best is None or s[0] > best[0] + 1e-9:
                best = (s[0], params, {"score": s[0], "dice": s[1], "fta": s[2]})
    assert best is not None
    return best[1], best[2]


def train(
    config: TrainConfig,
    *,
    progress: Callable[[str], None] | None = None,
    on_progress: StageProgress | None = None,
) -> TrainResult:
    """Run the recipe in ``config``; write ``config.out`` and its card; return them.

    ``progress`` receives a line per event (data, each epoch's record as JSON, the choice of
    post-processing); ``on_progress`` is told ``("epochs", done, total)`` after each epoch and
    ``("steps", done, total)`` after each step of the epoch (in the main process only)."""
    started = time.perf_counter()
    say = progress or (lambda msg: logger.info("%s", msg))
    if config.manifest is None and config.slides is None:
        raise TrainingError("give a manifest of image/mask pairs, a slide list, or both")
    out = Path(config.out)
    if not out.name.endswith(".safetensors"):
        raise TrainingError(f"--out must name a .safetensors file, not {out}")
    if config.threads:
        torch.set_num_threads(config.threads)
    dist, device = _init_distributed(config)
    torch.manual_seed(config.seed)
    np.random.seed(config.seed)
    amp_dtype = _amp_dtype(device, config.amp)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True

    splits = _gather_data(config)
    train_split, val_split = splits["train"], splits["val"]
    if not train_split.images:
        raise TrainingError("the training split is empty")
    if not val_split.images:
        raise TrainingError("the validation split is empty: model selection needs one")
    normalisation = channel_statistics(train_split.images)
    say(
        f"data: train {len(train_split.images)}, val {len(val_split.images)}"
        + (f", test {len(splits['test'].images)}" if "test" in splits else "")
        + f"; normalisation {normalisation}"
    )

    net = build_network(config.architecture, config.architecture_args).to(device)
    n_params = count_parameters(net)
    channels_last = device.type == "cuda"
    if channels_last:
        # torch's overloads of Module.to() omit its documented memory_format keyword.
        net = net.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    ema = WeightEMA(net, config.ema_decay)
    model: nn.Module = net
    inner: nn.Module = net  # what the EMA follows: the network inside any DDP wrapper
    if dist.world > 1:
        from torch.nn.parallel import DistributedDataParallel

        # Batch statistics across processes on GPUs (NCCL); gloo on CPU has no SyncBatchNorm,
        # so there each process normalises its own batch (as the single-process recipe does).
        inner = nn.SyncBatchNorm.convert_sync_batchnorm(net) if device.type == "cuda" else net
        model = DistributedDataParallel(
            inner, device_ids=[device.index] if device.type == "cuda" else None
        )
        ema = WeightEMA(inner, config.ema_decay)

    dataset = PairDataset(
        train_split.images, train_split.masks, config.augment, config.crop_size, config.seed
    )
    sampler = EpochSampler(len(dataset), config.seed, dist.rank, dist.world)
    workers = config.workers
    if workers is None:
        workers = 0 if device.type == "cpu" else max(0, min(8, (os.cpu_count() or 2) - 2))
    loader = DataLoader(
        dataset,
        batch_size=config.batch_size,
        sampler=sampler,
        num_workers=workers,
        pin_memory=device.type == "cuda",
        drop_last=True,
        persistent_workers=workers > 0,
        prefetch_factor=4 if workers > 0 else None,
    )
    steps_per_epoch = len(loader)
    if steps_per_epoch == 0:
        raise TrainingError(
            f"{len(dataset)} training images make no full batch of {config.batch_size} per process"
        )
    total_steps = steps_per_epoch * config.epochs
    if config.max_steps:
        total_steps = min(total_steps, config.max_steps)
    optimiser = torch.optim.AdamW(
        _param_groups(model, config.weight_decay), lr=config.lr, betas=(0.9, 0.999)
    )
    warmup = max(1, round(config.warmup_epochs * steps_per_epoch))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimiser, _lr_lambda(total_steps, warmup))
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)
    loss_fn = DiceBCELoss(config.dice_weight, config.bce_weight, mode=config.dice_mode)
    mean_t = torch.tensor(normalisation["mean"], device=device).view(1, 3, 1, 1)
    std_t = torch.tensor(normalisation["std"], device=device).view(1, 3, 1, 1)

    say(
        f"training {config.architecture} ({n_params:,} parameters) on {device}"
        f"{f' x{dist.world}' if dist.world > 1 else ''}, {config.epochs} epochs of "
        f"{steps_per_epoch} steps, batch {config.batch_size}, amp {amp_dtype}, workers {workers}"
    )
    history: list[dict[str, Any]] = []
    best_state: dict[str, torch.Tensor] | None = None
    best_score, best_epoch, step = -math.inf, -1, 0
    log_fh = open(config.log_file, "a", encoding="utf-8") if config.log_file and dist.main else None  # noqa: SIM115
    try:
        for epoch in range(config.epochs):
            model.train()
            sampler.set_epoch(epoch)
            t0 = time.perf_counter()
            loss_sum, loss_n, images_seen = 0.0, 0, 0
            report = on_progress if dist.main else None
            if report is not None:
                report("epochs", epoch, config.epochs)
            for epoch_step, (images, masks) in enumerate(loader, 1):
                x = images.to(device, non_blocking=True).permute(0, 3, 1, 2).float()
                x = (x / 255.0 - mean_t) / std_t
                if channels_last:
                    x = x.contiguous(memory_format=torch.channels_last)
                y = masks.to(device, non_blocking=True)[:, None].float()
                with torch.autocast(
                    device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None
                ):
                    logits = model(x)
                loss = loss_fn(logits, y)
                optimiser.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(optimiser)
                scaler.update()
                scheduler.step()
                ema.update(inner, step)
                step += 1
                loss_sum += float(loss.detach())
                loss_n += 1
                images_seen += x.shape[0] * dist.world
                if report is not None:
                    report("steps", epoch_step, steps_per_epoch)
                if config.max_steps and step >= config.max_steps:
                    break
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            train_s = time.perf_counter() - t0
            t1 = time.perf_counter()
            probs = forward_probabilities(
                ema.module,
                val_split.images,
                mean=normalisation["mean"],
                std=normalisation["std"],
                device=device,
                batch_size=64,
                amp=amp_dtype is not None,
            )
            score, val_dice, val_fta = _score(_items(val_split, probs, lambda p: p >= 0.5))
            record = {
                "epoch": epoch + 1,
                "step": step,
                "loss": round(loss_sum / max(1, loss_n), 5),
                "lr": scheduler.get_last_lr()[0],
                "val_dice_tumour": round(val_dice, 4),
                "val_false_tumour_area": round(val_fta, 4),
                "val_score": round(score, 4),
                "train_s": round(train_s, 2),
                "val_s": round(time.perf_counter() - t1, 2),
                "train_images_per_s": round(images_seen / train_s, 1) if train_s else None,
            }
            history.append(record)
            if score > best_score:
                best_score, best_epoch = score, epoch + 1
                best_state = {k: v.detach().clone() for k, v in ema.module.state_dict().items()}
            say(json.dumps(record))
            if report is not None:
                report("epochs", epoch + 1, config.epochs)
            if log_fh:
                log_fh.write(json.dumps(record) + "\n")
                log_fh.flush()
            if config.max_steps and step >= config.max_steps:
                break
    finally:
        if log_fh:
            log_fh.close()

    if dist.world > 1:
        import torch.distributed as torch_dist

        torch_dist.barrier()
        if not dist.main:
            torch_dist.destroy_process_group()
            raise SystemExit(0)
    assert best_state is not None
    ema.module.load_state_dict(best_state)
    final = ema.module.to(memory_format=torch.contiguous_format)  # type: ignore[call-overload]
    final = final.float().eval()

    # Post-processing chosen on validation with the selected weights.
    probs = forward_probabilities(
        final,
        val_split.images,
        mean=normalisation["mean"],
        std=normalisation["std"],
        device=device,
        batch_size=64,
        amp=False,
    )
    post, val_scores = tune_postprocessing(val_split, probs, config)
    say(f"best epoch {best_epoch}; post-processing chosen on val: {post} -> {val_scores}")
    duration = time.perf_counter() - started
    fields = _card_fields(
        config,
        normalisation=normalisation,
        post=post,
        n_params=n_params,
        device=device,
        dist=dist,
        history=history,
        best_epoch=best_epoch,
        duration=duration,
        splits=splits,
        val_scores=val_scores,
    )
    card = save_checkpoint(final, out, fields, storage_dtype=getattr(torch, config.storage_dtype))
    # Validation and test figures from the checkpoint as written (half-precision storage
    # included), through the same evaluation path as `unitumour evaluate`.
    loaded = load_model(out, device=device)
    metrics: dict[str, Any] = {"val": _evaluate_split(loaded, splits["val"], config)}
    if "test" in splits:
        metrics["test"] = _evaluate_split(loaded, splits["test"], config)
    metrics["protocol"] = (
        "Dice per image (1 when reference and prediction are both empty), averaged per "
        "class; 95% CI: percentile bootstrap over cases (cluster bootstrap, "
        f"{config.bootstrap_resamples} resamples, seed 0). false_tumour_area: fraction of a "
        "tumour-free image called tumour. Weights and post-processing were chosen on val, "
        "so val figures are optimistic; test was evaluated once."
    )
    card = replace(card, metrics=metrics)
    card.write(out.with_name(out.name[: -len(".safetensors")] + ".card.json"))
    if dist.world > 1:
        import torch.distributed as torch_dist

        torch_dist.destroy_process_group()
    return TrainResult(card, out, history, best_epoch, time.perf_counter() - started)


def _evaluate_split(loaded: Any, split: Split, config: TrainConfig) -> dict[str, Any]:
    from ..model.postprocess import postprocess_with_card

    probs = forward_probabilities(
        loaded.module,
        split.images,
        mean=loaded.card.mean,
        std=loaded.card.std,
        device=loaded.device,
        batch_size=64,
    )
    items = _items(split, probs, lambda p: postprocess_with_card(p, loaded.card))
    return summarise(items, n_resamples=config.bootstrap_resamples, seed=0)


def _gather_data(config: TrainConfig) -> dict[str, Split]:
    splits: dict[str, Split] = {}
    if config.manifest is not None:
        named = load_manifest_splits(config)
        splits["train"] = named[config.train_split]
        splits["val"] = named[config.val_split]
        if config.test_split:
            splits["test"] = named[config.test_split]
    if config.slides is not None:
        from .slides import load_slide_splits

        extra = load_slide_splits(config)
        for key, split in extra.items():
            if key in splits:
                base = splits[key]
                splits[key] = Split(
                    base.records + split.records,
                    base.images + split.images,
                    base.masks + split.masks,
                )
            else:
                splits[key] = split
    for key in ("train", "val"):
        splits.setdefault(key, Split([], [], []))
    return splits


def _card_fields(
    config: TrainConfig,
    *,
    normalisation: dict[str, list[float]],
    post: dict[str, float],
    n_params: int,
    device: torch.device,
    dist: Dist,
    history: list[dict[str, Any]],
    best_epoch: int,
    duration: float,
    splits: dict[str, Split],
    val_scores: dict[str, float],
) -> dict[str, Any]:
    device_name = (
        torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
    ) or device.type
    epoch_rates = [h["train_images_per_s"] for h in history if h.get("train_images_per_s")]
    split_counts = {
        name: {
            "images": len(s.records),
            "cases": len({r.case for r in s.records}),
            "per_class": _count_by(s.records),
        }
        for name, s in splits.items()
    }
    training_data: dict[str, Any] = {}
    if config.manifest is not None:
        training_data.update(EBHI_TRAINING_DATA if _looks_like_ebhi(config.manifest) else {})
        training_data["manifest"] = config.manifest.name
    if config.slides is not None:
        training_data["slides"] = config.slides.name
    training_data["split"] = (
        f"by case, as in the manifest: trained on '{config.train_split}', weights and "
        f"post-processing chosen on '{config.val_split}', reported once on "
        f"'{config.test_split}'"
        if config.test_split
        else f"trained on '{config.train_split}', chosen on '{config.val_split}'"
    )
    training_data["counts"] = split_counts
    training_data.setdefault("name", "image/mask pairs and/or DICOM slides with reference SEGs")
    demo = config.name.endswith("demo")
    return {
        "name": config.name,
        "version": config.version,
        "description": (
            "Compact residual U-Net (stride-2 stem, logits at half resolution, upsampled) "
            "for tumour versus rest on H&E."
        ),
        "architecture": config.architecture,
        "architecture_args": config.architecture_args,
        "mpp": config.mpp,
        "tile_size": config.tile_size,
        "overlap": config.overlap,
        "normalisation": normalisation,
        "threshold": post["threshold"],
        "min_tumour_area_um2": post["min_tumour_area_um2"],
        "fill_holes_max_area_um2": post["fill_holes_max_area_um2"],
        "training_data": training_data,
        "metrics": {},
        "intended_use": (
            "Demonstration and testing of the UniTumour DICOM pipeline (listener, inference, "
            "DICOM SEG, provenance) on H&E colorectal tissue. NOT a clinical model: trained "
            "on a small public biopsy data set at an assumed pixel size; never use it for "
            "diagnosis or treatment decisions."
            if demo
            else "Research use: tumour segmentation of H&E whole-slide images. Validate "
            "locally before any clinical use."
        ),
        "not_for_clinical_use": True,
        "licence": "Weights derived from EBHI-Seg (CC BY 4.0); attribution in training_data."
        if config.manifest is not None and _looks_like_ebhi(config.manifest)
        else "",
        "created": dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat(),
        "training": {
            "command": config.command or "python -m unitumour_dicom.train ...",
            "recipe": config.jsonable(),
            "code_version": __version__,
            "torch": torch.__version__,
            "python": sys.version.split()[0],
            "device": f"{device.type}: {device_name}",
            "processes": dist.world,
            "cpu_threads": torch.get_num_threads(),
            "mixed_precision": str(_amp_dtype(device, config.amp)),
            "parameters": n_params,
            "best_epoch": best_epoch,
            "epochs_run": len(history),
            "duration_s": round(duration, 1),
            "train_images_per_s_median": float(np.median(epoch_rates)) if epoch_rates else None,
            "val_selection": {k: round(v, 4) for k, v in val_scores.items()},
            "history": history,
        },
    }


def _count_by(records: Sequence[PairRecord]) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in records:
        out[r.cls] = out.get(r.cls, 0) + 1
    return dict(sorted(out.items()))


def _looks_like_ebhi(manifest: Path) -> bool:
    return "ebhi" in str(manifest.resolve()).lower()


def command_line() -> str:
    """How this process was started, as a command a person can run again."""
    argv = list(sys.argv)
    if argv and argv[0].endswith(("__main__.py", "-m")):
        argv[0:1] = ["python", "-m", "unitumour_dicom.train"]
    elif argv and Path(argv[0]).name == "unitumour":
        argv[0] = "unitumour"
    return " ".join(shlex.quote(a) for a in argv)
