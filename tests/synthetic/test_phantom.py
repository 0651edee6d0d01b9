"""A written phantom, read back the way the rest of the project reads slides: wsidicom opens
the series, every level has the stated size and pixel size, the pixels agree with the ground
truth, and the same spec always gives the same bytes."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from wsidicom import WsiDicom

from unitumour_dicom.errors import SlideError
from unitumour_dicom.slide.mask import SlideMask
from unitumour_dicom.synthetic import PhantomSlide, PhantomSpec, load_phantom, write_phantom_slide

from .conftest import SMALL

pytestmark = pytest.mark.unittest

LUMA = np.array([0.299, 0.587, 0.114])


def _digests(paths: list[Path]) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in paths}


def test_files_and_api(small_phantom: PhantomSlide) -> None:
    slide = small_phantom
    names = [p.name for p in slide.instance_paths]
    assert names == ["level-0.dcm", "level-1.dcm", "level-2.dcm", "label.dcm", "overview.dcm"]
    assert [len(level) for level in slide.level_paths] == [1, 1, 1]
    assert slide.size == (1024, 768) and slide.mpp == 0.5
    assert all(p.is_file() for p in slide.instance_paths)
    assert not list(slide.root.glob("*.partial"))
    for name in ("phantom.json", "tumour_mask.png", "tissue_mask.png"):
        assert (slide.root / name).is_file()


def test_wsidicom_opens_the_series_with_every_level(small_phantom: PhantomSlide) -> None:
    with WsiDicom.open(small_phantom.instance_paths) as wsi:
        assert [(lvl.size.width, lvl.size.height) for lvl in wsi.levels] == [
            (1024, 768),
            (512, 384),
            (256, 192),
        ]
        assert [lvl.mpp.width for lvl in wsi.levels] == pytest.approx([0.5, 1.0, 2.0])
        assert [lvl.mpp.height for lvl in wsi.levels] == pytest.approx([0.5, 1.0, 2.0])
        for index, level in enumerate(wsi.levels):
            w, h = level.size.width, level.size.height
            region = np.asarray(wsi.read_region((0, 0), index, (w, h)))
            assert region.shape == (h, w, 3)
            assert 150 < region.mean() < 250
        # Levels agree: level 1 is level 0 box-filtered, up to JPEG's errors.
        base = np.asarray(wsi.read_region((0, 0), 0, (1024, 768))).astype(np.float64)
        half = base.reshape(384, 2, 512, 2, 3).mean(axis=(1, 3))
        level1 = np.asarray(wsi.read_region((0, 0), 1, (512, 384))).astype(np.float64)
        assert np.abs(half - level1).mean() < 4
        label = np.asarray(wsi.read_label())
        overview = np.asarray(wsi.read_overview())
        assert label.shape == (500, 400, 3) and overview.shape == (625, 1875, 3)
        assert wsi.uids.study_instance == small_phantom.study_uid
        assert wsi.uids.series_instance == small_phantom.series_uid


def test_tumour_is_darker_where_the_mask_says_tumour(small_phantom: PhantomSlide) -> None:
    with WsiDicom.open(small_phantom.instance_paths) as wsi:
        for level, mpp in ((0, 0.5), (1, 1.0)):
            size = (1024 >> level, 768 >> level)
            pixels = np.asarray(wsi.read_region((0, 0), level, size)) @ LUMA
            tumour = small_phantom.tumour_mask(mpp).array
            tissue = small_phantom.tissue_mask(mpp).array
            assert tumour.shape == tissue.shape == pixels.shape
            normal = tissue & ~tumour
            assert tumour.sum() > 500 and normal.sum() > 500
            assert pixels[tumour].mean() < pixels[normal].mean() - 20
            assert pixels[normal].mean() < pixels[~tissue].mean() - 30


def test_ground_truth_pngs_match_the_analytic_masks(small_phantom: PhantomSlide) -> None:
    manifest = json.loads((small_phantom.root / "phantom.json").read_text())
    truth = manifest["ground_truth"]
    assert truth["mpp"] == small_phantom.ground_truth_mpp == 1.0
    for name, method in (
        ("tumour_mask.png", small_phantom.tumour_mask),
        ("tissue_mask.png", small_phantom.tissue_mask),
    ):
        png = np.asarray(Image.open(small_phantom.root / name))
        mask = method(truth["mpp"])
        assert isinstance(mask, SlideMask)
        assert png.shape == mask.shape == (truth["height"], truth["width"])
        assert np.array_equal(png == 255, mask.array)
        assert set(np.unique(png)) <= {0, 255}


def test_masks_at_other_resolutions_agree(small_phantom: PhantomSlide) -> None:
    fine = small_phantom.tumour_mask(0.5)
    coarse = small_phantom.tumour_mask(4.0)
    assert fine.shape == (768, 1024) and coarse.shape == (96, 128)
    assert fine.area_mm2() == pytest.approx(coarse.area_mm2(), rel=0.1)
    assert fine.area_mm2() > 0


def test_dicom_attributes_a_scanner_writes(small_phantom: PhantomSlide) -> None:
    datasets = [pydicom.dcmread(p, stop_before_pixels=True) for p in small_phantom.instance_paths]
    level0, level1, level2, label, overview = datasets
    for ds in datasets:
        assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.77.1.6"
        assert ds.StudyInstanceUID == small_phantom.study_uid
        assert ds.SeriesInstanceUID == small_phantom.series_uid
        assert ds.FrameOfReferenceUID == small_phantom.frame_of_reference_uid
        assert ds.ContainerIdentifier == "ACC0001-1"
        assert ds.DimensionOrganizationType == "TILED_FULL"
        assert ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.4.50"
        assert ds.PhotometricInterpretation == "YBR_FULL_422"
        assert ds.OpticalPathSequence[0].ICCProfile[36:40] == b"acsp"
        step = ds.SpecimenDescriptionSequence[0].SpecimenPreparationSequence[0]
        meanings = {
            item.ConceptCodeSequence[0].CodeMeaning
            for item in step.SpecimenPreparationStepContentItemSequence
            if "ConceptCodeSequence" in item
        }
        assert {"hematoxylin stain", "water soluble eosin stain"} <= meanings
    assert list(level0.ImageType) == ["ORIGINAL", "PRIMARY", "VOLUME", "NONE"]
    assert list(level1.ImageType) == ["DERIVED", "PRIMARY", "VOLUME", "RESAMPLED"]
    assert list(label.ImageType)[2] == "LABEL" and list(overview.ImageType)[2] == "OVERVIEW"
    assert label.SpecimenLabelInImage == "YES" and label.BurnedInAnnotation == "YES"
    assert level0.SpecimenLabelInImage == "NO" and level0.BurnedInAnnotation == "NO"
    assert "ACC0001" in label.LabelText and label.BarcodeValue == "ACC0001"
    assert (level2.TotalPixelMatrixColumns, level2.TotalPixelMatrixRows) == (256, 192)
    assert level2.NumberOfFrames == 1 and level0.NumberOfFrames == 12
    spacing = level1.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0].PixelSpacing
    assert [float(v) for v in spacing] == [0.001, 0.001]
    assert float(level0.ImagedVolumeWidth) == pytest.approx(0.512)
    assert float(level0.ImagedVolumeHeight) == pytest.approx(0.384)
    assert float(level0.LossyImageCompressionRatio) > 2
    assert len({ds.SOPInstanceUID for ds in datasets}) == 5


@pytest.mark.slow
def test_same_spec_same_bytes_whatever_the_threads(tmp_path: Path) -> None:
    spec = PhantomSpec(seed=21, pen_mark=True, glass_edge=True, **SMALL)
    a = write_phantom_slide(tmp_path / "a", spec, workers=1)
    b = write_phantom_slide(tmp_path / "b", spec, workers=3)
    files = [*a.instance_paths, a.root / "phantom.json", a.root / "tumour_mask.png"]
    assert _digests(files) == _digests([b.root / p.name for p in files])
    c = write_phantom_slide(tmp_path / "c", dataclasses.replace(spec, seed=22), workers=2)
    assert _digests([c.level_paths[0][0]]) != _digests([a.level_paths[0][0]])
    assert c.series_uid != a.series_uid


def test_load_phantom_gives_back_what_was_written(small_phantom: PhantomSlide) -> None:
    loaded = load_phantom(small_phantom.root)
    assert loaded.spec == small_phantom.spec
    assert loaded.scene == small_phantom.scene
    assert loaded.instance_paths == small_phantom.instance_paths
    assert loaded.frame_of_reference_uid == small_phantom.frame_of_reference_uid
    assert np.array_equal(loaded.tumour_mask(2.0).array, small_phantom.tumour_mask(2.0).array)


def test_load_phantom_refuses_what_is_not_a_phantom(
    tmp_path: Path, small_phantom: PhantomSlide
) -> None:
    with pytest.raises(SlideError, match=r"holds no phantom\.json"):
        load_phantom(tmp_path)
    (tmp_path / "phantom.json").write_text("{not json")
    with pytest.raises(SlideError, match="cannot be read"):
        load_phantom(tmp_path)
    manifest = json.loads((small_phantom.root / "phantom.json").read_text())
    for change, message in (
        ({"format": "other"}, "is not a unitumour-phantom manifest"),
        ({"format_version": 99}, "format version 99"),
        ({"label": "../../etc/passwd"}, "bad file name"),
        ({"spec": {**manifest["spec"], "tile_size": 100}}, "multiple of 16"),
        ({"scene": {}}, "malformed"),
    ):
        (tmp_path / "phantom.json").write_text(json.dumps({**manifest, **change}))
        with pytest.raises(SlideError, match=message):
            load_phantom(tmp_path)
    (tmp_path / "phantom.json").write_text(json.dumps(manifest))
    with pytest.raises(SlideError, match=r"lacks files its manifest lists: level-0\.dcm"):
        load_phantom(tmp_path)


def test_a_directory_with_a_phantom_is_only_replaced_on_request(tmp_path: Path) -> None:
    first = write_phantom_slide(
        tmp_path, PhantomSpec(seed=1, concatenation_frames=5, **SMALL), workers=1
    )
    assert len(first.level_paths[0]) == 3
    with pytest.raises(SlideError, match="already holds"):
        write_phantom_slide(tmp_path, PhantomSpec(seed=2, **SMALL))
    second = write_phantom_slide(
        tmp_path,
        PhantomSpec(seed=2, label=False, overview=False, **{**SMALL, "levels": 2}),
        overwrite=True,
    )
    assert sorted(p.name for p in tmp_path.glob("*.dcm")) == ["level-0.dcm", "level-1.dcm"]
    assert second.label_path is None and second.overview_path is None
    assert load_phantom(tmp_path).spec.seed == 2


def test_a_failure_part_way_leaves_no_half_series(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from unitumour_dicom.synthetic import phantom

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("overview camera failed")

    monkeypatch.setattr(phantom, "render_overview", broken)
    with pytest.raises(RuntimeError, match="overview camera failed"):
        write_phantom_slide(tmp_path, PhantomSpec(**SMALL), workers=1)
    assert list(tmp_path.iterdir()) == []
