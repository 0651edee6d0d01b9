"""The Kubernetes manifests for several GPU hosts.

Every document is validated against the Kubernetes API schemas in strict mode (unknown fields
are errors) for the oldest and the newest release we support; then the references between
documents (selectors, Services, volumes, Secrets, ConfigMaps, images), the commands (against
the real CLI), the environment (against the settings) and the deployment rules (schema
upgrade first, one GPU per segmentation pod, graceful stops) are checked.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from .helpers import (
    DEPLOY,
    command_problems,
    load_example_settings,
    unitumour_calls,
    unknown_env_names,
    valid_env_names,
)

pytestmark = pytest.mark.unittest

K8S = DEPLOY / "kubernetes"
#: Kubernetes releases the manifests must be valid for (oldest supported, newest known).
VERSIONS = ("1.28.0", kubernetes_validate.utils.latest_version())
UNITUMOUR_IMAGES = {"unitumour-cpu", "unitumour-cuda"}


def _documents(folder: Path) -> list[dict[str, Any]]:
    kustomization = yaml.safe_load((folder / "kustomization.yaml").read_text())
    docs = []
    for name in kustomization["resources"]:
        docs += [d for d in yaml.safe_load_all((folder / name).read_text()) if d]
    return docs


@pytest.fixture(scope="module")
def kustomization() -> dict[str, Any]:
    return yaml.safe_load((K8S / "kustomization.yaml").read_text())


@pytest.fixture(scope="module")
def docs() -> list[dict[str, Any]]:
    return _documents(K8S)


def _by_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def _pod_spec(doc: dict[str, Any]) -> dict[str, Any]:
    if doc["kind"] == "CronJob":
        return doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return doc["spec"]["template"]["spec"]


def _workloads(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] in ("Deployment", "StatefulSet", "Job", "CronJob")]


def _containers(doc: dict[str, Any]) -> list[dict[str, Any]]:
    spec = _pod_spec(doc)
    return spec.get("initContainers", []) + spec["containers"]


def _unitumour_containers(docs: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    return [
        (d["metadata"]["name"], c)
        for d in _workloads(docs)
        for c in _containers(d)
        if c["image"] in UNITUMOUR_IMAGES
    ]


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("folder", ["kubernetes", "kubernetes/backing"])
def test_every_document_is_valid_kubernetes(folder: str, version: str) -> None:
    secret = yaml.safe_load((K8S / "secret.example.yaml").read_text())
    documents = [*_documents(DEPLOY / folder), secret]
    for doc in documents:
        kubernetes_validate.validate(doc, version, strict=True)


def test_schema_validation_catches_a_misspelt_field(docs: list[dict[str, Any]]) -> None:
    # the check above can fail: a typo that Kubernetes would silently drop is refused here
    deployment = dict(next(d for d in docs if d["kind"] == "Deployment"))
    spec = dict(deployment["spec"])
    spec["replica"] = 2
    deployment["spec"] = spec
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, VERSIONS[-1], strict=True)


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
@pytest.mark.parametrize("folder", ["kubernetes", "kubernetes/backing"])
def test_kustomize_builds(folder: str) -> None:
    built = subprocess.run(
        ["kubectl", "kustomize", str(DEPLOY / folder)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert built.returncode == 0, built.stderr
    kinds = [d["kind"] for d in yaml.safe_load_all(built.stdout) if d]
    assert kinds.count("ConfigMap") == (1 if folder == "kubernetes" else 0)
    if folder == "kubernetes":
        assert "registry.example.org/unitumour-cuda:0.1.0" in built.stdout


def test_the_expected_workloads_exist(docs: list[dict[str, Any]]) -> None:
    deployments = _by_kind(docs, "Deployment")
    assert set(deployments) == {
        "unitumour-listener",
        "unitumour-worker",
        "unitumour-delivery",
        "unitumour-web",
        "unitumour-metrics",
    }
    assert set(_by_kind(docs, "Job")) == {"unitumour-db-upgrade-0-1-0"}
    assert set(_by_kind(docs, "CronJob")) == {"unitumour-retention"}
    assert {"unitumour-listener", "unitumour-web"} <= set(_by_kind(docs, "Service"))


def test_selectors_and_services_match(docs: list[dict[str, Any]]) -> None:
    templates = {}
    for doc in _workloads(docs):
        if doc["kind"] in ("Deployment", "StatefulSet"):
            labels = doc["spec"]["template"]["metadata"]["labels"]
            selector = doc["spec"]["selector"]["matchLabels"]
            assert selector.items() <= labels.items(), doc["metadata"]["name"]
            templates[doc["metadata"]["name"]] = (labels, _containers(doc))
    for name, service in _by_kind(docs, "Service").items():
        matches = [
            containers
            for labels, containers in templates.values()
            if service["spec"]["selector"].items() <= labels.items()
        ]
        assert len(matches) == 1, f"Service {name} selects {len(matches)} workloads"
        port_names = {p.get("name") for c in matches[0] for p in c.get("ports", [])}
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in port_names, f"{name}: {port['targetPort']}"
    for name, ingress in _by_kind(docs, "Ingress").items():
        for rule in ingress["spec"]["rules"]:
            for path in rule["http"]["paths"]:
                assert path["backend"]["service"]["name"] in _by_kind(docs, "Service"), name


def test_volumes_secrets_and_config_exist(
    docs: list[dict[str, Any]], kustomization: dict[str, Any]
) -> None:
    claims = set(_by_kind(docs, "PersistentVolumeClaim"))
    config_maps = {g["name"] for g in kustomization["configMapGenerator"]}
    secret = yaml.safe_load((K8S / "secret.example.yaml").read_text())
    for generator in kustomization["configMapGenerator"]:
        for file in generator["files"]:
            assert (K8S / file).is_file()
    for doc in _workloads(docs):
        spec = _pod_spec(doc)
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        for container in _containers(doc):
            for mount in container.get("volumeMounts", []):
                assert mount["name"] in volumes, f"{doc['metadata']['name']}: {mount['name']}"
            for env in container.get("env", []):
                assert "secretKeyRef" not in env.get("valueFrom", {}), env  # files, not env
        for volume in volumes.values():
            if "persistentVolumeClaim" in volume:
                assert volume["persistentVolumeClaim"]["claimName"] in claims
            if "configMap" in volume:
                assert volume["configMap"]["name"] in config_maps
            if volume.get("secret", {}).get("secretName") == "unitumour-secrets":
                assert "optional" not in volume["secret"]  # no pod starts without them
                for item in volume["secret"]["items"]:
                    assert item["key"] in secret["stringData"], item
                    assert item["path"] in valid_env_names(), item  # named as its variable
            elif "secret" in volume:
                assert volume["secret"].get("optional") is True  # TLS only where configured
    (claim,) = _by_kind(docs, "PersistentVolumeClaim").values()
    # the store is shared by pods on several hosts
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]


def test_images_are_the_two_built_images(
    docs: list[dict[str, Any]], kustomization: dict[str, Any]
) -> None:
    assert {i["name"] for i in kustomization["images"]} == UNITUMOUR_IMAGES
    for doc in _workloads(docs):
        for container in _containers(doc):
            image = container["image"]
            assert image in UNITUMOUR_IMAGES or re.match(r"^(postgres|redis):", image), image
    for name, container in _unitumour_containers(docs):
        if name == "unitumour-worker":
            assert container["image"] == "unitumour-cuda"
        else:
            assert container["image"] == "unitumour-cpu", name


def _calls(container: dict[str, Any]) -> list[list[str]]:
    if "args" in container:
        return [container["args"]]
    return [call for part in container["command"] for call in unitumour_calls(part)]


def test_commands_exist_in_the_cli(docs: list[dict[str, Any]]) -> None:
    seen = set()
    for name, container in _unitumour_containers(docs):
        calls = _calls(container)
        assert calls, f"{name}/{container['name']} runs no unitumour command"
        for argv in calls:
            assert command_problems(argv) == [], f"{name}: {argv}"
            seen.add(" ".join(argv[:3]))
    assert {
        "db upgrade",
        "db current",
        "listener",
        "worker --queue segmentation",
        "worker --queue delivery",
        "web",
        "retention purge --actor",
    } <= seen


def test_schema_is_upgraded_before_pods_start(docs: list[dict[str, Any]]) -> None:
    (job,) = _by_kind(docs, "Job").values()
    assert _pod_spec(job)["containers"][0]["args"] == ["db", "upgrade"]
    for name, deployment in _by_kind(docs, "Deployment").items():
        (init,) = _pod_spec(deployment)["initContainers"]
        assert init["name"] == "wait-for-schema"
        assert _calls(init) == [["db", "current"]], name
        assert "grep -qF '(head)'" in init["command"][-1]


def test_environment_names_are_settings(docs: list[dict[str, Any]]) -> None:
    for path in K8S.rglob("*.yaml"):
        assert unknown_env_names(path.read_text()) == set(), path
    for name, container in _unitumour_containers(docs):
        for env in container.get("env", []):
            assert env["name"].startswith("UNITUMOUR_"), f"{name}: {env['name']}"


def _resolved_env(doc: dict[str, Any], container: dict[str, Any], tmp_path: Path) -> dict[str, str]:
    """The container's environment, with its Secret volume written out as the kubelet would
    (one file per item) and UNITUMOUR_SECRETS_DIR pointed at that folder."""
    secret = yaml.safe_load((K8S / "secret.example.yaml").read_text())["stringData"]
    env = {item["name"]: item["value"] for item in container.get("env", [])}
    volumes = {v["name"]: v for v in _pod_spec(doc)["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    folder = tmp_path / "secrets"
    folder.mkdir()
    for item in volumes[mounts[env["UNITUMOUR_SECRETS_DIR"]]]["secret"]["items"]:
        (folder / item["path"]).write_text(secret[item["key"]])
    env["UNITUMOUR_SECRETS_DIR"] = str(folder)
    return env


@pytest.mark.parametrize(
    "workload",
    [
        "unitumour-listener",
        "unitumour-worker",
        "unitumour-delivery",
        "unitumour-web",
        "unitumour-metrics",
        "unitumour-retention",
        "unitumour-db-upgrade-0-1-0",
    ],
)
def test_each_pod_starts_with_valid_settings(
    docs: list[dict[str, Any]], workload: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (doc,) = [d for d in _workloads(docs) if d["metadata"]["name"] == workload]
    container = _pod_spec(doc)["containers"][0]
    env = _resolved_env(doc, container, tmp_path)
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert mounts[env["UNITUMOUR_CONFIG"]]["subPath"] == "unitumour.toml"
    settings = load_example_settings(K8S / "unitumour.toml", env, tmp_path, monkeypatch)
    assert settings.database_url.startswith("postgresql+psycopg://")
    if workload != "unitumour-db-upgrade-0-1-0":
        assert str(settings.data_dir) in mounts, "the data directory must be the shared volume"
    if workload == "unitumour-worker":
        assert settings.model.device == "cuda"
        assert settings.worker.segmentation_processes == 1
    if workload in ("unitumour-web", "unitumour-metrics"):
        assert settings.web.secret_key is not None and settings.web.secure_cookies
        assert settings.web.secret_key.get_secret_value() == "change-me"  # read from its file
    if workload != "unitumour-db-upgrade-0-1-0":
        assert settings.broker_url.startswith("redis://") or workload == "unitumour-retention"
    if workload in ("unitumour-listener", "unitumour-worker", "unitumour-delivery"):
        # per pod, in the pod's own emptyDir: a shared liveness file would prove nothing
        assert settings.liveness_dir is not None
        volumes = {v["name"]: v for v in _pod_spec(doc)["volumes"]}
        (tmp,) = [p for p in mounts if settings.liveness_dir.is_relative_to(p)]
        assert "emptyDir" in volumes[mounts[tmp]["name"]]


def test_ports_probes_and_graceful_stops(
    docs: list[dict[str, Any]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = load_example_settings(
        K8S / "unitumour.toml", {"UNITUMOUR_MODEL__DEVICE": "cuda"}, tmp_path, monkeypatch
    )
    deployments = _by_kind(docs, "Deployment")
    listener = deployments["unitumour-listener"]
    (port,) = listener["spec"]["template"]["spec"]["containers"][0]["ports"]
    assert port["containerPort"] == settings.listener.port and settings.listener.host == "0.0.0.0"
    # one listener per store: its start-up reconcile owns the spool
    assert listener["spec"]["replicas"] == 1
    assert listener["spec"]["strategy"]["type"] == "Recreate"
    container = _pod_spec(listener)["containers"][0]
    # a probe on the DICOM port would be audited (a failed TLS handshake, an association):
    # the listener's probes read its liveness file
    for kind in ("startupProbe", "livenessProbe"):
        assert _probe_call(container[kind])[:2] == ["health", "listener"]
    assert "readinessProbe" not in container
    grace = _pod_spec(listener)["terminationGracePeriodSeconds"]
    assert grace > settings.listener.shutdown_grace_s
    service = _by_kind(docs, "Service")["unitumour-listener"]
    assert service["spec"]["externalTrafficPolicy"] == "Local"  # keeps the caller's address
    web = deployments["unitumour-web"]["spec"]["template"]["spec"]["containers"][0]
    assert web["ports"][0]["containerPort"] == settings.web.port
    assert web["livenessProbe"]["httpGet"]["path"] == "/healthz"
    # the database only: a broker or store outage must not take every replica out of service
    assert web["readinessProbe"]["httpGet"]["path"] == "/readyz?check=database"
    worker = _pod_spec(deployments["unitumour-worker"])
    for name in ("unitumour-worker", "unitumour-delivery"):
        container = _pod_spec(deployments[name])["containers"][0]
        for kind in ("startupProbe", "livenessProbe"):
            assert _probe_call(container[kind])[:2] == ["health", "worker"], name
    # a hung GPU job beats no more: the liveness limit is the slowest stage, not a whole job
    (live,) = [c["livenessProbe"] for c in worker["containers"]]
    max_age = float(_probe_call(live)[-1])
    assert live["periodSeconds"] * live["failureThreshold"] + max_age <= 1800
    # GPU Feature Discovery labels are not on every cluster: the GPU limit places the pod
    assert "nodeSelector" not in worker
    assert worker["terminationGracePeriodSeconds"] > settings.worker.shutdown_timeout_s
    assert worker["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert "nvidia.com/gpu" not in str(_pod_spec(deployments["unitumour-delivery"]))


def _probe_call(probe: dict[str, Any]) -> list[str]:
    """The unitumour arguments of an exec probe, checked against the real CLI."""
    command = probe["exec"]["command"]
    assert command[0] == "unitumour", command
    assert command_problems(command[1:]) == [], command
    return command[1:]


def test_disruption_budgets_keep_web_and_listener_up(docs: list[dict[str, Any]]) -> None:
    budgets = _by_kind(docs, "PodDisruptionBudget")
    deployments = _by_kind(docs, "Deployment")
    for name in ("unitumour-web", "unitumour-listener"):
        budget = budgets[name]
        labels = deployments[name]["spec"]["template"]["metadata"]["labels"]
        assert budget["spec"]["selector"]["matchLabels"].items() <= labels.items()
        assert budget["spec"]["minAvailable"] >= 1
    # web: a drain may take one of its replicas at a time, never all
    assert (
        budgets["unitumour-web"]["spec"]["minAvailable"]
        < deployments["unitumour-web"]["spec"]["replicas"]
    )
    # a crash-looping listener must not block a drain
    assert budgets["unitumour-listener"]["spec"]["unhealthyPodEvictionPolicy"] == "AlwaysAllow"


def test_service_metrics_are_exported_by_one_pod(
    docs: list[dict[str, Any]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # each exporting pod reports the same whole-service numbers: scraped twice, sums double
    exporters = 0
    for name, deployment in _by_kind(docs, "Deployment").items():
        template = deployment["spec"]["template"]
        container = template["spec"]["containers"][0]
        if container.get("args") != ["web"]:
            assert "prometheus.io/scrape" not in template["metadata"].get("annotations", {})
            continue
        env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
        monkeypatch.setenv("UNITUMOUR_WEB__SERVICE_METRICS", env["UNITUMOUR_WEB__SERVICE_METRICS"])
        settings = load_example_settings(K8S / "unitumour.toml", {}, tmp_path, monkeypatch)
        scraped = template["metadata"].get("annotations", {}).get("prometheus.io/scrape")
        assert (scraped == "true") is settings.web.service_metrics, name
        if settings.web.service_metrics:
            exporters += deployment["spec"]["replicas"]
    assert exporters == 1
