"""The inputs every worker builds the same way: a photo, a painting, training photos, the weights' seed.

The eval images beside the project (../shared/eval) are used when present: a real photo and
a real painting. A fresh clone without them falls back to painterly's drawn samples, so the
benchmark always runs. Nothing here imports torch (the ONNX worker must not load it).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from painterly.images import read_array, save_image
from painterly.pixels import resize_long_side, resize_to
from painterly.samples import landscape, swirl_painting

SEED = 0  # of the random VGG weights (weights.random_state_dict) and the random TransformerNet
EVAL = Path(__file__).resolve().parents[2] / "shared" / "eval"
CONTENT_FILE = EVAL / "content" / "tubingen.jpg"
STYLE_FILE = EVAL / "style" / "starry_night.jpg"


def image_source() -> str:
    """Where the benchmark's content and style images come from, for the report."""
    if CONTENT_FILE.is_file() and STYLE_FILE.is_file():
        return f"{CONTENT_FILE.name} and {STYLE_FILE.name} from {EVAL}"
    return "painterly.samples landscape() and swirl_painting() (eval images not found)"


def _read_or_draw(path: Path, draw: Callable[[int, int], np.ndarray], size: int) -> np.ndarray:
    """The eval image at `path`, else the drawn sample at the size asked for (no upscaling blur)."""
    if path.is_file():
        return read_array(path)[0]
    return draw(size * 3 // 4, size)


def content_image(size: int) -> np.ndarray:
    """The photo, HxWx3 float32, long side `size`."""
    return resize_long_side(_read_or_draw(CONTENT_FILE, landscape, size), size)


def square_content(size: int) -> np.ndarray:
    """The photo squeezed to `size`×`size`: fast-inference sizes are squares, as in design.md's figures."""
    return resize_to(_read_or_draw(CONTENT_FILE, landscape, size), size, size)


def style_image(size: int) -> np.ndarray:
    """The painting, HxWx3 float32, long side `size` (painterly's default style_scale 1)."""
    return resize_long_side(_read_or_draw(STYLE_FILE, swirl_painting, size), size)


def training_photos(count: int, size: int) -> list[np.ndarray]:
    """`count` distinct photos a little larger than `size`×`size` crops: the photo shifted and mirrored."""
    base = resize_to(_read_or_draw(CONTENT_FILE, landscape, size), size * 5 // 4, size * 5 // 3)
    photos = []
    for index in range(count):
        photo = np.roll(base, index * base.shape[1] // count, axis=1)
        photos.append(np.ascontiguousarray(photo[:, ::-1] if index % 2 else photo))
    return photos


def write_training_data(folder: Path, count: int, size: int) -> tuple[Path, Path]:
    """A folder of `count` training photos and a style image file, for painterly's `train()`."""
    photos = folder / "photos"
    for index, photo in enumerate(training_photos(count, size)):
        save_image(photo, photos / f"photo{index}.png")
    style = save_image(style_image(size), folder / "style.png")
    return photos, style
