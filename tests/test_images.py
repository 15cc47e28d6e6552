"""painterly.images: reading every mode, refusing bad files by name, atomic writes, resizing."""

import logging
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageCms, PngImagePlugin

from painterly import images, pixels
from painterly.errors import ImageError, OutputError, UsageError
from painterly.images import image_files, load_image, load_image_with_alpha, read_array, read_settings, save_image
from painterly.pixels import resize_long_side, resize_to, to_array, to_tensor

RED, BLUE = (255, 0, 0), (0, 0, 255)


def _save(img: Image.Image, path: Path, **options) -> Path:
    img.save(path, **options)
    return path


def _random_rgb(height=24, width=32, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).random((height, width, 3), dtype=np.float32)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _raw_png(width: int, height: int, color_type: int, sample: int, channels: int) -> bytes:
    """A 16-bit PNG written by hand, every sample `sample`, so Pillow's own writer is not involved."""
    row = b"\x00" + struct.pack(f">{width * channels}H", *[sample] * (width * channels))
    header = struct.pack(">IIBBBBB", width, height, 16, color_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", zlib.compress(row * height))
        + _png_chunk(b"IEND", b"")
    )


def _icc_profile(device_class: bytes, space: bytes, pcs: bytes, tags: dict[bytes, bytes]) -> bytes:
    """A minimal ICC v2 profile, for the kinds ImageCms.createProfile cannot make."""
    offset = 128 + 4 + 12 * len(tags)
    table, data = b"", b""
    for signature, body in tags.items():
        table += signature + struct.pack(">II", offset + len(data), len(body))
        data += body + bytes(-len(body) % 4)
    d50 = struct.pack(">3i", 63190, 65536, 54061)
    header = (
        struct.pack(">I", offset + len(data)) + bytes(4) + struct.pack(">I", 0x02100000)
        + device_class + space + pcs + bytes(12) + b"acsp" + bytes(28) + d50 + bytes(48)
    )
    return header + struct.pack(">I", len(tags)) + table + data


def _cmyk_profile_all_black() -> bytes:
    """CMYK -> Lab lut that maps every ink combination to L=0, unlike Pillow's plain conversion."""
    identity = bytes(range(256))
    lut = (
        b"mft1" + bytes(4) + bytes([4, 3, 2, 0]) + struct.pack(">9i", 65536, 0, 0, 0, 65536, 0, 0, 0, 65536)
        + identity * 4 + bytes([0, 128, 128]) * 16 + identity * 3
    )
    return _icc_profile(b"prtr", b"CMYK", b"Lab ", {b"A2B0": lut})


def _linear_rgb_profile() -> bytes:
    """sRGB primaries with gamma 1.0: mid-gray 128 means linear 0.5, which is sRGB ~188."""

    def xyz(x, y, z):
        return b"XYZ " + bytes(4) + struct.pack(">3i", *(round(v * 65536) for v in (x, y, z)))

    gamma_one = b"curv" + bytes(4) + struct.pack(">IH", 1, 0x0100)
    return _icc_profile(b"mntr", b"RGB ", b"XYZ ", {
        b"wtpt": xyz(0.9642, 1.0, 0.8249),
        b"rXYZ": xyz(0.4361, 0.2225, 0.0139),
        b"gXYZ": xyz(0.3851, 0.7169, 0.0971),
        b"bXYZ": xyz(0.1431, 0.0606, 0.7141),
        b"rTRC": gamma_one, b"gTRC": gamma_one, b"bTRC": gamma_one,
    })


# --- reading modes ---------------------------------------------------------------------------


def test_rgb_png_reads_exact_values_without_alpha(tmp_path):
    pixels = (_random_rgb() * 255).round().astype(np.uint8)
    rgb, alpha = read_array(_save(Image.fromarray(pixels), tmp_path / "a.png"))
    assert rgb.dtype == np.float32 and rgb.shape == (24, 32, 3)
    np.testing.assert_allclose(rgb, pixels / 255, atol=1e-6)
    assert alpha is None


@pytest.mark.parametrize("mode, value, expected", [("1", 1, 1.0), ("L", 51, 0.2)])
def test_bilevel_and_gray_read_as_gray_rgb(tmp_path, mode, value, expected):
    rgb, _ = read_array(_save(Image.new(mode, (16, 16), value), tmp_path / "g.png"))
    np.testing.assert_allclose(rgb, expected, atol=1e-6)


def test_16bit_gray_png_is_scaled_by_its_range_not_clipped(tmp_path):
    path = _save(Image.fromarray(np.full((16, 20), 32768, dtype=np.uint16)), tmp_path / "g16.png")
    assert Image.open(path).mode == "I;16"
    rgb, _ = read_array(path)
    np.testing.assert_allclose(rgb, 32768 / 65535, atol=1e-6)


def test_16bit_big_endian_gray_tiff(tmp_path):
    img = Image.fromarray(np.full((16, 16), 16384, dtype=">u2"))
    path = _save(img, tmp_path / "g16b.tif")
    assert Image.open(path).mode == "I;16B"
    np.testing.assert_allclose(read_array(path)[0], 16384 / 65535, atol=1e-6)


def test_16bit_rgb_png_reads_by_real_range(tmp_path):
    path = tmp_path / "rgb16.png"
    path.write_bytes(_raw_png(16, 16, 2, 32768, 3))
    rgb, alpha = read_array(path)
    np.testing.assert_allclose(rgb, 0.5, atol=1 / 255)
    assert alpha is None


