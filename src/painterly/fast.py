"""`FastStylizer`: run a fast-style network (Johnson et al. 2016) on images of any size, or an
arbitrary-style one (AdaIN, Huang & Belongie 2017) with any painting given at run time.

Two backends run the same network (`runtimes.py`): PyTorch (CPU, CUDA, MPS) and ONNX Runtime.
A `.onnx` model runs without torch installed: everything around the network (padding, tiling,
blending, colour) is numpy.

The network needs sides that are a multiple of its runtime's `size_multiple` (4, or 8 for the
standard AdaIN network), so each image is reflection-padded up to one and the output cropped
back: the output always has exactly the input's size. Large images can be stylised in
overlapping tiles (`tiling.py`) so that memory stays bounded by the input and output plus one
batch of tiles and one row of tiles' blend. 8-bit arrays stay 8-bit outside the network: each
tile (or image) is made float32 just before it runs, and the output is rounded back to uint8 as
it is finished.

With `config.stroke_size` an image larger than it is painted at that long side (the preview's look)
and brought back to full size with the photo's detail (`strokes.py`); the working image takes the
same path as any other, tiles included.

Every setting comes from one `ApplyConfig`; `describe()` is the one record of them that every
output stores.

An arbitrary-style model paints with a painting's bottleneck statistics: `style_statistics` measures
a painting once (resized to `config.style_size`, cropped to the size multiple: padding would add
reflected pixels to what is measured), and `with_styles` binds one or several paintings (blended),
or one per region of a mask, to a stylizer that then runs through the same padding, tiling,
batching and colour as a Johnson model. With `preserve_color="histogram"` each painting is
recoloured toward each photo before it is measured (the paper's colour control): one encoder pass
of every painting per photo, and refused for videos, whose frames would each repaint the style.
With a mask an image is stylised whole (its regions must line up with the features), never tiled.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from . import __version__, color, strokes, tiling
from .config import AUTO_TILE, AUTO_TILE_ABOVE, ApplyConfig
from .errors import ImageError, ModelFileError, UsageError
from .events import Callback, ignore
from .images import check_pixels
from .pixels import resize_long_side, to_array, to_float32, to_tensor, to_uint8
from .provenance import describe_file
from .region_models import Mask, RegionModels, bind_regions, check_count, mask_for, mask_request
from .regions import KEEP, RegionMask
from .runtimes import Backend, Region, StyleInput, open_backend
from .style_stats import StyleStatistics, blend_statistics, normalised_weights
from .zoo import resolve_model

if TYPE_CHECKING:
    import torch

# A batch of tiles holds at most this many pixels: at a megapixel the network is already as fast
# per pixel as it gets, and each tile more in flight costs its activations' memory (~1 GiB at 1024² in fp32).
TILE_BATCH_PIXELS = 1024 * 1024
# The settings that choose the loaded network; the others can change without loading it again.
_LOADING_SETTINGS = ("backend", "device", "precision")
# The settings a bound painting's statistics depend on: changing one binds the paintings again.
_STYLE_SETTINGS = ("style_size", "preserve_color", "style_blend")
# With a mask an image is stylised whole; above this many pixels (where tiling would begin) it is refused.
MASK_MAX_PIXELS = AUTO_TILE_ABOVE
_JOHNSON_HISTOGRAM = ("preserve_color 'histogram' recolours the style image before stylising, but a fast model "
                      "has already learned its style; use 'luminance'")


@dataclass(frozen=True, eq=False)
class Painting:
    """A painting for an arbitrary-style model: its pixels (HxWx3, as read) and where they came from
    ({"file", "sha256"}: what every output records). Kept whole, so that `preserve_color="histogram"`
    can recolour it toward each photo."""

    image: np.ndarray
    source: dict = field(default_factory=dict)


Style = StyleStatistics | Painting | None  # what `with_styles` takes for each painting; None: keep the photo


@dataclass(frozen=True)
class _Binding:
    """The paintings a stylizer paints with, as `with_styles` was asked, and what was measured of them."""

    request: tuple[tuple[Style, ...], tuple[float, ...] | None, Any]  # styles, blend, mask: to bind again
    styles: tuple[Style, ...]
    statistics: tuple[StyleStatistics | None, ...]  # measured once (None: keep, or measured per photo)
    weights: tuple[float, ...] | None  # blend weights summing to 1; None with a mask
    mask: Mask | None  # a RegionMask, or an AutoMask found from each photo
    per_photo: bool  # preserve_color "histogram": the paintings are recoloured and measured for each photo
    blended: tuple[np.ndarray, np.ndarray] | None  # the blend's (C,) mean and std, when the same for every photo


class FastStylizer:
    """A fast-style model loaded once, applied to arrays, tensors and batches with `config`'s settings.

    `config.tile=N` stylises images whose long side exceeds N in N×N tiles overlapping by
    `config.tile_overlap` pixels, blended with smooth weights; `tile=0` never tiles; `tile=None`
    (the default) tiles images of over AUTO_TILE_ABOVE pixels in AUTO_TILE tiles, so memory
    stays bounded whatever the input. Tiled output differs slightly from whole-image output:
    the network's instance norms normalise each tile by its own statistics, not the whole
    image's. The generous default overlap keeps that difference gradual, so no seam shows.
    `config.batch_size` images (or tiles, up to TILE_BATCH_PIXELS) of the same size run
    through the network together.
    """

    def __init__(self, model: str | Path, config: ApplyConfig | None = None, *, callback: Callback = ignore) -> None:
        """`model` is a model file, a catalogue name (pulled first if missing, its download reported to
        `callback`) or an hf:// reference: whatever `zoo.resolve_model` takes."""
        self.config = config if config is not None else ApplyConfig()
        self.model_path = resolve_model(model, callback=callback)
        self.runtime: Backend = open_backend(self.model_path, self.config, callback=callback)  # a bf16 warning
        self._model_record: dict | None = None
        self._binding: _Binding | None = None
        self._regions: RegionModels | None = None  # with_regions: a Johnson model per mask region
        self._check_color(self.config)

    def with_config(self, config: ApplyConfig) -> FastStylizer:
        """This model with other settings; the loaded network is shared unless backend, device or
        precision change (the web UI loads each model once and serves every request's settings).
        Bound paintings stay bound, measured again if a setting they depend on changed."""
        self._check_color(config)
        if any(getattr(config, name) != getattr(self.config, name) for name in _LOADING_SETTINGS):
            other = FastStylizer(self.model_path, config)
        else:
            other = copy.copy(self)
            other.config = config
            other._binding = None
        if self._regions is not None:
            other._regions = self._regions.with_config(config)
        binding = self._binding
        if binding is None:
            return other
        if other.runtime is self.runtime and all(getattr(config, name) == getattr(self.config, name)
                                                 for name in _STYLE_SETTINGS):
            other._binding = binding
            return other
        styles, blend, mask = binding.request
        return other.with_styles(styles, blend=blend, mask=mask)

    @property
    def is_arbitrary(self) -> bool:
        """Whether the model is an arbitrary-style (AdaIN) one, which paints with a painting given at run time."""
        return self.runtime.is_arbitrary

    @property
    def size_multiple(self) -> int:
        """Image sides the network takes are multiples of this; others are padded (and cropped back)."""
        return self.runtime.size_multiple

    @property
    def has_style(self) -> bool:
        """Whether paintings are bound (`with_styles`): an arbitrary-style model can then stylise."""
        return self._binding is not None

    def input_files(self) -> list[str]:
        """The files the bound paintings and mask were read from: outputs must never overwrite them."""
        if self._regions is not None:
            return self._regions.input_files()
        if self._binding is None:
            return []
        sources = [style.source for style in self._binding.styles if style is not None]
        if self._binding.mask is not None:
            sources.append(self._binding.mask.source)
        return [str(source["file"]) for source in sources if isinstance(source.get("file"), str)]

    def check_style(self) -> None:
        """Refuse, before any work, an arbitrary-style model that has no painting to paint with."""
        if self.is_arbitrary and self._binding is None:
            raise UsageError(f"{self.model_path}: an arbitrary-style (AdaIN) model needs a painting: give --style")

    def read_painting(self, path: str | Path) -> Painting:
        """A painting file, read as images are (any failure is one line naming it), with its SHA-256."""
        self._check_arbitrary()
        image = _read_uint8(path, self.config.max_pixels)
        try:
            source = describe_file(path)
        except OSError as error:  # gone or unreadable since it was decoded
            raise ImageError(f"{path}: cannot read ({error.strerror or error})") from None
        return Painting(image, source)

    def style_statistics(self, painting: np.ndarray | Painting, *, source: dict | None = None) -> StyleStatistics:
        """A painting's bottleneck mean and std, measured once and reusable for any number of photos.

        `painting` is an HxWx3 array (uint8, or float in [0, 1]) or a `Painting`; it is resized to
        `config.style_size` (long side) and cropped to the network's size multiple. `source` (e.g. the
        file's name and SHA-256) is recorded in every output made with it.
        """
        self._check_arbitrary()
        if isinstance(painting, Painting):
            source, painting = {**painting.source, **(source or {})}, painting.image
        source = dict(source or {})
        prepared = self._prepare_painting(painting, source)
        mean, std = self.runtime.statistics(prepared.transpose(2, 0, 1)[None].copy())
        height, width = prepared.shape[:2]
        return StyleStatistics(mean[0], std[0], {**source, "measured_at": [width, height]})

    def with_styles(self, styles: Sequence[Style], *, blend: Sequence[float] | None = None,
                    mask: np.ndarray | str | Path | Mask | None = None) -> FastStylizer:
        """This arbitrary-style model bound to paintings: each a `StyleStatistics` (measured already), a
        `Painting`, or None (keep the photo; mask regions only). The loaded network is shared.

        Several paintings are blended (`blend`, else `config.style_blend`, else equal weights): AdaIN with
        the blended statistics is exactly the interpolation of the paintings' outputs. With `mask` (a
        mask image file, "auto:K", an HxW integer array of region labels, or a `RegionMask`) region k takes
        styles[k] instead (see `regions.py` for how a file's regions are numbered); a mask and a blend
        exclude each other. Paintings are measured here, once, unless `preserve_color` is "histogram".
        """
        self._check_arbitrary()
        styles = tuple(styles)
        if not styles:
            raise UsageError(f"{self.model_path}: an arbitrary-style (AdaIN) model needs a painting: give --style")
        for style in styles:
            if style is not None and not isinstance(style, (StyleStatistics, Painting)):
                raise TypeError(f"a style is a StyleStatistics, a Painting or None, not {type(style).__name__}")
        request = (styles, None if blend is None else tuple(blend), mask)
        weights_given = blend if blend is not None else self.config.style_blend
        region_mask = self._region_mask(mask, len(styles)) if mask is not None else None
        if region_mask is None and any(style is None for style in styles):
            raise UsageError(f"--style {KEEP} keeps the photo in a --mask region; without a mask it needs a painting")
        if region_mask is not None and all(style is None for style in styles):
            raise UsageError(f"every region of the mask is {KEEP!r}: there is nothing to paint")
        if region_mask is not None and weights_given is not None:
            raise UsageError("--style-blend blends paintings over the whole image; with --mask each region takes "
                             "its own --style")
        weights = None if region_mask is not None else tuple(normalised_weights(weights_given, len(styles)))
        per_photo = self.config.preserve_color == "histogram"
        if per_photo and any(isinstance(style, StyleStatistics) for style in styles):
            raise UsageError("preserve_color 'histogram' recolours each painting toward each photo before measuring "
                             "it: give the paintings (Painting), not their statistics")
        statistics = tuple(None if style is None or per_photo else self._measured(style) for style in styles)
        expected = self._style_channels()
        if any(s is not None and s.channels != expected for s in statistics):
            raise UsageError(f"these style statistics were measured with another model: {self.model_path} takes "
                             f"{expected} channels")
        blended = None
        if region_mask is None and not per_photo:
            mix = blend_statistics(cast(list[StyleStatistics], list(statistics)), weights)
            blended = (mix.mean, mix.std)
        other = copy.copy(self)
        other._binding = _Binding(request, styles, statistics, weights, region_mask, per_photo, blended)
        return other

    def with_regions(self, mask: np.ndarray | str | Path | Mask, models: Sequence[FastStylizer | str | Path | None],
                     *, callback: Callback = ignore) -> FastStylizer:
        """This Johnson model with region k of `mask` (a mask file, "auto:K", a label array, a RegionMask)
        stylised by models[k] instead: a stylizer, a model file or catalogue name, or None to keep the photo
        (see `region_models.py`). Every model takes this one's settings; the result stylises as any other."""
        return bind_regions(self, mask, models, callback=callback)

    @property
    def mask(self) -> Mask | None:
        """The bound mask (`with_styles`, `with_regions`): a RegionMask, an AutoMask found from each photo, or None."""
        if self._regions is not None:
            return self._regions.mask
        return None if self._binding is None else self._binding.mask

    def mask_for(self, image: np.ndarray) -> RegionMask | None:
        """The regions an image (as `prepare` makes it) is stylised with: the mask, or the photo's auto mask."""
        mask = self.mask
        return None if mask is None else mask_for(mask, self.prepare(image))

    def with_mask(self, mask: Mask) -> FastStylizer:
        """The same paintings or region models with another mask of as many regions (`apply` binds each
        photo's auto mask, so that the mask written beside the output is the one used)."""
        other = copy.copy(self)
        if self._regions is not None:
            other._regions = self._regions.with_mask(mask)
        elif self._binding is not None and self._binding.mask is not None:
            check_count(mask, self._binding.mask.count, "paintings bound")
            styles, blend, _ = self._binding.request
            other._binding = replace(self._binding, request=(styles, blend, mask), mask=mask)
        else:
            raise UsageError("with_mask: this stylizer has no mask regions (with_styles or with_regions) to re-mask")
        return other

    @property
    def metadata(self) -> dict:
        """The model file's metadata (style, training settings, steps…); may be empty for .onnx."""
        return self.runtime.metadata

    @property
    def backend(self) -> str:
        """"torch" or "onnx"."""
        return self.runtime.name

    @property
    def device(self) -> str:
        """Where the network runs: "cpu", "cuda" or "mps"."""
        return self.runtime.device

    @property
    def precision(self) -> str:
        """What the network computes in: "fp32", or "bf16"/"fp16" autocast (torch backend)."""
        return self.runtime.precision

    def stylize(self, image: Any) -> Any:
        """Stylise one image, returned as the same kind: an HxWx3 array (float in [0, 1], or
        uint8) or a (1,3,H,W)/(3,H,W) tensor in [0, 1].

        A uint8 array comes back uint8 and is float only a batch of tiles (or images) at a
        time, on its way through the network: a quarter of float32's memory for large images.
        A float array comes back float32. `config.size` first resizes the long side; otherwise
        the output has exactly the input's size. `config.strength` blends with the original
        (0 = unchanged, 1 = fully stylised); `preserve_color="luminance"` keeps the original's
        colours and takes the style's light.
        """
        array = image if isinstance(image, np.ndarray) else to_array(image)
        [styled] = self.stylize_batch([array])
        if isinstance(image, np.ndarray):
            return styled
        return _like_tensor(styled, image)

    def stylize_batch(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Stylise several HxWx3 arrays (uint8, or float in [0, 1]), each returned as `stylize` would.

        Those of equal size share network batches.
        """
        self.check_style()
        if self._regions is not None:  # a Johnson model per region: each runs as below, then they are blended
            return self._regions.stylize_batch(self, images)
        if self.config.stroke_size is not None:
            return self._stylize_at_stroke_size(images)
        finish = _Finish(self.config.strength, self.config.preserve_color)
        dtypes = [_output_dtype(image) for image in images]
        arrays = [self.prepare(image) for image in images]
        results: list[np.ndarray | None] = [None] * len(arrays)
        if self._binding is not None and self._binding.mask is not None:
            for index, array in enumerate(arrays):
                styled = self._stylize_regions(array, finish)
                results[index] = to_uint8(styled) if dtypes[index] == np.uint8 else styled
            return cast(list[np.ndarray], results)
        styles = [self._style_for(array) for array in arrays]
        same_size: dict[tuple[int, ...], list[int]] = {}
        for index, array in enumerate(arrays):
            if self.is_tiled(*array.shape[:2]):
                results[index] = self._stylize_tiled(array, finish, dtypes[index], styles[index])
            else:
                same_size.setdefault(array.shape, []).append(index)
        for indices in same_size.values():
            chosen = [arrays[i] for i in indices]
            for index, styled in zip(indices, self._stylize_same_size(chosen, finish,
                                                                      styles=[styles[i] for i in indices])):
                results[index] = to_uint8(styled) if dtypes[index] == np.uint8 else styled
        return cast(list[np.ndarray], results)  # every index is filled above

    def prepare(self, image: np.ndarray) -> np.ndarray:
        """An HxWx3 array as the network takes it: uint8 or float32, resized to `config.size`.

        Never a copy when none is needed, and a prepared image is prepared already, so a caller
        can resize early (and hold the small image) and still hand it to `stylize_batch`.
        Resizing works in float32, so a resized uint8 image is stylised from the resized floats
        (no second rounding to 8 bits before the network). A size over the pixel limit is
        refused before anything is resized.
        """
        array = np.asarray(image)
        if array.ndim != 3 or array.shape[2] != 3 or not _is_pixel_dtype(array.dtype):
            raise ValueError(f"expected an HxWx3 uint8 array or float array in [0, 1], got {array.dtype} {array.shape}")
        if self.config.size is not None:
            self._check_resized("image", *array.shape[:2])
            return resize_long_side(to_float32(array), self.config.size)
        return array if array.dtype == np.uint8 else array.astype(np.float32, copy=False)

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        """(height, width) of the output for an input of this size: resized by `config.size`, or the same."""
        if self.config.size is None:
            return height, width
        scale = self.config.size / max(height, width)  # as pixels.resize_long_side computes it
        return max(1, round(height * scale)), max(1, round(width * scale))

    def check_size(self, shown: str, height: int, width: int) -> None:
        """Refuse an input (an image, a frame) of this size, or the size `config.size` makes it, when
        either is over the pixel limit (or, with a mask, over what is stylised whole); `shown` names the
        input. Nothing is decoded or resized yet."""
        check_pixels(shown, width, height, self.config.max_pixels)
        self._check_resized(shown, height, width)
        if self._binding is not None and self._binding.mask is not None:
            new_height, new_width = self.output_size(height, width)
            # With --stroke-size the mask is used at the working size the network paints at, not the output's.
            working = strokes.working_shape(new_height, new_width, self.config.stroke_size)
            if working is not None:
                new_height, new_width = working
            if new_height * new_width > MASK_MAX_PIXELS:
                at = "" if working is None else f" (--stroke-size {self.config.stroke_size}'s working size)"
                give = "--size" if working is None else "a smaller --stroke-size"
                raise ImageError(f"{shown}: {new_width}x{new_height} pixels{at} is more than --mask stylises "
                                 f"({MASK_MAX_PIXELS:,}: a masked image is never tiled, so that its regions line "
                                 f"up); give {give}")

    def describe(self, *, input: dict | None = None) -> dict:
        """What every output records about how it was made: painterly's version, the model, the
        settings under "config" (`config`, with what "auto" resolved to; the key a Gatys output uses
        too) and, when given, the input."""
        if self._model_record is None:  # hashed once: a model file can be large
            model = describe_file(self.model_path)
            # A catalogue model's file records where it came from (zoo.py): so does every output made with it.
            model.update({key: self.metadata[key] for key in ("style", "steps", "provenance") if key in self.metadata})
            self._model_record = model
        settings = {**self.config.to_dict(), "tile": "auto" if self.config.tile is None else self.config.tile,
                    "backend": self.backend, "device": self.device, "precision": self.precision}
        if self.config.stroke_size is not None:
            settings["stroke_upsampling"] = strokes.METHOD
        if not self.is_arbitrary:  # a Johnson model has no painting: the arbitrary-style settings do not apply
            for name in ("alpha", "style_size", "style_blend", "mask_feather"):
                settings.pop(name)
        record = {"painterly": __version__, "method": "adain" if self.is_arbitrary else "fast",
                  "model": dict(self._model_record), "config": settings}
        if self._binding is not None:
            record.update(self._describe_styles(self._binding))
        if self._regions is not None:
            record.update(self._regions.describe(self.config.mask_feather))
        if input is not None:
            record["input"] = input
        return record

    def tile_for(self, height: int, width: int) -> int | None:
        """The tile side an image of this size (after any resizing) is stylised in, or None for whole."""
        if self._binding is not None and self._binding.mask is not None:
            return None  # the regions must line up with the whole image's features
        tile = self.config.tile
        if tile is None:
            return AUTO_TILE if height * width > AUTO_TILE_ABOVE and max(height, width) > AUTO_TILE else None
        return tile if 0 < tile < max(height, width) else None

    def is_tiled(self, height: int, width: int) -> bool:
        """Whether an image of this size (after any resizing) is stylised in tiles."""
        return self.tile_for(height, width) is not None

    def _check_resized(self, shown: str, height: int, width: int) -> None:
        if self.config.size is not None:
            new_height, new_width = self.output_size(height, width)
            check_pixels(f"{shown} at --size {self.config.size}", new_width, new_height, self.config.max_pixels)

    def _stylize_at_stroke_size(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        """`config.stroke_size`: an image (after `config.size`) larger than it is painted at that long side
        and brought back to full size with the photo's detail (strokes.py); a smaller one as it is. The
        working image takes the usual path, tiled if it is large itself; finishing (colour, strength) is
        done at the working size, against the photo as the network saw it."""
        painter = self.with_config(self.config.replace(stroke_size=None, size=None))  # shares the network
        full = [self.prepare(image) for image in images]
        shapes = [strokes.working_shape(array.shape[0], array.shape[1], self.config.stroke_size) for array in full]
        working = [array if shape is None else strokes.downscale(array, *shape) for array, shape in zip(full, shapes)]
        results = []
        for image, array, work, styled in zip(images, full, working, painter.stylize_batch(working)):
            dtype = _output_dtype(image)
            if work is array:
                results.append(to_uint8(styled) if dtype == np.uint8 else styled)
            else:
                results.append(strokes.restore_detail(styled, work, array, dtype=dtype))
        return results

    def _stylize_tiled(self, array: np.ndarray, finish: _Finish, dtype: type,
                       style: _Vector | None = None) -> np.ndarray:
        """Blend overlapping tiles into one output of `dtype`; only one batch of tiles is in flight."""
        side = self.tile_for(*array.shape[:2])
        assert side is not None
        blender = tiling.TileBlender(array.shape[0], array.shape[1], side, self.config.tile_overlap, dtype=dtype)
        tiles = blender.tiles()
        pieces = [array[tile.region] for tile in tiles]  # views into `array`: nothing is copied yet
        batch = max(1, min(self.config.batch_size, TILE_BATCH_PIXELS // (side * side)))
        for tile, styled in zip(tiles, self._stylize_same_size(pieces, finish, batch, styles=[style] * len(pieces))):
            blender.add(tile, styled)
        return blender.result()

    def _stylize_same_size(self, arrays: Sequence[np.ndarray], finish: _Finish, batch_size: int | None = None,
                           *, styles: Sequence[_Vector | None] | None = None) -> Iterator[np.ndarray]:
        """Run equal-sized images through the network `batch_size` at a time, yielding each finished.

        Each is made float32 only here, so uint8 images and tiles are converted a batch at a time.
        `styles` gives each image's painting statistics (an arbitrary-style model).
        """
        height, width = arrays[0].shape[:2]
        multiple = self.size_multiple
        (top, bottom), (left, right) = _padding(height, multiple), _padding(width, multiple)
        batch_size = batch_size or self.config.batch_size
        for start in range(0, len(arrays), batch_size):
            chunk = [to_float32(array) for array in arrays[start : start + batch_size]]
            batch = _padded_batch(chunk, (top, bottom), (left, right))
            style = None if styles is None else self._style_input(styles[start : start + batch_size])
            styled = self._checked(self.runtime.run(batch) if style is None else self.runtime.run(batch, style))
            for original, output in zip(chunk, styled):
                yield finish(output[:, top : top + height, left : left + width].transpose(1, 2, 0), original)

    def _stylize_regions(self, array: np.ndarray, finish: _Finish) -> np.ndarray:
        """One image through the network whole, each region of the mask with its painting (decoded once)."""
        binding = self._binding
        assert binding is not None and binding.mask is not None
        height, width = array.shape[:2]
        if height * width > MASK_MAX_PIXELS:  # apply_files refuses it before reading (check_size); the API here
            raise UsageError(f"a {width}x{height} image is more than --mask stylises ({MASK_MAX_PIXELS:,} pixels: "
                             "a masked image is never tiled); resize it first (config.size)")
        original = to_float32(array)
        multiple = self.size_multiple
        rows, cols = _padding(height, multiple), _padding(width, multiple)
        weights = mask_for(binding.mask, array).weights(height, width, self.config.mask_feather)
        masks = np.pad(weights, ((0, 0), rows, cols), mode="reflect")[None]
        regions: list[Region] = [None if vector is None else vector for vector in self._region_vectors(original)]
        styled = self._checked(self.runtime.run_regions(_padded_batch([original], rows, cols), regions,
                                                        np.ascontiguousarray(masks), self.config.alpha))
        return finish(styled[0][:, rows[0] : rows[0] + height, cols[0] : cols[0] + width].transpose(1, 2, 0), original)

    # --- arbitrary-style models: paintings, statistics, masks ----------------------------------

    def _check_arbitrary(self) -> None:
        if not self.is_arbitrary:
            raise UsageError(f"{self.model_path}: a Johnson model paints the one style it was trained on; "
                             "--style is for arbitrary-style (AdaIN) models")

    def _check_color(self, config: ApplyConfig) -> None:
        if config.preserve_color == "histogram" and not self.is_arbitrary:
            raise UsageError(_JOHNSON_HISTOGRAM)

    def _style_channels(self) -> int:
        """C of the model's bottleneck, from its architecture: relu3_1 has 256 channels, relu4_1 512."""
        architecture = self.metadata.get("architecture")
        bottleneck = architecture.get("bottleneck") if isinstance(architecture, dict) else None
        return 256 if bottleneck == "relu3_1" else 512

    def _prepare_painting(self, painting: np.ndarray, source: dict) -> np.ndarray:
        """HxWx3 float32 at `style_size`, centre-cropped to the size multiple (no padding measured)."""
        array = np.asarray(painting)
        shown = str(source.get("file", "the painting"))
        if array.ndim != 3 or array.shape[2] != 3 or not _is_pixel_dtype(array.dtype):
            raise ValueError(f"expected an HxWx3 uint8 array or float array in [0, 1], got {array.dtype} {array.shape}")
        floats = to_float32(array)
        if self.config.style_size is not None:
            check_pixels(f"{shown} at --style-size {self.config.style_size}", *self._style_shape(floats.shape),
                         self.config.max_pixels)
            floats = resize_long_side(floats, self.config.style_size)
        multiple = self.size_multiple
        height, width = floats.shape[:2]
        if min(height, width) < 2 * multiple:
            at = f" at --style-size {self.config.style_size}" if self.config.style_size is not None else ""
            raise ImageError(f"{shown}: the painting is {width}x{height} pixels{at}; this model needs at least "
                             f"{2 * multiple} pixels a side")
        top, left = (height % multiple) // 2, (width % multiple) // 2
        return np.ascontiguousarray(floats[top : top + height - height % multiple,
                                           left : left + width - width % multiple], dtype=np.float32)

    def _style_shape(self, shape: tuple[int, ...]) -> tuple[int, int]:
        """(width, height) a painting of `shape` is resized to by `style_size`."""
        assert self.config.style_size is not None
        scale = self.config.style_size / max(shape[0], shape[1])
        return max(1, round(shape[1] * scale)), max(1, round(shape[0] * scale))

    def _measured(self, style: StyleStatistics | Painting, photo: np.ndarray | None = None) -> StyleStatistics:
        """A style's statistics: as given, or measured from the painting (recoloured toward `photo`)."""
        if isinstance(style, StyleStatistics):
            return style
        if photo is None:
            return self.style_statistics(style)
        prepared = self._prepare_painting(style.image, style.source)
        recoloured = color.match_color(prepared, photo)
        mean, std = self.runtime.statistics(recoloured.transpose(2, 0, 1)[None].copy())
        return StyleStatistics(mean[0], std[0], style.source)

    def _statistics_for(self, photo: np.ndarray) -> list[StyleStatistics | None]:
        binding = self._binding
        assert binding is not None
        if not binding.per_photo:
            return list(binding.statistics)
        return [None if style is None else self._measured(style, to_float32(photo)) for style in binding.styles]

    def _style_for(self, photo: np.ndarray) -> _Vector | None:
        """The (mean, std) an image is painted with: the blended paintings'; None for a Johnson model."""
        binding = self._binding
        if binding is None:
            return None
        if binding.blended is not None:
            return binding.blended  # the same object for every photo: batches share one row of statistics
        statistics = [s for s in self._statistics_for(photo) if s is not None]
        blended = blend_statistics(statistics, binding.weights)
        return blended.mean, blended.std

    def _region_vectors(self, photo: np.ndarray) -> list[_Vector | None]:
        return [None if s is None else (s.mean, s.std) for s in self._statistics_for(photo)]

    def _style_input(self, styles: Sequence[_Vector | None]) -> StyleInput | None:
        """One StyleInput for a batch: a single row when every image has the same painting."""
        if not styles or styles[0] is None:
            return None
        vectors = cast(Sequence[_Vector], styles)
        if all(vector is vectors[0] for vector in vectors):
            return StyleInput(vectors[0][0][None], vectors[0][1][None], float(self.config.alpha))
        return StyleInput(np.stack([v[0] for v in vectors]), np.stack([v[1] for v in vectors]),
                          float(self.config.alpha))

    def _region_mask(self, mask: np.ndarray | str | Path | Mask, count: int) -> Mask:
        if not self.runtime.supports_regions:
            raise UsageError(f"{self.model_path}: --mask needs the torch backend (the .safetensors model); "
                             "the ONNX graph takes one painting per image")
        if self.config.tile not in (None, 0):
            raise UsageError("--mask stylises each image whole (its regions must line up), so it takes no --tile")
        region_mask = mask_request(mask, max_pixels=self.config.max_pixels,  # a file, an array, or auto:K
                                   seed=self.config.mask_seed)
        check_count(region_mask, count, f"--style given: give one --style per region (--style {KEEP} keeps the "
                    "photo), regions in the order their colours first appear from the top-left")
        return region_mask

    def _describe_styles(self, binding: _Binding) -> dict:
        """The paintings (name, SHA-256, blend weight or mask region) and the mask, for the settings record."""
        paintings = []
        for index, (style, statistics) in enumerate(zip(binding.styles, binding.statistics)):
            if style is None:
                entry: dict = {"keep": True}
            else:
                entry = dict(style.source if statistics is None else statistics.source)
                if statistics is not None:
                    entry["statistics_sha256"] = _statistics_sha256(statistics)
            if binding.weights is not None:
                entry["weight"] = binding.weights[index]
            if binding.mask is not None:
                entry["region"] = index
            paintings.append(entry)
        record: dict = {"styles": paintings}
        if binding.per_photo:
            record["styles_recoloured"] = "toward each photo before measuring (preserve_color histogram)"
        if binding.mask is not None:
            record["mask"] = binding.mask.describe(self.config.mask_feather)
        return record

    def _checked(self, styled: np.ndarray) -> np.ndarray:
        """The network's output, refused when any of it is NaN or infinite: clipped, it would be a
        black (or white) picture written as if all were well. One pass over the batch."""
        if not np.isfinite(styled).all():
            why = ("try --precision bf16 or fp32" if self.precision == "fp16"
                   else "its weights are damaged or it was not trained to completion")
            raise ModelFileError(f"{self.model_path}: the network's output is not finite (NaN or Inf); {why}")
        return styled


_Vector = tuple[np.ndarray, np.ndarray]  # a painting's (C,) bottleneck mean and std


def _read_uint8(path: str | Path, max_pixels: int | None) -> np.ndarray:
    """An image file as 8-bit RGB through images.py's decoding boundary (one line naming it on failure)."""
    from .images import read_array

    image, _ = read_array(path, max_pixels=max_pixels, min_side=1, dtype=np.uint8)
    return image


def _statistics_sha256(statistics: StyleStatistics) -> str:
    """A digest of the statistics themselves: what an output was painted with, whatever their source."""
    import hashlib

    return hashlib.sha256(statistics.mean.tobytes() + statistics.std.tobytes()).hexdigest()


@dataclass(frozen=True)
class _Finish:
    """What becomes of each stylised piece: clipped to [0, 1], colours kept, blended with the original.

    All three are per-pixel, so applying them to each tile before blending equals applying
    them to the blended image (up to clipping), and no full-size temporaries are made.
    ApplyConfig has validated both settings.
    """

    strength: float
    preserve_color: str | None

    def __call__(self, styled: np.ndarray, original: np.ndarray) -> np.ndarray:
        styled = np.clip(styled, 0.0, 1.0)
        if self.preserve_color == "luminance":
            styled = color.transfer_luminance(styled, original)
        if self.strength != 1.0:
            styled = self.strength * styled + (1.0 - self.strength) * original
        return styled.astype(np.float32, copy=False)


def _is_pixel_dtype(dtype: np.dtype) -> bool:
    return dtype == np.uint8 or np.issubdtype(dtype, np.floating)


def _output_dtype(image: np.ndarray) -> type:
    """uint8 for uint8 input, float32 for any float input: an array comes back as the kind it went in."""
    return np.uint8 if np.asarray(image).dtype == np.uint8 else np.float32


def _padded_batch(arrays: Sequence[np.ndarray], rows: tuple[int, int], cols: tuple[int, int]) -> np.ndarray:
    """HxWx3 arrays reflection-padded and stacked as one contiguous (N,3,H,W) batch: one copy, not two."""
    return np.stack([np.pad(a, (rows, cols, (0, 0)), mode="reflect").transpose(2, 0, 1) for a in arrays])


def _padding(length: int, multiple: int) -> tuple[int, int]:
    """Pixels to add before and after `length` to reach a multiple of `multiple`.

    At least two multiples: at a quarter of the resolution the network's 3×3 convolutions
    reflect-pad by one pixel, which needs two pixels there. Split evenly between both sides
    so that neither border gets all the padding's influence.
    """
    target = max(math.ceil(length / multiple) * multiple, 2 * multiple)
    extra = target - length
    return extra // 2, extra - extra // 2


def _like_tensor(array: np.ndarray, like: torch.Tensor) -> torch.Tensor:
    """`array` as a tensor with the device, dtype and (1,3,H,W)/(3,H,W) layout of `like`."""
    tensor = to_tensor(array).to(device=like.device, dtype=like.dtype)
    return tensor if like.ndim == 4 else tensor[0]
