"""Frames read straight from a stored file, without loading its Pixel Data.

A slide's base level can be gigabytes of JPEG tiles; a viewer asks for one tile at a time.
:func:`read_layout` parses the header and walks the item headers of encapsulated Pixel Data
(seeking over the fragments' bytes) once, so that :func:`read_frame` then costs one seek and
one read per fragment. Native (uncompressed) frames are found by arithmetic, including the
bit-packed frames of BINARY Segmentations, whose frames need not start on a byte boundary.

Files that cannot be read this way (deflated or big-endian transfer syntaxes, whose bytes are
not seekable as stored) fall back to a full pydicom read; those are rare and small.
"""

from __future__ import annotations

import logging
import os
import struct
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.uid import UID, ExplicitVRLittleEndian

from .errors import DicomWebError, FrameNotFoundError

log = logging.getLogger(__name__)

PIXEL_DATA_TAG = 0x7FE00010
_ITEM = 0xFFFEE000
_SEQUENCE_DELIMITER = 0xFFFEE0DD
_UNDEFINED = 0xFFFFFFFF

# Transfer syntaxes whose frames always begin with a JPEG SOI marker (FFD8) or a JPEG 2000
# codestream/file marker, which lets fragments be grouped into frames without an offset table.
_JPEG_FAMILY = {
    "1.2.840.10008.1.2.4.50",
    "1.2.840.10008.1.2.4.51",
    "1.2.840.10008.1.2.4.57",
    "1.2.840.10008.1.2.4.70",
    "1.2.840.10008.1.2.4.80",
    "1.2.840.10008.1.2.4.81",
}
_J2K_FAMILY = {
    "1.2.840.10008.1.2.4.90",
    "1.2.840.10008.1.2.4.91",
    "1.2.840.10008.1.2.4.92",
    "1.2.840.10008.1.2.4.93",
    "1.2.840.10008.1.2.4.201",
    "1.2.840.10008.1.2.4.202",
    "1.2.840.10008.1.2.4.203",
}


@dataclass(frozen=True)
class PixelDataLayout:
    """Where each frame of a stored file lies, and what its pixels are."""

    transfer_syntax_uid: str
    encapsulated: bool
    number_of_frames: int
    rows: int
    columns: int
    samples_per_pixel: int
    bits_allocated: int
    bits_stored: int
    pixel_representation: int
    photometric_interpretation: str
    planar_configuration: int
    pixel_data_vr: str
    #: file offset of the Pixel Data value (native), or None without Pixel Data
    value_offset: int | None
    #: per frame, the (file offset, length) of each of its fragments (encapsulated only)
    fragments: tuple[tuple[tuple[int, int], ...], ...] | None
    #: True when frames must come from a full read of the dataset (not seekable as stored)
    needs_full_read: bool = False

    @property
    def frame_bits(self) -> int:
        return self.rows * self.columns * self.samples_per_pixel * self.bits_allocated

    @property
    def native_frame_length(self) -> int:
        """Bytes of one native frame as served: bit-packed frames padded to whole bytes."""
        return (self.frame_bits + 7) // 8


class PixelDataError(DicomWebError):
    status_code = 500


def _int(ds: Dataset, keyword: str, default: int) -> int:
    value = ds.get(keyword)
    if value is None or value == "":
        return default
    return int(value)


def _layout_from_header(ds: Dataset, ts: str, **fields: object) -> PixelDataLayout:
    return PixelDataLayout(
        transfer_syntax_uid=ts,
        number_of_frames=max(_int(ds, "NumberOfFrames", 1), 1),
        rows=_int(ds, "Rows", 0),
        columns=_int(ds, "Columns", 0),
        samples_per_pixel=_int(ds, "SamplesPerPixel", 1),
        bits_allocated=_int(ds, "BitsAllocated", 8),
        bits_stored=_int(ds, "BitsStored", _int(ds, "BitsAllocated", 8)),
        pixel_representation=_int(ds, "PixelRepresentation", 0),
        photometric_interpretation=str(ds.get("PhotometricInterpretation", "MONOCHROME2")),
        planar_configuration=_int(ds, "PlanarConfiguration", 0),
        **fields,  # type: ignore[arg-type]
    )


