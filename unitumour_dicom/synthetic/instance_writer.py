"""Stream one multi-frame DICOM instance to disk, frame by frame, in bounded memory.

The header is written first with room reserved for what is only known at the end: the
offset table of the encapsulated frames and the lossy compression ratio. Frames follow as
they are encoded, and the reserved bytes are filled in when the last frame is in. The file
is written under a temporary name, fsynced and renamed, so a reader never sees half of it.

Offsets: a Basic Offset Table (32-bit) when the pixel data surely stays under 4 GiB, else an
empty one and an Extended Offset Table (64-bit, PS3.5 A.4), chosen up front from the worst
case size so the header never has to move.
"""

from __future__ import annotations

import logging
import os
import struct
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

import numpy as np
from pydicom import Dataset
from pydicom.charset import convert_encodings
from pydicom.dataset import FileMetaDataset
from pydicom.filebase import DicomFileLike
from pydicom.filewriter import write_data_element, write_dataset, write_file_meta_info
from pydicom.tag import Tag
from pydicom.uid import UID

from .. import __version__
from .codecs import FrameCodec

logger = logging.getLogger(__name__)

IMPLEMENTATION_CLASS_UID = UID("2.25.137468947302154213837935451766331129427")
IMPLEMENTATION_VERSION_NAME = f"UNITUMOUR_{__version__}"[:16]

_PIXEL_DATA = Tag(0x7FE0, 0x0010)
_EXTENDED_OFFSET_TABLE = Tag(0x7FE0, 0x0001)
_EXTENDED_OFFSET_TABLE_LENGTHS = Tag(0x7FE0, 0x0002)
_LOSSY_RATIO = Tag(0x0028, 0x2112)
_PER_FRAME = Tag(0x5200, 0x9230)
_WRITERS_OWN = (_LOSSY_RATIO, _EXTENDED_OFFSET_TABLE, _EXTENDED_OFFSET_TABLE_LENGTHS, _PER_FRAME)
_UNDEFINED = 0xFFFFFFFF
_ITEM = b"\xfe\xff\x00\xe0"
_ITEM_DELIMITER = b"\xfe\xff\x0d\xe0\x00\x00\x00\x00"
_SEQUENCE_DELIMITER = b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"
_DS_WIDTH = 16
_BOT_LIMIT = 2**32 - 1


