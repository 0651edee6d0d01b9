"""Image/mask pair manifests (the form of ../shared/data/ebhi-seg/manifest.csv).

Columns: ``image``, ``mask``, ``cls``, ``case``, ``split`` (paths relative to the CSV); an
optional ``mpp`` column gives each image's pixel size in micrometres, and the image is then
resampled to the model's. Extra columns are kept but not used. Reading checks what it can
before any training or evaluation starts, so a typo fails in a second, not after an epoch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..csvfiles import read_csv_rows
from ..errors import UniTumourError

REQUIRED_COLUMNS = ("image", "mask", "cls", "case", "split")


class ManifestError(UniTumourError):
    """A manifest is unreadable, lacks columns, or names files that are not there."""


@dataclass(frozen=True)
class PairRecord:
    """One image with its reference mask (white = tumour)."""

    image: Path
    mask: Path
    cls: str
    case: str
    split: str
    mpp: float | None = None


def read_manifest(
    path: Path, *, splits: Sequence[str] | None = None, check_files: bool = True
) -> list[PairRecord]:
    """Records of ``path`` (all, or only those whose split is in ``splits``), in file order."""
    path = Path(path)
    rows = read_csv_rows(path, REQUIRED_COLUMNS, what="manifest", error=ManifestError)
    root = path.parent
    wanted = set(splits) if splits else None
    records: list[PairRecord] = []
    for line, row in enumerate(rows, start=2):
        if wanted is not None and row["split"] not in wanted:
            continue
        mpp = None
        if (row.get("mpp") or "").strip():
            try:
                mpp = float(row["mpp"])
            except ValueError:
                mpp = math.nan
            if not (math.isfinite(mpp) and mpp > 0):
                raise ManifestError(f"{path}:{line}: mpp {row['mpp']!r} is not a pixel size")
        for col in ("image", "mask"):
            rel = Path(row[col] or "")
            if not row[col] or rel.is_absolute():
                raise ManifestError(f"{path}:{line}: {col} must be a path relative to the CSV")
        rec = PairRecord(
            image=root / row["image"],
            mask=root / row["mask"],
            cls=row["cls"],
            case=row["case"],
            split=row["split"],
            mpp=mpp,
        )
        if check_files:
            for f in (rec.image, rec.mask):
                if not f.is_file():
                    raise ManifestError(f"{path}:{line}: {f} does not exist")
        records.append(rec)
    if wanted is not None and not records:
        present = sorted({r["split"] for r in rows})
        raise ManifestError(
            f"manifest {path} has no rows in split(s) {sorted(wanted)}; splits present: {present}"
        )
    return records


def load_pair(record: PairRecord, target_mpp: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(RGB uint8 H x W x 3, bool H x W) for a record, resampled to ``target_mpp`` when the
    record states its own pixel size. Image and mask must have the same size."""
    import cv2

    image = cv2.imread(str(record.image), cv2.IMREAD_COLOR)
    if image is None:
        raise ManifestError(f"cannot decode image {record.image}")
    image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    mask = cv2.imread(str(record.mask), cv2.IMREAD_GRAYSCALE)
    if mask is None:
        raise ManifestError(f"cannot decode mask {record.mask}")
    if mask.shape != image.shape[:2]:
        raise ManifestError(
            f"mask {record.mask} is {mask.shape[1]}x{mask.shape[0]}, "
            f"image is {image.shape[1]}x{image.shape[0]}"
        )
    tumour = mask > 127
    if target_mpp is not None and record.mpp is not None:
        image, tumour = resample_pair(image, tumour, record.mpp, target_mpp)
    return np.ascontiguousarray(image), tumour


def resample_pair(
    image: np.ndarray, mask: np.ndarray, mpp: float, target_mpp: float
) -> tuple[np.ndarray, np.ndarray]:
    """Resample an image (area averaging when shrinking) and its mask (by area fraction >= 0.5)
    from ``mpp`` to ``target_mpp``, keeping the physical extent."""
    import cv2

    scale = mpp / target_mpp
    if abs(scale - 1.0) < 1e-3:
        return image, mask
    h, w = mask.shape
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    image = cv2.resize(image, size, interpolation=interp)
    mask = cv2.resize(mask.astype(np.float32), size, interpolation=interp) >= 0.5
    return image, mask
