"""Reading a received instance's header without touching its pixels.

A base level can be several gigabytes, so the data set is parsed only up to Pixel Data; the
Pixel Data element itself is then walked item by item (encapsulated) or measured (native) by
seeking over it, which proves the transfer was complete without reading the frames. Deflated
data sets are inflated in a streaming pass into a scratch file first, with a ceiling on the
inflated size so that a deflate bomb cannot fill the disk.
"""

from __future__ import annotations

import logging
import os
import struct
import uuid
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.filereader import _read_file_meta_info, read_preamble
from pydicom.filewriter import write_file_meta_info
from pydicom.uid import UID, ExplicitVRLittleEndian

from ..errors import InvalidInstanceError
from .contexts import DEFLATED
from .status import StoreStatus

log = logging.getLogger(__name__)

_ITEM = 0xFFFEE000
_SEQUENCE_DELIMITER = 0xFFFEE0DD
_UNDEFINED = 0xFFFFFFFF
_PIXEL_DATA_TAGS = {0x7FE00010, 0x7FE00008, 0x7FE00009}
_INFLATE_CHUNK = 1 << 20
#: Longest element value read while parsing a header; longer ones stay on disk (deferred).
MAX_HEADER_VALUE_BYTES = 1 << 20


#: What pydicom may raise on bytes it cannot parse; every one of them is the sender's fault
#: (an unknown VR raises NotImplementedError, a bad length struct.error or OverflowError).
_PARSE_ERRORS = (
    InvalidDicomError,
    EOFError,
    ValueError,
    KeyError,
    TypeError,
    IndexError,
    AttributeError,
    NotImplementedError,
    OverflowError,
    struct.error,
    UnicodeError,
)


class BoundedReader:
    """A read-only file whose reads never ask for more than the file still holds.

    pydicom reads an element value with ``fp.read(length)``, and a buffered file allocates the
    ``length`` asked for before it finds out how much there is: a 73 KB file whose header
    claims a 2 GiB value makes a 2 GiB allocation. Capping each read at what remains turns the
    lie into a short read, which pydicom reports as the truncation it is.
    """

    def __init__(self, raw: BinaryIO, size: int) -> None:
        self._raw = raw
        self._size = size
        self.name = getattr(raw, "name", None)

    def read(self, n: int | None = -1) -> bytes:
        remaining = max(0, self._size - self._raw.tell())
        if n is None or n < 0 or n > remaining:
            n = remaining
        return self._raw.read(n)

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        return self._raw.seek(offset, whence)

    def tell(self) -> int:
        return self._raw.tell()

    def close(self) -> None:
        """The caller owns the underlying file."""


@dataclass(frozen=True)
class PixelDataInfo:
    """Where Pixel Data lies in the file and what its encoding holds, measured not decoded."""

    tag: int
    offset: int
    encapsulated: bool
    #: Value length of native pixel data (None when encapsulated).
    length: int | None
    #: Number of fragments after the Basic Offset Table (None when native).
    fragments: int | None
    #: Length of the Basic Offset Table item (0 when empty; None when native).
    offset_table_length: int | None


@dataclass(frozen=True)
class InstanceHeader:
    """Everything of an instance but its pixels."""

    dataset: Dataset
    transfer_syntax_uid: UID
    pixel_data: PixelDataInfo | None
    file_size: int


def _cannot_understand(message: str) -> InvalidInstanceError:
    return InvalidInstanceError(message, int(StoreStatus.CANNOT_UNDERSTAND))


def _read_exact(fh: BinaryIO, n: int, what: str) -> bytes:
    data = fh.read(n)
    if len(data) != n:
        raise _cannot_understand(f"data set ends inside {what} (truncated)")
    return data


def _measure_pixel_data(
    fh: BinaryIO, *, offset: int, implicit_vr: bool, file_size: int
) -> PixelDataInfo:
    """Walk the Pixel Data element at ``offset``; raise if it is cut short or malformed."""
    fh.seek(offset)
    group, element = struct.unpack("<HH", _read_exact(fh, 4, "the Pixel Data tag"))
    tag = (group << 16) | element
    if implicit_vr:
        (length,) = struct.unpack("<I", _read_exact(fh, 4, "the Pixel Data length"))
    else:
        vr = _read_exact(fh, 2, "the Pixel Data VR")
        if vr not in (b"OB", b"OW", b"OF", b"OD", b"UN"):
            raise _cannot_understand(f"Pixel Data has VR {vr!r}, expected OB or OW")
        _read_exact(fh, 2, "the Pixel Data header")
        (length,) = struct.unpack("<I", _read_exact(fh, 4, "the Pixel Data length"))
    if length != _UNDEFINED:
        end = fh.tell() + length
        if end > file_size:
            raise _cannot_understand(
                f"Pixel Data declares {length} bytes but the data set ends "
                f"{end - file_size} bytes short (truncated)"
            )
        return PixelDataInfo(tag, offset, False, length, None, None)
    # Encapsulated: Basic Offset Table item, fragment items, sequence delimiter.
    fragments = -1
    offset_table_length = 0
    while True:
        item_tag_group, item_tag_element, item_length = struct.unpack(
            "<HHI", _read_exact(fh, 8, "an encapsulated Pixel Data item header")
        )
        item_tag = (item_tag_group << 16) | item_tag_element
        if item_tag == _SEQUENCE_DELIMITER:
            break
        if item_tag != _ITEM:
            raise _cannot_understand(
                f"encapsulated Pixel Data holds tag ({item_tag_group:04X},{item_tag_element:04X}) "
                "where an item or the sequence delimiter must be"
            )
        if item_length == _UNDEFINED:
            raise _cannot_understand("an encapsulated Pixel Data item has undefined length")
        end = fh.tell() + item_length
        if end > file_size:
            raise _cannot_understand(
                "the data set ends inside an encapsulated Pixel Data fragment (truncated)"
            )
        if fragments < 0:
            offset_table_length = item_length
        fragments += 1
        fh.seek(item_length, os.SEEK_CUR)
    if fragments < 0:
        raise _cannot_understand("encapsulated Pixel Data has no Basic Offset Table item")
    return PixelDataInfo(tag, offset, True, None, fragments, offset_table_length)


