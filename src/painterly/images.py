"""Image files in and out: the only module that reads or writes image files (through Pillow).

Pixels leave here as float32 RGB in [0, 1] (or, asked for, as the decoded 8-bit values) and
come back either way; the arithmetic on them (8-bit <-> float, layouts, resizing) is in
`pixels.py`. The core works on numpy arrays (HxWx3) so that the ONNX Runtime path runs
without torch; torch is imported only inside the functions that take or return tensors.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import stat
import sys
import threading
import warnings
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from io import BytesIO
from pathlib import Path
from typing import TYPE_CHECKING, Any
from xml.etree import ElementTree
from xml.sax.saxutils import escape

import numpy as np
from PIL import Image, ImageCms, ImageOps, PngImagePlugin, TiffImagePlugin, UnidentifiedImageError

from painterly.atomic import atomic_path, same_file
from painterly.errors import ImageError, PainterlyError, UsageError
from painterly.pixels import over_white, over_white_uint8, to_array, to_float32, to_numpy, to_tensor, to_uint8
from painterly.video_av import VIDEO_EXTENSIONS

if TYPE_CHECKING:
    import torch

StrPath = str | os.PathLike[str]

DEFAULT_MAX_PIXELS: int = 178_956_970  # ~ 13.4k x 13.4k, Pillow's own hard limit
MIN_SIDE: int = 16  # smallest side VGG's four 2x poolings leave something of
WRITABLE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff")
SETTINGS_KEY = "painterly"

_MAX_PIXELS_ENV = "PAINTERLY_MAX_PIXELS"
_RAISE_THE_LIMIT = f"raise it with --max-pixels or {_MAX_PIXELS_ENV}"
_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP", ".tif": "TIFF", ".tiff": "TIFF"}
_KEEPS_ALPHA = frozenset({"PNG", "WEBP", "TIFF"})
_TIFF_IMAGE_DESCRIPTION = 270
_XMP_NAMESPACE = "urn:painterly:xmp/"
# Pillow's decompression-bomb limit is a module global: set under this lock, for one decode at a time.
_PILLOW_LIMIT_LOCK = threading.RLock()


# --- reading ---------------------------------------------------------------------------------


def read_array(
    path: StrPath, *, max_pixels: int | None = None, min_side: int = MIN_SIDE, dtype: type = np.float32
) -> tuple[np.ndarray, np.ndarray | None]:
    """Read the first frame of any image Pillow opens, upright and in sRGB.

    Returns (rgb float32 HxWx3 in [0, 1] composited over white, alpha float32 HxW in [0, 1]
    or None). The size is checked from the header before any pixel is decoded.

    `dtype=np.uint8` returns both as 8-bit values instead, and for 8-bit sources (nearly all
    files) without any float copy: a quarter of the memory, for callers whose output is
    8-bit anyway. 16-bit and float sources go through the float path and are then rounded to
    8 bits, exactly as `save_image` would round them.
    """
    if dtype not in (np.float32, np.uint8):
        raise ValueError(f"read_array reads float32 or uint8, not {dtype}")
    shown = os.fspath(path)
    limit = _max_pixels(max_pixels)
    with _open(path, shown) as img:
        _check_size(img.size, shown, limit, min_side)
        with _decoding(shown, limit, quiet_c=img.format == "TIFF"):
            _decode(img)
            _check_size(img.size, shown, limit, min_side)  # the size decoding found, if it differs
            return _to_uint8_rgb(img) if dtype == np.uint8 else _to_float_rgb(img)


def load_image(path: StrPath, *, max_pixels: int | None = None, min_side: int = MIN_SIDE) -> torch.Tensor:
    """Read an image as a (1, 3, H, W) float32 tensor in [0, 1]; transparency becomes white."""
    rgb, _ = read_array(path, max_pixels=max_pixels, min_side=min_side)
    return to_tensor(rgb)


def load_image_with_alpha(
    path: StrPath, *, max_pixels: int | None = None, min_side: int = MIN_SIDE
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Like `load_image`, plus the alpha channel as (1, 1, H, W) so it can be put back on save."""
    import torch

    rgb, alpha = read_array(path, max_pixels=max_pixels, min_side=min_side)
    return to_tensor(rgb), None if alpha is None else torch.from_numpy(alpha)[None, None]


