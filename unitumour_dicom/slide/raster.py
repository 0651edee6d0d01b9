"""Slide-sized rasters on disk, read and written a band at a time (DESIGN rule 4).

A resection at the model's resolution is over a gigapixel: its probability map (uint8), tissue
and tumour masks (bool) are about 4.6 GB in memory. :class:`DiskRaster` keeps such a raster in
a scratch file instead. Every read returns an in-memory copy of just what was asked for, and
every write goes straight to the file, so what a process holds is the bands it is working on,
never the raster.

Why not a plain ``numpy.memmap``: pages of a mapping that have been touched stay in the
process's resident set until the mapping goes, so a pass over a memmapped raster ends with the
whole raster resident (counted in RSS, and dirty pages cannot even be dropped without a
write-back). Here contiguous rows go through ``preadv``/``pwritev``, and any other index is
served from a mapping of just the rows it spans, made for that one access and unmapped before
it returns; the page cache still speeds repeated reads, but it belongs to the kernel.

The file is created unlinked (``O_TMPFILE`` where the filesystem allows) in the directory
given, so it disappears when the raster is closed, garbage collected, or its process dies:
a crash cannot leave gigabytes behind. It starts sparse (all zeros, no blocks); all-zero
blocks written to rows that were never written are skipped, so a mostly-glass slide costs
disk in proportion to its tissue.
"""

from __future__ import annotations

import mmap
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

#: Pixels per band of the band-wise passes over a raster (about 4 M: 4 MB of a mask, 16 MB
#: of int32 labels). Fixed in pixels rather than rows, so a band does not grow with the
#: slide's width beyond one row.
BAND_PIXELS = 1 << 22
_IO_CHUNK = 1 << 30  # bytes per preadv/pwritev call (Linux moves at most ~2 GiB per call)


