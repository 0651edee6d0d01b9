"""The viewer's files: fetched with npm at install time (pinned digest), served from a
git-ignored folder, and a clear message on the viewer page when they are missing."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from unitumour_services.web import create_app
from unitumour_services.web.viewer_assets import (
    CLIENT,
    VIEWER,
    ViewerAssets,
    ViewerAssetsError,
    _fetch_one,
)

from unitumour_dicom.runtime import Runtime

from .conftest import SeededCase, login

pytestmark = [pytest.mark.integration]


def test_installed_viewer_is_served_with_its_worker_and_codecs(
    client: TestClient, viewer_dir: Path
) -> None:
    assert ViewerAssets(viewer_dir).available
    r = client.get("/viewer-lib/dmv/dicomMicroscopyViewer.bundle.min.js")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/javascript")
    wasm = client.get("/viewer-lib/dmv/dynamic-import/libjpegturbowasm_decode.wasm")
    assert wasm.status_code == 200 and wasm.headers["content-type"] == "application/wasm"
    assert "'unsafe-eval'" in wasm.headers["content-security-policy"]
    assert client.get("/viewer-lib/dwc/dicomweb-client.js").status_code == 200
    assert client.get("/viewer-lib/dmv/../../../etc/passwd").status_code == 404


def test_viewer_page_says_when_the_viewer_is_missing(
    web_runtime: Runtime, case: SeededCase, accounts: dict[str, str], tmp_path: Path
) -> None:
    s = web_runtime.settings
    settings = s.model_copy(
        update={"web": s.web.model_copy(update={"viewer_dir": tmp_path / "nothing-here"})}
    )
    with TestClient(create_app(settings, runtime=web_runtime)) as c:
        login(c, "vic")
        html = c.get(f"/cases/{case.slide_id}/viewer").text
    assert "The viewer is not installed" in html
    assert "unitumour web fetch-viewer" in html
    assert "dicomMicroscopyViewer.bundle.min.js" in html  # what is missing, named
    assert '<script src="/viewer-lib' not in html


def test_a_tarball_with_another_digest_is_refused(tmp_path: Path) -> None:
    forged = dataclasses.replace(CLIENT, integrity="sha512-" + "A" * 86 + "==")
    with pytest.raises(ViewerAssetsError, match="differs from the pinned"):
        _fetch_one(forged, tmp_path, tmp_path / "dest")
    assert not (tmp_path / "dest" / CLIENT.folder).exists()
    assert VIEWER.version == "0.48.24"
