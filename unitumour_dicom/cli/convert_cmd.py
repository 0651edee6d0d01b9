"""``unitumour convert SRC OUT_DIR``: one vendor file to DICOM by hand, as the watched folder
converts it (same converter, same identity rules), without admitting anything."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from .common import fail, run_guarded, state


def convert_command(
    src: Annotated[Path, typer.Argument(help="Vendor file: SVS, NDPI, Philips TIFF, OME-TIFF...")],
    out_dir: Annotated[
        Path, typer.Argument(help="Folder for the DICOM files (created; must be empty).")
    ],
    metadata: Annotated[
        Path | None,
        typer.Option(
            "--metadata",
            "-m",
            help="Sidecar (.json or .csv) with PatientID, PatientName, AccessionNumber, ... "
            "Default: <stem>.json or <stem>.csv beside SRC, else watch.filename_pattern.",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Convert a vendor whole-slide file to DICOM VL WSI (wsidicomizer, its own environment)."""
    from ..convert.identity import resolve_identity
    from ..convert.runner import convert_file, converter_python
    from ..watch.service import file_sha256

    settings = run_guarded(state.settings)
    watch = settings.watch
    if not src.is_file():
        fail(f"{src} is not a file")
    if metadata is not None and not metadata.is_file():
        fail(f"{metadata} is not a file")
    python = run_guarded(converter_python, watch.converter_python)
    sha256 = file_sha256(src)
    identity = run_guarded(
        resolve_identity, src, sha256, filename_pattern=watch.filename_pattern, sidecar=metadata
    )
    conversion = run_guarded(
        convert_file,
        src,
        out_dir,
        identity=identity,
        uid_seed=sha256,
        python=python,
        timeout_s=watch.timeout_s,
        max_output_bytes=watch.max_output_bytes,
        tile_size=watch.tile_size,
        workers=watch.workers,
        # the file's own time: converting the same file again writes the same bytes
        content_datetime=datetime.fromtimestamp(src.stat().st_mtime, UTC),
    )
    if as_json:
        report = {
            "source": str(src),
            "sha256": sha256,
            "identity_source": identity.source,
            "warnings": identity.warnings,
            "files": [str(p) for p in conversion.files],
            "reader": conversion.source,
        }
        typer.echo(json.dumps(report, indent=2))
        return
    for warning in identity.warnings:
        typer.echo(f"warning: {warning}", err=True)
    typer.echo(
        f"{src.name}: {len(conversion.files)} DICOM file(s) in {out_dir} "
        f"(identity from {identity.source}; read with {conversion.source.get('reader')})"
    )