def read_layout(path: Path) -> PixelDataLayout:
    """Index the frames of the file at ``path``: header, then item headers only."""
    with open(path, "rb") as fh:
        ds = pydicom.dcmread(fh, stop_before_pixels=True)
        element_start = fh.tell()
        ts = UID(str(ds.file_meta.get("TransferSyntaxUID", ExplicitVRLittleEndian)))
        if ts.is_deflated or not ts.is_little_endian:
            return _layout_from_header(
                ds,
                str(ts),
                encapsulated=ts.is_encapsulated,
                pixel_data_vr="OB",
                value_offset=None,
                fragments=None,
                needs_full_read=True,
            )
        head = fh.read(12)
        if len(head) < 8 or struct.unpack("<I", head[:4])[0] != _tag_le(PIXEL_DATA_TAG):
            # No Pixel Data (or Float Pixel Data, which WSI and SEG do not use).
            return _layout_from_header(
                ds,
                str(ts),
                encapsulated=False,
                pixel_data_vr="OB",
                value_offset=None,
                fragments=None,
            )
        if ts.is_implicit_VR:
            vr = "OW" if _int(ds, "BitsAllocated", 8) > 8 else "OB"
            length = struct.unpack("<I", head[4:8])[0]
            value_offset = element_start + 8
        else:
            vr = head[4:6].decode("ascii", "replace")
            length = struct.unpack("<I", head[8:12])[0]
            value_offset = element_start + 12
        if length != _UNDEFINED:
            layout = _layout_from_header(
                ds,
                str(ts),
                encapsulated=False,
                pixel_data_vr=vr,
                value_offset=value_offset,
                fragments=None,
            )
            needed = (layout.number_of_frames * layout.frame_bits + 7) // 8
            if length < needed:
                raise PixelDataError(
                    f"{path.name}: Pixel Data holds {length} bytes, "
                    f"{layout.number_of_frames} frames need {needed}"
                )
            size = os.fstat(fh.fileno()).st_size
            if value_offset + needed > size:
                raise PixelDataError(
                    f"{path.name}: the file ends {value_offset + needed - size} bytes "
                    "before its Pixel Data does (truncated)"
                )
            return layout
        fragments, bot = _scan_fragments(fh, value_offset)
        n_frames = max(_int(ds, "NumberOfFrames", 1), 1)
        frames = _group_fragments(fh, ds, str(ts), fragments, bot, n_frames, path)
        return _layout_from_header(
            ds,
            str(ts),
            encapsulated=True,
            pixel_data_vr=vr,
            value_offset=value_offset,
            fragments=frames,
        )


def _tag_le(tag: int) -> int:
    """A tag as the uint32 its little-endian group and element read as."""
    return ((tag & 0xFFFF) << 16) | (tag >> 16)


def _scan_fragments(fh: BinaryIO, value_offset: int) -> tuple[list[tuple[int, int]], list[int]]:
    """(offset, length) of every fragment after the Basic Offset Table, and the table."""
    fh.seek(value_offset)
    size = os.fstat(fh.fileno()).st_size
    bot: list[int] = []
    fragments: list[tuple[int, int]] = []
    first = True
    while True:
        head = fh.read(8)
        if len(head) < 8:
            raise PixelDataError("encapsulated Pixel Data ends before its sequence delimiter")
        group, element, length = struct.unpack("<HHI", head)
        tag = (group << 16) | element
        if tag == _SEQUENCE_DELIMITER:
            break
        if tag != _ITEM or length == _UNDEFINED:
            raise PixelDataError(f"unexpected tag {tag:08X} inside encapsulated Pixel Data")
        start = fh.tell()
        if start + length > size:
            raise PixelDataError("a Pixel Data fragment runs past the end of the file")
        if first:
            if length:
                bot = list(struct.unpack(f"<{length // 4}I", fh.read(length)))
            first = False
        else:
            fragments.append((start, length))
            fh.seek(length, os.SEEK_CUR)
    return fragments, bot


