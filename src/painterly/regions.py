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
from pathlib import Path

import numpy as np
from PIL import Image

from .config import MASK_SEED
from .errors import ImageError, PainterlyError, UsageError

MASK_SUFFIX = ".mask.png"  # an auto mask is written beside its output as <output stem>.mask.png
MAX_REGIONS = 16  # more distinct colours than this is a photo or a JPEG, not a mask
KEEP = "keep"  # in a region's place of a painting or model: this region keeps the photo
AUTO_PREFIX = "auto:"  # `--mask auto:K`: K regions found from the photo's colours and positions
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


def mask_target(target: str | os.PathLike) -> Path:
    """Where an output's auto mask is written: beside it, `<output stem>.mask.png`."""
    path = Path(target)
    return path.with_name(path.stem + MASK_SUFFIX)


def read_mask(path: str | os.PathLike, *, max_pixels: int | None = None) -> RegionMask:
    """A mask image file's regions (see the module's notes); a file that cannot be a mask is one line."""
    from .images import is_high_depth, read_array
    from .pixels import to_uint8
    from .provenance import describe_file

    if is_high_depth(path):  # 16-bit or float grey: each level its own region, not rounded together to 8 bits
        gray, _ = read_array(path, max_pixels=max_pixels, min_side=1)
        packed = gray[..., 0]
    else:
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
    if packed.dtype == np.float32:  # recorded as 8-bit greys (two close levels may share one)
        colors = tuple((int(level),) * 3 for level in to_uint8(values[order]))
    else:
        colors = tuple((int(v >> 16) & 255, int(v >> 8) & 255, int(v) & 255) for v in values[order])
    try:
        source = describe_file(path)
    except OSError as error:  # gone or unreadable since it was decoded
        raise ImageError(f"{path}: cannot read ({error.strerror or error})") from None
    return _checked(RegionMask(labels, colors, source), os.fspath(path))


def shown_mask(source: dict) -> str:
    """How a message names a mask from its record: its file, else the auto:K that finds it."""
    if "file" in source:
        return str(source["file"])
    return f"the auto:{source['auto']} mask" if "auto" in source else "the mask"


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
    """Mean over a window of 2·radius+1 along `axis`, edges extended: the part of a window past an edge
    counts that edge's value, so no padding is made and a radius wider than the image costs nothing more."""
    length = values.shape[axis]
    sums = np.cumsum(values, axis=axis, dtype=np.float32)
    sums = np.concatenate([np.zeros_like(np.take(sums, [0], axis=axis)), sums], axis=axis)
    index = np.arange(length)
    low, high = np.maximum(index - radius, 0), np.minimum(index + radius, length - 1)
    shape = [1] * values.ndim
    shape[axis] = length
    before = np.maximum(radius - index, 0).reshape(shape).astype(np.float32)  # window cells past the first
    after = np.maximum(index + radius - (length - 1), 0).reshape(shape).astype(np.float32)  # and the last
    inside = np.take(sums, high + 1, axis=axis) - np.take(sums, low, axis=axis)
    first, last = np.take(values, [0], axis=axis), np.take(values, [length - 1], axis=axis)
    return (inside + before * first + after * last) / np.float32(2 * radius + 1)


# --- issue 13: automatic masks, and one entry point for every front end ---

# Sixteen well-separated colours (Trubetskoy's list) for masks that have none of their own.
PALETTE: tuple[tuple[int, int, int], ...] = (
    (230, 25, 75), (60, 180, 75), (0, 130, 200), (255, 225, 25), (245, 130, 48), (145, 30, 180),
    (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212), (0, 128, 128), (220, 190, 255),
    (170, 110, 40), (128, 0, 0), (0, 0, 128), (128, 128, 128),
)
_AUTO_SIDE = 96  # auto_mask clusters a copy this long: a few thousand points, milliseconds
_AUTO_POSITION = 40.0  # Lab units a point's position adds across the image's long side: regions stay together
_AUTO_MIN_AREA = 0.01  # islands smaller than this share of the image join the region around them
_AUTO_RESTARTS = 3
_AUTO_ITERATIONS = 30