class InstanceWriter:
    """Write ``dataset`` with ``n_frames`` frames encoded by ``codec`` to ``path``.

    Use as a context manager; :meth:`write_frame` takes raw (rows, columns, 3) uint8 tiles
    in frame order. Leaving the context with an exception removes the partial file.
    ``per_frame``: the PerFrameFunctionalGroupsSequence items, read one at a time while the
    header is written (a lazy sequence keeps memory flat for sparse levels of many frames).
    """

    def __init__(
        self,
        path: Path,
        dataset: Dataset,
        codec: FrameCodec,
        *,
        n_frames: int,
        frame_shape: tuple[int, int],
        per_frame: Sequence[Dataset] | None = None,
    ) -> None:
        self.path = Path(path)
        self._partial = self.path.with_name(self.path.name + ".partial")
        self._dataset = dataset
        self._codec = codec
        self._n_frames = n_frames
        self._frame_shape = frame_shape
        self._per_frame = per_frame
        self._raw_frame_bytes = frame_shape[0] * frame_shape[1] * 3
        self._frames_written = 0
        self._encoded_bytes = 0
        self._offsets: list[int] = []
        self._lengths: list[int] = []
        worst = n_frames * (self._raw_frame_bytes * 3 // 2 + 1024 + 8)
        self._extended = codec.encapsulated and worst > _BOT_LIMIT
        self._fp: BinaryIO | None = None
        self._patch_at: dict[int, int] = {}
        self._first_item_at = 0

    # -- context ----------------------------------------------------------------------------

    def __enter__(self) -> InstanceWriter:
        self._fp = open(self._partial, "wb")
        try:
            self._write_header()
        except BaseException:
            self._abort()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is not None:
            self._abort()
            return
        try:
            self._finish()
        except BaseException:
            self._abort()
            raise

    # -- frames -----------------------------------------------------------------------------

    def write_frame(self, tile: np.ndarray) -> None:
        """Encode a (rows, columns, 3) uint8 tile and append it as the next frame."""
        if tile.shape != (*self._frame_shape, 3):
            raise ValueError(f"frame of shape {tile.shape}, expected {(*self._frame_shape, 3)}")
        self.write_encoded(self._codec.encode(tile))

    def write_encoded(self, data: bytes) -> None:
        """Append the next frame, already encoded by this writer's codec."""
        if self._fp is None:
            raise ValueError(f"{self.path.name} is not open")
        if self._frames_written >= self._n_frames:
            raise ValueError(f"{self.path.name}: more than the {self._n_frames} frames declared")
        if not self._codec.encapsulated and len(data) != self._raw_frame_bytes:
            raise ValueError(f"native frame of {len(data)} bytes, expected {self._raw_frame_bytes}")
        if self._codec.encapsulated:
            self._offsets.append(self._fp.tell() - self._first_item_at)
            padded = len(data) + (len(data) & 1)
            self._fp.write(_ITEM + struct.pack("<I", padded))
            self._fp.write(data)
            if padded != len(data):
                self._fp.write(b"\x00")
            self._lengths.append(padded)
        else:
            self._fp.write(data)
        self._encoded_bytes += len(data)
        self._frames_written += 1

    @property
    def compression_ratio(self) -> float:
        """Raw over encoded frame bytes so far."""
        if not self._encoded_bytes:
            return 1.0
        return self._frames_written * self._raw_frame_bytes / self._encoded_bytes

    # -- internals --------------------------------------------------------------------------

    def _write_header(self) -> None:
        assert self._fp is not None
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = self._dataset.SOPClassUID
        meta.MediaStorageSOPInstanceUID = self._dataset.SOPInstanceUID
        meta.TransferSyntaxUID = self._codec.transfer_syntax_uid
        meta.ImplementationClassUID = IMPLEMENTATION_CLASS_UID
        meta.ImplementationVersionName = IMPLEMENTATION_VERSION_NAME
        self._fp.write(b"\x00" * 128 + b"DICM")
        fp = DicomFileLike(self._fp)
        fp.is_little_endian = True
        fp.is_implicit_VR = False
        write_file_meta_info(fp, meta, enforce_standard=True)

        encodings = convert_encodings(self._dataset.get("SpecificCharacterSet", "ISO_IR 6"))
        # What the writer itself puts among the dataset's elements, in tag order.
        ours: list[tuple[int, Callable[[], None]]] = []
        if self._codec.lossy:
            ours.append((_LOSSY_RATIO, lambda: self._reserve(_LOSSY_RATIO, b"DS", _DS_WIDTH)))
        if self._extended:
            for tag in (_EXTENDED_OFFSET_TABLE, _EXTENDED_OFFSET_TABLE_LENGTHS):

                def reserve(tag: int = tag) -> None:
                    self._reserve(tag, b"OV", 8 * self._n_frames)

                ours.append((tag, reserve))
        if self._per_frame is not None:
            ours.append((_PER_FRAME, lambda: self._stream_sequence(fp, encodings)))
        ours.sort(key=lambda entry: entry[0])
        for element in self._dataset:
            while ours and ours[0][0] < element.tag:
                ours.pop(0)[1]()
            if element.tag in _WRITERS_OWN or element.tag >= _PIXEL_DATA:
                raise ValueError(f"{element.tag} is the writer's to write")
            write_data_element(fp, element, encodings)
        while ours:
            ours.pop(0)[1]()

        n_bytes = self._n_frames * self._raw_frame_bytes
        if self._codec.encapsulated:
            self._fp.write(struct.pack("<HH2sHI", 0x7FE0, 0x0010, b"OB", 0, 0xFFFFFFFF))
            bot = 0 if self._extended else 4 * self._n_frames
            self._fp.write(_ITEM + struct.pack("<I", bot))
            self._patch_at[-1] = self._fp.tell()
            self._fp.write(b"\x00" * bot)
            self._first_item_at = self._fp.tell()
        else:
            if n_bytes + (n_bytes & 1) > 0xFFFFFFFE:
                raise ValueError(
                    f"{n_bytes} bytes of native pixel data exceed the 4 GiB a DICOM element "
                    "can hold; use an encapsulated transfer syntax or concatenation"
                )
            self._fp.write(
                struct.pack("<HH2sHI", 0x7FE0, 0x0010, b"OB", 0, n_bytes + (n_bytes & 1))
            )

    def _stream_sequence(self, fp: DicomFileLike, encodings: list[str]) -> None:
        """PerFrameFunctionalGroupsSequence, one item at a time (undefined lengths), so a
        sparse level of 25,000 frames never holds 25,000 datasets at once."""
        assert self._per_frame is not None
        if len(self._per_frame) != self._n_frames:
            raise ValueError(f"{len(self._per_frame)} per-frame items for {self._n_frames} frames")
        fp.write(
            struct.pack("<HH2sHI", _PER_FRAME >> 16, _PER_FRAME & 0xFFFF, b"SQ", 0, _UNDEFINED)
        )
        for item in self._per_frame:
            fp.write(_ITEM + struct.pack("<I", _UNDEFINED))
            write_dataset(fp, item, encodings)
            fp.write(_ITEM_DELIMITER)
        fp.write(_SEQUENCE_DELIMITER)

    def _reserve(self, tag: int, vr: bytes, length: int) -> None:
        assert self._fp is not None
        if vr == b"DS":
            self._fp.write(struct.pack("<HH2sH", tag >> 16, tag & 0xFFFF, vr, length))
        else:
            self._fp.write(struct.pack("<HH2sHI", tag >> 16, tag & 0xFFFF, vr, 0, length))
        self._patch_at[tag] = self._fp.tell()
        self._fp.write(b" " * length if vr == b"DS" else b"\x00" * length)

    def _finish(self) -> None:
        assert self._fp is not None
        if self._frames_written != self._n_frames:
            raise ValueError(
                f"{self.path.name}: {self._frames_written} frames written, "
                f"{self._n_frames} declared"
            )
        fp = self._fp
        if self._codec.encapsulated:
            fp.write(_SEQUENCE_DELIMITER)
        elif (self._n_frames * self._raw_frame_bytes) & 1:
            fp.write(b"\x00")
        if self._codec.lossy:
            fp.seek(self._patch_at[_LOSSY_RATIO])
            fp.write(_format_ds(self.compression_ratio).encode("ascii"))
        if self._codec.encapsulated:
            if self._extended:
                fp.seek(self._patch_at[_EXTENDED_OFFSET_TABLE])
                fp.write(struct.pack(f"<{self._n_frames}Q", *self._offsets))
                fp.seek(self._patch_at[_EXTENDED_OFFSET_TABLE_LENGTHS])
                fp.write(struct.pack(f"<{self._n_frames}Q", *(n for n in self._lengths)))
            else:
                fp.seek(self._patch_at[-1])
                fp.write(struct.pack(f"<{self._n_frames}I", *self._offsets))
        fp.flush()
        os.fsync(fp.fileno())
        fp.close()
        self._fp = None
        os.replace(self._partial, self.path)
        logger.debug(
            "wrote %s: %d frames, %.1f:1", self.path.name, self._n_frames, self.compression_ratio
        )

    def _abort(self) -> None:
        if self._fp is not None:
            self._fp.close()
            self._fp = None
        self._partial.unlink(missing_ok=True)


def _format_ds(value: float) -> str:
    """A DS value padded with spaces to the reserved width."""
    text = f"{value:.6g}" if value < 1e6 else f"{value:.6e}"
    return text.ljust(_DS_WIDTH)[:_DS_WIDTH]
