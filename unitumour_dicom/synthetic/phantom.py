"""Write a phantom slide (DICOM series + ground truth) and load it back.

``write_phantom_slide(out_dir, spec)`` writes, in ``out_dir``:

- ``level-<k>.dcm`` (or ``level-<k>-part-<p>.dcm`` when concatenated): the pyramid, base
  first; ``label.dcm`` and ``overview.dcm`` when asked for;
- ``tumour_mask.png`` and ``tissue_mask.png``: the ground truth at the pixel size stated in
  ``phantom.json`` (255 = inside);
- ``phantom.json``: the spec, the UIDs, the files and the analytic scene, from which
  :meth:`PhantomSlide.tumour_mask` rasterises the ground truth at any pixel size.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from PIL import Image

from .. import __version__
from ..errors import SlideError
from ..slide.mask import SlideMask
from .codecs import FrameCodec, codec_for
from .dicom_header import (
    Concatenation,
    FrameLayout,
    PhantomUids,
    SlidePlacement,
    common_dataset,
    derive_uid,
    image_dataset,
    label_placement,
    overview_placement,
    per_frame_groups,
    tile_grid,
    volume_placement,
)
from .instance_writer import InstanceWriter
from .pyramid import ProgressCallback, write_pyramid
from .render import features_in
from .scene import Scene
from .slide_label import label_lines, render_label, render_overview
from .spec import PhantomSpec

logger = logging.getLogger(__name__)

MANIFEST_NAME = "phantom.json"
MANIFEST_FORMAT = "unitumour-phantom"
MANIFEST_VERSION = 1
TUMOUR_PNG = "tumour_mask.png"
TISSUE_PNG = "tissue_mask.png"
#: Longest side of the ground-truth PNGs, in pixels.
GROUND_TRUTH_MAX_SIDE = 2048
#: Pixels evaluated at once when rasterising: about 6 float32 temporaries of this size.
_RASTER_CHUNK_PIXELS = 1 << 20


class WrittenSeries:
    """What every slide series this package writes derives alike from its spec, UIDs and
    files (phantoms and mosaics); subclasses are dataclasses holding those fields."""

    spec: PhantomSpec
    uids: PhantomUids
    level_paths: list[list[Path]]
    label_path: Path | None
    overview_path: Path | None

    @property
    def instance_paths(self) -> list[Path]:
        """Every .dcm of the series: all levels (base first), then label and overview."""
        paths = [p for level in self.level_paths for p in level]
        paths += [p for p in (self.label_path, self.overview_path) if p is not None]
        return paths

    @property
    def study_uid(self) -> str:
        return self.uids.study

    @property
    def series_uid(self) -> str:
        return self.uids.series

    @property
    def mpp(self) -> float:
        """Base level pixel size, micrometres."""
        return self.spec.mpp

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the base level in pixels."""
        return self.spec.width, self.spec.height


@dataclass(frozen=True)
class PhantomSlide(WrittenSeries):
    """A phantom written to disk: its files, identity and analytic ground truth."""

    root: Path
    spec: PhantomSpec
    scene: Scene
    uids: PhantomUids
    level_paths: list[list[Path]]
    label_path: Path | None = None
    overview_path: Path | None = None
    ground_truth_mpp: float = field(default=0.0)

    @property
    def frame_of_reference_uid(self) -> str | None:
        return None if self.spec.omit_optional else self.uids.frame_of_reference

    @property
    def has_tumour(self) -> bool:
        return bool(self.scene.tumours)

    def tumour_mask(self, mpp: float) -> SlideMask:
        """Ground-truth tumour (within tissue) rasterised at pixel size ``mpp`` micrometres."""
        return rasterise(self.scene, mpp, "tumour")

    def tissue_mask(self, mpp: float) -> SlideMask:
        """Ground-truth tissue (pen marks and glass edges excluded) at ``mpp`` micrometres."""
        return rasterise(self.scene, mpp, "tissue")


