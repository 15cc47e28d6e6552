"""The decoding boundary holds as a class: any mutated image file loads correctly or raises ImageError.

Valid small files of every format Pillow writes here (animations, 16-bit, float, multi-frame and
multi-size containers included) are mutated byte by byte (bit flips, overwrites, truncation,
insertions, deletions, duplicated ranges, lying length fields), and every reader painterly has
(`read_array` as float and as uint8, `frame_count`, `read_settings`, `open_animation` and its
frames) must either return a correct result or raise `ImageError` with one line naming the file.

The suite runs a fixed, derandomized set of 1,000 examples; the release check runs many more,
`PAINTERLY_FUZZ_EXAMPLES=20000 .venv/bin/python -m pytest tests/test_fuzz_images.py`, and
PAINTERLY_FUZZ_SEED picks other cases (see docs/fuzzing.md).
"""

from __future__ import annotations

import io
import os
import struct
import tempfile
import warnings
import zlib
from collections.abc import Callable
from functools import cache
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st
from PIL import Image

from painterly import images
from painterly.errors import ImageError

EXAMPLES = int(os.environ.get("PAINTERLY_FUZZ_EXAMPLES", "1000"))
SEED = os.environ.get("PAINTERLY_FUZZ_SEED")  # unset: the same derandomized cases on every run
LIMIT = 1 << 18  # pixels: a mutated header may claim any size; the test must not allocate gigabytes
FRAMES_CHECKED = 6  # frames of an animation decoded per case (a mutated file may claim thousands)
WIDTH, HEIGHT = 20, 18  # both sides over images.MIN_SIDE, so the unmutated files all load


# --- the valid files -------------------------------------------------------------------------


def _pictures() -> dict[str, Image.Image]:
    """One small picture per mode the writers take, with real detail (so codecs emit real data)."""
    rng = np.random.default_rng(0)
    ramp = np.linspace(0, 255, WIDTH, dtype=np.float32)[None, :, None]
    rgb = np.clip(rng.normal(0, 40, (HEIGHT, WIDTH, 3)) + ramp, 0, 255).astype(np.uint8)
    alpha = np.tile(np.linspace(0, 255, HEIGHT, dtype=np.uint8)[:, None], (1, WIDTH))
    base = Image.fromarray(rgb)
    pictures = {
        "RGB": base,
        "RGBA": Image.fromarray(np.dstack([rgb, alpha])),
        "L": base.convert("L"),
        "LA": Image.fromarray(np.dstack([rgb[..., 0], alpha])),
        "P": base.convert("P", palette=Image.Palette.ADAPTIVE, colors=32),
        "1": base.convert("1"),
        "CMYK": base.convert("CMYK"),
        "I;16": Image.fromarray(rgb[..., 1].astype(np.uint16) * 257),
        "I": Image.fromarray(rgb[..., 2].astype(np.int32) * 4000),
        "F": Image.fromarray(rgb[..., 0].astype(np.float32) / 300),
    }
    pictures["PA"] = pictures["P"].convert("PA")
    return pictures


def _frames(size: tuple[int, int] = (WIDTH, HEIGHT), count: int = 3) -> list[Image.Image]:
    """Frames that differ in colour and in a moving block, so encoders keep sub-rectangles."""
    frames = []
    for index in range(count):
        frame = Image.new("RGB", size, (40 * index, 200 - 50 * index, 90))
        frame.paste((255, 255, 0), (3 * index, 2, 3 * index + 6, 9))
        frames.append(frame)
    return frames


def _encode(picture: Image.Image, image_format: str, **options) -> bytes:
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        picture.save(buffer, format=image_format, **options)
    return buffer.getvalue()


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png_16bit_rgb() -> bytes:
    """A 16-bit RGB PNG written by hand (Pillow writes no 16-bit colour PNG)."""
    rows = b"".join(
        b"\x00" + struct.pack(f">{WIDTH * 3}H", *[(y * 3000 + x * 500) % 65536 for x in range(WIDTH) for _ in range(3)])
        for y in range(HEIGHT)
    )
    header = struct.pack(">IIBBBBB", WIDTH, HEIGHT, 16, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", zlib.compress(rows))
            + _png_chunk(b"IEND", b""))


