"""pynetdicom's transport for the listener: the same protocol, fewer copies, no polling.

pynetdicom is written for clarity over throughput: its upper layer reads PDUs in 4 KiB pieces
and copies each P-DATA-TF about six times, and both of its per-association threads poll (the
upper-layer reactor sleeps 1 ms whenever it finds nothing to do, the association reactor 1 ms
before every look at its message queue), so each hand-over between them, and each answer to
the peer, may wait out a sleep. The subclasses here keep pynetdicom's state machine, events
and queues, and change only how data is read and how the threads wait: on the socket and a
wake-up pipe, and on the message queue's condition.

Reading is also where a hostile peer is met: every PDU is bounded by its header before any
allocation (:mod:`.wire`) and in time by a deadline from its first byte, every send has the
network timeout, and each connection holds a ticket of the :mod:`.guard` from accept to close.

They rely on pynetdicom internals (``DULServiceProvider._read_pdu_data``,
``_is_transport_event``, ``Association._run_reactor``): the listener's tests exercise every
path, and pyproject.toml pins pynetdicom to the 3.x series they were written against.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import select
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable
from typing import Any

from pynetdicom import evt
from pynetdicom.association import Association
from pynetdicom.dul import DULServiceProvider
from pynetdicom.pdu import P_DATA_TF
from pynetdicom.pdu_items import PresentationDataValueItem
from pynetdicom.transport import RequestHandler, ThreadedAssociationServer

from .guard import ConnectionGuard, ConnectionTicket
from .wire import (
    REASON_NOT_SPECIFIED,
    MessageBounds,
    PduLimits,
    ProtocolViolationError,
    abort_pdu,
)

log = logging.getLogger(__name__)

#: States in which the connection is closing or closed: nothing can be sent any more.
_CLOSING_STATES = frozenset({"Sta1", "Sta13"})
#: States in which an A-ABORT request has no PDU to become (no association requested yet).
_NO_ABORT_STATES = frozenset({"Sta1", "Sta2", "Sta13"})
#: Longest the upper layer waits for data or work before it looks at its timers again.
IDLE_WAIT_S = 0.05
#: Longest the association reactor waits for a message before it looks for a release,
#: an abort or a timeout (pynetdicom's own period).
REACTOR_PERIOD_S = 0.001


_P_DATA_TF = 0x04
#: A PDU deadline when the association has no timeout of its own (never, in the listener).
DEFAULT_DEADLINE_S = 60.0
#: How long an A-ABORT to a misbehaving peer may take to leave before the socket closes.
ABORT_SEND_TIMEOUT_S = 2.0
#: PDU ceiling of a DUL that runs outside the listener's server (no settings at hand).
MAX_UNSERVED_PDU_BYTES = 1024 * 1024


class ListenerDUL(DULServiceProvider):
    """pynetdicom's upper layer, reading P-DATA without copies and waiting without polling.

    pynetdicom copies each P-DATA-TF PDU about six times on its way to the data set file (a
    growing bytearray, ``bytes()`` of it, a slice per PDU and per PDV, the PDV without its
    header byte); on a large slide those copies cost as much CPU as everything else. Here the
    PDU body is read once into its own buffer and each PDV's value is a memoryview into it,
    which pynetdicom's DIMSE decoder indexes and slices exactly as it does bytes. Every other
    PDU type, and every malformed P-DATA-TF, takes pynetdicom's own path and events (only
    ``EVT_DATA_RECV``, which the listener does not use, is not raised for P-DATA).

    Where pynetdicom's reactor sleeps 1 ms each time it finds nothing to do, this one blocks
    in ``select`` on the socket and on a wake-up pipe that ``send_pdu`` and ``kill_dul`` write
    to: a C-STORE request is read the moment it arrives and its response is sent the moment
    the association hands it over. ``attach`` must be called once the class is swapped in.
    """

    _wake_r: socket.socket | None = None
    _wake_w: socket.socket | None = None
    _spool: Any = None
    _data_set_ended = False
    _send_timeout_s: float | None = None
    _messages: MessageBounds

    def track_spool(self, spool: Any) -> None:
        """The file the data set now arriving is written to (see ``SpoolFile.sync_now``)."""
        self._spool = spool

    def attach(self) -> None:
        """Create the wake-up pipe and stop pynetdicom's fixed sleep between loops."""
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._run_loop_delay = 0
        self._messages = MessageBounds()
        # A peer that stops reading must not block a send for ever: every send has the network
        # timeout as its deadline (pynetdicom turns the timeout into a closed connection).
        self._send_timeout_s = self.assoc.network_timeout
        sock = self.socket.socket if self.socket is not None else None
        if sock is not None:
            sock.settimeout(self._send_timeout_s)
        machine = self.state_machine
        act = machine.do_action

        def do_action(event: str) -> None:
            # An answer the association thread hands over just after the peer aborted arrives
            # in Sta13 (waiting for the connection to close), where pynetdicom's state machine
            # raises and kills this thread. Nobody can receive it any more: drop it.
            if event == "Evt9" and machine.current_state in _CLOSING_STATES:
                log.info("peer gone: a response to it was dropped")
                with contextlib.suppress(queue.Empty):
                    self.to_provider_queue.get(block=False)
                return
            # An abort asked for (listener stopping) while the connection has no association
            # yet, or is already closing: PS3.8 has no A-ABORT there, only closing the
            # transport, which is what the caller wants.
            if event == "Evt15" and machine.current_state in _NO_ABORT_STATES:
                with contextlib.suppress(queue.Empty):
                    self.to_provider_queue.get(block=False)
                if self.socket is not None:
                    self.socket.close()
                return
            act(event)

        machine.do_action = do_action  # type: ignore[method-assign]

    def _wake(self) -> None:
        # a full pipe is already a pending wake-up; a closed one, a finished DUL
        if self._wake_w is not None:
            with contextlib.suppress(OSError):
                self._wake_w.send(b"\0")

    def send_pdu(self, primitive: Any) -> None:
        super().send_pdu(primitive)
        self._wake()

    def kill_dul(self) -> None:
        super().kill_dul()
        self._wake()

    def run_reactor(self) -> None:
        try:
            super().run_reactor()
        finally:
            for end in (self._wake_r, self._wake_w):
                if end is not None:
                    end.close()
            self._wake_r = self._wake_w = None

    def _is_transport_event(self) -> bool:
        if self._data_set_ended:  # its last fragment was written by the previous loop
            self._data_set_ended = False
            spool, self._spool = self._spool, None
            if spool is not None:
                spool.sync_now()
        if self.artim_timer.expired:
            self._note_artim_expiry()
        if super()._is_transport_event():
            return True
        self._wait_for_work()
        return False

    def _note_artim_expiry(self) -> None:
        """A connection that sent no association request in time is closed by pynetdicom's
        ARTIM timer; say why, so that the guard audits it with the peer's address."""
        ticket = getattr(self.assoc, "guard_ticket", None)
        guard = getattr(self.assoc._server, "guard", None)
        if ticket is None or guard is None or ticket.reason is not None:
            return
        if ticket.associated or self.assoc.requestor.primitive is not None:
            return  # a request came: this is the wait for the peer to close
        guard.drop(
            ticket,
            f"no association request within the ACSE timeout ({self.assoc.acse_timeout:.0f} s)",
        )

    def _wait_for_work(self) -> None:
        """Block until data arrives, a primitive is queued or ``IDLE_WAIT_S`` passes."""
        wake = self._wake_r
        sock = getattr(self.socket, "socket", None)
        if wake is None or sock is None or sock.fileno() < 0:
            return
        if self._kill_thread or self.to_provider_queue.queue or self.event_queue.queue:
            return
        if isinstance(sock, ssl.SSLSocket) and sock.pending():
            return  # decrypted bytes already buffered: select cannot see them
        try:
            readable, _, _ = select.select([sock, wake], [], [], IDLE_WAIT_S)
        except (OSError, ValueError):
            return  # the socket closed under us: the next loop reports it
        if wake in readable:
            with contextlib.suppress(OSError):  # BlockingIOError once drained
                while wake.recv(4096):
                    pass

    def _read_pdu_data(self) -> None:
        """Read one PDU, bounded in size by its header and in time by a deadline.

        The deadline runs from the PDU's first byte: ``acse_timeout`` until the association
        is established, ``network_timeout`` after. A peer that stalls mid-PDU is dropped when
        it passes, and a header that announces more than the PDU type may carry aborts the
        association before anything is allocated for the body (see :mod:`.wire`).
        """
        assoc = self.assoc
        established = bool(assoc.is_established)
        limit_s = assoc.network_timeout if established else assoc.acse_timeout
        deadline = time.monotonic() + (limit_s or DEFAULT_DEADLINE_S)
        try:
            header = self._recv_before(6, deadline)
            if len(header) != 6:
                self.event_queue.put("Evt17")  # the peer closed
                return
            pdu_type, _, pdu_length = struct.unpack(">BBL", header)
            self._pdu_limits().check(pdu_type, pdu_length)
            body = self._recv_before(pdu_length, deadline)
        except PduDeadlineError as exc:
            self._drop(
                f"stalled mid-PDU: {exc} within {limit_s:.0f} s "
                f"({'network' if established else 'ACSE'} timeout)",
                abort=established,
            )
            return
        except ProtocolViolationError as exc:
            self._drop(f"protocol violation: {exc}", abort=True, reason=exc.reason)
            return
        except (OSError, TimeoutError):
            self.event_queue.put("Evt17")  # transport connection closed
            return
        if len(body) != pdu_length:
            log.error("PDU shorter than announced (%d of %d bytes)", len(body), pdu_length)
            self.event_queue.put("Evt17")
            return
        if pdu_type == _P_DATA_TF:
            pdu = decode_p_data(body)
            if pdu is not None:
                try:
                    for item in pdu.presentation_data_value_items:
                        self._messages.feed(item.presentation_data_value)
                except ProtocolViolationError as exc:
                    self._drop(f"protocol violation: {exc}", abort=True, reason=exc.reason)
                    return
                # message control header xxxxxx10: the last fragment of a data set
                last = pdu.presentation_data_value_items[-1].presentation_data_value
                if last and last[0] & 0x03 == 0x02:
                    self._data_set_ended = True
                evt.trigger(self.assoc, evt.EVT_PDU_RECV, {"pdu": pdu})
                self.event_queue.put("Evt10")
                self._recv_pdu.put(pdu)
                return
        try:
            decoded, event = self._decode_pdu(header + body)
        except Exception:
            log.exception("cannot decode the received PDU")
            self.event_queue.put("Evt19")
            return
        self.event_queue.put(event)
        self._recv_pdu.put(decoded)

    def _recv_before(self, nr_bytes: int, deadline: float) -> bytearray:
        """``nr_bytes`` from the socket (fewer if the peer closes), or PduDeadlineError."""
        sock = self.socket.socket if self.socket is not None else None
        if sock is None:
            raise OSError("the connection is closed")
        buffer = bytearray(nr_bytes)
        view = memoryview(buffer)
        nr_read = 0
        try:
            while nr_read < nr_bytes:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise PduDeadlineError(f"{nr_read} of {nr_bytes} bytes arrived")
                sock.settimeout(remaining)
                try:
                    received = sock.recv_into(view[nr_read:], nr_bytes - nr_read)
                except TimeoutError:
                    raise PduDeadlineError(f"{nr_read} of {nr_bytes} bytes arrived") from None
                if not received:
                    break
                nr_read += received
        finally:
            del view
            with contextlib.suppress(OSError):
                sock.settimeout(self._send_timeout_s)
        return buffer if nr_read == nr_bytes else buffer[:nr_read]

    def _pdu_limits(self) -> PduLimits:
        limits = getattr(self.assoc._server, "pdu_limits", None)
        if limits is None:
            # a DUL outside the listener's server (tests): pynetdicom's own negotiated size
            size = self.assoc.acceptor.maximum_length or MAX_UNSERVED_PDU_BYTES
            limits = PduLimits(size, MAX_UNSERVED_PDU_BYTES)
        return limits

    def _drop(self, why: str, *, abort: bool, reason: int = REASON_NOT_SPECIFIED) -> None:
        """End the connection for ``why``: an A-ABORT first if ``abort``, then close."""
        log.error("dropping the connection: %s", why)
        sock = self.socket.socket if self.socket is not None else None
        if abort and sock is not None:
            with contextlib.suppress(OSError):
                sock.settimeout(ABORT_SEND_TIMEOUT_S)
                sock.sendall(abort_pdu(reason))
        guard = getattr(self.assoc._server, "guard", None)
        ticket = getattr(self.assoc, "guard_ticket", None)
        if guard is not None and ticket is not None:
            guard.drop(ticket, why)
        self.event_queue.put("Evt17")


