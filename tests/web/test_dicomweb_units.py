"""Pieces of the DICOMweb library on hand-made files: frame indexing of encapsulated Pixel
Data without offset tables, frames split over fragments, bit-packed frames that do not start
on a byte, truncated files; Accept negotiation; multipart framing."""

from __future__ import annotations

from pathlib import Path

import imagecodecs
import numpy as np
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate, encapsulate_extended
from pydicom.uid import ExplicitVRLittleEndian, JPEGBaseline8Bit, generate_uid

from unitumour_dicom.dicomweb import NotAcceptableError
from unitumour_dicom.dicomweb.media import negotiate_frames, negotiate_instance, parse_accept
from unitumour_dicom.dicomweb.multipart import Part, iter_multipart, parse_multipart
from unitumour_dicom.dicomweb.pixels import PixelDataError, read_frame, read_layout

pytestmark = [pytest.mark.unittest]

JPEG_FRAMES = [imagecodecs.jpeg8_encode(np.full((16, 16, 3), 20 * i, np.uint8)) for i in range(5)]


def _write(path: Path, syntax: str, pixel: bytes, frames: int, *, bits: int = 8, spp: int = 3,
           rows: int = 16, cols: int = 16, extra: dict | None = None) -> Path:  # fmt: skip
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = syntax
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.77.1.6"
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.Rows, ds.Columns, ds.SamplesPerPixel = rows, cols, spp
    ds.BitsAllocated = ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = 0
    ds.PhotometricInterpretation = "RGB" if spp == 3 else "MONOCHROME2"
    if spp == 3:
        ds.PlanarConfiguration = 0
    ds.NumberOfFrames = frames
    for key, value in (extra or {}).items():
        setattr(ds, key, value)
    ds.PixelData = pixel
    ds["PixelData"].VR = "OB"
    ds.save_as(path, enforce_file_format=True)
    return path


@pytest.mark.parametrize(
    "how", ["basic offsets", "no offsets", "two fragments per frame", "extended offsets"]
)
def test_jpeg_frames_found_however_they_are_framed(tmp_path: Path, how: str) -> None:
    extra = None
    if how == "basic offsets":
        pixel = encapsulate(JPEG_FRAMES, has_bot=True)
    elif how == "no offsets":
        pixel = encapsulate(JPEG_FRAMES, has_bot=False)
    elif how == "two fragments per frame":
        pixel = encapsulate(JPEG_FRAMES, fragments_per_frame=2, has_bot=False)
    else:
        pixel, offsets, lengths = encapsulate_extended(JPEG_FRAMES)
        extra = {"ExtendedOffsetTable": offsets, "ExtendedOffsetTableLengths": lengths}
    path = _write(tmp_path / "f.dcm", JPEGBaseline8Bit, pixel, 5, extra=extra)
    layout = read_layout(path)
    assert layout.encapsulated and layout.number_of_frames == 5
    assert [read_frame(path, layout, n) for n in range(1, 6)] == JPEG_FRAMES


@pytest.mark.parametrize(("rows", "cols"), [(5, 5), (3, 7), (16, 16)])
def test_bit_packed_frames_on_and_off_byte_boundaries(tmp_path: Path, rows: int, cols: int) -> None:
    bits = np.random.default_rng(rows * cols).integers(0, 2, (4, rows, cols)).astype(np.uint8)
    packed = np.packbits(bits.ravel(), bitorder="little").tobytes()
    path = _write(tmp_path / "b.dcm", ExplicitVRLittleEndian, packed + b"\0" * (len(packed) % 2),
                  4, bits=1, spp=1, rows=rows, cols=cols)  # fmt: skip
    layout = read_layout(path)
    for i in range(4):
        got = np.unpackbits(
            np.frombuffer(read_frame(path, layout, i + 1), np.uint8), bitorder="little"
        )
        assert np.array_equal(got[: rows * cols].reshape(rows, cols), bits[i])
        assert not got[rows * cols :].any()  # no bits of the next frame leak in


def test_truncated_files_are_errors_not_garbage(tmp_path: Path) -> None:
    native = _write(tmp_path / "n.dcm", ExplicitVRLittleEndian, b"\1" * (16 * 16 * 3 * 2), 2)
    data = native.read_bytes()
    cut = tmp_path / "cut.dcm"
    cut.write_bytes(data[:-16 * 16 * 3])  # fmt: skip
    with pytest.raises(PixelDataError, match="truncated"):
        read_layout(cut)
    jpeg = _write(tmp_path / "j.dcm", JPEGBaseline8Bit, encapsulate(JPEG_FRAMES), 5)
    cut.write_bytes(jpeg.read_bytes()[:-300])
    with pytest.raises(PixelDataError):
        read_layout(cut)


def test_accept_negotiation() -> None:
    jpeg, native = "1.2.840.10008.1.2.4.50", ExplicitVRLittleEndian
    any_ts = 'multipart/related; type="application/octet-stream"; transfer-syntax=*'
    e = negotiate_frames(any_ts, stored_syntax=jpeg, encapsulated=True, n_frames=1)
    assert (e.media_type, e.transfer_syntax_uid, e.decode) == ("image/jpeg", jpeg, False)
    e = negotiate_frames(any_ts, stored_syntax="1.2.840.10008.1.2.5", encapsulated=True, n_frames=1)
    assert e.decode and e.transfer_syntax_uid == native  # browsers cannot decode RLE
    e = negotiate_frames('multipart/related; type="application/octet-stream"',
                         stored_syntax=jpeg, encapsulated=True, n_frames=1)  # fmt: skip
    assert e.decode
    e = negotiate_frames("image/jpeg, */*;q=0.1", stored_syntax=jpeg, encapsulated=True, n_frames=1)
    assert not e.multipart and e.media_type == "image/jpeg"
    e = negotiate_frames(None, stored_syntax=native, encapsulated=False, n_frames=3)
    assert e.multipart and not e.decode
    with pytest.raises(NotAcceptableError):
        negotiate_frames('multipart/related; type="image/jp2"', stored_syntax=jpeg,
                         encapsulated=True, n_frames=1)  # fmt: skip
    with pytest.raises(NotAcceptableError):
        negotiate_instance("text/html", multipart_only=False)
    assert [r.mime for r in parse_accept("a/b;q=0.2, c/d, e/f;q=0")] == ["c/d", "a/b"]


def test_multipart_round_trip_with_binary_payloads() -> None:
    payloads = [bytes(range(256)) * 3, b"\r\n--not-a-boundary\r\n", b""]
    parts = [
        Part("application/octet-stream", data=p, location=f"/x/{i}") for i, p in enumerate(payloads)
    ]
    body = b"".join(iter_multipart(parts, "b0undary"))
    parsed = parse_multipart(body, "b0undary")
    assert [p for _, p in parsed] == payloads
    assert parsed[1][0]["content-location"] == "/x/1"
