"""Frames of a level from a mask: equal to the SlideMask contract's own resampling, tile by
tile, with empty tiles reported as such; native bit packing across unaligned frames."""

from __future__ import annotations

import math

import numpy as np
import pytest
from pydicom.pixels.utils import pack_bits

from unitumour_dicom.seg import source_levels
from unitumour_dicom.seg.encoding import native_chunks, native_length
from unitumour_dicom.seg.sampling import LevelSampler, to_binary, to_fractional
from unitumour_dicom.slide.mask import SlideMask

from .conftest import blob_mask
from .wsi_headers import make_wsi_headers

pytestmark = pytest.mark.unittest


def assemble(frames, level) -> np.ndarray:  # type: ignore[no-untyped-def]
    tr, tc = level.tile_rows, level.tile_columns
    out = np.zeros((level.tiles_down * tr, level.tiles_across * tc), np.uint8)
    for i, frame in enumerate(frames):
        if frame is not None:
            r, c = divmod(i, level.tiles_across)
            out[r * tr : (r + 1) * tr, c * tc : (c + 1) * tc] = frame
    return out


@pytest.mark.parametrize("mask_mpp", [0.5, 1.0, 0.3, 2.0])
def test_frames_equal_slide_mask_region_at_every_level(mask_mpp: float) -> None:
    src = make_wsi_headers(777, 501, tile=(64, 96), levels=4, mpp=0.5)
    h, w = math.ceil(501 * 0.5 / mask_mpp), math.ceil(777 * 0.5 / mask_mpp)
    mask = blob_mask(h, w, mask_mpp, seed=2)
    for level in source_levels(src):
        frames = list(LevelSampler(mask, level, to_binary).frames())
        assert len(frames) == level.number_of_frames
        got = assemble(frames, level)
        expected = mask.region(0, 0, level.rows, level.columns, level.column_spacing_um)
        assert np.array_equal(got[: level.rows, : level.columns], expected.view(np.uint8))
        assert not got[level.rows :, :].any() and not got[:, level.columns :].any()  # padding
        for frame in frames:
            assert frame is None or frame.any()


def test_empty_mask_gives_only_empty_frames() -> None:
    level = source_levels(make_wsi_headers(1000, 700, levels=1))[0]
    frames = list(
        LevelSampler(SlideMask(np.zeros((700, 1000), bool), 0.5), level, to_binary).frames()
    )
    assert frames == [None] * level.number_of_frames


def test_shifted_level_reads_the_shifted_part_of_the_mask() -> None:
    src = make_wsi_headers(400, 300, tile=64, levels=2, mpp=0.5, origin_shift_um=(4.0, 2.0))
    mask = blob_mask(300, 400, 0.5, seed=5)
    level = source_levels(src)[1]  # 1 um/px, starting 4 um right and 2 um down of the base
    got = assemble(LevelSampler(mask, level, to_binary).frames(), level)[
        : level.rows, : level.columns
    ]
    rows = (np.arange(level.rows) + 0.5) * 1.0 + 2.0
    cols = (np.arange(level.columns) + 0.5) * 1.0 + 4.0
    ri = np.floor(rows / 0.5).astype(int)
    ci = np.floor(cols / 0.5).astype(int)
    expected = np.zeros_like(got)
    inside_r, inside_c = ri < 300, ci < 400
    expected[np.ix_(inside_r, inside_c)] = mask.array[np.ix_(ri[inside_r], ci[inside_c])]
    assert np.array_equal(got, expected)


def test_fractional_values_are_rounded_probabilities() -> None:
    p = np.array([[0.0, 0.002, 0.5, 1.0, 1.2, -0.1, np.nan]], dtype=np.float32)
    assert to_fractional(p).tolist() == [[0, 1, 128, 255, 255, 0, 0]]
    assert to_fractional(np.array([[True, False]])).tolist() == [[255, 0]]
    assert to_binary(np.array([[0.49, 0.5, 1.0]])).tolist() == [[0, 1, 1]]


def test_fractional_rescales_integer_probabilities() -> None:
    """Inference stores probabilities as uint8 with SlideMask.max_value; they must not be
    mistaken for a 0/255 mask."""
    p = np.array([[0, 1, 50, 100]], dtype=np.uint8)
    assert to_fractional(p, source_max=100).tolist() == [[0, 3, 128, 255]]
    q = np.array([[0, 1, 128, 255]], dtype=np.uint8)
    assert to_fractional(q, source_max=255).tolist() == [[0, 1, 128, 255]]


@pytest.mark.parametrize(("rows", "columns"), [(5, 5), (3, 7), (8, 8), (16, 3)])
def test_native_bits_pack_across_unaligned_frames(rows: int, columns: int) -> None:
    rng = np.random.default_rng(rows * columns)
    frames = [rng.integers(0, 2, (rows, columns), dtype=np.uint8) for _ in range(7)]
    frames[2] = None  # an empty frame in the middle
    data = b"".join(native_chunks(frames, bits_allocated=1, rows=rows, columns=columns))
    flat = np.concatenate(
        [np.zeros(rows * columns, np.uint8) if f is None else f.ravel() for f in frames]
    )
    expected = pack_bits(flat, pad=True)
    assert data == expected
    assert len(data) == native_length(1, rows, columns, 7)
