"""A slide made of real H&E: EBHI-Seg images laid on glass as a DICOM whole-slide image.

Phantoms test the machinery; a mosaic tests the model on the tissue it was trained for. The
base level is a grid of EBHI-Seg images of one split (224 x 224 px at an assumed 0.9 µm/px,
see the data set's README), upsampled by an integer factor (default 2, bicubic: 0.45 µm/px, a
40x scanner's pixel) and laid on white glass with margins between them. Adenocarcinoma images
are mixed with tumour-free Normal and Polyp images; the ground truth is the data set's own
carcinoma masks, placed where their images lie.

The series is written by the phantom's machinery (:mod:`.pyramid`, :mod:`.instance_writer`,
:mod:`.dicom_header`): pyramid levels box-filtered 2x, JPEG baseline tiles, the full VL Whole
Slide Microscopy header, a label and an overview. Everything is deterministic: the same
manifest, split, n and seed choose the same images in the same places and write the same
bytes, and the UIDs derive from the chosen files' digests.

Geometry: mosaic image ``k`` covers source pixels ``[x_k, x_k + w_k) x [y_k, y_k + h_k)`` of a
grid of pixel size ``source_mpp`` whose origin is the top-left corner of the base level; the
base level is that grid upsampled ``upsample`` times. So the ground truth is exact at the
source pixel size (``tumour_mask.png``), and :meth:`MosaicSlide.tumour_mask` resamples it to
any other.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import cv2
import numpy as np
from PIL import Image

from .. import __version__
from ..csvfiles import read_csv_rows
from ..errors import SlideError
from ..slide.mask import SlideMask
from .codecs import codec_for
from .dicom_header import (
    PhantomUids,
    SlidePlacement,
    common_dataset,
    derive_uid,
    label_placement,
    overview_placement,
    volume_placement,
)
from .phantom import (
    WrittenSeries,
    _atomic_write,
    _clear_previous,
    _level_parts,
    _LevelFrames,
    _local,
    _read_manifest,
    _write_single_frame,
    default_workers,
)
from .pyramid import BACKGROUND_RGB, ProgressCallback, write_pyramid_from
from .slide_label import render_label
from .spec import MAX_SIDE_PX, PhantomSpec

logger = logging.getLogger(__name__)

MANIFEST_NAME = "mosaic.json"
MANIFEST_FORMAT = "unitumour-mosaic"
MANIFEST_VERSION = 1
TUMOUR_PNG = "tumour_mask.png"
TISSUE_PNG = "tissue_mask.png"
#: Pixel size the EBHI-Seg authors did not state; crypts of ~80 px suggest 0.8-1.0 µm.
EBHI_ASSUMED_MPP = 0.9
TUMOUR_CLASSES = ("Adenocarcinoma",)
TUMOUR_FREE_CLASSES = ("Normal", "Polyp")
MANIFEST_COLUMNS = ("image", "mask", "cls", "case", "split")
#: Most images one mosaic takes (its memory holds one decoded source image per grid cell of
#: two grid rows, and its manifest lists them all).
MAX_IMAGES = 1024
#: Largest source image side accepted, pixels.
MAX_SOURCE_SIDE = 4096


@dataclass(frozen=True)
class MosaicTile:
    """One source image on the mosaic: which file, what it shows, where it lies (source px)."""

    image: str  # path relative to the data root
    mask: str
    cls: str
    case: str
    image_sha256: str
    mask_sha256: str
    x: int  # left column, source pixels
    y: int  # top row, source pixels
    width: int
    height: int
    tumour_fraction: float

    @property
    def has_tumour(self) -> bool:
        return self.tumour_fraction > 0

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class MosaicSlide(WrittenSeries):
    """A mosaic written to disk: its files, identity, layout and exact ground truth."""

    root: Path
    spec: PhantomSpec  # the header's geometry and identity (layout 'none': no scene drawn)
    uids: PhantomUids
    level_paths: list[list[Path]]
    tiles: tuple[MosaicTile, ...]
    source_mpp: float
    upsample: int
    split: str
    seed: int
    label_path: Path | None = None
    overview_path: Path | None = None

    @property
    def frame_of_reference_uid(self) -> str:
        return self.uids.frame_of_reference

    @property
    def has_tumour(self) -> bool:
        return any(t.has_tumour for t in self.tiles)

    @property
    def ground_truth_mpp(self) -> float:
        """Pixel size of the exact ground truth: the source images' own."""
        return self.source_mpp

    def tumour_mask(self, mpp: float) -> SlideMask:
        """Ground-truth carcinoma at pixel size ``mpp`` micrometres (nearest neighbour from
        the source masks, which are exact at :attr:`source_mpp`)."""
        return _resampled(_read_png(self.root / TUMOUR_PNG), self, mpp)

    def tissue_mask(self, mpp: float) -> SlideMask:
        """Where images lie (all of each image is tissue), at ``mpp`` micrometres."""
        return _resampled(_read_png(self.root / TISSUE_PNG), self, mpp)