def read_settings(path: StrPath) -> dict | None:
    """The settings dict `save_image` stored in the file, or None when there is none.

    A stylised image painterly wrote holds one record, from the CLI, the API and the web UI alike:
    "painterly" (the version), "method" ("gatys", "fast" or "adain"), "config" (the settings) and the
    inputs (and, for "fast" and "adain", the model; for "adain", the paintings) by name and SHA-256;
    `pipeline.settings_for` makes the Gatys one."""
    shown = os.fspath(path)
    with _open(path, shown) as img, _decoding(shown):
        if img.format == "PNG":
            return parse_settings(img.info.get(SETTINGS_KEY))
        envelope = parse_settings(_envelope_text(img))
    return None if envelope is None else parse_settings(envelope.get(SETTINGS_KEY))


def check_pixels(shown: str, width: int, height: int, max_pixels: int | None = None) -> None:
    """Refuse `width`x`height` over the pixel limit: the one check every kind of input goes through
    (still images, each frame of an animation or video, and any size an input is resized to)."""
    _check_size((width, height), shown, _max_pixels(max_pixels), 1)


def _max_pixels(given: int | None) -> int:
    """The argument, else the environment variable, else the default."""
    raw = given if given is not None else os.environ.get(_MAX_PIXELS_ENV, DEFAULT_MAX_PIXELS)
    try:
        limit = int(raw)
    except ValueError:
        raise UsageError(f"{_MAX_PIXELS_ENV} must be a whole number of pixels, got {raw!r}") from None
    if limit < 1:
        raise UsageError(f"the pixel limit must be positive, got {limit}")
    return limit


def _open(path: StrPath, shown: str) -> Image.Image:
    """Open the file reading only its header, so that the size can be checked before decoding."""
    _check_is_file(path, shown)
    with _decoding(shown):  # no pixel limit here: _check_size does that check with a clearer message
        return Image.open(path)


class _Refused(Exception):
    """Decoded data painterly will not pass on; the message lacks only the file's name."""


@contextmanager
def _decoding(shown: str, limit: int | None = None, *, quiet_c: bool = False) -> Iterator[None]:
    """The one boundary between Pillow's format plugins and painterly.

    Every failure inside it, whatever a plugin raises (OSError, SyntaxError, struct.error,
    IndexError, RuntimeError, NotImplementedError, its own format errors, MemoryError from a
    lying length field, ...), leaves as one ImageError line naming the file, and nothing is
    printed meanwhile: Pillow's warnings are silenced and, with `quiet_c`, so is the C stderr
    libtiff writes its warnings to. `limit` is the pixel limit Pillow enforces while decoding
    (frames and tiles can be larger than the header said); None switches its check off.
    """
    try:
        with _pillow_pixel_limit(limit), _c_stderr_silenced(quiet_c):
            yield
    except PainterlyError:
        raise
    except _Refused as exc:
        raise ImageError(f"{shown}: {exc}") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        message = f"{shown}: image data is over the limit of {limit or 0:,} pixels; {_RAISE_THE_LIMIT}"
        raise ImageError(message) from None
    except UnidentifiedImageError:
        if Path(shown).suffix.lower() in VIDEO_EXTENSIONS:  # a clip given where a photo or painting goes
            raise ImageError(f"{shown}: a video, where an image is needed") from None
        raise ImageError(f"{shown}: not an image Pillow can read") from None
    except OSError as exc:
        raise _read_error(shown, exc) from exc
    except MemoryError:
        raise ImageError(f"{shown}: truncated or corrupt image data (it asks for more memory than there is)") from None
    except Exception as exc:  # noqa: BLE001 - any plugin's failure on damaged data, by design
        raise _corrupt(shown, exc) from exc


def _check_is_file(path: StrPath, shown: str) -> None:
    try:
        status = os.stat(path)
    except OSError as exc:
        raise _read_error(shown, exc) from exc
    if stat.S_ISDIR(status.st_mode):
        raise ImageError(f"{shown}: is a directory, not an image")
    if status.st_size == 0:
        raise ImageError(f"{shown}: empty file")


def _read_error(shown: str, exc: OSError) -> ImageError:
    """One line for an OSError; Pillow's own OSErrors (no errno) mean damaged data."""
    if isinstance(exc, FileNotFoundError):
        return ImageError(f"{shown}: no such file")
    if isinstance(exc, PermissionError):
        return ImageError(f"{shown}: permission denied")
    if exc.errno is None:
        return _corrupt(shown, exc)
    return ImageError(f"{shown}: cannot read ({exc.strerror})")


