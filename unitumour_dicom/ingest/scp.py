"""The storage SCP: pynetdicom wired to the admission policy, validation and admission.

Handlers stay small and turn every failure into a named status: association requests go
through :class:`AdmissionPolicy`; each C-STORE data set is streamed into a :class:`SpoolFile`
and handed to the one receive path (:class:`~.receive.Receiver`: validation, durable
admission, audit) before its status is answered.
Every association gets a row (accepted or rejected) and every refusal an audit row.
"""

from __future__ import annotations

import logging
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pynetdicom import AE, evt
from sqlalchemy import update
from sqlalchemy.exc import SQLAlchemyError

from ..config.sections import ListenerSettings
from ..db import Association, AssociationState, IntakePath, record_event
from ..db.types import utcnow
from ..runtime import Runtime
from . import logcontext
from .admit import ReceivedFile
from .contexts import supported_contexts
from .events import IngestEvent
from .guard import AuditThrottle, ConnectionGuard, ConnectionTicket, GuardLimits
from .policy import AdmissionDecision, AdmissionPolicy
from .receive import IntakeInfo, Receiver
from .spool import SpoolDirectory, SpoolFile, install_spool_factory, uninstall_spool_factory
from .status import (
    LOCAL_LIMIT_EXCEEDED,
    TEMPORARY_CONGESTION,
    StoreStatus,
    describe_rejection,
)
from .tls import certificate_subject, server_ssl_context
from .transport import ListenerRequestHandler, ListenerServer
from .wire import PduLimits

log = logging.getLogger(__name__)

ACTOR = "listener"


@dataclass
class _AssociationState:
    """What the listener knows about one association while it lasts."""

    calling_ae: str
    peer_host: str
    peer_port: int | None
    decision: AdmissionDecision
    id: int | None = None
    tls: bool = False
    client_cert_subject: str | None = None
    released: bool = False
    aborted: bool = False
    rejected: bool = False
    finished: bool = False
    spools: dict[str, SpoolFile] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


