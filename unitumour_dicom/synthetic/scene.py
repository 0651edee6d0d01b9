"""The analytic content of a phantom slide: tissue pieces, tumour regions and artefacts.

Every shape is described in micrometres from the top-left corner of the base level's total
pixel matrix, so it can be evaluated at any point: per tile while writing the pyramid, and at
any pixel size for the ground truth. Shapes are star-shaped blobs whose radius varies with
the angle by a few Fourier harmonics, which gives irregular but closed outlines that cost a
handful of array operations per pixel.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from .spec import PhantomSpec

#: Signed distance of a point far from every shape (micrometres; negative = outside).
FAR_OUTSIDE = -1.0e9


@dataclass(frozen=True)
class Blob:
    """An irregular closed region: radius(θ) = radius_um * (1 + Σ a_k cos(kθ + φ_k))."""

    cx_um: float
    cy_um: float
    radius_um: float
    harmonics: tuple[tuple[int, float, float], ...]  # (k, amplitude, phase)

    @property
    def max_radius_um(self) -> float:
        return self.radius_um * (1.0 + sum(abs(a) for _, a, _ in self.harmonics))

    @property
    def min_radius_um(self) -> float:
        return self.radius_um * (1.0 - sum(abs(a) for _, a, _ in self.harmonics))

    def intersects(self, x0: float, y0: float, x1: float, y1: float, margin: float) -> bool:
        r = self.max_radius_um + margin
        return not (
            self.cx_um + r < x0 or self.cx_um - r > x1 or self.cy_um + r < y0 or self.cy_um - r > y1
        )

    def distance_bounds(self, x0: float, y0: float, x1: float, y1: float) -> tuple[float, float]:
        """Lower and upper bounds of :meth:`signed_distance` over a rectangle, from the
        nearest and farthest points of the rectangle to the centre."""
        nx = min(max(self.cx_um, x0), x1) - self.cx_um
        ny = min(max(self.cy_um, y0), y1) - self.cy_um
        fx = max(abs(x0 - self.cx_um), abs(x1 - self.cx_um))
        fy = max(abs(y0 - self.cy_um), abs(y1 - self.cy_um))
        return self.min_radius_um - math.hypot(fx, fy), self.max_radius_um - math.hypot(nx, ny)

    def signed_distance(self, x_um: np.ndarray, y_um: np.ndarray) -> np.ndarray:
        """Boundary radius minus distance from the centre, in micrometres (broadcasting).

        Positive inside. Not a true Euclidean distance, but within a few percent of one near
        the boundary for the small harmonic amplitudes used here, which is all that edge
        softening and the inside test need.
        """
        dx = np.asarray(x_um, dtype=np.float32) - np.float32(self.cx_um)
        dy = np.asarray(y_um, dtype=np.float32) - np.float32(self.cy_um)
        rho = np.sqrt(dx * dx + dy * dy)  # squares on the 1-D axes, then one 2-D pass
        theta = np.arctan2(dy, dx)
        boundary = np.ones(np.broadcast_shapes(dx.shape, dy.shape), dtype=np.float32)
        for k, amplitude, phase in self.harmonics:
            boundary += np.float32(amplitude) * np.cos(np.float32(k) * theta + np.float32(phase))
        return np.float32(self.radius_um) * boundary - rho

    def to_dict(self) -> dict[str, Any]:
        return {
            "cx_um": self.cx_um,
            "cy_um": self.cy_um,
            "radius_um": self.radius_um,
            "harmonics": [list(h) for h in self.harmonics],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Blob:
        return cls(
            cx_um=float(data["cx_um"]),
            cy_um=float(data["cy_um"]),
            radius_um=float(data["radius_um"]),
            harmonics=tuple((int(k), float(a), float(p)) for k, a, p in data["harmonics"]),
        )


@dataclass(frozen=True)
class PenStroke:
    """A marker pen line: a polyline with a width, inked blue-green. Not tissue."""

    points_um: tuple[tuple[float, float], ...]
    width_um: float

    def intersects(self, x0: float, y0: float, x1: float, y1: float, margin: float) -> bool:
        xs = [p[0] for p in self.points_um]
        ys = [p[1] for p in self.points_um]
        r = self.width_um / 2 + margin
        return not (max(xs) + r < x0 or min(xs) - r > x1 or max(ys) + r < y0 or min(ys) - r > y1)

    def distance(self, x_um: np.ndarray, y_um: np.ndarray) -> np.ndarray:
        """Euclidean distance to the polyline, in micrometres (broadcasting)."""
        x = np.asarray(x_um, dtype=np.float32)
        y = np.asarray(y_um, dtype=np.float32)
        best = np.full(np.broadcast_shapes(x.shape, y.shape), np.inf, dtype=np.float32)
        for (ax, ay), (bx, by) in zip(self.points_um[:-1], self.points_um[1:], strict=True):
            vx, vy = bx - ax, by - ay
            length2 = vx * vx + vy * vy or 1e-12
            t = np.clip(((x - ax) * vx + (y - ay) * vy) / np.float32(length2), 0.0, 1.0)
            ex, ey = x - ax - t * vx, y - ay - t * vy
            np.minimum(best, np.sqrt(ex * ex + ey * ey), out=best)
        return best

    def to_dict(self) -> dict[str, Any]:
        return {"points_um": [list(p) for p in self.points_um], "width_um": self.width_um}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PenStroke:
        return cls(
            points_um=tuple((float(x), float(y)) for x, y in data["points_um"]),
            width_um=float(data["width_um"]),
        )


@dataclass(frozen=True)
class GlassEdge:
    """The edge of the coverslip: a dark vertical line at x_um, glass beyond it. Not tissue."""

    x_um: float
    width_um: float

    def intersects(self, x0: float, x1: float, margin: float) -> bool:
        return x1 >= self.x_um - self.width_um * 4 - margin

    def to_dict(self) -> dict[str, Any]:
        return {"x_um": self.x_um, "width_um": self.width_um}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GlassEdge:
        return cls(x_um=float(data["x_um"]), width_um=float(data["width_um"]))


@dataclass(frozen=True)
class Scene:
    """Everything on the slide, in micrometres; the single source of pixels and ground truth.

    Tissue is the union of ``tissue``; tumour is the union of ``tumours`` intersected with
    tissue. Pen stroke and glass edge are drawn but are neither.
    """

    width_um: float
    height_um: float
    tissue: tuple[Blob, ...]
    tumours: tuple[Blob, ...]
    pen: PenStroke | None = None
    glass_edge: GlassEdge | None = None

    # -- evaluation -----------------------------------------------------------------------

    def tissue_distance(
        self, x_um: np.ndarray, y_um: np.ndarray, margin: float = 0.0
    ) -> np.ndarray:
        """Signed distance to the tissue boundary (positive inside), broadcasting.

        Exact within ±``margin`` micrometres of the boundary; farther away only its sign is
        guaranteed (with magnitude above ``margin``), which lets whole tiles be skipped.
        """
        return _union_distance(self.tissue, x_um, y_um, margin)

    def tumour_distance(
        self,
        x_um: np.ndarray,
        y_um: np.ndarray,
        margin: float = 0.0,
        tissue_distance: np.ndarray | None = None,
    ) -> np.ndarray:
        """Signed distance to the tumour boundary (tumour = tumour blobs ∩ tissue), with the
        same ``margin`` contract as :meth:`tissue_distance`. ``tissue_distance``, if given,
        is that of the same points with at least this ``margin``, and is not computed again.
        """
        tumour = _union_distance(self.tumours, x_um, y_um, margin)
        if not self.tumours:
            return tumour
        if tissue_distance is None:
            tissue_distance = self.tissue_distance(x_um, y_um, margin)
        return np.minimum(tumour, tissue_distance)

    def tissue_mask(self, x_um: np.ndarray, y_um: np.ndarray) -> np.ndarray:
        return self.tissue_distance(x_um, y_um) > 0

    def tumour_mask(self, x_um: np.ndarray, y_um: np.ndarray) -> np.ndarray:
        return self.tumour_distance(x_um, y_um) > 0

    # -- serialisation --------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {
            "units": "micrometres from the top-left corner of the base total pixel matrix",
            "width_um": self.width_um,
            "height_um": self.height_um,
            "tissue": [b.to_dict() for b in self.tissue],
            "tumours": [b.to_dict() for b in self.tumours],
            "pen": self.pen.to_dict() if self.pen else None,
            "glass_edge": self.glass_edge.to_dict() if self.glass_edge else None,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Scene:
        return cls(
            width_um=float(data["width_um"]),
            height_um=float(data["height_um"]),
            tissue=tuple(Blob.from_dict(b) for b in data["tissue"]),
            tumours=tuple(Blob.from_dict(b) for b in data["tumours"]),
            pen=PenStroke.from_dict(data["pen"]) if data.get("pen") else None,
            glass_edge=GlassEdge.from_dict(data["glass_edge"]) if data.get("glass_edge") else None,
        )

    # -- generation -----------------------------------------------------------------------

    @classmethod
    def from_spec(cls, spec: PhantomSpec) -> Scene:
        """Place tissue pieces, tumours and artefacts from the spec's seed."""
        rng = np.random.default_rng([spec.seed, 0x7155_5EED])
        width_um, height_um = spec.width * spec.mpp, spec.height * spec.mpp
        usable_width = width_um * (0.9 if spec.glass_edge else 1.0)
        n_pieces = spec.n_tissue_pieces or int(rng.integers(1, 4))
        tissue = _place_tissue(rng, n_pieces, usable_width, height_um)
        tumours = tuple(
            _place_tumour(rng, tissue[j % len(tissue)]) for j in range(spec.tumour_count)
        )
        pen = _place_pen(rng, tissue[0], width_um, height_um) if spec.pen_mark else None
        edge = None
        if spec.glass_edge:
            edge = GlassEdge(
                x_um=round(width_um * 0.95, 3),
                width_um=round(min(max(width_um * 0.004, 3.0), 60.0), 3),
            )
        return cls(width_um, height_um, tissue, tumours, pen, edge)


