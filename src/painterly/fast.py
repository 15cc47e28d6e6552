"""`FastStylizer`: run a fast-style network (Johnson et al. 2016) on images of any size.

Two backends run the same network: PyTorch (CPU, CUDA, MPS) and ONNX Runtime. A `.onnx`
model runs without torch installed: torch is imported only inside `_TorchBackend`, and
everything around the network (padding, tiling, blending, colour) is numpy.

The network needs sides that are a multiple of `transformer.SIZE_MULTIPLE`, so each image is
reflection-padded up to one and the output cropped back: the output always has exactly the
input's size. Large images can be stylised in overlapping tiles (`tiling.py`) so that memory
stays bounded by the input and output plus one batch of tiles and one row of tiles' blend.
8-bit arrays stay 8-bit outside the network: each tile (or image) is made float32 just
before it runs, and the output is rounded back to uint8 as it is finished.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from . import __version__, color, tiling
from .errors import ModelFileError, PainterlyError, UsageError
from .images import resize_long_side, to_array, to_float32, to_tensor, to_uint8
from .provenance import describe_file

if TYPE_CHECKING:
    import torch

BACKENDS = ("auto", "torch", "onnx")
# Instance norm gives each tile its own statistics, so neighbouring tiles paint slightly
# differently; a wide overlap lets the blend hide that (and the tiles' padded borders).
DEFAULT_TILE_OVERLAP = 64
MIN_TILE = 32
# transformer.SIZE_MULTIPLE, which the torch-free ONNX path cannot import; a test checks they agree.
ONNX_SIZE_MULTIPLE = 4
_OOM_HINT = "--tile 512 stylises a large image in pieces"
# tile=None ("auto"): images over AUTO_TILE_ABOVE pixels go in AUTO_TILE tiles. Whole, the standard
# network takes about 1 KiB of memory a pixel (4.4 GiB at 2048²). An 8192² photo in 768² tiles peaked
# at 1.6 GiB on torch and 1.0 GiB on ONNX Runtime, against 2.1 and 6.3 GiB in 1024² tiles, at the
# same speed on torch and 15 % slower on ONNX Runtime (docs/benchmarks.md).
AUTO_TILE = 768
AUTO_TILE_ABOVE = 2048 * 2048
# A batch of tiles holds at most this many pixels: at a megapixel the network is already as fast
# per pixel as it gets, and each tile more in flight costs its activations' memory (~1 GiB at 1024² in fp32).
TILE_BATCH_PIXELS = 1024 * 1024


class FastStylizer:
    """A fast-style model loaded once, applied to arrays, tensors and batches.

    `tile=N` stylises images whose long side exceeds N in N×N tiles overlapping by
    `tile_overlap` pixels, blended with smooth weights; `tile=0` never tiles; `tile=None`
    (the default) tiles images of over AUTO_TILE_ABOVE pixels in AUTO_TILE tiles, so memory
    stays bounded whatever the input. Tiled output differs slightly from whole-image output:
    the network's instance norms normalise each tile by its own statistics, not the whole
    image's. The generous default overlap (64 px) keeps that difference gradual, so no seam
    shows. `batch_size` images (or tiles, up to TILE_BATCH_PIXELS) of the same size run
    through the network together.
    """

    def __init__(
        self,
        model: str | Path,
        *,
        device: str = "auto",
        backend: str = "auto",
        tile: int | None = None,
        tile_overlap: int = DEFAULT_TILE_OVERLAP,
        batch_size: int = 4,
        precision: str = "auto",
    ) -> None:
        _check_tiling(tile, tile_overlap)
        if batch_size < 1:
            raise UsageError(f"batch size must be at least 1, got {batch_size}")
        self.model_path = Path(model)
        self.tile = tile
        self.tile_overlap = tile_overlap
        self.batch_size = batch_size
        self._backend = _open_backend(self.model_path, backend, device, precision)

    @property
    def metadata(self) -> dict:
        """The model file's metadata (style, training settings, steps…); may be empty for .onnx."""
        return self._backend.metadata

    @property
    def backend(self) -> str:
        """"torch" or "onnx"."""
        return self._backend.name

    @property
    def device(self) -> str:
        """Where the network runs: "cpu", "cuda" or "mps"."""
        return self._backend.device

    @property
    def precision(self) -> str:
        """What the network computes in: "fp32", or "bf16"/"fp16" autocast (torch backend)."""
        return self._backend.precision

    def stylize(
        self, image: Any, *, strength: float = 1.0, preserve_color: str | None = None, size: int | None = None
    ) -> Any:
        """Stylise one image, returned as the same kind: an HxWx3 array (float in [0, 1], or
        uint8) or a (1,3,H,W)/(3,H,W) tensor in [0, 1].

        A uint8 array comes back uint8 and is float only a batch of tiles (or images) at a
        time, on its way through the network: a quarter of float32's memory for large images.
        A float array comes back float32. `size` first resizes the long side; otherwise the
        output has exactly the input's size.
        `strength` blends with the original (0 = unchanged, 1 = fully stylised);
        `preserve_color="luminance"` keeps the original's colours and takes the style's light.
        """
        array = image if isinstance(image, np.ndarray) else to_array(image)
        [styled] = self.stylize_batch([array], strength=strength, preserve_color=preserve_color, size=size)
        if isinstance(image, np.ndarray):
            return styled
        return _like_tensor(styled, image)

    def stylize_batch(
        self,
        images: Sequence[np.ndarray],
        *,
        strength: float = 1.0,
        preserve_color: str | None = None,
        size: int | None = None,
    ) -> list[np.ndarray]:
        """Stylise several HxWx3 arrays (uint8, or float in [0, 1]), each returned as `stylize` would.

        Those of equal size share network batches.
        """
        finish = _Finish(strength, preserve_color)
        dtypes = [_output_dtype(image) for image in images]
        arrays = [_prepare(image, size) for image in images]
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
        return results

    def describe(self, *, strength: float = 1.0, preserve_color: str | None = None, size: int | None = None) -> dict:
        """What every output records about how it was made: model, settings (its input is added per file)."""
        model = describe_file(self.model_path)
        model.update({key: self.metadata[key] for key in ("style", "steps") if key in self.metadata})
        tile = "auto" if self.tile is None else self.tile
        settings = {"strength": strength, "preserve_color": preserve_color, "size": size, "tile": tile,
                    "tile_overlap": self.tile_overlap, "backend": self.backend, "device": self.device,
                    "precision": self.precision}
        return {"painterly": __version__, "method": "fast", "model": model, "settings": settings}

    def tile_for(self, height: int, width: int) -> int | None:
        """The tile side an image of this size (after any resizing) is stylised in, or None for whole."""
        if self.tile is None:
            return AUTO_TILE if height * width > AUTO_TILE_ABOVE and max(height, width) > AUTO_TILE else None
        return self.tile if 0 < self.tile < max(height, width) else None

    def is_tiled(self, height: int, width: int) -> bool:
        """Whether an image of this size (after any resizing) is stylised in tiles."""
        return self.tile_for(height, width) is not None

    def _stylize_tiled(self, array: np.ndarray, finish: _Finish, dtype: type) -> np.ndarray:
        """Blend overlapping tiles into one output of `dtype`; only one batch of tiles is in flight."""
        side = self.tile_for(*array.shape[:2])
        blender = tiling.TileBlender(array.shape[0], array.shape[1], side, self.tile_overlap, dtype=dtype)
        tiles = blender.tiles()
        pieces = [array[tile.region] for tile in tiles]  # views into `array`: nothing is copied yet
        batch = max(1, min(self.batch_size, TILE_BATCH_PIXELS // (side * side)))
        for tile, styled in zip(tiles, self._stylize_same_size(pieces, finish, batch)):
            blender.add(tile, styled)
        return blender.result()

    def _stylize_same_size(self, arrays: Sequence[np.ndarray], finish: _Finish,
                           batch_size: int | None = None) -> Iterator[np.ndarray]:
        """Run equal-sized images through the network `batch_size` at a time, yielding each finished.

        Each is made float32 only here, so uint8 images and tiles are converted a batch at a time.
        """
        height, width = arrays[0].shape[:2]
        multiple = self._backend.size_multiple
        (top, bottom), (left, right) = _padding(height, multiple), _padding(width, multiple)
        batch_size = batch_size or self.batch_size
        for start in range(0, len(arrays), batch_size):
            chunk = [to_float32(array) for array in arrays[start : start + batch_size]]
            styled = self._backend.run(_padded_batch(chunk, (top, bottom), (left, right)))
            for original, output in zip(chunk, styled):
                yield finish(output[:, top : top + height, left : left + width].transpose(1, 2, 0), original)


@dataclass(frozen=True)
class _Finish:
    """What becomes of each stylised piece: clipped to [0, 1], colours kept, blended with the original.

    All three are per-pixel, so applying them to each tile before blending equals applying
    them to the blended image (up to clipping), and no full-size temporaries are made.
    """

    strength: float = 1.0
    preserve_color: str | None = None

    def __post_init__(self) -> None:
        if not 0.0 <= self.strength <= 1.0:
            raise UsageError(f"strength must be between 0 and 1, got {self.strength}")
        if self.preserve_color == "histogram":
            raise UsageError(
                "preserve_color 'histogram' recolours the style image before stylising, but a fast model "
                "has already learned its style; use 'luminance'"
            )
        if self.preserve_color not in (None, "luminance"):
            raise UsageError(f"unknown preserve_color {self.preserve_color!r}; use 'luminance'")

    def __call__(self, styled: np.ndarray, original: np.ndarray) -> np.ndarray:
        styled = np.clip(styled, 0.0, 1.0)
        if self.preserve_color == "luminance":
            styled = color.transfer_luminance(styled, original)
        if self.strength != 1.0:
            styled = self.strength * styled + (1.0 - self.strength) * original
        return styled.astype(np.float32, copy=False)


def _check_tiling(tile: int | None, overlap: int) -> None:
    if tile is not None and tile != 0 and tile < MIN_TILE:
        raise UsageError(f"tile must be 0 (never tile) or at least {MIN_TILE} pixels, got {tile}")
    if not 0 <= overlap < (tile or AUTO_TILE):
        raise UsageError(f"tile overlap must be at least 0 and less than the tile ({tile or AUTO_TILE}), got {overlap}")


def _prepare(image: np.ndarray, size: int | None) -> np.ndarray:
    """An HxWx3 uint8 or float32 array, resized when asked; never a copy when none is needed.

    Resizing works in float32, so a resized uint8 image is stylised from the resized floats
    (no second rounding to 8 bits before the network).
    """
    array = np.asarray(image)
    if array.ndim != 3 or array.shape[2] != 3 or not _is_pixel_dtype(array.dtype):
        raise ValueError(f"expected an HxWx3 uint8 array or float array in [0, 1], got {array.dtype} {array.shape}")
    if size is not None:
        return resize_long_side(to_float32(array), size)
    return array if array.dtype == np.uint8 else array.astype(np.float32, copy=False)


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


def _oom_message(batch: np.ndarray) -> str:
    count, _, height, width = batch.shape
    return f"stylising {count} image(s) of {width}x{height} pixels ({_OOM_HINT})"


# --- backends ------------------------------------------------------------------------------


class _Backend(Protocol):
    name: str
    device: str
    precision: str
    metadata: dict
    size_multiple: int

    def run(self, batch: np.ndarray) -> np.ndarray:
        """(N,3,H,W) float32 in [0, 1] -> (N,3,H,W) float32, not yet clipped."""


def _open_backend(path: Path, backend: str, device: str, precision: str) -> _Backend:
    """"auto" runs a .onnx file in ONNX Runtime and anything else in PyTorch."""
    if backend not in BACKENDS:
        raise UsageError(f"unknown backend {backend!r}; choose {', '.join(BACKENDS)}")
    is_onnx = path.suffix.lower() == ".onnx"
    if backend == "torch" and is_onnx:
        raise UsageError(f"{path}: an ONNX model runs with the onnx backend, not torch")
    if backend == "onnx" and not is_onnx:
        raise UsageError(f"{path}: the onnx backend needs a .onnx model; make one with `painterly export`")
    if is_onnx and precision not in ("auto", "fp32"):
        raise UsageError(f"{path}: the onnx backend computes in fp32; --precision {precision} needs the torch backend")
    return _OnnxBackend(path, device) if is_onnx else _TorchBackend(path, device, precision)


class _TorchBackend:
    """PyTorch in eval mode under inference_mode (no autograd memory), autocast to bf16 where the
    hardware computes it natively (`devices.autocast_dtype`): 1.5x faster on such CPUs, 55 dB
    PSNR from fp32's output."""

    name = "torch"

    def __init__(self, path: Path, device: str, precision: str) -> None:
        from .devices import autocast_dtype, precision_name, resolve_device
        from .modelfile import load_model
        from .transformer import SIZE_MULTIPLE

        self._device = resolve_device(device)
        self._autocast = autocast_dtype(precision, self._device)
        self._model, self.metadata = load_model(path, device=self._device)
        self.device = self._device.type
        self.precision = precision_name(self._autocast)
        self.size_multiple = SIZE_MULTIPLE

    def run(self, batch: np.ndarray) -> np.ndarray:
        import torch

        from .devices import is_out_of_memory, out_of_memory_error

        try:
            with torch.inference_mode(), torch.autocast(self._device.type, dtype=self._autocast or torch.float32,
                                                        enabled=self._autocast is not None):
                return self._model(torch.from_numpy(batch).to(self._device)).float().cpu().numpy()
        except RuntimeError as error:
            if is_out_of_memory(error):
                raise out_of_memory_error(_oom_message(batch), self._device) from None
            raise


class _OnnxBackend:
    """ONNX Runtime on the CPU, or CUDA when its provider is installed; needs no torch."""

    name = "onnx"
    precision = "fp32"
    size_multiple = ONNX_SIZE_MULTIPLE

    def __init__(self, path: Path, device: str) -> None:
        from .export import read_onnx_metadata

        try:
            import onnxruntime
        except ImportError:
            raise UsageError("the onnx backend needs ONNX Runtime: pip install 'painterly[onnx]'") from None
        if not path.is_file():
            raise ModelFileError(f"{path}: no such model file")
        providers, self.device = _onnx_providers(onnxruntime.get_available_providers(), device)
        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3  # errors only: the library never prints
        # The CPU arena grows in powers of two and never gives memory back: an 8192² image in
        # 1024² tiles, four a batch, peaked at 8.6 GB with it and 3.3 GB without, as fast.
        options.enable_cpu_mem_arena = False
        try:  # ONNX Runtime's exceptions share no base class but Exception
            self._session = onnxruntime.InferenceSession(str(path), options, providers=providers)
        except Exception as error:
            raise ModelFileError(f"{path}: not a readable ONNX model ({str(error).splitlines()[0][:200]})") from None
        image = self._session.get_inputs()[0]
        if any(isinstance(side, int) for side in image.shape[2:]):
            raise ModelFileError(f"{path}: exported for one image size only; export it again with dynamic sizes")
        self._input = image.name
        self._one_at_a_time = image.shape[0] == 1  # exported with a fixed batch of one
        self.metadata = read_onnx_metadata(path)

    def run(self, batch: np.ndarray) -> np.ndarray:
        if self._one_at_a_time:
            return np.concatenate([self._run(batch[i : i + 1]) for i in range(len(batch))])
        return self._run(batch)

    def _run(self, batch: np.ndarray) -> np.ndarray:
        try:
            return self._session.run(None, {self._input: batch})[0]
        except Exception as error:
            if "allocat" in str(error):
                raise PainterlyError(f"out of memory on {self.device} while {_oom_message(batch)}") from None
            raise


def _onnx_providers(available: list[str], device: str) -> tuple[list[str], str]:
    """ONNX Runtime providers for a --device value, and the device they amount to."""
    has_cuda = "CUDAExecutionProvider" in available
    if device == "auto":
        device = "cuda" if has_cuda else "cpu"
    if device == "cuda" and not has_cuda:
        raise UsageError("--device cuda: this ONNX Runtime has no CUDA provider; install onnxruntime-gpu or use cpu")
    if device not in ("cpu", "cuda"):
        raise UsageError(f"the onnx backend runs on auto, cpu or cuda, not {device!r}")
    cpu = ["CPUExecutionProvider"]
    return (["CUDAExecutionProvider", *cpu] if device == "cuda" else cpu), device