def _with_settings(extension: str) -> bytes:
    """A file painterly itself wrote, settings included (PNG iTXt, JPEG comment, WebP XMP, TIFF tag)."""
    with tempfile.TemporaryDirectory() as folder:
        path = images.save_image(np.asarray(_pictures()["RGB"]), Path(folder, "s" + extension),
                                 settings={"method": "fast", "strength": 0.5, "note": "<ünï>"})
        return path.read_bytes()


def _special_files() -> dict[str, Callable[[], bytes]]:
    """Files the mode-by-mode sweep does not make: animations, codec options, containers."""
    pictures = _pictures()
    rgb, frames = pictures["RGB"], _frames()
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated: exif_transpose runs
    animated = {"save_all": True, "append_images": frames[1:], "duration": [40, 70, 100], "loop": 0}
    return {
        "anim.gif": lambda: _encode(frames[0], "GIF", comment=b"painterly", **animated),
        "anim-transparent.gif": lambda: _encode(frames[0].convert("P"), "GIF", transparency=0, disposal=2,
                                                save_all=True, append_images=[f.convert("P") for f in frames[1:]]),
        "anim-lossless.webp": lambda: _encode(frames[0], "WEBP", lossless=True, **animated),
        "anim-lossy.webp": lambda: _encode(frames[0], "WEBP", quality=50, **animated),
        "anim.png": lambda: _encode(frames[0], "PNG", **animated),  # APNG
        "anim-blend.png": lambda: _encode(frames[0].convert("RGBA"), "PNG", save_all=True, blend=1, disposal=1,
                                          append_images=[f.convert("RGBA") for f in frames[1:]]),
        "pages.tif": lambda: _encode(frames[0], "TIFF", save_all=True,
                                     append_images=[frames[1].convert("L"), frames[2].resize((24, 20))]),
        "anim.avif": lambda: _encode(frames[0], "AVIF", quality=50, **animated),
        "pair.mpo": lambda: _encode(frames[0], "MPO", save_all=True, append_images=frames[1:2]),
        "sizes.ico": lambda: _encode(rgb.resize((32, 32)), "ICO", sizes=[(16, 16), (24, 24), (32, 32)]),
        "bitmaps.ico": lambda: _encode(pictures["RGBA"].resize((24, 24)), "ICO", bitmap_format="bmp",
                                       sizes=[(16, 16), (24, 24)]),
        "rgb16.png": _png_16bit_rgb,
        "exif.jpg": lambda: _encode(rgb, "JPEG", exif=exif),
        "progressive.jpg": lambda: _encode(rgb, "JPEG", progressive=True, optimize=True),
        "icc.jpg": lambda: _encode(rgb, "JPEG", icc_profile=_srgb_profile()),
        "lzw.tif": lambda: _encode(rgb, "TIFF", compression="tiff_lzw"),
        "deflate.tif": lambda: _encode(pictures["F"], "TIFF", compression="tiff_adobe_deflate"),
        "packbits.tif": lambda: _encode(pictures["RGBA"], "TIFF", compression="packbits"),
        "jpeg.tif": lambda: _encode(rgb, "TIFF", compression="jpeg"),
        "group4.tif": lambda: _encode(pictures["1"], "TIFF", compression="group4"),
        "rle.tga": lambda: _encode(rgb, "TGA", compression="tga_rle"),
        "codestream.j2k": lambda: _encode(rgb, "JPEG2000", no_jp2=True),
        "tiled.jp2": lambda: _encode(rgb, "JPEG2000", tile_size=(8, 8), irreversible=True),
        "dxt1.dds": lambda: _encode(rgb, "DDS", pixel_format="DXT1"),
        "dxt5.dds": lambda: _encode(pictures["RGBA"], "DDS", pixel_format="DXT5"),
        "blp1.blp": lambda: _encode(pictures["P"], "BLP", blp_version="BLP1"),
        "16bit.sgi": lambda: _encode(rgb, "SGI", bpc=2),
        "settings.png": lambda: _with_settings(".png"),
        "settings.jpg": lambda: _with_settings(".jpg"),
        "settings.webp": lambda: _with_settings(".webp"),
        "settings.tif": lambda: _with_settings(".tif"),
    }


def _srgb_profile() -> bytes:
    from PIL import ImageCms

    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


