"""The demo's settings: the embedded defaults (SQLite, the embedded broker, the local store,
the CPU), one known scanner, one local DCMTK storescp as the PACS, short quiet times.

Written as a TOML file in the demo's data directory, so that every process the demo starts
(``db upgrade``, ``users add``, ``serve`` and its children) reads the same settings, and a
person can start ``unitumour -c var/demo/unitumour.toml web`` on them afterwards.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CONFIG_NAME = "unitumour.toml"
SCANNER_AE = "DEMOSCANNER"
PACS_AE = "DEMOPACS"
PACS_NAME = "demo-pacs"


@dataclass(frozen=True)
class DemoPorts:
    """TCP ports on 127.0.0.1: our DICOM listener, our web app, the storescp PACS."""

    listener: int
    web: int
    pacs: int


def demo_settings(
    data_dir: Path,
    ports: DemoPorts,
    *,
    quiet_seconds: float = 3.0,
    device: str = "cpu",
    scanner_ae: str = SCANNER_AE,
    pacs_ae: str = PACS_AE,
) -> dict[str, Any]:
    """The settings as nested tables, ready for :func:`settings_toml`."""
    data_dir = Path(data_dir).resolve()
    return {
        "data_dir": str(data_dir),
        "model": {"device": device, "batch_size": 8},
        "broker": {"polling_interval_s": 0.5},
        "listener": {
            "host": "127.0.0.1",
            "port": ports.listener,
            "accept_any_caller": False,
            "callers": [{"ae_title": scanner_ae, "networks": ["127.0.0.1/32"]}],
            "quiet_seconds": quiet_seconds,
            "settle_interval_s": 0.5,
            "shutdown_grace_s": 10.0,
        },
        "worker": {"reconcile_seconds": 5.0, "shutdown_timeout_s": 60.0},
        "delivery": {
            "destinations": [
                {"name": PACS_NAME, "ae_title": pacs_ae, "host": "127.0.0.1", "port": ports.pacs}
            ],
            "always_to": [PACS_NAME],
            "initial_delay_s": 1.0,
            "max_delay_s": 10.0,
            "timeout_s": 30.0,
        },
        # Plain http on 127.0.0.1: a Secure cookie would never come back (production keeps
        # the default, secure_cookies = true, behind HTTPS).
        "web": {"host": "127.0.0.1", "port": ports.web, "secure_cookies": False},
        "logging": {"level": "INFO"},
    }


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"cannot write {value!r} in TOML settings")
        return repr(value)
    if isinstance(value, str | Path):
        return json.dumps(str(value), ensure_ascii=False)  # a TOML basic string
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"cannot write {type(value).__name__} in TOML settings")


def settings_toml(settings: dict[str, Any]) -> str:
    """TOML text: top-level keys first, then one table per section (inline below that)."""
    lines = ["# Written by 'unitumour demo'; every process of the demo reads it."]
    lines += [f"{k} = {_value(v)}" for k, v in settings.items() if not isinstance(v, dict)]
    for section, values in settings.items():
        if isinstance(values, dict):
            lines.append(f"\n[{section}]")
            lines += [f"{k} = {_value(v)}" for k, v in values.items()]
    return "\n".join(lines) + "\n"
