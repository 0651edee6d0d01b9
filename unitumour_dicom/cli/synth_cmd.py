"""``unitumour synth OUT_DIR``: write a phantom H&E whole-slide image as a DICOM series."""

from __future__ import annotations

import json
import logging
import sys
import time
from enum import Enum, StrEnum
from pathlib import Path
from typing import Annotated

import typer

from ..errors import UniTumourError
from ..progress_bars import Bars, progress_wanted
from ..synthetic.spec import TRANSFER_SYNTAX_NAMES, PhantomSpec
from .common import fail

logger = logging.getLogger(__name__)


class Layout(StrEnum):
    blobs = "blobs"
    none = "none"


class DimensionOrganization(StrEnum):
    TILED_FULL = "TILED_FULL"
    TILED_SPARSE = "TILED_SPARSE"


TransferSyntax = Enum(  # type: ignore[misc]
    "TransferSyntax", {name: name for name in TRANSFER_SYNTAX_NAMES}, type=str
)

_GEOMETRY = "Geometry"
_CONTENT = "Content"
_ENCODING = "Encoding and variants"
_IDENTITY = "Identity"


def synth(
    out_dir: Annotated[Path, typer.Argument(help="Directory to write into (created).")],
    width: Annotated[
        int, typer.Option(help="Base level width, pixels.", rich_help_panel=_GEOMETRY)
    ] = 4096,
    height: Annotated[
        int, typer.Option(help="Base level height, pixels.", rich_help_panel=_GEOMETRY)
    ] = 3072,
    tile_size: Annotated[
        int, typer.Option(help="Frame side, pixels (multiple of 16).", rich_help_panel=_GEOMETRY)
    ] = 256,
    levels: Annotated[
        int, typer.Option(help="Pyramid levels, each half the last.", rich_help_panel=_GEOMETRY)
    ] = 3,
    mpp: Annotated[
        float, typer.Option(help="Base pixel size, micrometres.", rich_help_panel=_GEOMETRY)
    ] = 0.5,
    seed: Annotated[
        int, typer.Option(help="Seed of shapes, texture and UIDs.", rich_help_panel=_CONTENT)
    ] = 0,
    tumours: Annotated[
        int, typer.Option(help="Tumour regions (layout blobs).", rich_help_panel=_CONTENT)
    ] = 3,
    layout: Annotated[
        Layout, typer.Option(help="blobs: tumours; none: tumour-free.", rich_help_panel=_CONTENT)
    ] = Layout.blobs,
    tissue_pieces: Annotated[
        int | None,
        typer.Option(help="Tissue pieces (default: seed picks 1-3).", rich_help_panel=_CONTENT),
    ] = None,
    pen_mark: Annotated[
        bool,
        typer.Option(
            "--pen-mark/--no-pen-mark",
            help="Draw a marker pen stroke (not tissue).",
            rich_help_panel=_CONTENT,
        ),
    ] = False,
    glass_edge: Annotated[
        bool,
        typer.Option(
            "--glass-edge/--no-glass-edge",
            help="Draw a coverslip edge (not tissue).",
            rich_help_panel=_CONTENT,
        ),
    ] = False,
    label: Annotated[
        bool,
        typer.Option("--label/--no-label", help="Write a LABEL image.", rich_help_panel=_CONTENT),
    ] = True,
    overview: Annotated[
        bool,
        typer.Option(
            "--overview/--no-overview", help="Write an OVERVIEW image.", rich_help_panel=_CONTENT
        ),
    ] = True,
    quality: Annotated[
        int, typer.Option(help="JPEG quality 1-100 (lossy syntaxes).", rich_help_panel=_ENCODING)
    ] = 90,
    transfer_syntax: Annotated[
        TransferSyntax, typer.Option(help="Frame encoding.", rich_help_panel=_ENCODING)
    ] = "jpeg_baseline",  # type: ignore[assignment]
    dimension_organization: Annotated[
        DimensionOrganization,
        typer.Option(
            help="TILED_FULL or TILED_SPARSE (per-frame positions).", rich_help_panel=_ENCODING
        ),
    ] = DimensionOrganization.TILED_FULL,
    concatenation_frames: Annotated[
        int | None,
        typer.Option(
            help="Split each level into instances of at most N frames.", rich_help_panel=_ENCODING
        ),
    ] = None,
    omit_empty_tiles: Annotated[
        bool,
        typer.Option(
            "--omit-empty-tiles",
            help="Leave out frames of bare glass (needs TILED_SPARSE).",
            rich_help_panel=_ENCODING,
        ),
    ] = False,
    omit_optional: Annotated[
        bool,
        typer.Option(
            "--omit-optional",
            help="No DimensionOrganizationType, no FrameOfReferenceUID (old converters).",
            rich_help_panel=_ENCODING,
        ),
    ] = False,
    patient_id: Annotated[str, typer.Option(rich_help_panel=_IDENTITY)] = "PHANTOM-0001",
    patient_name: Annotated[str, typer.Option(rich_help_panel=_IDENTITY)] = "Phantom^Slide",
    accession_number: Annotated[str, typer.Option(rich_help_panel=_IDENTITY)] = "ACC0001",
    study_uid: Annotated[
        str | None, typer.Option(help="Default: derived from the spec.", rich_help_panel=_IDENTITY)
    ] = None,
    series_uid: Annotated[
        str | None, typer.Option(help="Default: derived from the spec.", rich_help_panel=_IDENTITY)
    ] = None,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace a phantom already in OUT_DIR.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
    no_progress: Annotated[
        bool, typer.Option("--no-progress", help="No progress bar (shown on a terminal).")
    ] = False,
) -> None:
    """Write a phantom H&E whole-slide image (DICOM VL WSI series) and its ground truth.

    Beside the .dcm files: tumour_mask.png, tissue_mask.png and phantom.json (spec, UIDs and
    the analytic shapes, from which the masks can be rasterised at any resolution).
    """
    try:
        spec = PhantomSpec(
            width=width,
            height=height,
            tile_size=tile_size,
            levels=levels,
            mpp=mpp,
            seed=seed,
            n_tumours=tumours,
            layout=layout.value,
            n_tissue_pieces=tissue_pieces,
            pen_mark=pen_mark,
            glass_edge=glass_edge,
            jpeg_quality=quality,
            label=label,
            overview=overview,
            dimension_organization=dimension_organization.value,
            concatenation_frames=concatenation_frames,
            omit_empty_tiles=omit_empty_tiles,
            omit_optional=omit_optional,
            transfer_syntax=TransferSyntax(transfer_syntax).value,
            patient_id=patient_id,
            patient_name=patient_name,
            accession_number=accession_number,
            study_uid=study_uid,
            series_uid=series_uid,
        )
    except ValueError as exc:
        fail(str(exc))
    started = time.monotonic()
    last_logged = [0.0]

    bars = Bars(progress_wanted(no_progress=no_progress, as_json=as_json))

    def progress(done: int, total: int) -> None:
        bars("base tiles", done, total)
        now = time.monotonic()
        if now - last_logged[0] >= 5 or done == total:
            last_logged[0] = now
            logger.info("base tiles rendered: %d / %d", done, total)

    from ..synthetic import write_phantom_slide

    try:
        with bars:
            slide = write_phantom_slide(out_dir, spec, overwrite=overwrite, progress=progress)
    except (UniTumourError, OSError, ValueError) as exc:
        fail(str(exc))
    elapsed = time.monotonic() - started
    n_bytes = sum(p.stat().st_size for p in slide.instance_paths)
    summary = {
        "out_dir": str(slide.root),
        "study_uid": slide.study_uid,
        "series_uid": slide.series_uid,
        "frame_of_reference_uid": slide.frame_of_reference_uid,
        "size": list(slide.size),
        "mpp": slide.mpp,
        "levels": [[p.name for p in level] for level in slide.level_paths],
        "label": slide.label_path.name if slide.label_path else None,
        "overview": slide.overview_path.name if slide.overview_path else None,
        "bytes": n_bytes,
        "seconds": round(elapsed, 2),
    }
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
        return
    typer.echo(
        f"wrote {len(slide.instance_paths)} instances ({n_bytes / 1e6:.1f} MB) "
        f"to {slide.root} in {elapsed:.1f} s"
    )
    typer.echo(f"  study  {slide.study_uid}")
    typer.echo(f"  series {slide.series_uid}")
    for k, level in enumerate(slide.level_paths):
        w, h = spec.level_sizes[k]
        names = ", ".join(p.name for p in level)
        typer.echo(f"  level {k}: {w} x {h} px at {spec.level_mpps[k]:g} µm/px: {names}")
    typer.echo("  ground truth: tumour_mask.png, tissue_mask.png, phantom.json")
    sys.stdout.flush()