def rasterise(scene: Scene, mpp: float, what: str) -> SlideMask:
    """Evaluate the scene at the centres of a grid of pixel size ``mpp`` over the slide.

    Pixel (r, c) covers [c, c+1) x [r, r+1) * mpp micrometres from the top-left corner of
    the base level (the :class:`~unitumour_dicom.slide.mask.SlideMask` convention).
    """
    if not (isinstance(mpp, int | float) and math.isfinite(mpp) and mpp > 0):
        raise ValueError(f"mpp must be a positive number, not {mpp!r}")
    if what not in ("tumour", "tissue"):
        raise ValueError(f"what must be 'tumour' or 'tissue', not {what!r}")
    height, width = raster_shape(scene, mpp)
    test = scene.tumour_mask if what == "tumour" else scene.tissue_mask
    out = np.zeros((height, width), dtype=bool)
    x_um = (np.arange(width, dtype=np.float64) + 0.5) * mpp
    step = max(1, _RASTER_CHUNK_PIXELS // max(width, 1))
    for top in range(0, height, step):
        rows = min(step, height - top)
        y_um = (np.arange(top, top + rows, dtype=np.float64) + 0.5) * mpp
        out[top : top + rows] = test(x_um[None, :], y_um[:, None])
    return SlideMask(out, float(mpp))


def default_workers() -> int:
    """Threads for rendering and encoding: the CPUs this process may run on, at most 8."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return max(1, min(8, cpus))


def raster_shape(scene: Scene, mpp: float) -> tuple[int, int]:
    """(rows, columns) of a grid of pixel size ``mpp`` that covers the whole slide."""
    return math.ceil(scene.height_um / mpp - 1e-9), math.ceil(scene.width_um / mpp - 1e-9)


def ground_truth_mpp(spec: PhantomSpec) -> float:
    """Pixel size of the PNGs: level 1's, coarser if needed to keep them small enough."""
    longest = max(spec.width, spec.height)
    return max(2 * spec.mpp, spec.mpp * longest / GROUND_TRUTH_MAX_SIDE)


# -- writing -----------------------------------------------------------------------------------


class _LevelFrames:
    """The frame sink of one level: routes frames to the concatenated parts in turn."""

    def __init__(self, writers: list[tuple[int, InstanceWriter]]) -> None:
        self._writers = writers  # (n_frames, InstanceWriter) per part
        self._index = -1
        self._current: InstanceWriter | None = None
        self._left = 0

    def write_encoded(self, data: bytes) -> None:
        if self._left == 0:
            self._close_current()
            self._index += 1
            if self._index >= len(self._writers):
                raise RuntimeError("more frames than the level's instances declare")
            n_frames, writer = self._writers[self._index]
            self._current = writer.__enter__()
            self._left = n_frames
        assert self._current is not None
        self._current.write_encoded(data)
        self._left -= 1

    def _close_current(self) -> None:
        if self._current is not None:
            current, self._current = self._current, None
            current.__exit__(None, None, None)

    def close(self) -> None:
        self._close_current()
        if self._index != len(self._writers) - 1:
            raise RuntimeError("fewer frames than the level's instances declare")

    def abort(self, exc: BaseException) -> None:
        if self._current is not None:
            current, self._current = self._current, None
            current.__exit__(type(exc), exc, exc.__traceback__)


def write_phantom_slide(
    out_dir: str | os.PathLike[str],
    spec: PhantomSpec | None = None,
    *,
    overwrite: bool = False,
    workers: int | None = None,
    progress: ProgressCallback | None = None,
) -> PhantomSlide:
    """Write the phantom ``spec`` describes into ``out_dir`` and return it.

    ``out_dir`` is created if needed. A directory that already holds DICOM files or a
    phantom.json is refused unless ``overwrite``, in which case those files are removed
    first, so that no stale instance of another phantom is left beside the new series.
    ``workers`` threads render and encode tiles (default: the CPUs this process may use, at
    most 8); the files are the same whatever the number. ``progress(done, total)`` is called
    after each row of base tiles.
    """
    spec = spec or PhantomSpec()
    root = Path(out_dir)
    root.mkdir(parents=True, exist_ok=True)
    _clear_previous(root, overwrite)
    scene = Scene.from_spec(spec)
    uids = PhantomUids.from_spec(spec)
    codec = codec_for(spec.transfer_syntax, spec.jpeg_quality)
    common = common_dataset(spec, uids)
    logger.info(
        "writing phantom %dx%d px at %.3g µm/px, %d levels, %s, into %s",
        spec.width,
        spec.height,
        spec.mpp,
        spec.levels,
        spec.transfer_syntax,
        root,
    )
    level_paths: list[list[Path]] = []
    written: list[Path] = []  # removed again if anything fails: no half series is left
    try:
        instance_number = 1
        sinks: list[_LevelFrames] = []
        present = [present_tiles(spec, scene, level) for level in range(spec.levels)]
        for level in range(spec.levels):
            placement = volume_placement(spec, level)
            parts = _level_parts(
                spec, present[level], level, placement, codec, common, uids, root,
                instance_number,
            )  # fmt: skip
            instance_number += len(parts)
            level_paths.append([p for p, _, _ in parts])
            written += level_paths[-1]
            sinks.append(_LevelFrames([(n, w) for _, n, w in parts]))
        try:
            write_pyramid(
                spec,
                scene,
                sinks,
                codec.encode,
                workers=workers or default_workers(),
                present=[frozenset(p) for p in present] if spec.omit_empty_tiles else None,
                progress=progress,
            )
            for sink in sinks:
                sink.close()
        except BaseException as exc:
            for sink in sinks:
                sink.abort(exc)
            raise

        label_path = overview_path = None
        if spec.label or spec.overview:
            label_at = label_placement()
            label_pixels = render_label(spec, label_at)
            if spec.label:
                label_path = root / "label.dcm"
                written.append(label_path)
                _write_single_frame(
                    label_path,
                    label_pixels,
                    spec,
                    common,
                    uids,
                    codec,
                    label_at,
                    "LABEL",
                    instance_number,
                )
                instance_number += 1
            if spec.overview:
                overview_at = overview_placement()
                pixels = render_overview(
                    spec, scene, volume_placement(spec, 0), overview_at, label_at, label_pixels
                )
                overview_path = root / "overview.dcm"
                written.append(overview_path)
                _write_single_frame(
                    overview_path,
                    pixels,
                    spec,
                    common,
                    uids,
                    codec,
                    overview_at,
                    "OVERVIEW",
                    instance_number,
                )

        slide = PhantomSlide(
            root=root,
            spec=spec,
            scene=scene,
            uids=uids,
            level_paths=level_paths,
            label_path=label_path,
            overview_path=overview_path,
            ground_truth_mpp=ground_truth_mpp(spec),
        )
        written += [root / TUMOUR_PNG, root / TISSUE_PNG, root / MANIFEST_NAME]
        _write_ground_truth(slide)
        _write_manifest(slide)
    except BaseException:
        for path in written:
            path.unlink(missing_ok=True)
        raise
    return slide


def _clear_previous(root: Path, overwrite: bool) -> None:
    previous = sorted(root.glob("*.dcm")) + sorted(root.glob("*.dcm.partial"))
    manifest = root / MANIFEST_NAME
    if manifest.exists():
        previous.append(manifest)
    if not previous:
        return
    if not overwrite:
        raise SlideError(
            f"{root} already holds {len(previous)} DICOM or phantom files; choose an empty "
            "directory or pass overwrite=True"
        )
    for path in [*previous, root / TUMOUR_PNG, root / TISSUE_PNG]:
        path.unlink(missing_ok=True)


def present_tiles(spec: PhantomSpec, scene: Scene, level: int) -> Sequence[int]:
    """Row-major indices of the level's tiles that are written: all of them, or with
    ``omit_empty_tiles`` those whose footprint on the base level may show anything but glass
    (a level's pixels are box-filtered from the base pixels under them)."""
    width, height = spec.level_sizes[level]
    across, down = tile_grid(width, height, spec.tile_size)
    if not spec.omit_empty_tiles:
        return range(across * down)
    side_um = spec.tile_size * 2**level * spec.mpp
    kept = [
        row * across + column
        for row in range(down)
        for column in range(across)
        if features_in(
            scene,
            column * side_um,
            row * side_um,
            min((column + 1) * side_um, scene.width_um),
            min((row + 1) * side_um, scene.height_um),
            spec.mpp,
        ).any
    ]
    # An instance holds at least one frame; a level of glass only keeps its first tile.
    return kept or [0]


def _level_parts(
    spec: PhantomSpec,
    tiles: Sequence[int],
    level: int,
    placement: SlidePlacement,
    codec: FrameCodec,
    common: Any,
    uids: PhantomUids,
    root: Path,
    first_instance_number: int,
) -> list[tuple[Path, int, InstanceWriter]]:
    tile = spec.tile_size
    across, down = tile_grid(placement.columns, placement.rows, tile)
    total = len(tiles)
    per_part = spec.concatenation_frames or total
    n_parts = math.ceil(total / per_part)
    source_uid = uids.instance(f"level-{level}")
    parts = []
    for p in range(n_parts):
        first = p * per_part
        n_frames = min(per_part, total - first)
        if n_parts == 1:
            name, sop_uid, concatenation = f"level-{level}", source_uid, None
        else:
            name = f"level-{level}-part-{p + 1}"
            sop_uid = uids.instance(name)
            concatenation = Concatenation(
                uid=derive_uid(uids.digest, "concatenation", str(level)),
                source_instance_uid=source_uid,
                number=p + 1,
                total=n_parts,
            )
        layout = FrameLayout((tile, tile), across, down, tiles[first : first + n_frames], first)
        dataset = image_dataset(
            spec,
            common,
            flavour="VOLUME",
            level=level,
            placement=placement,
            layout=layout,
            codec=codec,
            sop_instance_uid=sop_uid,
            instance_number=first_instance_number + p,
            uids=uids,
            concatenation=concatenation,
        )
        path = root / f"{name}.dcm"
        writer = InstanceWriter(
            path,
            dataset,
            codec,
            n_frames=n_frames,
            frame_shape=(tile, tile),
            per_frame=per_frame_groups(spec, placement, layout),
        )
        parts.append((path, n_frames, writer))
    return parts


def _write_single_frame(
    path: Path,
    pixels: np.ndarray,
    spec: PhantomSpec,
    common: Any,
    uids: PhantomUids,
    codec: FrameCodec,
    placement: SlidePlacement,
    flavour: str,
    instance_number: int,
) -> None:
    rows, columns = pixels.shape[:2]
    layout = FrameLayout((rows, columns), 1, 1, range(1))
    dataset = image_dataset(
        spec,
        common,
        flavour=flavour,  # type: ignore[arg-type]
        level=0,
        placement=placement,
        layout=layout,
        codec=codec,
        sop_instance_uid=uids.instance(flavour.lower()),
        instance_number=instance_number,
        uids=uids,
        label_text=" ".join(label_lines(spec)) if flavour == "LABEL" else None,
    )
    per_frame = per_frame_groups(spec, placement, layout)
    with InstanceWriter(
        path, dataset, codec, n_frames=1, frame_shape=(rows, columns), per_frame=per_frame
    ) as w:
        w.write_frame(pixels)


def _write_ground_truth(slide: PhantomSlide) -> None:
    for name, mask in (
        (TUMOUR_PNG, slide.tumour_mask(slide.ground_truth_mpp)),
        (TISSUE_PNG, slide.tissue_mask(slide.ground_truth_mpp)),
    ):
        image = Image.fromarray(np.asarray(mask.array).astype(np.uint8) * 255, mode="L")

        def save_png(fp: BinaryIO, image: Image.Image = image) -> None:
            image.save(fp, format="PNG")

        _atomic_write(slide.root / name, save_png)


def _manifest(slide: PhantomSlide) -> dict[str, Any]:
    spec = slide.spec
    gt_rows, gt_columns = raster_shape(slide.scene, slide.ground_truth_mpp)

    def rel(path: Path | None) -> str | None:
        return path.name if path is not None else None

    return {
        "format": MANIFEST_FORMAT,
        "format_version": MANIFEST_VERSION,
        "generator": f"unitumour-dicom {__version__}",
        "spec": spec.to_dict(),
        "uids": {
            "study": slide.study_uid,
            "series": slide.series_uid,
            "frame_of_reference": slide.frame_of_reference_uid,
            "specimen": slide.uids.specimen,
            "spec_digest": slide.uids.digest,
        },
        "base": {"width": spec.width, "height": spec.height, "mpp": spec.mpp},
        "levels": [
            {"level": k, "width": w, "height": h, "mpp": m, "files": [rel(p) for p in paths]}
            for k, ((w, h), m, paths) in enumerate(
                zip(spec.level_sizes, spec.level_mpps, slide.level_paths, strict=True)
            )
        ],
        "label": rel(slide.label_path),
        "overview": rel(slide.overview_path),
        "ground_truth": {
            "geometry": "pixel (r, c) covers [c, c+1) x [r, r+1) * mpp micrometres from the "
            "top-left corner of the base level's total pixel matrix; 255 = inside",
            "mpp": slide.ground_truth_mpp,
            "width": gt_columns,
            "height": gt_rows,
            "tumour_mask": TUMOUR_PNG,
            "tissue_mask": TISSUE_PNG,
        },
        "scene": slide.scene.to_dict(),
    }


def _write_manifest(slide: PhantomSlide) -> None:
    text = json.dumps(_manifest(slide), indent=2, sort_keys=False) + "\n"
    _atomic_write(slide.root / MANIFEST_NAME, lambda fp: fp.write(text.encode("utf-8")))


def _atomic_write(path: Path, write: Callable[[BinaryIO], object]) -> None:
    partial = path.with_name(path.name + ".partial")
    try:
        with open(partial, "wb") as fp:
            write(fp)
            fp.flush()
            os.fsync(fp.fileno())
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


# -- loading -----------------------------------------------------------------------------------


def load_phantom(out_dir: str | os.PathLike[str]) -> PhantomSlide:
    """The phantom written into ``out_dir``, from its phantom.json.

    Raises SlideError when the manifest is missing, malformed, of another format version, or
    lists files that are not there.
    """
    root = Path(out_dir)
    manifest_path = root / MANIFEST_NAME
    data = _read_manifest(manifest_path, MANIFEST_FORMAT, MANIFEST_VERSION, "phantom")
    try:
        spec = PhantomSpec.from_dict(data["spec"])
        scene = Scene.from_dict(data["scene"])
        level_paths = [[_local(root, name) for name in lvl["files"]] for lvl in data["levels"]]
        label = _local(root, data["label"]) if data.get("label") else None
        overview = _local(root, data["overview"]) if data.get("overview") else None
        gt_mpp = float(data["ground_truth"]["mpp"])
    except (KeyError, TypeError, ValueError) as exc:
        raise SlideError(f"{manifest_path} is malformed: {exc}") from exc
    slide = PhantomSlide(
        root=root,
        spec=spec,
        scene=scene,
        uids=PhantomUids.from_spec(spec),
        level_paths=level_paths,
        label_path=label,
        overview_path=overview,
        ground_truth_mpp=gt_mpp,
    )
    if slide.uids.digest != data.get("uids", {}).get("spec_digest"):
        raise SlideError(f"{manifest_path}: the spec does not match the recorded UIDs")
    missing = [p.name for p in slide.instance_paths if not p.is_file()]
    if missing:
        raise SlideError(f"{root} lacks files its manifest lists: {', '.join(missing)}")
    return slide


def _read_manifest(path: Path, fmt: str, version: int, kind: str) -> dict[str, Any]:
    """The JSON object of a slide directory's manifest (phantom or mosaic), of ``fmt`` at
    ``version``; SlideError when it is missing, unreadable or of another format or version."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SlideError(f"{path.parent} holds no {path.name}; not a {kind} directory") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SlideError(f"{path} cannot be read: {exc}") from exc
    if not isinstance(data, dict) or data.get("format") != fmt:
        raise SlideError(f"{path} is not a {fmt} manifest")
    if data.get("format_version") != version:
        raise SlideError(
            f"{path} has format version {data.get('format_version')!r}; "
            f"this code reads version {version}"
        )
    return data


def _local(root: Path, name: object) -> Path:
    """A file name from the manifest, refused if it would leave the phantom directory."""
    if not isinstance(name, str) or not name or Path(name).name != name or name in (".", ".."):
        raise ValueError(f"bad file name {name!r}")
    return root / name
