"""What a peer may put on the wire before we allocate for it: PDU and DIMSE message bounds.

The upper layer trusts nothing a PDU header says. Each PDU type has its own ceiling, checked
on the 6-byte header before a byte of the body is read or a buffer is made for it:

- A-ASSOCIATE-RQ: ``listener.max_association_request_bytes`` (a request with every storage
  SOP class and transfer syntax is some tens of kilobytes; user identity items add a few);
- P-DATA-TF: the Maximum Length we announced in our A-ASSOCIATE-AC (``listener.max_pdu_bytes``,
  PS3.8 D.1: the peer must not send a longer PDV list);
- A-RELEASE-RQ/RP and A-ABORT: their fixed 4-byte bodies;
- A-ASSOCIATE-AC/RJ, which an acceptor never expects: the association request's ceiling.

Inside P-DATA, pynetdicom reassembles the DIMSE command set in memory, and the data set of any
message but a C-STORE-RQ (whose data set goes to a spool file, bounded by
``max_instance_bytes``) too. :class:`MessageBounds` caps both, so that no message can grow a
buffer without bound by never sending its last fragment.

A breach is a :class:`ProtocolViolationError`: the association is aborted with an A-ABORT whose
source is the service provider (0x02) and whose reason says why (PS3.8 9.3.8), and audited.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from ..config.sections import ListenerSettings

# PDU types (PS3.8 9.3)
ASSOCIATE_RQ = 0x01
ASSOCIATE_AC = 0x02
ASSOCIATE_RJ = 0x03
P_DATA_TF = 0x04
RELEASE_RQ = 0x05
RELEASE_RP = 0x06
ABORT = 0x07
PDU_TYPES = frozenset(range(ASSOCIATE_RQ, ABORT + 1))

# A-ABORT reasons when the source is the service provider (PS3.8 Table 9-26)
REASON_NOT_SPECIFIED = 0x00
REASON_UNRECOGNIZED_PDU = 0x01
REASON_UNEXPECTED_PDU = 0x02
REASON_INVALID_PARAMETER = 0x06
SOURCE_SERVICE_PROVIDER = 0x02

#: A DIMSE command set is a few hundred bytes; this allows every optional element with room.
MAX_COMMAND_BYTES = 64 * 1024
#: The data set of a message that is not a C-STORE-RQ (none of our services expects one).
MAX_OTHER_DATASET_BYTES = 1024 * 1024
#: C-STORE-RQ's Command Field (PS3.7 E.1): its data set streams to a bounded spool file.
C_STORE_RQ = 0x0001
_FIXED_BODY = 4


class ProtocolViolationError(Exception):
    """A peer broke a bound of the upper layer; the association is aborted with ``reason``."""

    def __init__(self, message: str, reason: int = REASON_INVALID_PARAMETER) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class PduLimits:
    """The longest body each PDU type may announce, from the listener's settings."""

    max_pdu_bytes: int
    max_association_request_bytes: int

    @classmethod
    def from_settings(cls, settings: ListenerSettings) -> PduLimits:
        return cls(settings.max_pdu_bytes, settings.max_association_request_bytes)

    def check(self, pdu_type: int, length: int) -> None:
        """Raise :class:`ProtocolViolationError` if a PDU of this type may not be this long."""
        if pdu_type not in PDU_TYPES:
            raise ProtocolViolationError(
                f"unknown PDU type 0x{pdu_type:02X}", REASON_UNRECOGNIZED_PDU
            )
        if pdu_type == P_DATA_TF:
            limit, what = self.max_pdu_bytes, "the maximum length we negotiated"
        elif pdu_type in (RELEASE_RQ, RELEASE_RP, ABORT):
            limit, what = _FIXED_BODY, "its fixed length"
        else:
            limit, what = self.max_association_request_bytes, "the association request limit"
        if length > limit:
            raise ProtocolViolationError(
                f"PDU type 0x{pdu_type:02X} announces {length} bytes, over {what} ({limit})"
            )


def abort_pdu(reason: int) -> bytes:
    """An A-ABORT PDU from the service provider (PS3.8 9.3.8)."""
    return struct.pack(">BBLBBBB", ABORT, 0, 4, 0, 0, SOURCE_SERVICE_PROVIDER, reason)


def command_field(command: bytes | bytearray | memoryview) -> int | None:
    """(0000,0100) Command Field of an encoded command set (Implicit VR Little Endian), or None.

    Reads the group-0000 elements in order without decoding the rest, so that a peer's
    command set is sized up before pynetdicom decodes it.
    """
    offset, end = 0, len(command)
    while offset + 8 <= end:
        group, element, length = struct.unpack_from("<HHL", command, offset)
        offset += 8
        if group != 0x0000 or offset + length > end:
            return None
        if element == 0x0100:
            return struct.unpack_from("<H", command, offset)[0] if length == 2 else None
        offset += length
    return None


class MessageBounds:
    """Counts the fragments of the DIMSE message arriving on one association.

    Fed each PDV (its message control header and value) in the order they arrive; raises
    :class:`ProtocolViolationError` when a command set outgrows :data:`MAX_COMMAND_BYTES`, or the
    data set of anything but a C-STORE-RQ outgrows :data:`MAX_OTHER_DATASET_BYTES`.
    """

    def __init__(self) -> None:
        self._command = bytearray()
        self._command_complete = False
        self._dataset_limit: int | None = MAX_OTHER_DATASET_BYTES
        self._dataset_bytes = 0

    def feed(self, pdv: memoryview | bytes | None) -> None:
        """One presentation data value: its message control header byte, then the fragment."""
        if not pdv:
            raise ProtocolViolationError("an empty presentation data value")
        control, fragment = pdv[0], pdv[1:]
        if control & 0x01:  # a command fragment
            if self._command_complete:  # a new message begins
                self._command.clear()
                self._command_complete = False
            if len(self._command) + len(fragment) > MAX_COMMAND_BYTES:
                raise ProtocolViolationError(
                    f"a DIMSE command set longer than {MAX_COMMAND_BYTES} bytes"
                )
            self._command += fragment
            if control & 0x02:
                self._command_complete = True
                field = command_field(self._command)
                self._dataset_limit = None if field == C_STORE_RQ else MAX_OTHER_DATASET_BYTES
                self._dataset_bytes = 0
            return
        self._dataset_bytes += len(fragment)
        if self._dataset_limit is not None and self._dataset_bytes > self._dataset_limit:
            raise ProtocolViolationError(
                f"the data set of a message other than C-STORE-RQ is over "
                f"{self._dataset_limit} bytes"
            )
        if control & 0x02:  # its last fragment: whatever comes next starts a new message
            self._dataset_bytes = 0
            self._dataset_limit = MAX_OTHER_DATASET_BYTES