def parse_mask_spec(text: str) -> int | None:
    """K for "auto:K" (2..MAX_REGIONS), None for anything else (a mask file's path); "auto:x" is a UsageError."""
    if not isinstance(text, str) or not text.lower().startswith(AUTO_PREFIX):
        return None
    count = text[len(AUTO_PREFIX):].strip()
    if not (count.isascii() and count.isdigit()) or not 2 <= int(count) <= MAX_REGIONS:
        raise UsageError(f"--mask {text[:40]}: auto:K takes a number of regions K from 2 to {MAX_REGIONS}, "
                         f"e.g. auto:3")
    return int(count)


def auto_mask(rgb: np.ndarray, regions: int, *, seed: int = MASK_SEED) -> RegionMask:
    """K regions of a photo (HxWx3 uint8 or float in [0, 1]) from its colours and positions, weight-free
    (clustering), numbered in order of first appearance like a mask file's, so `write_mask` then
    `read_mask` gives the same labels.

    k-means (k-means++ starts, a few seeded restarts) on CIELAB colour plus the scaled pixel position,
    on a copy at most `_AUTO_SIDE` pixels long (the regions a mask needs are large, and it keeps this
    to milliseconds); islands under `_AUTO_MIN_AREA` of the image join their neighbours, so regions
    are mostly contiguous, and every region keeps at least its largest piece. The labels are then
    enlarged to the photo's size with smooth (bilinear, per region) edges.
    """
    if isinstance(regions, bool) or not isinstance(regions, int) or not 2 <= regions <= MAX_REGIONS:
        raise UsageError(f"auto_mask: the number of regions must be 2 to {MAX_REGIONS}, got {regions!r}")
    photo = _uint8_rgb(rgb)
    height, width = photo.shape[:2]
    scale = min(1.0, _AUTO_SIDE / max(height, width))
    small_size = (max(1, round(width * scale)), max(1, round(height * scale)))
    small = np.asarray(Image.fromarray(photo).resize(small_size, Image.Resampling.BOX)) if scale < 1 else photo
    if small.shape[0] * small.shape[1] < regions:
        raise UsageError(f"auto:{regions}: a {width}x{height} photo has fewer pixels than regions")
    features = _features(small)
    labels = _kmeans(features, regions, np.random.default_rng(seed)).reshape(small.shape[:2])
    labels = _without_islands(labels, regions, max(1, round(_AUTO_MIN_AREA * labels.size)))
    labels = _first_appearance(_enlarged(labels, regions, height, width))
    return _checked(RegionMask(labels, PALETTE[:regions], {"auto": regions, "seed": seed}), f"auto:{regions}")


def write_mask(mask: RegionMask, path: str | os.PathLike, *, protect=()) -> Path:
    """The mask as a PNG with one flat colour per region (its own colours, or a distinct palette),
    written atomically, for the user to edit and pass back as --mask.

    A mask file numbers its regions in the order they first appear, so only a mask already in that
    order (every mask from `read_mask` and `auto_mask`) can be written without giving the paintings
    to other regions; another order is refused rather than silently renumbered.
    """
    from .images import save_image

    shown = os.fspath(path)
    if Path(path).suffix.lower() != ".png":
        raise ImageError(f"{shown}: masks are written as PNG (.png); other formats blur or change their colours")
    if not np.array_equal(_first_appearance(mask.labels), mask.labels):
        raise UsageError(f"{shown}: a mask file numbers its regions in the order they first appear (row by row "
                         f"from the top left); this mask's labels are in another order, so the file would give "
                         f"the paintings to other regions")
    own = mask.colors
    colours = own if None not in own and len(set(own)) == len(own) else PALETTE[:mask.count]
    table = np.asarray(colours, dtype=np.uint8)
    return save_image(table[mask.labels], path, protect=protect)


