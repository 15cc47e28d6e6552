"""Synthetic clips with exactly known motion, made from real photos, for the temporal benchmark.

A video's true motion is never known, so the benchmark makes its own clips: a camera pan, a zoom
with a rotation, and an object moving over a panning background (it covers and uncovers pixels).
Each frame is a resampling of a photo by a motion the generator chose, so the backward flow of
every frame (where each of its pixels was in the previous frame) and which pixels were visible
there are exact, not estimated: the metrics (`benchmarks.temporal_metrics`) warp with them.
The pan and the moving object move by whole pixels, so warping a frame along the true motion
gives the next frame exactly; the zoom is resampled bilinearly, so it does not quite.

Photos come from the eval folder beside the project (../shared/eval, never copied into the
repository); without it, painterly's drawn samples stand in. Nothing here imports torch.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from painterly.images import read_array
from painterly.pixels import resize_to
from painterly.samples import landscape, swirl_painting

from .inputs import EVAL

CLIP_NAMES = ("pan", "zoom-rotate", "moving-object")
PAN_STEP = (3, 1)  # pixels per frame (x, y) the camera moves in the pan
BACKGROUND_STEP = (1, 0)  # the moving-object clip's slow background pan
OBJECT_STEP = (6, 2)  # its object's own motion, pixels per frame (x, y)
ZOOM_END, TURN_END = 1.15, 4.0  # the zoom clip's magnification and rotation (degrees) by its last frame
NOISE_SIGMA = 0.02  # per-frame Gaussian sensor noise on [0, 1] pixels (about 5 of 255 levels)
NOISE_SEED = 0
# The photos the clips are cut from; the moving object crosses the pan's photo, panning slowly.
SOURCES = {"pan": "tubingen.jpg", "zoom-rotate": "golden_gate.jpg", "object": "amber.jpg"}


@dataclass(frozen=True)
class Clip:
    """Frames (HxWx3 float32 in [0, 1]) and their true motion.

    For each frame t ≥ 1 (index t − 1 in the lists): `backward[t-1]` (H, W, 2) float32 in pixels
    (x, y), the previous frame sampled at p + backward(p) shows what frame t shows at p, and
    `visible[t-1]` (H, W) bool, True where that point lay inside the previous frame and was not
    covered there (the rest was just disoccluded, or came in at the border). `clean` is the frames
    before any noise (the frames themselves for a clean clip).
    """

    name: str
    frames: tuple[np.ndarray, ...]
    backward: tuple[np.ndarray, ...]
    visible: tuple[np.ndarray, ...]
    clean: tuple[np.ndarray, ...]
    noise: float = 0.0  # the sensor noise's sigma; 0 for a clean clip

    @property
    def label(self) -> str:
        """Name, size and frames, as the report shows the clip."""
        height, width = self.frames[0].shape[:2]
        noisy = f", noise σ {self.noise:g}" if self.noise else ""
        return f"{self.name} {width}×{height}, {len(self.frames)} frames{noisy}"


def photo(name: str) -> np.ndarray:
    """An eval photo (content/ first, then style/), or a drawn sample when the eval folder is absent."""
    for folder in ("content", "style"):
        path = Path(EVAL) / folder / name
        if path.is_file():
            return read_array(path)[0]
    return swirl_painting(768, 1024) if name == SOURCES["object"] else landscape(768, 1024)


def make_clip(name: str, height: int, width: int, frames: int) -> Clip:
    """One of CLIP_NAMES at height×width with `frames` frames, noise-free."""
    makers: dict[str, Callable[[int, int, int], Clip]] = {"pan": pan, "zoom-rotate": zoom_rotate,
                                                          "moving-object": moving_object}
    return makers[name](height, width, frames)


def pan(height: int, width: int, frames: int, step: tuple[int, int] = PAN_STEP) -> Clip:
    """A camera panning across a photo by `step` whole pixels per frame."""
    dx, dy = step
    source = resize_to(photo(SOURCES["pan"]), height + abs(dy) * frames, width + abs(dx) * frames)
    x0, y0 = (abs(dx) * frames if dx < 0 else 0), (abs(dy) * frames if dy < 0 else 0)
    images = [source[y0 + t * dy:y0 + t * dy + height, x0 + t * dx:x0 + t * dx + width] for t in range(frames)]
    flow = np.broadcast_to(np.array([dx, dy], np.float32), (height, width, 2))
    visible = _inside(flow)
    return _clip("pan", images, [flow] * (frames - 1), [visible] * (frames - 1))


def zoom_rotate(height: int, width: int, frames: int, zoom: float = ZOOM_END, turn: float = TURN_END) -> Clip:
    """A camera zooming in (to `zoom`×) and turning (by `turn` degrees) about the frame's centre, evenly
    over the clip; frames are bilinear samples of a photo larger than the view."""
    source = resize_to(photo(SOURCES["zoom-rotate"]), round(1.5 * height), round(1.5 * width))
    centre_source = np.array([(source.shape[1] - 1) / 2, (source.shape[0] - 1) / 2])
    centre = np.array([(width - 1) / 2, (height - 1) / 2])
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    offsets = np.stack([xs - centre[0], ys - centre[1]], axis=-1)  # p − centre

    def scale_angle(t: int) -> tuple[float, float]:
        share = t / max(frames - 1, 1)
        return 1.0 + (zoom - 1.0) * share, math.radians(turn * share)

    images, flows = [], []
    for t in range(frames):
        scale, angle = scale_angle(t)
        where = centre_source + _rotate(offsets, angle) / scale  # the source point frame t shows at p
        images.append(sample(source, where[..., 0], where[..., 1]))
        if t:
            previous_scale, previous_angle = scale_angle(t - 1)
            # The previous frame showed the same source point at centre + s_{t-1} R(-a_{t-1}) (source point − c).
            moved = centre + _rotate(offsets, angle - previous_angle) * (previous_scale / scale)
            flows.append((moved - (centre + offsets)).astype(np.float32))
    return _clip("zoom-rotate", images, flows, [_inside(flow) for flow in flows])


def moving_object(height: int, width: int, frames: int, step: tuple[int, int] = OBJECT_STEP,
                  background_step: tuple[int, int] = BACKGROUND_STEP) -> Clip:
    """An elliptical cut-out of another photo crossing a slowly panning background by `step` whole
    pixels per frame: it covers background ahead of it and uncovers it behind (disocclusions)."""
    (dx, dy), (bx, by) = step, background_step
    background = pan(height, width, frames, (bx, by))
    object_h, object_w = max(height * 2 // 5, 4), max(width * 3 // 10, 4)
    cutout = resize_to(photo(SOURCES["object"]), object_h, object_w)
    ys, xs = np.mgrid[0:object_h, 0:object_w]
    shape = ((xs + 0.5) / object_w * 2 - 1) ** 2 + ((ys + 0.5) / object_h * 2 - 1) ** 2 <= 1.0
    start = (width // 10, height // 5)

    def covered(t: int) -> np.ndarray:
        """The object's pixels in frame t, an (H, W) bool mask."""
        mask = np.zeros((height, width), bool)
        x, y = start[0] + t * dx, start[1] + t * dy
        top, left = max(y, 0), max(x, 0)
        bottom, right = min(y + object_h, height), min(x + object_w, width)
        if bottom > top and right > left:
            mask[top:bottom, left:right] = shape[top - y:bottom - y, left - x:right - x]
        return mask

    images, flows, visibles = [], [], []
    for t in range(frames):
        image, mask = background.frames[t].copy(), covered(t)
        x, y = start[0] + t * dx, start[1] + t * dy
        rows, cols = np.nonzero(mask)
        image[rows, cols] = cutout[rows - y, cols - x]
        images.append(image)
        if t:
            flow = np.empty((height, width, 2), np.float32)
            flow[...] = (bx, by)
            flow[mask] = (-dx, -dy)
            visible = _inside(flow)
            before = covered(t - 1)
            rows, cols = np.nonzero(~mask & visible)  # background now: was its point behind the object then?
            visible[rows, cols] = ~before[rows + by, cols + bx]
            flows.append(flow)
            visibles.append(visible)
    return _clip("moving-object", images, flows, visibles)


