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


#: Packages whose internals we subclass (pynetdicom's transport, DUL and association in ingest/
#: and deliver/; kombu's SQLAlchemy transport in jobs/): pinned to one minor series.
INTERNALS_PINNED = ("pynetdicom", "kombu")


def test_packages_we_subclass_are_pinned_to_the_installed_minor_series() -> None:
    from importlib.metadata import version

    from packaging.requirements import Requirement
    from packaging.version import Version

    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    requirements = {Requirement(d).name: Requirement(d) for d in deps}
    for name in INTERNALS_PINNED:
        spec = requirements[name].specifier
        installed = Version(version(name))
        assert installed in spec, f"{name} {installed} is outside {spec}"
        next_minor = Version(f"{installed.major}.{installed.minor + 1}")
        assert next_minor not in spec, f"{name}: {spec} lets in {next_minor} (a new minor)"
        assert Version(f"{installed.major}.{installed.minor}.999") in spec
