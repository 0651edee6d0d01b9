"""The analytic scene: deterministic, tumour inside tissue, artefacts never tissue, and the
shortcuts that skip whole tiles give the same answer as evaluating every pixel."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from unitumour_dicom.synthetic import PhantomSpec, Scene, rasterise
from unitumour_dicom.synthetic.scene import Blob

pytestmark = pytest.mark.unittest

SPEC = PhantomSpec(
    width=2048, height=1536, mpp=0.5, seed=11, n_tumours=4, pen_mark=True, glass_edge=True
)


def test_same_seed_same_scene_other_seed_other_scene() -> None:
    assert Scene.from_spec(SPEC) == Scene.from_spec(SPEC)
    other = Scene.from_spec(dataclasses.replace(SPEC, seed=12))
    assert other.tissue != Scene.from_spec(SPEC).tissue


def test_round_trip_through_a_dict() -> None:
    scene = Scene.from_spec(SPEC)
    assert Scene.from_dict(scene.to_dict()) == scene


def test_tissue_stays_inside_the_image_and_tumour_inside_tissue() -> None:
    scene = Scene.from_spec(SPEC)
    tissue = rasterise(scene, 2.0, "tissue").array
    tumour = rasterise(scene, 2.0, "tumour").array
    assert tissue.shape == (384, 512)
    assert tumour.any()
    assert not (tumour & ~tissue).any()
    assert 0.02 < tumour.sum() / tissue.sum() < 0.8
    # A margin of glass all round: no tissue on the border pixels.
    assert not tissue[0].any() and not tissue[-1].any()
    assert not tissue[:, 0].any() and not tissue[:, -1].any()


def test_pen_and_glass_edge_are_not_tissue() -> None:
    scene = Scene.from_spec(SPEC)
    assert scene.pen is not None and scene.glass_edge is not None
    x = np.array([p[0] for p in scene.pen.points_um])
    y = np.array([p[1] for p in scene.pen.points_um])
    on_pen = scene.pen.distance(x, y)
    assert np.allclose(on_pen, 0, atol=1e-3)
    # Pen points that are off tissue read as non-tissue, and the glass edge column too.
    assert not scene.tissue_mask(np.array([scene.glass_edge.x_um]), np.array([100.0])).any()


def test_no_tumour_layout_has_no_tumour() -> None:
    scene = Scene.from_spec(PhantomSpec(width=1024, height=768, layout="none", n_tumours=5))
    assert scene.tumours == ()
    assert not rasterise(scene, 4.0, "tumour").array.any()
    assert rasterise(scene, 4.0, "tissue").array.any()


@pytest.mark.parametrize("margin", [0.0, 3.0])
def test_tile_shortcuts_agree_with_per_pixel_evaluation(margin: float) -> None:
    scene = Scene.from_spec(SPEC)
    x = (np.arange(0, 2048, 4) + 0.5) * 0.5
    y = (np.arange(0, 1536, 4) + 0.5) * 0.5
    exact = np.full((y.size, x.size), -1e9, dtype=np.float32)
    for blob in scene.tissue:
        exact = np.maximum(exact, blob.signed_distance(x[None, :], y[:, None]))
    for top in range(0, y.size, 16):
        for left in range(0, x.size, 16):
            ys, xs = y[top : top + 16], x[left : left + 16]
            got = scene.tissue_distance(xs[None, :], ys[:, None], margin)
            want = exact[top : top + 16, left : left + 16]
            assert np.array_equal(got > 0, want > 0)
            near = np.abs(want) <= margin
            assert np.allclose(got[near], want[near])
            assert (np.abs(got[~near]) > margin).all()


def test_blob_bounds_hold() -> None:
    blob = Blob(100.0, 100.0, 50.0, ((2, 0.1, 0.3), (3, 0.05, 1.0)))
    rng = np.random.default_rng(0)
    for _ in range(50):
        x0, y0 = rng.uniform(0, 200, 2)
        x1, y1 = x0 + rng.uniform(1, 80), y0 + rng.uniform(1, 80)
        xs, ys = np.linspace(x0, x1, 40), np.linspace(y0, y1, 40)
        d = blob.signed_distance(xs[None, :], ys[:, None])
        lower, upper = blob.distance_bounds(x0, y0, x1, y1)
        assert lower - 1e-3 <= d.min() and d.max() <= upper + 1e-3


def test_rasterise_geometry_matches_the_slide_mask_convention() -> None:
    scene = Scene(
        width_um=100.0,
        height_um=60.0,
        tissue=(Blob(50.0, 30.0, 20.0, ()),),
        tumours=(Blob(50.0, 30.0, 10.0, ()),),
    )
    mask = rasterise(scene, 10.0, "tissue")
    assert mask.mpp == 10.0 and mask.shape == (6, 10)
    # Pixel (r, c) is judged at its centre ((c + 0.5) * 10, (r + 0.5) * 10) micrometres.
    assert mask.array[2, 4] and mask.array[3, 5]
    assert not mask.array[0, 0] and not mask.array[2, 1]
    fine = rasterise(scene, 0.5, "tumour")
    assert fine.area_mm2() == pytest.approx(np.pi * 10**2 * 1e-6, rel=0.02)
    with pytest.raises(ValueError, match="mpp must be a positive number"):
        rasterise(scene, 0.0, "tissue")
