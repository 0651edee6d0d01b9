"""Progress bars: on standard error only, on a terminal (or when forced), never with
--no-progress, and never in the way of --json output on standard output."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from unitumour_dicom.cli.app import app
from unitumour_dicom.progress_bars import PROGRESS_ENV, Bars, progress_wanted

pytestmark = pytest.mark.unittest

SMALL = ["--width", "512", "--height", "384", "--tile-size", "128", "--levels", "2"]


class _Terminal:
    def isatty(self) -> bool:
        return True


def test_bars_are_wanted_on_a_terminal_unless_json_or_no_progress(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(PROGRESS_ENV, raising=False)
    assert not progress_wanted()  # pytest's stderr is no terminal
    monkeypatch.setattr(sys, "stderr", _Terminal())
    assert progress_wanted()
    assert not progress_wanted(as_json=True)
    assert not progress_wanted(no_progress=True)
    monkeypatch.setenv(PROGRESS_ENV, "0")
    assert not progress_wanted()
    monkeypatch.setenv(PROGRESS_ENV, "1")
    assert progress_wanted(as_json=True)
    assert not progress_wanted(no_progress=True, as_json=True)


def test_a_disabled_bar_draws_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    with Bars(False) as bars:
        bars("tiles", 1, 2)
        bars.echo("a line")
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == "a line\n"


def test_synth_bar_goes_to_stderr_and_json_stays_on_stdout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(PROGRESS_ENV, "1")
    result = CliRunner().invoke(app, ["synth", str(tmp_path / "s"), *SMALL, "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["size"] == [512, 384]  # stdout: the JSON, nothing else
    assert "base tiles" in result.stderr and "12/12" in result.stderr  # 4 x 3 tiles of 128


def test_no_progress_and_plain_pipes_draw_no_bar(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(PROGRESS_ENV, "1")
    off = CliRunner().invoke(app, ["synth", str(tmp_path / "a"), *SMALL, "--no-progress"])
    assert off.exit_code == 0, off.output
    assert "base tiles" not in off.stderr
    monkeypatch.delenv(PROGRESS_ENV)
    piped = CliRunner().invoke(app, ["synth", str(tmp_path / "b"), *SMALL])
    assert piped.exit_code == 0, piped.output
    assert "base tiles" not in piped.stderr and "base tiles" not in piped.stdout
