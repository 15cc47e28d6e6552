"""Overlapping tiles and their seamless blending, for images too large to stylise at once.

Pure numpy, so the torch-free ONNX path tiles too. Each tile is weighted by a window that
rises smoothly (a raised cosine) across the overlap with each neighbour and is flat elsewhere;
the output is the weighted sum of the tiles divided by the sum of the weights. Because the
weights change gradually, two tiles that disagree slightly (a feed-forward network's instance
norm sees different statistics in each) fade into each other instead of meeting at a visible
edge.

Tiles form a grid and each window is a product of a row window and a column window, so the
sum of the weights is the outer product of two 1-D sums: no full-size weight map is needed,
only the float32 accumulator.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


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
    """Accumulates stylised tiles into one HxWx3 float32 image.

    Holds only the accumulator and two 1-D weight sums; the tiles are added one at a time.
    """

    def __init__(self, height: int, width: int, tile: int, overlap: int) -> None:
        self._rows = spans(height, tile, overlap)
        self._cols = spans(width, tile, overlap)
        self._sum = np.zeros((height, width, 3), dtype=np.float32)

    def tiles(self) -> list[Tile]:
        """Every tile, row by row; all have the same size."""
        return [Tile(rows, cols) for rows in self._rows for cols in self._cols]

    def add(self, tile: Tile, image: np.ndarray) -> None:
        weight = tile.rows.window[:, None, None] * tile.cols.window[None, :, None]
        self._sum[tile.region] += image * weight

    def result(self) -> np.ndarray:
        """The blended image (the accumulator itself, normalised in place: call once)."""
        self._sum /= _weight_sum(self._rows, len(self._sum))[:, None, None]
        self._sum /= _weight_sum(self._cols, self._sum.shape[1])[None, :, None]
        return self._sum


def _weight_sum(axis_spans: list[Span], length: int) -> np.ndarray:
    total = np.zeros(length, dtype=np.float32)
    for span in axis_spans:
        total[span.start : span.stop] += span.window
    return total
