"""The compose deployment: one host with PostgreSQL, a broker, listener, GPU workers and web.

No Docker engine runs in the tests, so they check what `docker compose config` would and
more: every service's image, command (against the real CLI), environment (against the
settings), ports and volumes, the order of start (schema upgrade first), GPU reservations,
and that the settings a service would start with load.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from .helpers import (
    DEPLOY,
    command_problems,
    load_example_settings,
    unknown_env_names,
)

pytestmark = pytest.mark.unittest

COMPOSE_DIR = DEPLOY / "compose"
UNITUMOUR_SERVICES = {"migrate", "listener", "worker", "web", "retention"}


class ComposeLoader(yaml.SafeLoader):
    """YAML with Compose's own tags (!reset, !override) kept as marked values."""


def _tagged(tag: str):  # type: ignore[no-untyped-def]
    def construct(loader: yaml.SafeLoader, node: yaml.Node) -> dict[str, Any]:
        if isinstance(node, yaml.MappingNode):
            value: Any = loader.construct_mapping(node, deep=True)
        elif isinstance(node, yaml.SequenceNode):
            value = loader.construct_sequence(node, deep=True)
        else:
            value = loader.construct_scalar(node)
        return {tag: value}

    return construct


ComposeLoader.add_constructor("!reset", _tagged("!reset"))
ComposeLoader.add_constructor("!override", _tagged("!override"))


def load_compose(name: str) -> dict[str, Any]:
    with open(COMPOSE_DIR / name) as fh:
        return yaml.load(fh, Loader=ComposeLoader)


def dotenv() -> dict[str, str]:
    values = {}
    for line in (COMPOSE_DIR / "example.env").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values[key] = value
    return values


_VAR = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")


def interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's ${VAR}, ${VAR:-default} and ${VAR:?error}; an unset required one fails."""

    def sub(match: re.Match[str]) -> str:
        name, op, arg = match["name"], match["op"], match["arg"]
        if env.get(name):
            return env[name]
        if op and op.endswith("?"):
            raise AssertionError(f"${{{name}}} is required: {arg}")
        return arg or ""

    return _VAR.sub(sub, text)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load_compose("compose.yaml")


