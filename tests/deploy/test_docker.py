"""The container images: Dockerfiles that build from this repository.

No Docker engine runs here, so the tests read the Dockerfiles: every file they copy exists and
is not excluded by the build's ignore file, every ``unitumour`` command they run exists,
every setting they set exists, and each image installs its own hash-pinned lock: torch's CPU
build in the CPU image, a CUDA build only in the CUDA image (tests/test_lock.py checks the locks).
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


def _args(name: str) -> dict[str, str]:
    args = {}
    for word, rest in instructions(name):
        if word == "ARG" and "=" in rest:
            key, _, value = rest.partition("=")
            args[key] = value
    return args


def test_each_image_installs_its_lock_by_hash_then_the_package_alone() -> None:
    assert _args("Dockerfile.cpu")["LOCK"] == "requirements/runtime-cpu.txt"
    assert _args("Dockerfile.cuda")["LOCK"] == "requirements/runtime-cuda.txt"
    # the CPU torch wheel is not on PyPI: found through PyTorch's CPU index page (or a mirror)
    assert _args("Dockerfile.cpu")["TORCH_FIND_LINKS"].endswith("/whl/cpu/torch/")
    assert _args("Dockerfile.cuda")["TORCH_FIND_LINKS"] == ""
    assert _args("Dockerfile.cpu")["TORCH_LOCK"] == "requirements/torch-cpu.txt"
    assert _args("Dockerfile.cuda")["TORCH_LOCK"] == "requirements/torch-cuda.txt"
    for name in DOCKERFILES:
        assert (REPO / _args(name)["LOCK"]).is_file()
        assert (REPO / _args(name)["TORCH_LOCK"]).is_file()
        runs = [args for word, args in instructions(name) if word == "RUN"]
        (lock_run,) = [r for r in runs if '-r "$LOCK"' in r]
        torch_first, rest = lock_run.split(" && ")
        assert '--no-deps ${TORCH_FIND_LINKS:+--find-links "$TORCH_FIND_LINKS"}' in torch_first
        assert torch_first.endswith('-r "$TORCH_LOCK"')
        for step in (torch_first, rest):
            assert "--require-hashes --only-binary :all:" in step
        (package_run,) = [r for r in runs if "pip install --no-deps --no-build-isolation ." in r]
        assert runs.index(lock_run) < runs.index(package_run)
        # no other pip install: nothing reaches the image around the lock
        assert sum(r.count("pip install") for r in runs) == 3


def test_only_the_cuda_image_installs_cuda() -> None:
    """CUDA libraries (a CUDA wheel index, nvidia-* wheels, the CUDA lock) reach only the CUDA
    image: the Makefile, the CPU image and the CPU locks name none of them."""
    cuda = re.compile(r"whl/cu[0-9]|whl/\$\{TORCH_CUDA\}|runtime-cuda|^nvidia-", re.MULTILINE)
    install_files = [
        *(p for p in DEPLOY.rglob("*") if p.is_file()),
        REPO / "Makefile",
        REPO / "pyproject.toml",
        *(REPO / "scripts").glob("*"),
        *(REPO / "requirements").glob("*"),
    ]
    hits = {p.relative_to(REPO) for p in install_files if cuda.search(p.read_text())}
    assert hits == {
        Path("deploy/docker/Dockerfile.cuda"),
        Path("requirements/cuda.in"),
        Path("requirements/runtime-cuda.txt"),
        Path("requirements/torch-cuda.txt"),
        Path("scripts/lock.sh"),  # writes it
    }


def test_both_images_install_the_same_way() -> None:
    def body(name: str) -> list[tuple[str, str]]:
        return [(w, a) for w, a in instructions(name) if w not in ("ARG", "LABEL", "ENV")]

    assert body("Dockerfile.cpu") == body("Dockerfile.cuda")
