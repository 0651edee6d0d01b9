"""UIDs for the SEG series, derived from the job's UUID so that a retried job writes the same
UIDs (and a receiver sees a resend, not a second result).

Every UID is a UUID-derived UID under the 2.25 root (PS3.5 B.2): ``2.25.<uuid as integer>``,
where the UUID is a name-based (version 5) UUID of the seed and the purpose. That needs no
registered root, never collides with another seed, and is at most 44 characters.
"""

from __future__ import annotations

import uuid

from ..errors import SegmentationError
from ..store import validate_uid

#: Namespace of every UID this package derives (a fixed, random UUID).
UID_NAMESPACE = uuid.UUID("8f3b1f2e-5a0c-4d57-9a51-3f1e0c6d2b7a")


def derived_uid(*parts: str) -> str:
    """A DICOM UID that depends only on ``parts``."""
    name = "/".join(parts)
    return validate_uid(f"2.25.{uuid.uuid5(UID_NAMESPACE, name).int}")


class SegUIDs:
    """The UIDs of one SEG pyramid, from one seed (the job's UUID)."""

    def __init__(self, seed: str) -> None:
        if not isinstance(seed, str) or not seed.strip():
            raise SegmentationError("uid_seed must be a non-empty string (the job's UUID)")
        self.seed = seed

    @property
    def series_instance_uid(self) -> str:
        return derived_uid("seg", self.seed, "series")

    @property
    def pyramid_uid(self) -> str:
        return derived_uid("seg", self.seed, "pyramid")

    @property
    def dimension_organization_uid(self) -> str:
        return derived_uid("seg", self.seed, "dimension-organization")

    def sop_instance_uid(self, level: int) -> str:
        return derived_uid("seg", self.seed, "instance", str(level))


def derived_frame_of_reference_uid(source_series_instance_uid: str) -> str:
    """The Frame of Reference UID we assign to a slide that came without one.

    It depends on the source series only, so every SEG ever made of that slide shares it.
    """
    return derived_uid("frame-of-reference", validate_uid(source_series_instance_uid))