def _corrupt(shown: str, exc: Exception) -> ImageError:
    reason = " ".join(str(exc).split()) or type(exc).__name__  # one line, never empty
    return ImageError(f"{shown}: truncated or corrupt image data ({reason})")


def _check_size(size: tuple[int, int], shown: str, limit: int, min_side: int) -> None:
    width, height = size
    if width * height > limit:
        raise ImageError(
            f"{shown}: {width}x{height} = {width * height:,} pixels is over the limit of {limit:,}; "
            f"{_RAISE_THE_LIMIT}"
        )
    if min(width, height) < min_side:
        raise ImageError(
            f"{shown}: {width}x{height} is too small; each side must be at least {min_side} pixels"
        )


@contextmanager
def _pillow_pixel_limit(limit: int | None) -> Iterator[None]:
    """Have Pillow's decompression-bomb check enforce `limit` exactly, then put its setting back.

    Pillow reads a module global and only warns between it and twice it, so the global is set
    under a lock (and restored, never leaked) and that warning is made an error. Pillow's other
    warnings (corrupt EXIF, truncated TIFF tags, ...) and its log records are silenced: the
    library never prints, and a damaged file is reported once, by the ImageError.
    """
    with _PILLOW_LIMIT_LOCK, warnings.catch_warnings(), _pillow_logs_silenced():
        warnings.simplefilter("ignore")
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, limit
        try:
            yield
        finally:
            Image.MAX_IMAGE_PIXELS = saved


@contextmanager
def _pillow_logs_silenced() -> Iterator[None]:
    """Disable Pillow's loggers ("PIL" and its plugins' children), then restore them.

    TiffImagePlugin logs errors about damaged files before raising; with no logging set up,
    Python's last-resort handler prints them on stderr. Every plugin is imported first, so
    that each one's logger exists to be disabled.
    """
    Image.init()
    names = [name for name in list(logging.root.manager.loggerDict) if name == "PIL" or name.startswith("PIL.")]
    loggers = [logging.getLogger(name) for name in names]
    saved = [logger.disabled for logger in loggers]
    for logger in loggers:
        logger.disabled = True
    try:
        yield
    finally:
        for logger, disabled in zip(loggers, saved):
            logger.disabled = disabled


@contextmanager
def _c_stderr_silenced(active: bool) -> Iterator[None]:
    """Point file descriptor 2 at the null device while libtiff decodes, then put it back.

    libtiff's default handlers write warnings about damaged files ("Using code not yet in
    table", ...) straight to the C stderr, which Python's warnings filters cannot reach.
    Callers hold _PILLOW_LIMIT_LOCK, so two decodes never swap the descriptor at once; what
    another thread writes to fd 2 during a TIFF decode is lost with libtiff's messages.
    """
    saved = _duplicate_stderr() if active else None
    if saved is None:
        yield
        return
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _duplicate_stderr() -> int | None:
    """A copy of file descriptor 2 with Python's own pending output flushed first; None without one."""
    try:
        sys.stderr.flush()
    except (AttributeError, OSError, ValueError):
        pass
    try:
        return os.dup(2)
    except OSError:
        return None


def _decode(img: Image.Image) -> None:
    """Decode the current frame fully and turn it upright, so damaged data fails here, by name.

    Called inside `_decoding`. A still read is of the first frame; a file opened at frame 0
    is not sought again (some plugins, SPIDER's, refuse any seek in a single-image file).
    """
    if img.tell() != 0:
        img.seek(0)
    img.load()
    ImageOps.exif_transpose(img, in_place=True)


def _to_float_rgb(img: Image.Image) -> tuple[np.ndarray, np.ndarray | None]:
    """Any Pillow mode -> (float RGB composited over white, float alpha or None)."""
    if _is_high_depth(img):
        gray = _scaled_gray(img)
        return np.repeat(gray[..., None], 3, axis=2), None
    rgb, alpha = _decoded_rgb(img)
    if alpha is None:
        return to_float32(rgb), None
    alpha = to_float32(alpha)
    return over_white(to_float32(rgb), alpha), alpha


def _to_uint8_rgb(img: Image.Image) -> tuple[np.ndarray, np.ndarray | None]:
    """Any Pillow mode -> (uint8 RGB composited over white, uint8 alpha or None).

    The composite equals the float path's result rounded (see `pixels.over_white_uint8`).
    """
    if _is_high_depth(img):
        rgb, alpha = _to_float_rgb(img)
        return to_uint8(rgb), None if alpha is None else to_uint8(alpha)
    rgb, alpha = _decoded_rgb(img)
    if alpha is None:
        return rgb, None
    return over_white_uint8(rgb, alpha), alpha


