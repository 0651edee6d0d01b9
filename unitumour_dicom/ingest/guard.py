"""Who holds the listener's connections, so that no peer can take them all.

pynetdicom counts every open connection against ``maximum_associations``, including those that
have not sent a complete A-ASSOCIATE-RQ yet: five silent TCP connections lock every scanner out.
The guard keeps its own table instead, with three separate bounds:

- *per source address*: at most ``listener.max_connections_per_host`` connections from one IP
  address, established or not; one more is closed at once;
- *waiting to associate* (connected, no complete association request yet): at most
  ``listener.max_pending_connections``; when a new connection would pass it, the one that has
  waited longest is dropped. A sender that sends its request at once (every real one does, in
  milliseconds) therefore always gets its turn, however many idle connections an attacker holds;
  each of those is dropped after ``acse_timeout_s`` anyway;
- *associations*: at most ``listener.max_associations`` established at once, counted over
  connections whose request was received, so idle connections never use up these slots.

Each connection is a :class:`ConnectionTicket`; whoever ends one early says why, and the
listener audits that reason with the peer's address (rate-limited per address, so that a flood
cannot flood the audit log too).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)


@dataclass(eq=False)
class ConnectionTicket:
    """One accepted TCP connection, from accept to close."""

    id: int
    host: str
    port: int | None
    sock: socket.socket | None
    opened_at: float = field(default_factory=time.monotonic)
    associated: bool = False
    closed: bool = False
    #: Why we ended it (a limit, a deadline, a violation); None while open or if the peer did.
    reason: str | None = None
    #: The association (pynetdicom thread) serving it, once there is one.
    assoc: Any = None
    #: Its row in the associations table and the calling AE title, once its request arrived.
    association_id: int | None = None
    calling_ae: str | None = None


@dataclass(frozen=True)
class GuardLimits:
    max_associations: int
    max_pending: int
    max_per_host: int


class ConnectionGuard:
    """The table of open connections and the three limits above (thread-safe)."""

    def __init__(
        self,
        limits: GuardLimits,
        *,
        on_dropped: Callable[[ConnectionTicket], None] | None = None,
    ) -> None:
        self.limits = limits
        self.on_dropped = on_dropped
        self._lock = threading.Lock()
        self._open: dict[int, ConnectionTicket] = {}
        self._ids = itertools.count(1)

    # -- counts (for tests, metrics and logs) -------------------------------------------------
    @property
    def open_connections(self) -> int:
        with self._lock:
            return len(self._open)

    @property
    def pending_connections(self) -> int:
        with self._lock:
            return sum(1 for t in self._open.values() if _waiting(t))

    @property
    def associations(self) -> int:
        with self._lock:
            return sum(1 for t in self._open.values() if t.associated)

    # -- life of a connection ---------------------------------------------------------------
    def open(self, host: str, port: int | None, sock: socket.socket | None) -> ConnectionTicket:
        """Register a new connection; its ``reason`` is set (and it is closed) if refused."""
        ticket = ConnectionTicket(next(self._ids), host, port, sock)
        evicted: ConnectionTicket | None = None
        with self._lock:
            from_host = sum(1 for t in self._open.values() if t.host == host)
            if from_host >= self.limits.max_per_host:
                ticket.reason = (
                    f"{from_host} connections from {host} already open "
                    f"(listener.max_connections_per_host = {self.limits.max_per_host})"
                )
                ticket.closed = True
            else:
                pending = [t for t in self._open.values() if _waiting(t)]
                if len(pending) >= self.limits.max_pending:
                    evicted = min(pending, key=lambda t: t.opened_at)
                    evicted.reason = (
                        f"waited {time.monotonic() - evicted.opened_at:.1f} s without an "
                        f"association request while {len(pending)} connections were waiting "
                        f"(listener.max_pending_connections = {self.limits.max_pending}); "
                        "the longest waiting was dropped"
                    )
                self._open[ticket.id] = ticket
        if ticket.closed:
            _shutdown(sock)
            self._report(ticket)
        if evicted is not None:
            self.drop(evicted, evicted.reason or "evicted")
        return ticket

    def try_associate(self, ticket: ConnectionTicket) -> bool:
        """Take an association slot for a connection whose request arrived; False when full."""
        with self._lock:
            if ticket.associated:
                return True
            if ticket.closed:
                return False
            in_use = sum(1 for t in self._open.values() if t.associated)
            if in_use >= self.limits.max_associations:
                return False
            ticket.associated = True
            return True

    def drop(self, ticket: ConnectionTicket, reason: str) -> None:
        """End a connection early for ``reason`` (its reader sees the close and stops)."""
        with self._lock:
            if ticket.reason is None:
                ticket.reason = reason
        _shutdown(ticket.sock)

    def close(self, ticket: ConnectionTicket | None) -> None:
        """The connection is gone; idempotent. Reports it if we ended it for a reason."""
        if ticket is None:
            return
        with self._lock:
            if ticket.closed and ticket.id not in self._open:
                return
            ticket.closed = True
            self._open.pop(ticket.id, None)
        if ticket.reason is not None:
            self._report(ticket)

    def drop_all(self) -> None:
        with self._lock:
            tickets = list(self._open.values())
        for ticket in tickets:
            _shutdown(ticket.sock)

    def _report(self, ticket: ConnectionTicket) -> None:
        log.warning(
            "connection %d from %s:%s ended: %s", ticket.id, ticket.host, ticket.port, ticket.reason
        )
        if self.on_dropped is not None:
            try:
                self.on_dropped(ticket)
            except Exception:  # an audit failure must not take the accept path down
                log.exception("cannot report the end of connection %d", ticket.id)


def _waiting(ticket: ConnectionTicket) -> bool:
    """Connected, no association yet, and not already being dropped."""
    return not ticket.associated and ticket.reason is None


def _shutdown(sock: socket.socket | None) -> None:
    if sock is None:
        return
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


class AuditThrottle:
    """Lets one audit row per (address, kind) through per ``interval_s``; counts the rest.

    An attacker that opens thousands of connections a second must not turn each into a
    database write; the row that does get through says how many were folded into it.
    """

    def __init__(self, interval_s: float = 10.0, max_keys: int = 4096) -> None:
        self.interval_s = interval_s
        self.max_keys = max_keys
        self._lock = threading.Lock()
        self._last: dict[tuple[str, str], tuple[float, int]] = {}

    def admit(self, host: str, kind: str) -> int | None:
        """None to suppress; otherwise how many were suppressed since the last row."""
        now = time.monotonic()
        key = (host, kind)
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last[0] < self.interval_s:
                self._last[key] = (last[0], last[1] + 1)
                return None
            if len(self._last) >= self.max_keys:
                stale = [k for k, (t, _) in self._last.items() if now - t >= self.interval_s]
                for k in stale or list(self._last)[: self.max_keys // 2]:
                    del self._last[k]
            self._last[key] = (now, 0)
            return last[1] if last is not None else 0
