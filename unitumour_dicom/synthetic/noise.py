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


def _interpolation_weights(
    coords: np.ndarray, scale: float
) -> tuple[np.ndarray, np.ndarray, int, int]:
    """Lattice node below each coordinate (relative to the first), the smoothstep weight of
    the node above, the first node's index and the number of nodes spanned."""
    u = coords / scale
    i0 = np.floor(u).astype(np.int64)
    first = int(i0.min())
    t = u - i0
    weight = (t * t * (3.0 - 2.0 * t)).astype(np.float32)
    return i0 - first, weight, first, int(i0.max()) - first + 2


def value_noise(
    x_um: np.ndarray, y_um: np.ndarray, scale_um: float | tuple[float, float], salt: int
) -> np.ndarray:
    """Smooth noise in [0, 1) on the grid ``y_um[:, None], x_um[None, :]``.

    Lattice values hashed from node indices are interpolated separably: first along y for
    each lattice column, then along x, a few passes over the tile and no BLAS (whose thread
    pool costs more than it saves on arrays this small). Where the lattice is finer than the
    pixel spacing the noise averages out within a pixel, so its mean (0.5) is returned
    rather than aliased values from a lattice of millions of nodes. ``scale_um`` may be a
    pair (x, y) for streaks along one axis.
    """
    x = np.asarray(x_um, dtype=np.float64)
    y = np.asarray(y_um, dtype=np.float64)
    scale_x, scale_y = scale_um if isinstance(scale_um, tuple) else (scale_um, scale_um)
    if min(scale_x, scale_y) < 1.5 * max(_spacing(x), _spacing(y)):
        return np.full((y.size, x.size), 0.5, dtype=np.float32)
    ix, wx, fx, nx = _interpolation_weights(x, scale_x)
    iy, wy, fy, ny = _interpolation_weights(y, scale_y)
    nodes_x = np.arange(fx, fx + nx)
    nodes_y = np.arange(fy, fy + ny)
    lattice = hash_uniform(nodes_x[None, :], nodes_y[:, None], salt).astype(np.float32)
    along_y = lattice[iy] + wy[:, None] * (lattice[iy + 1] - lattice[iy])
    return along_y[:, ix] + wx[None, :] * (along_y[:, ix + 1] - along_y[:, ix])


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
