"""Connected-component filters on slide-sized masks, in horizontal bands.

Labelling a whole slide at the model's resolution at once would need a 32-bit label per
pixel, four times the mask itself. Instead each band of rows is labelled on its own, the
pieces that touch across band boundaries are joined as edges of a graph (whose connected
components are the mask's), their areas summed per component, and a second pass relabels
each band (labelling is deterministic) and applies the decision. Memory: one band's labels
plus a few numbers per piece.

The mask may be a numpy array (changed in place) or a
:class:`~unitumour_dicom.slide.raster.DiskRaster` (each band read, changed and written
back): the bands, the labels and so the result are the same. A band holds about
``_BAND_PIXELS`` pixels (at least 16 rows): its int32 labels are 16 MB, whatever the slide.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy import ndimage
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from ..slide.raster import DiskRaster, any_nonzero, read_rows, write_rows

Mask = np.ndarray | DiskRaster

_EIGHT = np.ones((3, 3), bool)
_FOUR = ndimage.generate_binary_structure(2, 1)
_BAND_PIXELS = 1 << 22  # about 4 M pixels (16 MB of labels) per band


def _band_rows(width: int, band_rows: int | None) -> int:
    return band_rows if band_rows else max(16, _BAND_PIXELS // max(width, 1))


def _components(
    select: Callable[[int, int], np.ndarray],
    shape: tuple[int, int],
    eight: bool,
    band_rows: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[tuple[int, int]]]:
    """First pass: for every band-local piece, its global component id, and per component
    the area and whether it touches the raster's edge. Also each band's (first id, count)."""
    rows, cols = shape
    structure = _EIGHT if eight else _FOUR
    areas: list[np.ndarray] = []
    edge_touch: list[np.ndarray] = []
    links: list[np.ndarray] = []
    bands: list[tuple[int, int]] = []
    offset = 0
    previous_last: np.ndarray | None = None
    for r0 in range(0, rows, band_rows):
        r1 = min(r0 + band_rows, rows)
        band = select(r0, r1)
        if not band.any():
            bands.append((offset, 0))
            previous_last = None
            continue
        labels, count = ndimage.label(band, structure=structure)
        area = np.bincount(labels.ravel(), minlength=count + 1)[1:]
        touch = np.zeros(count + 1, bool)
        touch[labels[:, 0]] = True
        touch[labels[:, -1]] = True
        if r0 == 0:
            touch[labels[0]] = True
        if r1 == rows:
            touch[labels[-1]] = True
        first = np.where(labels[0] > 0, labels[0] + offset, 0)
        if previous_last is not None:
            shifts = (-1, 0, 1) if eight else (0,)
            for shift in shifts:
                upper = previous_last[max(0, -shift) : cols - max(0, shift)]
                lower = first[max(0, shift) : cols - max(0, -shift)]
                both = (upper > 0) & (lower > 0)
                if both.any():
                    links.append(np.unique(np.stack([upper[both], lower[both]], 1), axis=0))
        previous_last = np.where(labels[-1] > 0, labels[-1] + offset, 0)
        areas.append(area)
        edge_touch.append(touch[1:])
        bands.append((offset, count))
        offset += count
    if offset == 0:
        empty = np.zeros(0, np.int64)
        return empty, empty, np.zeros(0, bool), bands
    n = offset
    if links:
        pairs = np.concatenate(links) - 1  # ids are 1-based
        graph = coo_matrix((np.ones(len(pairs), np.int8), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
        _, component = connected_components(graph, directed=False)
    else:
        component = np.arange(n)
    piece_area = np.concatenate(areas)
    total_area = np.bincount(component, weights=piece_area).astype(np.int64)
    touches = np.zeros(total_area.shape[0], bool)
    np.logical_or.at(touches, component, np.concatenate(edge_touch))
    return component, total_area, touches, bands


def _apply(
    mask: Mask,
    select: Callable[[int, int], np.ndarray],
    eight: bool,
    band_rows: int,
    component: np.ndarray,
    decide: np.ndarray,
    bands: list[tuple[int, int]],
    value: bool,
) -> int:
    """Second pass: set ``mask`` to ``value`` on every piece whose component is decided."""
    structure = _EIGHT if eight else _FOUR
    piece_decided = decide[component] if component.size else np.zeros(0, bool)
    changed = 0
    for (offset, count), r0 in zip(bands, range(0, mask.shape[0], band_rows), strict=True):
        if count == 0 or not piece_decided[offset : offset + count].any():
            continue
        r1 = min(r0 + band_rows, mask.shape[0])
        labels, relabelled = ndimage.label(select(r0, r1), structure=structure)
        if relabelled != count:  # labelling is deterministic; anything else is a bug
            raise RuntimeError(f"band {r0}:{r1} relabelled to {relabelled} pieces, not {count}")
        lookup = np.concatenate([[False], piece_decided[offset : offset + count]])
        hit = lookup[labels]
        changed += int(np.count_nonzero(hit))
        band = read_rows(mask, r0, r1)  # a view of an array, a copy of a raster's rows
        band[hit] = value
        write_rows(mask, r0, band)
    return changed


def remove_small_objects(
    mask: Mask, min_area: float, *, pixel_area: float = 1.0, band_rows: int | None = None
) -> int:
    """Clear (in place) 8-connected foreground components whose area (pixels times
    ``pixel_area``) is below ``min_area``; returns how many pixels were cleared."""
    if min_area <= 0 or not any_nonzero(mask):
        return 0
    rows = _band_rows(mask.shape[1], band_rows)

    def select(r0: int, r1: int) -> np.ndarray:
        return read_rows(mask, r0, r1)

    component, area, _, bands = _components(select, mask.shape, True, rows)
    small = area * pixel_area < min_area
    return _apply(mask, select, True, rows, component, small, bands, False)


def fill_small_holes(
    mask: Mask, max_area: float, *, pixel_area: float = 1.0, band_rows: int | None = None
) -> int:
    """Set (in place) 4-connected background components that do not touch the raster's edge
    (holes enclosed by foreground) and whose area (pixels times ``pixel_area``) is at most
    ``max_area``; returns how many pixels were filled."""
    if max_area <= 0 or not any_nonzero(mask):
        return 0
    rows = _band_rows(mask.shape[1], band_rows)

    def select(r0: int, r1: int) -> np.ndarray:
        return ~read_rows(mask, r0, r1)

    component, area, touches, bands = _components(select, mask.shape, False, rows)
    fill = (area * pixel_area <= max_area) & ~touches
    return _apply(mask, select, False, rows, component, fill, bands, True)
