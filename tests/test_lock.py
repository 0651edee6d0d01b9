"""The hash-pinned locks in requirements/ agree with the ranges in pyproject.toml.

pyproject.toml says what the package works with (ranges); the locks say what is installed
(one exact set, every file by sha256). `make lock` writes the locks; these checks catch a
pyproject edit that was not followed by `make lock`, or a lock edited by hand. Offline: they
read files only.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

pytestmark = pytest.mark.unittest

ROOT = Path(__file__).resolve().parents[1]
REQUIREMENTS = ROOT / "requirements"
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
RUNTIME = [Requirement(r) for r in PROJECT["dependencies"]]
TEST_EXTRA = [Requirement(r) for r in PROJECT["optional-dependencies"]["test"]]

#: lock file -> (what it must cover, the torch build it pins)
LOCKS = {
    "dev-cpu.txt": (RUNTIME + TEST_EXTRA, "cpu"),
    "runtime-cpu.txt": (RUNTIME, "cpu"),
    "runtime-cuda.txt": (RUNTIME, "cuda"),
}
#: sha256 of torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl, the file that PyTorch's
#: CPU wheel index (https://download.pytorch.org/whl/cpu/torch/) lists.
TORCH_CPU_SHA256 = "6746dbcbeb526eb61330b76b41ff1b4eb848951103a892eeb080dfa2b264667b"

_PIN = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>\S+)(?P<rest>.*)$")
_HASH = re.compile(r"--hash=sha256:([0-9a-f]{64})\b")


def read_lock(name: str) -> dict[str, tuple[Version, list[str]]]:
    """{canonical name: (version, sha256s)}; fails on any line that is not an exact, hashed pin."""
    text = (REQUIREMENTS / name).read_text()
    entries: dict[str, tuple[Version, list[str]]] = {}
    logical = re.sub(r"\\\n", " ", text)
    for line in logical.splitlines():
        line = line.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        match = _PIN.match(line)
        assert match, f"{name}: not an exact pin: {line[:80]}"
        hashes = _HASH.findall(match["rest"])
        assert hashes, f"{name}: {match['name']} has no sha256"
        assert ";" not in match["rest"], f"{name}: {match['name']} has a marker"
        key = canonicalize_name(match["name"])
        assert key not in entries, f"{name}: {key} twice"
        entries[key] = (Version(match["version"]), hashes)
    return entries


@pytest.mark.parametrize("lock", sorted(LOCKS))
def test_every_dependency_is_pinned_within_its_range(lock: str) -> None:
    pins = read_lock(lock)
    required, _ = LOCKS[lock]
    missing = [str(r) for r in required if canonicalize_name(r.name) not in pins]
    assert missing == [], f"{lock} lacks these (run make lock)"
    outside = [
        f"{r.name}=={pins[canonicalize_name(r.name)][0]} not in {r.specifier}"
        for r in required
        if not r.specifier.contains(pins[canonicalize_name(r.name)][0], prereleases=True)
    ]
    assert outside == [], f"{lock} disagrees with pyproject.toml (run make lock)"


def test_extras_of_dependencies_are_locked() -> None:
    # the extras that pyproject asks for bring these in
    pins = read_lock("runtime-cpu.txt")
    assert {"psycopg-binary", "redis"} <= set(pins)


@pytest.mark.parametrize("lock", sorted(LOCKS))
def test_torch_build_matches_the_flavour(lock: str) -> None:
    pins = read_lock(lock)
    version, hashes = pins["torch"]
    cuda_libraries = {name for name in pins if name.startswith("nvidia-")}
    if LOCKS[lock][1] == "cpu":
        # the CPU build, and only that one file: a CUDA build's hash cannot match
        assert version.local == "cpu"
        assert hashes == [TORCH_CPU_SHA256]
        assert cuda_libraries == set()
    else:
        assert version.local is None  # PyPI's build, with CUDA
        assert {"nvidia-cudnn-cu13", "nvidia-nccl-cu13", "triton"} <= set(pins)
    assert version.public == read_lock("dev-cpu.txt")["torch"][0].public


@pytest.mark.parametrize("lock", ["runtime-cpu.txt", "runtime-cuda.txt"])
def test_images_run_the_versions_the_tests_ran(lock: str) -> None:
    dev = read_lock("dev-cpu.txt")
    runtime = read_lock(lock)
    differ = {
        name: (str(version), str(dev[name][0]))
        for name, (version, _) in runtime.items()
        if name in dev and name != "torch" and version != dev[name][0]
    }
    assert differ == {}
    cpu_only = set(runtime) - set(dev)
    assert lock == "runtime-cuda.txt" or cpu_only == set()


def test_the_package_builds_from_the_lock() -> None:
    """make venv and the images build this package without build isolation, with the lock's
    setuptools: it must be there and satisfy [build-system]."""
    build = tomllib.loads((ROOT / "pyproject.toml").read_text())["build-system"]["requires"]
    setuptools = next(Requirement(r) for r in build if r.startswith("setuptools"))
    for lock in LOCKS:
        version, _ = read_lock(lock)["setuptools"]
        assert setuptools.specifier.contains(version)
        assert version >= Version("70.1")  # builds wheels without the `wheel` package


@pytest.mark.parametrize("flavour", ["cpu", "cuda"])
def test_torch_alone_is_the_locks_torch_entry(flavour: str) -> None:
    """requirements/torch-*.txt (installed first) is the lock's torch, same hashes."""
    alone = read_lock(f"torch-{flavour}.txt")
    assert list(alone) == ["torch"]
    assert alone["torch"] == read_lock(f"runtime-{flavour}.txt")["torch"]


def test_lock_inputs_name_the_locked_torch() -> None:
    for source, lock in (("cpu.in", "runtime-cpu.txt"), ("cuda.in", "runtime-cuda.txt")):
        lines = (REQUIREMENTS / source).read_text().splitlines()
        (pin,) = [line for line in lines if line.startswith("torch==")]
        assert Version(pin.removeprefix("torch==")) == read_lock(lock)["torch"][0]


def test_make_venv_installs_the_dev_lock_by_hash() -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert "LOCK := requirements/dev-cpu.txt" in makefile
    torch_first = re.search(
        r"pip install [^\n]*--require-hashes[^\n]*--no-deps \\\n"
        r"\s*--find-links \$\(TORCH_CPU_WHEELS\) -r requirements/torch-cpu.txt\n",
        makefile,
    )
    assert torch_first, "make venv installs torch alone first, by hash"
    lock = "pip install -q --require-hashes --only-binary :all: -r $(LOCK)\n"
    assert lock in makefile[torch_first.end() :]
    assert "pip install -q --no-deps --no-build-isolation -e ." in makefile
