"""multipart/related message bodies (RFC 2387) as PS3.18 8.7.3 frames them, streamed."""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

CHUNK = 1024 * 1024


@dataclass(frozen=True)
class Part:
    """One body part: its Content-Type, optional Content-Location, and bytes or a file."""

    content_type: str
    data: bytes | None = None
    path: Path | None = None
    location: str | None = None


def new_boundary() -> str:
    return f"unitumour-{secrets.token_hex(16)}"


def content_type(inner: str, boundary: str, transfer_syntax: str | None = None) -> str:
    """The response's Content-Type header for a multipart/related body."""
    value = f'multipart/related; type="{inner}"; boundary={boundary}'
    if transfer_syntax:
        value += f"; transfer-syntax={transfer_syntax}"
    return value


def part_content_type(media_type: str, transfer_syntax: str | None) -> str:
    if transfer_syntax:
        return f"{media_type}; transfer-syntax={transfer_syntax}"
    return media_type


def iter_multipart(parts: Iterable[Part], boundary: str) -> Iterator[bytes]:
    """The body, a part at a time; files are read in 1 MiB chunks, never whole."""
    delimiter = f"--{boundary}".encode()
    for part in parts:
        headers = [f"Content-Type: {part.content_type}"]
        if part.location:
            headers.append(f"Content-Location: {part.location}")
        yield delimiter + b"\r\n" + "\r\n".join(headers).encode() + b"\r\n\r\n"
        if part.data is not None:
            yield part.data
        elif part.path is not None:
            with open(part.path, "rb") as fh:
                while chunk := fh.read(CHUNK):
                    yield chunk
        yield b"\r\n"
        del part  # not held while the next part is made (a frame read or decoded)
    yield delimiter + b"--\r\n"


def parse_multipart(body: bytes, boundary: str) -> list[tuple[dict[str, str], bytes]]:
    """Split a multipart/related body into (headers, payload); used by tests and clients."""
    delimiter = f"--{boundary}".encode()
    out: list[tuple[dict[str, str], bytes]] = []
    pieces = body.split(b"\r\n" + delimiter)
    first = pieces[0]
    if not first.startswith(delimiter):
        raise ValueError("body does not start with the boundary")
    pieces[0] = first[len(delimiter) :]
    for piece in pieces:
        if piece.startswith(b"--"):
            break
        head, _, payload = piece.partition(b"\r\n\r\n")
        headers = {}
        for line in head.decode("latin-1").split("\r\n"):
            if ":" in line:
                k, _, v = line.partition(":")
                headers[k.strip().lower()] = v.strip()
        out.append((headers, payload))
    return out