def load_mask(spec: str | os.PathLike | np.ndarray | RegionMask, photo: np.ndarray | None = None, *,
              max_pixels: int | None = None, seed: int = MASK_SEED) -> RegionMask:
    """The one way a front end's mask becomes a RegionMask: a file path, "auto:K" (needs `photo`), an
    HxW label array or a RegionMask as it is."""
    if isinstance(spec, RegionMask):
        return spec
    if isinstance(spec, np.ndarray):
        return mask_from_labels(spec)
    if isinstance(spec, str):
        regions = parse_mask_spec(spec)
        if regions is not None:
            if photo is None:
                raise UsageError(f"--mask {spec}: an automatic mask is found from a photo, and none was given")
            return auto_mask(photo, regions, seed=seed)
    if not isinstance(spec, (str, os.PathLike)):
        raise UsageError(f"a mask is a file, auto:K, a label array or a RegionMask, not {type(spec).__name__}")
    shown = str(os.fspath(spec))
    if "\0" in shown:
        raise ImageError(f"{shown!r}: a file name cannot contain a NUL character")
    try:
        return read_mask(spec, max_pixels=max_pixels)
    except PainterlyError as error:
        if shown.isprintable():
            raise
        # a name with a newline or other control character, quoted so the message stays one line
        raise type(error)(str(error).replace(shown, repr(shown))) from None


def _uint8_rgb(rgb) -> np.ndarray:
    from .pixels import to_array, to_uint8

    array = rgb if isinstance(rgb, np.ndarray) and rgb.ndim == 3 and rgb.shape[2] == 3 else to_array(rgb)
    return np.ascontiguousarray(to_uint8(array) if array.dtype == np.uint8 else to_uint8(np.array(array, np.float32)))


def _features(rgb: np.ndarray) -> np.ndarray:
    """(H·W, 5) points: CIELAB (D65; distances there roughly follow seen differences) and scaled y, x."""
    srgb = rgb.reshape(-1, 3).astype(np.float64) / 255
    linear = np.where(srgb <= 0.04045, srgb / 12.92, ((srgb + 0.055) / 1.055) ** 2.4)
    xyz = linear @ np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]]).T
    xyz /= np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > (6 / 29) ** 3, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    lab = np.stack([116 * f[:, 1] - 16, 500 * (f[:, 0] - f[:, 1]), 200 * (f[:, 1] - f[:, 2])], axis=1)
    height, width = rgb.shape[:2]
    y, x = np.mgrid[0:height, 0:width].reshape(2, -1) * (_AUTO_POSITION / max(height, width, 2))
    return np.column_stack([lab, y, x])


