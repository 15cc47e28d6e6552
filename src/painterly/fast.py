"""`FastStylizer`: run a fast-style network (Johnson et al. 2016) on images of any size.

Two backends run the same network (`runtimes.py`): PyTorch (CPU, CUDA, MPS) and ONNX Runtime.
A `.onnx` model runs without torch installed: everything around the network (padding, tiling,
blending, colour) is numpy.

The network needs sides that are a multiple of `config.SIZE_MULTIPLE`, so each image is
reflection-padded up to one and the output cropped back: the output always has exactly the
input's size. Large images can be stylised in overlapping tiles (`tiling.py`) so that memory
stays bounded by the input and output plus one batch of tiles and one row of tiles' blend.
8-bit arrays stay 8-bit outside the network: each tile (or image) is made float32 just
before it runs, and the output is rounded back to uint8 as it is finished.

Every setting comes from one `ApplyConfig`; `describe()` is the one record of them that every
output stores.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from . import __version__, color, tiling
from .config import AUTO_TILE, AUTO_TILE_ABOVE, SIZE_MULTIPLE, ApplyConfig
from .errors import ModelFileError
from .events import Callback, ignore
from .images import check_pixels
from .pixels import resize_long_side, to_array, to_float32, to_tensor, to_uint8
from .provenance import describe_file
from .runtimes import Backend, open_backend

if TYPE_CHECKING:
    import torch

# A batch of tiles holds at most this many pixels: at a megapixel the network is already as fast
# per pixel as it gets, and each tile more in flight costs its activations' memory (~1 GiB at 1024² in fp32).
TILE_BATCH_PIXELS = 1024 * 1024
# The settings that choose the loaded network; the others can change without loading it again.
_LOADING_SETTINGS = ("backend", "device", "precision")


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
        self.config = config if config is not None else ApplyConfig()
        self.model_path = Path(model)
        self.runtime: Backend = open_backend(self.model_path, self.config, callback=callback)  # a bf16 warning
        self._model_record: dict | None = None

    def with_config(self, config: ApplyConfig) -> FastStylizer:
        """This model with other settings; the loaded network is shared unless backend, device or
        precision change (the web UI loads each model once and serves every request's settings)."""
        if any(getattr(config, name) != getattr(self.config, name) for name in _LOADING_SETTINGS):
            return FastStylizer(self.model_path, config)
        other = copy.copy(self)
        other.config = config
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
        finish = _Finish(self.config.strength, self.config.preserve_color)
        dtypes = [_output_dtype(image) for image in images]
        arrays = [self.prepare(image) for image in images]
        results: list[np.ndarray | None] = [None] * len(arrays)
        same_size: dict[tuple[int, ...], list[int]] = {}
        for index, array in enumerate(arrays):
            if self.is_tiled(*array.shape[:2]):
                results[index] = self._stylize_tiled(array, finish, dtypes[index])
            else:
                same_size.setdefault(array.shape, []).append(index)
        for indices in same_size.values():
            for index, styled in zip(indices, self._stylize_same_size([arrays[i] for i in indices], finish)):
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
        either is over the pixel limit; `shown` names the input. Nothing is decoded or resized yet."""
        check_pixels(shown, width, height, self.config.max_pixels)
        self._check_resized(shown, height, width)

    def describe(self, *, input: dict | None = None) -> dict:
        """What every output records about how it was made: painterly's version, the model, the
        settings under "config" (`config`, with what "auto" resolved to; the key a Gatys output uses
        too) and, when given, the input."""
        if self._model_record is None:  # hashed once: a model file can be large
            model = describe_file(self.model_path)
            model.update({key: self.metadata[key] for key in ("style", "steps") if key in self.metadata})
            self._model_record = model
        settings = {**self.config.to_dict(), "tile": "auto" if self.config.tile is None else self.config.tile,
                    "backend": self.backend, "device": self.device, "precision": self.precision}
        record = {"painterly": __version__, "method": "fast", "model": dict(self._model_record),
                  "config": settings}
        if input is not None:
            record["input"] = input
        return record

    def tile_for(self, height: int, width: int) -> int | None:
        """The tile side an image of this size (after any resizing) is stylised in, or None for whole."""
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

    def _stylize_tiled(self, array: np.ndarray, finish: _Finish, dtype: type) -> np.ndarray:
        """Blend overlapping tiles into one output of `dtype`; only one batch of tiles is in flight."""
        side = self.tile_for(*array.shape[:2])
        assert side is not None
        blender = tiling.TileBlender(array.shape[0], array.shape[1], side, self.config.tile_overlap, dtype=dtype)
        tiles = blender.tiles()
        pieces = [array[tile.region] for tile in tiles]  # views into `array`: nothing is copied yet
        batch = max(1, min(self.config.batch_size, TILE_BATCH_PIXELS // (side * side)))
        for tile, styled in zip(tiles, self._stylize_same_size(pieces, finish, batch)):
            blender.add(tile, styled)
        return blender.result()

    def _stylize_same_size(self, arrays: Sequence[np.ndarray], finish: _Finish,
                           batch_size: int | None = None) -> Iterator[np.ndarray]:
        """Run equal-sized images through the network `batch_size` at a time, yielding each finished.

        Each is made float32 only here, so uint8 images and tiles are converted a batch at a time.
        """
        height, width = arrays[0].shape[:2]
        (top, bottom), (left, right) = _padding(height, SIZE_MULTIPLE), _padding(width, SIZE_MULTIPLE)
        batch_size = batch_size or self.config.batch_size
        for start in range(0, len(arrays), batch_size):
            chunk = [to_float32(array) for array in arrays[start : start + batch_size]]
            styled = self._checked(self.runtime.run(_padded_batch(chunk, (top, bottom), (left, right))))
            for original, output in zip(chunk, styled):
                yield finish(output[:, top : top + height, left : left + width].transpose(1, 2, 0), original)

    def _checked(self, styled: np.ndarray) -> np.ndarray:
        """The network's output, refused when any of it is NaN or infinite: clipped, it would be a
        black (or white) picture written as if all were well. One pass over the batch."""
        if not np.isfinite(styled).all():
            why = ("try --precision bf16 or fp32" if self.precision == "fp16"
                   else "its weights are damaged or it was not trained to completion")
            raise ModelFileError(f"{self.model_path}: the network's output is not finite (NaN or Inf); {why}")
        return styled


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
