"""Who holds a lease: a name unique to one claim by one process on one host."""

from __future__ import annotations

import os
import socket
import uuid


def worker_name(role: str = "worker") -> str:
    """``role@host:pid``, the readable part of a lease owner (Celery names workers alike)."""
    return f"{role}@{socket.gethostname()}:{os.getpid()}"


def lease_owner(worker: str) -> str:
    """A lease owner for one claim: the worker's name and a random suffix.

    The suffix keeps a restarted process that happens to get the same pid from ever
    mistaking an old lease for its own. Fits Job.lease_owner (255 characters).
    """
    return f"{worker[:200]}/{uuid.uuid4().hex[:12]}"
