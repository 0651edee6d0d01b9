"""The converter on real vendor files: each opens with wsidicom at the right pixel size, with
the scanner's facts and the site's identity carried into the DICOM."""

from __future__ import annotations

import hashlib
import json
import shutil
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pydicom
import pytest
from typer.testing import CliRunner
from wsidicom import WsiDicom

from tests.watch.conftest import VendorFiles
from unitumour_dicom.cli import app
from unitumour_dicom.convert import ConversionError, convert_file, resolve_identity, runner, worker
from unitumour_dicom.convert.identity import IdentityError

pytestmark = pytest.mark.integration

WHEN = datetime(2026, 12, 3, 10, 0, tzinfo=UTC)


def convert(src: Path, out: Path, converter: Path, *, sidecar: Path | None = None):
    sha = hashlib.sha256(src.read_bytes()).hexdigest()
    identity = resolve_identity(src, sha, filename_pattern=None, sidecar=sidecar)
    return convert_file(
        src,
        out,
        identity=identity,
        uid_seed=sha,
        python=converter,
        timeout_s=300,
        content_datetime=WHEN,
    )


def base_pixels(folder: Path) -> tuple[np.ndarray, float, tuple[int, int]]:
    with WsiDicom.open(folder) as wsi:
        level = wsi.levels.base_level
        image = wsi.read_region((0, 0), 0, level.size.to_tuple()).convert("RGB")
        return np.asarray(image), level.mpp.width, level.size.to_tuple()


@pytest.mark.parametrize("kind", ["svs", "ome_tiff", "generic_tiff"])
def test_each_vendor_file_opens_at_its_pixel_size_with_its_pixels(
    kind: str, vendor_files: VendorFiles, converter: Path, tmp_path: Path
):
    src = getattr(vendor_files, kind)
    conversion = convert(src, tmp_path / "out", converter)
    pixels, mpp, size = base_pixels(tmp_path / "out")
    assert mpp == pytest.approx(vendor_files.phantom.mpp, rel=1e-6)
    assert size == vendor_files.phantom.size
    with WsiDicom.open(tmp_path / "out") as wsi:
        assert [round(level.mpp.width, 6) for level in wsi.levels] == [0.5, 1.0, 2.0]
    original, _, _ = base_pixels(vendor_files.phantom.root)
    # JPEG tiles once more than the phantom's: close, not equal; a shift or a flip is far off
    assert np.abs(pixels.astype(int) - original.astype(int)).mean() < 4.0
    assert (
        conversion.source["reader"]
        == {
            "svs": "opentile:SvsTiler",
            "ome_tiff": "opentile:OmeTiffTiler",
            "generic_tiff": "openslide:generic-tiff",
        }[kind]
    )


def test_svs_tiles_pass_through_and_the_scanner_facts_are_carried(
    vendor_files: VendorFiles, converter: Path, tmp_path: Path
):
    convert(vendor_files.svs, tmp_path / "out", converter)
    datasets = [pydicom.dcmread(p, stop_before_pixels=True) for p in (tmp_path / "out").iterdir()]
    flavours = sorted(ds.ImageType[2] for ds in datasets)
    assert flavours == ["LABEL", "OVERVIEW", "THUMBNAIL", "VOLUME", "VOLUME", "VOLUME"]
    for ds in datasets:
        assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.77.1.6"
        assert ds.Manufacturer == "Aperio"
        assert ds.file_meta.TransferSyntaxUID == pydicom.uid.JPEGBaseline8Bit
        assert float(ds.OpticalPathSequence[0].ObjectiveLensPower) == 20.0
        assert ds.ContentDate == "20261203" and ds.ContentTime.startswith("100000")
    base = next(ds for ds in datasets if ds.ImageType[:3] == ["ORIGINAL", "PRIMARY", "VOLUME"])
    spacing = base.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0].PixelSpacing
    assert [float(v) for v in spacing] == [0.0005, 0.0005]
    assert base.ImageType[3] == "NONE"  # the original tiles, not re-encoded (RESAMPLED)


def test_the_same_file_converts_to_the_same_bytes(
    vendor_files: VendorFiles, converter: Path, tmp_path: Path
):
    def digests(folder: Path) -> dict[str, str]:
        return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir()}

    convert(vendor_files.svs, tmp_path / "a", converter)
    convert(vendor_files.svs, tmp_path / "b", converter)
    assert digests(tmp_path / "a") == digests(tmp_path / "b")


