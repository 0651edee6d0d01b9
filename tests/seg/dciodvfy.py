"""Running Debian's dciodvfy (dicom3tools) on a SEG, with the errors its 2022 tables raise
against what the current standard allows, each with the reference that allows it."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import DeflatedExplicitVRLittleEndian

#: Each message dciodvfy prints as an error for a TILED_FULL slide SEG, and why the current
#: standard (PS3.3 2025) allows what it reports. Anything else fails the test.
STANDARD_ALLOWS = {
    # PS3.3 Table A.51-2 (Segmentation Functional Group Macros): Plane Position (Patient) and
    # Plane Orientation (Patient) are required only when the Frame of Reference is patient-
    # relative (A.51.5.1); a slide SEG is in the Slide Coordinate System, its orientation in
    # Image Orientation (Slide) (C.8.12.4, C.8.12.9).
    "Error - Missing attribute Type 1 Required Element=<PlanePositionSequence> "
    "Module=<PlanePositionMacro>": "PS3.3 Table A.51-2, A.51.5.1",
    "Error - Missing attribute Type 1 Required Element=<PlaneOrientationSequence> "
    "Module=<PlaneOrientationMacro>": "PS3.3 Table A.51-2, A.51.5.1",
    # PS3.3 Table A.51-2: Plane Position (Slide) is required only if Dimension Organization
    # Type is not TILED_FULL; with TILED_FULL the position of each frame follows from Total
    # Pixel Matrix Origin Sequence and the tile order (C.7.6.17.3, C.8.12.14).
    "Error - Missing attribute Type 1 Required Element=<PlanePositionSlideSequence> "
    "Module=<PlanePositionSlideMacro>": "PS3.3 Table A.51-2, C.7.6.17.3",
    # PS3.3 C.7.6.16 (Table C.7.6.16-1): Per-Frame Functional Groups Sequence is Type 1C,
    # absent when Dimension Organization Type is TILED_FULL; the SEG IOD (Table A.51-1)
    # includes the Microscope Slide Layer Tile Organization Module for exactly that case.
    "Error - Missing attribute Type 1 Required Element=<PerFrameFunctionalGroupsSequence> "
    "Module=<MultiFrameFunctionalGroupsForSegmentation>": "PS3.3 C.7.6.16, Table A.51-1",
}


def dciodvfy_errors(path: Path) -> list[str]:
    """Error lines dciodvfy prints for ``path`` that the current standard does not allow.

    dciodvfy cannot read Deflated Explicit VR Little Endian; such a file is first inflated
    by DCMTK's dcmconv (which proves DCMTK reads our deflate stream) into a file beside it.
    """
    if shutil.which("dciodvfy") is None:
        pytest.fail("dciodvfy (Debian package dicom3tools) is not installed")
    meta = pydicom.filereader.read_file_meta_info(path)
    if meta.TransferSyntaxUID == DeflatedExplicitVRLittleEndian:
        inflated = path.with_name(path.name + ".inflated")
        subprocess.run(["dcmconv", "+te", str(path), str(inflated)], check=True, timeout=120)
        path = inflated
    proc = subprocess.run(
        ["dciodvfy", str(path)], capture_output=True, text=True, timeout=120, check=False
    )
    lines = (proc.stdout + proc.stderr).splitlines()
    errors = [re.sub(r"\s+", " ", line).strip() for line in lines if line.startswith("Error")]
    return [e for e in errors if e not in STANDARD_ALLOWS]
