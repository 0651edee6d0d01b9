"""The streaming writer: offset tables that point at the frames, a compression ratio filled in
after the fact, and no file at all when writing fails part way."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.encaps import generate_frames, parse_basic_offsets

from unitumour_dicom.synthetic import PhantomSpec
from unitumour_dicom.synthetic import instance_writer as iw
from unitumour_dicom.synthetic.codecs import codec_for
from unitumour_dicom.synthetic.dicom_header import (
    FrameLayout,
    PhantomUids,
    common_dataset,
    image_dataset,
    per_frame_groups,
    volume_placement,
)

pytestmark = pytest.mark.unittest

SPEC = PhantomSpec(width=96, height=64, tile_size=32, levels=1, label=False, overview=False)


def _tiles(n: int) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 255, (32, 32, 3), dtype=np.uint8) // 8 * 8 for _ in range(n)]


def _dataset(codec_name: str):  # type: ignore[no-untyped-def]
    uids = PhantomUids.from_spec(SPEC)
    codec = codec_for(codec_name, 90)
    ds = image_dataset(
        SPEC,
        common_dataset(SPEC, uids),
        flavour="VOLUME",
        level=0,
        placement=volume_placement(SPEC, 0),
        layout=FrameLayout((32, 32), 3, 2, range(6)),
        codec=codec,
        sop_instance_uid=uids.instance("t"),
        instance_number=1,
        uids=uids,
    )
    return ds, codec


def _write(path: Path, codec_name: str, tiles: list[np.ndarray]) -> None:
    ds, codec = _dataset(codec_name)
    with iw.InstanceWriter(path, ds, codec, n_frames=len(tiles), frame_shape=(32, 32)) as w:
        for tile in tiles:
            w.write_frame(tile)


def test_basic_offset_table_points_at_each_frame(tmp_path: Path) -> None:
    tiles = _tiles(6)
    path = tmp_path / "bot.dcm"
    _write(path, "jpeg2000_lossless", tiles)
    ds = pydicom.dcmread(path)
    offsets = parse_basic_offsets(ds.PixelData)
    assert len(offsets) == 6 and offsets[0] == 0
    assert offsets == sorted(offsets)
    frames = list(generate_frames(ds.PixelData, number_of_frames=6))
    assert len(frames) == 6
    assert "ExtendedOffsetTable" not in ds
    for i, tile in enumerate(tiles):
        assert np.array_equal(ds.pixel_array[i], tile)
    assert ds.LossyImageCompression == "00" and "LossyImageCompressionRatio" not in ds


def test_extended_offset_table_when_pixel_data_may_pass_4_gib(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(iw, "_BOT_LIMIT", 1000)  # pretend 6 small frames could exceed 4 GiB
    tiles = _tiles(6)
    path = tmp_path / "eot.dcm"
    _write(path, "rle", tiles)
    ds = pydicom.dcmread(path)
    offsets = np.frombuffer(ds.ExtendedOffsetTable, dtype="<u8")
    lengths = np.frombuffer(ds.ExtendedOffsetTableLengths, dtype="<u8")
    assert len(offsets) == len(lengths) == 6
    assert parse_basic_offsets(ds.PixelData) == []  # empty BOT beside an EOT (PS3.5 A.4)
    raw = path.read_bytes()
    first_item = raw.index(b"\xfe\xff\x00\xe0", raw.index(b"\xe0\x7f\x10\x00")) + 8
    for offset, length in zip(offsets, lengths, strict=True):
        at = first_item + int(offset)
        assert raw[at : at + 4] == b"\xfe\xff\x00\xe0"
        assert int.from_bytes(raw[at + 4 : at + 8], "little") == length
    for i, tile in enumerate(tiles):
        assert np.array_equal(ds.pixel_array[i], tile)


def test_lossy_ratio_is_patched_into_the_header(tmp_path: Path) -> None:
    path = tmp_path / "jpeg.dcm"
    _write(path, "jpeg_baseline", _tiles(6))
    ds = pydicom.dcmread(path)
    assert ds.LossyImageCompression == "01"
    assert ds.LossyImageCompressionMethod == "ISO_10918_1"
    raw_bytes = 6 * 32 * 32 * 3
    encoded = sum(len(f) for f in generate_frames(ds.PixelData, number_of_frames=6))
    assert float(ds.LossyImageCompressionRatio) == pytest.approx(raw_bytes / encoded, rel=0.01)


def test_native_pixel_data_has_a_defined_length(tmp_path: Path) -> None:
    tiles = _tiles(6)
    path = tmp_path / "native.dcm"
    _write(path, "explicit_vr_little_endian", tiles)
    ds = pydicom.dcmread(path)
    assert len(ds.PixelData) == 6 * 32 * 32 * 3
    assert np.array_equal(ds.pixel_array, np.stack(tiles))


def test_a_failure_part_way_leaves_no_file(tmp_path: Path) -> None:
    ds, codec = _dataset("jpeg_baseline")
    path = tmp_path / "broken.dcm"
    with pytest.raises(RuntimeError, match="encoder died"):
        with iw.InstanceWriter(path, ds, codec, n_frames=6, frame_shape=(32, 32)) as w:
            w.write_frame(_tiles(1)[0])
            raise RuntimeError("encoder died")
    assert list(tmp_path.iterdir()) == []


def test_frame_count_and_shape_are_enforced(tmp_path: Path) -> None:
    ds, codec = _dataset("jpeg_baseline")
    path = tmp_path / "short.dcm"
    with pytest.raises(ValueError, match="1 frames written, 6 declared"):
        with iw.InstanceWriter(path, ds, codec, n_frames=6, frame_shape=(32, 32)) as w:
            w.write_frame(_tiles(1)[0])
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="expected"):
        with iw.InstanceWriter(path, ds, codec, n_frames=6, frame_shape=(32, 32)) as w:
            w.write_frame(np.zeros((16, 32, 3), dtype=np.uint8))
    with pytest.raises(ValueError, match="more than the 1 frames"):
        with iw.InstanceWriter(path, ds, codec, n_frames=1, frame_shape=(32, 32)) as w:
            w.write_frame(_tiles(1)[0])
            w.write_frame(_tiles(1)[0])
    assert list(tmp_path.iterdir()) == []


def test_per_frame_items_are_streamed_and_must_match_the_frames(tmp_path: Path) -> None:
    sparse = dataclasses.replace(SPEC, dimension_organization="TILED_SPARSE")
    layout = FrameLayout((32, 32), 3, 2, range(6))
    items = per_frame_groups(sparse, volume_placement(sparse, 0), layout)
    assert items is not None and len(items) == 6
    assert items[-1].PlanePositionSlideSequence[0].ColumnPositionInTotalImagePixelMatrix == 65
    assert [i.FrameContentSequence[0].DimensionIndexValues for i in items[:2]] == [[1, 1], [2, 1]]
    assert per_frame_groups(SPEC, volume_placement(SPEC, 0), layout) is None
    ds, codec = _dataset("jpeg_baseline")
    path = tmp_path / "sparse.dcm"
    with iw.InstanceWriter(path, ds, codec, n_frames=6, frame_shape=(32, 32), per_frame=items) as w:
        for tile in _tiles(6):
            w.write_frame(tile)
    read = pydicom.dcmread(path, stop_before_pixels=True)
    rows = [
        item.PlanePositionSlideSequence[0].RowPositionInTotalImagePixelMatrix
        for item in read.PerFrameFunctionalGroupsSequence
    ]
    assert rows == [1, 1, 1, 33, 33, 33]
    with pytest.raises(ValueError, match="6 per-frame items for 5 frames"):
        with iw.InstanceWriter(
            tmp_path / "x.dcm", ds, codec, n_frames=5, frame_shape=(32, 32), per_frame=items
        ):
            pass
    assert not (tmp_path / "x.dcm").exists() and not (tmp_path / "x.dcm.partial").exists()
