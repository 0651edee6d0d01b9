"""Frame encoders, one per transfer syntax a phantom can be written in.

Each codec says what the DICOM header must say about its frames (transfer syntax,
photometric interpretation, lossy method) so the writer never has to know which it holds.
Photometric interpretations follow PS3.5 8.2: JPEG baseline frames are YCbCr 4:2:2 as
scanners write them (YBR_FULL_422); JPEG 2000 with the multi-component transform is YBR_RCT
(reversible) or YBR_ICT (irreversible); JPEG-LS, RLE and native frames are RGB.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import imagecodecs
import numpy as np
from pydicom.uid import (
    JPEG2000,
    UID,
    ExplicitVRLittleEndian,
    HTJ2KLossless,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGLSLossless,
    RLELossless,
)
from wsidicom.codec.rle import RleCodec

from .spec import TRANSFER_SYNTAX_NAMES


@dataclass(frozen=True)
class FrameCodec:
    """How frames of one transfer syntax are encoded and described."""

    name: str
    transfer_syntax_uid: UID
    photometric_interpretation: str
    encode: Callable[[np.ndarray], bytes]
    lossy_method: str | None = None  # LossyImageCompressionMethod (0028,2114) when lossy

    @property
    def encapsulated(self) -> bool:
        return self.transfer_syntax_uid.is_encapsulated

    @property
    def lossy(self) -> bool:
        return self.lossy_method is not None


def jpeg2000_psnr_db(jpeg_quality: int) -> float:
    """PSNR target of lossy JPEG 2000 for a JPEG-style quality: 90 -> 48 dB, 50 -> 40 dB."""
    return 30.0 + 0.2 * jpeg_quality


def codec_for(name: str, jpeg_quality: int = 90) -> FrameCodec:
    """The codec for a transfer syntax name of :data:`TRANSFER_SYNTAX_NAMES`."""
    if name == "jpeg_baseline":

        def jpeg(tile: np.ndarray) -> bytes:
            return bytes(
                imagecodecs.jpeg8_encode(
                    tile, level=jpeg_quality, outcolorspace="YCbCr", subsampling="422"
                )
            )

        return FrameCodec(name, JPEGBaseline8Bit, "YBR_FULL_422", jpeg, "ISO_10918_1")
    if name == "explicit_vr_little_endian":
        return FrameCodec(name, ExplicitVRLittleEndian, "RGB", _native)
    if name == "jpeg2000":
        psnr = jpeg2000_psnr_db(jpeg_quality)

        def j2k(tile: np.ndarray) -> bytes:
            return bytes(
                # imagecodecs' stub types level as int; the encoder takes the PSNR target in
                # dB as a float (48.2 and 48 give different streams).
                imagecodecs.jpeg2k_encode(
                    tile,
                    level=psnr,  # type: ignore[arg-type]
                    reversible=False,
                    codecformat="J2K",
                    mct=True,
                )
            )

        return FrameCodec(name, JPEG2000, "YBR_ICT", j2k, "ISO_15444_1")
    if name == "jpeg2000_lossless":
        return FrameCodec(name, JPEG2000Lossless, "YBR_RCT", _j2k_lossless)
    if name == "htj2k_lossless":
        return FrameCodec(name, HTJ2KLossless, "YBR_RCT", _htj2k_lossless)
    if name == "jpegls_lossless":
        return FrameCodec(name, JPEGLSLossless, "RGB", _jpegls_lossless)
    if name == "rle":
        return FrameCodec(name, RLELossless, "RGB", _rle)
    raise ValueError(f"unknown transfer syntax {name!r}; one of {', '.join(TRANSFER_SYNTAX_NAMES)}")


def _native(tile: np.ndarray) -> bytes:
    return np.ascontiguousarray(tile, dtype=np.uint8).tobytes()


def _j2k_lossless(tile: np.ndarray) -> bytes:
    return bytes(
        imagecodecs.jpeg2k_encode(tile, level=0, reversible=True, codecformat="J2K", mct=True)
    )


def _htj2k_lossless(tile: np.ndarray) -> bytes:
    return bytes(imagecodecs.htj2k_encode(tile, level=0, reversible=True, rgb=True))


def _jpegls_lossless(tile: np.ndarray) -> bytes:
    # CharLS sizes its output for typical images; noise-like tiles need the worst case.
    return bytes(imagecodecs.jpegls_encode(tile, level=0, out=tile.nbytes * 2 + 4096))


def _rle(tile: np.ndarray) -> bytes:
    return RleCodec.encode(np.ascontiguousarray(tile, dtype=np.uint8))