# ICNS always writes every size up to 1024² (1.5 MB in colour); its bilevel file is 4 KB.
_SWEEP_SKIPS = {"ICNS": {"RGB", "RGBA", "L", "LA", "P", "I;16", "I", "F", "CMYK", "PA"}}
_EXTENSIONS = {"JPEG": ".jpg", "JPEG2000": ".jp2", "PPM": ".ppm", "SGI": ".sgi", "SPIDER": ".spi", "TIFF": ".tif"}


@cache
def valid_files() -> dict[str, bytes]:
    """Every kind of file Pillow writes and reads back here, named with an extension for it.

    A sweep over `Image.SAVE` × modes (kept when Pillow reads the file back and painterly
    reads it correctly), plus the special files above. Formats Pillow only writes (PDF,
    PALM) or cannot read without an outside program (EPS needs Ghostscript) drop out.
    """
    Image.init()
    extension = dict(_EXTENSIONS)
    for suffix, image_format in Image.registered_extensions().items():
        extension.setdefault(image_format, suffix)
    made: dict[str, bytes] = {}
    for image_format in sorted(Image.SAVE):
        kinds_read: set[str] = set()
        for mode, picture in _pictures().items():
            if mode in _SWEEP_SKIPS.get(image_format, ()):
                continue
            try:
                data = _encode(picture, image_format)
                with Image.open(io.BytesIO(data)) as reread:
                    reread.load()
                    read_mode = reread.mode
            except Exception:  # noqa: BLE001 - this writer does not take this mode, or cannot be read back
                continue
            if read_mode not in kinds_read:  # one file per mode Pillow reads back, not per mode written
                kinds_read.add(read_mode)
                made[f"{image_format.lower()}-{mode.replace(';', '_')}{extension.get(image_format, '')}"] = data
    for name, make in _special_files().items():
        try:
            made[name] = make()
        except Exception:  # noqa: BLE001 - a codec this Pillow build lacks
            continue
    return {name: data for name, data in made.items() if _reads_correctly(name, data)}


def _reads_correctly(name: str, data: bytes) -> bool:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder, name)
        path.write_bytes(data)
        try:
            rgb, alpha = images.read_array(path)
        except ImageError:
            return False
    _check_pixels(rgb, alpha)
    return True


# --- mutations -------------------------------------------------------------------------------


def _at(data: bytes, position: int) -> int:
    return position % (len(data) + 1)


def _flip(data: bytes, position: int, bit: int) -> bytes:
    if not data:
        return data
    index = position % len(data)
    return data[:index] + bytes([data[index] ^ (1 << bit)]) + data[index + 1 :]


def _overwrite(data: bytes, position: int, payload: bytes) -> bytes:
    index = _at(data, position)
    return data[:index] + payload + data[index + len(payload) :]


def _truncate(data: bytes, position: int) -> bytes:
    return data[: _at(data, position)]


def _insert(data: bytes, position: int, payload: bytes) -> bytes:
    index = _at(data, position)
    return data[:index] + payload + data[index:]


def _delete(data: bytes, position: int, length: int) -> bytes:
    index = _at(data, position)
    return data[:index] + data[index + length :]


def _duplicate(data: bytes, position: int, length: int, target: int) -> bytes:
    index = _at(data, position)
    return _insert(data, target, data[index : index + length])


def _lie(data: bytes, position: int, width: int, big_endian: bool, value: int) -> bytes:
    """Overwrite a 2-, 4- or 8-byte field at an aligned offset, where length and size fields live."""
    index = _at(data, position) // width * width
    field = (value & ((1 << 8 * width) - 1)).to_bytes(width, "big" if big_endian else "little")
    return _overwrite(data, index, field)


_POSITION = st.integers(0, 1 << 16)
_LIES = st.sampled_from([0, 1, 2, 0x7F, 0xFF, 0x100, 0x7FFF, 0xFFFF, 0x10000, 0x7FFFFFFF, 0xFFFFFFFF, 0xFFFFFFF0,
                         1 << 62])
MUTATIONS = st.one_of(
    st.tuples(st.just(_flip), _POSITION, st.integers(0, 7)),
    st.tuples(st.just(_overwrite), _POSITION, st.binary(min_size=1, max_size=8)),
    st.tuples(st.just(_truncate), _POSITION),
    st.tuples(st.just(_insert), _POSITION, st.binary(min_size=1, max_size=16)),
    st.tuples(st.just(_delete), _POSITION, st.integers(1, 64)),
    st.tuples(st.just(_duplicate), _POSITION, st.integers(1, 256), _POSITION),
    st.tuples(st.just(_lie), _POSITION, st.sampled_from([2, 4, 8]), st.booleans(),
              st.one_of(_LIES, st.integers(0, (1 << 64) - 1))),
)


