"""The EBHI-Seg mosaic: real images placed exactly where the ground truth says, a valid WSI
series (wsidicom reads every level, dciodvfy finds no error), the same bytes for the same
inputs, and refusals of hostile or inconsistent manifests with nothing left behind.

Tests on the real data skip with a clear message when ../shared/data/ebhi-seg is absent;
the refusals run on tiny images made in tmp_path."""

from __future__ import annotations

import csv
import hashlib
import os
from pathlib import Path

import cv2
import numpy as np
import pydicom
import pytest
from PIL import Image
from wsidicom import WsiDicom

from tests.synthetic.conftest import dciodvfy_errors
from unitumour_dicom.errors import SlideError
from unitumour_dicom.synthetic.mosaic import (
    EBHI_ASSUMED_MPP,
    _Row,
    choose_images,
    load_mosaic,
    read_manifest_rows,
    write_mosaic_slide,
)

pytestmark = pytest.mark.unittest

REPO = Path(__file__).resolve().parents[2]
EBHI = Path(os.environ.get("UNITUMOUR_DEMO_DATA") or REPO.parent / "shared" / "data" / "ebhi-seg")


@pytest.fixture(scope="module")
def ebhi_manifest() -> Path:
    manifest = EBHI / "manifest.csv"
    if not manifest.is_file():
        pytest.skip(f"EBHI-Seg data not found at {EBHI} (set UNITUMOUR_DEMO_DATA)")
    return manifest


@pytest.fixture(scope="module")
def mosaic(ebhi_manifest: Path, tmp_path_factory: pytest.TempPathFactory):
    return write_mosaic_slide(
        tmp_path_factory.mktemp("mosaic"), ebhi_manifest, split="test", n=6, seed=3, workers=2
    )


def digests(paths: list[Path]) -> list[str]:
    return [hashlib.sha256(p.read_bytes()).hexdigest() for p in paths]


def test_mosaic_mixes_carcinoma_and_tumour_free_test_images(mosaic, ebhi_manifest: Path):
    classes = [t.cls for t in mosaic.tiles]
    assert classes.count("Adenocarcinoma") == 3
    assert sorted(set(classes) - {"Adenocarcinoma"}) <= ["Normal", "Polyp"]
    test_images = {r.image for r in read_manifest_rows(ebhi_manifest, "test")}
    assert {t.image for t in mosaic.tiles} <= test_images
    assert mosaic.mpp == pytest.approx(EBHI_ASSUMED_MPP / 2)
    assert mosaic.has_tumour


def test_base_level_shows_each_image_where_the_ground_truth_puts_it(mosaic, ebhi_manifest):
    root = ebhi_manifest.parent
    with WsiDicom.open(mosaic.instance_paths) as wsi:
        assert len(wsi.levels) == mosaic.spec.levels
        assert (wsi.size.width, wsi.size.height) == mosaic.size
        base = np.asarray(wsi.read_region((0, 0), 0, mosaic.size).convert("RGB"), dtype=float)
        for level in range(1, len(wsi.levels)):  # every level decodes
            wsi.read_region((0, 0), level, (16, 16))
        assert wsi.read_label() is not None and wsi.read_overview() is not None
    truth = mosaic.tumour_mask(EBHI_ASSUMED_MPP).array
    tissue = mosaic.tissue_mask(EBHI_ASSUMED_MPP).array
    f = mosaic.upsample
    for tile in mosaic.tiles:
        source = np.asarray(Image.open(root / tile.image).convert("RGB"))
        expected = cv2.resize(source, (tile.width * f, tile.height * f), cv2.INTER_CUBIC)
        shown = base[
            tile.y * f : (tile.y + tile.height) * f, tile.x * f : (tile.x + tile.width) * f
        ]
        assert np.abs(shown - expected).mean() < 6  # JPEG q90 of the same pixels
        other = np.asarray(Image.open(ebhi_manifest.parent / mosaic.tiles[0].image))
        if tile is not mosaic.tiles[0]:  # a misplaced image would match another one
            assert np.abs(shown - cv2.resize(other, expected.shape[1::-1])).mean() > 15
        mask = np.asarray(Image.open(root / tile.mask).convert("L")) > 127
        where = np.s_[tile.y : tile.y + tile.height, tile.x : tile.x + tile.width]
        assert np.array_equal(truth[where], mask)
        assert tissue[where].all()
    glass = ~mosaic.tissue_mask(mosaic.mpp).array[: base.shape[0], : base.shape[1]]
    assert base[glass].mean() > 235  # white glass between and around the images
    assert truth.sum() == sum(
        (np.asarray(Image.open(root / t.mask).convert("L")) > 127).sum() for t in mosaic.tiles
    )


