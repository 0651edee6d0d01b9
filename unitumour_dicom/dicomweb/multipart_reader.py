"""Reading a multipart/related request body (RFC 2046, PS3.18 8.6.1.2) as it streams in.

A STOW-RS request can carry a two-gigabyte slide, so the body is never held: it is fed to a
:class:`MultipartReader` chunk by chunk as the HTTP server receives it, and each part's bytes
go straight to a sink (a spool file) while they arrive. The reader keeps at most one
delimiter's length of a part in memory, and bounds everything a hostile client controls
before buffering it: the preamble, each part's header block, the padding after a delimiter,
the epilogue and the number of parts.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import Message
from enum import Enum, auto
from typing import Protocol

#: RFC 2046 5.1.1: 1 to 70 characters of this set, not ending with a space.
_BOUNDARY = re.compile(r"^[0-9A-Za-z'()+_,\-./:=? ]{0,69}[0-9A-Za-z'()+_,\-./:=?]$")
_HEADER_NAME = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")


class MultipartError(ValueError):
    """The body is not a well-formed multipart/related message within our bounds."""


class PartSink(Protocol):
    """Where one part's bytes go (a spool file)."""

    def write(self, data: bytes | bytearray | memoryview) -> int: ...


@dataclass(frozen=True)
class PartHeaders:
    """One part's MIME headers, names lower-cased."""

    fields: dict[str, str] = field(default_factory=dict)

    @property
    def content_type(self) -> str:
        return self.fields.get("content-type", "text/plain")

    @property
    def media_type(self) -> str:
        return self.content_type.split(";", 1)[0].strip().lower()

    def param(self, name: str) -> str | None:
        message = Message()
        message["content-type"] = self.content_type
        value = message.get_param(name, header="content-type")
        return value if isinstance(value, str) else None


@dataclass(frozen=True)
class MultipartLimits:
    """Bounds on what a client controls; a body beyond them is refused, not buffered."""

    max_parts: int = 10_000
    max_header_bytes: int = 16 * 1024
    max_preamble_bytes: int = 64 * 1024
    max_epilogue_bytes: int = 64 * 1024
    max_padding_bytes: int = 256


def request_boundary(content_type: str, *, expected_type: str | None = None) -> str:
    """The boundary of a ``multipart/related`` Content-Type header, checked against RFC 2046.

    With ``expected_type``, the header's ``type`` parameter (the media type of the root part,
    PS3.18 8.6.1.2) must name it when present.
    """
    message = Message()
    message["content-type"] = content_type
    if message.get_content_type() != "multipart/related":
        raise MultipartError(f"not multipart/related: {message.get_content_type()}")
    boundary = message.get_param("boundary")
    if not isinstance(boundary, str) or not _BOUNDARY.fullmatch(boundary):
        raise MultipartError("missing or malformed boundary parameter")
    if expected_type is not None:
        root = message.get_param("type")
        if isinstance(root, str) and root.strip().lower() != expected_type:
            raise MultipartError(f"type={root!r} is not {expected_type}")
    return boundary


class _State(Enum):
    PREAMBLE = auto()
    AFTER_DELIMITER = auto()
    HEADERS = auto()
    BODY = auto()
    EPILOGUE = auto()


