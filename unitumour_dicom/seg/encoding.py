"""Pixel data of a SEG instance, frame by frame: native (bit-packed BINARY or 8-bit
FRACTIONAL) or one encapsulated fragment per frame.

Frames the mask leaves empty are the common case on a slide; their encoding is computed once
per instance and reused.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
from highdicom.frame import encode_frame
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLSLossless,
    RLELossless,
)

from ..errors import SegmentationError


@dataclass(frozen=True)
class Compression:
    """A ``SegSettings.compression`` value and what it means on the wire."""

    name: str
    transfer_syntax_uid: UID
    binary_allowed: bool

    @property
    def encapsulated(self) -> bool:
        return self.transfer_syntax_uid.is_encapsulated

    @property
    def deflated(self) -> bool:
        return self.transfer_syntax_uid == DeflatedExplicitVRLittleEndian


COMPRESSIONS: dict[str, Compression] = {
    c.name: c
    for c in (
        Compression("none", ExplicitVRLittleEndian, True),
        Compression("explicit-vr-deflated", DeflatedExplicitVRLittleEndian, True),
        # PS3.5 8.2: 1-bit pixels only travel natively or as JPEG 2000; RLE and JPEG-LS
        # segments are bytes, so they carry FRACTIONAL (8-bit) SEGs only.
        Compression("jpeg2000lossless", JPEG2000Lossless, True),
        Compression("rle", RLELossless, False),
        Compression("jpegls-lossless", JPEGLSLossless, False),
    )
}


def compression_for(name: str, segmentation_type: str) -> Compression:
    try:
        comp = COMPRESSIONS[name]
    except KeyError:
        raise SegmentationError(
            f"unknown SEG compression {name!r}; one of {', '.join(COMPRESSIONS)}"
        ) from None
    if segmentation_type == "BINARY" and not comp.binary_allowed:
        raise SegmentationError(
            f"compression {name!r} cannot carry a BINARY segmentation (1-bit pixels); "
            "use none, explicit-vr-deflated or jpeg2000lossless, or FRACTIONAL"
        )
    return comp


def native_length(bits_allocated: int, rows: int, columns: int, frames: int) -> int:
    """Bytes of native Pixel Data, padded to even length: BINARY frames are packed one after
    another without byte alignment (PS3.5 8.1.1)."""
    n = math.ceil(frames * rows * columns * bits_allocated / 8)
    return n + n % 2


def native_chunks(
    frames: Iterable[np.ndarray | None], *, bits_allocated: int, rows: int, columns: int
) -> Iterator[bytes]:
    """Native pixel data for a stream of frames (None: all zero), padded to even length."""
    pixels = rows * columns
    total = 0
    if bits_allocated == 8:
        empty = bytes(pixels)
        for frame in frames:
            data = empty if frame is None else np.ascontiguousarray(frame, np.uint8).tobytes()
            total += len(data)
            yield data
    elif bits_allocated == 1:
        aligned = pixels % 8 == 0
        empty = bytes(pixels // 8) if aligned else b""
        carry = np.zeros(0, dtype=np.uint8)  # bits left over from the previous frame
        for frame in frames:
            if aligned:
                data = (
                    empty
                    if frame is None
                    else np.packbits(frame.reshape(-1), bitorder="little").tobytes()
                )
            else:
                flat = np.zeros(pixels, np.uint8) if frame is None else frame.reshape(-1)
                bits = np.concatenate([carry, flat])
                whole = bits.size - bits.size % 8
                data = np.packbits(bits[:whole], bitorder="little").tobytes()
                carry = bits[whole:]
            total += len(data)
            yield data
        if carry.size:
            data = np.packbits(carry, bitorder="little").tobytes()
            total += len(data)
            yield data
    else:
        raise SegmentationError(f"unsupported Bits Allocated {bits_allocated}")
    if total % 2:
        yield b"\x00"


class FragmentEncoder:
    """One compressed fragment per frame, by the codec highdicom itself uses."""

    def __init__(
        self, transfer_syntax_uid: UID, *, bits_allocated: int, rows: int, columns: int
    ) -> None:
        self.transfer_syntax_uid = transfer_syntax_uid
        self.bits_allocated = bits_allocated
        self.shape = (rows, columns)
        self._empty: bytes | None = None

    def encode(self, frame: np.ndarray | None) -> bytes:
        if frame is None:
            if self._empty is None:
                self._empty = self._encode(np.zeros(self.shape, np.uint8))
            return self._empty
        return self._encode(frame)

    def _encode(self, frame: np.ndarray) -> bytes:
        try:
            return encode_frame(
                np.ascontiguousarray(frame, np.uint8),
                transfer_syntax_uid=self.transfer_syntax_uid,
                bits_allocated=self.bits_allocated,
                bits_stored=self.bits_allocated,
                photometric_interpretation="MONOCHROME2",
                pixel_representation=0,
            )
        except (ValueError, RuntimeError, ModuleNotFoundError) as exc:
            raise SegmentationError(
                f"cannot encode a {self.shape[0]} x {self.shape[1]} frame as "
                f"{self.transfer_syntax_uid.name}: {exc}"
            ) from exc
