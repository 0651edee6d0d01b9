"""Phantom slides for pipeline tests, and a way to break one the way a bad scanner would."""

from __future__ import annotations

from pathlib import Path

import pydicom
from pydicom.encaps import generate_frames


def corrupt_frames(path: Path, indices: list[int] | None = None) -> None:
    """Overwrite the JPEG data of some frames (default: all) in place, at the same length, so
    every offset and the file's structure stay valid: the instance still parses as DICOM (and
    passes the listener's checks, which never decode), but those frames will not decode.
    """
    ds = pydicom.dcmread(path)
    frames = list(generate_frames(ds.PixelData, number_of_frames=int(ds.NumberOfFrames)))
    data = bytearray(path.read_bytes())
    for index in range(len(frames)) if indices is None else indices:
        frame = frames[index]
        at = bytes(data).index(frame)
        data[at : at + len(frame)] = b"\xff\xd8\xff\xdb" + b"\x00" * (len(frame) - 6) + b"\xff\xd9"
    path.write_bytes(bytes(data))


def model_level(folder: Path, mpp: float) -> Path:
    """The phantom level file the model reads (the finest at or below its pixel size)."""
    best = None
    for path in sorted(folder.glob("level-*.dcm")):
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        spacing_um = (
            float(ds.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0].PixelSpacing[0])
            * 1000
        )
        if spacing_um <= mpp + 1e-6:
            best = path
    assert best is not None
    return best