def mutate(data: bytes, mutations: list[tuple]) -> bytes:
    for operation, *arguments in mutations:
        data = operation(data, *arguments)
    return data


# --- the property ----------------------------------------------------------------------------


def _check_pixels(rgb: np.ndarray, alpha: np.ndarray | None, dtype: type = np.float32) -> None:
    """What a correct read is: HxWx3 of the dtype asked for, finite and in range; alpha HxW alike."""
    assert rgb.dtype == dtype and rgb.ndim == 3 and rgb.shape[2] == 3, (rgb.dtype, rgb.shape)
    assert rgb.shape[0] >= 1 and rgb.shape[1] >= 1
    if dtype == np.float32:
        assert np.isfinite(rgb).all() and rgb.min() >= 0 and rgb.max() <= 1
    if alpha is not None:
        assert alpha.dtype == dtype and alpha.shape == rgb.shape[:2]
        if dtype == np.float32:
            assert np.isfinite(alpha).all() and alpha.min() >= 0 and alpha.max() <= 1


def _refused(error: ImageError, path: Path) -> None:
    message = str(error)
    assert "\n" not in message and message.startswith(f"{path}: "), message


def check_every_reader(path: Path) -> None:
    """Each reader returns something correct for `path` or raises ImageError naming it; nothing else."""
    for dtype in (np.float32, np.uint8):
        try:
            rgb, alpha = images.read_array(path, max_pixels=LIMIT, dtype=dtype)
        except ImageError as error:
            _refused(error, path)
        else:
            assert rgb.shape[0] * rgb.shape[1] <= LIMIT
            _check_pixels(rgb, alpha, dtype)
    try:
        count = images.frame_count(path)
    except ImageError as error:
        _refused(error, path)
    else:
        assert isinstance(count, int) and count >= 1
    try:
        found = images.read_settings(path)
    except ImageError as error:
        _refused(error, path)
    else:
        assert found is None or isinstance(found, dict)
    try:
        with images.open_animation(path, max_pixels=LIMIT) as animation:
            assert animation.count >= 1
            for index, (frame, duration) in enumerate(animation.frames):
                _check_pixels(frame, None)
                assert frame.shape[0] * frame.shape[1] <= LIMIT and isinstance(duration, int)
                if index + 1 == FRAMES_CHECKED:
                    break
    except ImageError as error:
        _refused(error, path)


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


def test_the_valid_files_cover_every_kind_and_read_correctly(folder):
    made = valid_files()
    kinds = {name.rsplit(".", 1)[-1] for name in made}
    # Whatever this Pillow build adds, these must be among the kinds fuzzed.
    assert {"png", "jpg", "gif", "webp", "tif", "bmp", "ico", "j2k", "jp2", "qoi", "dds", "blp", "tga"} <= kinds
    assert {"anim.gif", "anim-lossless.webp", "anim.png", "pages.tif", "rgb16.png", "deflate.tif"} <= set(made)
    for name, data in made.items():
        path = folder / name
        path.write_bytes(data)
        check_every_reader(path)
    for name in ("anim.gif", "anim-lossless.webp", "anim.png"):
        assert images.frame_count(folder / name) == 3
        with images.open_animation(folder / name) as animation:
            assert len(list(animation.frames)) == 3


@pytest.mark.slow
@seed(int(SEED or 0))
@settings(max_examples=EXAMPLES, derandomize=SEED is None, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                 HealthCheck.function_scoped_fixture])
@given(name=st.deferred(lambda: st.sampled_from(sorted(valid_files()))),
       mutations=st.lists(MUTATIONS, min_size=1, max_size=4))
def test_every_mutated_file_loads_correctly_or_raises_image_error(folder, capfd, name, mutations):
    """...and prints nothing meanwhile: no Python warning, nothing on the C stderr (libtiff's)."""
    path = folder / f"mutated-{name}"
    path.write_bytes(mutate(valid_files()[name], mutations))
    capfd.readouterr()
    with warnings.catch_warnings(record=True) as warned:
        warnings.simplefilter("always")
        check_every_reader(path)
    assert [str(warning.message) for warning in warned] == []
    assert capfd.readouterr() == ("", "")