def with_noise(clip: Clip, sigma: float = NOISE_SIGMA, seed: int = NOISE_SEED) -> Clip:
    """The same clip with independent Gaussian sensor noise on every frame (clipped to [0, 1]); the
    motion and `clean` stay those of the noise-free frames."""
    generator = np.random.default_rng(seed)
    noisy = tuple(np.clip(frame + generator.normal(0.0, sigma, frame.shape), 0.0, 1.0).astype(np.float32)
                  for frame in clip.frames)
    return dataclasses.replace(clip, frames=noisy, noise=sigma)


def static(image: np.ndarray, frames: int) -> Clip:
    """A still camera on one image: zero motion, every pixel visible (a known answer for the tests)."""
    height, width = image.shape[:2]
    flow = np.zeros((height, width, 2), np.float32)
    visible = np.ones((height, width), bool)
    return _clip("static", [image] * frames, [flow] * (frames - 1), [visible] * (frames - 1))


def sample(image: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """`image` (HxWxC) at the points (x, y), bilinear, the border replicated; float32.

    Whole-pixel points give the pixels exactly."""
    height, width = image.shape[:2]
    x = np.clip(x, 0, width - 1)
    y = np.clip(y, 0, height - 1)
    x0, y0 = np.floor(x).astype(np.intp), np.floor(y).astype(np.intp)
    x1, y1 = np.minimum(x0 + 1, width - 1), np.minimum(y0 + 1, height - 1)
    fx, fy = (x - x0)[..., None], (y - y0)[..., None]
    top = image[y0, x0] * (1 - fx) + image[y0, x1] * fx
    bottom = image[y1, x0] * (1 - fx) + image[y1, x1] * fx
    return (top * (1 - fy) + bottom * fy).astype(np.float32)


def warp_back(image: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """The previous frame (or its stylisation) brought into the current frame's geometry: `image`
    sampled at p + flow(p)."""
    ys, xs = np.mgrid[0:flow.shape[0], 0:flow.shape[1]]
    return sample(image, xs + flow[..., 0], ys + flow[..., 1])


def _inside(flow: np.ndarray) -> np.ndarray:
    """Where p + flow(p) lies inside the frame: (H, W) bool."""
    height, width = flow.shape[:2]
    ys, xs = np.mgrid[0:height, 0:width]
    x, y = xs + flow[..., 0], ys + flow[..., 1]
    return (x >= 0) & (x <= width - 1) & (y >= 0) & (y <= height - 1)


def _rotate(points: np.ndarray, angle: float) -> np.ndarray:
    """(…, 2) points (x, y) turned by `angle` radians (counter-clockwise on screen: y points down)."""
    c, s = math.cos(angle), math.sin(angle)
    return np.stack([c * points[..., 0] + s * points[..., 1], -s * points[..., 0] + c * points[..., 1]], axis=-1)


def _clip(name: str, images: list[np.ndarray], flows: list[np.ndarray], visible: list[np.ndarray]) -> Clip:
    frames = tuple(np.ascontiguousarray(image, dtype=np.float32) for image in images)
    return Clip(name, frames, tuple(flows), tuple(visible), clean=frames)