def _union_distance(
    blobs: tuple[Blob, ...], x_um: np.ndarray, y_um: np.ndarray, margin: float
) -> np.ndarray:
    """Signed distance to a union of blobs (the maximum over them), exact where it lies
    within ±``margin``; beyond that it may be any value on the same side of ±margin.

    That freedom is what makes tiles cheap: a tile wholly inside one blob, or wholly clear
    of all, is filled with a bound instead of being evaluated pixel by pixel.
    """
    shape = np.broadcast_shapes(np.shape(x_um), np.shape(y_um))
    if not blobs or not all(shape):
        return np.full(shape, FAR_OUTSIDE, dtype=np.float32)
    x = np.asarray(x_um)
    y = np.asarray(y_um)
    x0, x1 = float(np.min(x)), float(np.max(x))
    y0, y1 = float(np.min(y)), float(np.max(y))
    near = []
    for blob in blobs:
        lower, upper = blob.distance_bounds(x0, y0, x1, y1)
        if lower > margin:
            return np.full(shape, lower, dtype=np.float32)
        if upper >= -margin:
            near.append(blob)
    best = np.full(shape, FAR_OUTSIDE, dtype=np.float32)
    for blob in near:
        np.maximum(best, blob.signed_distance(x, y), out=best)
    return best


