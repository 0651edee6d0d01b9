"""A slide through reading and inference: the mask lands where the tumour is.

Two oracles keep geometry errors from hiding behind a network's mistakes: a colour oracle on
slides painted from a phantom's ground truth (it sees the tumour in the pixels, so the whole
path from DICOM frames to the stitched mask is judged), and a phantom oracle on the phantom
generator's own DICOM series, which returns the known mask for each tile in the order the
tiles are read."""

from __future__ import annotations

from collections import deque
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from tests.infer.oracle import (
    GLASS_RGB,
    TISSUE_RGB,
    TUMOUR_RGB,
    StandInModel,
    card,
    oracle_model,
)
from tests.slide.wsi_files import write_wsi
from unitumour_dicom.errors import SlideError
from unitumour_dicom.infer import InferenceResult, TileGrid, segment_slide
from unitumour_dicom.slide import SlideMask, open_slide
from unitumour_dicom.synthetic import PhantomSpec, write_phantom_slide

pytestmark = pytest.mark.integration

MODEL_MPP = 0.92


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2 * np.count_nonzero(a & b) / max(np.count_nonzero(a) + np.count_nonzero(b), 1)


@pytest.fixture(scope="module")
def phantom(tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("phantom")
    spec = PhantomSpec(
        width=1024, height=768, tile_size=256, levels=3, mpp=0.5, seed=4, n_tumours=2,
        pen_mark=True, label=False, overview=False,
    )  # fmt: skip
    return write_phantom_slide(out, spec)


def painted_slide(phantom, out_dir: Path, transfer: str) -> list[Path]:
    """The phantom's ground truth painted in flat colours at its base pixel size."""
    tissue = phantom.tissue_mask(phantom.mpp).array
    tumour = phantom.tumour_mask(phantom.mpp).array
    image = np.empty((*tissue.shape, 3), np.uint8)
    image[:] = GLASS_RGB
    image[tissue] = TISSUE_RGB
    image[tumour] = TUMOUR_RGB
    return write_wsi(
        out_dir, image, mpp=phantom.mpp, factors=(1, 2, 4), tile=128, transfer=transfer
    )


@pytest.mark.parametrize("transfer", ["jpeg", "native"])
def test_painted_phantom_mask_aligns_with_ground_truth(phantom, tmp_path: Path, transfer: str):
    paths = painted_slide(phantom, tmp_path, transfer)
    model = oracle_model(mpp=MODEL_MPP, tile_size=64, overlap=8)
    calls: list[tuple[int, int]] = []
    with open_slide(paths) as slide:
        result = segment_slide(
            slide, model, batch_size=4, read_threads=2, progress=lambda d, t: calls.append((d, t))
        )
        assert result.tumour.shape == slide.grid_shape(MODEL_MPP)
    truth = phantom.tumour_mask(MODEL_MPP).array
    truth_tissue = phantom.tissue_mask(MODEL_MPP).array
    assert result.tumour.mpp == result.probability.mpp == result.tissue.mpp == MODEL_MPP
    assert result.tumour.array.dtype == bool and result.probability.array.dtype == np.uint8
    assert result.probability.max_value == 255 and result.probability.is_probability
    # the masks are scratch files on disk; these are small enough to read whole
    tumour, tissue = np.asarray(result.tumour.array), np.asarray(result.tissue.array)
    assert dice(tumour, truth) > 0.98
    assert dice(tissue, truth_tissue) > 0.97
    assert not (tumour & ~tissue).any()
    pixel_mm2 = (MODEL_MPP / 1000) ** 2
    assert result.tumour_area_mm2 == pytest.approx(truth.sum() * pixel_mm2, rel=0.02)
    assert result.tissue_area_mm2 == pytest.approx(truth_tissue.sum() * pixel_mm2, rel=0.03)
    assert 0 < result.tiles < result.tiles_in_grid, "glass-only tiles are skipped"
    assert calls[-1] == (result.tiles, result.tiles) and len(calls) == -(-result.tiles // 4)
    assert model.module.calls == len(calls)
    assert result.level is not None and result.level.mpp == 0.5
    for stage in ("open", "tissue", "read", "decode", "resample", "wait", "forward", "stitch"):
        assert result.timings[stage] >= 0
    assert result.timings["total"] >= result.timings["forward"]
    assert result.device == "cpu, float32"


class PhantomOracle(nn.Module):
    """Returns the phantom's known tumour for each tile, taking tiles in the order given;
    records each tile's pixels so the test can check they came from that place."""

    def __init__(self, truth: SlideMask, windows: list[tuple[int, int]], size: int):
        super().__init__()
        self.truth, self.windows, self.size = truth, deque(windows), size
        self.seen: list[tuple[tuple[int, int], np.ndarray]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.empty(x.shape[0], 1, x.shape[2], x.shape[3])
        for i in range(x.shape[0]):
            top, left = self.windows.popleft()
            known = self.truth.region(top, left, self.size, self.size, self.truth.mpp)
            out[i, 0] = torch.from_numpy(np.where(known, 20.0, -20.0))
            self.seen.append(((top, left), x[i].mean(0).numpy()))
        return out


def test_phantom_series_mask_aligns_with_ground_truth(phantom):
    c = card(mpp=MODEL_MPP, tile_size=64, overlap=8)
    truth = phantom.tumour_mask(MODEL_MPP)
    with open_slide(phantom.instance_paths) as slide:
        grid = TileGrid(slide.grid_shape(MODEL_MPP), c.tile_size, c.overlap)
        tiles = grid.tissue_tiles(slide.tissue_mask(), MODEL_MPP)
        oracle = PhantomOracle(truth, [grid.window(t) for t in tiles], grid.input_size)
        result = segment_slide(slide, StandInModel(oracle, c, torch.device("cpu")), batch_size=8)
    assert not oracle.windows, "every tile was run once"
    assert result.tiles == len(tiles)
    assert dice(np.asarray(result.tumour.array), truth.array) > 0.99
    assert dice(np.asarray(result.tissue.array), phantom.tissue_mask(MODEL_MPP).array) > 0.95
    # the pixels of each tile came from where the oracle assumed: tumour is drawn darker
    darker = []
    for (top, left), brightness in oracle.seen:
        known = truth.region(top, left, *brightness.shape, MODEL_MPP)
        if known.any() and (~known).any():
            darker.append(brightness[known].mean() < brightness[~known].mean())
    assert darker and np.mean(darker) > 0.9


def test_a_slide_without_tissue_runs_no_tile(tmp_path: Path):
    paths = write_wsi(tmp_path, np.full((300, 400, 3), GLASS_RGB, np.uint8), factors=(1, 2))
    model = oracle_model(mpp=MODEL_MPP, tile_size=64, overlap=8)
    with open_slide(paths) as slide:
        result: InferenceResult = segment_slide(slide, model)
    assert result.tiles == 0 and model.module.calls == 0
    assert result.tumour_area_mm2 == 0 and result.tissue_area_mm2 == 0
    assert not np.asarray(result.tumour.array).any()
    assert not np.asarray(result.probability.array).any()


def test_a_scan_coarser_than_the_model_is_refused_unless_allowed(tmp_path: Path):
    image = np.full((120, 160, 3), GLASS_RGB, np.uint8)
    image[20:100, 20:140] = TISSUE_RGB
    image[40:80, 50:90] = TUMOUR_RGB
    paths = write_wsi(tmp_path, image, mpp=2.0, factors=(1,))
    model = oracle_model(mpp=MODEL_MPP, tile_size=64, overlap=8)
    with open_slide(paths) as slide:
        with pytest.raises(SlideError, match=r"coarser than the 0\.92 µm/px"):
            segment_slide(slide, model)
        result = segment_slide(slide, model, max_coarser_ratio=3.0, tissue_mpp=4.0)
    assert result.tumour_area_mm2 == pytest.approx(40 * 40 * 4e-6, rel=0.05)
