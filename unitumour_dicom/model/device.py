"""Which torch device a model runs on, from one short string in the settings."""

from __future__ import annotations

import logging
import os
import re

import torch

from ..errors import ModelError

logger = logging.getLogger(__name__)
_CUDA = re.compile(r"^cuda(?::(\d+))?$")


def select_device(spec: str = "auto") -> torch.device:
    """The device named by ``spec``: "auto" (the first CUDA device if there is one, else the
    CPU), "cpu", "cuda" or "cuda:N".

    Asking for CUDA where there is none is an error rather than a silent fall back to the
    CPU: a worker configured for a GPU that runs 50 times slower should fail loudly.
    """
    text = (spec or "auto").strip().lower()
    if text == "auto":
        device = torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
        logger.info("device auto -> %s", device)
        return device
    if text == "cpu":
        return torch.device("cpu")
    match = _CUDA.match(text)
    if match is None:
        raise ModelError(f"unknown device {spec!r}: use auto, cpu, cuda or cuda:N")
    if not torch.cuda.is_available():
        raise ModelError(
            f"device {spec!r} asked for, but torch sees no CUDA device "
            f"(torch {torch.__version__}, built with CUDA {torch.version.cuda or 'none'})"
        )
    index = int(match.group(1) or 0)
    count = torch.cuda.device_count()
    if index >= count:
        raise ModelError(f"device {spec!r} asked for, but only {count} CUDA device(s) exist")
    return torch.device("cuda", index)


def segmentation_devices(device: str, processes: int | None = None) -> list[str | None]:
    """One entry per segmentation process of a host: the CUDA_VISIBLE_DEVICES value for each.

    ``device`` is ``model.device``; ``processes`` is ``worker.segmentation_processes`` (None
    or 0: one per visible GPU). None in the list means "leave the environment alone": the
    CPU, one named GPU that the processes share as configured, or no GPU visible. The GPUs
    are those CUDA_VISIBLE_DEVICES names when it is set (so a host can lend part of its
    GPUs), else every one torch finds; more processes than GPUs share them round robin.
    """
    count = processes or 0
    text = (device or "auto").strip().lower()
    if text == "cpu" or text.startswith("cuda:"):
        return [None] * (count or 1)
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        gpus = [g.strip() for g in visible.split(",") if g.strip()]
    else:
        try:
            gpus = [str(i) for i in range(torch.cuda.device_count())]
        except Exception:  # pragma: no cover (torch without a working CUDA runtime)
            gpus = []
    if not gpus:
        return [None] * (count or 1)
    count = count or len(gpus)
    return [gpus[i % len(gpus)] for i in range(count)]