def _is_high_depth(img: Image.Image) -> bool:
    """16/32-bit integer and float modes: everything else Pillow decodes to 8 bits per channel."""
    return img.mode == "F" or img.mode.startswith("I")


def _decoded_rgb(img: Image.Image) -> tuple[np.ndarray, np.ndarray | None]:
    """An 8-bit mode -> (uint8 sRGB HxWx3, not yet composited; uint8 alpha HxW or None).

    Both are writable arrays of their own (numpy's view of a Pillow image is read-only).
    """
    icc = img.info.get("icc_profile")
    alpha = None
    if img.has_transparency_data:
        rgba = img.convert("RGBA")
        alpha = np.array(rgba.getchannel("A"))
        img = rgba.convert("RGB")
    return np.array(_to_srgb(img, icc)), alpha


def _scaled_gray(img: Image.Image) -> np.ndarray:
    """16/32-bit integer or float gray scaled by its real range.

    Pillow's convert("RGB") clips these at 255, which turns a 16-bit PNG white. Integers that
    fit 16 bits are read as 16-bit (mode "I" is often 16-bit data widened); floats already in
    [0, 1] are kept; anything else is stretched from its minimum to its maximum.
    """
    values = np.asarray(img, dtype=np.float64)
    if not np.isfinite(values).all():
        raise _Refused("float pixels include infinity or NaN; only finite values can be shown")
    low, high = float(values.min()), float(values.max())
    if img.mode.startswith("I") and low >= 0 and high <= 65535:
        low, high = 0.0, 65535.0
    elif img.mode == "F" and low >= 0 and high <= 1:
        low, high = 0.0, 1.0
    return np.clip((values - low) / max(high - low, 1e-12), 0, 1).astype(np.float32)


def _to_srgb(img: Image.Image, icc: bytes | None) -> Image.Image:
    """RGB in sRGB, through the embedded ICC profile when there is one.

    Lab needs no profile: Pillow (since 9.4) converts it to sRGB through lcms itself.
    """
    if icc and img.mode in ("RGB", "CMYK"):
        try:
            embedded = ImageCms.ImageCmsProfile(BytesIO(icc))
            converted = ImageCms.profileToProfile(img, embedded, _srgb(), outputMode="RGB")
            if converted is not None:  # None only when converting in place, which this is not
                return converted
        except (ImageCms.PyCMSError, OSError):
            pass  # a broken or mismatched profile: show the pixels untagged, as viewers do
    return img.convert("RGB")


@cache
def _srgb() -> ImageCms.ImageCmsProfile:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))


def _envelope_text(img: Image.Image) -> str | bytes | None:
    """Where JPEG, WebP and TIFF keep the JSON envelope {SETTINGS_KEY: settings}."""
    if img.format in ("JPEG", "GIF"):
        return img.info.get("comment")
    if img.format == "WEBP":
        return _from_xmp(img.info.get("xmp"))
    if isinstance(img, TiffImagePlugin.TiffImageFile):
        return img.tag_v2.get(_TIFF_IMAGE_DESCRIPTION)
    return None


def parse_settings(text: Any) -> dict | None:
    """A dict decoded from JSON text (or already decoded); None for anything else.

    Also reads the settings other containers keep as text (a video's comment tag)."""
    if isinstance(text, (str, bytes)):
        try:
            text = json.loads(text)
        except ValueError:
            return None
    return text if isinstance(text, dict) else None


# --- writing ---------------------------------------------------------------------------------


def save_image(
    image: Any,
    path: StrPath,
    *,
    settings: dict | None = None,
    alpha: Any = None,
    protect: Iterable[StrPath] = (),
    quality: int = 95,
) -> Path:
    """Write an image atomically, with the settings that made it stored in the file.

    `image` is a tensor (1,3,H,W)/(3,H,W) or an HxWx3 array in [0, 1], or an HxWx3 uint8
    array, written as it is; `alpha` (HxW, or with unit batch/channel axes; float in [0, 1]
    or uint8) is kept by PNG, WebP and TIFF and dropped by JPEG. Float pixels are rounded to
    8 bits a chunk of rows at a time, so a large image needs no full-size float temporaries.
    `protect` names input files that must never be overwritten. Missing parent folders are
    created. Returns the path written.
    """
    path = Path(path)
    image_format = check_output(path, protect=protect)
    picture = _to_pil(image, alpha if image_format in _KEEPS_ALPHA else None)
    options = _save_options(image_format, settings, quality)
    _write_atomically(picture, path, image_format, options)  # a failed write: atomic_path's OutputError line
    return path


