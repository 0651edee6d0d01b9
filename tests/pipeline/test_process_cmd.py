"""`unitumour process SLIDE_DIR --out DIR`: the pipeline on a folder, without the network."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pydicom
import pytest
from scipy import ndimage
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
    assert all(p.is_file() for p in written)
    # the SEG levels, then the SR and the key image (no tumour from this untrained model, so
    # no contours to annotate), each kind in a series folder of its own
    assert [p.name.split("-")[0] for p in written] == [
        "level0",
        "level1",
        "level2",
        "sr",
        "key_image",
    ]
    assert len({p.parent for p in written}) == 3
    source = pydicom.dcmread(slide / "level-0.dcm", stop_before_pixels=True)
    for path in written[:3]:
        seg = pydicom.dcmread(path)
        assert seg.SOPClassUID == SEG_STORAGE
        assert seg.StudyInstanceUID == source.StudyInstanceUID
        assert seg.FrameOfReferenceUID == source.FrameOfReferenceUID
    for path in written[3:]:
        assert pydicom.dcmread(path).StudyInstanceUID == source.StudyInstanceUID
    [row] = jobs(config)
    assert row.state == "succeeded" and row.model_id is not None and row.inputs["sha256_verified"]


def test_a_processed_folder_is_not_run_again_unless_forced(config: Path, tmp_path: Path):
    [slide] = phantom_folders(tmp_path / "in", 1)
    assert run(config, slide, "--out", tmp_path / "a").exit_code == 0
    again = run(config, slide, "--out", tmp_path / "b")
    assert again.exit_code == 0, again.output
    assert "0 instance(s) admitted, 3 already held" in again.output
    assert "already succeeded; its result is copied" in again.output
    assert len(list((tmp_path / "b").rglob("*.dcm"))) == 5  # 3 SEG levels, SR, key image
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


def _write_secondary_capture(path: Path) -> None:
    """A valid DICOM file that is no whole-slide image (the listener's SOP classes refuse it)."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.PatientID, ds.Modality = "SC-1", "OT"
    ds.Rows = ds.Columns = 8
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = bytes(64)
    ds.save_as(path, enforce_file_format=True)


def test_a_folder_without_a_slide_is_an_error_not_a_success(config: Path, tmp_path: Path):
    folder = tmp_path / "sc"
    folder.mkdir()
    _write_secondary_capture(folder / "sc.dcm")
    result = run(config, folder, "--out", tmp_path / "out", "--json")
    assert result.exit_code == 1, result.output
    assert json.loads(result.stdout)["refused"]  # the JSON report still comes, on stdout
    assert f"nothing was processed: {folder} holds no whole-slide image series" in result.stderr
    assert "(1 file(s) refused)" in result.stderr
    assert jobs(config) == []


def test_a_folder_whose_every_slide_is_unprocessable_says_nothing_was_processed(
    config: Path, tmp_path: Path
):
    from unitumour_dicom.synthetic import PhantomSpec, write_phantom_slide

    spec = PhantomSpec(width=512, height=384, tile_size=256, levels=1, seed=7)
    phantom = write_phantom_slide(tmp_path / "labels", spec)
    for path in phantom.level_paths[0]:
        path.unlink()  # only the LABEL and OVERVIEW images are left: no pyramid
    result = run(config, tmp_path / "labels", "--out", tmp_path / "out")
    assert result.exit_code == 1, result.output
    assert "cannot be processed: the series holds no VOLUME image" in result.stdout
    assert "nothing was processed: none of the 1 slide(s)" in result.stderr


@pytest.fixture
def all_tumour_config(tmp_path: Path) -> Path:
    """Settings whose model calls every tissue pixel tumour (head weights zero, bias +10), so
    the SEG, and the picture's tint, cover the phantom's tissue."""
    import torch

    from tests.model.checkpoints import card_fields
    from unitumour_dicom.model import TumourUNet, save_checkpoint

    fields = card_fields(name="constant")
    net = TumourUNet(**fields["architecture_args"])
    with torch.no_grad():
        net.head.weight.zero_()
        net.head.bias.fill_(10.0)
    weights = tmp_path / "model" / "constant.safetensors"
    weights.parent.mkdir()
    save_checkpoint(net, weights, fields)
    path = tmp_path / "unitumour.toml"
    path.write_text(
        toml_text({"data_dir": tmp_path / "data", "model": {"path": weights, "device": "cpu"}})
    )
    (tmp_path / "data").mkdir()
    migrate.upgrade(load_settings(path).database_url)
    return path


def test_png_draws_the_slide_with_its_tumour_tinted(all_tumour_config: Path, tmp_path: Path):
    from PIL import Image

    from unitumour_dicom.seg.overlay import (
        FILL_RGB,
        choose_seg_level,
        read_seg_mask,
        render_overlay_png,
        resample_nearest,
        seg_levels,
    )

    [slide] = phantom_folders(tmp_path / "in", 1)  # 1024 x 768
    picture = tmp_path / "qa" / "slide.png"
    result = run(
        all_tumour_config, slide, "--out", tmp_path / "out", "--png", picture,
        "--png-size", "512", "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["pictures"] == [str(picture)]
    drawn = np.asarray(Image.open(picture).convert("RGB")).astype(np.int32)
    assert drawn.shape == (384, 512, 3)  # the slide's 4:3, longest side 512
    # where the SEG that was written says tumour, the picture is tinted towards the fill
    seg_files = sorted((tmp_path / "out").rglob("level*.dcm"))
    level = choose_seg_level(seg_levels(seg_files), 512)
    tumour = resample_nearest(read_seg_mask(level), 384, 512) >= 0.5
    inside = ndimage.binary_erosion(tumour, iterations=4)
    outside = ~ndimage.binary_dilation(tumour, iterations=4)
    assert inside.sum() > 0.1 * inside.size and outside.sum() > 0.05 * outside.size
    bare = render_overlay_png(slide_paths=sorted(slide.glob("*.dcm")), seg_paths=[], max_pixels=512)
    bare_rgb = np.asarray(Image.open(io.BytesIO(bare)).convert("RGB")).astype(np.int32)
    fill = np.asarray(FILL_RGB)
    closer = np.abs(drawn - fill).sum(axis=2) < np.abs(bare_rgb - fill).sum(axis=2)
    assert closer[inside].mean() > 0.99
    assert (drawn[outside] == bare_rgb[outside]).all(axis=1).mean() > 0.99
    # a folder: one <series UID>.png per slide (here the earlier result, reused)
    again = run(all_tumour_config, slide, "--out", tmp_path / "out2", "--png", tmp_path / "qa2")
    assert again.exit_code == 0, again.output
    series = pydicom.dcmread(slide / "level-0.dcm", stop_before_pixels=True).SeriesInstanceUID
    assert (tmp_path / "qa2" / f"{series}.png").is_file()
    assert f"drew {tmp_path / 'qa2' / f'{series}.png'}" in again.stdout


def test_progress_bars_go_to_stderr_and_json_stays_on_stdout(
    config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("UNITUMOUR_PROGRESS", "1")  # forced on: CliRunner's stderr is no tty
    [slide] = phantom_folders(tmp_path / "in", 1)
    result = run(config, slide, "--out", tmp_path / "out", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["admitted"] == 3  # stdout: the JSON, nothing else
    for stage in ("files", "slides", "tiles"):
        assert stage in result.stderr
    assert "3/3" in result.stderr  # the three files admitted
