"""A sample photo and a sample painting, drawn by code so the project ships no
downloaded images and `painterly demo` works on a fresh, offline machine.

Both are deterministic: the same pixels on every machine.
"""

from __future__ import annotations

import numpy as np


def landscape(height: int = 384, width: int = 512) -> np.ndarray:
    """A photo-like scene: sky at dusk, sun, three mountain ridges, a lake with reflections."""
    rng = np.random.default_rng(7)
    y = np.linspace(0, 1, height)[:, None]
    x = np.linspace(0, 1, width)[None, :]
    horizon = 0.62
    sky_top, sky_low = np.array([0.12, 0.25, 0.55]), np.array([0.98, 0.72, 0.45])
    t = np.clip(y / horizon, 0, 1)[..., None]
    image = sky_top * (1 - t) + sky_low * t + 0 * x[..., None]
    sun = np.exp(-(((x - 0.7) ** 2) + ((y - 0.45) ** 2) * 1.2) / 0.004)[..., None]
    glow = np.exp(-(((x - 0.7) ** 2) + ((y - 0.45) ** 2)) / 0.05)[..., None]
    image = image + sun * np.array([1.0, 0.95, 0.8]) + 0.25 * glow * np.array([1.0, 0.6, 0.3])
    ridges = [(0.40, 0.07, np.array([0.42, 0.42, 0.55])), (0.48, 0.06, np.array([0.25, 0.30, 0.35])),
              (0.55, 0.05, np.array([0.12, 0.22, 0.14]))]
    for base, amplitude, colour in ridges:
        phase = rng.uniform(0, 2 * np.pi, 3)
        line = base + amplitude * (np.sin(7 * x + phase[0]) + 0.5 * np.sin(17 * x + phase[1])
                                   + 0.25 * np.sin(41 * x + phase[2]))
        mask = ((y > line) & (y < horizon))[..., None]
        shade = colour * (0.8 + 0.4 * (y - line))[..., None]
        image = np.where(mask, shade, image)
    lake = y > horizon
    mirror = np.clip((2 * horizon - y) * (height - 1), 0, height - 1).astype(int)[:, 0]
    ripple = (3 * np.sin(np.linspace(0, 60, height))[:, None] * np.ones_like(x)).astype(int)
    cols = np.clip(np.arange(width)[None, :] + ripple, 0, width - 1)
    reflection = image[mirror[:, None], cols] * np.array([0.7, 0.75, 0.85])
    image = np.where(lake[..., None], reflection, image)
    image = image + rng.normal(0, 0.015, image.shape)
    return np.clip(image, 0, 1).astype(np.float32)


def swirl_painting(height: int = 384, width: int = 384) -> np.ndarray:
    """A painting-like texture: bold strokes along swirling flow lines in blues and yellows."""
    rng = np.random.default_rng(11)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    vx, vy = np.zeros_like(xx), np.zeros_like(yy)
    for cx, cy, strength in rng.uniform([0, 0, -1], [width, height, 1], (6, 3)):
        dx, dy = xx - cx, yy - cy
        falloff = np.exp(-(dx**2 + dy**2) / (2 * (0.25 * width) ** 2))
        vx += -dy * falloff * np.sign(strength)
        vy += dx * falloff * np.sign(strength)
    norm = np.hypot(vx, vy) + 1e-6
    vx, vy = vx / norm, vy / norm
    # Line-integral convolution of coarse noise along the flow: brush strokes.
    noise = rng.random((height // 3 + 1, width // 3 + 1)).repeat(3, 0).repeat(3, 1)[:height, :width]
    strokes = np.zeros_like(noise)
    for k in range(-10, 11):
        sy = np.clip((yy + k * vy).astype(int), 0, height - 1)
        sx = np.clip((xx + k * vx).astype(int), 0, width - 1)
        strokes += noise[sy, sx]
    strokes = (strokes / 21 - 0.5) * 3 + 0.5
    angle = np.arctan2(vy, vx)
    palette = np.array([[0.05, 0.12, 0.38], [0.15, 0.35, 0.70], [0.45, 0.65, 0.85], [0.95, 0.85, 0.30]])
    band = (np.sin(3 * angle + xx / 40) * 0.5 + 0.5) * 0.6 + np.clip(strokes, 0, 1) * 0.4
    index = np.clip(band * (len(palette) - 1), 0, len(palette) - 1.001)
    low = index.astype(int)
    frac = (index - low)[..., None]
    image = palette[low] * (1 - frac) + palette[low + 1] * frac
    image *= (0.75 + 0.35 * np.clip(strokes, 0, 1))[..., None]
    return np.clip(image, 0, 1).astype(np.float32)
