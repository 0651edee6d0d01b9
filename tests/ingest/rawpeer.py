"""A DICOM peer written byte by byte, to do what no well-behaved library would.

Each function speaks the upper layer protocol (PS3.8) directly on a socket, so the tests can
stop half-way through a header, announce lengths that never come, and read exactly what the
listener answers.
"""

from __future__ import annotations

import os
import resource
import socket
import struct
import time
from dataclasses import dataclass

VERIFICATION = "1.2.840.10008.1.1"
IMPLICIT_VR_LE = "1.2.840.10008.1.2"
APPLICATION_CONTEXT = "1.2.840.10008.3.1.1.1"


def _item(item_type: int, value: bytes) -> bytes:
    return struct.pack(">BBH", item_type, 0, len(value)) + value


def associate_rq(
    calling: str = "SENDER", called: str = "UNITUMOUR", abstract: str = VERIFICATION
) -> bytes:
    """An A-ASSOCIATE-RQ PDU proposing one context (id 1) in Implicit VR Little Endian."""
    context = _item(
        0x20,
        bytes([1, 0, 0, 0]) + _item(0x30, abstract.encode()) + _item(0x40, IMPLICIT_VR_LE.encode()),
    )
    user = _item(0x50, _item(0x51, struct.pack(">L", 16384)))
    body = (
        struct.pack(">HH", 1, 0)
        + called.encode().ljust(16)
        + calling.encode().ljust(16)
        + bytes(32)
        + _item(0x10, APPLICATION_CONTEXT.encode())
        + context
        + user
    )
    return struct.pack(">BBL", 0x01, 0, len(body)) + body


def pdu_header(pdu_type: int, length: int) -> bytes:
    return struct.pack(">BBL", pdu_type, 0, length)


def p_data(context_id: int, control: int, fragment: bytes) -> bytes:
    """A P-DATA-TF PDU holding one presentation data value."""
    pdv = struct.pack(">LBB", len(fragment) + 2, context_id, control) + fragment
    return pdu_header(0x04, len(pdv)) + pdv


def connect(host: str, port: int, source: str = "127.0.0.1", timeout: float = 10) -> socket.socket:
    """A TCP connection from ``source`` (any 127/8 address is this machine's loopback)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    sock.bind((source, 0))
    sock.connect((host, port))
    return sock


@dataclass
class Pdu:
    pdu_type: int
    body: bytes


def read_pdu(sock: socket.socket) -> Pdu | None:
    """The next PDU from the listener, or None when it closed the connection."""
    header = _read_exact(sock, 6)
    if len(header) < 6:
        return None
    pdu_type, _, length = struct.unpack(">BBL", header)
    return Pdu(pdu_type, _read_exact(sock, length))


def _read_exact(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            break
        data += chunk
    return data


def associated(
    host: str, port: int, *, source: str = "127.0.0.1", abstract: str = VERIFICATION
) -> socket.socket:
    """A raw connection with an established association (context 1: ``abstract``)."""
    sock = connect(host, port, source)
    sock.sendall(associate_rq(abstract=abstract))
    answer = read_pdu(sock)
    assert answer is not None and answer.pdu_type == 0x02, f"not accepted: {answer}"
    return sock


def abort_reason(pdu: Pdu | None) -> tuple[int, int] | None:
    """(source, reason) of an A-ABORT PDU, else None."""
    if pdu is None or pdu.pdu_type != 0x07 or len(pdu.body) != 4:
        return None
    return pdu.body[2], pdu.body[3]


def closed_within(sock: socket.socket, seconds: float) -> float | None:
    """Seconds until the listener closed ``sock`` (data it sends first is read and dropped)."""
    started = time.monotonic()
    sock.settimeout(0.2)
    while time.monotonic() - started < seconds:
        try:
            data = sock.recv(65536)
        except TimeoutError:
            continue
        except OSError:
            return time.monotonic() - started
        if not data:
            return time.monotonic() - started
    return None


def resident_mib() -> float:
    """This process's resident memory now, in MiB (the listener runs in it)."""
    with open(f"/proc/{os.getpid()}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def element(tag: int, value: bytes) -> bytes:
    """A command element (group 0000, Implicit VR Little Endian)."""
    return struct.pack("<HHL", 0, tag, len(value)) + value


def command_set(elements: bytes) -> bytes:
    """``elements`` behind their (0000,0000) group length."""
    return element(0x0000, struct.pack("<L", len(elements))) + elements


def _uid(value: str) -> bytes:
    raw = value.encode()
    return raw + b"\0" * (len(raw) % 2)


def c_echo_rq(*, with_data_set: bool = False) -> bytes:
    """A C-ECHO-RQ command set; ``with_data_set`` says (wrongly) that a data set follows."""
    return command_set(
        element(0x0002, _uid(VERIFICATION))
        + element(0x0100, struct.pack("<H", 0x0030))
        + element(0x0110, struct.pack("<H", 1))
        + element(0x0800, struct.pack("<H", 0x0000 if with_data_set else 0x0101))
    )


def c_store_rq(sop_class: str, sop_instance: str) -> bytes:
    """A C-STORE-RQ command set announcing a data set."""
    return command_set(
        element(0x0002, _uid(sop_class))
        + element(0x0100, struct.pack("<H", 0x0001))
        + element(0x0110, struct.pack("<H", 7))
        + element(0x0700, struct.pack("<H", 0))
        + element(0x0800, struct.pack("<H", 0x0000))
        + element(0x1000, _uid(sop_instance))
    )