def _resampled(source: np.ndarray, slide: MosaicSlide, mpp: float) -> SlideMask:
    if not (isinstance(mpp, int | float) and math.isfinite(mpp) and mpp > 0):
        raise ValueError(f"mpp must be a positive number, not {mpp!r}")
    exact = SlideMask(source, slide.source_mpp)
    width_um, height_um = (n * slide.mpp for n in slide.size)
    rows = math.ceil(height_um / mpp - 1e-9)
    cols = math.ceil(width_um / mpp - 1e-9)
    return SlideMask(exact.region(0, 0, rows, cols, mpp).astype(bool), float(mpp))


def _read_png(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("L")) > 127
    except OSError as exc:
        raise SlideError(f"cannot read the ground truth {path}: {exc}") from exc


# -- choosing the images -----------------------------------------------------------------------


@dataclass(frozen=True)
class _Row:
    image: str
    mask: str
    cls: str
    case: str


def _safe_relative(root: Path, name: str, where: str) -> Path:
    """A manifest path, refused if absolute or if it leaves the data root."""
    rel = Path(name)
    if not name or rel.is_absolute() or ".." in rel.parts:
        raise SlideError(f"{where}: path {name!r} must be relative and stay in {root}")
    return root / rel


def read_manifest_rows(manifest: Path, split: str) -> list[_Row]:
    """The rows of ``split``, checked for the columns and safe relative paths."""
    rows = read_csv_rows(manifest, MANIFEST_COLUMNS, what="image manifest", error=SlideError)
    out = []
    for line, row in enumerate(rows, start=2):
        if row["split"] != split:
            continue
        for column in ("image", "mask"):
            _safe_relative(manifest.parent, row[column] or "", f"{manifest}:{line}")
        out.append(_Row(row["image"], row["mask"], row["cls"], row["case"]))
    return out


def choose_images(rows: Sequence[_Row], n: int, seed: int) -> list[_Row]:
    """``n`` images in mosaic order: half (rounded up) carcinoma, the rest tumour-free,
    drawn without replacement by ``seed`` and shuffled so the classes mix on the glass."""
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_IMAGES:
        raise ValueError(f"n must be an integer in [1, {MAX_IMAGES}], not {n!r}")
    tumour = sorted((r for r in rows if r.cls in TUMOUR_CLASSES), key=lambda r: r.image)
    free = sorted((r for r in rows if r.cls in TUMOUR_FREE_CLASSES), key=lambda r: r.image)
    rng = np.random.default_rng([seed, 0x4D05])
    want_tumour = min(len(tumour), math.ceil(n / 2))
    want_free = min(len(free), n - want_tumour)
    want_tumour = min(len(tumour), n - want_free)  # fewer tumour-free than asked: more tumour
    if want_tumour + want_free < n:
        raise SlideError(
            f"the split holds {len(tumour)} carcinoma and {len(free)} tumour-free images; "
            f"{n} were asked for"
        )
    picked = [tumour[i] for i in sorted(rng.choice(len(tumour), want_tumour, replace=False))]
    picked += [free[i] for i in sorted(rng.choice(len(free), want_free, replace=False))]
    order = rng.permutation(len(picked))
    return [picked[i] for i in order]