def _group_fragments(
    fh: BinaryIO,
    ds: Dataset,
    ts: str,
    fragments: list[tuple[int, int]],
    bot: list[int],
    n_frames: int,
    path: Path,
) -> tuple[tuple[tuple[int, int], ...], ...]:
    """Assign fragments to frames by the offset tables, or by frame start markers."""
    if not fragments:
        raise PixelDataError(f"{path.name}: encapsulated Pixel Data has no fragments")
    first_item = fragments[0][0] - 8
    starts: list[int] | None = None
    if n_frames == 1:
        return (tuple(fragments),)
    eot = ds.get("ExtendedOffsetTable")
    if eot is not None and len(eot) == 8 * n_frames:
        starts = [first_item + v for v in struct.unpack(f"<{n_frames}Q", bytes(eot))]
    elif len(bot) == n_frames:
        starts = [first_item + v for v in bot]
    elif len(fragments) == n_frames:
        return tuple((f,) for f in fragments)
    elif ts in _JPEG_FAMILY or ts in _J2K_FAMILY:
        starts = []
        for offset, _length in fragments:
            fh.seek(offset)
            marker = fh.read(2)
            if marker in (b"\xff\xd8", b"\xff\x4f") or (
                marker == b"\x00\x00" and ts in _J2K_FAMILY
            ):
                starts.append(offset - 8)
        if len(starts) != n_frames:
            raise PixelDataError(
                f"{path.name}: found {len(starts)} frame starts for {n_frames} frames"
            )
    else:
        raise PixelDataError(
            f"{path.name}: {len(fragments)} fragments for {n_frames} frames and no offset table"
        )
    by_item = {offset - 8: i for i, (offset, _) in enumerate(fragments)}
    index = []
    for s in starts:
        if s not in by_item:
            raise PixelDataError(f"{path.name}: an offset table entry points between fragments")
        index.append(by_item[s])
    if index != sorted(index) or index[0] != 0:
        raise PixelDataError(f"{path.name}: the offset table is not in frame order")
    bounds = [*index, len(fragments)]
    return tuple(tuple(fragments[bounds[i] : bounds[i + 1]]) for i in range(n_frames))