class PduDeadlineError(Exception):
    """A PDU did not arrive whole before its deadline."""


def decode_p_data(body: bytearray) -> P_DATA_TF | None:
    """A P-DATA-TF PDU whose PDV values are views into ``body``; None if malformed."""
    view = memoryview(body)
    items = []
    offset = 0
    end = len(body)
    while offset < end:
        if offset + 6 > end:
            return None
        (item_length,) = struct.unpack_from(">L", body, offset)
        if item_length < 2 or offset + 4 + item_length > end:
            return None
        item = PresentationDataValueItem()
        item.presentation_context_id = body[offset + 4]
        item.presentation_data_value = view[offset + 5 : offset + 4 + item_length]  # type: ignore[assignment]
        items.append(item)
        offset += 4 + item_length
    if not items:
        return None
    pdu = P_DATA_TF()
    pdu.presentation_data_value_items = items
    return pdu


class ListenerRequestHandler(RequestHandler):
    server: ListenerServer

    def _create_association(self) -> Any:
        assoc = super()._create_association()
        # the same objects with the bounded receive and the wait methods of this module
        assoc.__class__ = ListenerAssociation
        assoc.dul.__class__ = ListenerDUL
        ticket = self.server.current_ticket()
        assoc.guard_ticket = ticket
        if ticket is not None:
            ticket.assoc = assoc
        assoc.dul.attach()
        return assoc


