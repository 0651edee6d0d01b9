"""Deterministic noise that depends only on global coordinates, never on how a slide is tiled.

A tile of any size at any position sees the same values as its neighbours at their common
border, which is what lets the pyramid be generated tile by tile with no seams and no state.
"""

from __future__ import annotations

import numpy as np

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX_Y = np.uint64(0xC2B2AE3D27D4EB4F)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


def hash_uniform(ix: np.ndarray, iy: np.ndarray, salt: int) -> np.ndarray:
    """Uniform floats in [0, 1) from integer lattice coordinates (splitmix64 finaliser).

    ``ix`` and ``iy`` broadcast; negative coordinates are fine (they wrap as uint64).
    """
    with np.errstate(over="ignore"):
        x, y = np.broadcast_arrays(np.asarray(ix, dtype=np.int64), np.asarray(iy, dtype=np.int64))
        h = x.astype(np.uint64) * _GOLDEN
        h ^= y.astype(np.uint64) * _MIX_Y
        h ^= np.uint64(salt & 0xFFFFFFFFFFFFFFFF)
        h ^= h >> np.uint64(30)
        h *= _M1
        h ^= h >> np.uint64(27)
        h *= _M2
        h ^= h >> np.uint64(31)
    return (h >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


def salt_for(seed: int, *parts: int) -> int:
    """A 64-bit salt from the phantom seed and small integers naming one noise field."""
    ix = np.array([seed & 0xFFFFFFFF], dtype=np.int64)
    iy = np.array([(seed >> 32) * 1_000_003 + sum(p * 7919**i for i, p in enumerate(parts))])
    return int(hash_uniform(ix, iy, 0x5EED)[0] * (1 << 53))


def _interpolation_matrix(coords: np.ndarray, scale: float) -> tuple[np.ndarray, int]:
    """Rows: smoothstep-weighted linear interpolation from lattice nodes to ``coords``.

    Returns the (len(coords), n_nodes) matrix and the index of the first lattice node.
    """
    u = coords / scale
    i0 = np.floor(u).astype(np.int64)
    first = int(i0.min())
    n_nodes = int(i0.max()) - first + 2
    t = u - i0
    w = t * t * (3.0 - 2.0 * t)
    m = np.zeros((coords.size, n_nodes), dtype=np.float32)
    rows = np.arange(coords.size)
    m[rows, i0 - first] = 1.0 - w
    m[rows, i0 - first + 1] = w
    return m, first


def value_noise(x_um: np.ndarray, y_um: np.ndarray, scale_um: float, salt: int) -> np.ndarray:
    """Smooth noise in [0, 1) on the grid ``y_um[:, None], x_um[None, :]``.

    Lattice values hashed from node indices are interpolated separably, which is two small
    matrix products per tile instead of four gathers per pixel. Where the lattice is finer
    than the pixel spacing the noise averages out within a pixel, so its mean (0.5) is
    returned rather than aliased values from a lattice of millions of nodes.
    """
    x = np.asarray(x_um, dtype=np.float64)
    y = np.asarray(y_um, dtype=np.float64)
    spacing = max(_spacing(x), _spacing(y))
    if scale_um < 1.5 * spacing:
        return np.full((y.size, x.size), 0.5, dtype=np.float32)
    mx, fx = _interpolation_matrix(x, scale_um)
    my, fy = _interpolation_matrix(y, scale_um)
    nodes_x = np.arange(fx, fx + mx.shape[1])
    nodes_y = np.arange(fy, fy + my.shape[1])
    lattice = hash_uniform(nodes_x[None, :], nodes_y[:, None], salt).astype(np.float32)
    return my @ lattice @ mx.T


def _spacing(coords: np.ndarray) -> float:
    return float(abs(coords[1] - coords[0])) if coords.size > 1 else 0.0


def fractal_noise(
    x_um: np.ndarray, y_um: np.ndarray, scale_um: float, octaves: int, salt: int
) -> np.ndarray:
    """Sum of ``octaves`` value-noise fields, each half the scale and amplitude of the last,
    normalised to [0, 1)."""
    total = np.zeros((np.size(y_um), np.size(x_um)), dtype=np.float32)
    amplitude, norm = 1.0, 0.0
    for octave in range(octaves):
        total += amplitude * value_noise(x_um, y_um, scale_um / 2**octave, salt + octave)
        norm += amplitude
        amplitude *= 0.5
    return total / norm