def test_services_and_images(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert {"postgres", "redis", "rabbitmq", "listener", "worker", "web", "migrate"} <= set(
        services
    )
    for name, service in services.items():
        assert service.get("image"), f"{name} has no image"
        assert "build" not in service, "images are built once, with deploy/docker"
    for name in UNITUMOUR_SERVICES:
        assert re.fullmatch(r"\$\{IMAGE:-unitumour-cuda:[0-9.]+\}", services[name]["image"])
    assert services["postgres"]["image"].startswith("postgres:")
    assert services["redis"]["image"].startswith("redis:")
    assert services["rabbitmq"]["image"].startswith("rabbitmq:")


def test_commands_exist_in_the_cli(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert services["migrate"]["command"] == ["db", "upgrade"]
    assert services["listener"]["command"][0] == "listener"
    assert services["worker"]["command"][0] == "worker"
    assert services["web"]["command"][0] == "web"
    for name in UNITUMOUR_SERVICES:
        assert command_problems(services[name]["command"]) == [], name


def test_schema_upgrade_runs_before_every_service(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert services["migrate"]["restart"] == "no"
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in UNITUMOUR_SERVICES - {"migrate"}:
        dep = services[name]["depends_on"]["migrate"]
        assert dep["condition"] == "service_completed_successfully", name


def test_dependencies_exist_and_can_be_healthy(compose: dict[str, Any]) -> None:
    services = compose["services"]
    conditions = {"service_started", "service_healthy", "service_completed_successfully"}
    for name, service in services.items():
        for dep, spec in (service.get("depends_on") or {}).items():
            assert dep in services, f"{name} depends on unknown {dep}"
            assert spec["condition"] in conditions
            if spec["condition"] == "service_healthy":
                assert "healthcheck" in services[dep], f"{dep} has no healthcheck"
            if dep in ("redis", "rabbitmq"):
                # the broker not chosen is in an inactive profile
                assert spec.get("required") is False


def test_brokers_are_alternatives_by_profile(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert services["redis"]["profiles"] == ["redis"]
    assert services["rabbitmq"]["profiles"] == ["rabbitmq"]
    env = dotenv()
    assert env["COMPOSE_PROFILES"] == "redis" and env["BROKER_URL"].startswith("redis://redis:")
    # redis keeps its queue across restarts
    assert "--appendonly" in services["redis"]["command"]


def test_environment_names_are_settings(compose: dict[str, Any]) -> None:
    text = (COMPOSE_DIR / "compose.yaml").read_text() + (
        COMPOSE_DIR / "compose.cpu.yaml"
    ).read_text()
    assert unknown_env_names(text) == set()
    for name, service in compose["services"].items():
        for key in service.get("environment") or {}:
            if name in UNITUMOUR_SERVICES:
                assert key.startswith("UNITUMOUR_"), f"{name}: {key}"
    assert unknown_env_names((COMPOSE_DIR / "example.env").read_text()) == set()


def _service_env(compose: dict[str, Any], name: str) -> dict[str, str]:
    env = dotenv()
    return {
        key: interpolate(str(value), env)
        for key, value in compose["services"][name]["environment"].items()
    }


@pytest.mark.parametrize("name", sorted(UNITUMOUR_SERVICES))
def test_each_service_starts_with_valid_settings(
    compose: dict[str, Any], name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = _service_env(compose, name)
    mounts = dict(v.split(":")[1::-1] for v in compose["services"][name]["volumes"])
    config_source = mounts[env["UNITUMOUR_CONFIG"]]
    toml_path = COMPOSE_DIR / config_source
    assert toml_path.is_file()
    settings = load_example_settings(toml_path, env, tmp_path, monkeypatch)
    assert settings.database_url.startswith("postgresql+psycopg://unitumour:")
    assert "@postgres:5432/unitumour" in settings.database_url
    assert settings.broker_url == dotenv()["BROKER_URL"]
    assert str(settings.data_dir) == "/var/lib/unitumour"
    if name == "web":
        assert settings.web.secret_key is not None
    if name == "worker":
        assert settings.model.device == "cuda"


def test_ports_match_the_settings(
    compose: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = load_example_settings(
        COMPOSE_DIR / "unitumour.toml", _service_env(compose, "listener"), tmp_path, monkeypatch
    )
    services = compose["services"]
    assert services["listener"]["ports"] == [f"{settings.listener.port}:{settings.listener.port}"]
    assert settings.listener.host == "0.0.0.0"
    # a probe on the DICOM port would be audited (a failed TLS handshake, an association)
    assert "healthcheck" not in services["listener"]
    assert services["web"]["ports"] == [f"127.0.0.1:{settings.web.port}:{settings.web.port}"]
    assert f":{settings.web.port}/healthz" in " ".join(services["web"]["healthcheck"]["test"])
    assert settings.web.host == "0.0.0.0"


def _seconds(duration: str) -> float:
    units = {"h": 3600, "m": 60, "s": 1}
    return sum(float(n) * units[u] for n, u in re.findall(r"([0-9.]+)([hms])", duration))


def test_graceful_stops_have_room(
    compose: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = load_example_settings(
        COMPOSE_DIR / "unitumour.toml", _service_env(compose, "worker"), tmp_path, monkeypatch
    )
    services = compose["services"]
    assert _seconds(services["worker"]["stop_grace_period"]) > settings.worker.shutdown_timeout_s
    assert _seconds(services["listener"]["stop_grace_period"]) > settings.listener.shutdown_grace_s


def test_workers_reserve_the_gpus(compose: dict[str, Any]) -> None:
    devices = compose["services"]["worker"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": "all", "capabilities": ["gpu"]}]


def test_volumes_are_declared_or_exist(compose: dict[str, Any]) -> None:
    declared = set(compose["volumes"])
    used = set()
    for name, service in compose["services"].items():
        for volume in service.get("volumes") or []:
            source, target = volume.split(":")[:2]
            assert target.startswith("/"), f"{name}: {volume}"
            if source.startswith("."):
                assert (COMPOSE_DIR / source).exists(), f"{name}: {source} missing"
            else:
                assert source in declared, f"{name}: volume {source} not declared"
                used.add(source)
    assert used == declared
    # every UniTumour process sees the same store
    for name in UNITUMOUR_SERVICES - {"migrate"}:
        assert "data:/var/lib/unitumour" in compose["services"][name]["volumes"]


def test_cpu_override(compose: dict[str, Any]) -> None:
    cpu = load_compose("compose.cpu.yaml")
    assert set(cpu["services"]) <= set(compose["services"])
    assert cpu["services"]["worker"]["deploy"] == {"!reset": {}}
    assert cpu["services"]["worker"]["environment"] == {"UNITUMOUR_MODEL__DEVICE": "cpu"}
    for name in UNITUMOUR_SERVICES:
        assert "unitumour-cpu:" in cpu["services"][name]["image"], name


def test_interpolation_refuses_missing_secrets() -> None:
    with pytest.raises(AssertionError, match="POSTGRES_PASSWORD"):
        interpolate("${POSTGRES_PASSWORD:?set POSTGRES_PASSWORD in .env}", {})
    assert interpolate("${BROKER_URL:-redis://redis:6379/0}", {}) == "redis://redis:6379/0"
