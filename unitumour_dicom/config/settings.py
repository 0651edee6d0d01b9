"""The one settings object, from UNITUMOUR_* environment variables and an optional TOML file.

Precedence, highest first: keyword overrides (tests, CLI flags), environment, files in
``UNITUMOUR_SECRETS_DIR`` (one per variable, see :mod:`.secret_files`), TOML file, defaults.
Nested keys use a double underscore in the environment (``UNITUMOUR_LISTENER__PORT=11112``)
and tables in TOML (``[listener] port = 11112``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr, ValidationError, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from ..errors import ConfigError
from .secret_files import SecretFilesSource, secrets_dir_from_environment
from .sections import (
    BrokerSettings,
    DatabaseSettings,
    DeliverySettings,
    ListenerSettings,
    LoggingSettings,
    ModelSettings,
    PullSettings,
    ResultsSettings,
    RetentionSettings,
    SegSettings,
    StoreSettings,
    WatchSettings,
    WebSettings,
    WorkerSettings,
)

CONFIG_ENV = "UNITUMOUR_CONFIG"


def default_data_dir() -> Path:
    """Per-user data directory (XDG); production points data_dir at /var/lib/unitumour."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "unitumour"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="UNITUMOUR_",
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    data_dir: Path = Field(
        default_factory=default_data_dir,
        description="Home of the embedded database, store and broker (default: XDG data dir).",
    )
    liveness_dir: Path | None = Field(
        default=None,
        description=(
            "Folder where the listener and each worker touch a liveness file as they make "
            "progress, for `unitumour health` (an exec probe). One per pod or host, never the "
            "shared store. Unset: no files."
        ),
    )
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    store: StoreSettings = Field(default_factory=StoreSettings)
    broker: BrokerSettings = Field(default_factory=BrokerSettings)
    listener: ListenerSettings = Field(default_factory=ListenerSettings)
    model: ModelSettings = Field(default_factory=ModelSettings)
    seg: SegSettings = Field(default_factory=SegSettings)
    results: ResultsSettings = Field(default_factory=ResultsSettings)
    delivery: DeliverySettings = Field(default_factory=DeliverySettings)
    worker: WorkerSettings = Field(default_factory=WorkerSettings)
    web: WebSettings = Field(default_factory=WebSettings)
    logging: LoggingSettings = Field(default_factory=LoggingSettings)
    retention: RetentionSettings = Field(default_factory=RetentionSettings)
    watch: WatchSettings = Field(default_factory=WatchSettings)
    pull: PullSettings = Field(default_factory=PullSettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        secrets_dir = secrets_dir_from_environment()
        if secrets_dir is not None:
            sources.append(SecretFilesSource(settings_cls, secrets_dir))
        toml_file = settings_cls.model_config.get("toml_file")
        if toml_file:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=toml_file))
        return tuple(sources)

    @model_validator(mode="after")
    def _resolve_defaults(self) -> Settings:
        """Fill the paths and URLs that default to places inside data_dir."""
        data_dir = self.data_dir.expanduser().absolute()
        object.__setattr__(self, "data_dir", data_dir)
        if self.database.url is None:
            url = f"sqlite:///{data_dir / 'unitumour.db'}"
            object.__setattr__(self, "database", self.database.model_copy(update={"url": url}))
        if self.store.root is None:
            object.__setattr__(
                self, "store", self.store.model_copy(update={"root": data_dir / "store"})
            )
        if self.broker.url is None:
            url = f"sqla+sqlite:///{data_dir / 'broker.sqlite'}"
            object.__setattr__(self, "broker", self.broker.model_copy(update={"url": url}))
        dest_names = {d.name for d in self.delivery.destinations}
        if len(dest_names) != len(self.delivery.destinations):
            raise ValueError("delivery.destinations: destination names must be unique")
        for name in self.delivery.always_to:
            if name not in dest_names:
                raise ValueError(f"delivery.always_to: no destination named {name!r}")
        for rule in self.listener.callers:
            for name in rule.destinations:
                if name not in dest_names:
                    raise ValueError(
                        f"listener.callers[{rule.ae_title}].destinations: "
                        f"no destination named {name!r}"
                    )
        pull_names = [s.name for s in self.pull.sources]
        if len(set(pull_names)) != len(pull_names):
            raise ValueError("pull.sources: source names must be unique")
        if self.listener.tls.enabled and not (
            self.listener.tls.certfile and self.listener.tls.keyfile
        ):
            raise ValueError("listener.tls: enabled needs certfile and keyfile")
        return self

    @property
    def database_url(self) -> str:
        assert self.database.url is not None
        return self.database.url

    @property
    def store_root(self) -> Path:
        assert self.store.root is not None
        return self.store.root

    @property
    def broker_url(self) -> str:
        assert self.broker.url is not None
        return self.broker.url


def _format_validation_error(exc: ValidationError, source: str) -> str:
    lines = [f"invalid settings ({source}):"]
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"]) or "(top level)"
        lines.append(f"  {key}: {err['msg']}")
    return "\n".join(lines)


def load_settings(config_file: Path | str | None = None, **overrides: Any) -> Settings:
    """Build the settings once for a process; raise ConfigError naming every bad key.

    ``config_file`` defaults to the UNITUMOUR_CONFIG environment variable. A named file that
    does not exist is an error rather than silently falling back to defaults.
    """
    path_text = config_file if config_file is not None else os.environ.get(CONFIG_ENV)
    cls: type[Settings] = Settings
    source = "environment and defaults"
    if path_text:
        path = Path(path_text).expanduser()
        if not path.is_file():
            raise ConfigError(f"configuration file {path} does not exist or is not a file")
        cls = type(
            "Settings", (Settings,), {"model_config": {**Settings.model_config, "toml_file": path}}
        )
        source = f"{path}, environment and defaults"
    try:
        return cls(**overrides)
    except ValidationError as exc:
        raise ConfigError(_format_validation_error(exc, source)) from exc
    except ValueError as exc:  # TOML syntax errors surface as ValueError subclasses
        raise ConfigError(f"invalid settings ({source}): {exc}") from exc


_SECRET_KEYS = ("password", "secret", "token", "key")


def _mask_url(url: str) -> str:
    """Hide the password in scheme://user:password@host URLs."""
    if "://" not in url or "@" not in url:
        return url
    scheme, rest = url.split("://", 1)
    creds, host = rest.rsplit("@", 1)
    if ":" in creds:
        user = creds.split(":", 1)[0]
        return f"{scheme}://{user}:***@{host}"
    return url


def masked_settings(settings: Settings) -> dict[str, Any]:
    """The effective settings as plain data, with secrets and URL passwords masked."""

    def walk(value: Any, key: str = "") -> Any:
        if isinstance(value, SecretStr):
            return "***" if value.get_secret_value() else ""
        if isinstance(value, dict):
            return {k: walk(v, k) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v, key) for v in value]
        if isinstance(value, Path):
            return str(value)
        if isinstance(value, str):
            if key.endswith("url"):
                return _mask_url(value)
            if any(s in key.lower() for s in _SECRET_KEYS) and not key.endswith("file"):
                return "***"
        return value

    return walk(settings.model_dump(mode="python"))
