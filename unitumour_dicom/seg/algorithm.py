"""The algorithm that made a segmentation, as the SEG's Segmentation Algorithm Identification
Sequence records it (PS3.3 C.8.20.2, table 10-19): name, version, family (coded) and source.

A viewer shows these beside the overlay and a PACS indexes them, so they are checked here,
once, against the value representations they end up in.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import highdicom as hd
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code

from ..errors import SegmentationError

#: CID 7162 Surface Processing Algorithm Families: the values accepted by name.
ALGORITHM_FAMILIES: dict[str, Code] = {
    "Artificial Intelligence": codes.DCM.ArtificialIntelligence,
    "Morphological Operations": codes.cid7162.MorphologicalOperations,
    "Manual Processing": codes.cid7162.ManualProcessing,
}

_LO_MAX = 64  # Long String


def _check_lo(value: str, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise SegmentationError(f"algorithm {what} must be a non-empty string")
    if len(value) > _LO_MAX or "\\" in value or any(ord(c) < 0x20 for c in value):
        raise SegmentationError(
            f"algorithm {what} {value!r} must be at most {_LO_MAX} characters, "
            "without backslash or control characters (DICOM LO)"
        )
    return value


@dataclass(frozen=True)
class AlgorithmInfo:
    """Identification of the model that made the mask.

    ``family`` is a name from :data:`ALGORITHM_FAMILIES` or a coded concept. ``parameters``
    become Algorithm Parameters (e.g. the weights' sha256), so the SEG itself says which
    weights made it.
    """

    name: str
    version: str
    family: str | Code = "Artificial Intelligence"
    source: str | None = None
    parameters: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_lo(self.name, "name")
        _check_lo(self.version, "version")
        if self.source is not None:
            _check_lo(self.source, "source")
        if isinstance(self.family, str) and self.family not in ALGORITHM_FAMILIES:
            known = ", ".join(sorted(ALGORITHM_FAMILIES))
            raise SegmentationError(
                f"algorithm family {self.family!r} is not one of {known}; pass a Code instead"
            )
        for key, value in self.parameters.items():
            if not isinstance(key, str) or not isinstance(value, str):
                raise SegmentationError("algorithm parameters are a mapping of str to str")
        object.__setattr__(self, "parameters", dict(self.parameters))

    @property
    def family_code(self) -> Code:
        if isinstance(self.family, Code):
            return self.family
        return ALGORITHM_FAMILIES[self.family]

    def identification(self) -> hd.AlgorithmIdentificationSequence:
        """The Segmentation Algorithm Identification Sequence for a segment description."""
        return hd.AlgorithmIdentificationSequence(
            name=self.name,
            family=self.family_code,
            version=self.version,
            source=self.source,
            parameters=dict(self.parameters) or None,
        )
