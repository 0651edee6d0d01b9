"""Stain and colour statistics of the tissue in one RGB tile, in numpy.

Why these numbers: what differs between laboratories and scanners is first of all colour. In
optical density (OD = -ln(I / 255), Beer-Lambert) stains add up linearly, so the OD of a tissue
pixel is a mix of the haematoxylin and eosin vectors; Macenko's method (Macenko et al., ISBI
2009) recovers both vectors from the plane of largest OD variance, and the concentrations of each
stain follow by least squares. A tile is summarised by

- OD mean and standard deviation per channel (how dark, in what hue);
- the H and E unit vectors (the stain chemistry and the scanner's colour response);
- the 50th and 99th percentiles of both concentrations (staining intensity);
- the fraction of foreground pixels whose OD ratios are H&E's (the tissue detector's own colour
  test in ``slide.tissue``), which drops to near 0 on grey, IHC-brown or marker-ink tiles;
- a coarse 4 x 4 histogram of OD chromaticity (how OD is shared out between channels);
- the 5th percentiles of both concentrations (a stain offset lifts the palest tissue).

Pixels are "foreground" when the tissue detector would consider them at all (green OD above the
glass level, not near black): its H&E colour test is not applied, so that a non-H&E tile is
described rather than skipped. The caller's tissue mask (the slide's detected tissue under the
tile) further restricts them.
"""

from __future__ import annotations

import numpy as np

from ..slide.tissue import TissueParams

# Feature names in order; ``stain_features`` returns them in this order.
_BASE_NAMES = [
    "od_mean_r",
    "od_mean_g",
    "od_mean_b",
    "od_std_r",
    "od_std_g",
    "od_std_b",
    "h_r",
    "h_g",
    "h_b",
    "e_r",
    "e_g",
    "e_b",
    "h_p50",
    "h_p99",
    "e_p50",
    "e_p99",
    "he_fraction",
    "h_p05",
    "e_p05",
]
_HIST_BINS = 4
STAIN_FEATURE_NAMES: tuple[str, ...] = tuple(
    _BASE_NAMES + [f"chroma_{i}_{j}" for i in range(_HIST_BINS) for j in range(_HIST_BINS)]
)
MAX_PIXELS = 16384  # foreground pixels sampled per tile for the statistics: enough, and fast
MIN_PIXELS = 256  # fewer foreground pixels than this: the tile is not described
_MACENKO_BETA = 0.15  # OD norm below this is too pale for stain estimation
_MACENKO_ALPHA = 1.0  # percentile of the angle distribution for the extreme stain vectors


# OD of each uint8 level, float32, by the formula of ``slide.tissue``: a table lookup is the
# same number as computing the logarithm per pixel, several times faster.
_OD_LUT = -np.log((np.arange(256, dtype=np.float32) + 1.0) / 256.0)


def optical_density(rgb: np.ndarray) -> np.ndarray:
    """OD of uint8 RGB (any leading shape, last axis 3), float32, as ``slide.tissue`` does."""
    return _OD_LUT[rgb]


def foreground(rgb: np.ndarray, params: TissueParams | None = None) -> np.ndarray:
    """Pixels the tissue detector would consider (not glass, not black), H x W bool."""
    p = params or TissueParams()
    brightest = np.maximum(np.maximum(rgb[..., 0], rgb[..., 1]), rgb[..., 2])
    return (_OD_LUT[rgb[..., 1]] >= p.min_green_od) & (brightest >= p.min_brightness)


def he_colour(od: np.ndarray, params: TissueParams | None = None) -> np.ndarray:
    """The tissue detector's H&E colour test on OD pixels (... x 3)."""
    p = params or TissueParams()
    od_r, od_g, od_b = od[..., 0], od[..., 1], od[..., 2]
    return (od_g >= p.min_green_to_red_od * od_r) & (od_b <= p.max_blue_to_green_od * od_g)


