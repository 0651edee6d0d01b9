"""Writing a DICOM file whose Pixel Data is streamed: the header goes through pydicom, the
pixel data element is appended frame by frame, so no instance is ever whole in memory.

(7FE0,0010) Pixel Data is the last element of a SEG (nothing the IOD allows sorts after it),
so header-then-pixel-data is the file pydicom itself would write. With the Deflated Explicit
VR Little Endian transfer syntax the data set after the file meta information, pixel data
included, goes through one raw deflate stream (PS3.5 A.5).
"""

from __future__ import annotations

import hashlib
import struct
import zlib
from collections.abc import Iterable, Iterator
from typing import BinaryIO

from pydicom import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset, write_file_meta_info
from pydicom.uid import DeflatedExplicitVRLittleEndian

from ..errors import SegmentationError

_PIXEL_DATA_TAG = b"\xe0\x7f\x10\x00"
_ITEM_TAG = b"\xfe\xff\x00\xe0"
_SEQUENCE_DELIMITER = b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"
_MAX_BOT_OFFSET = 2**32 - 1
CHUNK = 1 << 20


class HashingWriter:
    """Counts and hashes every byte on its way to a file."""

    def __init__(self, fh: BinaryIO) -> None:
        self.fh = fh
        self.sha256 = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> None:
        if data:
            self.fh.write(data)
            self.sha256.update(data)
            self.size += len(data)


class _DeflatingWriter:
    """Raw deflate of the data set; the stream is padded to even length with one zero byte
    (PS3.5 A.5), as DCMTK and others insist on even-length fragments."""

    def __init__(self, out: HashingWriter, level: int = 6) -> None:
        self.out = out
        self.zobj = zlib.compressobj(level, zlib.DEFLATED, -zlib.MAX_WBITS)
        self.length = 0

    def write(self, data: bytes) -> None:
        if data:
            self._emit(self.zobj.compress(data))

    def close(self) -> None:
        self._emit(self.zobj.flush())
        if self.length % 2:
            self._emit(b"\x00")

    def _emit(self, data: bytes) -> None:
        self.length += len(data)
        self.out.write(data)


def header_bytes(dataset: Dataset) -> tuple[bytes, bytes]:
    """(preamble and file meta information, data set without pixel data) as Explicit VR
    Little Endian, the encoding of every transfer syntax we write."""
    if "PixelData" in dataset:
        raise SegmentationError("the header must not hold Pixel Data; it is streamed")
    meta = DicomBytesIO()
    meta.write(b"\x00" * 128 + b"DICM")
    write_file_meta_info(meta, dataset.file_meta, enforce_standard=True)
    body = DicomBytesIO()
    body.is_little_endian = True
    body.is_implicit_VR = False
    write_dataset(body, dataset)
    return meta.getvalue(), body.getvalue()


def native_pixel_element(length: int, chunks: Iterable[bytes]) -> Iterator[bytes]:
    """(7FE0,0010) OB of known, even length; checks that the chunks add up to it."""
    if length % 2:
        raise SegmentationError("native pixel data length must be even")
    yield _PIXEL_DATA_TAG + b"OB\x00\x00" + struct.pack("<I", length)
    written = 0
    for chunk in chunks:
        written += len(chunk)
        yield chunk
    if written != length:
        raise SegmentationError(f"pixel data came to {written} bytes, not {length}")


def encapsulated_pixel_element(
    fragments: BinaryIO, lengths: list[int], *, basic_offset_table: bool
) -> Iterator[bytes]:
    """(7FE0,0010) OB of undefined length: Basic Offset Table item, one item per frame read
    from ``fragments`` (concatenated encoded frames of the given lengths), delimiter."""
    yield _PIXEL_DATA_TAG + b"OB\x00\x00\xff\xff\xff\xff"
    if basic_offset_table:
        offsets = item_offsets(lengths)
        yield _ITEM_TAG + struct.pack("<I", 4 * len(offsets))
        yield struct.pack(f"<{len(offsets)}I", *offsets)
    else:
        yield _ITEM_TAG + b"\x00\x00\x00\x00"
    for length in lengths:
        yield _ITEM_TAG + struct.pack("<I", length + length % 2)
        remaining = length
        while remaining:
            data = fragments.read(min(CHUNK, remaining))
            if not data:
                raise SegmentationError("encoded frames ended early")
            remaining -= len(data)
            yield data
        if length % 2:
            yield b"\x00"
    yield _SEQUENCE_DELIMITER


def item_offsets(lengths: list[int]) -> list[int]:
    """Offset of each frame's item from the first frame item (PS3.5 A.4)."""
    offsets, position = [], 0
    for length in lengths:
        offsets.append(position)
        position += 8 + length + length % 2
    return offsets


def fits_basic_offset_table(lengths: list[int]) -> bool:
    return not lengths or item_offsets(lengths)[-1] <= _MAX_BOT_OFFSET


def extended_offset_table(lengths: list[int]) -> tuple[bytes, bytes]:
    """(Extended Offset Table, Extended Offset Table Lengths) values (PS3.3 C.7.6.3)."""
    offsets = item_offsets(lengths)
    padded = [n + n % 2 for n in lengths]
    return struct.pack(f"<{len(offsets)}Q", *offsets), struct.pack(f"<{len(padded)}Q", *padded)


def write_streamed(out: HashingWriter, dataset: Dataset, pixel_element: Iterable[bytes]) -> None:
    """The whole file: preamble, file meta, data set, then the pixel data element."""
    meta, body = header_bytes(dataset)
    out.write(meta)
    if dataset.file_meta.TransferSyntaxUID == DeflatedExplicitVRLittleEndian:
        sink = _DeflatingWriter(out)
        sink.write(body)
        for chunk in pixel_element:
            sink.write(chunk)
        sink.close()
    else:
        out.write(body)
        for chunk in pixel_element:
            out.write(chunk)
