"""Masks for spatial control (Huang & Belongie 2017, Figure 8): which painting each part of a photo takes.

A mask file is an image with one flat colour per region. Regions are numbered in the order their
colours first appear reading the mask row by row from the top-left pixel, and region k takes the
k-th `--style` (a literal `keep` there keeps the photo in that region). A mask given as an integer
array (the Python API) numbers its regions by value instead: label k takes styles[k].

The mask is resized to each image with nearest-neighbour sampling (a folder of photos of other sizes
shares one mask), then each region's edge is feathered over `feather` pixels (two box blurs) and the
weights are normalised to sum to 1 at every pixel. Torch-free, like the rest of the numpy side.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from .errors import ImageError, UsageError

MAX_REGIONS = 16  # more distinct colours than this is a photo or a JPEG, not a mask
_CACHED_SIZES = 4  # weights kept for this many image sizes (a folder's photos, a clip's frames)


@dataclass(frozen=True)
class RegionMask:
    """Region labels (HxW uint8, 0..count-1), each region's colour (None for an array mask) and the file."""

    labels: np.ndarray
    colors: tuple[tuple[int, int, int] | None, ...]
    source: dict = field(default_factory=dict)  # {"file", "sha256"} of a mask file
    _cache: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def count(self) -> int:
        return len(self.colors)

    def describe(self, feather: int) -> dict:
        """The record an output keeps: the file, its regions' colours in order, the feathering."""
        colours = [None if colour is None else "#{:02x}{:02x}{:02x}".format(*colour) for colour in self.colors]
        return {**self.source, "regions": colours, "feather": feather}

    def weights(self, height: int, width: int, feather: int) -> np.ndarray:
        """(count, height, width) float32 weights summing to 1 at every pixel, for an image of that size."""
        key = (height, width, feather)
        if key not in self._cache:
            if len(self._cache) >= _CACHED_SIZES:
                self._cache.pop(next(iter(self._cache)))
            labels = self.labels
            if labels.shape != (height, width):
                labels = np.asarray(Image.fromarray(labels).resize((width, height), Image.Resampling.NEAREST))
            one_hot = (labels[None] == np.arange(self.count, dtype=np.uint8)[:, None, None]).astype(np.float32)
            if feather > 0:
                radius = max(1, feather // 2)  # two box blurs of this radius fade over about `feather` pixels
                for axis in (1, 2):
                    one_hot = _box_blur(_box_blur(one_hot, radius, axis), radius, axis)
                one_hot /= one_hot.sum(axis=0, keepdims=True)
            self._cache[key] = one_hot
        return self._cache[key]


def read_mask(path: str | os.PathLike, *, max_pixels: int | None = None) -> RegionMask:
    """A mask image file's regions (see the module's notes); a file that cannot be a mask is one line."""
    from .images import read_array
    from .provenance import describe_file

    rgb, _ = read_array(path, max_pixels=max_pixels, min_side=1, dtype=np.uint8)
    packed = (rgb[..., 0].astype(np.uint32) << 16) | (rgb[..., 1].astype(np.uint32) << 8) | rgb[..., 2]
    values, first, inverse = np.unique(packed.reshape(-1), return_index=True, return_inverse=True)
    if len(values) > MAX_REGIONS:
        raise ImageError(f"{path}: a mask has one flat colour per region, and this image has {len(values)} colours "
                         f"(at most {MAX_REGIONS}); save masks as PNG, as JPEG blurs their edges into new colours")
    order = np.argsort(first)  # regions in the order their colours first appear, row by row
    rank = np.empty(len(values), dtype=np.uint8)
    rank[order] = np.arange(len(values), dtype=np.uint8)
    labels = rank[inverse].reshape(packed.shape)
    colors = tuple((int(v >> 16) & 255, int(v >> 8) & 255, int(v) & 255) for v in values[order])
    try:
        source = describe_file(path)
    except OSError as error:  # gone or unreadable since it was decoded
        raise ImageError(f"{path}: cannot read ({error.strerror or error})") from None
    return _checked(RegionMask(labels, colors, source), os.fspath(path))


def mask_from_labels(labels: np.ndarray, *, shown: str = "mask") -> RegionMask:
    """A mask from an HxW integer array whose value k marks region k (styles[k])."""
    array = np.asarray(labels)
    if array.ndim != 2 or not np.issubdtype(array.dtype, np.integer) or array.size == 0:
        raise UsageError(f"{shown} must be an HxW array of integer region labels, not {array.dtype} {array.shape}")
    if array.min() < 0 or array.max() >= MAX_REGIONS:
        raise UsageError(f"{shown} labels must be 0 to {MAX_REGIONS - 1}, not {array.min()} to {array.max()}")
    count = int(array.max()) + 1
    return _checked(RegionMask(array.astype(np.uint8), (None,) * count), shown)


def _checked(mask: RegionMask, shown: str) -> RegionMask:
    if mask.count < 2:
        raise UsageError(f"{shown}: the mask has a single region; without --mask the painting covers the whole image")
    return mask


def _box_blur(values: np.ndarray, radius: int, axis: int) -> np.ndarray:
    """Mean over a window of 2·radius+1 along `axis`, edges extended."""
    pad = [(0, 0)] * values.ndim
    pad[axis] = (radius + 1, radius)
    sums = np.cumsum(np.pad(values, pad, mode="edge"), axis=axis, dtype=np.float32)
    length = values.shape[axis]
    upper = np.take(sums, np.arange(2 * radius + 1, 2 * radius + 1 + length), axis=axis)
    lower = np.take(sums, np.arange(0, length), axis=axis)
    return (upper - lower) / (2 * radius + 1)
