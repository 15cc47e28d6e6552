"""Pixel arithmetic on arrays and tensors: 8-bit <-> float, layouts, compositing, resizing.

No files here (that is `images.py`). numpy arrays are HxWx3 (Pillow's layout), tensors
(N,3,H,W) or (3,H,W). Like images.py, this module imports torch only inside the functions
that take or return tensors, so the ONNX Runtime path runs without it.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from painterly.errors import UsageError

if TYPE_CHECKING:
    import torch

# Rows converted at a time between uint8 and float: a full-size float temporary of an 8192²
# image is 805 MB, a chunk of 256 rows 25 MB.
_CHUNK_ROWS = 256


def to_uint8(values: np.ndarray) -> np.ndarray:
    """Values in [0, 1] -> uint8 (clipped, then rounded to the nearest of 0..255); uint8 is kept.

    Converts `_CHUNK_ROWS` rows at a time: clipping, scaling and rounding a whole 8192²
    image at once would make several 805 MB float temporaries.
    """
    if values.dtype == np.uint8:
        return values
    result = np.empty(values.shape, dtype=np.uint8)
    for start in range(0, len(values), _CHUNK_ROWS):
        rows = slice(start, start + _CHUNK_ROWS)
        chunk = np.clip(values[rows], 0, 1)
        chunk *= 255
        result[rows] = np.rint(chunk, out=chunk)
    return result


def to_float32(values: np.ndarray) -> np.ndarray:
    """uint8 -> a new float32 array in [0, 1]; float arrays come back as float32, uncopied if already."""
    if values.dtype != np.uint8:
        return values.astype(np.float32, copy=False)
    floats = values.astype(np.float32)
    floats /= 255
    return floats


def over_white(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Float RGB composited over white by float alpha, in place (no full-size temporaries)."""
    rgb *= alpha[..., None]
    rgb += 1 - alpha[..., None]
    return rgb


def over_white_uint8(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """uint8 RGB composited over white by uint8 alpha, as a new uint8 array.

    Computed in float a chunk of rows at a time and rounded like `to_uint8`, so it equals
    the float composite rounded, without its full-size float temporaries.
    """
    composited = np.empty_like(rgb)
    for start in range(0, len(rgb), _CHUNK_ROWS):
        rows = slice(start, start + _CHUNK_ROWS)
        composited[rows] = to_uint8(over_white(to_float32(rgb[rows]), to_float32(alpha[rows])))
    return composited


def to_array(image: Any) -> np.ndarray:
    """Tensor (1,3,H,W)/(3,H,W) or array (1,3,H,W)/HxWx3 -> a new HxWx3 float32 array.

    A 3-axis tensor is read as channels-first, a 3-axis array as channels-last (Pillow's
    layout); tensors are detached and moved to the CPU.
    """
    array = to_numpy(image)
    if array.ndim == 4 and array.shape[:2] == (1, 3):
        array = array[0].transpose(1, 2, 0)
    elif array.ndim == 3 and _is_tensor(image) and array.shape[0] == 3:
        array = array.transpose(1, 2, 0)
    elif not (array.ndim == 3 and array.shape[2] == 3):
        raise ValueError(f"expected an image of shape (1,3,H,W), (3,H,W) or HxWx3, got {tuple(array.shape)}")
    return np.array(array, dtype=np.float32, order="C")  # a copy: never a view of the caller's data


def to_tensor(array: np.ndarray) -> torch.Tensor:
    """HxWx3 array -> a new (1, 3, H, W) float32 tensor."""
    import torch

    array = np.asarray(array, dtype=np.float32)
    if not (array.ndim == 3 and array.shape[2] == 3):
        raise ValueError(f"expected an HxWx3 array, got {array.shape}")
    return torch.from_numpy(array.transpose(2, 0, 1)[None].copy())


def resize_long_side(image: Any, size: int) -> Any:
    """Scale so the longer side is `size` pixels, keeping the aspect ratio."""
    _check_positive(size=size)
    height, width = _height_width(image)
    scale = size / max(height, width)
    return resize_to(image, max(1, round(height * scale)), max(1, round(width * scale)))


def resize_to(image: Any, height: int, width: int) -> Any:
    """Antialiased bicubic resize, clamped to [0, 1] (bicubic overshoots at edges).

    Takes a (N,3,H,W)/(3,H,W) tensor or an HxWx3 array and returns the same kind; an image
    already that size is returned as is.
    """
    _check_positive(height=height, width=width)
    if _height_width(image) == (height, width):
        return image
    if _is_tensor(image):
        return _resize_tensor(image, height, width)
    return _resize_array(np.asarray(image, dtype=np.float32), height, width)


def _resize_tensor(image: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """torch's antialiased bicubic is Pillow's bicubic, so both kinds of input agree."""
    import torch.nn.functional as F

    batch = image if image.ndim == 4 else image[None]
    resized = F.interpolate(batch, size=(height, width), mode="bicubic", align_corners=False, antialias=True)
    resized = resized.clamp(0, 1)
    return resized if image.ndim == 4 else resized[0]


def _resize_array(array: np.ndarray, height: int, width: int) -> np.ndarray:
    channels = [
        Image.fromarray(np.ascontiguousarray(array[..., c])).resize((width, height), Image.Resampling.BICUBIC)
        for c in range(array.shape[2])
    ]
    return np.clip(np.stack([np.asarray(c) for c in channels], axis=2), 0, 1)


def _height_width(image: Any) -> tuple[int, int]:
    """(H, W) of a channels-first tensor or a channels-last array."""
    shape = tuple(image.shape)
    return (shape[-2], shape[-1]) if _is_tensor(image) else (shape[0], shape[1])


def _check_positive(**sizes: int) -> None:
    for name, value in sizes.items():
        if value < 1:
            raise UsageError(f"{name} must be at least 1 pixel, got {value}")


def _is_tensor(value: Any) -> bool:
    """True for a torch.Tensor, without importing torch: if it is not loaded, no tensor exists."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(value, torch.Tensor)


def to_numpy(value: Any) -> np.ndarray:
    """A tensor (detached, on the CPU) or anything array-like as a float32 numpy array, uncopied where it can be."""
    if _is_tensor(value):
        import torch

        return value.detach().to("cpu", torch.float32).numpy()
    return np.asarray(value, dtype=np.float32)