def _harmonics(rng: np.random.Generator, scale: float) -> tuple[tuple[int, float, float], ...]:
    ranges = {2: (0.05, 0.15), 3: (0.03, 0.08), 4: (0.01, 0.04), 5: (0.01, 0.03), 6: (0.0, 0.02)}
    return tuple(
        (
            k,
            round(float(rng.uniform(lo, hi)) * scale, 5),
            round(float(rng.uniform(0, 2 * math.pi)), 5),
        )
        for k, (lo, hi) in ranges.items()
    )


def _place_tissue(
    rng: np.random.Generator, n_pieces: int, width_um: float, height_um: float
) -> tuple[Blob, ...]:
    """One piece per slot of a grid of near-square slots (a last, shorter row spread across
    the width), each kept inside the image with a margin."""
    columns = max(1, min(n_pieces, round(math.sqrt(n_pieces * width_um / height_um))))
    rows = math.ceil(n_pieces / columns)
    columns = math.ceil(n_pieces / rows)
    slots = []
    for row in range(rows):
        in_row = min(columns, n_pieces - row * columns)
        sw, sh = width_um / in_row, height_um / rows
        slots += [((c + 0.5) * sw, (row + 0.5) * sh, sw, sh) for c in range(in_row)]
    pieces = []
    for cx, cy, sw, sh in slots:
        cx += float(rng.uniform(-0.08, 0.08)) * sw
        cy += float(rng.uniform(-0.08, 0.08)) * sh
        harmonics = _harmonics(rng, 1.0)
        extent = 1.0 + sum(abs(a) for _, a, _ in harmonics)
        room = min(cx, width_um - cx, cy, height_um - cy) * 0.94
        radius = min(0.5 * min(sw, sh) * float(rng.uniform(0.85, 0.98)), room) / extent
        pieces.append(Blob(round(cx, 3), round(cy, 3), round(radius, 3), harmonics))
    return tuple(pieces)


def _place_tumour(rng: np.random.Generator, piece: Blob) -> Blob:
    angle = float(rng.uniform(0, 2 * math.pi))
    distance = piece.radius_um * float(rng.uniform(0.1, 0.55))
    cx = piece.cx_um + distance * math.cos(angle)
    cy = piece.cy_um + distance * math.sin(angle)
    radius = piece.radius_um * float(rng.uniform(0.24, 0.42))
    return Blob(round(cx, 3), round(cy, 3), round(radius, 3), _harmonics(rng, 1.3))


def _place_pen(
    rng: np.random.Generator, piece: Blob, width_um: float, height_um: float
) -> PenStroke:
    """An arc drawn round the first tissue piece, as a pathologist circles an area."""
    start = float(rng.uniform(0, 2 * math.pi))
    sweep = math.radians(float(rng.uniform(80, 140)))
    radius = piece.max_radius_um * 1.08
    points = []
    for i in range(17):
        theta = start + sweep * i / 16
        wobble = 1.0 + 0.03 * math.sin(5 * theta)
        x = min(max(piece.cx_um + radius * wobble * math.cos(theta), 0.0), width_um)
        y = min(max(piece.cy_um + radius * wobble * math.sin(theta), 0.0), height_um)
        points.append((round(x, 3), round(y, 3)))
    pen_width = min(max(0.025 * min(width_um, height_um), 8.0), 900.0)
    return PenStroke(tuple(points), round(pen_width, 3))