def test_16bit_rgba_png_reads_by_real_range(tmp_path):
    path = tmp_path / "rgba16.png"
    path.write_bytes(_raw_png(16, 16, 6, 32768, 4))
    rgb, alpha = read_array(path)
    np.testing.assert_allclose(alpha, 0.5, atol=1 / 255)
    np.testing.assert_allclose(rgb, 0.75, atol=1 / 255)  # gray 0.5 at half opacity over white


def test_32bit_int_tiff_within_16_bits_reads_as_16_bit(tmp_path):
    path = _save(Image.new("I", (16, 16), 40000), tmp_path / "i.tif")
    np.testing.assert_allclose(read_array(path)[0], 40000 / 65535, atol=1e-6)


def test_32bit_int_tiff_beyond_16_bits_is_stretched(tmp_path):
    values = np.zeros((16, 16), dtype=np.int32)
    values[:, 8:] = 1_000_000
    rgb, _ = read_array(_save(Image.fromarray(values), tmp_path / "i32.tif"))
    assert rgb[0, 0, 0] == 0.0 and rgb[0, 15, 0] == 1.0


def test_float_tiff_in_unit_range_is_kept(tmp_path):
    rgb, _ = read_array(_save(Image.new("F", (16, 16), 0.25), tmp_path / "f.tif"))
    np.testing.assert_allclose(rgb, 0.25, atol=1e-6)


def test_float_tiff_out_of_range_is_stretched_min_to_max(tmp_path):
    values = np.tile(np.linspace(-10, 30, 16, dtype=np.float32), (16, 1))
    rgb, _ = read_array(_save(Image.fromarray(values), tmp_path / "f.tif"))
    assert rgb.min() == 0.0 and rgb.max() == 1.0
    np.testing.assert_allclose(rgb[0, 4, 0], 4 / 15, atol=1e-6)


def test_rgba_is_composited_over_white_and_alpha_returned(tmp_path):
    pixels = np.zeros((16, 16, 4), dtype=np.uint8)
    pixels[..., 0] = 255  # red
    pixels[:, :8, 3] = 255  # left half opaque, right half transparent
    rgb, alpha = read_array(_save(Image.fromarray(pixels), tmp_path / "rgba.png"))
    np.testing.assert_allclose(rgb[0, 0], [1, 0, 0])
    np.testing.assert_allclose(rgb[0, 15], [1, 1, 1])
    np.testing.assert_allclose(alpha[0, [0, 15]], [1, 0])


def test_gray_with_alpha_la(tmp_path):
    img = Image.merge("LA", [Image.new("L", (16, 16), 0), Image.new("L", (16, 16), 51)])
    rgb, alpha = read_array(_save(img, tmp_path / "la.png"))
    np.testing.assert_allclose(alpha, 0.2, atol=1e-6)
    np.testing.assert_allclose(rgb, 0.8, atol=1e-6)  # black at 20 % over white


def test_palette_without_transparency_has_no_alpha(tmp_path):
    img = Image.new("P", (16, 16), 1)
    img.putpalette([0, 0, 0, 0, 0, 255] + [0] * 762)
    rgb, alpha = read_array(_save(img, tmp_path / "p.png"))
    np.testing.assert_allclose(rgb[0, 0], [0, 0, 1])
    assert alpha is None


def test_palette_with_transparency_gets_alpha(tmp_path):
    img = Image.new("P", (16, 16), 0)
    img.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    img.paste(1, (0, 0, 8, 16))
    rgb, alpha = read_array(_save(img, tmp_path / "p.png", transparency=0))
    np.testing.assert_allclose(alpha[0, [0, 15]], [1, 0])
    np.testing.assert_allclose(rgb[0, 0], [0, 0, 1])
    np.testing.assert_allclose(rgb[0, 15], [1, 1, 1])


def test_cmyk_without_profile_uses_plain_conversion(tmp_path):
    path = _save(Image.new("CMYK", (16, 16), (255, 0, 0, 0)), tmp_path / "c.tif")
    np.testing.assert_allclose(read_array(path)[0][0, 0], [0, 1, 1], atol=1e-6)


def test_cmyk_jpeg_is_converted_through_its_embedded_profile(tmp_path):
    no_ink = Image.new("CMYK", (16, 16), (0, 0, 0, 0))
    plain = _save(no_ink, tmp_path / "plain.jpg")
    managed = _save(no_ink, tmp_path / "managed.jpg", icc_profile=_cmyk_profile_all_black())
    assert read_array(plain)[0].min() > 0.95  # no ink is white...
    assert read_array(managed)[0].max() < 0.05  # ...unless the profile says otherwise


def test_cmyk_with_mismatched_profile_falls_back_to_plain_conversion(tmp_path):
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    path = _save(Image.new("CMYK", (16, 16), (0, 0, 0, 255)), tmp_path / "c.tif", icc_profile=srgb)
    np.testing.assert_allclose(read_array(path)[0], 0.0, atol=1e-6)


def test_rgb_with_srgb_profile_is_unchanged(tmp_path):
    pixels = (_random_rgb() * 255).round().astype(np.uint8)
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    rgb, _ = read_array(_save(Image.fromarray(pixels), tmp_path / "s.png", icc_profile=srgb))
    np.testing.assert_allclose(rgb, pixels / 255, atol=2 / 255)


def test_rgb_with_other_profile_is_converted_to_srgb(tmp_path):
    img = Image.new("RGB", (16, 16), (128, 128, 128))
    rgb, _ = read_array(_save(img, tmp_path / "lin.png", icc_profile=_linear_rgb_profile()))
    np.testing.assert_allclose(rgb, 0.735, atol=0.02)


