"""``unitumour evaluate``: Dice per image or slide, per class and overall, with 95% CIs.

The ``--json`` output is an interface operators' scripts rely on: one JSON object with
``classes`` (per class: ``n``, ``dice_mean``, ``dice_ci95`` and more) and ``overall``.
"""

from __future__ import annotations

import csv
import json
import logging
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any

import typer

from ..errors import UniTumourError
from ..progress import for_stage
from ..progress_bars import Bars, progress_wanted

logger = logging.getLogger(__name__)


def evaluate_command(
    manifest: Annotated[
        Path | None,
        typer.Option(help="Image/mask pairs CSV (image, mask, cls, case, split[, mpp])."),
    ] = None,
    slides: Annotated[
        Path | None,
        typer.Option(help="DICOM slides with reference SEGs CSV (slide, seg, cls, case, split)."),
    ] = None,
    split: Annotated[
        str | None, typer.Option(help="Only rows of this split (default: all rows).")
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(help="Packaged model name (default: demo) or a .safetensors path."),
    ] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:N.")] = "auto",
    batch_size: Annotated[int, typer.Option(min=1)] = 32,
    resamples: Annotated[int, typer.Option(min=100, help="Bootstrap resamples.")] = 2000,
    seed: Annotated[int, typer.Option(help="Bootstrap seed.")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    no_progress: Annotated[
        bool, typer.Option("--no-progress", help="No progress bar (shown on a terminal).")
    ] = False,
    per_item: Annotated[
        Path | None, typer.Option(help="Also write one CSV row per image or slide here.")
    ] = None,
    domain_baseline: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated classes that form the training cohort, against which the "
            "domain score's AUROC of every other class is reported (default: the classes the "
            "card's training data lists)."
        ),
    ] = None,
    write_card: Annotated[
        bool,
        typer.Option(
            help="Record the summary in the model card's metrics under the split's name "
            "(the weights and their digest are untouched)."
        ),
    ] = False,
) -> None:
    """Evaluate a model on image/mask pairs or DICOM slides with reference SEGs."""
    if (manifest is None) == (slides is None):
        raise typer.BadParameter("give exactly one of --manifest and --slides")
    from ..model.card import ModelCard
    from ..model.checkpoint import card_path_for, load_model

    bars = Bars(progress_wanted(no_progress=no_progress, as_json=as_json))
    try:
        loaded = load_model(model, device=device)
        splits = [split] if split else None
        if manifest is not None:
            from .images import evaluate_pairs
            from .manifest import read_manifest

            records = read_manifest(manifest, splits=splits)
            with bars:
                items, summary = evaluate_pairs(
                    records,
                    loaded,
                    batch_size=batch_size,
                    n_resamples=resamples,
                    seed=seed,
                    progress=for_stage(bars, "images"),
                )
            source = {"manifest": str(manifest), "unit": "image"}
        else:
            assert slides is not None
            from .slides import evaluate_slides, read_slide_manifest

            slide_records = read_slide_manifest(slides, splits=splits)
            with bars:
                items, summary = evaluate_slides(
                    slide_records,
                    loaded,
                    batch_size=batch_size,
                    n_resamples=resamples,
                    seed=seed,
                    progress=for_stage(bars, "slides"),
                )
            source = {"slides": str(slides), "unit": "slide"}
    except UniTumourError as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from exc
    card = loaded.card
    from .report import domain_summary

    baseline = (
        [c.strip() for c in domain_baseline.split(",") if c.strip()]
        if domain_baseline
        else _training_classes(card.training_data)
    )
    domain = domain_summary(items, baseline)
    if domain is not None:
        summary = {**summary, "domain": domain}
    report: dict[str, Any] = {
        "model": {
            "name": card.name,
            "version": card.version,
            "weights_sha256": card.weights_sha256,
            "mpp": card.mpp,
            "threshold": card.threshold,
        },
        **source,
        "split": split,
        "metric": "Dice per item (1 if reference and prediction are both empty), averaged per "
        "class; 95% CI: percentile bootstrap over cases",
        "bootstrap": {"resamples": resamples, "seed": seed},
        **summary,
    }
    if per_item is not None:
        _write_items(per_item, items)
    if write_card:
        if loaded.weights_path is None:
            raise typer.BadParameter("--write-card needs a checkpoint on disk")
        card_file = card_path_for(loaded.weights_path)
        metrics = dict(ModelCard.read(card_file).to_dict()["metrics"])
        metrics[split or "all"] = {k: v for k, v in report.items() if k != "model"}
        replace(card, metrics=metrics).write(card_file)
    if as_json:
        typer.echo(json.dumps(report, indent=2, allow_nan=False))
    else:
        from .report import format_domain_table, format_table

        typer.echo(
            f"{card.name} {card.version} (sha256 {card.weights_sha256[:12]}) on "
            f"{source.get('manifest') or source.get('slides')}"
            f"{f' split {split}' if split else ''}: Dice per {source['unit']}"
        )
        typer.echo(format_table(summary))
        if domain is not None:
            typer.echo(format_domain_table(domain))


def _training_classes(training_data: Any) -> list[str]:
    """The classes a card's training data lists (``counts.train.per_class``), if any."""
    try:
        return sorted(training_data["counts"]["train"]["per_class"])
    except (KeyError, TypeError):
        return []


def _write_items(path: Path, items: Any) -> None:
    fields = [
        "key",
        "cls",
        "case",
        "dice",
        "tumour_free",
        "predicted_fraction",
        "reference_fraction",
        "domain_score",
        "domain_verdict",
    ]
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(fields)
        for r in items:
            writer.writerow([getattr(r, f) for f in fields])
