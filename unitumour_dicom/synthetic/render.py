"""Pixels of an H&E-like slide, rendered from the analytic scene one region at a time.

Colour follows the Beer-Lambert law as stained tissue does: each stain adds optical density
along its own colour vector and transmitted light is 10^-OD. Haematoxylin colours nuclei
purple-blue, eosin colours stroma and cytoplasm pink. Tumour differs from normal tissue the
way carcinoma does at low power: crowded, larger, darker nuclei and more basophilic cytoplasm.

Every value depends only on global coordinates (hashed lattices), except a faint per-pixel
sensor noise seeded per tile, so regions rendered separately join without seams.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .noise import fractal_noise, hash_uniform, salt_for, value_noise
from .scene import Scene

# Optical density per unit stain concentration (R, G, B), from typical H&E colours.
HAEMATOXYLIN_OD = np.array([0.58, 0.74, 0.31], dtype=np.float32)
EOSIN_OD = np.array([0.13, 0.86, 0.48], dtype=np.float32)
GLASS_OD = np.array([0.020, 0.021, 0.024], dtype=np.float32)  # bright background ~ (243,243,241)
PEN_INK_OD = np.array([0.95, 0.42, 0.12], dtype=np.float32)  # blue-green marker
COVERSLIP_EDGE_OD = np.array([0.45, 0.43, 0.40], dtype=np.float32)

#: Above this pixel size nuclei are below ~1.5 pixels: render their mean effect instead.
NUCLEUS_DETAIL_MAX_MPP = 2.0


@dataclass(frozen=True)
class EllipseLattice:
    """Ellipses on a jittered square lattice, at most one per cell: nuclei or gland lumens.

    ``region`` says where a cell's ellipse may lie: in non-tumour tissue or in tumour, with
    its centre at least ``clearance`` times its long semi-axis (plus ``clearance_um``) from
    that region's edge.
    """

    salt: int
    cell_um: float
    presence: float
    semi_axis_um: tuple[float, float]  # range of the long semi-axis
    aspect: tuple[float, float]  # range of short / long
    density: tuple[float, float]  # range of the ellipse's value, 0..1
    region: str  # "normal" or "tumour"
    clearance: float = 1.0
    clearance_um: float = 0.0
    jitter: float = 0.45  # fraction of a cell

    @property
    def mean_coverage(self) -> float:
        """Mean fraction of area covered, weighted by density."""
        a = sum(self.semi_axis_um) / 2
        b = a * sum(self.aspect) / 2
        return self.presence * np.pi * a * b / self.cell_um**2 * sum(self.density) / 2

    @property
    def reach_um(self) -> float:
        """How far from its cell an ellipse may reach."""
        return self.semi_axis_um[1] + self.jitter * self.cell_um


NORMAL_NUCLEI = EllipseLattice(
    salt=101,
    cell_um=15.0,
    presence=0.5,
    semi_axis_um=(2.2, 3.4),
    aspect=(0.35, 0.75),
    density=(0.55, 0.8),
    region="normal",
)
TUMOUR_NUCLEI = EllipseLattice(
    salt=202,
    cell_um=9.5,
    presence=0.9,
    semi_axis_um=(3.2, 4.6),
    aspect=(0.7, 1.0),
    density=(0.85, 1.0),
    region="tumour",
    clearance=0.5,
)
#: Gland lumens of adenocarcinoma: clear spaces among the crowded tumour cells.
TUMOUR_LUMENS = EllipseLattice(
    salt=303,
    cell_um=48.0,
    presence=0.55,
    semi_axis_um=(6.0, 13.0),
    aspect=(0.55, 1.0),
    density=(0.85, 1.0),
    region="tumour",
    clearance=1.0,
    clearance_um=8.0,
    jitter=0.3,
)

NUCLEUS_HAEMATOXYLIN = 1.05  # haematoxylin concentration of the darkest nucleus
NUCLEUS_CORE = (0.7, 0.8)  # a nucleus's paler core: its size and density relative to the rim


def pixel_centres_um(start: int, count: int, mpp: float) -> np.ndarray:
    """Micrometre coordinates of the centres of pixels start .. start+count-1."""
    return (np.arange(start, start + count, dtype=np.float64) + 0.5) * mpp


def edge_softness_um(mpp: float) -> float:
    """Half-width of the blur of every drawn edge: 1.5 µm, or a pixel when pixels are larger."""
    return max(1.5, mpp)


@dataclass(frozen=True)
class Features:
    """What may show in a region; False means surely not (True may be a near miss)."""

    tissue: bool
    pen: bool
    glass_edge: bool

    @property
    def any(self) -> bool:
        return self.tissue or self.pen or self.glass_edge


def features_in(
    scene: Scene, x0_um: float, y0_um: float, x1_um: float, y1_um: float, mpp: float
) -> Features:
    """Which of the scene's features may colour pixels in a rectangle, rendered at ``mpp``.

    The one test both the renderer (to skip work) and the writer (to leave out frames that
    show only glass) use, so a frame left out never had anything to show.
    """
    soft = edge_softness_um(mpp)
    return Features(
        tissue=any(b.intersects(x0_um, y0_um, x1_um, y1_um, soft) for b in scene.tissue),
        pen=scene.pen is not None and scene.pen.intersects(x0_um, y0_um, x1_um, y1_um, soft),
        glass_edge=scene.glass_edge is not None and scene.glass_edge.intersects(x0_um, x1_um, soft),
    )


def render_region(
    scene: Scene,
    x_um: np.ndarray,
    y_um: np.ndarray,
    mpp: float,
    seed: int,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """RGB uint8 pixels at the grid ``y_um[:, None], x_um[None, :]`` of pixel size ``mpp``.

    ``x_um``/``y_um`` are the pixel centres (see :func:`pixel_centres_um`), evenly spaced by
    ``mpp``. ``rng`` adds sensor noise; None renders noise-free (overviews).
    """
    h, w = len(y_um), len(x_um)
    od = np.broadcast_to(GLASS_OD, (h, w, 3)).copy()
    xg, yg = x_um[None, :], y_um[:, None]
    soft = edge_softness_um(mpp)
    shows = features_in(
        scene, float(x_um[0]) - mpp, float(y_um[0]) - mpp, float(x_um[-1]) + mpp,
        float(y_um[-1]) + mpp, mpp,
    )  # fmt: skip

    if shows.tissue:
        _add_tissue(od, scene, x_um, y_um, mpp, seed, soft)

    if shows.pen and scene.pen is not None:
        half = scene.pen.width_um / 2
        alpha = np.clip((half - scene.pen.distance(xg, yg)) / (2 * soft) + 0.5, 0.0, 1.0)
        streak = 0.75 + 0.25 * value_noise(
            x_um, y_um, max(scene.pen.width_um / 6, mpp), salt_for(seed, 7)
        )
        od += (alpha * streak)[..., None] * PEN_INK_OD

    edge = scene.glass_edge
    if shows.glass_edge and edge is not None:
        dx = (x_um - edge.x_um).astype(np.float32)
        line = np.exp(-((dx / max(edge.width_um, mpp)) ** 2))
        beyond = np.maximum(dx, 0.0)
        shadow = np.where(dx > 0, 0.05 * np.exp(-beyond / (edge.width_um * 8)), 0.0)
        od += ((line + shadow)[None, :, None] * COVERSLIP_EDGE_OD).astype(np.float32)

    rgb = 255.0 * np.power(np.float32(10.0), -od)
    if rng is not None:
        rgb += rng.normal(0.0, 1.5, size=(h, w, 1)).astype(np.float32)
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)


def _add_tissue(
    od: np.ndarray,
    scene: Scene,
    x_um: np.ndarray,
    y_um: np.ndarray,
    mpp: float,
    seed: int,
    soft: float,
) -> None:
    xg, yg = x_um[None, :], y_um[:, None]
    tumour_soft = max(4.0, mpp)  # a wider margin than soft: one evaluation serves both
    tissue_d = scene.tissue_distance(xg, yg, tumour_soft)
    tissue = np.clip(tissue_d / (2 * soft) + 0.5, 0.0, 1.0)
    tumour_d = scene.tumour_distance(xg, yg, tumour_soft, tissue_distance=tissue_d)
    tumour = np.clip(tumour_d / (2 * tumour_soft) + 0.5, 0.0, 1.0)
    patches = fractal_noise(x_um, y_um, 30.0, 3, salt_for(seed, 11))
    fibres = value_noise(x_um, y_um, (45.0, 3.5), salt_for(seed, 14))
    fine = value_noise(x_um, y_um, 2.5, salt_for(seed, 12))
    # Fine grain (fibrils, granular cytoplasm): what gives real tissue its high frequencies.
    grain = 0.6 * value_noise(x_um, y_um, (4.0, 1.1), salt_for(seed, 15)) + 0.4 * value_noise(
        x_um, y_um, 0.6, salt_for(seed, 16)
    )
    # Collagen bundles in stroma: streaks in patches, with pale loose gaps between them;
    # tumour nests are more uniform and their cytoplasm is more basophilic.
    stroma_eosin = 0.07 + 0.26 * patches**1.5 + 0.16 * fibres * patches
    eosin = (stroma_eosin * (1 - tumour) + (0.16 + 0.10 * patches) * tumour) * (0.6 + 0.8 * grain)
    haem = (0.03 + 0.03 * fine) * (1 - tumour) + (0.10 + 0.06 * fine) * tumour

    if mpp <= NUCLEUS_DETAIL_MAX_MPP:
        nuclei = _draw(scene, (NORMAL_NUCLEI, TUMOUR_NUCLEI), x_um, y_um, mpp, seed, NUCLEUS_CORE)
        nuclei *= 0.75 + 0.5 * value_noise(x_um, y_um, 0.9, salt_for(seed, 13))  # chromatin
        lumens = _draw(scene, (TUMOUR_LUMENS,), x_um, y_um, mpp, seed)
    else:
        nuclei = NORMAL_NUCLEI.mean_coverage * (1 - tumour) + TUMOUR_NUCLEI.mean_coverage * tumour
        lumens = TUMOUR_LUMENS.mean_coverage * tumour
    haem += NUCLEUS_HAEMATOXYLIN * nuclei
    eosin = eosin * (1 - 0.6 * np.clip(nuclei, 0, 1))
    stained = tissue * (1 - 0.92 * lumens)  # a lumen holds only faint secretion
    od += (stained * haem)[..., None] * HAEMATOXYLIN_OD
    od += (stained * eosin)[..., None] * EOSIN_OD


def _draw(
    scene: Scene,
    lattices: tuple[EllipseLattice, ...],
    x_um: np.ndarray,
    y_um: np.ndarray,
    mpp: float,
    seed: int,
    core: tuple[float, float] | None = None,
) -> np.ndarray:
    """The lattices' ellipses, anti-aliased, as values in [0, 1] on the region.

    ``core`` (size, value) draws a paler core inside each ellipse, the rim-dark look of a
    nucleus whose chromatin lines its membrane.
    """
    canvas = np.zeros((len(y_um), len(x_um)), dtype=np.uint8)
    left_px = float(x_um[0]) / mpp - 0.5  # global pixel index of the region's first column
    top_px = float(y_um[0]) / mpp - 0.5
    shift = 4
    one = 1 << shift
    for lattice in lattices:
        for cx, cy, a, b, angle, value in _ellipses(lattice, scene, x_um, y_um, mpp, seed):
            centre = (
                round((cx / mpp - 0.5 - left_px) * one),
                round((cy / mpp - 0.5 - top_px) * one),
            )
            layers = [(1.0, value)] if core is None else [(1.0, value), (core[0], value * core[1])]
            for size, level in layers:
                axes = (max(round(a * size / mpp * one), 1), max(round(b * size / mpp * one), 1))
                cv2.ellipse(
                    canvas,
                    centre,
                    axes,
                    angle,
                    0.0,
                    360.0,
                    round(255 * level),
                    thickness=-1,
                    lineType=cv2.LINE_AA,
                    shift=shift,
                )
    return canvas.astype(np.float32) * np.float32(1 / 255)


def _ellipses(
    lattice: EllipseLattice,
    scene: Scene,
    x_um: np.ndarray,
    y_um: np.ndarray,
    mpp: float,
    seed: int,
) -> list[tuple[float, float, float, float, float, float]]:
    """(cx, cy, a, b in micrometres, angle in degrees, value) of the ellipses that may touch
    the region, in lattice order (which fixes which of two overlapping ones is on top)."""
    cell = lattice.cell_um
    reach = lattice.reach_um + mpp
    ix = np.arange(
        int(np.floor((x_um[0] - reach) / cell)), int(np.floor((x_um[-1] + reach) / cell)) + 1
    )
    iy = np.arange(
        int(np.floor((y_um[0] - reach) / cell)), int(np.floor((y_um[-1] + reach) / cell)) + 1
    )
    gx, gy = (g.ravel() for g in np.meshgrid(ix, iy))
    salt = salt_for(seed, lattice.salt)
    present = hash_uniform(gx, gy, salt) < lattice.presence
    if not present.any():
        return []
    gx, gy = gx[present], gy[present]
    u = [hash_uniform(gx, gy, salt + k) for k in range(1, 7)]
    cx = (gx + 0.5 + (u[0] - 0.5) * 2 * lattice.jitter) * cell
    cy = (gy + 0.5 + (u[1] - 0.5) * 2 * lattice.jitter) * cell
    lo, hi = lattice.semi_axis_um
    a = lo + (hi - lo) * u[2]
    b = a * (lattice.aspect[0] + (lattice.aspect[1] - lattice.aspect[0]) * u[3])
    angle = 180.0 * u[4]
    value = lattice.density[0] + (lattice.density[1] - lattice.density[0]) * u[5]
    # Exact up to the farthest clearance looked at: beyond, only the sign is needed.
    margin = lattice.clearance * hi + lattice.clearance_um
    clearance = lattice.clearance * a + lattice.clearance_um
    tissue_d = scene.tissue_distance(cx, cy, margin)
    tumour_d = scene.tumour_distance(cx, cy, margin, tissue_distance=tissue_d)
    if lattice.region == "tumour":
        inside = (tumour_d > clearance) & (tissue_d > clearance)
    else:
        inside = (tumour_d <= 0) & (tissue_d > clearance)
    keep = np.flatnonzero(inside)
    return list(
        zip(
            cx[keep].tolist(),
            cy[keep].tolist(),
            a[keep].tolist(),
            b[keep].tolist(),
            angle[keep].tolist(),
            value[keep].tolist(),
            strict=True,
        )
    )