def test_ground_truth_at_other_pixel_sizes_keeps_the_tumour_area(mosaic):
    exact = mosaic.tumour_mask(EBHI_ASSUMED_MPP)
    for mpp in (0.45, 1.8, 3.6):
        coarse = mosaic.tumour_mask(mpp)
        assert coarse.area_mm2() == pytest.approx(exact.area_mm2(), rel=0.05)
        width_um, height_um = (side * mosaic.mpp for side in mosaic.size)
        assert coarse.shape == (round(height_um / mpp + 0.4999), round(width_um / mpp + 0.4999))


def test_same_inputs_write_the_same_bytes_and_another_seed_other_uids(
    mosaic, ebhi_manifest, tmp_path: Path
):
    again = write_mosaic_slide(tmp_path / "a", ebhi_manifest, split="test", n=6, seed=3, workers=1)
    assert digests(again.instance_paths) == digests(mosaic.instance_paths)
    assert (again.study_uid, again.series_uid) == (mosaic.study_uid, mosaic.series_uid)
    other = write_mosaic_slide(tmp_path / "b", ebhi_manifest, split="test", n=6, seed=4)
    assert other.series_uid != mosaic.series_uid
    assert other.frame_of_reference_uid != mosaic.frame_of_reference_uid
    assert [t.image for t in other.tiles] != [t.image for t in mosaic.tiles]


def test_header_says_what_the_slide_shows_and_passes_dciodvfy(mosaic):
    ds = pydicom.dcmread(mosaic.level_paths[0][0], stop_before_pixels=True)
    assert ds.SOPClassUID == pydicom.uid.VLWholeSlideMicroscopyImageStorage
    assert ds.SeriesInstanceUID == mosaic.series_uid
    assert ds.FrameOfReferenceUID == mosaic.frame_of_reference_uid
    assert "EBHI-Seg" in ds.SeriesDescription and ds.PatientID == "EBHI-MOSAIC-0003"
    spacing = ds.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0].PixelSpacing
    assert float(spacing[0]) == pytest.approx(mosaic.mpp / 1000)
    assert mosaic.overview_path is not None and mosaic.overview_path.is_file()
    for path in (mosaic.level_paths[0][0], mosaic.label_path, mosaic.overview_path):
        assert dciodvfy_errors(path) == []


def test_load_mosaic_round_trips(mosaic):
    loaded = load_mosaic(mosaic.root)
    assert loaded.tiles == mosaic.tiles and loaded.series_uid == mosaic.series_uid
    assert np.array_equal(loaded.tumour_mask(2.0).array, mosaic.tumour_mask(2.0).array)
    (mosaic.root / "mosaic.json").write_text('{"format": "something-else"}')
    with pytest.raises(SlideError, match="not a unitumour-mosaic"):
        load_mosaic(mosaic.root)


# -- refusals, on tiny images --------------------------------------------------------------------


def tiny_dataset(root: Path, *, n_tumour: int = 3, n_free: int = 3, side: int = 32) -> Path:
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n_tumour + n_free):
        cls = "Adenocarcinoma" if i < n_tumour else "Polyp"
        (root / "images").mkdir(parents=True, exist_ok=True)
        (root / "masks").mkdir(parents=True, exist_ok=True)
        image = rng.integers(60, 200, (side, side, 3), dtype=np.uint8)
        mask = np.zeros((side, side), np.uint8)
        if cls == "Adenocarcinoma":
            mask[4:20, 6:26] = 255
        Image.fromarray(image).save(root / f"images/{i}.png")
        Image.fromarray(mask).save(root / f"masks/{i}.png")
        rows.append([f"images/{i}.png", f"masks/{i}.png", cls, f"case{i}", "test", "0"])
    write_manifest(root / "manifest.csv", rows)
    return root / "manifest.csv"


