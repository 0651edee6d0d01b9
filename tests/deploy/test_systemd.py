"""systemd units for hosts without containers.

``systemd-analyze verify`` checks each unit as systemd would load it (with the unitumour
binary path pointed at this checkout's, since /opt/unitumour is not installed here); the
commands are checked against the real CLI and the environment against the settings.
"""

from __future__ import annotations

import configparser
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from .helpers import (
    DEPLOY,
    REPO,
    command_problems,
    load_example_settings,
    unitumour_calls,
    unknown_env_names,
)

pytestmark = pytest.mark.unittest

SYSTEMD = DEPLOY / "systemd"
INSTALLED_BINARY = "/opt/unitumour/venv/bin/unitumour"
UNITS = sorted(p.name for p in SYSTEMD.iterdir() if p.suffix in (".service", ".timer", ".target"))


def _parse(name: str) -> configparser.RawConfigParser:
    parser = configparser.RawConfigParser(strict=False, interpolation=None, delimiters=("=",))
    parser.optionxform = str  # type: ignore[assignment,method-assign]  (keys are case-sensitive)
    parser.read_string((SYSTEMD / name).read_text())
    return parser


def _values(name: str, section: str, key: str) -> list[str]:
    """All values of a key that may repeat (configparser keeps the last; systemd keeps all)."""
    values, current = [], None
    for line in (SYSTEMD / name).read_text().splitlines():
        if line.startswith("["):
            current = line.strip("[]")
        elif current == section and line.split("=", 1)[0] == key:
            values.append(line.split("=", 1)[1])
    return values


def test_the_units_are_there() -> None:
    assert UNITS == [
        "unitumour-db-upgrade.service",
        "unitumour-listener.service",
        "unitumour-retention.service",
        "unitumour-retention.timer",
        "unitumour-web.service",
        "unitumour-worker.service",
        "unitumour.target",
    ]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_systemd_analyze_verify(tmp_path: Path) -> None:
    binary = shutil.which("unitumour") or str(REPO / ".venv" / "bin" / "unitumour")
    assert Path(binary).is_file()
    for name in UNITS:
        text = (SYSTEMD / name).read_text().replace(INSTALLED_BINARY, binary)
        (tmp_path / name).write_text(text)
    verify = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", *(str(tmp_path / n) for n in UNITS)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=tmp_path,
    )
    problems = [line for line in verify.stderr.splitlines() if line.strip()]
    assert verify.returncode == 0 and problems == [], verify.stderr


def test_units_parse_and_name_their_sections() -> None:
    # what the verify above cannot see without systemd: the sections and their keys
    for name in UNITS:
        parser = _parse(name)
        assert parser.has_section("Unit"), name
        assert parser.get("Unit", "Description").startswith("UniTumour DICOM")
        if name.endswith(".service"):
            assert parser.get("Service", "User") == "unitumour"
            assert parser.get("Service", "EnvironmentFile") == "/etc/unitumour/unitumour.env"
            assert "UNITUMOUR_CONFIG=/etc/unitumour/unitumour.toml" in _values(
                name, "Service", "Environment"
            )


def _exec_lines(name: str) -> list[str]:
    return _values(name, "Service", "ExecStartPre") + _values(name, "Service", "ExecStart")


def test_commands_exist_in_the_cli() -> None:
    seen = {}
    for name in UNITS:
        for line in _exec_lines(name):
            calls = list(unitumour_calls(line))
            assert calls, f"{name}: {line}"
            for argv in calls:
                assert command_problems(argv) == [], f"{name}: {argv}"
            seen[name] = calls[-1]
    assert seen["unitumour-db-upgrade.service"] == ["db", "upgrade"]
    assert seen["unitumour-listener.service"] == ["listener"]
    assert seen["unitumour-worker.service"] == ["worker"]
    assert seen["unitumour-web.service"] == ["web"]
    assert seen["unitumour-retention.service"][:2] == ["retention", "purge"]
    for name in UNITS:
        for line in _exec_lines(name):
            words = shlex.split(line)
            if words[0] != "/bin/sh":
                assert words[0] == INSTALLED_BINARY, name


