"""What a job records so its result can be traced: code version, settings used, inputs.

DESIGN.md rule 3: every result can be traced to its inputs (instance UIDs and digests), the
model (name, version, weights sha256: the ``models`` row), the code version and the settings
used. These helpers build the plain-data parts of that record.
"""

from __future__ import annotations

import functools
import logging
import subprocess
from pathlib import Path
from typing import Any

from .. import __version__
from ..config import Settings, masked_settings

log = logging.getLogger(__name__)

#: Settings sections that change what a job produces (the rest say where and how it runs).
RESULT_SECTIONS = ("model", "seg")

#: Job.code_version holds at most this many characters.
CODE_VERSION_CHARS = 64


def _git(args: list[str], cwd: Path) -> str | None:
    try:
        out = subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=5, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


@functools.cache
def code_version() -> str:
    """The package version, plus ``+g<commit>`` (and ``.dirty``) when run from a git checkout.

    Computed once per process. An installed wheel has no checkout and reports its version.
    """
    source = Path(__file__).resolve().parents[2]
    commit = None
    if (source / ".git").exists():
        commit = _git(["rev-parse", "--short=12", "HEAD"], source)
    if commit is None:
        return __version__[:CODE_VERSION_CHARS]
    dirty = _git(["status", "--porcelain", "--untracked-files=no", "--", "unitumour_dicom"], source)
    local = f"g{commit}{'.dirty' if dirty else ''}"
    separator = "." if "+" in __version__ else "+"
    return f"{__version__}{separator}{local}"[:CODE_VERSION_CHARS]


def settings_used(
    settings: Settings, *, model_card: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The settings that shaped the result (model, SEG, inference parameters), secrets masked.

    ``model_card`` adds the card's inference parameters (pixel size, tile size, overlap,
    threshold, post-processing), which decide the mask as much as any setting does.
    """
    masked = masked_settings(settings)
    used: dict[str, Any] = {name: masked[name] for name in RESULT_SECTIONS}
    used["worker"] = {"verify_inputs": settings.worker.verify_inputs}
    if model_card is not None:
        used["inference"] = {
            key: model_card[key]
            for key in (
                "mpp",
                "tile_size",
                "overlap",
                "threshold",
                "min_tumour_area_um2",
                "fill_holes_max_area_um2",
                "normalisation",
            )
            if key in model_card
        }
    return used