class ListenerServer(ThreadedAssociationServer):
    """pynetdicom's threaded server, guarded, with the TLS handshake off the accept loop.

    Every accepted connection first passes the :class:`~.guard.ConnectionGuard` (per-address
    and waiting-to-associate limits), so that neither a flood of idle connections nor one busy
    host can take the listener's slots. pynetdicom wraps each accepted socket in the thread
    that accepts connections, so one slow or hostile TLS client would stall every other
    caller, and a failed handshake vanishes without a trace; here the handshake runs in the
    connection's own thread, within the ACSE timeout, and a failure is reported (and audited).
    """

    daemon_threads = True
    request_queue_size = 64
    on_tls_failure: Callable[[tuple[str, int], Exception], None] | None = None
    handshake_timeout_s: float = 30.0
    guard: ConnectionGuard | None = None
    pdu_limits: PduLimits | None = None
    _tickets = threading.local()

    def get_request(self) -> tuple[Any, Any]:
        assert self.socket is not None
        return self.socket.accept()

    def current_ticket(self) -> ConnectionTicket | None:
        """The guard's ticket of the connection this thread is setting up."""
        return getattr(self._tickets, "ticket", None)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        ticket: ConnectionTicket | None = None
        if self.guard is not None:
            ticket = self.guard.open(str(client_address[0]), int(client_address[1]), request)
            if ticket.closed:  # refused: over a limit (reported by the guard)
                self.shutdown_request(request)
                return
        try:
            # DIMSE is request/response: a C-STORE response held back by Nagle's algorithm
            # until the peer's delayed ACK arrives costs tens of milliseconds per instance
            request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.ssl_context is not None:
                try:
                    request.settimeout(self.handshake_timeout_s)
                    request = self.ssl_context.wrap_socket(request, server_side=True)
                    request.settimeout(None)
                except (ssl.SSLError, OSError) as exc:
                    if self.on_tls_failure is not None:
                        self.on_tls_failure(client_address, exc)
                    self.shutdown_request(request)
                    return
            self._tickets.ticket = ticket
            super().process_request_thread(request, client_address)
        finally:
            self._tickets.ticket = None
            if ticket is not None and ticket.assoc is None and self.guard is not None:
                self.guard.close(ticket)  # no association took it over


