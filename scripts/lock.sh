#!/usr/bin/env bash
# `make lock`: regenerate the hash-pinned locks in requirements/ from pyproject.toml's ranges.
#
#   requirements/dev-cpu.txt       runtime + test extra, torch CPU build  make venv (test, demo, CI)
#   requirements/runtime-cpu.txt   runtime, torch CPU build               deploy/docker/Dockerfile.cpu
#   requirements/runtime-cuda.txt  runtime, torch CUDA build (PyPI)       deploy/docker/Dockerfile.cuda
#   requirements/torch-{cpu,cuda}.txt  torch's entry alone of each flavour: installed first
#   requirements/tools.txt         the lock generator (uv), for this script only
#
# pyproject.toml keeps the compatible ranges; the locks are one exact, tested set for Linux
# x86_64 (manylinux_2_28), CPython 3.11, wheels only, every file pinned by sha256.
# Every package comes from PyPI (INDEX_URL) except the CPU build of torch (requirements/cpu.in:
# torch==2.13.0+cpu), which only PyTorch's CPU wheel index has: TORCH_CPU_WHEELS is a page or a
# directory that lists that wheel (a local mirror holding the same file gives the same sha256).
# The CUDA lock takes PyPI's torch (its CUDA 13.0 build); for another CUDA build, name it in
# requirements/cuda.in and give the page of PyTorch's index that lists it as TORCH_CUDA_WHEELS.
# The runtime locks take every version they share with dev-cpu.txt from it, so that the images
# run what the tests ran. Existing pins are kept; UPGRADE=1 moves each package to the newest
# release that its range allows (then run the tests).
#
# uv is installed from requirements/tools.txt into build/lock-tools (git-ignored), never into
# .venv: the lock generator is not a dependency of the package.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
INDEX_URL=${INDEX_URL:-https://pypi.org/simple}
TORCH_CPU_WHEELS=${TORCH_CPU_WHEELS:-https://download.pytorch.org/whl/cpu/torch/}
TORCH_CUDA_WHEELS=${TORCH_CUDA_WHEELS:-}
TOOLS=build/lock-tools
WORK=build/lock

if [ ! -x "$TOOLS/bin/uv" ] || ! cmp -s requirements/tools.txt "$TOOLS/installed.txt"; then
    rm -rf "$TOOLS"
    "$PYTHON" -m venv "$TOOLS"
    "$TOOLS/bin/python" -m pip install -q --require-hashes --only-binary :all: \
        -r requirements/tools.txt
    cp requirements/tools.txt "$TOOLS/installed.txt"
fi
mkdir -p "$WORK"

compile() {
    "$TOOLS/bin/uv" pip compile --no-config --quiet \
        --python-version 3.11 --python-platform x86_64-manylinux_2_28 --only-binary :all: \
        --generate-hashes --index-url "$INDEX_URL" --custom-compile-command "make lock" \
        ${UPGRADE:+--upgrade} "$@"
}

compile requirements/tools.in -o requirements/tools.txt
cp requirements/tools.txt "$TOOLS/installed.txt"

compile pyproject.toml --extra test requirements/cpu.in --find-links "$TORCH_CPU_WHEELS" \
    -o requirements/dev-cpu.txt

# name==version of every package in dev-cpu.txt but torch (whose build differs per flavour).
sed -n 's/^\([A-Za-z0-9._-]*==[^ ]*\).*/\1/p' requirements/dev-cpu.txt \
    | grep -v '^torch==' >"$WORK/dev-pins.txt"

compile pyproject.toml requirements/cpu.in -c "$WORK/dev-pins.txt" \
    --find-links "$TORCH_CPU_WHEELS" -o requirements/runtime-cpu.txt
compile pyproject.toml requirements/cuda.in -c "$WORK/dev-pins.txt" \
    ${TORCH_CUDA_WHEELS:+--find-links "$TORCH_CUDA_WHEELS"} -o requirements/runtime-cuda.txt

# torch's entry alone (pin and sha256s), installed first with --no-deps: pip then looks up the
# torch wheel page (TORCH_CPU_WHEELS) for torch only; given with the whole lock, pip would fetch
# that page once for every package in it.
torch_entry() {
    {
        echo "# torch from $1 alone (make lock): installed first, then the whole lock."
        awk '/^torch==/ { p = 1 } p { print; if ($0 !~ /\\$/) exit }' "$1"
    } >"$2"
}
torch_entry requirements/runtime-cpu.txt requirements/torch-cpu.txt
torch_entry requirements/runtime-cuda.txt requirements/torch-cuda.txt

echo "locks written: requirements/{dev-cpu,runtime-cpu,runtime-cuda,torch-cpu,torch-cuda,tools}.txt"