def test_schema_upgrade_comes_first() -> None:
    upgrade = _parse("unitumour-db-upgrade.service")
    assert upgrade.get("Service", "Type") == "oneshot"
    # Not RemainAfterExit: an active (exited) upgrade would satisfy the Requires= of a
    # listener or web app restarted after an install, and the new code would start on the
    # old schema. Inactive after each run, it runs again with every start of either.
    assert upgrade.get("Service", "RemainAfterExit", fallback="no") == "no"
    assert "Install" not in upgrade  # started only as what the services require
    for name in ("unitumour-listener.service", "unitumour-web.service"):
        unit = _parse(name)
        assert "unitumour-db-upgrade.service" in unit.get("Unit", "Requires").split()
        assert "unitumour-db-upgrade.service" in unit.get("Unit", "After").split()
    # a worker on a GPU host of its own waits for the schema instead of upgrading it
    worker = _parse("unitumour-worker.service")
    assert "Requires" not in worker["Unit"]
    (wait,) = _values("unitumour-worker.service", "Service", "ExecStartPre")
    assert list(unitumour_calls(wait)) == [["db", "current"]]
    assert 'grep -qF "(head)"' in wait


def _seconds(text: str) -> float:
    units = {"min": 60, "s": 1, "h": 3600}
    return sum(float(n) * units[u] for n, u in re.findall(r"([0-9.]+)(min|h|s)", text)) or float(
        text
    )


def test_graceful_stops_have_room(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = load_example_settings(SYSTEMD / "unitumour.toml", {}, tmp_path, monkeypatch)
    listener = _parse("unitumour-listener.service")
    worker = _parse("unitumour-worker.service")
    assert _seconds(listener.get("Service", "TimeoutStopSec")) > settings.listener.shutdown_grace_s
    assert _seconds(worker.get("Service", "TimeoutStopSec")) > settings.worker.shutdown_timeout_s
    assert worker.get("Service", "KillMode") == "mixed"


def test_target_and_timer() -> None:
    target = _parse("unitumour.target")
    wanted = set(target.get("Unit", "Wants").split())
    assert wanted == {
        "unitumour-listener.service",
        "unitumour-worker.service",
        "unitumour-web.service",
    }
    for name in wanted:
        assert _parse(name).get("Install", "WantedBy") == "unitumour.target"
    timer = _parse("unitumour-retention.timer")
    assert timer.get("Timer", "Persistent") == "true"
    assert timer.get("Install", "WantedBy") == "timers.target"


def test_environment_and_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for path in SYSTEMD.iterdir():
        assert unknown_env_names(path.read_text()) == set(), path
    env = {}
    for line in (SYSTEMD / "unitumour.env.example").read_text().splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            env[key] = value
    settings = load_example_settings(SYSTEMD / "unitumour.toml", env, tmp_path, monkeypatch)
    assert str(settings.data_dir) == "/var/lib/unitumour"
    assert settings.database_url.startswith("postgresql+psycopg://")
    assert settings.retention.purge_after_days == 90
    for name in UNITS:
        if name.endswith(".service"):
            assert _parse(name).get("Service", "StateDirectory") == "unitumour"


def test_services_wait_for_the_store_and_data_mounts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The store is often NFS or CephFS: a service started before it is mounted would write
    # into the empty mount point underneath, and the data would vanish once it is mounted.
    settings = load_example_settings(SYSTEMD / "unitumour.toml", {}, tmp_path, monkeypatch)
    needed = {str(settings.store.root), str(settings.data_dir)}
    for name in UNITS:
        if name.endswith(".service"):
            mounts = {
                p for line in _values(name, "Unit", "RequiresMountsFor") for p in line.split()
            }
            assert needed <= mounts, name
