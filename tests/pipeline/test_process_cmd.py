"""`unitumour process SLIDE_DIR --out DIR`: the pipeline on a folder, without the network."""

from __future__ import annotations

import json
from pathlib import Path

import pydicom
import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from tests.jobs.servicekit import phantom_folders, toml_text
from tests.model.checkpoints import write_untrained_checkpoint
from unitumour_dicom.cli import app
from unitumour_dicom.config import load_settings
from unitumour_dicom.db import Job, migrate
from unitumour_dicom.runtime import Runtime

pytestmark = pytest.mark.integration

SEG_STORAGE = "1.2.840.10008.5.1.4.1.1.66.4"


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "unitumour.toml"
    path.write_text(
        toml_text(
            {
                "data_dir": tmp_path / "data",
                "model": {"path": write_untrained_checkpoint(tmp_path), "device": "cpu"},
            }
        )
    )
    (tmp_path / "data").mkdir()
    migrate.upgrade(load_settings(path).database_url)
    return path


def run(config: Path, *args: str):
    return CliRunner().invoke(app, ["-c", str(config), "process", *map(str, args)])


def jobs(config: Path) -> list[Job]:
    with Runtime(load_settings(config)).session() as session:
        return list(session.scalars(select(Job).order_by(Job.id)))


def test_a_folder_is_processed_and_its_seg_written(config: Path, tmp_path: Path):
    [slide] = phantom_folders(tmp_path / "in", 1)
    (slide / "notes.txt").write_text("not DICOM: skipped")
    result = run(config, slide, "--out", tmp_path / "out", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output[result.output.index("{") :])
    assert report["admitted"] == 3 and report["refused"] == {}
    [job] = report["jobs"]
    assert job["state"] == "succeeded" and job["result_id"] == 1
    written = [Path(p) for p in report["written"]]
    assert len(written) == 3 and all(p.is_file() for p in written)
    source = pydicom.dcmread(slide / "level-0.dcm", stop_before_pixels=True)
    for path in written:
        seg = pydicom.dcmread(path)
        assert seg.SOPClassUID == SEG_STORAGE
        assert seg.StudyInstanceUID == source.StudyInstanceUID
        assert seg.FrameOfReferenceUID == source.FrameOfReferenceUID
    [row] = jobs(config)
    assert row.state == "succeeded" and row.model_id is not None and row.inputs["sha256_verified"]


def test_a_processed_folder_is_not_run_again_unless_forced(config: Path, tmp_path: Path):
    [slide] = phantom_folders(tmp_path / "in", 1)
    assert run(config, slide, "--out", tmp_path / "a").exit_code == 0
    again = run(config, slide, "--out", tmp_path / "b")
    assert again.exit_code == 0, again.output
    assert "0 instance(s) admitted, 3 already held" in again.output
    assert "already succeeded; its SEG is copied" in again.output
    assert len(list((tmp_path / "b").rglob("*.dcm"))) == 3
    assert [j.state for j in jobs(config)] == ["succeeded"]
    forced = run(config, slide, "--out", tmp_path / "c", "--force")
    assert forced.exit_code == 0, forced.output
    first, second = jobs(config)
    assert second.supersedes_job_id == first.id and second.state == "succeeded"
    assert "run again by 'unitumour process'" in second.reason
    # a new job, so new SEG UIDs (they derive from the job's uuid)
    old = {p.name for p in (tmp_path / "a").rglob("*.dcm")}
    new = {p.name for p in (tmp_path / "c").rglob("*.dcm")}
    assert old.isdisjoint(new)


def test_bad_input_is_reported_not_skipped(config: Path, tmp_path: Path):
    empty = tmp_path / "empty"
    empty.mkdir()
    result = run(config, empty, "--out", tmp_path / "out")
    assert result.exit_code == 2
    assert "holds no DICOM files" in result.output
    [slide] = phantom_folders(tmp_path / "in", 1)
    truncated = slide / "level-2.dcm"
    truncated.write_bytes(truncated.read_bytes()[:2000])
    result = run(config, slide, "--out", tmp_path / "out")
    assert f"refused {truncated}" in result.output
    assert result.exit_code == 0, result.output  # the two complete levels still form a slide