def _kmeans(points: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Lloyd's k-means from k-means++ starts; the best of `_AUTO_RESTARTS` seeded runs."""
    best, best_cost = None, np.inf
    for _ in range(_AUTO_RESTARTS):
        centres = _kmeans_plus_plus(points, k, rng)
        for _ in range(_AUTO_ITERATIONS):
            labels, nearest = _nearest(points, centres)
            counts = np.bincount(labels, minlength=k)
            sums = np.stack([np.bincount(labels, points[:, d], minlength=k) for d in range(points.shape[1])], 1)
            moved = sums / np.maximum(counts, 1)[:, None]
            empty = counts == 0  # an emptied cluster restarts at the point farthest from its centre
            moved[empty] = points[nearest.argmax()]
            if np.allclose(moved, centres):
                break
            centres = moved
        labels, nearest = _nearest(points, centres)
        cost = nearest.sum()
        if cost < best_cost and len(np.unique(labels)) == k:
            best, best_cost = labels, cost
    if best is None:  # fewer distinct points than regions
        raise UsageError(f"auto:{k}: the photo has fewer than {k} distinguishable regions")
    return best


def _nearest(points: np.ndarray, centres: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each point's nearest centre and its squared distance (|p|² − 2p·c + |c|², one matrix product)."""
    distances = (points ** 2).sum(1)[:, None] - 2 * points @ centres.T + (centres ** 2).sum(1)[None]
    labels = distances.argmin(axis=1)
    return labels, np.maximum(distances[np.arange(len(points)), labels], 0)


def _kmeans_plus_plus(points: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    centres = [points[rng.integers(len(points))]]
    nearest = ((points - centres[0]) ** 2).sum(axis=1)
    for _ in range(1, k):
        total = nearest.sum()
        index = rng.choice(len(points), p=nearest / total) if total > 0 else rng.integers(len(points))
        centres.append(points[index])
        nearest = np.minimum(nearest, ((points - points[index]) ** 2).sum(axis=1))
    return np.array(centres)


def _without_islands(labels: np.ndarray, count: int, min_area: int) -> np.ndarray:
    """Pieces of a region smaller than `min_area` pixels take the label they border most; each region
    keeps its largest piece, so none disappears."""
    labels = labels.copy()
    for _ in range(4):  # islands inside islands: each pass merges the outermost small pieces
        pieces, sizes = _components(labels)
        label_of = np.empty(len(sizes), dtype=np.int64)
        label_of[pieces.reshape(-1)] = labels.reshape(-1)
        order = np.lexsort((-np.asarray(sizes), label_of))  # by label, largest piece first
        first = np.ones(len(order), dtype=bool)
        first[1:] = label_of[order[1:]] != label_of[order[:-1]]
        small = np.asarray(sizes) < min_area
        small[order[first]] = False  # each region's largest piece stays
        if not small.any():
            break
        # how often each piece touches each label, from every pair of 4-neighbours in different pieces
        touches = np.zeros(len(sizes) * count, dtype=np.int64)
        for here, there in ((pieces[1:], pieces[:-1]), (pieces[:, 1:], pieces[:, :-1])):
            other = here != there
            a, b = here[other], there[other]
            touches += np.bincount(np.concatenate([a * count + label_of[b], b * count + label_of[a]]),
                                   minlength=touches.size)
        target = touches.reshape(len(sizes), count).argmax(axis=1)
        merged = np.where(small & (touches.reshape(len(sizes), count).max(axis=1) > 0), target, label_of)
        labels = merged[pieces].astype(labels.dtype)
    return labels


def _components(labels: np.ndarray) -> tuple[np.ndarray, list[int]]:
    """4-connected pieces of equal label: (piece index per pixel, each piece's size)."""
    height, width = labels.shape
    flat = labels.reshape(-1)
    pieces = np.full(flat.shape, -1, dtype=np.int64)
    sizes: list[int] = []
    for start in range(flat.size):
        if pieces[start] >= 0:
            continue
        piece, label, stack, size = len(sizes), flat[start], [start], 0
        pieces[start] = piece
        while stack:
            at = stack.pop()
            size += 1
            row, col = divmod(at, width)
            for near, inside in ((at - width, row > 0), (at + width, row < height - 1),
                                 (at - 1, col > 0), (at + 1, col < width - 1)):
                if inside and pieces[near] < 0 and flat[near] == label:
                    pieces[near] = piece
                    stack.append(near)
        sizes.append(size)
    return pieces.reshape(labels.shape), sizes


def _grown(inside: np.ndarray) -> np.ndarray:
    grown = inside.copy()
    grown[1:] |= inside[:-1]
    grown[:-1] |= inside[1:]
    grown[:, 1:] |= inside[:, :-1]
    grown[:, :-1] |= inside[:, 1:]
    return grown


def _enlarged(labels: np.ndarray, count: int, height: int, width: int) -> np.ndarray:
    """Labels at (height, width): each region's 0/255 map resized bilinearly, the strongest wins
    (smooth edges, not the small copy's staircase), one region at a time (no K×H×W floats)."""
    if labels.shape == (height, width):
        return labels.astype(np.uint8)
    best = np.zeros((height, width), dtype=np.uint8)
    result = np.zeros((height, width), dtype=np.uint8)
    for region in range(count):
        plane = Image.fromarray(((labels == region) * 255).astype(np.uint8))
        strength = np.asarray(plane.resize((width, height), Image.Resampling.BILINEAR))
        stronger = strength > best
        best[stronger] = strength[stronger]
        result[stronger] = region
    return result


def _first_appearance(labels: np.ndarray) -> np.ndarray:
    """The same regions renumbered 0, 1, ... in the order they first appear row by row (a mask file's order)."""
    values, first, inverse = np.unique(labels.reshape(-1), return_index=True, return_inverse=True)
    rank = np.empty(len(values), dtype=np.uint8)
    rank[np.argsort(first)] = np.arange(len(values), dtype=np.uint8)
    return rank[inverse].reshape(labels.shape)
