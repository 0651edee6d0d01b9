"""When a dropped file is complete: its size and mtime unchanged for the quiet time.

Scanners and file shares write large files over minutes and give no signal at the end, so a
file is taken only after this process has seen the same (size, mtime) for ``quiet_seconds``
on its own monotonic clock (not the file's mtime alone: a share's clock may differ from ours).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


@dataclass
class _Seen:
    size: int
    mtime_ns: int
    since: float


class StabilityTracker:
    """Remembers each candidate's last (size, mtime) and since when it has been unchanged."""

    def __init__(self, quiet_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.quiet_seconds = quiet_seconds
        self.clock = clock
        self._seen: dict[Path, _Seen] = {}

    def is_stable(self, path: Path) -> bool:
        """Observe ``path`` now; True once it has not changed for the quiet time."""
        try:
            st = path.stat()
        except FileNotFoundError:
            self._seen.pop(path, None)
            return False
        now = self.clock()
        seen = self._seen.get(path)
        if seen is None or (seen.size, seen.mtime_ns) != (st.st_size, st.st_mtime_ns):
            self._seen[path] = _Seen(st.st_size, st.st_mtime_ns, now)
            return False
        return st.st_size > 0 and now - seen.since >= self.quiet_seconds

    def forget(self, path: Path) -> None:
        self._seen.pop(path, None)

    def keep_only(self, paths: set[Path]) -> None:
        """Drop what is no longer in the folder."""
        for gone in set(self._seen) - paths:
            del self._seen[gone]
