"""The schema wait that systemd's worker unit and every Kubernetes init container run:
``until unitumour db current | grep -qF '(head)'; do sleep ...; done`` must hold a process back
on a schema that is behind, and let it go once ``unitumour db upgrade`` has run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unittest

PROBE = "unitumour db current | grep -qF '(head)'"


def _probe(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> int:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    wrapper = bin_dir / "unitumour"  # the console script, as the images and units call it
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m unitumour_services.cli "$@"\n')
    wrapper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    monkeypatch.setenv("UNITUMOUR_DATA_DIR", str(tmp_path / "data"))
    return subprocess.run(["/bin/sh", "-c", PROBE], timeout=120, check=False).returncode


def test_the_wait_holds_until_the_schema_is_current(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert _probe(tmp_path, monkeypatch) != 0  # no schema yet: keep waiting
    subprocess.run(
        [sys.executable, "-m", "unitumour_services.cli", "db", "upgrade"],
        check=True,
        capture_output=True,
        timeout=120,
    )
    assert _probe(tmp_path, monkeypatch) == 0  # current: go
    subprocess.run(
        [sys.executable, "-m", "unitumour_services.cli", "db", "downgrade", "base"],
        check=True,
        capture_output=True,
        timeout=120,
    )
    assert _probe(tmp_path, monkeypatch) != 0  # behind again: wait


def test_the_deployments_use_this_probe() -> None:
    from .helpers import DEPLOY

    for path in (
        DEPLOY / "kubernetes" / "listener.yaml",
        DEPLOY / "kubernetes" / "worker.yaml",
        DEPLOY / "kubernetes" / "worker-delivery.yaml",
        DEPLOY / "kubernetes" / "web.yaml",
    ):
        assert f"until {PROBE}" in path.read_text(), path
    unit = (DEPLOY / "systemd" / "unitumour-worker.service").read_text()
    assert '/opt/unitumour/venv/bin/unitumour db current | grep -qF "(head)"' in unit
