"""What a phantom slide is made of: one frozen, validated value object.

Everything that changes the bytes of a phantom is in :class:`PhantomSpec`, so the same spec
always writes the same files and its canonical JSON is the seed of every UID.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import math
from dataclasses import dataclass
from typing import Any, Literal

from ..store.uids import validate_uid

DimensionOrganization = Literal["TILED_FULL", "TILED_SPARSE"]
Layout = Literal["blobs", "none"]

#: Transfer syntaxes a phantom can be written in, by the names the CLI and the spec use.
TRANSFER_SYNTAX_NAMES: tuple[str, ...] = (
    "jpeg_baseline",
    "explicit_vr_little_endian",
    "jpeg2000",
    "jpeg2000_lossless",
    "htj2k_lossless",
    "jpegls_lossless",
    "rle",
)

#: Largest base level side accepted (pixels). A 40x scan of a whole 25 x 75 mm slide is
#: about 100,000 x 300,000 pixels; TotalPixelMatrixColumns/Rows are UL, but nobody needs more.
MAX_SIDE_PX = 1 << 20
#: Largest tile side: Rows and Columns are US and JPEG baseline stops at 65,535.
MAX_TILE_PX = 8192

#: Largest even length of a native Pixel Data element (PS3.5 7.1.2: a 32-bit length).
NATIVE_PIXEL_DATA_MAX_BYTES = 0xFFFFFFFE

_DEFAULT_ACQUISITION = datetime.datetime(2024, 1, 15, 9, 30, 0)


@dataclass(frozen=True)
class PhantomSpec:
    """A phantom H&E whole-slide image: size, pyramid, content, encoding and identity.

    Parameters
    ----------
    width, height
        Base level size in pixels (TotalPixelMatrixColumns/Rows of the base level).
    tile_size
        Frame width and height in pixels; a multiple of 16 so that JPEG 4:2:2 MCUs fit.
    levels
        Pyramid levels, base first, each half the size of the one above (rounded up).
    mpp
        Base level pixel size in micrometres (both axes).
    seed
        Seed of every random choice: tissue shapes, tumours, nuclei, noise and UIDs.
    n_tumours, layout
        ``"blobs"``: ``n_tumours`` irregular tumour regions inside the tissue; ``"none"``:
        tumour-free tissue (``n_tumours`` is then ignored), a negative control.
    n_tissue_pieces
        Irregular tissue pieces on the slide; None lets the seed choose 1 to 3.
    pen_mark, glass_edge
        Artefacts that a tissue detector must not call tissue: a marker pen stroke and a
        coverslip edge. Neither is tissue in the ground truth.
    jpeg_quality
        Quality (1-100) of lossy JPEG baseline frames; also the PSNR target scale of lossy
        JPEG 2000 (see :mod:`.codecs`).
    label, overview
        Also write a LABEL and an OVERVIEW instance, as scanners do.
    dimension_organization
        ``"TILED_FULL"`` (frames implicitly row by row) or ``"TILED_SPARSE"`` (every frame's
        position in a PerFrameFunctionalGroupsSequence item).
    concatenation_frames
        Split each level into concatenated instances of at most this many frames.
    omit_empty_tiles
        Leave out the frames that show only glass, as scanners that scan only where they
        found tissue do; readers fill the gaps (RecommendedAbsentPixelCIELabValue, white).
        Needs per-frame positions: TILED_SPARSE or ``omit_optional``.
    omit_optional
        Write neither DimensionOrganizationType nor FrameOfReferenceUID, as older
        converters did. Frames then carry their positions per frame (PlanePositionSlide),
        because without DimensionOrganizationType a reader cannot assume TILED_FULL.
    transfer_syntax
        One of :data:`TRANSFER_SYNTAX_NAMES`.
    study_uid, series_uid
        None: derived from the whole spec, so distinct specs never share UIDs.
    """

    width: int = 4096
    height: int = 3072
    tile_size: int = 256
    levels: int = 3
    mpp: float = 0.5
    seed: int = 0
    n_tumours: int = 3
    layout: Layout = "blobs"
    n_tissue_pieces: int | None = None
    pen_mark: bool = False
    glass_edge: bool = False
    jpeg_quality: int = 90
    label: bool = True
    overview: bool = True
    dimension_organization: DimensionOrganization = "TILED_FULL"
    concatenation_frames: int | None = None
    omit_empty_tiles: bool = False
    omit_optional: bool = False
    transfer_syntax: str = "jpeg_baseline"
    patient_id: str = "PHANTOM-0001"
    patient_name: str = "Phantom^Slide"
    accession_number: str = "ACC0001"
    study_uid: str | None = None
    series_uid: str | None = None
    container_identifier: str | None = None
    acquisition_datetime: datetime.datetime = _DEFAULT_ACQUISITION

    def __post_init__(self) -> None:
        _check_int("width", self.width, 1, MAX_SIDE_PX)
        _check_int("height", self.height, 1, MAX_SIDE_PX)
        _check_int("tile_size", self.tile_size, 16, MAX_TILE_PX)
        if self.tile_size % 16:
            raise ValueError(f"tile_size must be a multiple of 16, not {self.tile_size}")
        _check_int("levels", self.levels, 1, 32)
        smallest = min(self.width, self.height) / 2 ** (self.levels - 1)
        if smallest < 1:
            raise ValueError(
                f"{self.levels} levels would shrink a {self.width} x {self.height} base level "
                "below one pixel"
            )
        if not (isinstance(self.mpp, int | float) and math.isfinite(self.mpp)):
            raise ValueError(f"mpp must be a finite number, not {self.mpp!r}")
        if not 0.01 <= self.mpp <= 1000:
            raise ValueError(f"mpp must lie in [0.01, 1000] micrometres, not {self.mpp}")
        _check_int("seed", self.seed, 0, 2**63 - 1)
        _check_int("n_tumours", self.n_tumours, 0, 64)
        if self.layout not in ("blobs", "none"):
            raise ValueError(f"layout must be 'blobs' or 'none', not {self.layout!r}")
        if self.n_tissue_pieces is not None:
            _check_int("n_tissue_pieces", self.n_tissue_pieces, 1, 16)
        _check_int("jpeg_quality", self.jpeg_quality, 1, 100)
        if self.dimension_organization not in ("TILED_FULL", "TILED_SPARSE"):
            raise ValueError(
                "dimension_organization must be 'TILED_FULL' or 'TILED_SPARSE', "
                f"not {self.dimension_organization!r}"
            )
        if self.concatenation_frames is not None:
            _check_int("concatenation_frames", self.concatenation_frames, 1, 2**31 - 1)
        if self.transfer_syntax not in TRANSFER_SYNTAX_NAMES:
            raise ValueError(
                f"transfer_syntax {self.transfer_syntax!r} is not one of "
                + ", ".join(TRANSFER_SYNTAX_NAMES)
            )
        for name in (
            "pen_mark",
            "glass_edge",
            "label",
            "overview",
            "omit_empty_tiles",
            "omit_optional",
        ):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be a bool, not {getattr(self, name)!r}")
        if self.omit_empty_tiles and not self.per_frame_positions:
            raise ValueError(
                "omit_empty_tiles needs frames that carry their positions: "
                "dimension_organization='TILED_SPARSE' (or omit_optional)"
            )
        if self.transfer_syntax == "explicit_vr_little_endian":
            tiles = math.ceil(self.width / self.tile_size) * math.ceil(self.height / self.tile_size)
            per_instance = min(tiles, self.concatenation_frames or tiles)
            if per_instance * self.tile_size**2 * 3 > NATIVE_PIXEL_DATA_MAX_BYTES:
                raise ValueError(
                    f"{per_instance} native frames of {self.tile_size} x {self.tile_size} "
                    "exceed the 4 GiB a Pixel Data element can hold; set concatenation_frames "
                    "or use an encapsulated transfer syntax"
                )
        for name in ("study_uid", "series_uid"):
            value = getattr(self, name)
            if value is not None:
                validate_uid(value, name)
        _check_text("patient_id", self.patient_id, 64)
        _check_text("patient_name", self.patient_name, 64)
        _check_text("accession_number", self.accession_number, 16)
        if self.container_identifier is not None:
            _check_text("container_identifier", self.container_identifier, 64)
        if not isinstance(self.acquisition_datetime, datetime.datetime):
            raise ValueError("acquisition_datetime must be a datetime.datetime")

    # -- derived geometry -------------------------------------------------------------

    @property
    def level_sizes(self) -> list[tuple[int, int]]:
        """(width, height) of each level, base first; each half the one above, rounded up."""
        return [(-(-self.width // 2**k), -(-self.height // 2**k)) for k in range(self.levels)]

    @property
    def level_mpps(self) -> list[float]:
        """Pixel size of each level in micrometres."""
        return [self.mpp * 2**k for k in range(self.levels)]

    @property
    def tumour_count(self) -> int:
        return self.n_tumours if self.layout == "blobs" else 0

    @property
    def container(self) -> str:
        return self.container_identifier or f"{self.accession_number}-1"

    @property
    def per_frame_positions(self) -> bool:
        """Whether frames carry their positions in PerFrameFunctionalGroupsSequence."""
        return self.dimension_organization == "TILED_SPARSE" or self.omit_optional

    # -- serialisation --------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["acquisition_datetime"] = self.acquisition_datetime.isoformat()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PhantomSpec:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown phantom spec fields: {', '.join(sorted(unknown))}")
        values = dict(data)
        if isinstance(values.get("acquisition_datetime"), str):
            values["acquisition_datetime"] = datetime.datetime.fromisoformat(
                values["acquisition_datetime"]
            )
        return cls(**values)

    def digest(self) -> str:
        """SHA-256 of the canonical JSON of the spec: the entropy of every derived UID."""
        canonical = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _check_int(name: str, value: object, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an integer, not {value!r}")
    if not low <= value <= high:
        raise ValueError(f"{name} must lie in [{low}, {high}], not {value}")


def _check_text(name: str, value: object, max_length: int) -> None:
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a string, not {value!r}")
    if len(value) > max_length:
        raise ValueError(f"{name} has {len(value)} characters; at most {max_length} allowed")
    if any(ch in value for ch in "\\\r\n\x00"):
        raise ValueError(f"{name} must not contain backslashes or control characters")
