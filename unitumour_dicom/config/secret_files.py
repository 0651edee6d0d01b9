"""Settings from files: one file per variable, named as the environment variable it replaces.

``UNITUMOUR_SECRETS_DIR=/run/secrets/unitumour`` with a file ``UNITUMOUR_DATABASE__URL`` in it
sets ``database.url`` to the file's content (one trailing newline stripped), exactly as the
variable would. This is how a Kubernetes Secret mounted as a volume, Docker secrets or
systemd's ``LoadCredential=`` hand over passwords without putting them in the environment,
where every child process, ``/proc/PID/environ`` and many crash reports can read them.

pydantic-settings' own ``secrets_dir`` reads top-level fields only (a nested ``database.url``
would need a JSON file for the whole section); reading the files as if they were environment
variables keeps one naming scheme for both. Precedence: real environment variables win over
files, files over the TOML file.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from pydantic_settings import BaseSettings, EnvSettingsSource

from ..errors import ConfigError

SECRETS_DIR_ENV = "UNITUMOUR_SECRETS_DIR"
_MAX_BYTES = 64 * 1024


def read_secret_files(directory: Path, prefix: str = "UNITUMOUR_") -> dict[str, str]:
    """The ``prefix*`` files of ``directory`` as variable name -> value.

    Kubernetes projects each key as a symbolic link into a hidden ``..data`` folder: links
    are followed, hidden entries skipped. A file larger than 64 KiB is refused (a secret is
    short; anything longer is a mistake in the mount)."""
    if not directory.is_dir():
        raise ConfigError(f"{SECRETS_DIR_ENV}={directory} is not a directory")
    values: dict[str, str] = {}
    for entry in sorted(directory.iterdir()):
        if entry.name.startswith(".") or not entry.name.upper().startswith(prefix):
            continue
        if not entry.is_file():
            continue
        if entry.stat().st_size > _MAX_BYTES:
            raise ConfigError(f"secret file {entry} is larger than {_MAX_BYTES} bytes")
        text = entry.read_text(encoding="utf-8")
        values[entry.name] = text[:-1] if text.endswith("\n") else text
    return values


class SecretFilesSource(EnvSettingsSource):
    """The environment source, reading ``UNITUMOUR_SECRETS_DIR``'s files instead of the
    environment (nested names, JSON lists and case rules as for variables)."""

    def __init__(self, settings_cls: type[BaseSettings], directory: Path | None) -> None:
        self.directory = directory
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        if self.directory is None:
            return {}
        files = read_secret_files(self.directory)
        if self.case_sensitive:
            return dict(files)
        return {name.lower(): value for name, value in files.items()}


def secrets_dir_from_environment() -> Path | None:
    value = os.environ.get(SECRETS_DIR_ENV, "").strip()
    return Path(value).expanduser() if value else None
