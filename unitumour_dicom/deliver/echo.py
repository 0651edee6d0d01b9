"""C-ECHO of the configured destinations: is each one there, and does it take us?

The day-one check before the first result is sent: one Verification association per
destination, with the same AE titles and TLS settings as a delivery, so that a wrong port, a
called AE title the PACS does not know, a firewall or a certificate the PACS does not trust
shows here, named, and not as a failed delivery hours later.

Success costs exactly one connection. Only when the association fails without a rejection does
:func:`echo_destination` connect once more on its own (TCP, then the TLS handshake) to name
the cause: refused, unreachable, timeout, or the TLS error, which pynetdicom does not report.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from enum import StrEnum

from pynetdicom import AE

# pynetdicom makes its SOP class names at import time, out of its type information's sight.
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from ..config.sections import DestinationSettings
from .scu import RejectionRecorder, tls_context


class EchoOutcome(StrEnum):
    """What one C-ECHO came to; everything but SUCCESS is a failure."""

    SUCCESS = "success"
    REJECTED = "association rejected"
    REFUSED = "connection refused"
    UNREACHABLE = "unreachable"
    TLS_FAILURE = "TLS failure"
    TIMEOUT = "timeout"
    ABORTED = "aborted"
    FAILED = "echo failed"


@dataclass(frozen=True)
class EchoReport:
    """One destination's answer, as printed by ``unitumour destinations echo``."""

    name: str
    ae_title: str
    host: str
    port: int
    tls: bool
    outcome: EchoOutcome
    detail: str
    seconds: float

    @property
    def ok(self) -> bool:
        return self.outcome is EchoOutcome.SUCCESS

    def as_dict(self) -> dict[str, object]:
        data = asdict(self)
        data["outcome"] = str(self.outcome)
        data["ok"] = self.ok
        data["seconds"] = round(self.seconds, 4)
        return data


def _diagnose(destination: DestinationSettings, timeout_s: float) -> tuple[EchoOutcome, str]:
    """Connect once more, by hand, to name why the association did not come up."""
    try:
        sock = socket.create_connection((destination.host, destination.port), timeout=timeout_s)
    except ConnectionRefusedError as exc:
        return EchoOutcome.REFUSED, str(exc)
    except TimeoutError:
        return EchoOutcome.TIMEOUT, f"no TCP connection within {timeout_s:g} s"
    except OSError as exc:  # no route, unknown host name, network down
        return EchoOutcome.UNREACHABLE, str(exc)
    with sock:
        tls_args = tls_context(destination.tls, destination.host)
        if tls_args is None:
            return EchoOutcome.ABORTED, "TCP connects, but the peer ended the association"
        context, server_name = tls_args
        try:
            with context.wrap_socket(sock, server_hostname=server_name) as tls_sock:
                # TLS 1.3: a server that refuses our client certificate says so only after
                # the client's side of the handshake is done; wait briefly for its alert.
                tls_sock.settimeout(min(timeout_s, 1.0))
                with contextlib.suppress(TimeoutError):
                    tls_sock.recv(1)
        except ssl.SSLCertVerificationError as exc:
            return EchoOutcome.TLS_FAILURE, f"certificate verify failed: {exc.verify_message}"
        except ssl.SSLError as exc:
            return EchoOutcome.TLS_FAILURE, str(exc)
        except TimeoutError:
            return EchoOutcome.TIMEOUT, f"no TLS handshake within {timeout_s:g} s"
        except OSError as exc:
            return EchoOutcome.TLS_FAILURE, f"handshake broken off: {exc}"
    return EchoOutcome.ABORTED, "TCP and TLS connect, but the peer ended the association"


def echo_destination(
    destination: DestinationSettings, *, calling_ae_title: str, timeout_s: float = 10.0
) -> EchoReport:
    """C-ECHO ``destination`` as we would deliver to it. Never raises for peer trouble."""
    started = time.monotonic()

    def report(outcome: EchoOutcome, detail: str) -> EchoReport:
        return EchoReport(
            name=destination.name,
            ae_title=destination.ae_title,
            host=destination.host,
            port=destination.port,
            tls=destination.tls.enabled,
            outcome=outcome,
            detail=detail,
            seconds=time.monotonic() - started,
        )

    try:
        tls_args = tls_context(destination.tls, destination.host)
    except (OSError, ssl.SSLError) as exc:
        return report(EchoOutcome.TLS_FAILURE, f"our TLS settings: {exc}")
    ae = AE(ae_title=calling_ae_title)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout_s
    ae.connection_timeout = timeout_s
    ae.add_requested_context(Verification)
    rejection = RejectionRecorder()

    try:
        assoc = ae.associate(
            destination.host,
            destination.port,
            ae_title=destination.ae_title,
            tls_args=tls_args,
            evt_handlers=[rejection.handler],
        )
    except (OSError, ValueError, RuntimeError) as exc:
        return report(EchoOutcome.UNREACHABLE, str(exc))
    if assoc.is_rejected:
        return report(EchoOutcome.REJECTED, rejection.text or "rejected")
    if not assoc.is_established:
        if time.monotonic() - started >= timeout_s * 0.9:
            return report(EchoOutcome.TIMEOUT, f"no association answer within {timeout_s:g} s")
        outcome, detail = _diagnose(destination, timeout_s)
        return report(outcome, detail)
    try:
        if not assoc.accepted_contexts:
            return report(EchoOutcome.FAILED, "the peer does not accept Verification")
        status = assoc.send_c_echo()
        code = int(status.Status) if status and "Status" in status else None
        if code is None:
            return report(EchoOutcome.TIMEOUT, f"no C-ECHO response within {timeout_s:g} s")
        if code != 0x0000:
            return report(EchoOutcome.FAILED, f"C-ECHO status 0x{code:04X}")
        return report(EchoOutcome.SUCCESS, "C-ECHO status 0x0000")
    finally:
        if assoc.is_established:
            assoc.release()


def echo_destinations(
    destinations: Sequence[DestinationSettings],
    *,
    calling_ae_title: str,
    timeout_s: float = 10.0,
) -> list[EchoReport]:
    """One :func:`echo_destination` each, in configuration order (one at a time: a
    day-one check, and each round-trip time is then the destination's own)."""
    return [
        echo_destination(d, calling_ae_title=calling_ae_title, timeout_s=timeout_s)
        for d in destinations
    ]