def test_lab_tiff_is_converted_colorimetrically(tmp_path):
    path = _save(Image.new("LAB", (16, 16), (128, 128, 128)), tmp_path / "lab.tif")  # L=50 neutral
    np.testing.assert_allclose(read_array(path)[0], 119 / 255, atol=2 / 255)


@pytest.mark.parametrize("mode, value, expected", [
    ("YCbCr", (128, 128, 128), (128, 128, 128)),
    ("HSV", (0, 255, 255), (255, 0, 0)),
])
def test_modes_no_writer_keeps_are_converted(mode, value, expected):
    # No format Pillow writes keeps these modes, so the conversion step is tested directly.
    rgb, alpha = images._to_float_rgb(Image.new(mode, (16, 16), value))
    np.testing.assert_allclose(rgb[0, 0], np.array(expected) / 255, atol=1 / 255)
    assert alpha is None


def test_exif_orientation_is_applied(tmp_path):
    img = Image.new("RGB", (32, 16), RED)
    img.paste(BLUE, (0, 0, 16, 16))  # left half blue
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated: display turns it 90 degrees clockwise
    rgb, _ = read_array(_save(img, tmp_path / "o.jpg", exif=exif, quality=100))
    assert rgb.shape == (32, 16, 3)
    assert rgb[4, 8, 2] > 0.9 and rgb[28, 8, 0] > 0.9  # blue on top, red below


def test_animated_gif_reads_its_first_frame(tmp_path):
    frames = [Image.new("RGB", (16, 16), color) for color in (RED, BLUE)]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=50)
    assert Image.open(path).n_frames == 2
    np.testing.assert_allclose(read_array(path)[0][0, 0], [1, 0, 0])


def test_animated_webp_reads_its_first_frame(tmp_path):
    frames = [Image.new("RGB", (16, 16), color) for color in (BLUE, RED)]
    path = tmp_path / "anim.webp"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=50, lossless=True)
    np.testing.assert_allclose(read_array(path)[0][0, 0], [0, 0, 1])


def test_load_image_returns_nchw_tensor(tmp_path):
    pixels = (_random_rgb() * 255).round().astype(np.uint8)
    tensor = load_image(_save(Image.fromarray(pixels), tmp_path / "a.png"))
    assert tensor.shape == (1, 3, 24, 32) and tensor.dtype == torch.float32
    np.testing.assert_allclose(tensor[0, :, 5, 7].numpy(), pixels[5, 7] / 255, atol=1e-6)


def test_load_image_with_alpha_returns_alpha_tensor(tmp_path):
    pixels = np.full((16, 16, 4), 255, dtype=np.uint8)
    pixels[..., 3] = 102
    image, alpha = load_image_with_alpha(_save(Image.fromarray(pixels), tmp_path / "a.png"))
    assert image.shape == (1, 3, 16, 16) and alpha.shape == (1, 1, 16, 16)
    assert torch.allclose(alpha, torch.tensor(0.4))
    assert load_image_with_alpha(_save(Image.new("RGB", (16, 16)), tmp_path / "b.png"))[1] is None


def test_module_imports_without_torch():
    code = "import sys, painterly.images, painterly.pixels; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


# --- refusing bad files ----------------------------------------------------------------------


def _refusal(path, **options) -> str:
    with pytest.raises(ImageError) as caught:
        read_array(path, **options)
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_missing_file(tmp_path):
    assert _refusal(tmp_path / "photo.jpg") == f"{tmp_path / 'photo.jpg'}: no such file"


def test_directory(tmp_path):
    assert _refusal(f"{tmp_path}/") == f"{tmp_path}/: is a directory, not an image"


def test_empty_file(tmp_path):
    (tmp_path / "x.png").touch()
    assert _refusal(tmp_path / "x.png").endswith("x.png: empty file")


def test_text_file(tmp_path):
    (tmp_path / "notes.txt").write_text("not a picture\n")
    assert _refusal(tmp_path / "notes.txt").endswith("notes.txt: not an image Pillow can read")


def test_a_video_where_an_image_goes_is_named_as_such(tmp_path):
    (tmp_path / "clip.MP4").write_bytes(b"\x00\x00\x00\x18ftypisom not a picture")
    assert _refusal(tmp_path / "clip.MP4") == f"{tmp_path / 'clip.MP4'}: a video, where an image is needed"


def test_permission_denied(tmp_path, monkeypatch):
    path = _save(Image.new("RGB", (16, 16)), tmp_path / "secret.png")

    def denied(fp, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(fp))

    monkeypatch.setattr(Image, "open", denied)  # chmod is no barrier when tests run as root
    assert _refusal(path).endswith("secret.png: permission denied")


@pytest.mark.parametrize("name", ["broken.png", "broken.jpg"])
def test_truncated_image(tmp_path, name):
    path = _save(Image.fromarray((_random_rgb(32, 32) * 255).astype(np.uint8)), tmp_path / name)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    assert f"{name}: truncated or corrupt image data (" in _refusal(path)


def test_over_the_pixel_limit_by_argument(tmp_path):
    path = _save(Image.new("RGB", (32, 32)), tmp_path / "big.png")
    message = _refusal(path, max_pixels=1000)
    assert message.endswith(
        "big.png: 32x32 = 1,024 pixels is over the limit of 1,000; "
        "raise it with --max-pixels or PAINTERLY_MAX_PIXELS"
    )
    assert read_array(path, max_pixels=1024)[0].shape == (32, 32, 3)


