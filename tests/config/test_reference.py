"""The configuration reference: generated from the settings model, and the committed page current.

The names it prints are checked against the settings loader itself: every documented variable
is really read, and every documented TOML table is really accepted.
"""

from __future__ import annotations

import typing
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from unitumour_dicom.cli import app
from unitumour_dicom.config import Settings, load_settings
from unitumour_dicom.config.reference import (
    FieldDoc,
    environment_variable_names,
    render_markdown,
    settings_sections,
)
from unitumour_dicom.errors import ConfigError

pytestmark = pytest.mark.unittest

REPO_ROOT = Path(__file__).resolve().parents[2]
CONFIGURATION_MD = REPO_ROOT / "docs" / "configuration.md"


def _cli_reference() -> str:
    result = CliRunner().invoke(app, ["config", "reference"])
    assert result.exit_code == 0, result.output
    return result.stdout


def test_committed_reference_is_current() -> None:
    expected = _cli_reference()
    assert CONFIGURATION_MD.is_file(), "docs/configuration.md is missing"
    committed = CONFIGURATION_MD.read_text(encoding="utf-8")
    assert committed == expected, (
        "docs/configuration.md differs from the settings model; regenerate it with\n"
        "    unitumour config reference > docs/configuration.md"
    )


def test_reference_is_the_same_on_every_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", "/somewhere/else")
    monkeypatch.setenv("HOME", "/home/another")
    monkeypatch.setenv("UNITUMOUR_LISTENER__PORT", "4242")  # the page is not this machine's values
    first = render_markdown()
    monkeypatch.setenv("XDG_DATA_HOME", "/elsewhere/again")
    assert render_markdown() == first
    assert "/somewhere/else" not in first and "4242" not in first


def _leaf_keys(model: type, prefix: str = "") -> set[str]:
    """Every leaf key, by an independent walk over model_fields (lists of tables as key[])."""
    keys: set[str] = set()
    for name, info in model.model_fields.items():
        ann = info.annotation
        if isinstance(ann, type) and hasattr(ann, "model_fields"):
            keys |= _leaf_keys(ann, f"{prefix}{name}.")
            continue
        args = typing.get_args(ann)
        if typing.get_origin(ann) is list and args and hasattr(args[0], "model_fields"):
            keys.add(f"{prefix}{name}")
            keys |= _leaf_keys(args[0], f"{prefix}{name}[].")
            continue
        keys.add(f"{prefix}{name}")
    return keys


def test_every_setting_is_documented_once() -> None:
    docs = [f.toml_key for s in settings_sections() for f in s.fields]
    assert len(docs) == len(set(docs))
    assert set(docs) == _leaf_keys(Settings)
    page = render_markdown()
    for key in docs:
        assert f"| `{key}` |" in page


def _non_default_value(doc: FieldDoc) -> str:
    """A value different from the default, as text an environment variable would carry."""
    t = doc.type
    if t.startswith("list of") and t.endswith("tables"):
        return "[{}]"  # missing required fields: the error proves the variable was read
    if t.startswith("list of"):
        return '["X"]'
    if t.startswith("one of: "):
        options = [o.strip() for o in t.removeprefix("one of: ").split(",")]
        return next(o for o in options if f'"{o}"' != doc.default)
    if t.startswith("boolean"):
        return "false" if doc.default == "true" else "true"
    if t.startswith(("integer", "number")):
        return "2" if doc.default in ("1", "1.0") else "1"
    if t.startswith("path"):
        return "/reference/test/path"
    return "X"


def _lookup(settings: Settings, key: str) -> Any:
    value: Any = settings
    for part in key.split("."):
        value = getattr(value, part)
    return value


@pytest.mark.parametrize(
    "doc",
    [f for s in settings_sections() for f in s.fields if f.env is not None],
    ids=lambda f: f.env,
)
def test_every_documented_variable_is_read(
    doc: FieldDoc, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    base = load_settings(data_dir=tmp_path)
    monkeypatch.setenv(doc.env, _non_default_value(doc))
    try:
        changed = (
            load_settings() if doc.toml_key == "data_dir" else load_settings(data_dir=tmp_path)
        )
    except ConfigError as exc:
        # refused by validation: the variable was read (an unread one changes nothing)
        assert doc.toml_key.rsplit(".", 1)[0] in str(exc)
        return
    assert _lookup(changed, doc.toml_key) != _lookup(base, doc.toml_key)


def test_an_undocumented_variable_is_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # the deploy tests rely on this: a misspelt nested variable stops the process
    assert "UNITUMOUR_LISTENER__PORTT" not in environment_variable_names()
    monkeypatch.setenv("UNITUMOUR_LISTENER__PORTT", "1")
    with pytest.raises(ConfigError, match="portt"):
        load_settings(data_dir=tmp_path)


def test_every_documented_table_is_accepted(tmp_path: Path) -> None:
    sections = settings_sections()
    # plain tables, outside any array of tables: each may appear empty in a TOML file
    tables = [s.toml_header for s in sections if s.toml_header and "[]" not in s.title]
    assert "[listener]" in tables and "[listener.tls]" in tables
    arrays = [s.toml_header for s in sections if s.toml_header.startswith("[[")]
    assert arrays == ["[[listener.callers]]", "[[delivery.destinations]]", "[[pull.sources]]"]
    toml = tmp_path / "tables.toml"
    toml.write_text(
        "\n".join(tables)
        + '\n[[delivery.destinations]]\nname = "PACS"\nae_title = "PACS"\nhost = "h"\nport = 104\n'
        + "[delivery.destinations.tls]\nenabled = true\n"
        + '[[pull.sources]]\nname = "archive"\nkind = "dimse"\nae_title = "PACS"\n'
        + 'host = "h"\nport = 104\nretrieve = "c-move"\n'
    )
    settings = load_settings(toml, data_dir=tmp_path)
    assert settings.delivery.destinations[0].tls.enabled
    assert settings.pull.sources[0].retrieve == "c-move"
    bad = tmp_path / "bad.toml"
    bad.write_text("[listenr]\n")
    with pytest.raises(ConfigError, match="listenr"):
        load_settings(bad, data_dir=tmp_path)


def test_environment_names_include_the_config_file_variable() -> None:
    names = environment_variable_names()
    assert "UNITUMOUR_CONFIG" in names
    assert "UNITUMOUR_LISTENER__TLS__CERTFILE" in names
    assert "UNITUMOUR_DATABASE__URL" in names
    assert not any(n.endswith("__AE_TITLE") and "CALLERS" in n for n in names)