def test_a_json_sidecar_sets_patient_study_and_container(
    vendor_files: VendorFiles, converter: Path, tmp_path: Path
):
    src = tmp_path / "S-2026-0042.svs"
    shutil.copyfile(vendor_files.svs, src)
    sidecar = src.with_suffix(".json")
    sidecar.write_text(
        json.dumps(
            {
                "PatientID": "PAT-7",
                "PatientName": "Doe^Jane",
                "AccessionNumber": "ACC42",
                "StudyInstanceUID": "1.2.826.0.1.3680043.10.511.42",
                "StudyID": "42",
                "StudyDate": "20261201",
                "ContainerIdentifier": "S-2026-0042-A1",
            }
        )
    )
    convert(src, tmp_path / "out", converter)
    for path in (tmp_path / "out").iterdir():
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        assert (ds.PatientID, str(ds.PatientName), ds.AccessionNumber) == (
            "PAT-7",
            "Doe^Jane",
            "ACC42",
        )
        assert ds.StudyInstanceUID == "1.2.826.0.1.3680043.10.511.42"
        assert (ds.StudyID, ds.StudyDate, ds.ContainerIdentifier) == (
            "42",
            "20261201",
            "S-2026-0042-A1",
        )


def test_identity_from_csv_pattern_or_generated(tmp_path: Path):
    src = tmp_path / "ACC9_BLOCK-A1.svs"
    src.write_bytes(b"x")
    by_pattern = resolve_identity(
        src,
        "ab" * 32,
        filename_pattern=r"(?P<AccessionNumber>[A-Z0-9]+)_(?P<ContainerIdentifier>.+)",
    )
    assert by_pattern.source == "filename-pattern"
    assert by_pattern.attributes["AccessionNumber"] == "ACC9"
    assert by_pattern.attributes["ContainerIdentifier"] == "BLOCK-A1"
    assert by_pattern.attributes["PatientName"] == "UNIDENTIFIED^ACC9_BLOCK-A1"
    assert "gives no PatientID and no PatientName" in by_pattern.warnings[0]

    generated = resolve_identity(src, "ab" * 32, filename_pattern=r"(?P<StudyID>\d+)")
    assert generated.generated and generated.attributes["PatientID"] == "UNIDENTIFIED-" + "ab" * 8
    assert "no sidecar and no file-name match" in generated.warnings[0]

    src.with_suffix(".csv").write_text("PatientID,PatientName,StudyDate\nP1,Roe^Richard,20261130\n")
    by_csv = resolve_identity(src, "ab" * 32, filename_pattern=None)
    assert by_csv.source == "sidecar:ACC9_BLOCK-A1.csv" and not by_csv.warnings
    assert by_csv.attributes["PatientName"] == "Roe^Richard"

    src.with_suffix(".csv").write_text("PatientID,StudyDate\nP1,20261131\n")
    with pytest.raises(IdentityError, match="StudyDate '20261131' is not a date YYYYMMDD"):
        resolve_identity(src, "ab" * 32, filename_pattern=None)
    src.with_suffix(".csv").write_text("PatientID,Remark\nP1,hello\n")
    with pytest.raises(IdentityError, match="'Remark' is not an attribute a sidecar may set"):
        resolve_identity(src, "ab" * 32, filename_pattern=None)


def test_a_corrupt_file_fails_with_the_converters_reason(
    vendor_files: VendorFiles, converter: Path, tmp_path: Path
):
    src = tmp_path / "broken.svs"
    src.write_bytes(vendor_files.svs.read_bytes()[:5000])
    with pytest.raises(ConversionError, match=r"conversion failed: .*converter exit status 2"):
        convert(src, tmp_path / "out", converter)


def test_the_converter_is_stopped_at_its_deadline_and_its_output_is_bounded(tmp_path: Path):
    # a stand-in "python" that floods its output and never ends: the runner's limits hold
    fake = tmp_path / "python"
    fake.write_text("#!/bin/sh\nyes 'flood' >&2 &\nexec sleep 600\n")
    fake.chmod(0o755)
    src = tmp_path / "x.svs"
    src.write_bytes(b"x")
    identity = resolve_identity(src, "cd" * 32, filename_pattern=None)
    started = datetime.now(UTC)
    with pytest.raises(ConversionError, match="took longer than 1 s and was stopped"):
        convert_file(
            src,
            tmp_path / "out",
            identity=identity,
            uid_seed="cd" * 32,
            python=fake,
            timeout_s=1.0,
            max_output_bytes=4096,
        )
    assert (datetime.now(UTC) - started).total_seconds() < 30


def test_the_worker_and_the_runner_agree_on_the_result_line():
    assert worker.RESULT_PREFIX == runner.RESULT_PREFIX


def test_convert_command(vendor_files: VendorFiles, converter: Path, tmp_path: Path):
    result = CliRunner().invoke(
        app, ["convert", str(vendor_files.ome_tiff), str(tmp_path / "out"), "--json"]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.output[result.output.index("{") :])
    assert report["identity_source"] == "generated" and len(report["files"]) == 3
    assert report["reader"]["reader"] == "opentile:OmeTiffTiler"
    missing = CliRunner().invoke(app, ["convert", str(tmp_path / "nope.svs"), str(tmp_path / "o")])
    assert missing.exit_code == 2 and "nope.svs is not a file" in missing.output
