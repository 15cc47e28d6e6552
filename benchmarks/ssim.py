"""SSIM (Wang, Bovik, Sheikh, Simoncelli 2004) for the stroke-scale workload: does a large output,
downscaled, look like its preview?

The paper's form: an 11-tap Gaussian window of σ 1.5, K1 = 0.01, K2 = 0.03, pixel values in [0, 1]
(L = 1), the mean of the SSIM map over the pixels whose whole window lies inside the image. On
luminance (BT.601 luma of the sRGB values, YIQ's Y as painterly.color) and on colour: the mean of
the three sRGB channels' SSIMs. numpy only.
"""

from __future__ import annotations

import numpy as np

SIGMA, RADIUS = 1.5, 5  # the 11-tap window
K1, K2 = 0.01, 0.03
LUMA = np.array([0.299, 0.587, 0.114])


def _window() -> np.ndarray:
    taps = np.exp(-0.5 * (np.arange(-RADIUS, RADIUS + 1) / SIGMA) ** 2)
    return taps / taps.sum()


def _filtered(values: np.ndarray) -> np.ndarray:
    """The Gaussian-weighted mean around each pixel whose window fits inside (separable, 'valid')."""
    taps = _window()
    size = 2 * RADIUS + 1
    rows = sum(weight * values[index : len(values) - size + 1 + index] for index, weight in enumerate(taps))
    width = values.shape[1]
    return sum(weight * rows[:, index : width - size + 1 + index] for index, weight in enumerate(taps))


def ssim(first: np.ndarray, second: np.ndarray) -> float:
    """Mean SSIM of two HxW images in [0, 1] of the same size (at least 11 pixels a side)."""
    x, y = np.asarray(first, dtype=np.float64), np.asarray(second, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 2 or min(x.shape) < 2 * RADIUS + 1:
        raise ValueError(f"SSIM needs two HxW images of one size, at least {2 * RADIUS + 1} px a side: "
                         f"{x.shape}, {y.shape}")
    c1, c2 = K1**2, K2**2
    mean_x, mean_y = _filtered(x), _filtered(y)
    var_x = _filtered(x * x) - mean_x**2
    var_y = _filtered(y * y) - mean_y**2
    covariance = _filtered(x * y) - mean_x * mean_y
    ssim_map = ((2 * mean_x * mean_y + c1) * (2 * covariance + c2)
                / ((mean_x**2 + mean_y**2 + c1) * (var_x + var_y + c2)))
    return float(ssim_map.mean())


def to_unit(image: np.ndarray) -> np.ndarray:
    """uint8 or float HxWx3 -> float64 in [0, 1]."""
    array = np.asarray(image)
    return array / 255.0 if array.dtype == np.uint8 else array.astype(np.float64)


def luminance_ssim(first: np.ndarray, second: np.ndarray) -> float:
    """SSIM of the two HxWx3 images' luma."""
    return ssim(to_unit(first) @ LUMA, to_unit(second) @ LUMA)


def colour_ssim(first: np.ndarray, second: np.ndarray) -> float:
    """The mean of the R, G and B channels' SSIMs (sRGB values as stored)."""
    x, y = to_unit(first), to_unit(second)
    return float(np.mean([ssim(x[..., channel], y[..., channel]) for channel in range(3)]))
