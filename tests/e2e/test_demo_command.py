"""`unitumour demo` itself, as a newcomer runs it (small slides so it fits a CPU-only CI
machine in a couple of minutes): every SEG comes back with a high Dice, the printed case URL
opens in the web app with the printed password, Ctrl-C (SIGTERM) stops everything; without
the EBHI-Seg data it says so and runs on the phantom; a SEG that does not come back in time
gives a non-zero exit and says where the slide got to; a folder it did not make is refused."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import REPO_ROOT, SHARED_DATA

pytestmark = [pytest.mark.integration, pytest.mark.slow]

EBHI = SHARED_DATA / "ebhi-seg"
PASSWORD = "demo-test-password"
#: See tests.e2e.flow.MIN_PHANTOM_DICE for the phantom (this smaller one, 1536 x 1024 with
#: seed 0, measures 0.85). The mosaic's Dice is lower: the demo model's EBHI-Seg test Dice is
#: 0.85 on carcinoma images, and on whole slides it calls more of some images tumour than on
#: the images alone (the 4-image mosaic here measures 0.67, the demo's 12-image one 0.79).
#: 0.5 still fails a SEG that is misplaced on the grid, empty, or made for another slide.
MIN_PHANTOM_DICE = 0.80
MIN_MOSAIC_DICE = 0.50


def demo_argv(data_dir: Path, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "unitumour_services.cli", "demo",
        "--data-dir", str(data_dir),
        "--phantom-width", "1536", "--phantom-height", "1024",
        "--mosaic-images", "4",
        "--quiet-seconds", "1",
        "--password", PASSWORD,
        *extra,
    ]  # fmt: skip


def dice_values(text: str) -> dict[str, float]:
    """slide name -> the Dice printed in its block."""
    found = {}
    for block in text.split("\n\n"):
        name = block.strip().split(":", 1)[0]
        match = re.search(r"^\s+Dice\s+([0-9.]+)\s", block, re.MULTILINE)
        if match:
            found[name] = float(match.group(1))
    return found


def test_demo_sends_both_slides_prints_dice_and_keeps_the_web_app_until_stopped(tmp_path: Path):
    if not (EBHI / "manifest.csv").is_file():
        pytest.skip(f"EBHI-Seg data not found at {EBHI}")
    log = tmp_path / "demo.out"
    with log.open("wb") as out:
        demo = subprocess.Popen(
            demo_argv(tmp_path / "demo", "--data", str(EBHI), "--keep-running", "--timeout", "240"),
            cwd=REPO_ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        try:
            deadline = time.monotonic() + 420
            while "The services keep running" not in log.read_text(errors="replace"):
                assert demo.poll() is None, log.read_text(errors="replace")
                assert time.monotonic() < deadline, log.read_text(errors="replace")
                time.sleep(0.5)
            text = log.read_text(errors="replace")
            # progress was shown while it ran, read from the database: polled, so a stage that
            # lasts less than a poll may be skipped, but what is shown is in pipeline order,
            # starts at the receive and ends with the SEG back at the PACS
            order = (
                "received",
                "settled",
                "job running",
                "SEG written",
                "delivered",
                "SEG received",
            )
            for name in ("phantom", "mosaic"):
                seen = [
                    next(i for i, stage in enumerate(order) if line.startswith(stage))
                    for line in re.findall(rf"{name}: (.+)", text)
                    if any(line.startswith(stage) for stage in order)
                ]
                assert seen == sorted(seen), (name, text)
                assert seen[0] == 0 and seen[-1] == len(order) - 1, (name, text)
                assert len(set(seen)) >= 3, (name, text)
            dice = dice_values(text)
            assert dice["phantom"] >= MIN_PHANTOM_DICE, text
            assert dice["mosaic"] >= MIN_MOSAIC_DICE, text
            assert "4 test images" in text and "0.45 µm/px" in text
            for heading in (
                "SEG series UID",
                "stage timings (job row)",
                "inference",
                "tumour area",
            ):
                assert text.count(heading) >= 2, heading
            urls = re.findall(r"case in the web app\s+(http://127\.0\.0\.1:\d+/cases/\d+)", text)
            assert len(urls) == 2, text
            assert f"log in as 'admin', password: {PASSWORD}" in text
            base = urls[0].rsplit("/cases/", 1)[0]
            with httpx.Client(base_url=base, timeout=30) as client:
                login = client.post("/api/login", json={"username": "admin", "password": PASSWORD})
                assert login.status_code == 200, login.text
                for url, patient in zip(
                    urls, ("DEMO-PHANTOM-0000", "EBHI-MOSAIC-0000"), strict=True
                ):
                    page = client.get(url)
                    assert page.status_code == 200 and patient in page.text
                    assert 'class="state state-delivered">delivered</span>' in page.text
            # what the PACS got is in the demo's folder
            assert len(list((tmp_path / "demo" / "pacs").iterdir())) >= 2
        finally:
            if demo.poll() is None:
                demo.send_signal(signal.SIGTERM)
            code = demo.wait(timeout=180)
    text = log.read_text(errors="replace")
    assert code == 0, text[-3000:]
    assert "stopping the services" in text
    with pytest.raises(httpx.ConnectError):
        httpx.get(base + "/healthz", timeout=5)


def test_demo_without_the_data_runs_the_phantom_and_fails_when_the_seg_is_late(tmp_path: Path):
    result = subprocess.run(
        demo_argv(tmp_path / "demo", "--data", str(tmp_path / "nowhere"), "--timeout", "1"),
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    out = result.stdout + result.stderr
    assert result.returncode == 1, out
    assert f"EBHI-Seg data not found (looked in {tmp_path / 'nowhere'}" in out
    assert "running with the phantom only" in out
    assert "mosaic" not in result.stdout
    assert "not every SEG came back within 1 s: phantom" in out
    assert re.search(r"outcome\s+(received|settled|job)", result.stdout), result.stdout
    assert "Dice                 not measured" in result.stdout


def test_demo_refuses_a_folder_it_did_not_make_and_config_files(tmp_path: Path):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "precious.txt").write_text("keep me")
    argv = demo_argv(folder, "--timeout", "5")
    result = subprocess.run(argv, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "already holds files that the demo did not make" in result.stderr
    assert (folder / "precious.txt").read_text() == "keep me"
    config = tmp_path / "other.toml"
    config.write_text("")
    argv = [*argv[:3], "-c", str(config), *argv[3:]]
    result = subprocess.run(argv, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "writes its own settings" in result.stderr
