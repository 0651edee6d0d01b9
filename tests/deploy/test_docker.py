"""The container images: Dockerfiles that build from this repository.

No Docker engine runs here, so the tests read the Dockerfiles: every file they copy exists and
is not excluded by the build's ignore file, every ``unitumour`` command they run exists,
every setting they set exists, and torch comes from the CPU index in the CPU image and from a
CUDA index only in the CUDA image.
"""

from __future__ import annotations

import fnmatch
import re
from pathlib import Path

import pytest

from .helpers import DEPLOY, REPO, command_problems, unitumour_calls, unknown_env_names

pytestmark = pytest.mark.unittest

DOCKER = DEPLOY / "docker"
DOCKERFILES = ["Dockerfile.cpu", "Dockerfile.cuda"]


def instructions(name: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in (DOCKER / name).read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        pending += " " + line.rstrip("\\").strip()
        if not line.endswith("\\"):
            word, _, rest = pending.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
            pending = ""
    return out


def _ignored(path: str, patterns: list[str]) -> bool:
    """Docker's .dockerignore semantics, enough for our file: last match wins, ! re-includes."""
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pat = pattern.lstrip("!").rstrip("/")
        if fnmatch.fnmatch(path, pat) or fnmatch.fnmatch(path.split("/")[0], pat):
            ignored = not negate
    return ignored


@pytest.mark.parametrize("name", DOCKERFILES)
def test_copied_files_exist_and_reach_the_build(name: str) -> None:
    ignore = (DOCKER / f"{name}.dockerignore").read_text().splitlines()
    patterns = [p.strip() for p in ignore if p.strip() and not p.startswith("#")]
    copies = [args for word, args in instructions(name) if word == "COPY"]
    assert copies
    sources = []
    for args in copies:
        words = [w for w in args.split() if not w.startswith("--")]
        if any(w.startswith("--from") for w in args.split()):
            continue
        sources += words[:-1]
    assert {"pyproject.toml", "README.md", "unitumour_dicom", "services", "migrations"} <= set(
        sources
    )
    for source in sources:
        assert (REPO / source).exists(), f"{name}: COPY {source} does not exist"
        assert not _ignored(source, patterns), f"{name}: {source} is excluded by the ignore file"
    # the package's own files are inside what is copied (pyproject lists them)
    assert _ignored(".venv", patterns) and _ignored(".git", patterns)


@pytest.mark.parametrize("name", DOCKERFILES)
def test_commands_and_settings(name: str) -> None:
    text = (DOCKER / name).read_text()
    assert unknown_env_names(text) == set()
    runs = [args for word, args in instructions(name) if word == "RUN"]
    calls = [call for args in runs for call in unitumour_calls(args)]
    assert ["--version"] in calls and ["web", "fetch-viewer", "/opt/unitumour/viewer"] in calls
    for argv in calls:
        assert command_problems(argv) == [], argv
    entry = [args for word, args in instructions(name) if word == "ENTRYPOINT"]
    assert entry == ['["unitumour"]']
    env = " ".join(args for word, args in instructions(name) if word == "ENV")
    assert "UNITUMOUR_WEB__VIEWER_DIR=/opt/unitumour/viewer" in env
    assert "UNITUMOUR_DATA_DIR=/var/lib/unitumour" in env
    users = [args for word, args in instructions(name) if word == "USER"]
    assert users == ["unitumour"], "the service does not run as root"


def test_ports_are_the_default_ports() -> None:
    from unitumour_dicom.config.sections import ListenerSettings, WebSettings

    for name in DOCKERFILES:
        (expose,) = [args for word, args in instructions(name) if word == "EXPOSE"]
        assert expose.split() == [
            str(ListenerSettings().port),
            str(WebSettings().port),
        ]


def _torch_index(name: str) -> str:
    args = {}
    for word, rest in instructions(name):
        if word == "ARG" and "=" in rest:
            key, _, value = rest.partition("=")
            args[key] = value
    index = args["TORCH_INDEX_URL"]
    return re.sub(r"\$\{(\w+)\}", lambda m: args[m[1]], index)


def test_torch_comes_from_the_right_index() -> None:
    assert _torch_index("Dockerfile.cpu").endswith("/whl/cpu")
    assert re.search(r"/whl/cu1[0-9]{2}$", _torch_index("Dockerfile.cuda"))
    for name in DOCKERFILES:
        runs = " ".join(args for word, args in instructions(name) if word == "RUN")
        assert '--index-url "${TORCH_INDEX_URL}" "torch==${TORCH_VERSION}"' in runs
        # installing the package afterwards keeps that torch (the range in pyproject allows it)
        assert runs.index("TORCH_INDEX_URL") < runs.index("pip install .")


def test_only_the_cuda_image_installs_from_a_cuda_index() -> None:
    cuda_index = re.compile(r"whl/cu[0-9]|whl/\$\{TORCH_CUDA\}")
    install_files = [
        *(p for p in DEPLOY.rglob("*") if p.is_file()),
        REPO / "Makefile",
        REPO / "pyproject.toml",
        *(REPO / "scripts").glob("*"),
    ]
    hits = [p.relative_to(REPO) for p in install_files if cuda_index.search(p.read_text())]
    assert hits == [Path("deploy/docker/Dockerfile.cuda")]


def test_both_images_install_the_same_way() -> None:
    def body(name: str) -> list[tuple[str, str]]:
        return [(w, a) for w, a in instructions(name) if w not in ("ARG", "LABEL", "ENV")]

    assert body("Dockerfile.cpu") == body("Dockerfile.cuda")