def band_rows(width: int, pixels: int = BAND_PIXELS, minimum: int = 1) -> int:
    """Rows per band so that a band of a raster ``width`` pixels wide holds about ``pixels``."""
    return max(minimum, pixels // max(width, 1))


def row_bands(height: int, rows: int) -> Iterator[tuple[int, int]]:
    """(start, stop) of consecutive bands of ``rows`` rows covering ``height`` rows."""
    for start in range(0, height, rows):
        yield start, min(start + rows, height)


class DiskRaster:
    """A 2-D array of ``shape`` and ``dtype`` kept in an unlinked scratch file.

    Indexing follows numpy's rules but always returns a copy (a view would have to keep a
    mapping alive): ``raster[a:b]`` reads rows a..b, ``raster[rows, c0:c1]`` gathers rows,
    ``raster[r, c]`` with index arrays picks points. ``raster[key] = value`` writes through;
    note that ``raster[a:b][mask] = v`` therefore changes only a copy (read, change, write
    back instead). ``np.asarray(raster)`` reads the whole raster: for tests and small rasters
    only; library code goes band by band (:meth:`bands`).
    """

    ndim = 2

    def __init__(
        self,
        shape: tuple[int, int],
        dtype: Any,
        directory: Path | str | None = None,
    ) -> None:
        rows, cols = (int(shape[0]), int(shape[1]))
        if rows < 0 or cols < 0:
            raise ValueError(f"a raster's shape must not be negative: {shape}")
        self.shape = (rows, cols)
        self.dtype = np.dtype(dtype)
        if self.dtype.hasobject:
            raise ValueError(f"a disk raster holds plain values, not {self.dtype}")
        self.row_bytes = cols * self.dtype.itemsize
        self.directory = None if directory is None else Path(directory)
        # held open for the raster's life: closing it is what frees the disk
        self._file = tempfile.TemporaryFile(dir=directory, prefix="raster-")  # noqa: SIM115
        self._fd = self._file.fileno()
        os.ftruncate(self._fd, rows * self.row_bytes)
        self._written = np.zeros(rows, bool)  # rows that may hold something but zeros

    # -- what numpy code asks of an array ------------------------------------------------
    @property
    def size(self) -> int:
        return self.shape[0] * self.shape[1]

    @property
    def itemsize(self) -> int:
        return self.dtype.itemsize

    @property
    def nbytes(self) -> int:
        """Bytes of the whole raster (on disk at most this; in memory never)."""
        return self.size * self.dtype.itemsize

    @property
    def disk_bytes(self) -> int:
        """Bytes of disk the file occupies now (its blocks; it starts sparse)."""
        return 0 if self.closed else os.fstat(self._fd).st_blocks * 512

    @property
    def closed(self) -> bool:
        return self._file.closed

    def __len__(self) -> int:
        return self.shape[0]

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"{self.disk_bytes:,} bytes on disk"
        return f"DiskRaster({self.shape}, {self.dtype}, {state})"

    def close(self) -> None:
        """Close the file: its disk space is freed at once."""
        self._file.close()

    def __enter__(self) -> DiskRaster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        whole = self.rows(0, self.shape[0])
        return whole if dtype is None else whole.astype(dtype, copy=False)

    # -- contiguous rows -----------------------------------------------------------------
    def rows(self, start: int, stop: int) -> np.ndarray:
        """Rows [start, stop) (clipped to the raster) as a new array."""
        start, stop = max(0, start), min(stop, self.shape[0])
        out = np.empty((max(stop - start, 0), self.shape[1]), self.dtype)
        if out.size and self._written[start:stop].any():
            self._pread(out, start * self.row_bytes)
        else:
            out.fill(0)
        return out

    def write_rows(self, start: int, block: np.ndarray) -> None:
        """Write whole rows: ``block`` (rows x width) becomes rows start.. of the raster."""
        block = np.ascontiguousarray(block, dtype=self.dtype)
        if block.ndim != 2 or block.shape[1] != self.shape[1]:
            raise ValueError(f"rows of width {self.shape[1]} expected, not {block.shape}")
        stop = start + block.shape[0]
        if start < 0 or stop > self.shape[0]:
            raise IndexError(f"rows {start}:{stop} outside a raster of {self.shape[0]} rows")
        if not block.size:
            return
        if not self._written[start:stop].any() and not block.any():
            return  # still zeros on disk: keep the file sparse
        self._pwrite(block, start * self.row_bytes)
        self._written[start:stop] = True

    def bands(self, rows: int | None = None) -> Iterator[tuple[int, int, np.ndarray]]:
        """(start, stop, rows start..stop) for consecutive bands of about
        :data:`BAND_PIXELS` pixels (or ``rows`` rows)."""
        step = rows or band_rows(self.shape[1])
        for start, stop in row_bands(self.shape[0], step):
            yield start, stop, self.rows(start, stop)

    def _pread(self, out: np.ndarray, offset: int) -> None:
        view = out.reshape(-1).view(np.uint8).data
        done = 0
        while done < len(view):
            n = os.preadv(self._fd, [view[done : done + _IO_CHUNK]], offset + done)
            if n <= 0:  # the file is never shorter than the raster: this is a bug
                raise OSError(f"short read from raster file at byte {offset + done}")
            done += n

    def _pwrite(self, block: np.ndarray, offset: int) -> None:
        view = block.reshape(-1).view(np.uint8).data
        done = 0
        while done < len(view):
            done += os.pwritev(self._fd, [view[done : done + _IO_CHUNK]], offset + done)

    # -- any other index: a mapping of the rows it spans, for this access only -----------
    def _span(self, key: Any) -> tuple[int, int, Any]:
        """Rows [r0, r1) that ``key`` touches and the key shifted to start at r0."""
        rk, rest = (key[0], key[1:]) if isinstance(key, tuple) else (key, ())
        if rk is Ellipsis:
            rk, rest = slice(None), ()
        height = self.shape[0]
        if isinstance(rk, slice):
            start, stop, step = rk.indices(height)
            if step != 1 or stop <= start:
                return 0, height, key  # rare: map everything (still only touched pages)
            return start, stop, (slice(0, stop - start), *rest)
        if isinstance(rk, (int, np.integer)):
            r = int(rk) + height if rk < 0 else int(rk)
            if not 0 <= r < height:
                raise IndexError(f"row {rk} outside a raster of {height} rows")
            return r, r + 1, (0, *rest)
        rows = np.asarray(rk)
        if rows.dtype == bool or rows.size == 0:
            return 0, height, key
        rows = np.where(rows < 0, rows + height, rows)
        r0, r1 = int(rows.min()), int(rows.max()) + 1
        if r0 < 0 or r1 > height:
            raise IndexError(f"rows {r0}:{r1} outside a raster of {height} rows")
        return r0, r1, (rows - r0, *rest)

    def _mapped(self, r0: int, r1: int, write: bool) -> tuple[mmap.mmap | None, int]:
        start = r0 * self.row_bytes
        length = (r1 - r0) * self.row_bytes
        if length == 0:
            return None, 0
        aligned = start - start % mmap.ALLOCATIONGRANULARITY
        access = mmap.ACCESS_WRITE if write else mmap.ACCESS_READ
        return mmap.mmap(self._fd, length + start - aligned, access=access, offset=aligned), (
            start - aligned
        )

    def __getitem__(self, key: Any) -> np.ndarray:
        rk = key[0] if isinstance(key, tuple) else key
        if isinstance(rk, slice) and rk.step in (None, 1) and _whole_rows(key):
            start, stop, _ = rk.indices(self.shape[0])
            return self.rows(start, stop)
        r0, r1, local = self._span(key)
        mapped, delta = (None, 0)
        if self._written[r0:r1].any():
            mapped, delta = self._mapped(r0, r1, write=False)
        if mapped is None:  # never written: zeros, without allocating the span
            zeros = np.broadcast_to(np.zeros((), self.dtype), (max(r1 - r0, 0), self.shape[1]))
            return np.array(zeros[local], copy=True)
        try:
            view = np.frombuffer(mapped, self.dtype, (r1 - r0) * self.shape[1], delta)
            picked = np.array(view.reshape(r1 - r0, self.shape[1])[local], copy=True)
            del view
        finally:
            mapped.close()
        return picked

    def __setitem__(self, key: Any, value: Any) -> None:
        rk = key[0] if isinstance(key, tuple) else key
        if isinstance(rk, slice) and rk.step in (None, 1) and _whole_rows(key):
            start, stop, _ = rk.indices(self.shape[0])
            value = np.asarray(value, self.dtype)
            if value.ndim == 2 and value.shape[0] == stop - start:
                self.write_rows(start, np.broadcast_to(value, (stop - start, self.shape[1])))
                return
            step = band_rows(self.shape[1])  # a scalar or a row: band by band, not whole
            for a, b in row_bands(stop - start, step):
                self.write_rows(start + a, np.broadcast_to(value, (b - a, self.shape[1])))
            return
        r0, r1, local = self._span(key)
        mapped, delta = self._mapped(r0, r1, write=True)
        if mapped is None:
            return
        try:
            view = np.frombuffer(mapped, self.dtype, (r1 - r0) * self.shape[1], delta)
            view.reshape(r1 - r0, self.shape[1])[local] = value
            del view
        finally:
            mapped.close()  # unmapped: the written pages now belong to the page cache only
        self._written[r0:r1] = True


def _whole_rows(key: Any) -> bool:
    """Whether ``key`` takes whole rows (a row index alone, or with ``:`` for columns)."""
    if not isinstance(key, tuple):
        return True
    return len(key) == 1 or (len(key) == 2 and isinstance(key[1], slice) and key[1] == slice(None))


def read_rows(array: np.ndarray | DiskRaster, start: int, stop: int) -> np.ndarray:
    """Rows [start, stop) of an array (a view: changes reach it) or of a raster (a copy:
    write it back with :func:`write_rows`)."""
    if isinstance(array, DiskRaster):
        return array.rows(start, stop)
    return array[start:stop]


def write_rows(array: np.ndarray | DiskRaster, start: int, block: np.ndarray) -> None:
    """Store ``block`` as rows start.. of an array or raster (nothing to do when ``block`` is
    already the array's own view of those rows)."""
    if isinstance(array, DiskRaster):
        array.write_rows(start, block)
        return
    target = array[start : start + block.shape[0]]
    if not np.shares_memory(target, block):
        target[...] = block


def empty_like(array: np.ndarray | DiskRaster, dtype: Any) -> np.ndarray | DiskRaster:
    """A raster of the same shape on the same medium: a zeroed scratch file next to a
    :class:`DiskRaster`, an uninitialised array next to an array."""
    if isinstance(array, DiskRaster):
        return DiskRaster(array.shape, dtype, array.directory)
    return np.empty(array.shape, dtype)


def any_nonzero(array: np.ndarray | DiskRaster) -> bool:
    """Whether any value of a raster or array is not 0, a band at a time."""
    if isinstance(array, DiskRaster):
        return any(band.any() for _, _, band in array.bands())
    return bool(np.asarray(array).any())


def count_nonzero(array: np.ndarray | DiskRaster) -> int:
    """Values that are not 0, a band at a time."""
    if isinstance(array, DiskRaster):
        return sum(int(np.count_nonzero(band)) for _, _, band in array.bands())
    return int(np.count_nonzero(array))


def total(array: np.ndarray | DiskRaster) -> float:
    """Sum of all values (float64), a band at a time."""
    if isinstance(array, DiskRaster):
        return float(sum(float(band.sum(dtype=np.float64)) for _, _, band in array.bands()))
    return float(np.asarray(array).sum(dtype=np.float64))