class MultipartReader:
    """A push parser: :meth:`feed` it the body's chunks, then :meth:`finish`.

    ``open_part`` is called with each part's headers and returns the sink for its bytes;
    ``close_part`` is called once the part's closing delimiter has been seen. A part cut off by
    the end of the body is never passed to ``close_part``: :meth:`finish` raises instead, and
    the caller throws away the sink it opened (the last one ``open_part`` returned).
    """

    def __init__(
        self,
        boundary: str,
        *,
        open_part: Callable[[PartHeaders], PartSink],
        close_part: Callable[[PartSink], None],
        limits: MultipartLimits | None = None,
    ) -> None:
        if not _BOUNDARY.fullmatch(boundary):
            raise MultipartError("malformed boundary")
        self._delimiter = b"\r\n--" + boundary.encode("ascii")
        self._open_part = open_part
        self._close_part = close_part
        self._limits = limits or MultipartLimits()
        # The first delimiter may open the body without a CRLF before it: supplying one lets
        # a single search find every delimiter.
        self._buffer = bytearray(b"\r\n")
        self._state = _State.PREAMBLE
        self._discarded = 0
        self._sink: PartSink | None = None
        self.parts = 0
        self.bytes_fed = 0

    @property
    def complete(self) -> bool:
        """True once the close delimiter has been read."""
        return self._state is _State.EPILOGUE

    def feed(self, chunk: bytes) -> None:
        self.bytes_fed += len(chunk)
        if self._state is _State.EPILOGUE:
            self._discard(len(chunk), self._limits.max_epilogue_bytes, "epilogue")
            return
        self._buffer += chunk
        while self._step():
            pass

    def finish(self) -> None:
        """The body has ended: it must have ended after the close delimiter."""
        if self._state is not _State.EPILOGUE:
            where = "inside a part" if self._state is _State.BODY else "before its end"
            raise MultipartError(f"the body ended {where} (no closing boundary)")

    def _discard(self, n: int, limit: int, what: str) -> None:
        self._discarded += n
        if self._discarded > limit:
            raise MultipartError(f"{what} longer than {limit} bytes")

    def _step(self) -> bool:
        """Consume what the buffer allows; False when more input is needed."""
        if self._state is _State.PREAMBLE:
            return self._preamble()
        if self._state is _State.AFTER_DELIMITER:
            return self._after_delimiter()
        if self._state is _State.HEADERS:
            return self._headers()
        if self._state is _State.BODY:
            return self._body()
        self._discard(len(self._buffer), self._limits.max_epilogue_bytes, "epilogue")
        self._buffer.clear()
        return False

    def _preamble(self) -> bool:
        index = self._buffer.find(self._delimiter)
        if index < 0:
            keep = len(self._delimiter) - 1
            drop = max(0, len(self._buffer) - keep)
            self._discard(drop, self._limits.max_preamble_bytes, "preamble")
            del self._buffer[:drop]
            return False
        self._discard(index, self._limits.max_preamble_bytes, "preamble")
        del self._buffer[: index + len(self._delimiter)]
        self._discarded = 0
        self._state = _State.AFTER_DELIMITER
        return True

    def _after_delimiter(self) -> bool:
        if len(self._buffer) < 2:
            return False
        if self._buffer.startswith(b"--"):
            del self._buffer[:2]
            self._discarded = 0
            self._state = _State.EPILOGUE
            return True
        end = self._buffer.find(b"\r\n")
        if end < 0:
            if len(self._buffer) > self._limits.max_padding_bytes:
                raise MultipartError("no line end after a boundary")
            return False
        if self._buffer[:end].strip(b" \t"):
            raise MultipartError("text after a boundary on its line")
        del self._buffer[: end + 2]
        self._state = _State.HEADERS
        return True

    def _headers(self) -> bool:
        if self._buffer.startswith(b"\r\n"):
            end, block = 0, b""
        else:
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self._buffer) > self._limits.max_header_bytes:
                    raise MultipartError(
                        f"a part's headers are longer than {self._limits.max_header_bytes} bytes"
                    )
                return False
            if end > self._limits.max_header_bytes:
                raise MultipartError(
                    f"a part's headers are longer than {self._limits.max_header_bytes} bytes"
                )
            block = bytes(self._buffer[:end])
            end += 2
        del self._buffer[: end + 2]
        headers = _parse_headers(block)
        self.parts += 1
        if self.parts > self._limits.max_parts:
            raise MultipartError(f"more than {self._limits.max_parts} parts")
        self._sink = self._open_part(headers)
        self._state = _State.BODY
        return True

    def _body(self) -> bool:
        assert self._sink is not None
        index = self._buffer.find(self._delimiter)
        if index < 0:
            safe = len(self._buffer) - (len(self._delimiter) - 1)
            if safe > 0:
                self._sink.write(self._buffer[:safe])
                del self._buffer[:safe]
            return False
        if index:
            self._sink.write(self._buffer[:index])
        del self._buffer[: index + len(self._delimiter)]
        sink, self._sink = self._sink, None
        self._close_part(sink)
        self._state = _State.AFTER_DELIMITER
        return True


def _parse_headers(block: bytes) -> PartHeaders:
    fields: dict[str, str] = {}
    if not block:
        return PartHeaders(fields)
    try:
        text = block.decode("ascii")
    except UnicodeDecodeError as exc:
        raise MultipartError("a part's headers are not ASCII") from exc
    for line in text.split("\r\n"):
        name, sep, value = line.partition(":")
        if not sep or not _HEADER_NAME.fullmatch(name):
            raise MultipartError(f"malformed part header line {line[:80]!r}")
        fields[name.lower()] = value.strip()
    return PartHeaders(fields)
