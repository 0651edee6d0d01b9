"""The converter's environment, a phantom slide and its vendor-format copies (made once)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.flow import small_phantom
from tests.watch.vendorfiles import phantom_levels, write_generic_tiff, write_ome_tiff, write_svs
from unitumour_dicom.config import Settings
from unitumour_dicom.db import dispose_engines, migrate
from unitumour_dicom.errors import ConfigError
from unitumour_dicom.runtime import Runtime
from unitumour_dicom.synthetic import PhantomSlide


@pytest.fixture(scope="session")
def converter() -> Path:
    from unitumour_dicom.convert import converter_python

    try:
        return converter_python(None)
    except ConfigError as exc:
        pytest.fail(f"the converter environment is missing: {exc}")


@dataclass(frozen=True)
class VendorFiles:
    phantom: PhantomSlide
    svs: Path
    ome_tiff: Path
    generic_tiff: Path


@pytest.fixture(scope="session")
def vendor_files(tmp_path_factory: pytest.TempPathFactory) -> VendorFiles:
    """A 2048 x 1536 phantom at 0.5 µm/px (the e2e test's) as DICOM, SVS, OME-TIFF and TIFF."""
    root = tmp_path_factory.mktemp("vendor")
    phantom = small_phantom(root / "dicom", seed=3, patient_id="WATCH-PHANTOM")
    levels = phantom_levels(phantom.root)
    return VendorFiles(
        phantom=phantom,
        svs=write_svs(root / "phantom.svs", levels, phantom.mpp),
        ome_tiff=write_ome_tiff(root / "phantom.ome.tiff", levels, phantom.mpp),
        generic_tiff=write_generic_tiff(root / "phantom.tiff", levels, phantom.mpp),
    )


@pytest.fixture
def watch_runtime(settings: Settings, tmp_path: Path, converter: Path) -> Iterator[Runtime]:
    """A migrated database (SQLite and PostgreSQL) and a watched folder with a short quiet time."""
    updated = settings.model_copy(
        update={
            "watch": settings.watch.model_copy(
                update={
                    "folder": tmp_path / "dropbox",
                    "quiet_seconds": 0.3,
                    "scan_interval_s": 0.1,
                    "timeout_s": 300.0,
                }
            )
        }
    )
    migrate.upgrade(updated.database_url)
    yield Runtime(updated)
    dispose_engines()