def macenko_vectors(od: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Unit H and E vectors (each 3,) from OD pixels (n x 3), or None when too few pixels are
    stained. H is the vector with the larger red OD (haematoxylin absorbs red, eosin hardly)."""
    # Pale pixels (OD norm below beta) carry more noise than stain. The common per-channel
    # test would also drop pure eosin, whose red OD is tiny, and bias E towards H.
    od = od[np.linalg.norm(od, axis=1) > _MACENKO_BETA]
    if len(od) < 16:
        return None
    cov = np.cov(od, rowvar=False)
    _, vecs = np.linalg.eigh(cov)
    plane = vecs[:, [2, 1]]  # the two directions of largest variance
    plane = plane * np.where(plane.sum(axis=0) < 0, -1.0, 1.0)  # point into positive OD
    proj = od @ plane
    phi = np.arctan2(proj[:, 1], proj[:, 0])
    lo, hi = np.percentile(phi, [_MACENKO_ALPHA, 100 - _MACENKO_ALPHA])
    v1 = plane @ np.array([np.cos(lo), np.sin(lo)])
    v2 = plane @ np.array([np.cos(hi), np.sin(hi)])
    v1, v2 = (v1 / max(np.linalg.norm(v1), 1e-12), v2 / max(np.linalg.norm(v2), 1e-12))
    h, e = (v1, v2) if v1[0] >= v2[0] else (v2, v1)
    return h, e


def stain_concentrations(od: np.ndarray, h: np.ndarray, e: np.ndarray) -> np.ndarray:
    """Least-squares H and E concentrations (n x 2) of OD pixels (n x 3)."""
    basis = np.stack([h, e], axis=1)  # 3 x 2
    return od @ np.linalg.pinv(basis).T


def _sample(index: np.ndarray, limit: int) -> np.ndarray:
    """A deterministic, evenly spread subset of at most ``limit`` flat pixel indices."""
    if len(index) <= limit:
        return index
    return index[np.linspace(0, len(index) - 1, limit).astype(np.int64)]


def stain_features(
    rgb: np.ndarray,
    mask: np.ndarray | None = None,
    params: TissueParams | None = None,
    *,
    mask_is_foreground: bool = False,
) -> np.ndarray | None:
    """The stain/colour vector (``STAIN_FEATURE_NAMES``) of one uint8 H x W x 3 tile, over its
    foreground pixels inside ``mask`` (H x W bool, or None for the whole tile); None when fewer
    than ``MIN_PIXELS`` such pixels (a glass tile says nothing about the stain). With
    ``mask_is_foreground`` the mask already is foreground inside the caller's mask."""
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected a uint8 H x W x 3 tile, got {rgb.dtype} {rgb.shape}")
    if mask is not None and mask.shape != rgb.shape[:2]:
        raise ValueError(f"mask shape {mask.shape} differs from the tile's {rgb.shape[:2]}")
    if mask_is_foreground and mask is not None:
        fg = mask.astype(bool, copy=False)
    else:
        fg = foreground(rgb, params)
        if mask is not None:
            fg &= mask.astype(bool)
    index = np.flatnonzero(fg)
    if len(index) < MIN_PIXELS:
        return None
    od = optical_density(rgb.reshape(-1, 3)[_sample(index, MAX_PIXELS)]).astype(np.float64)
    out = np.zeros(len(STAIN_FEATURE_NAMES), np.float64)
    out[0:3] = od.mean(axis=0)
    out[3:6] = od.std(axis=0)
    vectors = macenko_vectors(od)
    if vectors is None:  # nothing stained enough: Ruifrok-Johnston defaults, zero stain
        h = np.array([0.65, 0.70, 0.29])
        e = np.array([0.07, 0.99, 0.11])
        h, e = h / np.linalg.norm(h), e / np.linalg.norm(e)
    else:
        h, e = vectors
    out[6:9], out[9:12] = h, e
    conc = stain_concentrations(od, h, e)
    out[12:14] = np.percentile(conc[:, 0], [50, 99])
    out[14:16] = np.percentile(conc[:, 1], [50, 99])
    out[16] = he_colour(od, params).mean()
    out[17] = np.percentile(conc[:, 0], 5)
    out[18] = np.percentile(conc[:, 1], 5)
    total = np.maximum(od.sum(axis=1, keepdims=True), 1e-6)
    chroma = od / total  # shares of OD per channel, sum 1: use red and blue shares
    hist, _, _ = np.histogram2d(
        chroma[:, 0], chroma[:, 2], bins=_HIST_BINS, range=[[0.0, 0.6], [0.0, 0.6]]
    )
    out[19:] = (hist / len(od)).ravel()
    return out


QUALITY_FEATURE_NAMES: tuple[str, ...] = ("focus", "detail_ratio", "block_x", "block_y")


def quality_features(rgb: np.ndarray, mask: np.ndarray) -> np.ndarray | None:
    """Image quality of a tile's foreground: what focus, scale and compression do to it.

    - focus: log of mean |Laplacian| of the OD sum relative to the mean OD (low when blurred or
      magnified, high when shrunk or noisy);
    - detail_ratio: log of mean |Laplacian| at 1 px over that after a 2 x 2 box blur: the share
      of the finest detail, a scale cue that does not depend on contrast;
    - block_x, block_y: JPEG blocking, the largest mean |gradient| across columns (rows) of one
      phase modulo 8 over the mean across all: 1 without blocking, whatever the grid's offset.
    """
    s = _OD_LUT[rgb[..., 0]] + _OD_LUT[rgb[..., 1]] + _OD_LUT[rgb[..., 2]]
    fg = mask.astype(bool)
    if fg.sum() < MIN_PIXELS or min(s.shape) < 16:
        return None
    inner = fg[1:-1, 1:-1]
    centre = s[1:-1, 1:-1]
    lap = np.abs(4 * centre - s[:-2, 1:-1] - s[2:, 1:-1] - s[1:-1, :-2] - s[1:-1, 2:])
    lap_mean = lap[inner].mean() if inner.any() else 0.0
    out = np.zeros(len(QUALITY_FEATURE_NAMES))
    out[0] = np.log(lap_mean + 1e-3) - np.log(centre[inner].mean() + 1e-3) if inner.any() else 0
    box = (s[:-1, :-1] + s[1:, :-1] + s[:-1, 1:] + s[1:, 1:]) / 4
    bc = box[1:-1, 1:-1]
    lap2 = np.abs(4 * bc - box[:-2, 1:-1] - box[2:, 1:-1] - box[1:-1, :-2] - box[1:-1, 2:])
    inner2 = fg[1:-2, 1:-2]
    out[1] = np.log(lap_mean + 1e-3) - np.log(lap2[inner2].mean() + 1e-3) if inner2.any() else 0
    for k, axis in ((2, 1), (3, 0)):
        g = np.abs(np.diff(s, axis=axis))
        valid = fg[:, 1:] & fg[:, :-1] if axis == 1 else fg[1:] & fg[:-1]
        other = 1 - axis
        sums = np.where(valid, g, 0.0).sum(axis=other)  # per column (row) across the tile
        counts = valid.sum(axis=other)
        phase = np.arange(len(sums)) % 8
        phase_sums = np.bincount(phase, weights=sums, minlength=8)
        phase_counts = np.bincount(phase, weights=counts, minlength=8)
        present = phase_counts > 0
        total = sums.sum() / counts.sum() if counts.sum() else 0.0
        if present.any() and total > 0:
            out[k] = np.log(np.max(phase_sums[present] / phase_counts[present]) / total)
    return out
