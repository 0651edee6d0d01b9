"""A tiny learnable data set: pink 'stroma' with dark purple 'tumour' blobs, as real files."""

from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np
import pytest

TINY_ARGS = "8,16,24"


def make_tiny_dataset(root: Path, n: dict[str, int] | None = None, size: int = 48) -> Path:
    n = n or {"train": 24, "val": 8, "test": 8}
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    rows = []
    yy, xx = np.mgrid[0:size, 0:size]
    for split, count in n.items():
        for i in range(count):
            tumour_free = i % 3 == 2
            mask = np.zeros((size, size), bool)
            if not tumour_free:
                cy, cx = rng.uniform(10, size - 10, 2)
                r = rng.uniform(6, 14)
                mask = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
            image = np.empty((size, size, 3), np.float32)
            image[:] = (235, 170, 200)  # eosin pink
            image[mask] = (110, 60, 150)  # haematoxylin purple
            image += rng.normal(0, 12, image.shape)
            name = f"{split}{i:03d}"
            cv2.imwrite(
                str(root / "images" / f"{name}.jpg"),
                np.clip(image, 0, 255).astype(np.uint8)[..., ::-1],
            )
            cv2.imwrite(str(root / "masks" / f"{name}.png"), mask.astype(np.uint8) * 255)
            rows.append(
                {
                    "image": f"images/{name}.jpg",
                    "mask": f"masks/{name}.png",
                    "cls": "Normal" if tumour_free else "Tumour",
                    "case": f"{split}-{i // 2}",
                    "split": split,
                }
            )
    path = root / "manifest.csv"
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


@pytest.fixture(scope="session")
def tiny_manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_dataset(tmp_path_factory.mktemp("tiny"))