def check_output(path: StrPath, *, protect: Iterable[StrPath] = ()) -> str:
    """Refuse an output path before any work: unknown extension, or one of the inputs.

    Returns the Pillow format name the extension selects.
    """
    shown = os.fspath(path)
    image_format = _format_for(Path(path), shown)
    _refuse_to_overwrite(Path(path), protect, shown)
    return image_format


def _format_for(path: Path, shown: str) -> str:
    image_format = _FORMATS.get(path.suffix.lower())
    if image_format is None:
        raise ImageError(f"{shown}: cannot write this file type; use one of {', '.join(WRITABLE_EXTENSIONS)}")
    return image_format


def _refuse_to_overwrite(path: Path, protect: Iterable[StrPath], shown: str) -> None:
    if any(same_file(path, Path(original)) for original in protect):
        raise ImageError(f"{shown}: refusing to overwrite an input file")


def _to_pil(image: Any, alpha: Any) -> Image.Image:
    rgb = to_uint8(_rgb_array(image))
    if alpha is None:
        return Image.fromarray(rgb)
    return Image.fromarray(np.dstack([rgb, to_uint8(_alpha_array(alpha, rgb.shape[:2]))]))


def _rgb_array(image: Any) -> np.ndarray:
    """An HxWx3 uint8 or float32 array as it is (`to_uint8` only reads it); anything else through `to_array`."""
    is_plain = isinstance(image, np.ndarray) and image.ndim == 3 and image.shape[2] == 3
    return image if is_plain and image.dtype in (np.uint8, np.float32) else to_array(image)


def _alpha_array(alpha: Any, size: tuple[int, int]) -> np.ndarray:
    height, width = size
    array = alpha if isinstance(alpha, np.ndarray) and alpha.dtype == np.uint8 else to_numpy(alpha)
    if array.shape not in {(height, width), (1, height, width), (1, 1, height, width), (height, width, 1)}:
        raise ValueError(f"alpha has shape {array.shape}; expected {height}x{width} to match the image")
    return array.reshape(height, width)


def _save_options(image_format: str, settings: dict | None, quality: int) -> dict[str, Any]:
    """Pillow save arguments, with the settings in the slot each format keeps them in."""
    options: dict[str, Any] = {"quality": quality} if image_format in ("JPEG", "WEBP") else {}
    if settings is None:
        return options
    if image_format == "PNG":
        info = PngImagePlugin.PngInfo()
        info.add_itxt(SETTINGS_KEY, json.dumps(settings))
        return {**options, "pnginfo": info}
    envelope = json.dumps({SETTINGS_KEY: settings})
    if image_format in ("JPEG", "GIF"):
        return {**options, "comment": envelope}
    if image_format == "WEBP":
        return {**options, "xmp": _xmp_packet(envelope)}
    return {**options, "description": envelope}  # TIFF ImageDescription (tag 270)


def _xmp_packet(text: str) -> bytes:
    return (
        '<x:xmpmeta xmlns:x="adobe:ns:meta/">'
        '<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        f'<rdf:Description rdf:about="" xmlns:painterly="{_XMP_NAMESPACE}">'
        f"<painterly:settings>{escape(text)}</painterly:settings>"
        "</rdf:Description></rdf:RDF></x:xmpmeta>"
    ).encode()


def _from_xmp(packet: bytes | None) -> str | None:
    if not packet:
        return None
    try:
        node = ElementTree.fromstring(packet).find(f".//{{{_XMP_NAMESPACE}}}settings")
    except ElementTree.ParseError:
        return None
    return None if node is None else node.text


def _write_atomically(picture: Image.Image, path: Path, image_format: str, options: dict[str, Any]) -> None:
    with atomic_path(path) as temporary, open(temporary, "wb") as file:
        picture.save(file, format=image_format, **options)


# --- animations (GIF, WebP) ---------------------------------------------------------------------


@dataclass
class Animation:
    """The frames of an animated image, decoded one at a time as they are iterated."""

    frames: Iterator[tuple[np.ndarray, int]]  # (HxWx3 float32 over white, duration in ms)
    count: int
    loop: int | None  # None: play once (a GIF without a loop block)


