"""Large prints with the preview's strokes (issue 13): `strokes.py`'s detail-restoring upsampling,
`ApplyConfig.stroke_size` through FastStylizer (Johnson and AdaIN, torch and ONNX Runtime), and the
`stroke-scale` benchmark workload at the tiny plan (its jobs run in this process)."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from adain_helpers import save_adain
from helpers import picture, tiny_model
from painterly import strokes
from painterly.cli import app
from painterly.config import ApplyConfig
from painterly.errors import UsageError
from painterly.fast import FastStylizer
from painterly.pixels import resize_to, to_float32, to_uint8

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # `benchmarks` is a folder of the repository, not part of the installed package

from benchmarks import ssim, worker  # noqa: E402
from benchmarks.report import document, text  # noqa: E402
from benchmarks.suite import TINY, Suite  # noqa: E402


def blocks_with_texture(height: int = 96, width: int = 128) -> np.ndarray:
    """8-pixel blocks of random colours (edges everywhere) with a 2-pixel checker on top: detail that a
    quarter-size image cannot hold."""
    rng = np.random.default_rng(3)
    blocks = rng.uniform(0.2, 0.8, (-(-height // 8), -(-width // 8), 3)).repeat(8, 0).repeat(8, 1)[:height, :width]
    checker = ((np.arange(height)[:, None] // 2 + np.arange(width)[None] // 2) % 2 - 0.5) * 0.2
    return np.clip(blocks + checker[..., None], 0, 1).astype(np.float32)


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    """A tiny Johnson model, its ONNX export (parity-checked by export_onnx) and a tiny AdaIN model."""
    from painterly.export import export_onnx

    folder = tmp_path_factory.mktemp("stroke-models")
    johnson = tiny_model(folder / "tiny.safetensors")
    return {"johnson": johnson, "onnx": export_onnx(johnson, folder / "tiny.onnx").path,
            "adain": save_adain(folder / "adain.safetensors")}


def test_restores_the_photos_detail_that_bicubic_loses():
    photo = blocks_with_texture()
    working = strokes.downscale(photo, 24, 32)
    restored = strokes.restore_detail(working, working, photo)  # a "painting" that follows the photo
    bicubic = resize_to(working, 96, 128)
    assert restored.shape == photo.shape and restored.dtype == np.float32
    assert np.abs(restored - photo).mean() < 0.6 * np.abs(bicubic - photo).mean()
    # The low band is the preview's: downscaled again, it is as close to the working image as plain bicubic
    # upsampling is (bicubic there and back blurs a little); the detail band adds nothing there.
    back = np.abs(strokes.downscale(restored, 24, 32) - working).mean()
    assert back <= np.abs(strokes.downscale(bicubic, 24, 32) - working).mean() + 0.002
    # A painting that goes against the photo's light gets none of the photo's detail pasted on.
    inverted = 1 - working
    np.testing.assert_allclose(strokes.restore_detail(inverted, working, photo), resize_to(inverted, 96, 128),
                               atol=1e-5)


def test_a_flat_image_stays_flat():
    photo = np.full((50, 70, 3), 77, dtype=np.uint8)
    working = strokes.downscale(photo, 10, 14)
    styled = np.broadcast_to(np.array([0.2, 0.5, 0.7], dtype=np.float32), (10, 14, 3)).copy()
    out = strokes.restore_detail(styled, working, photo)
    np.testing.assert_allclose(working, 77 / 255, atol=1e-6)
    np.testing.assert_allclose(out, styled[:1, :1].repeat(50, 0).repeat(70, 1), atol=1e-6)


def test_strips_give_the_whole_images_result():
    """Bounded memory: strips of a few rows give what the whole image does, for 8-bit and float."""
    photo = to_uint8(blocks_with_texture(70, 90))
    whole = strokes.downscale(photo, 17, 23, strip_rows=1000)
    np.testing.assert_allclose(strokes.downscale(photo, 17, 23, strip_rows=3), whole, atol=1e-6)
    np.testing.assert_allclose(whole, resize_to(to_float32(photo), 17, 23), atol=1e-5)  # as `--size` resizes
    styled = np.ascontiguousarray(whole[:, ::-1])
    float_whole = strokes.restore_detail(styled, whole, photo, strip_rows=1000)
    np.testing.assert_allclose(strokes.restore_detail(styled, whole, photo, strip_rows=7), float_whole, atol=1e-6)
    eight_bit = strokes.restore_detail(styled, whole, photo, dtype=np.uint8, strip_rows=5)
    assert eight_bit.dtype == np.uint8 and eight_bit.shape == photo.shape
    assert np.abs(eight_bit.astype(int) - to_uint8(float_whole).astype(int)).max() <= 1


def test_working_shape_never_upscales():
    assert strokes.working_shape(3000, 4000, 1024) == (768, 1024)
    assert strokes.working_shape(768, 1024, 1024) is None
    assert strokes.working_shape(100, 100, None) is None


def test_stylizer_paints_the_previews_strokes_and_records_it(models, one_thread):
    photo = to_uint8(picture(96, 128))
    plain = FastStylizer(models["johnson"], ApplyConfig())
    stroked = plain.with_config(ApplyConfig(stroke_size=32))
    out = stroked.stylize(photo)
    assert out.shape == photo.shape and out.dtype == np.uint8
    preview = plain.stylize(strokes.downscale(photo, 24, 32))
    with_option = np.abs(strokes.downscale(out, 24, 32) - preview).mean()
    without = np.abs(strokes.downscale(plain.stylize(photo), 24, 32) - preview).mean()
    assert with_option < 0.03 < without
    record = stroked.describe()["config"]
    assert record["stroke_size"] == 32 and record["stroke_upsampling"] == strokes.METHOD
    assert "stroke_upsampling" not in plain.describe()["config"]
    small = photo[:24, :32]  # no larger than the stroke size: painted as it is
    np.testing.assert_array_equal(stroked.stylize(small), plain.stylize(small))
    resized = plain.with_config(ApplyConfig(stroke_size=32, size=64)).stylize(to_float32(photo))
    assert resized.shape == (48, 64, 3) and resized.dtype == np.float32
    tiled = plain.with_config(ApplyConfig(stroke_size=64, tile=32, tile_overlap=8)).stylize(photo)
    assert tiled.shape == photo.shape  # the working image is itself tiled


def test_onnx_and_adain_take_the_option_too(models, one_thread):
    photo = to_uint8(picture(64, 96))
    config = ApplyConfig(stroke_size=32, precision="fp32")  # as ONNX runs: "auto" is bf16 on a CPU with AMX
    by_torch = FastStylizer(models["johnson"], config).stylize(photo)
    by_onnx = FastStylizer(models["onnx"], config).stylize(photo)
    assert np.abs(by_torch.astype(int) - by_onnx.astype(int)).max() <= 1
    adain = FastStylizer(models["adain"], ApplyConfig(stroke_size=32, style_size=32))
    adain = adain.with_styles([adain.style_statistics(picture(40, 40, seed=5))])
    painted = adain.stylize(photo)
    assert painted.shape == photo.shape and painted.std() > 5  # a picture, not a flat colour
    assert adain.describe()["config"]["stroke_size"] == 32


@pytest.mark.parametrize("value", [16, 0, True, 40.5, "1024"])
def test_a_bad_stroke_size_is_one_line(value):
    with pytest.raises(UsageError, match="stroke_size must be a long side of at least 32 pixels") as caught:
        ApplyConfig(stroke_size=value)
    assert "\n" not in str(caught.value)


def test_the_cli_refuses_a_bad_stroke_size_before_any_work(tmp_path):
    result = CliRunner().invoke(app, ["apply", "missing.safetensors", "in.png", "-o", str(tmp_path / "out.png"),
                                      "--stroke-size", "8"])
    assert result.exit_code != 0
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "--stroke-size must be a long side of at least 32 pixels" in lines[0]
    assert not any(tmp_path.iterdir())


def test_ssim_is_one_for_the_same_image_and_falls_with_noise():
    image = blocks_with_texture(40, 40)
    noisy = np.clip(image + np.random.default_rng(0).normal(0, 0.1, image.shape), 0, 1)
    assert ssim.luminance_ssim(image, image) == pytest.approx(1.0)
    assert ssim.colour_ssim(to_uint8(image), to_uint8(image)) == pytest.approx(1.0)
    assert ssim.colour_ssim(image, noisy) < ssim.colour_ssim(image, 0.8 * image + 0.1) < 1.0
    with pytest.raises(ValueError, match="one size"):
        ssim.ssim(image[..., 0], image[:20, :, 0])


def test_the_stroke_scale_workload_at_the_tiny_plan(tmp_path, one_thread):
    """Each registered job run as the worker runs it (in this process): the rows, their SSIMs, the report."""

    def in_process(job: str, **args: object) -> dict:
        module, function = worker.JOBS[job].split(":")
        return getattr(importlib.import_module(module), function)(**args)

    rows = Suite(TINY, in_process, tmp_path).rows(("stroke-scale",))
    by_variant = {row.variant: row.painterly for row in rows}
    assert list(by_variant) == ["johnson light, preview", "johnson light, without",
                                "johnson light, --stroke-size 32", "gatys"]
    with_option, without = by_variant["johnson light, --stroke-size 32"], by_variant["johnson light, without"]
    assert with_option["ssim"]["luminance"] >= 0.8 and with_option["ssim"]["colour"] >= 0.8
    assert without["ssim"]["luminance"] < with_option["ssim"]["luminance"]
    assert "skipped" in by_variant["gatys"]
    report = text(document(rows, {"error": "not measured"}, "tiny", "test"))
    assert "likeness" in report and "target SSIM ≥ 0.8" in report and "met" in report
    assert with_option["cpu_seconds"] > 0 and "CPU-s" in report  # the option's cost: CPU time as well as wall
