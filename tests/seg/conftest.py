"""Fixtures of the SEG tests: a store, settings and an algorithm identification."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from unitumour_dicom.config import Settings, load_settings
from unitumour_dicom.seg import AlgorithmInfo
from unitumour_dicom.slide.mask import SlideMask
from unitumour_dicom.store import FileStore


@pytest.fixture
def store(tmp_path: Path) -> FileStore:
    return FileStore(tmp_path / "store")


@pytest.fixture
def seg_settings(tmp_path: Path) -> Settings:
    return load_settings(data_dir=tmp_path / "data")


@pytest.fixture
def algorithm() -> AlgorithmInfo:
    return AlgorithmInfo(
        name="UniTumour-UNet",
        version="1.2.0",
        source="UniTumour DICOM",
        parameters={"weights_sha256": "ab" * 32},
    )


def blob_mask(height: int, width: int, mpp: float, seed: int = 0) -> SlideMask:
    """A few filled ellipses and some speckle: edges, holes and empty tiles, like a tumour."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    mask = np.zeros((height, width), dtype=bool)
    for _ in range(4):
        cy, cx = rng.uniform(0, height), rng.uniform(0, width)
        ry, rx = rng.uniform(0.05, 0.25) * height, rng.uniform(0.05, 0.25) * width
        mask |= ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0
    mask ^= rng.random((height, width)) > 0.995
    return SlideMask(mask, mpp)


@pytest.fixture(scope="session")
def phantom(tmp_path_factory: pytest.TempPathFactory):
    """A small phantom slide (3 levels, label and overview), written once per session."""
    from unitumour_dicom.synthetic import PhantomSpec, write_phantom_slide

    out = tmp_path_factory.mktemp("phantom")
    spec = PhantomSpec(width=1024, height=768, tile_size=256, levels=3, mpp=0.5, seed=7)
    return write_phantom_slide(out, spec)


def read_headers(paths) -> list:  # type: ignore[no-untyped-def]
    import pydicom

    return [pydicom.dcmread(p, stop_before_pixels=True) for p in paths]
