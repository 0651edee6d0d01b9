"""The streaming multipart/related reader that STOW-RS bodies go through."""

from __future__ import annotations

import io

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from unitumour_dicom.dicomweb.multipart import Part, iter_multipart
from unitumour_dicom.dicomweb.multipart_reader import (
    MultipartError,
    MultipartLimits,
    MultipartReader,
    PartHeaders,
    request_boundary,
)

BOUNDARY = "unitumour-test-boundary"


class Collected:
    def __init__(self) -> None:
        self.opened: list[tuple[PartHeaders, io.BytesIO]] = []
        self.closed: list[io.BytesIO] = []

    def open_part(self, headers: PartHeaders) -> io.BytesIO:
        sink = io.BytesIO()
        self.opened.append((headers, sink))
        return sink

    def close_part(self, sink: io.BytesIO) -> None:
        self.closed.append(sink)

    def reader(self, limits: MultipartLimits | None = None) -> MultipartReader:
        return MultipartReader(
            BOUNDARY, open_part=self.open_part, close_part=self.close_part, limits=limits
        )


def body_of(*payloads: bytes, media: str = "application/dicom") -> bytes:
    return b"".join(iter_multipart([Part(media, data=p) for p in payloads], BOUNDARY))


def read(body: bytes, chunk: int, limits: MultipartLimits | None = None) -> Collected:
    got = Collected()
    reader = got.reader(limits)
    for i in range(0, len(body), chunk):
        reader.feed(body[i : i + chunk])
    reader.finish()
    return got


# Payloads that look like delimiters without being one: the reader must keep them as data.
TRICKY = [
    b"",
    b"--" + BOUNDARY.encode(),
    b"\r\n-" + BOUNDARY.encode(),
    b"\r\n--" + BOUNDARY.encode()[:-1] + b"X",
    b"\r\n\r\n\r\n",
    bytes(range(256)) * 40,
]


@pytest.mark.parametrize("chunk", [1, 2, 7, 64, 1 << 20])
def test_parts_come_back_byte_for_byte_whatever_the_chunking(chunk: int) -> None:
    got = read(body_of(*TRICKY), chunk)
    assert [sink.getvalue() for sink in got.closed] == TRICKY
    assert [h.media_type for h, _ in got.opened] == ["application/dicom"] * len(TRICKY)


@settings(max_examples=60, deadline=None)
@given(
    payloads=st.lists(st.binary(max_size=300), min_size=1, max_size=5),
    cuts=st.lists(st.integers(min_value=1, max_value=97), min_size=1, max_size=50),
)
def test_any_payloads_any_chunking(payloads: list[bytes], cuts: list[int]) -> None:
    body = body_of(*payloads)
    got = Collected()
    reader = got.reader()
    at = 0
    for i, step in enumerate(cuts * (len(body) // max(1, sum(cuts)) + 1)):
        if at >= len(body):
            break
        reader.feed(body[at : at + step])
        at += step
        del i
    if at < len(body):
        reader.feed(body[at:])
    reader.finish()
    assert [s.getvalue() for s in got.closed] == payloads


def test_preamble_epilogue_padding_and_headerless_part() -> None:
    b = BOUNDARY.encode()
    body = (
        b"this is a preamble\r\n--" + b + b"  \t\r\n"  # transport padding after the delimiter
        b"Content-Type: application/dicom; transfer-syntax=1.2.840.10008.1.2.1\r\n"
        b"Content-Location: a\r\n\r\nfirst\r\n--" + b + b"\r\n"
        b"\r\nsecond\r\n--" + b + b"--\r\nand an epilogue"
    )
    got = read(body, 5)
    assert [s.getvalue() for s in got.closed] == [b"first", b"second"]
    first, second = got.opened[0][0], got.opened[1][0]
    assert first.param("transfer-syntax") == "1.2.840.10008.1.2.1"
    assert first.fields["content-location"] == "a"
    assert second.media_type == "text/plain"  # RFC 2046 default


@pytest.mark.parametrize(("cut", "complete"), [(10, 0), (60, 0), (-30, 1), (-3, 2)])
def test_a_truncated_body_is_refused_and_a_cut_part_never_closed(cut: int, complete: int) -> None:
    """Parts whose delimiter arrived are whole and may be kept; the cut one never is."""
    body = body_of(b"A" * 100, b"B" * 100)
    got = Collected()
    reader = got.reader()
    reader.feed(body[:cut])
    with pytest.raises(MultipartError, match="ended"):
        reader.finish()
    assert [s.getvalue() for s in got.closed] == [b"A" * 100, b"B" * 100][:complete]


def test_bounds_on_what_the_client_controls() -> None:
    b = BOUNDARY.encode()
    with pytest.raises(MultipartError, match="preamble"):
        read(b"x" * 70_000 + body_of(b"a"), 4096)
    with pytest.raises(MultipartError, match="headers"):
        read(b"--" + b + b"\r\nX-A: " + b"y" * 20_000 + b"\r\n\r\na\r\n--" + b + b"--", 1000)
    with pytest.raises(MultipartError, match="more than 3 parts"):
        read(body_of(*[b"p"] * 4), 100, MultipartLimits(max_parts=3))
    with pytest.raises(MultipartError, match="epilogue"):
        read(body_of(b"p") + b"z" * 70_000, 4096)
    with pytest.raises(MultipartError, match="line end"):
        read(b"--" + b + b" " * 1000, 100)
    with pytest.raises(MultipartError, match="malformed part header"):
        read(b"--" + b + b"\r\nno colon here\r\n\r\na\r\n--" + b + b"--", 100)


def test_request_boundary() -> None:
    ct = f'multipart/related; type="application/dicom"; boundary={BOUNDARY}'
    assert request_boundary(ct, expected_type="application/dicom") == BOUNDARY
    assert request_boundary('multipart/related; boundary="a b c"') == "a b c"
    with pytest.raises(MultipartError, match="not multipart/related"):
        request_boundary("application/dicom")
    with pytest.raises(MultipartError, match="boundary"):
        request_boundary("multipart/related; type=application/dicom")
    with pytest.raises(MultipartError, match="boundary"):
        request_boundary("multipart/related; boundary=" + "x" * 71)
    with pytest.raises(MultipartError, match="is not application/dicom"):
        request_boundary(
            'multipart/related; type="application/dicom+json"; boundary=b',
            expected_type="application/dicom",
        )
