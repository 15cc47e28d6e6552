"""Large prints with the preview's strokes (`ApplyConfig.stroke_size`, `apply --stroke-size`).

A fast network (Johnson or AdaIN) paints strokes of a fixed size in pixels, so a 4096 px output
looks four times finer than its 1024 px preview. With a stroke size the network paints a working
image whose long side is `stroke_size` (the preview's look), and this module brings the result to
full size without losing the photo's detail:

    output = up(S) + g · (Y − up(down(Y)))

S is the stylised working image, up() bicubic upsampling, down() the antialiased bicubic
downscaling that made the working image, Y the full photo's luminance (YIQ's Y): the band of the
photo's detail the working size could not hold, added to each channel. The gain g is a guided
filter's slope (He, Sun, Tang 2013), fitted at the working size in (2·GAIN_RADIUS+1)² windows: how
strongly the stylised luminance follows the photo's there, clipped to [0, 1] and upsampled
bilinearly. Where the painting keeps the photo's edges their finer detail comes back at that
strength; where it paints over them (strokes in a flat sky) none of the photo is pasted on. The
low band is the preview's: downscaled back to the working size, the output is the preview up to
resampling (the detail band averages out).

Memory stays bounded at any size: everything at full size is computed STRIP_ROWS rows at a time
(float32 strips, the output written into one array of the caller's dtype); the whole-image work is
at the working size. Pillow resamples each strip from the whole source (its `box`), so strips give
exactly the whole-image result. numpy and Pillow only: the ONNX path runs it without torch.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image

from .pixels import to_float32, to_uint8

METHOD = "guided-detail"  # recorded beside stroke_size in every output's settings
STRIP_ROWS = 256  # rows of full-size float32 temporaries at a time: 24 MiB a strip at 8192 px wide
GAIN_RADIUS = 2  # working-size pixels each side of the guided filter's windows
GAIN_EPS = 1e-3  # its regulariser: flat regions (photo variance below ~0.03²) get no detail
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # YIQ's Y, as color.py
_BICUBIC, _BILINEAR = Image.Resampling.BICUBIC, Image.Resampling.BILINEAR


def working_shape(height: int, width: int, stroke_size: int | None) -> tuple[int, int] | None:
    """(height, width) an image of this size is painted at, or None where it is no larger than
    `stroke_size` (then it is painted as it is: never upscaled). Rounded as pixels.resize_long_side."""
    if stroke_size is None or max(height, width) <= stroke_size:
        return None
    scale = stroke_size / max(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


def at_full_size(pixels: int, height: int, width: int, stroke_size: int | None) -> int:
    """A length in the working size's pixels (`--mask-feather`) in the pixels of an image of this size,
    so that it spans as much of the picture as in the preview; as it is where the image is painted whole."""
    working = working_shape(height, width, stroke_size)
    return pixels if working is None else round(pixels * max(height, width) / max(working))


def downscale(image: np.ndarray, height: int, width: int, *, strip_rows: int = STRIP_ROWS) -> np.ndarray:
    """An HxWx3 image (uint8, or float in [0, 1]) resized to height×width as pixels.resize_to does it
    (antialiased bicubic, clipped to [0, 1]), as float32; only the rows one output strip needs are
    made float at a time, never the whole image."""
    source_height, source_width = image.shape[:2]
    scale = source_height / height
    margin = math.ceil(2 * max(scale, 1.0)) + 2  # bicubic's support in source rows, and a little more
    out = np.empty((height, width, 3), dtype=np.float32)
    for start in range(0, height, strip_rows):
        stop = min(height, start + strip_rows)
        top, bottom = start * scale, stop * scale
        first, last = max(0, int(top) - margin), min(source_height, math.ceil(bottom) + margin)
        rows = to_float32(image[first:last])
        box = (0.0, top - first, float(source_width), bottom - first)
        for channel in range(3):
            out[start:stop, :, channel] = _resized(_image(rows[..., channel]), (width, stop - start), box, _BICUBIC)
    return np.clip(out, 0.0, 1.0, out=out)


def restore_detail(styled: np.ndarray, working: np.ndarray, photo: np.ndarray, *, dtype: type = np.float32,
                   strip_rows: int = STRIP_ROWS) -> np.ndarray:
    """The stylised working image at the photo's size with the photo's detail (see the module's docstring).

    `styled` and `working` are h×w×3 float32: the network's output and the input it painted, `downscale`d
    from `photo` (HxWx3, uint8 or float in [0, 1]). Returns HxWx3 of `dtype` (uint8 or float32).
    """
    height, width = photo.shape[:2]
    small_height, small_width = styled.shape[:2]
    luma = np.asarray(working, dtype=np.float32) @ _LUMA
    gain = _image(_gain(np.asarray(styled, dtype=np.float32) @ _LUMA, luma))
    channels = [_image(styled[..., channel]) for channel in range(3)]
    luma_image = _image(luma)
    out: np.ndarray = np.empty((height, width, 3), dtype=dtype)
    scale = small_height / height
    for start in range(0, height, strip_rows):
        stop = min(height, start + strip_rows)
        size, box = (width, stop - start), (0.0, start * scale, float(small_width), stop * scale)
        strip = np.stack([_resized(channel, size, box, _BICUBIC) for channel in channels], axis=2)
        detail = to_float32(photo[start:stop]) @ _LUMA
        detail -= _resized(luma_image, size, box, _BICUBIC)
        detail *= _resized(gain, size, box, _BILINEAR)
        strip += detail[..., None]
        np.clip(strip, 0.0, 1.0, out=strip)
        out[start:stop] = to_uint8(strip) if dtype == np.uint8 else strip
    return out


def _gain(styled: np.ndarray, photo: np.ndarray, radius: int = GAIN_RADIUS, eps: float = GAIN_EPS) -> np.ndarray:
    """The guided filter's slope of `styled` on `photo` (both h×w luminance), clipped to [0, 1]."""
    photo64, styled64 = photo.astype(np.float64), styled.astype(np.float64)
    mean_photo, mean_styled = _box(photo64, radius), _box(styled64, radius)
    covariance = _box(photo64 * styled64, radius) - mean_photo * mean_styled
    variance = _box(photo64 * photo64, radius) - mean_photo * mean_photo
    return np.clip(covariance / (variance + eps), 0.0, 1.0).astype(np.float32)


def _box(values: np.ndarray, radius: int) -> np.ndarray:
    """Means over (2r+1)² windows, cut at the borders (an integral image)."""
    height, width = values.shape
    integral = np.zeros((height + 1, width + 1))
    integral[1:, 1:] = values.cumsum(0).cumsum(1)
    top, bottom = _window(height, radius)
    left, right = _window(width, radius)
    sums = (integral[bottom][:, right] - integral[top][:, right] - integral[bottom][:, left]
            + integral[top][:, left])
    return sums / ((bottom - top)[:, None] * (right - left)[None, :])


def _window(length: int, radius: int) -> tuple[np.ndarray, np.ndarray]:
    index = np.arange(length)
    return np.clip(index - radius, 0, length), np.clip(index + radius + 1, 0, length)


def _image(channel: np.ndarray) -> Image.Image:
    """One float channel as a Pillow "F" image (its resampling is float, not 8-bit)."""
    return Image.fromarray(np.ascontiguousarray(channel, dtype=np.float32))


def _resized(image: Image.Image, size: tuple[int, int], box: tuple[float, float, float, float],
             resample: Image.Resampling) -> np.ndarray:
    return np.asarray(image.resize(size, resample, box=box))