def test_over_the_pixel_limit_by_environment(tmp_path, monkeypatch):
    path = _save(Image.new("RGB", (32, 32)), tmp_path / "big.png")
    monkeypatch.setenv("PAINTERLY_MAX_PIXELS", "1000")
    assert "over the limit of 1,000" in _refusal(path)
    assert read_array(path, max_pixels=2000)[0].shape == (32, 32, 3)  # the argument wins


def test_bad_pixel_limit_in_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("PAINTERLY_MAX_PIXELS", "lots")
    with pytest.raises(UsageError, match="PAINTERLY_MAX_PIXELS"):
        read_array(tmp_path / "any.png")


def test_huge_header_is_refused_before_decoding(tmp_path):
    path = tmp_path / "huge.png"
    header = struct.pack(">IIBBBBB", 20000, 20000, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 100)  # far too little data: decoding would fail differently
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", idat))
    assert _refusal(path) == (
        f"{path}: 20000x20000 = 400,000,000 pixels is over the limit of 178,956,970; "
        "raise it with --max-pixels or PAINTERLY_MAX_PIXELS"
    )


def test_pillow_limit_follows_ours_and_is_restored(tmp_path, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # Pillow alone would refuse 32x32
    path = _save(Image.new("RGB", (32, 32)), tmp_path / "a.png")
    assert read_array(path, max_pixels=5000)[0].shape == (32, 32, 3)
    assert Image.MAX_IMAGE_PIXELS == 100


def test_pillow_enforces_our_limit_while_decoding(tmp_path, monkeypatch):
    # Some formats (TIFF tiles, ICO, GIF frames) learn their real size only while decoding.
    path = _save(Image.new("RGB", (16, 16)), tmp_path / "grows.png")
    load = PngImagePlugin.PngImageFile.load

    def load_larger(self):
        Image._decompression_bomb_check((40, 40))  # 1,600 pixels: Pillow alone would only warn
        return load(self)

    monkeypatch.setattr(PngImagePlugin.PngImageFile, "load", load_larger)
    message = _refusal(path, max_pixels=1000)
    assert message.endswith("grows.png: image data is over the limit of 1,000 pixels; "
                            "raise it with --max-pixels or PAINTERLY_MAX_PIXELS")


def test_too_small(tmp_path):
    path = _save(Image.new("RGB", (8, 8)), tmp_path / "tiny.png")
    assert _refusal(path).endswith("tiny.png: 8x8 is too small; each side must be at least 16 pixels")
    assert read_array(path, min_side=8)[0].shape == (8, 8, 3)


# --- writing ---------------------------------------------------------------------------------


SETTINGS = {"method": "gatys", "steps": 300, "style": ["starry.jpg"], "note": "ünïcode & <xml>"}


@pytest.mark.parametrize("name", ["out.png", "out.jpg", "out.jpeg", "out.webp", "out.tif", "out.tiff"])
def test_settings_round_trip_in_every_format(tmp_path, name):
    image = torch.from_numpy(_random_rgb()).permute(2, 0, 1)[None]
    path = save_image(image, tmp_path / name, settings=SETTINGS)
    assert path == tmp_path / name
    assert read_settings(path) == SETTINGS
    assert read_array(path)[0].shape == (24, 32, 3)


def test_lossless_formats_keep_pixels(tmp_path):
    pixels = np.round(_random_rgb() * 255) / 255
    for name in ("a.png", "a.tif"):
        np.testing.assert_allclose(read_array(save_image(pixels, tmp_path / name))[0], pixels, atol=1e-6)


def test_jpeg_quality_is_used(tmp_path):
    pixels = _random_rgb(64, 64)
    small = save_image(pixels, tmp_path / "low.jpg", quality=20)
    large = save_image(pixels, tmp_path / "high.jpg", quality=95)
    assert small.stat().st_size < large.stat().st_size


@pytest.mark.parametrize("name", ["plain.png", "plain.jpg", "plain.webp", "plain.tif"])
def test_read_settings_is_none_without_settings(tmp_path, name):
    assert read_settings(save_image(_random_rgb(), tmp_path / name)) is None


def test_read_settings_ignores_foreign_metadata(tmp_path):
    path = _save(Image.new("RGB", (16, 16)), tmp_path / "gimp.jpg", comment="Created with GIMP")
    assert read_settings(path) is None


def test_read_settings_refuses_bad_files(tmp_path):
    with pytest.raises(ImageError, match="no such file"):
        read_settings(tmp_path / "missing.png")


def test_alpha_round_trip_in_png(tmp_path):
    alpha = torch.linspace(0, 1, 32).expand(1, 1, 24, 32)
    path = save_image(_random_rgb(), tmp_path / "a.png", alpha=alpha)
    assert Image.open(path).mode == "RGBA"
    _, read_alpha = read_array(path)
    np.testing.assert_allclose(read_alpha, alpha[0, 0].numpy(), atol=0.5 / 255)


def test_jpeg_drops_alpha(tmp_path):
    path = save_image(_random_rgb(), tmp_path / "a.jpg", alpha=np.zeros((24, 32)))
    assert Image.open(path).mode == "RGB"


def test_alpha_of_wrong_shape_is_refused(tmp_path):
    with pytest.raises(ValueError, match="alpha"):
        save_image(_random_rgb(), tmp_path / "a.png", alpha=np.zeros((32, 24)))


def test_values_are_clamped_rounded_and_tensor_detached(tmp_path):
    image = torch.tensor([-0.5, 0.5, 1.5]).reshape(3, 1, 1).expand(3, 16, 16).clone().requires_grad_()
    path = save_image(image * 1, tmp_path / "c.png")
    np.testing.assert_array_equal(np.asarray(Image.open(path))[0, 0], [0, 128, 255])


def test_missing_parent_folders_are_created(tmp_path):
    path = save_image(_random_rgb(), tmp_path / "out" / "dir" / "x.png")
    assert path.is_file()


def test_unsupported_extension_is_refused_before_anything_is_created(tmp_path):
    target = tmp_path / "new" / "out.bmp"
    with pytest.raises(ImageError, match=r"out\.bmp: cannot write this file type; use one of \.png, \.jpg"):
        save_image(_random_rgb(), target)
    assert not (tmp_path / "new").exists()


def test_protect_refuses_overwriting_an_input(tmp_path):
    original = save_image(_random_rgb(), tmp_path / "in.png")
    before = original.read_bytes()
    with pytest.raises(ImageError, match="in.png: refusing to overwrite an input file"):
        save_image(_random_rgb(seed=1), tmp_path / "sub" / ".." / "in.png", protect=[original])
    with pytest.raises(ImageError, match="refusing"):
        save_image(_random_rgb(seed=1), tmp_path / "link.png", protect=[_hard_link(original)])
    assert original.read_bytes() == before
    save_image(_random_rgb(seed=1), tmp_path / "out.png", protect=[original])  # other names are fine


def _hard_link(path: Path) -> Path:
    link = path.with_name("in-link.png")
    link.hardlink_to(path)
    return link.rename(path.with_name("link.png"))


def test_failed_write_leaves_nothing_behind(tmp_path, monkeypatch):
    destination = tmp_path / "out.png"
    destination.write_bytes(b"old bytes")

    def save_then_fail(self, fp, *args, **kwargs):
        fp.write(b"half an image")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Image.Image, "save", save_then_fail)
    with pytest.raises(OutputError, match="out.png: cannot write \\(No space left on device\\)"):
        save_image(_random_rgb(), destination)
    assert destination.read_bytes() == b"old bytes"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.png"]