def _inflate_to(source: Path, scratch: Path, *, meta: FileMetaDataset, max_size: int) -> None:
    """Rewrite a deflated file as explicit VR little endian, streaming, bounded in size."""
    with open(source, "rb") as fh:
        head = _read_exact(fh, 144, "the File Meta Information")
        group, element = struct.unpack("<HH", head[132:136])
        if head[128:132] != b"DICM" or (group, element) != (0x0002, 0x0000):
            raise _cannot_understand("File Meta Information lacks its group length")
        (group_length,) = struct.unpack("<I", head[140:144])
        fh.seek(144 + group_length)
        plain_meta = FileMetaDataset(meta)
        plain_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        inflater = zlib.decompressobj(-zlib.MAX_WBITS)
        total = 0
        with open(scratch, "xb") as out:
            out.write(b"\x00" * 128 + b"DICM")
            write_file_meta_info(out, plain_meta)  # type: ignore[arg-type]
            try:
                while not inflater.eof and (chunk := fh.read(_INFLATE_CHUNK)):
                    data = inflater.decompress(chunk, _INFLATE_CHUNK)
                    while True:
                        total += len(data)
                        if total > max_size:
                            raise InvalidInstanceError(
                                f"deflated data set inflates beyond {max_size} bytes",
                                int(StoreStatus.OUT_OF_RESOURCES),
                            )
                        out.write(data)
                        # after the end of the stream only padding follows (PS3.5 A.5)
                        if inflater.eof or not inflater.unconsumed_tail:
                            break
                        data = inflater.decompress(inflater.unconsumed_tail, _INFLATE_CHUNK)
                out.write(inflater.flush())
            except zlib.error as exc:
                raise _cannot_understand(f"deflated data set is corrupt: {exc}") from exc
            if not inflater.eof:
                raise _cannot_understand("deflated data set ends before its deflate stream does")


def read_instance_header(
    path: Path, *, scratch_dir: Path, max_inflated_bytes: int
) -> InstanceHeader:
    """Parse a received file up to Pixel Data and measure Pixel Data; never decode pixels.

    Raises :class:`InvalidInstanceError` (status 0xC000, or 0xA700 for a deflate bomb) when the
    file is not a readable DICOM data set or ends early.
    """
    try:
        file_size = path.stat().st_size
        with open(path, "rb") as raw:
            try:
                fh = BoundedReader(raw, file_size)
                read_preamble(fh, False)  # type: ignore[arg-type]
                meta = _read_file_meta_info(fh)  # type: ignore[arg-type]
                transfer_syntax = UID(str(meta.get("TransferSyntaxUID", "")))
            except _PARSE_ERRORS as exc:
                raise _cannot_understand(f"no readable File Meta Information: {exc}") from exc
        if not transfer_syntax.is_transfer_syntax:
            raise _cannot_understand(f"unknown transfer syntax {transfer_syntax!r}")
        if transfer_syntax == DEFLATED:
            scratch = scratch_dir / f"{uuid.uuid4().hex}.inflated"
            try:
                _inflate_to(path, scratch, meta=meta, max_size=max_inflated_bytes)
                inflated = read_instance_header(
                    scratch, scratch_dir=scratch_dir, max_inflated_bytes=max_inflated_bytes
                )
            finally:
                scratch.unlink(missing_ok=True)
            return InstanceHeader(inflated.dataset, transfer_syntax, inflated.pixel_data, file_size)
        with open(path, "rb") as raw:
            fh = BoundedReader(raw, file_size)
            try:
                # A value longer than MAX_HEADER_VALUE_BYTES is skipped, not read: a length
                # field is the sender's word, and a 4 GiB one must not become a 4 GiB read.
                dataset = dcmread(
                    fh,
                    stop_before_pixels=True,
                    defer_size=MAX_HEADER_VALUE_BYTES,
                )
            except _PARSE_ERRORS as exc:
                raise _cannot_understand(f"not a readable DICOM data set: {exc}") from exc
            position = fh.tell()
            pixel_data = None
            if position + 4 <= file_size:
                group, element = struct.unpack("<HH", _read_exact(raw, 4, "a tag"))
                if ((group << 16) | element) in _PIXEL_DATA_TAGS:
                    pixel_data = _measure_pixel_data(
                        raw,
                        offset=position,
                        implicit_vr=transfer_syntax.is_implicit_VR,
                        file_size=file_size,
                    )
    except InvalidInstanceError:
        raise
    except OSError as exc:
        raise _cannot_understand(f"cannot read the received data set: {exc}") from exc
    return InstanceHeader(dataset, transfer_syntax, pixel_data, file_size)
