"""The model behind a result, as every result object (SEG, SR, bulk annotations, key image)
states it: name, version, the weights' and the card's sha256, the threshold and pixel size
it ran with, and whether its card says it is not for clinical use.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from ..errors import SegmentationError
from ..seg.algorithm import AlgorithmInfo

if TYPE_CHECKING:  # the model package imports torch; a card is only read here
    from ..model.card import ModelCard

#: What a result made by a model whose card says "not for clinical use" is labelled with.
RESEARCH_USE_ONLY = "RESEARCH USE ONLY"


class ResearchUse(Protocol):
    """What the labels read: a ModelIdentity, or the SEG header's context."""

    @property
    def research_use_only(self) -> bool: ...


@dataclass(frozen=True)
class ModelIdentity:
    """Who made the result. Build it from the model card with :meth:`from_card`."""

    name: str
    version: str
    weights_sha256: str
    card_sha256: str
    card_schema_version: int
    threshold: float
    mpp: float
    not_for_clinical_use: bool
    source: str = "UniTumour DICOM"

    @classmethod
    def from_card(cls, card: ModelCard) -> ModelIdentity:
        """The card's sha256 is that of its canonical JSON (``ModelCard.to_json``): the id
        of the exact card, so a card edited after training gives another id."""
        return cls(
            name=card.name,
            version=card.version,
            weights_sha256=card.weights_sha256,
            card_sha256=hashlib.sha256(card.to_json().encode("utf-8")).hexdigest(),
            card_schema_version=int(card.schema_version),
            threshold=float(card.threshold),
            mpp=float(card.mpp),
            not_for_clinical_use=bool(card.not_for_clinical_use),
        )

    @property
    def research_use_only(self) -> bool:
        return self.not_for_clinical_use

    def parameters(self) -> dict[str, str]:
        """Algorithm Parameters, as ``key=value`` strings go into the objects."""
        return {
            "weights_sha256": self.weights_sha256,
            "model_card_sha256": self.card_sha256,
            "model_card_schema_version": str(self.card_schema_version),
            "threshold": f"{self.threshold:g}",
            "model_mpp_um": f"{self.mpp:g}",
            "not_for_clinical_use": "true" if self.not_for_clinical_use else "false",
        }

    def parameter_strings(self) -> list[str]:
        return [f"{key}={value}" for key, value in self.parameters().items()]

    def algorithm_info(self) -> AlgorithmInfo:
        """The SEG-style identification (Algorithm Name, Version, Family, Source, Parameters)."""
        return AlgorithmInfo(
            name=self.name, version=self.version, source=self.source, parameters=self.parameters()
        )


def labelled(text: str, identity: ResearchUse, max_length: int) -> str:
    """``text``, prefixed with "RESEARCH USE ONLY " when the model's card says so, cut to
    ``max_length`` (the VR's limit) so that the prefix always survives. ASCII only: the
    objects are written in the default character repertoire."""
    if identity.research_use_only and not text.startswith(RESEARCH_USE_ONLY):
        text = f"{RESEARCH_USE_ONLY} {text}"
    if max_length < len(RESEARCH_USE_ONLY):
        raise SegmentationError(f"max_length {max_length} cannot hold {RESEARCH_USE_ONLY!r}")
    return text[:max_length].rstrip()


def content_label(label: str, identity: ResearchUse) -> str:
    """A Content Label (CS, 16 characters: upper case, digits, space, underscore), with
    ``RUO_`` (research use only) in front when the card says so: "RESEARCH USE ONLY" itself
    is 17 characters, one more than CS allows, so the Content Description carries it in
    full."""
    label = label.upper().replace(" ", "_")
    if identity.research_use_only:
        label = f"RUO_{label}"
    return label[:16]