def frame_count(path: StrPath) -> int:
    """How many frames the image file has (1 for a still image).

    Counting reads frame headers only, so no pixel limit applies here: each frame's size is
    checked when it is decoded. A damaged file raises ImageError naming it.
    """
    shown = os.fspath(path)
    with _open(path, shown) as img, _decoding(shown):
        return _frames_in(img)


def is_high_depth(path: StrPath) -> bool:
    """Whether the file holds 16/32-bit or float grey, from its header: `read_array(dtype=np.uint8)` rounds
    such values to 8 bits, which merges levels a mask keeps apart. A damaged file raises ImageError naming it."""
    shown = os.fspath(path)
    with _open(path, shown) as img, _decoding(shown):
        return _is_high_depth(img)


def _frames_in(img: Image.Image) -> int:
    count = getattr(img, "n_frames", 1)
    if not isinstance(count, int) or count < 1:
        raise _Refused(f"truncated or corrupt image data ({count!r} frames)")
    return count


@contextmanager
def open_animation(path: StrPath, *, max_pixels: int | None = None) -> Iterator[Animation]:
    """Open an animated GIF or WebP; its frames keep their own durations.

    Every frame's real size (a GIF frame may be larger than its declared screen) is checked
    against the pixel limit before that frame is decoded.
    """
    shown = os.fspath(path)
    limit = _max_pixels(max_pixels)
    with _open(path, shown) as img:
        _check_size(img.size, shown, limit, MIN_SIDE)
        with _decoding(shown):
            count, loop = _frames_in(img), img.info.get("loop")
        yield Animation(_animation_frames(img, shown, limit), count, loop)


def _animation_frames(img: Image.Image, shown: str, limit: int) -> Iterator[tuple[np.ndarray, int]]:
    """Each frame decoded inside the boundary (never holding its lock across a yield)."""
    for index in itertools.count():
        with _decoding(shown, limit, quiet_c=img.format == "TIFF"):
            if index > 0:
                try:
                    img.seek(index)  # reads the frame's header: its box may grow the canvas
                except EOFError:
                    return  # no more frames
            check_pixels(shown, *img.size, max_pixels=limit)
            img.load()
            check_pixels(shown, *img.size, max_pixels=limit)
            rgb, _ = _to_float_rgb(img)  # loading the frame also sets WebP's duration
            duration = int(img.info.get("duration", 0))
        yield rgb, duration


def save_animation(frames: Sequence[np.ndarray], durations: Sequence[int], path: StrPath, *,
                   loop: int | None = 0, settings: dict | None = None) -> Path:
    """Write an animated GIF or WebP atomically, with per-frame durations (ms) and the settings.

    Frames are HxWx3 arrays, uint8 or float in [0, 1].
    """
    path = Path(path)
    image_format = {".gif": "GIF", ".webp": "WEBP"}.get(path.suffix.lower())
    if image_format is None:
        raise ImageError(f"{path}: animations are written as .gif or .webp")
    if not frames:
        raise ImageError(f"{path}: no frames to write")
    first, *rest = (Image.fromarray(to_uint8(f)) for f in frames)
    options = _save_options(image_format, settings, quality=90)
    if loop is not None:
        options["loop"] = loop
    with atomic_path(path) as temporary:  # a failed write: atomic_path's OutputError line
        first.save(temporary, format=image_format, save_all=True, append_images=rest,
                   duration=list(durations), **options)
    return path


# --- folders ---------------------------------------------------------------------------------


def image_files(folder: StrPath, *, recursive: bool = True, also: Iterable[str] = ()) -> list[Path]:
    """Sorted image files in a folder (by extensions Pillow can open, plus `also`), hidden ones skipped."""
    shown = os.fspath(folder)
    root = Path(folder)
    if not root.exists():
        raise ImageError(f"{shown}: no such folder")
    if not root.is_dir():
        raise ImageError(f"{shown}: is a file, not a folder")
    readable = _readable_extensions() | {suffix.lower() for suffix in also}
    return sorted(
        path
        for path in _files_under(root, recursive)
        if not path.name.startswith(".") and path.suffix.lower() in readable
    )


def _files_under(root: Path, recursive: bool) -> Iterator[Path]:
    """Files in root (and below, skipping hidden folders); symlinked folders are not followed."""
    for directory, subdirectories, files in os.walk(root):
        subdirectories[:] = [name for name in subdirectories if not name.startswith(".")]
        yield from (Path(directory, name) for name in files)
        if not recursive:
            return


@cache
def _readable_extensions() -> frozenset[str]:
    return frozenset(ext for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN)
