"""A pathologist's path through the app in a real browser (Debian's headless Chromium driven
by Playwright): log in, open the case, find the overlay picture, open the viewer
(dicom-microscopy-viewer over our DICOMweb), and check that the SEG is drawn where the
phantom's tumour is: with the segment shown, pixels inside the known tumour change colour
and pixels outside it do not. Screenshots are kept in test-artifacts/web/."""

from __future__ import annotations

import io
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage
from sqlalchemy import select

from unitumour_dicom.db import AuditEvent, AuditEventName
from unitumour_dicom.runtime import Runtime
from unitumour_dicom.synthetic import PhantomSlide

from .conftest import ARTIFACTS, PASSWORD, LiveServer, SeededCase

pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.slow]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
MARGIN_PX = 12  # base-level pixels kept away from the tumour's edge on both sides
N_POINTS = 60


@pytest.fixture
def page(tmp_path: Path, viewer_dir: Path) -> Iterator[object]:
    if not Path(CHROMIUM).exists():
        pytest.fail("Debian's chromium is required (scripts/system-deps.sh installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        # a fresh profile per test (Playwright takes it as user_data_dir, not as a flag)
        context = p.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"),
            executable_path=CHROMIUM,
            args=CHROMIUM_FLAGS,
            viewport={"width": 1280, "height": 960},
        )
        pg = context.new_page()
        errors: list[str] = []
        pg.on("pageerror", lambda e: errors.append(str(e)))
        pg.errors = errors  # type: ignore[attr-defined]
        try:
            yield pg
        finally:
            context.close()


