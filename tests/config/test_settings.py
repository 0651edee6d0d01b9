"""Settings: sources and their precedence, derived defaults, and clear errors."""

from pathlib import Path

import pytest
from typer.testing import CliRunner

from unitumour_dicom.cli import app
from unitumour_dicom.config import load_settings, masked_settings
from unitumour_dicom.errors import ConfigError

pytestmark = pytest.mark.unittest


def test_defaults_live_in_the_data_directory(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path)
    assert settings.database_url == f"sqlite:///{tmp_path / 'unitumour.db'}"
    assert settings.store_root == tmp_path / "store"
    assert settings.broker_url == f"sqla+sqlite:///{tmp_path / 'broker.sqlite'}"
    assert settings.listener.ae_title == "UNITUMOUR"


def test_data_dir_defaults_to_xdg(tmp_path: Path) -> None:
    # conftest points XDG_DATA_HOME at tmp_path/xdg
    assert load_settings().data_dir == tmp_path / "xdg" / "unitumour"


def test_precedence_override_env_toml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    toml = tmp_path / "unitumour.toml"
    toml.write_text(
        '[listener]\nport = 1001\nae_title = "FROMTOML"\nquiet_seconds = 5\n[web]\nport = 9000\n'
    )
    monkeypatch.setenv("UNITUMOUR_LISTENER__PORT", "1002")
    monkeypatch.setenv("UNITUMOUR_CONFIG", str(toml))
    settings = load_settings(web={"port": 9001})
    assert settings.listener.port == 1002  # environment beats TOML
    assert settings.listener.ae_title == "FROMTOML"  # TOML beats defaults
    assert settings.listener.quiet_seconds == 5
    assert settings.web.port == 9001  # keyword overrides beat everything


def test_settings_are_immutable(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path)
    with pytest.raises(ValueError, match="frozen"):
        settings.listener.port = 1  # type: ignore[misc]


def test_missing_config_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"configuration file .*nope.toml does not exist"):
        load_settings(tmp_path / "nope.toml")


def test_errors_name_every_bad_key(tmp_path: Path) -> None:
    toml = tmp_path / "bad.toml"
    toml.write_text('[listener]\nport = "eleven"\nae_title = "A\\\\B"\n[listner]\nx = 1\n')
    with pytest.raises(ConfigError) as info:
        load_settings(toml)
    text = str(info.value)
    assert "listener.port" in text
    assert "listener.ae_title" in text
    assert "listner" in text  # misspelt section is refused, not ignored


def test_toml_syntax_error_is_reported(tmp_path: Path) -> None:
    toml = tmp_path / "broken.toml"
    toml.write_text("[listener\nport = 1\n")
    with pytest.raises(ConfigError, match="invalid settings"):
        load_settings(toml)


def test_cross_references_are_checked(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no destination named 'PACS'"):
        load_settings(data_dir=tmp_path, delivery={"always_to": ["PACS"]})
    with pytest.raises(ConfigError, match="enabled needs certfile and keyfile"):
        load_settings(data_dir=tmp_path, listener={"tls": {"enabled": True}})
    with pytest.raises(ConfigError, match="destination names must be unique"):
        dest = {"name": "A", "ae_title": "X", "host": "h", "port": 104}
        load_settings(data_dir=tmp_path, delivery={"destinations": [dest, dest]})


def test_ae_titles_and_networks_are_validated(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="1 to 16 characters"):
        load_settings(data_dir=tmp_path, listener={"ae_title": "X" * 17})
    with pytest.raises(ConfigError, match="callers"):
        load_settings(
            data_dir=tmp_path,
            listener={"callers": [{"ae_title": "SCANNER", "networks": ["10.0.0.0/33"]}]},
        )


def test_masking_hides_secrets_and_url_passwords(tmp_path: Path) -> None:
    settings = load_settings(
        data_dir=tmp_path,
        database={"url": "postgresql+psycopg://unitumour:hunter2@db:5432/unitumour"},
        broker={"url": "amqp://guest:guest@mq:5672//"},
        web={"secret_key": "s3cret"},
    )
    shown = masked_settings(settings)
    text = repr(shown)
    assert "hunter2" not in text and "s3cret" not in text and "guest@" not in text
    assert shown["database"]["url"] == "postgresql+psycopg://unitumour:***@db:5432/unitumour"
    assert shown["web"]["secret_key"] == "***"


def test_config_show_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UNITUMOUR_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("UNITUMOUR_WEB__SECRET_KEY", "topsecret")
    result = CliRunner().invoke(app, ["config", "show"])
    assert result.exit_code == 0, result.output
    assert "[listener]" in result.output
    assert f'root = "{tmp_path / "store"}"' in result.output
    assert "topsecret" not in result.output
    bad = CliRunner().invoke(app, ["--config", str(tmp_path / "missing.toml"), "config", "show"])
    assert bad.exit_code == 2
    assert "does not exist" in bad.output


def test_web_is_secure_by_default_and_the_demo_turns_cookies_off_explicitly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from unitumour_dicom.demo.config import DemoPorts, demo_settings, settings_toml

    web = load_settings(data_dir=tmp_path).web
    assert web.secure_cookies is True
    assert web.hsts_seconds >= 180 * 24 * 3600
    assert web.trusted_proxies == ["127.0.0.1"]
    demo = tmp_path / "demo.toml"
    demo.write_text(settings_toml(demo_settings(tmp_path / "d", DemoPorts(11112, 8080, 11113))))
    assert load_settings(demo).web.secure_cookies is False  # plain http on 127.0.0.1
    monkeypatch.setenv("UNITUMOUR_WEB__SECURE_COOKIES", "false")
    assert load_settings(data_dir=tmp_path).web.secure_cookies is False
    with pytest.raises(ConfigError, match="trusted_proxies"):
        load_settings(data_dir=tmp_path, web={"trusted_proxies": ["proxy.example"]})


def test_secrets_come_from_files_named_as_their_variables(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a Kubernetes Secret volume: each key a symbolic link into a hidden ..data folder
    secrets = tmp_path / "secrets"
    data = secrets / "..2026_12_03"
    data.mkdir(parents=True)
    (data / "UNITUMOUR_DATABASE__URL").write_text("postgresql+psycopg://u:s3cret@db/unitumour\n")
    (data / "UNITUMOUR_WEB__SECRET_KEY").write_text("k" * 40)
    (secrets / "..data").symlink_to(data.name)
    for name in ("UNITUMOUR_DATABASE__URL", "UNITUMOUR_WEB__SECRET_KEY"):
        (secrets / name).symlink_to(f"..data/{name}")
    (secrets / "README").write_text("not a setting")
    config = tmp_path / "unitumour.toml"
    config.write_text(f'data_dir = "{tmp_path}"\n[database]\nurl = "sqlite:///toml.db"\n')
    monkeypatch.setenv("UNITUMOUR_SECRETS_DIR", str(secrets))
    settings = load_settings(config)
    assert settings.database_url == "postgresql+psycopg://u:s3cret@db/unitumour"  # over TOML
    assert settings.web.secret_key is not None
    assert settings.web.secret_key.get_secret_value() == "k" * 40
    monkeypatch.setenv("UNITUMOUR_DATABASE__URL", "sqlite:///env.db")  # the environment wins
    assert load_settings(config).database_url == "sqlite:///env.db"
    monkeypatch.setenv("UNITUMOUR_SECRETS_DIR", str(tmp_path / "missing"))
    with pytest.raises(ConfigError, match="is not a directory"):
        load_settings(config)
