"""The case picture: the slide thumbnail with the stored SEG drawn over it, where the
phantom's tumour is, and only there."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from scipy import ndimage
from unitumour_services.web.pictures import (
    FILL_RGB,
    choose_seg_level,
    render_overlay_png,
    resample_nearest,
    seg_levels,
)

from unitumour_dicom.synthetic import PhantomSlide

from .conftest import SeededCase, login

pytestmark = [pytest.mark.integration]


def _png(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB")).astype(np.int32)


def test_overlay_tints_the_tumour_and_nothing_else(
    phantom: PhantomSlide, seg_files: list[Path]
) -> None:
    bare = _png(
        render_overlay_png(slide_paths=phantom.instance_paths, seg_paths=[], max_pixels=512)
    )
    drawn = _png(
        render_overlay_png(slide_paths=phantom.instance_paths, seg_paths=seg_files, max_pixels=512)
    )
    assert bare.shape == drawn.shape == (384, 512, 3)
    mpp = phantom.mpp * phantom.size[0] / 512
    truth = phantom.tumour_mask(mpp).array[:384, :512].astype(bool)
    inside = ndimage.binary_erosion(truth, iterations=4)
    outside = ~ndimage.binary_dilation(truth, iterations=4)
    change = np.abs(drawn - bare).sum(axis=2)
    assert (change[inside] > 30).mean() > 0.99
    assert (change[outside] == 0).mean() > 0.99
    # towards the fill colour: the cyan channels rise relative to red
    fill = np.asarray(FILL_RGB)
    before = np.abs(bare[inside] - fill).sum(axis=1)
    after = np.abs(drawn[inside] - fill).sum(axis=1)
    assert (after < before).mean() > 0.99


def test_seg_level_nearest_the_picture_is_read(seg_files: list[Path]) -> None:
    levels = seg_levels(seg_files)
    assert sorted(lv.columns for lv in levels) == [256, 512, 1024]
    assert choose_seg_level(levels, 300).columns == 512
    assert choose_seg_level(levels, 4000).columns == 1024
    mask = np.arange(12).reshape(3, 4)
    assert resample_nearest(mask, 6, 8)[::2, ::2].tolist() == mask.tolist()


def test_picture_endpoint_caches_with_etag(client: TestClient, case: SeededCase) -> None:
    login(client, "vic")
    r = client.get(f"/api/cases/{case.slide_id}/overlay.png")
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(r.content)).size == (1024, 768)
    again = client.get(
        f"/cases/{case.slide_id}/overlay.png", headers={"If-None-Match": r.headers["etag"]}
    )
    assert again.status_code == 304
    assert client.get("/api/cases/424242/overlay.png").status_code == 404


def test_unreadable_slide_is_a_clear_error_not_a_crash(
    client: TestClient, case: SeededCase, web_runtime
) -> None:  # type: ignore[no-untyped-def]
    from unitumour_dicom.db import Instance

    with web_runtime.session() as db:
        for inst in db.query(Instance).filter_by(slide_id=case.slide_id):
            web_runtime.store.abspath(inst.path).write_bytes(b"not DICOM")
    login(client, "vic")
    r = client.get(f"/api/cases/{case.slide_id}/overlay.png")
    assert r.status_code == 422
    assert "could not read the slide" in r.json()["detail"]
