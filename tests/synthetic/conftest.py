"""Small phantoms shared by the synthetic tests, written once per session, and a dciodvfy
runner. Phantoms stay small (1024 x 768, tiles of 256) so the area runs in well under a
minute on two cores."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from unitumour_dicom.synthetic import PhantomSlide, PhantomSpec, write_phantom_slide

SMALL = {"width": 1024, "height": 768, "tile_size": 256, "levels": 3, "mpp": 0.5}


@pytest.fixture(scope="session")
def small_phantom(tmp_path_factory: pytest.TempPathFactory) -> PhantomSlide:
    """The default phantom at test size: JPEG baseline, TILED_FULL, label and overview."""
    return write_phantom_slide(
        tmp_path_factory.mktemp("phantom"), PhantomSpec(seed=7, n_tumours=3, **SMALL)
    )


def dciodvfy_errors(path: Path) -> list[str]:
    """The lines dciodvfy (dicom3tools) starts with 'Error' for one file."""
    tool = shutil.which("dciodvfy")
    if tool is None:
        pytest.skip("dciodvfy (Debian package dicom3tools) is not installed")
    run = subprocess.run(
        [tool, "-new", str(path)], capture_output=True, text=True, timeout=120, check=False
    )
    return [line for line in (run.stdout + run.stderr).splitlines() if line.startswith("Error")]
