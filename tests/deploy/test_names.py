"""Names that deployment files and docs share with the code: every UNITUMOUR_* variable is a
setting, and every example TOML file loads."""

from __future__ import annotations

from pathlib import Path

import pytest

from .helpers import DEPLOY, DOCS, load_example_settings, unknown_env_names

pytestmark = pytest.mark.unittest


def _text_files(folder: Path) -> list[Path]:
    return [p for p in sorted(folder.rglob("*")) if p.is_file()]


@pytest.mark.parametrize(
    "path",
    _text_files(DEPLOY) + _text_files(DOCS),
    ids=lambda p: str(p.relative_to(DEPLOY.parent)),
)
def test_every_variable_is_a_setting(path: Path) -> None:
    assert unknown_env_names(path.read_text(encoding="utf-8")) == set()


def test_the_scan_finds_a_misspelt_variable() -> None:
    assert unknown_env_names("UNITUMOUR_LISTENER__PORT=1 UNITUMOUR_LISTNER__PORT=2") == {
        "UNITUMOUR_LISTNER__PORT"
    }


@pytest.mark.parametrize("path", sorted(DEPLOY.rglob("*.toml")), ids=lambda p: p.parent.name)
def test_every_example_config_loads(
    path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = load_example_settings(path, {}, tmp_path, monkeypatch)
    assert settings.listener.ae_title
