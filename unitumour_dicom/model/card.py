"""The model card: everything needed to run a checkpoint correctly and to judge its results.

A card is JSON beside its weights (``<stem>.card.json`` next to ``<stem>.safetensors``). It is
parsed strictly: a missing or ill-typed field is refused with the field named, because a
silently defaulted pixel size or normalisation gives plausible-looking wrong masks.
"""

from __future__ import annotations

import json
import math
import os
import re
import tempfile
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from types import MappingProxyType
from typing import Any

from ..errors import ModelError

CARD_SCHEMA_VERSION = 1
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,127}$")


def _freeze(value: Any) -> Any:
    """Read-only view of nested JSON so a frozen card cannot be changed through its dicts."""
    if isinstance(value, Mapping):
        return MappingProxyType({k: _freeze(v) for k, v in value.items()})
    if isinstance(value, list | tuple):
        return tuple(_freeze(v) for v in value)
    return value


def _thaw(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _thaw(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [_thaw(v) for v in value]
    return value


@dataclass(frozen=True)
class ModelCard:
    """What a checkpoint is, how to feed it, and how well it did.

    Geometry: the network reads RGB tiles at ``mpp`` micrometres per pixel; inference runs on
    tiles of ``tile_size`` pixels that each get a halo of ``overlap`` pixels on every side
    (the network's input is ``tile_size + 2 * overlap`` square), and keeps the centre.
    Post-processing: probability >= ``threshold`` is tumour; tumour components smaller than
    ``min_tumour_area_um2`` are removed; holes inside tumour up to ``fill_holes_max_area_um2``
    are filled.
    """

    name: str
    version: str
    architecture: str
    architecture_args: Mapping[str, Any]
    mpp: float
    tile_size: int
    overlap: int
    normalisation: Mapping[str, Any]
    threshold: float
    min_tumour_area_um2: float
    fill_holes_max_area_um2: float
    training_data: Mapping[str, Any]
    metrics: Mapping[str, Any]
    intended_use: str
    not_for_clinical_use: bool
    weights_sha256: str
    schema_version: int = CARD_SCHEMA_VERSION
    description: str = ""
    training: Mapping[str, Any] = field(default_factory=dict)
    created: str = ""
    licence: str = ""
    # What "in domain" means for this model (``unitumour_dicom.domain.DomainReference`` as
    # JSON): fitted on the training tiles, thresholds from val. Optional: without it every
    # result's domain verdict is "unknown".
    domain_reference: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Mapping | list | tuple):
                object.__setattr__(self, f.name, _freeze(value))
        _validate(self)

    @property
    def input_size(self) -> int:
        """Side of the square the network reads per tile: the tile plus its halo."""
        return self.tile_size + 2 * self.overlap

    @property
    def mean(self) -> tuple[float, float, float]:
        return tuple(float(v) for v in self.normalisation["mean"])  # type: ignore[return-value]

    @property
    def std(self) -> tuple[float, float, float]:
        return tuple(float(v) for v in self.normalisation["std"])  # type: ignore[return-value]

    def domain(self) -> Any:
        """The card's ``DomainReference``, or None when it has none (verdict "unknown")."""
        if self.domain_reference is None:
            return None
        from ..domain.reference import DomainReference

        return DomainReference.from_dict(_thaw(self.domain_reference))

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: _thaw(getattr(self, f.name)) for f in fields(self)}
        if out["domain_reference"] is None:
            del out["domain_reference"]  # cards without one read as they always did
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=False, allow_nan=False) + "\n"

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelCard:
        if not isinstance(data, Mapping):
            raise ModelError("model card must be a JSON object")
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise ModelError(f"model card has unknown field(s): {', '.join(unknown)}")
        missing = [
            name
            for name, f in known.items()
            if name not in data and f.default is MISSING and f.default_factory is MISSING
        ]
        if missing:
            raise ModelError(f"model card is missing field(s): {', '.join(missing)}")
        return cls(**dict(data))

    @classmethod
    def read(cls, path: Path) -> ModelCard:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ModelError(f"cannot read model card {path}: {exc}") from exc
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ModelError(f"model card {path} is not valid JSON: {exc}") from exc
        try:
            return cls.from_dict(data)
        except ModelError as exc:
            raise ModelError(f"{path}: {exc}") from exc

    def write(self, path: Path) -> None:
        """Atomic write (temporary file, fsync, rename) so a reader never sees half a card."""
        write_text_atomic(Path(path), self.to_json())