def test_successful_write_leaves_no_temporary_file(tmp_path):
    save_image(_random_rgb(), tmp_path / "out.webp")
    assert [p.name for p in tmp_path.iterdir()] == ["out.webp"]


# --- 8-bit arrays ----------------------------------------------------------------------------


def _random_uint8(height=24, width=32, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def test_read_uint8_gives_the_decoded_pixels_as_a_writable_array(tmp_path):
    pixels = _random_uint8()
    rgb, alpha = read_array(_save(Image.fromarray(pixels), tmp_path / "a.png"), dtype=np.uint8)
    assert rgb.dtype == np.uint8 and rgb.flags.writeable and alpha is None
    np.testing.assert_array_equal(rgb, pixels)


def _rgba(path: Path) -> Path:  # taller than one conversion chunk, so chunk edges are crossed
    pixels = np.dstack([_random_uint8(300, 20), np.random.default_rng(1).integers(0, 256, (300, 20), dtype=np.uint8)])
    return _save(Image.fromarray(pixels), path)


@pytest.mark.parametrize("make", [
    _rgba,
    lambda path: _save(Image.new("LA", (16, 16), (90, 128)), path),
    lambda path: _save(Image.new("P", (16, 16), 0), path, transparency=0),
    lambda path: _save(Image.fromarray(np.full((16, 20), 32768, dtype=np.uint16)), path),
    lambda path: (path.write_bytes(_raw_png(16, 16, 6, 12345, 4)), path)[1],
], ids=["rgba", "la", "palette with transparency", "16-bit gray", "16-bit rgba"])
def test_read_uint8_is_the_float_read_rounded(tmp_path, make):
    """Composited over white (or scaled from 16 bits) exactly as in float, then rounded as save_image rounds."""
    path = make(tmp_path / "in.png")
    rgb, alpha = read_array(path)
    rgb8, alpha8 = read_array(path, dtype=np.uint8)
    assert rgb8.dtype == np.uint8
    np.testing.assert_array_equal(rgb8, pixels.to_uint8(rgb))
    assert (alpha8 is None) == (alpha is None)
    if alpha is not None:
        np.testing.assert_array_equal(alpha8, pixels.to_uint8(alpha))


def test_read_refuses_other_dtypes(tmp_path):
    with pytest.raises(ValueError, match="float32 or uint8"):
        read_array(_save(Image.new("RGB", (16, 16)), tmp_path / "a.png"), dtype=np.float64)


def test_save_uint8_writes_it_as_is_like_the_same_float_image(tmp_path):
    pixels = _random_uint8(300, 40)
    as_uint8 = save_image(pixels, tmp_path / "a.png")
    as_float = save_image(pixels.astype(np.float32) / 255, tmp_path / "b.png")
    np.testing.assert_array_equal(np.asarray(Image.open(as_uint8)), pixels)
    assert as_uint8.read_bytes() == as_float.read_bytes()


def test_save_rounds_float_in_chunks_exactly_as_the_whole_image(tmp_path):
    values = np.random.default_rng(2).uniform(-0.2, 1.2, (600, 30, 3)).astype(np.float32)
    path = save_image(values, tmp_path / "a.png")
    np.testing.assert_array_equal(np.asarray(Image.open(path)), np.round(np.clip(values, 0, 1) * 255).astype(np.uint8))


def test_save_uint8_alpha_as_is(tmp_path):
    alpha = np.arange(24 * 32, dtype=np.uint8).reshape(24, 32)
    path = save_image(_random_uint8(), tmp_path / "a.png", alpha=alpha)
    np.testing.assert_array_equal(np.asarray(Image.open(path))[..., 3], alpha)


# --- arrays, tensors, resizing ---------------------------------------------------------------


def test_to_array_accepts_every_layout_and_copies():
    hwc = _random_rgb()
    chw = torch.from_numpy(hwc).permute(2, 0, 1)
    for image in (chw, chw[None], hwc, chw[None].numpy()):
        array = to_array(image)
        np.testing.assert_array_equal(array, hwc)
        assert array.flags.c_contiguous
    to_array(hwc)[0, 0, 0] = 5
    assert hwc[0, 0, 0] != 5


def test_to_array_refuses_other_shapes():
    with pytest.raises(ValueError, match="expected an image"):
        to_array(np.zeros((2, 3, 8, 8)))


def test_to_tensor_round_trip():
    hwc = _random_rgb()
    tensor = to_tensor(hwc)
    assert tensor.shape == (1, 3, 24, 32) and tensor.dtype == torch.float32
    np.testing.assert_array_equal(to_array(tensor), hwc)


def test_resize_long_side_keeps_aspect_ratio():
    image = to_tensor(_random_rgb(30, 60))
    assert resize_long_side(image, 20).shape == (1, 3, 10, 20)
    assert resize_long_side(image, 120).shape == (1, 3, 60, 120)
    assert resize_long_side(image[0], 20).shape == (3, 10, 20)


def test_resize_clamps_and_accepts_arrays_alike():
    hwc = (_random_rgb(40, 40) > 0.5).astype(np.float32)  # hard edges: bicubic overshoots
    from_tensor = to_array(resize_to(to_tensor(hwc), 17, 23))
    from_array = resize_to(hwc, 17, 23)
    assert from_array.shape == (17, 23, 3)
    assert from_tensor.min() >= 0 and from_tensor.max() <= 1
    np.testing.assert_allclose(from_array, from_tensor, atol=1e-4)


def test_resize_shrinks_with_antialiasing():
    stripes = np.zeros((64, 64, 3), dtype=np.float32)
    stripes[:, ::2] = 1
    shrunk = resize_to(to_tensor(stripes), 16, 16)
    np.testing.assert_allclose(shrunk.numpy(), 0.5, atol=0.05)  # aliasing would give 0s or 1s


def test_resize_refuses_non_positive_size():
    with pytest.raises(UsageError, match="size must be at least 1"):
        resize_long_side(to_tensor(_random_rgb()), 0)


# --- folders ---------------------------------------------------------------------------------


def test_image_files_recursive_sorted_skipping_non_images_and_hidden(tmp_path):
    for name in ["b.png", "a.JPG", "sub/c.webp", "sub/deeper/d.tif", "notes.txt", ".hidden.png", ".git/e.png"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).touch()
    expected = ["a.JPG", "b.png", "sub/c.webp", "sub/deeper/d.tif"]
    assert [p.relative_to(tmp_path).as_posix() for p in image_files(tmp_path)] == expected
    assert [p.name for p in image_files(tmp_path, recursive=False)] == ["a.JPG", "b.png"]


def test_image_files_refuses_missing_folder_and_file(tmp_path):
    with pytest.raises(ImageError, match="no such folder"):
        image_files(tmp_path / "nope")
    (tmp_path / "f.png").touch()
    with pytest.raises(ImageError, match="not a folder"):
        image_files(tmp_path / "f.png")


# --- the decoding boundary: any plugin failure is one ImageError -----------------------------


def _lzw_zeros(count: int) -> bytes:
    """GIF image data (minimum code size 2) for `count` pixels of colour 0.

    A clear code before each pixel keeps every code 3 bits wide, so no LZW table is needed here.
    """
    codes = [4] + [0, 4] * count + [5]
    bits = sum(code << (3 * i) for i, code in enumerate(codes))
    data = bits.to_bytes((3 * len(codes) + 7) // 8, "little")
    blocks = b"".join(bytes([len(data[i : i + 255])]) + data[i : i + 255] for i in range(0, len(data), 255))
    return b"\x02" + blocks + b"\x00"


def _gif(screen: tuple[int, int], frames: list[tuple[int, int]]) -> tuple[bytes, list[int]]:
    """A looping GIF by hand, and where each frame starts. A frame may be larger than the screen;
    frames over 4,096 pixels get only a clear and an end code (they must never be decoded)."""
    head = b"GIF89a" + struct.pack("<HHBBB", *screen, 0x80, 0, 0) + b"\x00\x00\x00\xff\x00\x00"
    body = b"!\xff\x0bNETSCAPE2.0\x03\x01\x00\x00\x00"
    starts = []
    for width, height in frames:
        starts.append(len(head) + len(body))
        data = _lzw_zeros(width * height) if width * height <= 4096 else b"\x02\x01\x2c\x00"
        body += b"!\xf9\x04\x00\x0a\x00\x00\x00" + b"," + struct.pack("<HHHHB", 0, 0, width, height, 0) + data
    return head + body + b";", starts


def _one_line_refusal(call, path) -> str:
    with pytest.raises(ImageError) as caught:
        call(path)
    message = str(caught.value)
    assert "\n" not in message and message.startswith(f"{path}: ")
    return message


def test_hand_made_gif_helper_is_a_valid_animation(tmp_path):
    path = tmp_path / "ok.gif"
    path.write_bytes(_gif((16, 16), [(16, 16)] * 3)[0])
    assert images.frame_count(path) == 3
    with images.open_animation(path) as animation:
        frames = list(animation.frames)
    assert [duration for _, duration in frames] == [100, 100, 100]
    np.testing.assert_array_equal(frames[2][0], 0.0)


def test_gif_frame_larger_than_its_screen_is_refused_before_decoding(tmp_path):
    path = tmp_path / "bomb.gif"
    path.write_bytes(_gif((16, 16), [(20000, 20000)])[0])  # 75 bytes claiming 400 million pixels
    assert images.frame_count(path) == 1  # counting reads no pixels, so it refuses nothing
    assert _one_line_refusal(read_array, path) == (
        f"{path}: 20000x20000 = 400,000,000 pixels is over the limit of 178,956,970; "
        "raise it with --max-pixels or PAINTERLY_MAX_PIXELS"
    )
    small = tmp_path / "grown.gif"
    small.write_bytes(_gif((16, 16), [(200, 200)])[0])
    assert "200x200 = 40,000 pixels is over the limit of 10,000" in str(
        pytest.raises(ImageError, read_array, small, max_pixels=10_000).value)


def test_animation_frame_larger_than_the_limit_is_refused_before_it_is_decoded(tmp_path):
    path = tmp_path / "late-bomb.gif"
    path.write_bytes(_gif((16, 16), [(16, 16), (9000, 9000)])[0])  # the second frame claims 81 million pixels
    assert images.frame_count(path) == 2
    assert read_array(path)[0].shape == (16, 16, 3)  # a still read is of the first frame only
    with images.open_animation(path, max_pixels=16_000_000) as animation:
        frames = animation.frames
        first, duration = next(frames)
        assert first.shape == (16, 16, 3) and duration == 100
        message = _one_line_refusal(lambda _: next(frames), path)
    assert "over the limit of 16,000,000" in message


@pytest.mark.parametrize("where", ["after an extension introducer", "inside a frame's descriptor"])
def test_truncated_animated_gif_is_an_image_error_when_counting_frames(tmp_path, where):
    data, starts = _gif((16, 16), [(16, 16)] * 3)
    cut = starts[1] + 1 if where == "after an extension introducer" else starts[1] + 8 + 5
    path = tmp_path / "cut.gif"
    path.write_bytes(data[:cut])  # Pillow raises IndexError, then struct.error, for these
    assert "truncated or corrupt image data" in _one_line_refusal(images.frame_count, path)
    assert _one_line_refusal(lambda p: images.open_animation(p).__enter__(), path)
    assert read_array(path)[0].shape == (16, 16, 3)  # its first frame is whole


def _truncated_qoi(path: Path) -> Path:
    data = _save(Image.fromarray(_random_uint8(20, 20)), path).read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def test_truncated_qoi_is_an_image_error(tmp_path):
    path = _truncated_qoi(tmp_path / "cut.qoi")
    assert images.frame_count(path) == 1  # its header is whole
    assert "truncated or corrupt image data" in _one_line_refusal(read_array, path)  # IndexError in Pillow


def test_training_skips_and_counts_truncated_gif_and_qoi(tmp_path):
    from painterly import dataset

    gif = tmp_path / "a-cut.gif"
    data, starts = _gif((16, 16), [(16, 16)] * 2)
    gif.write_bytes(data[: starts[0] + 30])  # inside the first frame's pixels
    qoi = _truncated_qoi(tmp_path / "b-cut.qoi")
    good = _save(Image.fromarray(_random_uint8(20, 24)), tmp_path / "c-good.png")
    files = dataset.find_photos(str(tmp_path))
    assert files == [gif, qoi, good]
    photos, skipped = dataset.first_readable(files, 3, str(tmp_path))
    assert len(photos) == 1 and photos[0].shape == (20, 24, 3)
    assert sorted(skipped) == [str(gif), str(qoi)]
    crop, skipped = dataset.PhotoCrops(files, 16, seed=0)[(0, 0)]
    assert crop.shape == (3, 16, 16) and sorted(skipped) == [str(gif), str(qoi)]


@pytest.mark.parametrize("value", [np.inf, -np.inf, np.nan])
def test_float_tiff_with_non_finite_pixels_is_refused(tmp_path, value):
    values = np.full((16, 16), 0.5, dtype=np.float32)
    values[3, 4] = value
    path = _save(Image.fromarray(values), tmp_path / "f.tif")
    assert _one_line_refusal(read_array, path) == (
        f"{path}: float pixels include infinity or NaN; only finite values can be shown")
    with pytest.raises(ImageError, match="infinity or NaN"):
        read_array(path, dtype=np.uint8)


def _damaged_lzw_tiff(path: Path) -> Path:
    _save(Image.fromarray(_random_uint8(32, 32)), path, compression="tiff_lzw")
    strip = Image.open(path).tag_v2[273][0]
    data = bytearray(path.read_bytes())
    data[strip + 500 : strip + 540] = b"\xff" * 40
    path.write_bytes(bytes(data))
    return path


def test_damaged_tiff_prints_nothing_before_its_one_line_error(tmp_path, capfd):
    path = _damaged_lzw_tiff(tmp_path / "damaged.tif")  # libtiff says "Using code not yet in table"
    assert "truncated or corrupt image data" in _one_line_refusal(read_array, path)
    os.write(2, b"still here\n")  # the C stderr is back in place afterwards
    assert capfd.readouterr() == ("", "still here\n")


def _with_tiff_tag(path: Path, tag: int, value: int) -> Path:
    """Rewrite one SHORT/LONG entry of a little-endian TIFF's first IFD in place."""
    data = bytearray(path.read_bytes())
    assert data[:2] == b"II"
    ifd = struct.unpack_from("<I", data, 4)[0]
    for entry in range(struct.unpack_from("<H", data, ifd)[0]):
        offset = ifd + 2 + 12 * entry
        if struct.unpack_from("<H", data, offset)[0] == tag:
            struct.pack_into("<HII", data, offset + 2, 3, 1, value)  # SHORT, one value, inline
            path.write_bytes(bytes(data))
            return path
    raise AssertionError(f"no tag {tag}")


def _damaged_exif_jpeg(path: Path) -> Path:
    exif = Image.Exif()
    exif[0x0112] = 1
    data = _save(Image.new("RGB", (16, 16)), path, exif=exif).read_bytes()
    start = data.index(b"Exif\x00\x00") + 6
    path.write_bytes(data[: start + 10] + b"\xff" * 12 + data[start + 22 :])  # the IFD's entry count lies
    return path


def _samples_per_pixel_tiff(path: Path) -> Path:
    return _with_tiff_tag(_save(Image.new("RGB", (16, 16)), path), 277, 65535)  # SamplesPerPixel


def test_pillow_warnings_and_log_records_about_damaged_files_print_nothing(tmp_path):
    """In a plain process (no warning filters, no logging set up), as the CLI reads files."""
    exif = _damaged_exif_jpeg(tmp_path / "exif.jpg")  # Pillow warns "Truncated File Read", then reads it
    samples = _samples_per_pixel_tiff(tmp_path / "spp.tif")  # Pillow logs an error, then refuses it
    damaged = _damaged_lzw_tiff(tmp_path / "lzw.tif")  # libtiff writes to the C stderr
    code = (
        "import sys\n"
        "from painterly.images import read_array\n"
        "from painterly.errors import ImageError\n"
        "for path in sys.argv[1:]:\n"
        "    try:\n"
        "        print(read_array(path)[0].shape)\n"
        "    except ImageError as error:\n"
        "        print(error)\n"
    )
    result = subprocess.run([sys.executable, "-c", code, str(exif), str(samples), str(damaged)],
                            capture_output=True, text=True, check=True)
    assert result.stderr == ""
    assert result.stdout.splitlines() == [
        "(16, 16, 3)",
        f"{samples}: not an image Pillow can read",
        f"{damaged}: truncated or corrupt image data (decoder error -2)",
    ]


def test_pillow_loggers_work_again_after_a_read(tmp_path, caplog):
    with pytest.raises(ImageError):
        read_array(_samples_per_pixel_tiff(tmp_path / "spp.tif"))
    assert caplog.records == []
    logging.getLogger("PIL.TiffImagePlugin").error("after")
    assert [record.getMessage() for record in caplog.records] == ["after"]


def test_jpeg2000_box_with_a_lying_length_is_an_image_error(tmp_path):
    signature = struct.pack(">I4s4s", 12, b"jP  ", b"\r\n\x87\n")
    file_type = struct.pack(">I4s4sI4s", 20, b"ftyp", b"jp2 ", 0, b"jp2 ")
    header = struct.pack(">I4sQ", 1, b"jp2h", 1 << 62) + bytes(40)  # an extended length of 4 EiB
    path = tmp_path / "lying.jp2"
    path.write_bytes(signature + file_type + header)  # Pillow reads the box whole: MemoryError
    for reader in (read_array, images.frame_count, read_settings):
        assert _one_line_refusal(reader, path) == (
            f"{path}: truncated or corrupt image data (it asks for more memory than there is)")


@pytest.mark.parametrize("failure", [
    RuntimeError("Failed to decode frame 0"), NotImplementedError("Unknown pixel format"), IndexError(),
    struct.error("unpack requires 4 bytes"), KeyError("x"), AssertionError(), MemoryError(),
    ValueError("two\nlines"),
])
def test_any_failure_of_any_plugin_is_one_image_error(tmp_path, monkeypatch, failure):
    path = _save(Image.new("RGB", (16, 16)), tmp_path / "a.png")

    def fail(self):
        raise failure

    monkeypatch.setattr(PngImagePlugin.PngImageFile, "load", fail)
    message = _one_line_refusal(read_array, path)
    assert message.startswith(f"{path}: truncated or corrupt image data (")
    with images.open_animation(path) as animation:
        _one_line_refusal(lambda _: next(animation.frames), path)


def test_keyboard_interrupt_is_not_swallowed(tmp_path, monkeypatch):
    path = _save(Image.new("RGB", (16, 16)), tmp_path / "a.png")

    def interrupted(self):
        raise KeyboardInterrupt

    monkeypatch.setattr(PngImagePlugin.PngImageFile, "load", interrupted)
    before = Image.MAX_IMAGE_PIXELS
    with pytest.raises(KeyboardInterrupt):
        read_array(path)
    assert Image.MAX_IMAGE_PIXELS == before  # and Pillow's limit is put back on the way out


def test_single_image_spider_file_reads(tmp_path):
    # SPIDER refuses any seek in a single-image file, seek(0) included.
    path = _save(Image.fromarray(np.full((16, 20), 0.25, dtype=np.float32)), tmp_path / "s.spi", format="SPIDER")
    np.testing.assert_allclose(read_array(path)[0], 0.25, atol=1e-6)
