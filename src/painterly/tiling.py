"""Overlapping tiles and their seamless blending, for images too large to stylise at once.

Numpy only (no torch), so the ONNX path tiles too. Each tile is weighted by a window that
rises smoothly (a raised cosine) across the overlap with each neighbour and is flat elsewhere;
the output is the weighted sum of the tiles divided by the sum of the weights. Because the
weights change gradually, two tiles that disagree slightly (a feed-forward network's instance
norm sees different statistics in each) fade into each other instead of meeting at a visible
edge.

Tiles form a grid and each window is a product of a row window and a column window, so the
sum of the weights is the outer product of two 1-D sums: no full-size weight map is needed.
Tiles arrive row by row, so the float32 accumulator only spans one row of tiles: rows that
no later tile reaches are finished and written out (as uint8, for 8-bit output) as soon as
their row of tiles is done.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .pixels import to_uint8


@dataclass(frozen=True)
class Span:
    """One tile's extent along an axis, and its blending window over that extent."""

    start: int
    stop: int
    window: np.ndarray  # float32, stop - start values in (0, 1]


@dataclass(frozen=True)
class Tile:
    rows: Span
    cols: Span

    @property
    def region(self) -> tuple[slice, slice]:
        """Index an HxW(xC) array with this to get the tile's pixels."""
        return slice(self.rows.start, self.rows.stop), slice(self.cols.start, self.cols.stop)


def spans(length: int, tile: int, overlap: int) -> list[Span]:
    """Tiles of `tile` pixels covering [0, length), overlapping by at least `overlap`.

    The tiles are spread evenly (the first at 0, the last ending at `length`), so every
    overlap is about the same instead of a last tile that overlaps its neighbour almost
    entirely. Each window ramps over the whole of its actual overlap with each neighbour.
    """
    if length <= tile:
        return [Span(0, length, np.ones(length, dtype=np.float32))]
    count = math.ceil((length - overlap) / (tile - overlap))
    starts = [round(i * (length - tile) / (count - 1)) for i in range(count)]
    result = []
    for i, start in enumerate(starts):
        before = starts[i - 1] + tile - start if i > 0 else 0
        after = start + tile - starts[i + 1] if i + 1 < count else 0
        result.append(Span(start, start + tile, _window(tile, before, after)))
    return result


def _window(size: int, before: int, after: int) -> np.ndarray:
    """Flat 1, ramping up over the first `before` pixels and down over the last `after`.

    Ramps that meet in a short tile multiply; the window stays positive everywhere.
    """
    window = np.ones(size, dtype=np.float32)
    window[:before] *= _ramp(before)
    window[size - after :] *= _ramp(after)[::-1]
    return window


def _ramp(length: int) -> np.ndarray:
    """A raised cosine sampled at pixel centres: never 0, and ramp[i] + ramp[-1 - i] == 1,
    so two neighbours' ramps over the same overlap sum to exactly 1."""
    centres = (np.arange(length, dtype=np.float64) + 0.5) / length
    return (0.5 - 0.5 * np.cos(np.pi * centres)).astype(np.float32)


class TileBlender:
    """Accumulates stylised tiles into one HxWx3 image of `dtype` (float32, or uint8 in 0..255).

    Tiles must be added in the order `tiles()` lists them, row by row. Only the current row
    of tiles is accumulated in float32 (tile height × width); once a row is complete, the
    image rows no later tile touches are normalised, written into the output and dropped.
    So a uint8 output never has a full-size float copy, and a float32 output is the only
    full-size array. Every pixel gets exactly the arithmetic a full-size accumulator gives it.
    """

    def __init__(self, height: int, width: int, tile: int, overlap: int, *, dtype: type = np.float32) -> None:
        if dtype not in (np.float32, np.uint8):
            raise ValueError(f"tiles blend into float32 or uint8, not {dtype}")
        self._rows = spans(height, tile, overlap)
        self._cols = spans(width, tile, overlap)
        self._row_sum = _weight_sum(self._rows, height)
        self._col_sum = _weight_sum(self._cols, width)
        self._output = np.empty((height, width, 3), dtype=dtype)
        band_height = self._rows[0].stop - self._rows[0].start
        self._band = np.zeros((band_height, width, 3), dtype=np.float32)  # image rows from the current row's start
        self._row = 0  # index of the row of tiles being accumulated
        self._added = 0  # tiles of that row added so far

    def tiles(self) -> list[Tile]:
        """Every tile, row by row; all have the same size."""
        return [Tile(rows, cols) for rows in self._rows for cols in self._cols]

    def add(self, tile: Tile, image: np.ndarray) -> None:
        """Add the next tile's stylised pixels (HxWx3 float in [0, 1])."""
        if not self._is_next(tile):
            raise ValueError("tiles must be added once each, row by row, in the order tiles() lists them")
        weight = tile.rows.window[:, None, None] * tile.cols.window[None, :, None]
        self._band[:, tile.cols.start : tile.cols.stop] += image * weight
        self._added += 1
        if self._added == len(self._cols):
            self._finish_row()

    def result(self) -> np.ndarray:
        """The blended image, once every tile has been added."""
        if self._row != len(self._rows):
            raise ValueError(f"{len(self._rows) - self._row} row(s) of tiles are still missing")
        return self._output

    def _is_next(self, tile: Tile) -> bool:
        """Rows are written out as soon as their row of tiles is complete, so order matters."""
        if self._row == len(self._rows):
            return False
        return tile.rows is self._rows[self._row] and tile.cols is self._cols[self._added]

    def _finish_row(self) -> None:
        """Write out the rows only this row of tiles and earlier ones cover; keep the overlap with the next."""
        start = self._rows[self._row].start
        self._row += 1
        self._added = 0
        done = self._rows[self._row].start if self._row < len(self._rows) else len(self._output)
        self._write(start, self._band[: done - start])
        kept = len(self._band) - (done - start)  # rows the next row of tiles overlaps
        self._band[:kept] = self._band[done - start :]
        self._band[kept:] = 0

    def _write(self, start: int, band: np.ndarray) -> None:
        """Normalise finished rows by the weights summed over them, in place, into the output."""
        rows = slice(start, start + len(band))
        band /= self._row_sum[rows, None, None]
        band /= self._col_sum[None, :, None]
        self._output[rows] = to_uint8(band) if self._output.dtype == np.uint8 else band


def _weight_sum(axis_spans: list[Span], length: int) -> np.ndarray:
    total = np.zeros(length, dtype=np.float32)
    for span in axis_spans:
        total[span.start : span.stop] += span.window
    return total
