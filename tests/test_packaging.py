"""The hand-written package list in pyproject.toml covers every package directory."""

import tomllib
from pathlib import Path

import pytest

pytestmark = pytest.mark.unittest

ROOT = Path(__file__).resolve().parents[1]
RENAMES = {
    "unitumour_dicom": "unitumour_dicom",
    "services": "unitumour_services",
    "migrations": "unitumour_migrations",
}


def test_every_package_directory_is_listed() -> None:
    listed = set(
        tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    )
    found = set()
    for top, name in RENAMES.items():
        for init in (ROOT / top).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / top).parts
            found.add(".".join((name, *rel)))
    assert found - listed == set(), "add these to [tool.setuptools] packages"
    assert listed - found == set(), "these listed packages do not exist"