def _sample_points(phantom: PhantomSlide) -> tuple[np.ndarray, np.ndarray]:
    """(row, col) base-level points well inside the tumour, and in tissue well outside it."""
    tumour = phantom.tumour_mask(phantom.mpp).array.astype(bool)
    tissue = phantom.tissue_mask(phantom.mpp).array.astype(bool)
    inside = ndimage.binary_erosion(tumour, iterations=MARGIN_PX)
    outside = tissue & ~ndimage.binary_dilation(tumour, iterations=MARGIN_PX)
    outside = ndimage.binary_erosion(outside, iterations=MARGIN_PX // 2)
    rng = np.random.default_rng(0)
    picks = []
    for region in (inside, outside):
        rows, cols = np.nonzero(region)
        assert rows.size > N_POINTS, "phantom too small for the test"
        chosen = rng.choice(rows.size, N_POINTS, replace=False)
        picks.append(np.stack([rows[chosen], cols[chosen]], axis=1))
    return picks[0], picks[1]


def _wait(page: object, expression: str, timeout_s: float = 60) -> object:
    """Poll a JavaScript expression (Playwright's wait_for_function evaluates strings, which
    our Content Security Policy forbids on every page but the viewer's)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = page.evaluate(expression)  # type: ignore[attr-defined]
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {expression}")


RENDER_COMPLETE = """() => new Promise((resolve) => {
  const map = window.unitumourViewer.viewer.getMap();
  map.once('rendercomplete', () => resolve(true));
  map.render();
})"""


def _settle(page: object) -> None:
    page.wait_for_load_state("networkidle")  # type: ignore[attr-defined]
    page.evaluate(RENDER_COMPLETE)  # type: ignore[attr-defined]
    time.sleep(0.5)
    page.evaluate(RENDER_COMPLETE)  # type: ignore[attr-defined]


def _screen(page: object, name: str) -> np.ndarray:
    png = page.screenshot(path=str(ARTIFACTS / name))  # type: ignore[attr-defined]
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(np.int32)


def test_pathologist_sees_the_sent_seg_over_the_slide(
    page: object,
    live_server: LiveServer,
    case: SeededCase,
    phantom: PhantomSlide,
    web_runtime: Runtime,
) -> None:
    shutil.rmtree(ARTIFACTS, ignore_errors=True)
    ARTIFACTS.mkdir(parents=True)
    pg = page
    pg.goto(f"{live_server.url}/cases")  # type: ignore[attr-defined]
    assert "/login" in pg.url  # type: ignore[attr-defined]
    pg.fill("input[name=username]", "vic")  # type: ignore[attr-defined]
    pg.fill("input[name=password]", PASSWORD)  # type: ignore[attr-defined]
    pg.click("button[type=submit]")  # type: ignore[attr-defined]
    pg.wait_for_url("**/cases")  # type: ignore[attr-defined]
    pg.click(f'a[href="/cases/{case.slide_id}"]')  # type: ignore[attr-defined]
    pg.wait_for_url(f"**/cases/{case.slide_id}")  # type: ignore[attr-defined]

    # the overlay picture is on the case page and has loaded
    natural = _wait(
        pg,
        "(() => { const i = document.getElementById('overlay'); return i && i.complete"
        " && i.naturalWidth > 0 ? [i.naturalWidth, i.naturalHeight] : null; })()",
    )
    assert natural == [1024, 768]
    pg.screenshot(path=str(ARTIFACTS / "case.png"), full_page=True)  # type: ignore[attr-defined]

    pg.click("#open-viewer")  # type: ignore[attr-defined]
    pg.wait_for_url(f"**/cases/{case.slide_id}/viewer")  # type: ignore[attr-defined]
    state = _wait(
        pg,
        "window.unitumourViewer && (window.unitumourViewer.ready || window.unitumourViewer.error)"
        " ? {ready: window.unitumourViewer.ready, error: window.unitumourViewer.error,"
        " segments: window.unitumourViewer.segments.length} : null",
    )
    assert state == {"ready": True, "error": None, "segments": 1}
    assert pg.errors == []  # type: ignore[attr-defined]

    inside, outside = _sample_points(phantom)
    points = np.concatenate([inside, outside]).tolist()
    # base-level pixel centres in the viewer's map coordinates (its extent is x in [0, columns],
    # y in [-(rows + 1), -1]): row r spans y from -(r + 2) to -(r + 1)
    screen_xy = np.array(
        pg.evaluate(  # type: ignore[attr-defined]
            """(points) => {
              const map = window.unitumourViewer.viewer.getMap();
              const box = map.getTargetElement().getBoundingClientRect();
              return points.map(([r, c]) => {
                const p = map.getPixelFromCoordinate([c + 0.5, -(r + 1.5)]);
                return [p[0] + box.left, p[1] + box.top];
              });
            }""",
            points,
        )
    )
    pg.uncheck("#show-segment")  # type: ignore[attr-defined]
    _settle(pg)
    hidden = _screen(pg, "viewer-segment-hidden.png")
    pg.check("#show-segment")  # type: ignore[attr-defined]
    _settle(pg)
    shown = _screen(pg, "viewer-segment-shown.png")

    xy = np.rint(screen_xy).astype(int)
    height, width = shown.shape[:2]
    on_screen = (xy[:, 0] >= 0) & (xy[:, 0] < width) & (xy[:, 1] >= 0) & (xy[:, 1] < height)
    assert on_screen.all(), "the whole slide should fit the initial view"
    change = np.abs(shown - hidden)[xy[:, 1], xy[:, 0]].sum(axis=1)
    inside_change, outside_change = change[:N_POINTS], change[N_POINTS:]
    # the slide itself is drawn (not blank white) where we sample
    assert (hidden[xy[:, 1], xy[:, 0]].sum(axis=1) < 3 * 245).mean() > 0.9
    assert (inside_change > 40).mean() >= 0.95, inside_change
    assert (outside_change < 12).mean() >= 0.95, outside_change
    diff = (np.abs(shown - hidden).sum(axis=2) > 40).astype(np.uint8) * 255
    Image.fromarray(diff).save(ARTIFACTS / "viewer-segment-difference.png")

    # everything the pathologist saw is on record, the viewer's DICOMweb requests included
    # (its ICC profile through the root-relative BulkDataURI of the metadata)
    with web_runtime.session() as db:
        rows = list(
            db.scalars(select(AuditEvent).where(AuditEvent.event == AuditEventName.ACCESS_VIEWED))
        )
        views = {r.details["view"] for r in rows if r.actor == "vic"}
    assert views >= {
        "cases.list", "case.page", "case.picture", "case.viewer", "dicomweb.metadata",
        "dicomweb.frames", "dicomweb.bulkdata",
    }, views  # fmt: skip
    assert all(r.details["source"] == "127.0.0.1" for r in rows)