def write_manifest(path: Path, rows: list[list[str]]) -> None:
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["image", "mask", "cls", "case", "split", "tumour_fraction"])
        writer.writerows(rows)


def test_tiny_mosaic_has_the_masks_in_place(tmp_path: Path):
    manifest = tiny_dataset(tmp_path / "data")
    slide = write_mosaic_slide(
        tmp_path / "out", manifest, n=4, seed=0, margin_px=8, gap_px=4, tile_size=64, label=False
    )
    truth = slide.tumour_mask(slide.source_mpp).array
    assert truth.sum() == 2 * 16 * 20  # two carcinoma images, one 16 x 20 box each
    assert [t.cls for t in slide.tiles].count("Adenocarcinoma") == 2


@pytest.mark.parametrize(
    "bad_path", ["../outside.png", "/etc/passwd", "images/../../outside.png", ""]
)
def test_paths_that_leave_the_data_folder_are_refused(tmp_path: Path, bad_path: str):
    manifest = tiny_dataset(tmp_path / "data")
    write_manifest(manifest, [[bad_path, "masks/0.png", "Adenocarcinoma", "c", "test", "0"]])
    with pytest.raises(SlideError, match="must be relative and stay in"):
        write_mosaic_slide(tmp_path / "out", manifest, n=1)


def test_missing_columns_too_few_images_and_bad_n_are_refused(tmp_path: Path):
    manifest = tiny_dataset(tmp_path / "data", n_tumour=1, n_free=1)
    with pytest.raises(SlideError, match="1 carcinoma and 1 tumour-free images; 3 were asked"):
        write_mosaic_slide(tmp_path / "out", manifest, n=3)
    with pytest.raises(ValueError, match="n must be an integer"):
        write_mosaic_slide(tmp_path / "out", manifest, n=0)
    with pytest.raises(SlideError, match="split"):
        write_mosaic_slide(tmp_path / "out", manifest, n=1, split="nonexistent")
    manifest.write_text("image,mask\nimages/0.png,masks/0.png\n")
    with pytest.raises(SlideError, match=r"lacks column\(s\) cls, case, split"):
        write_mosaic_slide(tmp_path / "out", manifest, n=1)


def test_a_mask_of_another_size_or_a_truncated_image_leaves_no_files(tmp_path: Path):
    manifest = tiny_dataset(tmp_path / "data")
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(tmp_path / "data/masks/0.png")
    with pytest.raises(SlideError, match=r"masks/0.png is 16 x 16 px, its image 32 x 32"):
        write_mosaic_slide(tmp_path / "out", manifest, n=6)
    manifest = tiny_dataset(tmp_path / "data2")
    image = tmp_path / "data2/images/4.png"
    image.write_bytes(image.read_bytes()[:60])  # truncated after the header
    with pytest.raises(SlideError, match="cannot decode"):
        write_mosaic_slide(tmp_path / "out2", manifest, n=6, tile_size=64)
    assert list((tmp_path / "out2").iterdir()) == []


def test_choice_is_deterministic_and_balanced():
    pool = [_Row(f"t{i}", f"m{i}", "Adenocarcinoma", "c") for i in range(10)]
    pool += [_Row(f"f{i}", f"n{i}", "Normal", "c") for i in range(10)]
    first = choose_images(pool, 7, seed=5)
    assert first == choose_images(pool, 7, seed=5)
    assert first != choose_images(pool, 7, seed=6)
    assert sum(r.cls == "Adenocarcinoma" for r in first) == 4
    assert len({r.image for r in first}) == 7


def test_existing_series_is_not_overwritten_unless_asked(tmp_path: Path):
    manifest = tiny_dataset(tmp_path / "data")
    kwargs = {"n": 2, "tile_size": 64, "label": False}
    write_mosaic_slide(tmp_path / "out", manifest, **kwargs)
    with pytest.raises(SlideError, match="already holds"):
        write_mosaic_slide(tmp_path / "out", manifest, **kwargs)
    write_mosaic_slide(tmp_path / "out", manifest, overwrite=True, seed=1, **kwargs)
    assert load_mosaic(tmp_path / "out").seed == 1
