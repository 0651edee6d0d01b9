"""``unitumour synth``: writes a series that loads back, and refuses bad input with a message
and exit status 2 rather than a traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pydicom
import pytest
from typer.testing import CliRunner

from unitumour_dicom.cli.app import app
from unitumour_dicom.synthetic import load_phantom

pytestmark = pytest.mark.unittest

SMALL_ARGS = ["--width", "512", "--height", "384", "--tile-size", "128", "--levels", "3"]


def test_synth_writes_a_phantom_that_loads_back(tmp_path: Path) -> None:
    out = tmp_path / "slide"
    result = CliRunner().invoke(
        app,
        [
            "synth",
            str(out),
            *SMALL_ARGS,
            "--seed",
            "5",
            "--tumours",
            "2",
            "--pen-mark",
            "--no-label",
            "--transfer-syntax",
            "rle",
            "--dimension-organization",
            "TILED_SPARSE",
            "--omit-empty-tiles",
            "--patient-id",
            "P-42",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    slide = load_phantom(out)
    assert summary["series_uid"] == slide.series_uid
    assert summary["levels"] == [["level-0.dcm"], ["level-1.dcm"], ["level-2.dcm"]]
    assert summary["label"] is None and summary["overview"] == "overview.dcm"
    assert slide.spec.seed == 5 and slide.spec.n_tumours == 2 and slide.spec.pen_mark
    assert len(slide.scene.tumours) == 2
    ds = pydicom.dcmread(slide.level_paths[0][0], stop_before_pixels=True)
    assert ds.PatientID == "P-42"
    assert ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.5"
    assert ds.DimensionOrganizationType == "TILED_SPARSE"
    assert slide.spec.omit_empty_tiles


def test_synth_prints_a_readable_summary(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["synth", str(tmp_path / "s"), *SMALL_ARGS, "--layout", "none"]
    )
    assert result.exit_code == 0, result.output
    assert "level 0: 512 x 384 px at 0.5 µm/px: level-0.dcm" in result.output
    assert "series 2.25." in result.output
    assert not load_phantom(tmp_path / "s").has_tumour


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--tile-size", "100"], "multiple of 16"),
        (["--study-uid", "1.2.x"], "is not a DICOM UID"),
        (["--levels", "20"], "below one pixel"),
        (["--transfer-syntax", "gif"], "'gif' is not one of"),
        (["--omit-empty-tiles"], "needs frames that carry their positions"),
    ],
)
def test_synth_refuses_bad_options(tmp_path: Path, args: list[str], message: str) -> None:
    result = CliRunner().invoke(app, ["synth", str(tmp_path / "x"), *SMALL_ARGS, *args])
    assert result.exit_code == 2
    assert message in result.output
    assert not (tmp_path / "x" / "phantom.json").exists()


def test_synth_will_not_write_over_a_phantom_unless_told(tmp_path: Path) -> None:
    runner = CliRunner()
    assert runner.invoke(app, ["synth", str(tmp_path), *SMALL_ARGS]).exit_code == 0
    again = runner.invoke(app, ["synth", str(tmp_path), *SMALL_ARGS, "--seed", "1"])
    assert again.exit_code == 2 and "already holds" in again.output
    assert load_phantom(tmp_path).spec.seed == 0
    forced = runner.invoke(app, ["synth", str(tmp_path), *SMALL_ARGS, "--seed", "1", "--overwrite"])
    assert forced.exit_code == 0, forced.output
    assert load_phantom(tmp_path).spec.seed == 1
