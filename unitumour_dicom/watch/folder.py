"""The watched folder's layout: candidates at its top level, originals moved to done/ or
failed/ (with ``<name>.reason.txt`` beside a failed one), sidecars moved with their file."""

from __future__ import annotations

import os
from pathlib import Path

from ..convert.identity import sidecar_of

DONE = "done"
FAILED = "failed"
REASON_SUFFIX = ".reason.txt"


def candidates(folder: Path, suffixes: list[str]) -> list[Path]:
    """Files at the top of ``folder`` whose names end in one of ``suffixes``, in name order.

    Hidden files (a scanner's partial ``.name.tmp``) and sub-folders are never taken."""
    out = []
    with os.scandir(folder) as entries:
        for entry in entries:
            name = entry.name
            if name.startswith(".") or not entry.is_file(follow_symlinks=False):
                continue
            if any(name.lower().endswith(s) for s in suffixes):
                out.append(Path(entry.path))
    return sorted(out)


def _free_name(target_dir: Path, name: str, tag: str) -> Path:
    target = target_dir / name
    if not target.exists():
        return target
    stem, dot, ext = name.partition(".")
    for n in range(1, 1000):
        candidate = target_dir / f"{stem}-{tag}{'-' + str(n) if n > 1 else ''}{dot}{ext}"
        if not candidate.exists():
            return candidate
    raise FileExistsError(f"no free name for {name} in {target_dir}")


def move_original(path: Path, folder: Path, where: str, *, tag: str, reason: str | None) -> Path:
    """Move ``path`` (and its sidecar) into ``folder/where``; write the reason beside it."""
    target_dir = folder / where
    target_dir.mkdir(exist_ok=True)
    sidecar = sidecar_of(path)
    target = _free_name(target_dir, path.name, tag)
    os.replace(path, target)
    if sidecar is not None:
        os.replace(sidecar, target.with_name(target.name + sidecar.suffix))
    if reason is not None:
        target.with_name(target.name + REASON_SUFFIX).write_text(reason.rstrip() + "\n")
    return target