class ListenerAssociation(Association):
    """pynetdicom's acceptor, dispatching each DIMSE message as soon as it is decoded.

    pynetdicom's reactor sleeps 1 ms before every look at its message queue; this one waits on
    the queue's condition for up to the same 1 ms, so the loop keeps pynetdicom's period for
    releases, aborts and timeouts while a C-STORE goes to its handler without delay. The loop
    is pynetdicom 3.0's ``Association._run_reactor`` with only that wait changed.
    """

    guard_ticket: ConnectionTicket | None = None
    release_answered = False

    def run(self) -> None:
        try:
            super().run()
        finally:
            guard = getattr(self._server, "guard", None)
            if guard is not None:
                guard.close(self.guard_ticket)

    def _wait_for_message(self) -> None:
        messages: queue.Queue[Any] = self.dimse.msg_queue
        with messages.not_empty:
            if not messages.queue:
                messages.not_empty.wait(REACTOR_PERIOD_S)

    def _run_reactor(self) -> None:
        self._is_paused = False
        while not self._kill:
            self._wait_for_message()

            # pynetdicom lets send_*() callers pause the reactor; kept as it is
            self._is_paused = True
            self._reactor_checkpoint.wait()
            self._is_paused = False

            context_id, msg = self.dimse.get_msg(block=False)
            if msg:
                self._serve_request(msg, int(context_id))  # type: ignore[arg-type]

            if self.is_established and self.acse.is_release_requested():
                # Known before the answer leaves: a peer that closes the moment it has the
                # A-RELEASE-RP makes the connection-closed event race the released event.
                self.release_answered = True
                self.acse.send_release(is_response=True)
                log.info("Association Released")
                self.is_released = True
                self.is_established = False
                evt.trigger(self, evt.EVT_RELEASED, {})
                self.kill()
                return

            if self.acse.is_aborted():
                log.info(
                    "Association Aborted%s",
                    " (A-P-ABORT)" if self.acse.is_aborted("a-p-abort") else "",
                )
                self.dul.receive_pdu(wait=False)  # so that EVT_ACSE_RECV fires
                self.is_aborted = True
                self.is_established = False
                evt.trigger(self, evt.EVT_ABORTED, {})
                self.kill()
                return

            if not self.dul.is_alive():
                self.kill()
                return

            if self.dul.idle_timer_expired():
                log.error("Network timeout reached")
                if self.network_timeout_response == "A-RELEASE":
                    self._is_paused = True
                    self._reactor_checkpoint.wait()
                    self.release()
                    self._is_paused = False
                else:
                    self.abort()
                self.kill()
                return