class StorageSCP:
    """One DICOM storage SCP over one runtime's store and database."""

    def __init__(
        self,
        runtime: Runtime,
        *,
        settings: ListenerSettings | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.runtime = runtime
        self.settings = settings or runtime.settings.listener
        self.clock = clock
        self.policy = AdmissionPolicy(self.settings)
        self.receiver = Receiver(runtime, settings=self.settings, clock=clock)
        self.limits = self.receiver.limits
        self.allowed_sop_classes = self.receiver.allowed_sop_classes
        self.admitter = self.receiver.admitter
        self.spool = SpoolDirectory(runtime.store)
        self._states: dict[Any, _AssociationState] = {}
        self._states_lock = threading.Lock()
        self._stopping = False
        self._server: ListenerServer | None = None
        self.guard = ConnectionGuard(
            GuardLimits(
                max_associations=self.settings.max_associations,
                max_pending=self.settings.max_pending_connections,
                max_per_host=self.settings.max_connections_per_host,
            ),
            on_dropped=self._on_connection_dropped,
        )
        self._audit_throttle = AuditThrottle()
        self._server_thread: threading.Thread | None = None
        self.ae = self._make_ae()

    # -- set-up ----------------------------------------------------------------------------
    def _make_ae(self) -> AE:
        s = self.settings
        ae = AE(ae_title=s.ae_title)
        # The guard counts associations itself, over connections whose request arrived;
        # pynetdicom's own count includes idle connections, so it must never bite first.
        ae.maximum_associations = s.max_associations + s.max_pending_connections + 1
        ae.maximum_pdu_size = s.max_pdu_bytes
        ae.network_timeout = s.network_timeout_s
        ae.acse_timeout = s.acse_timeout_s
        ae.dimse_timeout = s.network_timeout_s
        ae.require_called_aet = False  # the policy checks it and audits the refusal
        ae.require_calling_aet = []
        ae.supported_contexts = supported_contexts(s.extra_sop_classes)
        return ae

    def _handlers(self) -> list[Any]:
        return [
            (evt.EVT_REQUESTED, self._on_requested),
            (evt.EVT_REJECTED, self._on_rejected),
            (evt.EVT_ACCEPTED, self._on_accepted),
            (evt.EVT_C_STORE, self._on_c_store),
            (evt.EVT_RELEASED, self._on_released),
            (evt.EVT_ABORTED, self._on_aborted),
            (evt.EVT_CONN_CLOSE, self._on_conn_close),
        ]

    @property
    def address(self) -> tuple[str, int]:
        if self._server is None:
            raise RuntimeError("the listener is not running")
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    @property
    def active_associations(self) -> int:
        return len(self._server.active_associations) if self._server is not None else 0

    def start(self) -> tuple[str, int]:
        """Listen (without blocking); returns the bound address (port 0 picks a free port)."""
        self.spool.lock()
        install_spool_factory(self.ae, self._open_spool)
        ssl_context = server_ssl_context(self.settings.tls) if self.settings.tls.enabled else None
        server = self.ae.make_server(
            (self.settings.host, self.settings.port),
            ssl_context=ssl_context,
            evt_handlers=self._handlers(),
            server_class=ListenerServer,
            request_handler=ListenerRequestHandler,
        )
        assert isinstance(server, ListenerServer)
        server.on_tls_failure = self._on_tls_failure
        server.handshake_timeout_s = self.settings.acse_timeout_s  # not associated yet
        server.guard = self.guard
        server.pdu_limits = PduLimits.from_settings(self.settings)
        self.ae._servers.append(server)  # as AE.start_server does, so AE.shutdown finds it
        self._server = server
        self._server_thread = threading.Thread(
            target=server.serve_forever, name="listener-accept", daemon=True
        )
        self._server_thread.start()
        host, port = self.address
        log.info(
            "listening as %s on %s:%d%s",
            self.settings.ae_title,
            host,
            port,
            " (TLS)" if ssl_context else "",
        )
        return host, port

    def stop(self, grace_s: float | None = None) -> None:
        """Stop accepting, let associations in flight finish (up to ``grace_s``), abort the rest."""
        grace = self.settings.shutdown_grace_s if grace_s is None else grace_s
        self._stopping = True
        server = self._server
        if server is None:
            return
        server.shutdown()  # stops the accept loop and closes the listening socket
        deadline = time.monotonic() + grace
        while server.active_associations and time.monotonic() < deadline:
            time.sleep(0.05)
        remaining = server.active_associations
        if remaining:
            log.warning("aborting %d association(s) still open after %.0f s", len(remaining), grace)
            for assoc in remaining:
                assoc.abort()
        self.guard.drop_all()  # connections that never associated have nothing in flight
        for assoc in list(self._states):
            self._finish(assoc)
        uninstall_spool_factory(self.ae)
        self.spool.unlock()
        self._server = None
        log.info("listener stopped")

    # -- association events ----------------------------------------------------------------
    def _state(self, assoc: Any) -> _AssociationState | None:
        with self._states_lock:
            return self._states.get(assoc)

    def _on_requested(self, event: Any) -> None:
        assoc = event.assoc
        request = assoc.requestor.primitive
        calling = str(request.calling_ae_title or "").strip()
        called = str(request.called_ae_title or "").strip()
        host = str(assoc.requestor.address)
        port = assoc.requestor.port
        sock = getattr(getattr(assoc.dul, "socket", None), "socket", None)
        is_tls = isinstance(sock, ssl.SSLSocket)
        decision = self.policy.decide(calling_ae=calling, called_ae=called, peer_host=host)
        if decision.accepted and self._stopping:
            decision = AdmissionDecision(
                False, "the listener is shutting down", TEMPORARY_CONGESTION
            )
        ticket = getattr(assoc, "guard_ticket", None)
        if decision.accepted and ticket is not None and not self.guard.try_associate(ticket):
            decision = AdmissionDecision(
                False,
                f"local-limit-exceeded: {self.settings.max_associations} associations in use",
                LOCAL_LIMIT_EXCEEDED,
            )
        state = _AssociationState(
            calling_ae=calling,
            peer_host=host,
            peer_port=port,
            decision=decision,
            tls=is_tls,
            client_cert_subject=certificate_subject(sock) if is_tls else None,
            rejected=not decision.accepted,
        )
        try:
            state.id = self._record_association(state, called)
        except SQLAlchemyError:
            log.exception("cannot record the association from %s; refusing it", calling)
            if decision.accepted:
                state.decision = AdmissionDecision(
                    False, "the database is unavailable", TEMPORARY_CONGESTION
                )
                state.rejected = True
        logcontext.association_id.set(state.id)
        with self._states_lock:
            self._states[assoc] = state
        if ticket is not None:
            ticket.association_id, ticket.calling_ae = state.id, calling
        if state.rejected:
            rejection = state.decision.rejection
            assert rejection is not None
            log.warning(
                "rejecting %r from %s:%s: %s (%s)",
                calling,
                host,
                port,
                state.decision.reason,
                rejection.name,
            )
            assoc.acse.send_reject(*rejection.as_tuple)
            assoc.kill()

    def _record_association(self, state: _AssociationState, called: str) -> int:
        now = self.clock()
        with self.runtime.session() as session:
            row = Association(
                calling_ae=state.calling_ae[:64],
                called_ae=called[:64],
                peer_host=state.peer_host[:64],
                peer_port=state.peer_port,
                tls=state.tls,
                client_cert_subject=state.client_cert_subject,
                state=AssociationState.OPEN if not state.rejected else AssociationState.REJECTED,
                reject_reason=None if not state.rejected else state.decision.reason,
                started_at=now,
                ended_at=None if not state.rejected else now,
            )
            session.add(row)
            session.flush()
            if state.rejected:
                rejection = state.decision.rejection
                record_event(
                    session=session,
                    event=IngestEvent.ASSOCIATION_REJECTED,
                    message=(
                        f"association from {state.calling_ae!r} at {state.peer_host} rejected: "
                        f"{state.decision.reason}"
                    ),
                    actor=state.calling_ae[:128] or ACTOR,
                    association_id=row.id,
                    details={
                        "reason": state.decision.reason,
                        "rejection": rejection.name if rejection else None,
                        "called_ae": called[:64],
                        "peer_port": state.peer_port,
                    },
                )
            return row.id

    def _on_rejected(self, event: Any) -> None:
        """pynetdicom refused on its own (too many associations): record why."""
        state = self._state(event.assoc)
        if state is None or state.rejected:
            return
        primitive = event.assoc.acceptor.primitive
        reason = describe_rejection(
            int(primitive.result), int(primitive.result_source), int(primitive.diagnostic)
        )
        if reason == "local-limit-exceeded":
            reason = f"local-limit-exceeded: {self.settings.max_associations} associations in use"
        state.rejected = True
        log.warning("association from %r rejected: %s", state.calling_ae, reason)
        try:
            with self.runtime.session() as session:
                session.execute(
                    update(Association)
                    .where(Association.id == state.id)
                    .values(
                        state=AssociationState.REJECTED, reject_reason=reason, ended_at=self.clock()
                    )
                )
                record_event(
                    session=session,
                    event=IngestEvent.ASSOCIATION_REJECTED,
                    message=f"association from {state.calling_ae!r} rejected: {reason}",
                    actor=state.calling_ae[:128] or ACTOR,
                    association_id=state.id,
                    details={"reason": reason},
                )
        except SQLAlchemyError:
            log.exception("cannot record the rejection of association %s", state.id)

    def _on_accepted(self, event: Any) -> None:
        state = self._state(event.assoc)
        if state is None:
            return
        contexts = sorted(
            {
                f"{cx.abstract_syntax.name} / {cx.transfer_syntax[0].name}"
                for cx in event.assoc.accepted_contexts
            }
        )
        log.info(
            "accepted %r from %s:%s%s",
            state.calling_ae,
            state.peer_host,
            state.peer_port,
            f" (TLS, {state.client_cert_subject or 'no client certificate'})" if state.tls else "",
        )
        try:
            with self.runtime.session() as session:
                record_event(
                    session=session,
                    event=IngestEvent.ASSOCIATION_ACCEPTED,
                    message=(
                        f"association from {state.calling_ae!r} at {state.peer_host} accepted: "
                        f"{state.decision.reason}"
                    ),
                    actor=state.calling_ae[:128] or ACTOR,
                    association_id=state.id,
                    details={
                        "contexts": contexts,
                        "tls": state.tls,
                        "client_cert_subject": state.client_cert_subject,
                        "quiet_seconds": state.decision.quiet_seconds,
                    },
                )
        except SQLAlchemyError:
            log.exception("cannot audit the acceptance of association %s", state.id)

    def _on_released(self, event: Any) -> None:
        state = self._state(event.assoc)
        if state is not None:
            state.released = True

    def _on_aborted(self, event: Any) -> None:
        state = self._state(event.assoc)
        if state is not None and not state.released:
            state.aborted = True

    def _on_conn_close(self, event: Any) -> None:
        assoc = event.assoc
        if assoc.requestor.primitive is None:
            # Closed before its association request: wake the association thread, which
            # would otherwise wait out the ACSE timeout for a request that cannot come.
            assoc.dul.to_user_queue.put(None)
        self._finish(assoc)
        self.guard.close(getattr(assoc, "guard_ticket", None))

    def _on_connection_dropped(self, ticket: ConnectionTicket) -> None:
        """Audit a connection we ended (a limit, a deadline, a protocol violation)."""
        reason = ticket.reason or "dropped"
        kind = reason.split(":", 1)[0]
        folded = self._audit_throttle.admit(ticket.host, kind)
        if folded is None:
            return
        try:
            with self.runtime.session() as session:
                record_event(
                    session=session,
                    event=IngestEvent.CONNECTION_DROPPED,
                    message=f"connection from {ticket.host}:{ticket.port} dropped: {reason}",
                    actor=(ticket.calling_ae or ACTOR)[:128],
                    association_id=ticket.association_id,
                    details={
                        "peer_host": ticket.host,
                        "peer_port": ticket.port,
                        "reason": reason,
                        "associated": ticket.associated,
                        "similar_not_recorded": folded,
                    },
                )
        except SQLAlchemyError:
            log.exception("cannot audit the dropped connection from %s", ticket.host)

    def _on_tls_failure(self, client_address: tuple[str, int], exc: Exception) -> None:
        host, port = str(client_address[0]), int(client_address[1])
        reason = f"TLS handshake failed: {exc}"
        log.warning("connection from %s:%d refused: %s", host, port, reason)
        try:
            with self.runtime.session() as session:
                now = self.clock()
                row = Association(
                    calling_ae="",
                    called_ae=self.settings.ae_title,
                    peer_host=host[:64],
                    peer_port=port,
                    tls=True,
                    state=AssociationState.REJECTED,
                    reject_reason=reason[:2000],
                    started_at=now,
                    ended_at=now,
                )
                session.add(row)
                session.flush()
                record_event(
                    session=session,
                    event=IngestEvent.ASSOCIATION_REJECTED,
                    message=f"connection from {host} refused: {reason}",
                    actor=ACTOR,
                    association_id=row.id,
                    details={"reason": reason, "peer_port": port},
                )
        except SQLAlchemyError:
            log.exception("cannot audit the TLS failure from %s", host)

    def _finish(self, assoc: Any) -> None:
        """Once per association: drop unfinished transfers, close the row."""
        state = self._state(assoc)
        if state is None:
            return
        with state.lock:
            if state.finished:
                return
            state.finished = True
            leftovers = list(state.spools.values())
            state.spools.clear()
        with self._states_lock:
            self._states.pop(assoc, None)
        for spool in leftovers:
            spool.discard()
            log.warning(
                "transfer of %s ended before the instance was complete (%d bytes); nothing kept",
                spool.sop_instance_uid,
                spool.received_bytes,
            )
            self.receiver.record_incomplete(
                self._intake(state, spool.sop_class_uid or "", spool.sop_instance_uid or ""),
                spool.received_bytes,
            )
        if state.id is None or state.rejected:
            return
        released = state.released or bool(getattr(assoc, "release_answered", False))
        final = AssociationState.RELEASED if released else AssociationState.ABORTED
        ticket = getattr(assoc, "guard_ticket", None)
        dropped_for = ticket.reason if ticket is not None else None
        try:
            with self.runtime.session() as session:
                session.execute(
                    update(Association)
                    .where(Association.id == state.id)
                    .values(state=final, ended_at=self.clock())
                )
                if final == AssociationState.ABORTED:
                    record_event(
                        session=session,
                        event=IngestEvent.ASSOCIATION_ABORTED,
                        message=(
                            f"association from {state.calling_ae!r} ended without a release"
                            + (f" (dropped: {dropped_for})" if dropped_for else "")
                            + (
                                f"; {len(leftovers)} incomplete transfer(s) dropped"
                                if leftovers
                                else ""
                            )
                        ),
                        actor=state.calling_ae[:128] or ACTOR,
                        association_id=state.id,
                        details={
                            "incomplete_transfers": len(leftovers),
                            "dropped_for": dropped_for,
                        },
                    )
        except SQLAlchemyError:
            log.exception("cannot close association %s in the database", state.id)
        log.info("association %s %s", state.id, final)

    def sweep(self) -> None:
        """Finish associations whose threads ended without a connection-closed event."""
        with self._states_lock:
            gone = [a for a in self._states if not a.is_alive() and a.ident is not None]
        for assoc in gone:
            self._finish(assoc)

    # -- receiving -------------------------------------------------------------------------
    def _open_spool(self, assoc: Any) -> SpoolFile:
        """Called by pynetdicom (in the DUL thread) when a C-STORE data set starts."""
        state = self._state(assoc)
        spool = SpoolFile(
            self.spool.new_path(),
            max_bytes=self.limits.max_instance_bytes,
            store=self.runtime.store,
        )
        command = getattr(getattr(assoc.dimse, "message", None), "command_set", None)
        spool.sop_class_uid = str(getattr(command, "AffectedSOPClassUID", "") or "")
        spool.sop_instance_uid = str(getattr(command, "AffectedSOPInstanceUID", "") or "")
        track = getattr(assoc.dul, "track_spool", None)
        if track is not None:
            track(spool)  # the reader syncs it once its last fragment is written
        if state is not None:
            logcontext.association_id.set(state.id)
            with state.lock:
                if state.finished:
                    spool.refuse("the association has ended")
                state.spools[spool.name] = spool
        else:
            spool.refuse("no association state (listener stopping)")
        return spool

    def _intake(self, state: _AssociationState, sop_class: str, sop_instance: str) -> IntakeInfo:
        return IntakeInfo(
            IntakePath.C_STORE,
            sender=state.calling_ae,
            peer=f"{state.peer_host}:{state.peer_port}",
            association_id=state.id,
            quiet_seconds=state.decision.quiet_seconds,
            sop_class_uid=sop_class,
            sop_instance_uid=sop_instance,
        )

    def _on_c_store(self, event: Any) -> int:
        state = self._state(event.assoc)
        request = event.request
        sop_class = str(request.AffectedSOPClassUID or "")
        sop_instance = str(request.AffectedSOPInstanceUID or "")
        spool: SpoolFile | None = None
        if state is not None:
            with state.lock:
                spool = state.spools.pop(str(event.dataset_path), None)
        if spool is None or state is None:
            log.error("C-STORE of %s arrived without its spool file", sop_instance[:80])
            return int(StoreStatus.OUT_OF_RESOURCES)
        refusal = spool.refusal
        received = ReceivedFile(
            spool.path,
            spool.sha256 if refusal is None else "",
            spool.received_bytes,
            spool.wait_synced,
            refusal=refusal,
        )
        outcome = self.receiver.receive(received, self._intake(state, sop_class, sop_instance))
        if not outcome.ok:
            spool.discard()  # closes it (the receive path has removed the file)
        return outcome.status
