"""`unitumour --help` (and each command's --help) imports none of the heavy stacks: they are
imported inside the commands that use them, so the help answers at once.

Asserts on what is imported, not on seconds (the machine's load would make a timing flaky).
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.unittest

HEAVY = (
    "torch",
    "highdicom",
    "wsidicom",
    "scipy",
    "cv2",
    "celery",
    "fastapi",
    "uvicorn",
    "sqlalchemy",
    "pydicom",
    "pynetdicom",
)

#: Walks the whole command tree (so a new command is checked too) and asks each for --help.
_PROBE = """
import json, sys
import typer
from unitumour_services.cli import app, main

def paths(command, prefix):
    yield prefix
    for name, sub in getattr(command, "commands", {}).items():
        yield from paths(sub, [*prefix, name])

every = list(paths(typer.main.get_command(app), []))
assert len(every) > 15, every
for args in every:
    try:
        main([*args, "--help"])
    except SystemExit as exc:
        assert exc.code in (0, None), (args, exc.code)
heavy = json.loads(sys.argv[1])
print(json.dumps(sorted(m for m in heavy if m in sys.modules)))
"""


def test_help_of_every_command_imports_no_heavy_stack() -> None:
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, json.dumps(HEAVY)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "Usage" in done.stdout  # the help was printed
    imported = json.loads(done.stdout.strip().splitlines()[-1])
    assert imported == []


def test_the_users_commands_role_choices_are_the_databases_roles() -> None:
    """users_cmd spells the roles out (so --help needs no database layer); they must agree."""
    from unitumour_dicom.cli.users_cmd import RoleChoice
    from unitumour_dicom.db import UserRole

    assert [r.value for r in RoleChoice] == [r.value for r in UserRole]


def test_the_deliveries_state_choices_are_the_databases_states() -> None:
    """deliveries_cmd spells the states out (so --help needs no database layer)."""
    from unitumour_dicom.cli.deliveries_cmd import _STATES
    from unitumour_dicom.db import DeliveryState

    assert [s.value for s in DeliveryState] == _STATES
