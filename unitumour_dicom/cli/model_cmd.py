"""``unitumour model fit-domain``: fit a model's domain reference and store it in its card.

The reference (``unitumour_dicom.domain``) is fitted on the manifest's train split and its
thresholds chosen on the val split; only the card's ``domain_reference`` field changes, so the
weights and their digest stay as they are. Torch is imported only when the command runs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from ..errors import UniTumourError

model_app = typer.Typer(help="Model cards: the domain reference.", no_args_is_help=True)


@model_app.command("fit-domain")
def fit_domain(
    card: Annotated[
        str,
        typer.Option(help="Packaged model name (e.g. demo), a .safetensors or a .card.json."),
    ],
    manifest: Annotated[
        Path, typer.Option(help="Image/mask pairs CSV (image, mask, cls, case, split[, mpp]).")
    ],
    train_split: Annotated[str, typer.Option(help="Split that fits the reference.")] = "train",
    val_split: Annotated[str, typer.Option(help="Split that sets the thresholds.")] = "val",
    components: Annotated[
        int, typer.Option(min=2, max=64, help="PCA components kept per feature group.")
    ] = 32,
    borderline_quantile: Annotated[
        float, typer.Option(min=0.5, max=1.0, help="Val per-item percentile for borderline.")
    ] = 0.975,
    out_quantile: Annotated[
        float, typer.Option(min=0.5, max=1.0, help="Val per-item percentile for out of domain.")
    ] = 0.995,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:N.")] = "auto",
    batch_size: Annotated[int, typer.Option(min=1)] = 32,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Fit and print, but do not write the card.")
    ] = False,
) -> None:
    """Fit the domain reference on TRAIN_SPLIT tiles, thresholds on VAL_SPLIT; write the card."""
    from ..domain.fit import fit_domain_reference, with_reference
    from ..model.checkpoint import load_model, resolve_checkpoint

    if out_quantile < borderline_quantile:
        raise typer.BadParameter("--out-quantile must be at least --borderline-quantile")
    try:
        _, card_file = resolve_checkpoint(card)
        loaded = load_model(card, device=device)
        reference = fit_domain_reference(
            loaded,
            manifest,
            train_split=train_split,
            val_split=val_split,
            n_components=components,
            borderline_quantile=borderline_quantile,
            out_quantile=out_quantile,
            batch_size=batch_size,
            progress=lambda m: typer.echo(m, err=True),
        )
        updated = with_reference(loaded.card, reference)
    except (UniTumourError, ValueError) as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from exc
    summary = {
        "card": str(card_file),
        "thresholds": {
            "borderline": reference.borderline,
            "out_of_domain": reference.out_of_domain,
        },
        "group_scales": reference.group_scales,
        "info": reference.info,
        "card_bytes": len(updated.to_json().encode()),
    }
    if not dry_run:
        updated.write(card_file)
    typer.echo(json.dumps(summary, indent=2))
