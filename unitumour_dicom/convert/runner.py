"""Run the converter (``worker.py`` in ``.venv-convert``) as a subprocess, within limits.

The core never imports wsidicomizer (it pins an older wsidicom than ours); it starts the
converter's own Python on :mod:`.worker` with a deadline, keeps at most ``max_output_bytes``
of what the converter prints (the tail, where the reason is), and accepts the result only
from a zero exit with the result line. Output goes to a folder the caller owns (a scratch
folder): nothing in it is admitted until the whole conversion has succeeded.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from ..errors import ConfigError, UniTumourError
from .identity import SlideIdentity

log = logging.getLogger(__name__)

RESULT_PREFIX = "UNITUMOUR-CONVERT-RESULT "
WORKER = Path(__file__).with_name("worker.py")
CONVERT_VENV = ".venv-convert"


class ConversionError(UniTumourError):
    """The converter failed, timed out, or wrote nothing usable; the message says why."""


@dataclass(frozen=True)
class Conversion:
    """What one conversion wrote (every file in ``out_dir``) and read from the source."""

    files: list[Path]
    source: dict[str, Any] = field(default_factory=dict)
    log_tail: str = ""


def repository_root() -> Path | None:
    """The source checkout this package runs from, if it runs from one."""
    root = Path(__file__).resolve().parents[2]
    return root if (root / "pyproject.toml").is_file() else None


def converter_python(configured: Path | None) -> Path:
    """The converter's interpreter: the setting, or ``.venv-convert/bin/python`` beside the
    repository; a clear error saying how to make it when there is none."""
    if configured is not None:
        path = Path(configured).expanduser()
        if not path.is_file():
            raise ConfigError(f"watch.converter_python {path} does not exist")
        return path
    root = repository_root()
    candidate = root / CONVERT_VENV / "bin" / "python" if root is not None else None
    if candidate is not None and candidate.is_file():
        return candidate
    raise ConfigError(
        "no converter environment: run 'make venv-convert' in the repository (it makes "
        f"{CONVERT_VENV} with requirements-convert.txt), or set watch.converter_python "
        "(UNITUMOUR_WATCH__CONVERTER_PYTHON) to a Python that has wsidicomizer"
    )


def _die_with_parent() -> None:
    """In the converter's process, before it starts: on Linux, be killed when the process that
    started it dies (PR_SET_PDEATHSIG), so that a crashed watcher leaves no orphan writing
    into the scratch folder that its restart converts into again. (Linux sends it when the
    starting *thread* ends; the watcher's thread outlives each conversion it starts.)"""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: the deadline still ends it
        pass


class _Tail:
    """Keeps the last ``limit`` bytes read from a pipe, in a thread (no deadlock on full pipes)."""

    def __init__(self, stream: IO[bytes], limit: int) -> None:
        self.limit = limit
        self.data = bytearray()
        self.dropped = 0
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: IO[bytes]) -> None:
        while chunk := stream.read(8192):
            self.data += chunk
            if len(self.data) > self.limit:
                cut = len(self.data) - self.limit
                self.dropped += cut
                del self.data[:cut]

    def text(self) -> str:
        self._thread.join(timeout=5)
        prefix = f"[{self.dropped} bytes dropped]\n" if self.dropped else ""
        return prefix + self.data.decode("utf-8", "replace")


def convert_file(
    src: Path,
    out_dir: Path,
    *,
    identity: SlideIdentity,
    uid_seed: str,
    python: Path,
    timeout_s: float,
    max_output_bytes: int = 65536,
    tile_size: int = 512,
    workers: int = 1,
    content_datetime: datetime | None = None,
) -> Conversion:
    """Convert ``src`` into the empty folder ``out_dir``; :class:`ConversionError` on failure.

    The same ``uid_seed`` and ``content_datetime`` give the same files, byte for byte."""
    out_dir.mkdir(parents=True, exist_ok=True)
    if any(out_dir.iterdir()):
        raise ConversionError(f"output folder {out_dir} is not empty")
    spec = {
        "dataset": identity.attributes,
        "uid_seed": uid_seed,
        "tile_size": tile_size,
        "workers": workers,
        "content_datetime": content_datetime.strftime("%Y%m%d%H%M%S")
        if content_datetime is not None
        else None,
    }
    with tempfile.NamedTemporaryFile(
        "w", suffix=".json", prefix="convert-", dir=out_dir.parent, delete=False
    ) as fh:
        json.dump(spec, fh)
        spec_path = Path(fh.name)
    argv = [
        str(python),
        "-I",
        str(WORKER),
        str(src),
        str(out_dir),
        "--json-metadata",
        str(spec_path),
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith("UNITUMOUR_")}
    env.setdefault("PYTHONUNBUFFERED", "1")
    log.info("converting %s with %s", src, python)
    try:
        proc = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            env=env,
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        )
        assert proc.stdout is not None and proc.stderr is not None
        out, err = _Tail(proc.stdout, max_output_bytes), _Tail(proc.stderr, max_output_bytes)
        try:
            code = proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise ConversionError(
                f"the converter took longer than {timeout_s:g} s and was stopped"
            ) from None
    finally:
        spec_path.unlink(missing_ok=True)
    stdout, stderr = out.text(), err.text()
    if code != 0:
        lines = [line for line in stderr.strip().splitlines() if line.strip()]
        reason = lines[-1] if lines else f"exit status {code}"
        raise ConversionError(f"{reason[:2000]} (converter exit status {code})")
    result_lines = [line for line in stdout.splitlines() if line.startswith(RESULT_PREFIX)]
    if not result_lines:
        raise ConversionError("the converter ended without its result line")
    result = json.loads(result_lines[-1][len(RESULT_PREFIX) :])
    files = sorted(p for p in out_dir.iterdir() if p.is_file())
    named = {Path(f).resolve() for f in result.get("files", [])}
    if not files or {p.resolve() for p in files} != named:
        raise ConversionError(
            f"the converter reported {len(named)} file(s) but {len(files)} are in {out_dir}"
        )
    return Conversion(files=files, source=result.get("source", {}), log_tail=stderr[-4000:])