def write_text_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, 0o644)  # mkstemp makes 0600; published files are world-readable
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _fail(name: str, why: str) -> None:
    raise ModelError(f"model card field {name!r} {why}")


def _is_number(value: Any) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(float(value))
    )


def _validate(card: ModelCard) -> None:
    for name in ("name", "version", "architecture"):
        value = getattr(card, name)
        if not isinstance(value, str) or not _NAME.match(value):
            _fail(name, "must be 1-128 characters of letters, digits and _ . + -")
    for name in ("intended_use",):
        value = getattr(card, name)
        if not isinstance(value, str) or not value.strip():
            _fail(name, "must be a non-empty string")
    for name in ("description", "created", "licence"):
        if not isinstance(getattr(card, name), str):
            _fail(name, "must be a string")
    if card.schema_version != CARD_SCHEMA_VERSION:
        _fail("schema_version", f"must be {CARD_SCHEMA_VERSION}, not {card.schema_version!r}")
    if not _is_number(card.mpp) or not 0.05 <= float(card.mpp) <= 100:
        _fail("mpp", "must be a pixel size in micrometres between 0.05 and 100")
    for name, low in (("tile_size", 16), ("overlap", 0)):
        value = getattr(card, name)
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= 16384:
            _fail(name, f"must be an integer number of pixels, {low} to 16384")
    if card.overlap * 2 >= card.tile_size:
        _fail("overlap", "must be less than half the tile size")
    if not _is_number(card.threshold) or not 0 < float(card.threshold) < 1:
        _fail("threshold", "must be a probability strictly between 0 and 1")
    for name in ("min_tumour_area_um2", "fill_holes_max_area_um2"):
        value = getattr(card, name)
        if not _is_number(value) or float(value) < 0:
            _fail(name, "must be a non-negative area in square micrometres")
    if not isinstance(card.not_for_clinical_use, bool):
        _fail("not_for_clinical_use", "must be true or false")
    if not isinstance(card.weights_sha256, str) or not _SHA256.match(card.weights_sha256):
        _fail("weights_sha256", "must be 64 lower-case hexadecimal digits")
    for name in ("architecture_args", "training_data", "metrics", "training"):
        if not isinstance(getattr(card, name), Mapping):
            _fail(name, "must be a JSON object")
    if not card.training_data:
        _fail("training_data", "must describe the data the model was trained on")
    norm = card.normalisation
    if not isinstance(norm, Mapping):
        _fail("normalisation", 'must be an object {"mean": [r, g, b], "std": [r, g, b]}')
    for key in ("mean", "std"):
        values = norm.get(key)
        if (
            not isinstance(values, tuple | list)
            or len(values) != 3
            or not all(_is_number(v) for v in values)
        ):
            _fail("normalisation", f'needs "{key}": three numbers (R, G, B on [0, 1])')
    if any(float(v) <= 0 for v in norm["std"]):
        _fail("normalisation", "std must be positive")
    if card.domain_reference is not None:
        if not isinstance(card.domain_reference, Mapping):
            _fail("domain_reference", "must be a JSON object or absent")
        from ..domain.reference import DomainReference, DomainReferenceError

        try:
            DomainReference.from_dict(_thaw(card.domain_reference))
        except DomainReferenceError as exc:
            _fail("domain_reference", f"is invalid: {exc}")
