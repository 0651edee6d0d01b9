"""Reading regions of a level onto a target grid from its frames, with an in-memory source."""

from __future__ import annotations

import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from unitumour_dicom.errors import SlideError
from unitumour_dicom.slide.levels import LevelInfo
from unitumour_dicom.slide.reader import LevelReader
from unitumour_dicom.slide.resample import resample_area, to_uint8

pytestmark = pytest.mark.unittest


class ArraySource:
    """Frames cut from an array; counts decodes; ``missing`` frames are absent (sparse)."""

    def __init__(self, image: np.ndarray, mpp: float, tile: int, missing=(), corrupt=()):
        h, w = image.shape[:2]
        self.level = LevelInfo(0, mpp, mpp, w, h, tile, tile, "test")
        self.image, self.tile = image, tile
        self.missing, self.corrupt = set(missing), set(corrupt)
        self.decodes: Counter[tuple[int, int]] = Counter()
        self._lock = threading.Lock()

    def encoded_frame(self, column: int, row: int) -> bytes | None:
        if (column, row) in self.missing:
            return None
        return f"{column},{row}".encode()

    def decode(self, data: bytes) -> np.ndarray:
        column, row = map(int, data.decode().split(","))
        if (column, row) in self.corrupt:
            raise ValueError("bad Huffman code")
        with self._lock:
            self.decodes[(column, row)] += 1
        t = self.tile
        frame = np.full((t, t, 3), 17, np.uint8)  # padding a reader must never show
        part = self.image[row * t : (row + 1) * t, column * t : (column + 1) * t]
        frame[: part.shape[0], : part.shape[1]] = part
        return frame


def position_image(rows: int, cols: int) -> np.ndarray:
    """Each pixel tells where it is: red = column, green = row (mod 251), blue = a mix."""
    y, x = np.mgrid[:rows, :cols]
    return np.stack([x % 251, y % 251, (x * 7 + y * 3) % 251], axis=-1).astype(np.uint8)


def test_same_pixel_size_gives_the_exact_pixels_and_background_outside():
    image = position_image(100, 130)
    reader = LevelReader(ArraySource(image, 0.5, 32), 0.5)
    np.testing.assert_array_equal(reader.read(10, 20, 50, 70), image[10:60, 20:90])
    edge = reader.read(-5, 120, 20, 20)  # straddles the top and right edges
    np.testing.assert_array_equal(edge[5:, :10], image[0:15, 120:130])
    assert (edge[:5] == 255).all() and (edge[:, 10:] == 255).all()


@pytest.mark.parametrize(("target", "top", "left"), [(0.92, 7, 11), (1.0, 3, 5), (1.7, 0, 0)])
def test_regions_equal_the_whole_level_resampled_at_once(target, top, left):
    """A region read at any offset is the same as cutting it from the whole image resampled
    in one piece: tiles line up with each other wherever they start."""
    image = position_image(160, 200)
    reader = LevelReader(ArraySource(image, 0.5, 48), target)
    scale = target / 0.5
    rows, cols = int(160 / scale), int(200 / scale)
    whole = to_uint8(resample_area(image, (0.0, 0.0), (scale, scale), (rows, cols)))
    got = reader.read(top, left, 30, 40)
    np.testing.assert_array_equal(got, whole[top : top + 30, left : left + 40])


def test_sparse_frames_read_as_background_and_padding_never_shows():
    image = position_image(64, 64)
    reader = LevelReader(ArraySource(image[:50, :50], 1.0, 32, missing={(1, 0)}), 1.0)
    got = reader.read(0, 0, 64, 64)
    assert (got[:32, 32:50] == 255).all()  # the missing frame
    assert (got[50:] == 255).all() and (got[:, 50:] == 255).all()  # beyond the level
    np.testing.assert_array_equal(got[:50, :32], image[:50, :32])


def test_overlapping_reads_from_many_threads_decode_each_frame_once():
    image = position_image(256, 256)
    source = ArraySource(image, 0.5, 32)
    reader = LevelReader(source, 0.5)
    boxes = [(r, c) for r in range(0, 200, 20) for c in range(0, 200, 20)]
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda b: reader.read(b[0], b[1], 56, 56), boxes))
    for (r, c), got in zip(boxes, results, strict=True):
        np.testing.assert_array_equal(got, image[r : r + 56, c : c + 56])
    assert max(source.decodes.values()) == 1
    assert reader.cache_hit_ratio > 0.5
    assert {"read", "decode"} <= set(reader.times.as_dict())


def test_a_small_cache_still_reads_correctly():
    image = position_image(128, 128)
    source = ArraySource(image, 0.5, 32)
    reader = LevelReader(source, 0.5, cache_bytes=1)  # holds one frame
    np.testing.assert_array_equal(reader.read(0, 0, 128, 128), image)


def test_a_frame_that_cannot_be_decoded_is_a_slide_error_naming_it():
    reader = LevelReader(ArraySource(position_image(64, 64), 0.5, 32, corrupt={(1, 1)}), 0.5)
    with pytest.raises(
        SlideError, match=r"frame \(1, 1\) of level 0 \(test\) could not be decoded"
    ):
        reader.read(0, 0, 64, 64)
    # the failure is not cached: a second read fails again rather than returning stale data
    with pytest.raises(SlideError):
        reader.read(32, 32, 8, 8)


def test_a_frame_of_the_wrong_shape_is_refused():
    source = ArraySource(position_image(64, 64), 0.5, 32)
    source.decode = lambda data: np.zeros((16, 16, 3), np.uint8)  # type: ignore[method-assign]
    with pytest.raises(SlideError, match=r"decoded to uint8 \(16, 16, 3\)"):
        LevelReader(source, 0.5).read(0, 0, 8, 8)
