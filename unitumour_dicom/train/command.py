"""``unitumour train``: the command, kept free of the settings and database layers so that
``python -m unitumour_dicom.train`` (and ``torchrun -m unitumour_dicom.train``) runs on a
training host that has only torch, numpy, OpenCV and safetensors."""

from __future__ import annotations

import json
import logging
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from ..errors import UniTumourError
from ..progress_bars import Bars, progress_wanted
from .config import TrainConfig

_defaults = TrainConfig(out=Path("model.safetensors"))


#: The default of --widths (a name of its own: mypy cannot resolve a comprehension's variable
#: inside a parameter's default).
_DEFAULT_WIDTHS = ",".join(str(w) for w in _defaults.architecture_args["widths"])


class _DiceModeChoice(StrEnum):
    batch = "batch"
    image = "image"


def train_command(
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Checkpoint to write (.safetensors; card beside).")
    ],
    manifest: Annotated[
        Path | None,
        typer.Option(help="Image/mask pairs CSV (image, mask, cls, case, split[, mpp])."),
    ] = None,
    slides: Annotated[
        Path | None,
        typer.Option(
            help="CSV of DICOM slides with reference SEGs (slide, seg, cls, case, split)."
        ),
    ] = None,
    name: Annotated[str, typer.Option(help="Model name for the card.")] = _defaults.name,
    version: Annotated[str, typer.Option(help="Model version for the card.")] = _defaults.version,
    epochs: Annotated[int, typer.Option(min=1)] = _defaults.epochs,
    batch_size: Annotated[int, typer.Option(min=1, help="Per process.")] = _defaults.batch_size,
    lr: Annotated[float, typer.Option(min=0)] = _defaults.lr,
    weight_decay: Annotated[float, typer.Option(min=0)] = _defaults.weight_decay,
    dice_mode: Annotated[
        _DiceModeChoice,
        typer.Option(
            help="Pool the Dice loss over the batch, or per tumour-bearing image as the metric."
        ),
    ] = _DiceModeChoice(_defaults.dice_mode),
    mpp: Annotated[
        float, typer.Option(help="Model pixel size, µm/px (images with an mpp are resampled).")
    ] = _defaults.mpp,
    crop_size: Annotated[int, typer.Option(help="Training crop, px.")] = _defaults.crop_size,
    tiles_per_slide: Annotated[
        int, typer.Option(min=1, help="Crops drawn from each DICOM slide.")
    ] = _defaults.tiles_per_slide,
    tile_size: Annotated[
        int, typer.Option(help="Inference tile for the card, px.")
    ] = _defaults.tile_size,
    overlap: Annotated[int, typer.Option(help="Inference halo, px each side.")] = _defaults.overlap,
    widths: Annotated[
        str, typer.Option(help="Network channels per scale, comma-separated.")
    ] = _DEFAULT_WIDTHS,
    train_split: Annotated[str, typer.Option()] = _defaults.train_split,
    val_split: Annotated[str, typer.Option()] = _defaults.val_split,
    test_split: Annotated[
        str, typer.Option(help="Evaluated once at the end; '' to skip.")
    ] = _defaults.test_split or "",
    seed: Annotated[int, typer.Option()] = _defaults.seed,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:N.")] = _defaults.device,
    amp: Annotated[bool, typer.Option(help="Mixed precision on CUDA.")] = _defaults.amp,
    workers: Annotated[int | None, typer.Option(help="Data loader processes.")] = None,
    threads: Annotated[int | None, typer.Option(help="Torch CPU threads.")] = None,
    limit: Annotated[int | None, typer.Option(help="Records per split (smoke runs).")] = None,
    max_steps: Annotated[int | None, typer.Option(help="Stop after N steps (smoke).")] = None,
    log_file: Annotated[Path | None, typer.Option(help="Append one JSON line per epoch.")] = None,
    no_progress: Annotated[
        bool, typer.Option("--no-progress", help="No progress bars (shown on a terminal).")
    ] = False,
) -> None:
    """Train the segmentation network; write a checkpoint and its model card.

    The defaults are the demo model's recipe: `unitumour train --manifest
    ../shared/data/ebhi-seg/manifest.csv --out demo.safetensors --device cpu` retrains it.
    Multi-GPU: `torchrun --nproc_per_node N -m unitumour_dicom.train --manifest ... --out ...`.
    """
    from .trainer import command_line, train

    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    try:
        width_list = [int(w) for w in widths.split(",") if w.strip()]
    except ValueError:
        raise typer.BadParameter(f"--widths {widths!r}: integers separated by commas") from None
    args = dict(_defaults.architecture_args)
    args["widths"] = width_list
    config = TrainConfig(
        out=out,
        manifest=manifest,
        slides=slides,
        name=name,
        version=version,
        architecture_args=args,
        mpp=mpp,
        tile_size=tile_size,
        overlap=overlap,
        crop_size=crop_size,
        tiles_per_slide=tiles_per_slide,
        train_split=train_split,
        val_split=val_split,
        test_split=test_split or None,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        weight_decay=weight_decay,
        dice_mode=dice_mode.value,
        seed=seed,
        device=device,
        amp=amp,
        workers=workers,
        threads=threads,
        limit=limit,
        max_steps=max_steps,
        log_file=log_file,
        command=command_line(),
    )
    try:
        with Bars(progress_wanted(no_progress=no_progress)) as bars:
            result = train(config, progress=bars.echo, on_progress=bars)
    except UniTumourError as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from exc
    test = result.card.to_dict()["metrics"].get("test")
    typer.echo(
        json.dumps(
            {
                "weights": str(result.weights_path),
                "weights_sha256": result.card.weights_sha256,
                "best_epoch": result.best_epoch,
                "duration_s": round(result.duration_s, 1),
                "threshold": result.card.threshold,
                "test": test,
            },
            indent=2,
        )
    )