def read_frame(path: Path, layout: PixelDataLayout, number: int) -> bytes:
    """Frame ``number`` (1-based) as stored: compressed bytes, or native bytes (bit-packed
    frames repacked so that the frame starts at bit 0 of its first byte)."""
    if not 1 <= number <= layout.number_of_frames:
        raise FrameNotFoundError(
            f"frame {number} does not exist; the instance has {layout.number_of_frames}"
        )
    if layout.needs_full_read:
        return _read_frame_full(path, layout, number)
    if layout.value_offset is None:
        raise FrameNotFoundError("the instance has no Pixel Data")
    with open(path, "rb") as fh:
        if layout.encapsulated:
            assert layout.fragments is not None
            parts = []
            for offset, length in layout.fragments[number - 1]:
                fh.seek(offset)
                parts.append(fh.read(length))
            return _strip_padding(b"".join(parts), layout.transfer_syntax_uid)
        start_bit = (number - 1) * layout.frame_bits
        if start_bit % 8 == 0:
            fh.seek(layout.value_offset + start_bit // 8)
            data = fh.read(layout.native_frame_length)
            if layout.frame_bits % 8:
                data = _mask_trailing_bits(data, layout.frame_bits)
            return data
        first_byte = start_bit // 8
        end_byte = (start_bit + layout.frame_bits + 7) // 8
        fh.seek(layout.value_offset + first_byte)
        raw = fh.read(end_byte - first_byte)
    bits = np.unpackbits(np.frombuffer(raw, np.uint8), bitorder="little")
    shift = start_bit % 8
    return np.packbits(bits[shift : shift + layout.frame_bits], bitorder="little").tobytes()


def _strip_padding(frame: bytes, transfer_syntax_uid: str) -> bytes:
    """Drop the zero byte that pads an odd-length codestream to an even fragment length, so
    the frame is exactly the codestream (ending in its EOI/EOC marker FFD9)."""
    if (
        transfer_syntax_uid in _JPEG_FAMILY or transfer_syntax_uid in _J2K_FAMILY
    ) and frame.endswith(b"\xff\xd9\x00"):
        return frame[:-1]
    return frame


def _mask_trailing_bits(data: bytes, n_bits: int) -> bytes:
    """Zero the bits of the last byte that belong to the next frame."""
    keep = n_bits % 8
    return data[:-1] + bytes([data[-1] & ((1 << keep) - 1)])


def _read_frame_full(path: Path, layout: PixelDataLayout, number: int) -> bytes:
    ds = pydicom.dcmread(path)
    if "PixelData" not in ds:
        raise FrameNotFoundError("the instance has no Pixel Data")
    if layout.encapsulated:
        from pydicom.encaps import get_frame

        frame = get_frame(ds.PixelData, number - 1, number_of_frames=layout.number_of_frames)
        return _strip_padding(frame, layout.transfer_syntax_uid)
    data = bytes(ds.PixelData)
    if ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.2" and layout.bits_allocated > 8:
        data = np.frombuffer(data, f">u{layout.bits_allocated // 8}").byteswap().tobytes()
    start_bit = (number - 1) * layout.frame_bits
    bits_needed = layout.frame_bits
    if start_bit % 8 == 0 and bits_needed % 8 == 0:
        return data[start_bit // 8 : (start_bit + bits_needed) // 8]
    bits = np.unpackbits(np.frombuffer(data, np.uint8), bitorder="little")
    return np.packbits(bits[start_bit : start_bit + bits_needed], bitorder="little").tobytes()


def decode_frame(frame: bytes, layout: PixelDataLayout) -> bytes:
    """A compressed frame decoded to native Explicit VR Little Endian bytes (colour as RGB,
    interleaved), for clients that accept only uncompressed frames."""
    if not layout.encapsulated:
        return frame
    from pydicom.encaps import encapsulate
    from pydicom.pixels.decoders.base import get_decoder

    decoder = get_decoder(UID(layout.transfer_syntax_uid))
    if not decoder.is_available:
        raise PixelDataError(
            f"no decoder available here for transfer syntax {layout.transfer_syntax_uid}"
        )
    # pydicom annotates as_array's **kwargs as DecodeOptions (each value one whole TypedDict)
    # where it means Unpack[DecodeOptions]: given as a plain dict, they pass as they run.
    options: dict[str, Any] = {
        "rows": layout.rows,
        "columns": layout.columns,
        "samples_per_pixel": layout.samples_per_pixel,
        "bits_allocated": layout.bits_allocated,
        "bits_stored": layout.bits_stored,
        "pixel_representation": layout.pixel_representation,
        "photometric_interpretation": layout.photometric_interpretation,
        "planar_configuration": layout.planar_configuration,
        "number_of_frames": 1,
    }
    array, _meta = decoder.as_array(encapsulate([frame]), **options)
    if layout.bits_allocated == 1:
        return np.packbits(array.astype(np.uint8).ravel(), bitorder="little").tobytes()
    dtype = np.dtype(f"<{'i' if layout.pixel_representation else 'u'}{layout.bits_allocated // 8}")
    return np.ascontiguousarray(array, dtype=dtype).tobytes()


class LayoutCache:
    """Layouts of recently served files, keyed by path, size and modification time, so that
    a viewer's hundreds of tile requests index a file once (stored files never change, but a
    key that includes size and mtime stays right if one were replaced)."""

    def __init__(self, max_entries: int = 256) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[tuple[str, int, int], PixelDataLayout] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, path: Path) -> PixelDataLayout:
        st = path.stat()
        key = (str(path), st.st_size, st.st_mtime_ns)
        with self._lock:
            layout = self._entries.get(key)
            if layout is not None:
                self._entries.move_to_end(key)
                return layout
        layout = read_layout(path)
        with self._lock:
            self._entries[key] = layout
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
        return layout


def read_frames(path: Path, layout: PixelDataLayout, numbers: Sequence[int]) -> list[bytes]:
    return [read_frame(path, layout, n) for n in numbers]