def grid_shape(n: int) -> tuple[int, int]:
    """(columns, rows) of a near 4:3 grid holding ``n`` images."""
    columns = max(1, math.ceil(math.sqrt(n * 4 / 3)))
    return columns, math.ceil(n / columns)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _decode_rgb(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as image:
            if max(image.size) > MAX_SOURCE_SIDE:
                raise SlideError(f"{path} is {image.size[0]} x {image.size[1]} px; too large")
            return np.asarray(image.convert("RGB"), dtype=np.uint8)
    except (OSError, Image.DecompressionBombError) as exc:
        raise SlideError(f"cannot decode {path}: {exc}") from exc


def _decode_mask(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as image:
            if max(image.size) > MAX_SOURCE_SIDE:
                raise SlideError(f"{path} is {image.size[0]} x {image.size[1]} px; too large")
            return np.asarray(image.convert("L")) > 127
    except (OSError, Image.DecompressionBombError) as exc:
        raise SlideError(f"cannot decode {path}: {exc}") from exc


def plan_mosaic(
    manifest: Path,
    *,
    split: str,
    n: int,
    seed: int,
    margin_px: int,
    gap_px: int,
) -> tuple[list[MosaicTile], int, int]:
    """The tiles of the mosaic and its (width, height) in source pixels.

    Each image lies in a cell of the largest chosen image's size, centred; ``gap_px`` of
    glass between cells and ``margin_px`` around the grid.
    """
    root = manifest.parent
    chosen = choose_images(read_manifest_rows(manifest, split), n, seed)
    sizes = []
    for row in chosen:
        image_path = _safe_relative(root, row.image, str(manifest))
        try:
            with Image.open(image_path) as image:
                sizes.append(image.size)
        except OSError as exc:
            raise SlideError(f"cannot read {image_path}: {exc}") from exc
    if any(max(s) > MAX_SOURCE_SIDE for s in sizes):
        raise SlideError(f"a source image is larger than {MAX_SOURCE_SIDE} px")
    cell_w = max(w for w, _ in sizes)
    cell_h = max(h for _, h in sizes)
    columns, rows = grid_shape(len(chosen))
    tiles = []
    for k, (row, (w, h)) in enumerate(zip(chosen, sizes, strict=True)):
        gy, gx = divmod(k, columns)
        mask = _decode_mask(_safe_relative(root, row.mask, str(manifest)))
        if mask.shape != (h, w):
            raise SlideError(
                f"{row.mask} is {mask.shape[1]} x {mask.shape[0]} px, its image {w} x {h}"
            )
        tiles.append(
            MosaicTile(
                image=row.image,
                mask=row.mask,
                cls=row.cls,
                case=row.case,
                image_sha256=_sha256(root / row.image),
                mask_sha256=_sha256(root / row.mask),
                x=margin_px + gx * (cell_w + gap_px) + (cell_w - w) // 2,
                y=margin_px + gy * (cell_h + gap_px) + (cell_h - h) // 2,
                width=w,
                height=h,
                tumour_fraction=round(float(mask.mean()), 6),
            )
        )
    width = 2 * margin_px + columns * cell_w + (columns - 1) * gap_px
    height = 2 * margin_px + rows * cell_h + (rows - 1) * gap_px
    return tiles, width, height


# -- painting ----------------------------------------------------------------------------------


class _Painter:
    """Paints base-level tiles: glass, and the upsampled source images that overlap them.

    A source image is decoded and upsampled once and kept while the rows of tiles that need
    it are painted (an LRU of two grid rows), so memory follows the mosaic's width.
    """

    def __init__(self, root: Path, tiles: Sequence[MosaicTile], upsample: int, across: int):
        self.root = root
        self.tiles = list(tiles)
        self.upsample = upsample
        self._load = functools.lru_cache(maxsize=max(4, 2 * across))(self._upsampled)
        f = upsample
        # Base-level extents of every image, for a vectorised overlap test per tile.
        self._left = np.array([t.x * f for t in self.tiles], dtype=np.int64)
        self._top = np.array([t.y * f for t in self.tiles], dtype=np.int64)
        self._right = self._left + np.array([t.width * f for t in self.tiles], dtype=np.int64)
        self._bottom = self._top + np.array([t.height * f for t in self.tiles], dtype=np.int64)

    def _upsampled(self, index: int) -> np.ndarray:
        tile = self.tiles[index]
        pixels = _decode_rgb(self.root / tile.image)
        if pixels.shape[:2] != (tile.height, tile.width):
            raise SlideError(f"{tile.image} changed size since the mosaic was planned")
        if self.upsample == 1:
            return pixels
        f = self.upsample
        return cv2.resize(pixels, (tile.width * f, tile.height * f), interpolation=cv2.INTER_CUBIC)

    def __call__(self, tx: int, ty: int, x0: int, y0: int, cols: int, rows: int) -> np.ndarray:
        out = np.empty((rows, cols, 3), dtype=np.uint8)
        out[:] = BACKGROUND_RGB
        overlapping = np.flatnonzero(
            (self._left < x0 + cols)
            & (self._right > x0)
            & (self._top < y0 + rows)
            & (self._bottom > y0)
        )
        for index in overlapping.tolist():
            left, top = int(self._left[index]), int(self._top[index])
            ix0, iy0 = max(left, x0), max(top, y0)
            ix1 = min(int(self._right[index]), x0 + cols)
            iy1 = min(int(self._bottom[index]), y0 + rows)
            pixels = self._load(index)
            out[iy0 - y0 : iy1 - y0, ix0 - x0 : ix1 - x0] = pixels[
                iy0 - top : iy1 - top, ix0 - left : ix1 - left
            ]
        return out


def _ground_truth(
    root: Path, tiles: Sequence[MosaicTile], width: int, height: int
) -> tuple[np.ndarray, np.ndarray]:
    tumour = np.zeros((height, width), dtype=bool)
    tissue = np.zeros((height, width), dtype=bool)
    for tile in tiles:
        where = np.s_[tile.y : tile.y + tile.height, tile.x : tile.x + tile.width]
        tumour[where] = _decode_mask(root / tile.mask)
        tissue[where] = True
    return tumour, tissue


def render_mosaic_overview(
    root: Path,
    tiles: Sequence[MosaicTile],
    spec: PhantomSpec,
    source_mpp: float,
    overview: SlidePlacement,
    label_at: SlidePlacement,
    label: np.ndarray,
) -> np.ndarray:
    """The whole glass at the overview's pixel size: the images where they lie (each pixel
    the source pixel at its centre), the label pasted at its end, as :mod:`.slide_label`
    does for a phantom."""
    mpp = overview.spacing_mm * 1000
    volume = volume_placement(spec, 0)
    pixels = np.empty((overview.rows, overview.columns, 3), dtype=np.uint8)
    pixels[:] = BACKGROUND_RGB
    # Overview column c lies at slide Y = y0 - (c + 0.5) s; the pyramid's x_um = (Y0 - Y).
    x_um = (volume.y_mm - overview.y_mm) * 1000 + (np.arange(overview.columns) + 0.5) * mpp
    y_um = (volume.x_mm - overview.x_mm) * 1000 + (np.arange(overview.rows) + 0.5) * mpp
    for tile in tiles:
        columns = np.floor(x_um / source_mpp).astype(np.int64) - tile.x
        rows = np.floor(y_um / source_mpp).astype(np.int64) - tile.y
        in_x = np.flatnonzero((columns >= 0) & (columns < tile.width) & (x_um >= 0))
        in_y = np.flatnonzero((rows >= 0) & (rows < tile.height) & (y_um >= 0))
        if in_x.size and in_y.size:
            source = _decode_rgb(root / tile.image)
            pixels[np.ix_(in_y, in_x)] = source[np.ix_(rows[in_y], columns[in_x])]
    left = round((overview.y_mm - label_at.y_mm) / overview.spacing_mm)
    top = round((overview.x_mm - label_at.x_mm) / overview.spacing_mm)
    cols = round(label_at.width_mm / overview.spacing_mm)
    rows_ = round(label_at.height_mm / overview.spacing_mm)
    scaled = np.asarray(Image.fromarray(label).resize((cols, rows_), Image.Resampling.BOX))
    rows_, cols = min(rows_, overview.rows - top), min(cols, overview.columns - left)
    pixels[top : top + rows_, left : left + cols] = scaled[:rows_, :cols]
    return pixels


# -- writing -----------------------------------------------------------------------------------


def default_levels(width: int, height: int, tile_size: int) -> int:
    """Levels down to the first whose longer side fits in one tile."""
    return 1 + max(0, math.ceil(math.log2(max(width, height) / tile_size)))


def _digest(tiles: Sequence[MosaicTile], settings: dict[str, Any]) -> str:
    """SHA-256 of what makes the mosaic: the entropy of its UIDs."""
    canonical = json.dumps(
        {"settings": settings, "tiles": [t.to_dict() for t in tiles]},
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def write_mosaic_slide(
    out_dir: str | os.PathLike[str],
    manifest: str | os.PathLike[str],
    *,
    split: str = "test",
    n: int = 12,
    seed: int = 0,
    upsample: int = 2,
    source_mpp: float = EBHI_ASSUMED_MPP,
    margin_px: int = 64,
    gap_px: int = 32,
    tile_size: int = 256,
    levels: int | None = None,
    jpeg_quality: int = 90,
    transfer_syntax: str = "jpeg_baseline",
    label: bool = True,
    overview: bool = True,
    patient_id: str | None = None,
    patient_name: str = "Mosaic^EBHI",
    accession_number: str | None = None,
    overwrite: bool = False,
    workers: int | None = None,
    progress: ProgressCallback | None = None,
) -> MosaicSlide:
    """Write a mosaic of ``n`` images of ``split`` from an EBHI-Seg style ``manifest``.

    ``manifest`` is a CSV with columns image, mask, cls, case, split; paths relative to its
    folder. ``source_mpp`` is the pixel size assumed for the source images and ``upsample``
    the integer factor to the base level (base pixel size ``source_mpp / upsample``).
    ``margin_px`` and ``gap_px`` are glass around and between the images, in source pixels.
    ``out_dir`` as in :func:`~.phantom.write_phantom_slide` (refused if it holds a series,
    unless ``overwrite``); on failure no file of the mosaic is left.
    """
    manifest = Path(manifest)
    if isinstance(upsample, bool) or not isinstance(upsample, int) or not 1 <= upsample <= 8:
        raise ValueError(f"upsample must be an integer in [1, 8], not {upsample!r}")
    if not (isinstance(source_mpp, int | float) and math.isfinite(source_mpp) and source_mpp > 0):
        raise ValueError(f"source_mpp must be a positive number, not {source_mpp!r}")
    for name, value in (("margin_px", margin_px), ("gap_px", gap_px)):
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 4096:
            raise ValueError(f"{name} must be an integer in [0, 4096], not {value!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, not {seed!r}")
    tiles, src_width, src_height = plan_mosaic(
        manifest, split=split, n=n, seed=seed, margin_px=margin_px, gap_px=gap_px
    )
    width, height = src_width * upsample, src_height * upsample
    if max(width, height) > MAX_SIDE_PX:
        raise SlideError(f"a {width} x {height} px mosaic is larger than {MAX_SIDE_PX} px a side")
    settings = {
        "format_version": MANIFEST_VERSION,
        "split": split,
        "seed": seed,
        "upsample": upsample,
        "source_mpp": source_mpp,
        "tile_size": tile_size,
        "jpeg_quality": jpeg_quality,
        "transfer_syntax": transfer_syntax,
    }
    digest = _digest(tiles, settings)
    spec = PhantomSpec(
        width=width,
        height=height,
        tile_size=tile_size,
        levels=levels or default_levels(width, height, tile_size),
        mpp=source_mpp / upsample,
        seed=seed,
        layout="none",
        jpeg_quality=jpeg_quality,
        label=label,
        overview=overview,
        transfer_syntax=transfer_syntax,
        patient_id=patient_id or f"EBHI-MOSAIC-{seed:04d}",
        patient_name=patient_name,
        accession_number=accession_number or f"EBHIM{seed:04d}"[:16],
        study_uid=derive_uid(digest, "mosaic", "study"),
        series_uid=derive_uid(digest, "mosaic", "series"),
    )
    root = Path(out_dir)
    root.mkdir(parents=True, exist_ok=True)
    _clear_previous(root, overwrite)
    for stale in (MANIFEST_NAME, TUMOUR_PNG, TISSUE_PNG):
        if overwrite:
            (root / stale).unlink(missing_ok=True)
        elif (root / stale).exists():
            raise SlideError(f"{root} already holds {stale}; choose an empty directory")
    uids = PhantomUids.from_spec(spec)
    codec = codec_for(spec.transfer_syntax, spec.jpeg_quality)
    common = _mosaic_common(spec, uids, split, len(tiles), source_mpp, upsample)
    logger.info(
        "writing a mosaic of %d %s images, %dx%d px at %.3g µm/px, %d levels, into %s",
        len(tiles), split, width, height, spec.mpp, spec.levels, root,
    )  # fmt: skip
    level_paths: list[list[Path]] = []
    written: list[Path] = []
    try:
        instance_number = 1
        sinks: list[_LevelFrames] = []
        for level in range(spec.levels):
            placement = volume_placement(spec, level)
            across, down = (math.ceil(s / tile_size) for s in spec.level_sizes[level])
            parts = _level_parts(
                spec, range(across * down), level, placement, codec, common, uids, root,
                instance_number,
            )  # fmt: skip
            instance_number += len(parts)
            level_paths.append([p for p, _, _ in parts])
            written += level_paths[-1]
            sinks.append(_LevelFrames([(k, w) for _, k, w in parts]))
        painter = _Painter(manifest.parent, tiles, upsample, grid_shape(len(tiles))[0])
        try:
            write_pyramid_from(
                spec,
                painter,
                sinks,
                codec.encode,
                workers=workers or default_workers(),
                progress=progress,
            )
            for sink in sinks:
                sink.close()
        except BaseException as exc:
            for sink in sinks:
                sink.abort(exc)
            raise
        label_path = overview_path = None
        if label or overview:
            label_at = label_placement()
            label_pixels = render_label(spec, label_at)
            if label:
                label_path = root / "label.dcm"
                written.append(label_path)
                _write_single_frame(
                    label_path, label_pixels, spec, common, uids, codec, label_at, "LABEL",
                    instance_number,
                )  # fmt: skip
                instance_number += 1
            if overview:
                overview_at = overview_placement()
                pixels = render_mosaic_overview(
                    manifest.parent, tiles, spec, source_mpp, overview_at, label_at, label_pixels
                )
                overview_path = root / "overview.dcm"
                written.append(overview_path)
                _write_single_frame(
                    overview_path, pixels, spec, common, uids, codec, overview_at, "OVERVIEW",
                    instance_number,
                )  # fmt: skip
        slide = MosaicSlide(
            root=root,
            spec=spec,
            uids=uids,
            level_paths=level_paths,
            tiles=tuple(tiles),
            source_mpp=float(source_mpp),
            upsample=upsample,
            split=split,
            seed=seed,
            label_path=label_path,
            overview_path=overview_path,
        )
        written += [root / TUMOUR_PNG, root / TISSUE_PNG, root / MANIFEST_NAME]
        tumour, tissue = _ground_truth(manifest.parent, tiles, src_width, src_height)
        for name, mask in ((TUMOUR_PNG, tumour), (TISSUE_PNG, tissue)):
            image = Image.fromarray(mask.astype(np.uint8) * 255, mode="L")

            def save_png(fp: BinaryIO, image: Image.Image = image) -> None:
                image.save(fp, format="PNG")

            _atomic_write(root / name, save_png)
        text = json.dumps(_manifest(slide, manifest, digest), indent=2) + "\n"
        _atomic_write(root / MANIFEST_NAME, lambda fp: fp.write(text.encode("utf-8")))
    except BaseException:
        for path in written:
            path.unlink(missing_ok=True)
        raise
    return slide


def _mosaic_common(
    spec: PhantomSpec, uids: PhantomUids, split: str, n: int, source_mpp: float, upsample: int
) -> Any:
    """The phantom's common attributes, saying what this series really shows."""
    ds = common_dataset(spec, uids)
    ds.StudyDescription = "UniTumour EBHI-Seg mosaic H&E slide"
    ds.SeriesDescription = f"EBHI-Seg {split} mosaic, {n} images, seed {spec.seed}"[:64]
    ds.ManufacturerModelName = "Mosaic Slide Generator"
    ds.DeviceSerialNumber = f"MOSAIC-{spec.seed}"[:64]
    specimen = ds.SpecimenDescriptionSequence[0]
    specimen.SpecimenShortDescription = "EBHI-Seg colorectal biopsy images (CC BY 4.0)"[:64]
    ds.OpticalPathSequence[0].OpticalPathDescription = (
        f"Brightfield; EBHI-Seg at an assumed {source_mpp:g} um/px, upsampled {upsample}x"
    )[:64]
    return ds


def _manifest(slide: MosaicSlide, source_manifest: Path, digest: str) -> dict[str, Any]:
    return {
        "format": MANIFEST_FORMAT,
        "format_version": MANIFEST_VERSION,
        "generator": f"unitumour-dicom {__version__}",
        "source": {
            "manifest": str(source_manifest),
            "split": slide.split,
            "seed": slide.seed,
            "assumed_mpp": slide.source_mpp,
            "upsample": slide.upsample,
            "upsampling": "bicubic (OpenCV INTER_CUBIC)",
            "attribution": "EBHI-Seg, Shi L. et al., Frontiers in Medicine 2023; "
            "doi:10.6084/m9.figshare.21540159.v1; CC BY 4.0",
        },
        "spec": slide.spec.to_dict(),
        "uids": {
            "study": slide.study_uid,
            "series": slide.series_uid,
            "frame_of_reference": slide.frame_of_reference_uid,
            "mosaic_digest": digest,
        },
        "base": {"width": slide.size[0], "height": slide.size[1], "mpp": slide.mpp},
        "levels": [
            {"level": k, "width": w, "height": h, "files": [p.name for p in paths]}
            for k, ((w, h), paths) in enumerate(
                zip(slide.spec.level_sizes, slide.level_paths, strict=True)
            )
        ],
        "label": slide.label_path.name if slide.label_path else None,
        "overview": slide.overview_path.name if slide.overview_path else None,
        "ground_truth": {
            "geometry": "pixel (r, c) covers [c, c+1) x [r, r+1) * mpp micrometres from the "
            "top-left corner of the base level's total pixel matrix; 255 = inside",
            "mpp": slide.source_mpp,
            "tumour_mask": TUMOUR_PNG,
            "tissue_mask": TISSUE_PNG,
        },
        "tiles": [t.to_dict() for t in slide.tiles],
    }


def load_mosaic(out_dir: str | os.PathLike[str]) -> MosaicSlide:
    """The mosaic written into ``out_dir``, from its mosaic.json."""
    root = Path(out_dir)
    path = root / MANIFEST_NAME
    data = _read_manifest(path, MANIFEST_FORMAT, MANIFEST_VERSION, "mosaic")
    try:
        spec = PhantomSpec.from_dict(data["spec"])
        source = data["source"]
        level_paths = [[_local(root, f) for f in level["files"]] for level in data["levels"]]
        slide = MosaicSlide(
            root=root,
            spec=spec,
            uids=PhantomUids.from_spec(spec),
            level_paths=level_paths,
            tiles=tuple(MosaicTile(**t) for t in data["tiles"]),
            source_mpp=float(source["assumed_mpp"]),
            upsample=int(source["upsample"]),
            split=str(source["split"]),
            seed=int(source["seed"]),
            label_path=_local(root, data["label"]) if data.get("label") else None,
            overview_path=_local(root, data["overview"]) if data.get("overview") else None,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise SlideError(f"{path} is malformed: {exc}") from exc
    missing = [p.name for p in slide.instance_paths if not p.is_file()]
    missing += [n for n in (TUMOUR_PNG, TISSUE_PNG) if not (root / n).is_file()]
    if missing:
        raise SlideError(f"{root} lacks files its manifest lists: {', '.join(missing)}")
    return slide
