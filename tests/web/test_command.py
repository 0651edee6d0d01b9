"""'unitumour web': refuses a database that is not migrated, instead of serving errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner
from unitumour_services.cli import app

pytestmark = [pytest.mark.integration]


def test_web_refuses_an_unmigrated_database(tmp_path: Path) -> None:
    config = tmp_path / "unitumour.toml"
    config.write_text(f'data_dir = "{tmp_path / "data"}"\n')
    r = CliRunner().invoke(app, ["-c", str(config), "web", "--port", "0"])
    assert r.exit_code == 2
    assert "run 'unitumour db upgrade' first" in r.output
