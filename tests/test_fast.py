"""FastStylizer and apply_files: exact sizes, parity with the network, seamless tiles, ONNX without torch, files."""

from __future__ import annotations

import io
import subprocess
import sys
import tracemalloc
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

import cli_processes
from helpers import examples_state_dict, random_model
from painterly import config, fast, tiling, transformer
from painterly.apply import apply_files
from painterly.config import ApplyConfig
from painterly.devices import native_bf16
from painterly.errors import ImageError, ModelFileError, PainterlyError, UsageError
from painterly.events import ApplyEvent, MessageEvent
from painterly.export import export_onnx
from painterly.fast import FastStylizer
from painterly.images import read_array, read_settings, save_image
from painterly.modelfile import save_model
from painterly.pixels import to_uint8
from painterly.transformer import TransformerNet
from painterly.video import is_video

STYLE = {"image": "swirl.png"}
# How much a seam may add to the column-to-column change, in units of the untiled image's median
# change. Blended tiles stay under 2.2 across seeds; a hard cut adds 9–16, a flat average 4.5–8.
SEAM_LIMIT = 3.0
TILE, OVERLAP = 96, 32


def tamed(model: TransformerNet) -> TransformerNet:
    """Scale the last conv so the random output sits around 0.5 instead of being clipped to 0 or 1."""
    with torch.no_grad():
        model.deconv3.conv2d.weight.mul_(0.1 * model.pixel_scale)
        model.deconv3.conv2d.bias.fill_(0.5 * model.pixel_scale)
    return model


def noise(height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((height, width, 3), dtype=np.float32)


def periodic(height: int, width: int, period: int = 8) -> np.ndarray:
    """A repeating texture: every tile sees the same statistics, as the whole image does."""
    cell = noise(period, period, seed=3)
    return np.tile(cell, (height // period + 1, width // period + 1, 1))[:height, :width]


def smooth_scene(height: int, width: int) -> np.ndarray:
    """A colour gradient: tiles see different statistics and barely any texture hides a seam."""
    y = np.linspace(0, 1, height)[:, None, None]
    x = np.linspace(0, 1, width)[None, :, None]
    image = 0.15 + 0.7 * x * np.array([1.0, 0.6, 0.2]) + 0.15 * np.sin(9 * y + 3 * x)
    return np.clip(image, 0, 1).astype(np.float32)


def column_jumps(image: np.ndarray) -> np.ndarray:
    return np.abs(np.diff(image, axis=1)).mean(axis=(0, 2))


def seam_excess(tiled: np.ndarray, whole: np.ndarray) -> float:
    """How much more the tiled image changes from one column to the next than the untiled one, at worst."""
    typical = np.median(column_jumps(whole))
    return float((column_jumps(tiled) - column_jumps(whole)).max() / typical)


def in_overlaps(height: int, width: int) -> np.ndarray:
    """HxW mask of the pixels that two or more tiles cover."""
    def axis(length: int) -> np.ndarray:
        covered = np.zeros(length, dtype=int)
        for span in tiling.spans(length, TILE, OVERLAP):
            covered[span.start : span.stop] += 1
        return covered > 1

    return axis(height)[:, None] | axis(width)[None, :]


def using(stylizer: FastStylizer, **settings) -> FastStylizer:
    """The same loaded model with some settings changed, as the web UI serves each request."""
    return stylizer.with_config(stylizer.config.replace(**settings))


def chroma(image: np.ndarray) -> np.ndarray:
    """The I and Q channels of YIQ, as color.py defines them."""
    return image @ np.array([[0.596, -0.274, -0.322], [0.211, -0.523, 0.312]]).T


@pytest.fixture(scope="module")
def model() -> TransformerNet:
    """PyTorch's default initialisation: a network milder than `random_model`'s, closer to a trained one
    in how much its instance norms react to the different statistics of a tile."""
    torch.manual_seed(0)
    return tamed(TransformerNet("light").eval())


@pytest.fixture(scope="module")
def model_file(model, tmp_path_factory) -> Path:
    return save_model(model, tmp_path_factory.mktemp("model") / "light.safetensors", style=STYLE, steps=7)


@pytest.fixture(scope="module")
def onnx_file(model_file) -> Path:
    return export_onnx(model_file, model_file.with_suffix(".onnx")).path


@pytest.fixture(scope="module")
def stylizer(model_file) -> FastStylizer:
    """fp32, so outputs can be compared with the network's and ONNX Runtime's to 1e-6 / 1e-3."""
    return FastStylizer(model_file, ApplyConfig(device="cpu", precision="fp32"))


@pytest.fixture(scope="module")
def tiled(model_file) -> FastStylizer:
    return FastStylizer(model_file, ApplyConfig(device="cpu", tile=TILE, tile_overlap=OVERLAP))


# --- sizes and kinds ------------------------------------------------------------------------------


@pytest.mark.parametrize("height, width", [(37, 53), (17, 61), (9, 13), (64, 4)])
def test_output_has_exactly_the_input_size(stylizer, height, width):
    styled = stylizer.stylize(noise(height, width))
    assert styled.shape == (height, width, 3) and styled.dtype == np.float32
    assert 0 <= styled.min() and styled.max() <= 1


def test_tensor_in_tensor_out(stylizer):
    image = noise(37, 53)
    tensor = torch.from_numpy(image.transpose(2, 0, 1).copy())
    batched, unbatched = stylizer.stylize(tensor[None]), stylizer.stylize(tensor)
    assert isinstance(batched, torch.Tensor) and batched.shape == (1, 3, 37, 53)
    assert unbatched.shape == (3, 37, 53)
    expected = stylizer.stylize(image)
    np.testing.assert_array_equal(batched[0].numpy().transpose(1, 2, 0), expected)
    np.testing.assert_array_equal(unbatched.numpy().transpose(1, 2, 0), expected)


def test_auto_precision_is_bf16_where_native_and_close_to_fp32(model_file, stylizer):
    auto = FastStylizer(model_file, ApplyConfig(device="cpu"))
    assert auto.precision == ("bf16" if native_bf16(torch.device("cpu")) else "fp32")
    bf16 = FastStylizer(model_file, ApplyConfig(device="cpu", precision="bf16"))
    assert bf16.precision == "bf16"
    image = noise(64, 96)
    exact, reduced = stylizer.stylize(image), bf16.stylize(image)
    difference = np.abs(exact - reduced)
    assert 0 < difference.max() < 0.05 and difference.mean() < 0.005  # it ran in bf16, and stayed close
    assert reduced.dtype == np.float32 and reduced.min() >= 0 and reduced.max() <= 1


def test_reduced_precision_is_refused_on_the_onnx_backend(onnx_file):
    with pytest.raises(UsageError, match="fp32"):
        FastStylizer(onnx_file, ApplyConfig(precision="bf16"))
    with pytest.raises(UsageError, match="precision"):
        FastStylizer(onnx_file.with_suffix(".safetensors"), ApplyConfig(precision="fp64"))


def test_size_resizes_the_long_side_first(stylizer):
    assert using(stylizer, size=40).stylize(noise(37, 53)).shape == (28, 40, 3)


def test_output_is_the_network_output_when_no_padding_is_needed(stylizer, model):
    image = noise(32, 48)
    with torch.inference_mode():
        expected = model(torch.from_numpy(image.transpose(2, 0, 1)[None].copy())).clamp(0, 1)
    np.testing.assert_allclose(stylizer.stylize(image), expected[0].numpy().transpose(1, 2, 0), atol=1e-6)


def test_a_batch_equals_one_image_at_a_time(model_file):
    stylizer = FastStylizer(model_file, ApplyConfig(device="cpu", batch_size=2))
    inputs = [noise(37, 53, seed=1), noise(32, 48, seed=2), noise(37, 53, seed=3), noise(37, 53, seed=4)]
    for batched, image in zip(stylizer.stylize_batch(inputs), inputs):
        np.testing.assert_allclose(batched, stylizer.stylize(image), atol=1e-5)


def test_the_input_is_not_changed(stylizer):
    image = noise(37, 53)
    before = image.copy()
    using(stylizer, strength=0.5, preserve_color="luminance").stylize(image)
    np.testing.assert_array_equal(image, before)


# --- strength and colour --------------------------------------------------------------------------


def test_strength_blends_with_the_original(stylizer):
    image = noise(37, 53)
    full = stylizer.stylize(image)
    np.testing.assert_allclose(using(stylizer, strength=0.0).stylize(image), image, atol=1 / 255)
    np.testing.assert_allclose(using(stylizer, strength=0.5).stylize(image), (full + image) / 2, atol=1e-5)


def test_preserve_color_keeps_the_input_chroma(stylizer):
    image = 0.25 + 0.5 * noise(37, 53)
    styled = using(stylizer, preserve_color="luminance").stylize(image)
    in_gamut = ((styled > 0) & (styled < 1)).all(axis=2)  # clipping to [0, 1] moves the colours elsewhere
    assert in_gamut.mean() > 0.99
    np.testing.assert_allclose(chroma(styled)[in_gamut], chroma(image)[in_gamut], atol=1e-4)
    assert np.abs(chroma(stylizer.stylize(image)) - chroma(image)).mean() > 0.01


@pytest.mark.parametrize("options, message", [
    ({"strength": 1.5}, "between 0 and 1"),
    ({"strength": -0.1}, "between 0 and 1"),
    ({"preserve_color": "histogram"}, "use 'luminance'"),
    ({"preserve_color": "lab"}, "preserve_color must be one of luminance"),
])
def test_bad_options_are_usage_errors(stylizer, options, message):
    with pytest.raises(UsageError, match=message):
        using(stylizer, **options)


@pytest.mark.parametrize("options, message", [
    ({"tile": 8}, "at least 32"),
    ({"tile": -1}, "0 \\(never tile\\)"),
    ({"tile": 64, "tile_overlap": 64}, "less than the tile"),
    ({"batch_size": 0}, "batch_size"),
    ({"backend": "tensorrt"}, "backend must be one of"),
    ({"backend": "onnx"}, "painterly export"),
])
def test_bad_settings_are_usage_errors(model_file, options, message):
    with pytest.raises(UsageError, match=message):
        FastStylizer(model_file, ApplyConfig(**options))


def test_metadata_comes_from_the_model_file(stylizer):
    assert stylizer.metadata["style"] == STYLE and stylizer.metadata["steps"] == 7
    assert (stylizer.backend, stylizer.device) == ("torch", "cpu")


# --- tiles ----------------------------------------------------------------------------------------


def test_blending_tiles_of_an_image_gives_back_that_image():
    image = noise(150, 230)
    blender = tiling.TileBlender(150, 230, tile=64, overlap=20)
    for tile in blender.tiles():
        assert tile.rows.stop - tile.rows.start == tile.cols.stop - tile.cols.start == 64
        blender.add(tile, image[tile.region])
    np.testing.assert_allclose(blender.result(), image, atol=1e-6)


def test_blending_into_uint8_is_the_float_blend_rounded():
    image = noise(150, 230)
    blended = {}
    for dtype in (np.float32, np.uint8):
        blender = tiling.TileBlender(150, 230, tile=64, overlap=20, dtype=dtype)
        for tile in blender.tiles():
            blender.add(tile, image[tile.region])
        blended[dtype] = blender.result()
    assert blended[np.uint8].dtype == np.uint8
    np.testing.assert_array_equal(blended[np.uint8], to_uint8(blended[np.float32]))


def test_tiles_are_blended_in_order_and_all_of_them():
    """Rows are written out as their row of tiles completes, so a tile out of order is refused."""
    blender = tiling.TileBlender(150, 230, tile=64, overlap=20)
    tiles = blender.tiles()
    with pytest.raises(ValueError, match="row by row"):
        blender.add(tiles[1], noise(64, 64))
    blender.add(tiles[0], noise(64, 64))
    with pytest.raises(ValueError, match="still missing"):
        blender.result()


@pytest.mark.parametrize("length, tile, overlap", [(230, 64, 20), (65, 64, 20), (64, 64, 20), (1000, 128, 0)])
def test_tiles_cover_the_axis_with_the_overlap_asked_for(length, tile, overlap):
    spans = tiling.spans(length, tile, overlap)
    assert spans[0].start == 0 and spans[-1].stop == length
    assert all(b.start <= a.stop - overlap for a, b in zip(spans, spans[1:]))
    assert all(span.window.min() > 0 for span in spans)


def test_tiled_matches_untiled_on_an_even_texture(stylizer, tiled):
    """On a repeating texture every tile's instance norms see the whole image's statistics."""
    image = periodic(160, 224)  # 2x3 tiles: row and column seams, and crossings
    difference = np.abs(tiled.stylize(image) - stylizer.stylize(image))
    seams = in_overlaps(160, 224)
    for region in (difference[seams], difference[~seams]):
        assert region.mean() < 0.02 and region.max() < 0.15


@pytest.mark.parametrize("transpose", [False, True], ids=["column seams", "row seams"])
def test_tiles_leave_no_seam(stylizer, tiled, transpose):
    """On a gradient each tile paints a little differently; the blend must hide where they meet."""
    image = smooth_scene(TILE, 3 * TILE)  # 4 tiles side by side
    image = image.transpose(1, 0, 2) if transpose else image
    blended, whole = tiled.stylize(image), stylizer.stylize(image)
    if transpose:
        blended, whole = blended.transpose(1, 0, 2), whole.transpose(1, 0, 2)
    assert seam_excess(blended, whole) < SEAM_LIMIT


@pytest.mark.parametrize("ramp", [
    lambda n: (np.arange(n) >= n / 2).astype(np.float32),  # hard cut in the middle of the overlap
    lambda n: np.ones(n, dtype=np.float32),  # plain average over the overlap
], ids=["hard cut", "flat average"])
def test_the_seam_check_catches_unblended_tiles(stylizer, tiled, monkeypatch, ramp):
    """The check above is only worth something if it fails without the smooth window."""
    monkeypatch.setattr(tiling, "_ramp", ramp)
    image = smooth_scene(TILE, 3 * TILE)
    assert seam_excess(tiled.stylize(image), stylizer.stylize(image)) > SEAM_LIMIT


def test_tiles_run_in_batches(model_file):
    stylizer = FastStylizer(model_file, ApplyConfig(device="cpu", tile=64, tile_overlap=16, batch_size=4))
    seen = []
    run = stylizer.runtime.run
    stylizer.runtime.run = lambda batch: seen.append(batch.shape) or run(batch)
    stylizer.stylize(noise(100, 180))  # 2 x 4 tiles
    assert seen == [(4, 3, 64, 64), (4, 3, 64, 64)]


def test_tile_batches_hold_at_most_a_megapixel_of_tiles(model_file, monkeypatch):
    monkeypatch.setattr(fast, "TILE_BATCH_PIXELS", 2 * 64 * 64)  # room for two 64² tiles
    stylizer = FastStylizer(model_file, ApplyConfig(device="cpu", tile=64, tile_overlap=16, batch_size=4))
    seen = []
    run = stylizer.runtime.run
    stylizer.runtime.run = lambda batch: seen.append(batch.shape[0]) or run(batch)
    stylizer.stylize(noise(100, 180))  # 2 x 4 tiles
    assert seen == [2, 2, 2, 2]


def test_auto_tiling_tiles_only_large_images(model_file, monkeypatch):
    monkeypatch.setattr(fast, "AUTO_TILE", 64)
    monkeypatch.setattr(fast, "AUTO_TILE_ABOVE", 100 * 100)
    auto = FastStylizer(model_file, ApplyConfig(device="cpu", tile_overlap=16, precision="fp32"))
    explicit = FastStylizer(model_file, ApplyConfig(device="cpu", tile=64, tile_overlap=16, precision="fp32"))
    never = FastStylizer(model_file, ApplyConfig(device="cpu", tile=0, tile_overlap=16, precision="fp32"))
    assert (auto.tile_for(90, 110), auto.tile_for(100, 101), never.tile_for(1000, 1000)) == (None, 64, None)
    small, large = noise(90, 110), noise(100, 140, seed=1)
    np.testing.assert_array_equal(auto.stylize(large), explicit.stylize(large))
    np.testing.assert_array_equal(auto.stylize(small), never.stylize(small))
    assert not np.array_equal(auto.stylize(large), never.stylize(large))  # it did tile the large one


# --- 8-bit arrays ---------------------------------------------------------------------------------


@pytest.mark.parametrize("options", [{}, {"strength": 0.6, "preserve_color": "luminance"}],
                         ids=["plain", "strength and colour"])
@pytest.mark.parametrize("tiles", [False, True], ids=["whole", "tiled"])
def test_uint8_in_uint8_out_is_the_float_result_rounded(stylizer, tiled, tiles, options):
    """An 8-bit array stays 8-bit outside the network and loses nothing but the final rounding."""
    pixels = to_uint8(0.8 * smooth_scene(160, 224) + 0.2 * noise(160, 224))  # 2x3 tiles
    each = using(tiled if tiles else stylizer, **options)
    styled = each.stylize(pixels)
    expected = each.stylize(pixels.astype(np.float32) / 255)
    assert styled.dtype == np.uint8 and styled.shape == pixels.shape
    assert np.abs(styled.astype(int) - np.round(expected * 255)).max() <= 1


def test_uint8_tiles_need_no_full_size_float_image(model_file):
    """Only one row of tiles is blended in float; the 8-bit output is written as its rows finish.

    numpy reports its allocations to tracemalloc (torch's own are not counted)."""
    stylizer = FastStylizer(model_file, ApplyConfig(device="cpu", tile=64, tile_overlap=16, batch_size=1))
    pixels = to_uint8(noise(1200, 200))  # 25 rows of 4 tiles
    tracemalloc.start()
    try:
        styled = stylizer.stylize(pixels)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert styled.dtype == np.uint8
    assert peak < 3 * pixels.nbytes  # the output, a row of tiles, a tile in flight: less than a float32 copy


# --- model files and backends ---------------------------------------------------------------------


def test_onnx_matches_torch(onnx_file, stylizer):
    onnx = FastStylizer(onnx_file)
    assert (onnx.backend, onnx.device) == ("onnx", "cpu")
    assert onnx.metadata["style"] == STYLE and onnx.metadata["steps"] == 7
    inputs = [noise(37, 53), noise(37, 53, seed=1), noise(150, 100, seed=2)]
    for ours, theirs in zip(onnx.stylize_batch(inputs), stylizer.stylize_batch(inputs)):
        np.testing.assert_allclose(ours, theirs, atol=1e-3)


def test_onnx_exported_for_batches_of_one_still_takes_batches(model, stylizer, tmp_path):
    """A plain torch.onnx.export with dynamic height and width only, as other projects do it."""
    path = tmp_path / "fixed_batch.onnx"
    axes = {2: "height", 3: "width"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.zeros(1, 3, 32, 32),), path, dynamo=False, input_names=["x"],
                          output_names=["y"], dynamic_axes={"x": axes, "y": axes})
    inputs = [noise(37, 53, seed=seed) for seed in range(3)]
    onnx = FastStylizer(path, ApplyConfig(batch_size=2))
    assert onnx.metadata == {}
    for ours, theirs in zip(onnx.stylize_batch(inputs), stylizer.stylize_batch(inputs)):
        np.testing.assert_allclose(ours, theirs, atol=1e-3)


def test_onnx_runs_without_torch(onnx_file, stylizer, tmp_path):
    image = noise(37, 53)
    np.save(tmp_path / "in.npy", image)
    save_image(image, tmp_path / "in.png")
    code = f"""
import sys
sys.modules["torch"] = None  # any import of torch now fails
import numpy as np
from painterly.fast import FastStylizer
from painterly.apply import apply_files
stylizer = FastStylizer({str(onnx_file)!r})
np.save({str(tmp_path / 'out.npy')!r}, stylizer.stylize(np.load({str(tmp_path / 'in.npy')!r})))
report = apply_files(stylizer, [{str(tmp_path / 'in.png')!r}], {str(tmp_path / 'out.png')!r})
assert report.written and not report.failed
"""
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
    np.testing.assert_allclose(np.load(tmp_path / "out.npy"), stylizer.stylize(image), atol=1e-3)
    assert read_settings(tmp_path / "out.png")["config"]["backend"] == "onnx"


def test_the_size_multiple_is_the_network_s():
    """Defined once, torch-free, for both backends: sides that are multiples of it come back whole."""
    assert transformer.SIZE_MULTIPLE == config.SIZE_MULTIPLE
    network, multiple = TransformerNet("light").eval(), config.SIZE_MULTIPLE
    with torch.inference_mode():
        assert network(torch.zeros(1, 3, 3 * multiple, 5 * multiple)).shape == (1, 3, 3 * multiple, 5 * multiple)
        assert network(torch.zeros(1, 3, 3 * multiple + 2, 5 * multiple)).shape[2] != 3 * multiple + 2


def test_pytorch_examples_pth_matches_the_native_model(tmp_path):
    model = tamed(random_model("light", pixel_scale=255.0))
    torch.save(examples_state_dict(model), tmp_path / "examples.pth")
    native = save_model(model, tmp_path / "native.safetensors")
    image = noise(37, 53)
    from_pth = FastStylizer(tmp_path / "examples.pth", ApplyConfig(device="cpu")).stylize(image)
    np.testing.assert_allclose(from_pth, FastStylizer(native, ApplyConfig(device="cpu")).stylize(image), atol=1e-6)
    assert 0.2 < from_pth.mean() < 0.8  # the 0-255 scaling happened: not all clipped to 0 or 1


def test_a_missing_onnx_model_is_a_model_file_error(tmp_path):
    with pytest.raises(ModelFileError, match="no such model file"):
        FastStylizer(tmp_path / "missing.onnx")


# --- apply_files ----------------------------------------------------------------------------------


def picture(path: Path, height: int = 20, width: int = 28, seed: int = 0) -> Path:
    return save_image(noise(height, width, seed), path)


def test_apply_one_file_records_how_it_was_made(stylizer, model_file, tmp_path):
    source = picture(tmp_path / "photo.png")
    report = apply_files(using(stylizer, strength=0.8, preserve_color="luminance"), [source], tmp_path / "out.jpg")
    assert report.written == [tmp_path / "out.jpg"] and report.failed == []
    settings = read_settings(tmp_path / "out.jpg")
    assert settings["method"] == "fast" and settings["painterly"]
    assert settings["model"]["file"] == str(model_file) and len(settings["model"]["sha256"]) == 64
    assert settings["model"]["style"] == STYLE and settings["model"]["steps"] == 7
    assert settings["config"] == {"strength": 0.8, "preserve_color": "luminance", "size": None, "tile": "auto",
                                    "tile_overlap": config.DEFAULT_TILE_OVERLAP, "backend": "torch", "device": "cpu",
                                    "precision": "fp32", "batch_size": ApplyConfig().batch_size, "smooth": 0.0,
                                    "stabilize": 0.0, "flow": "dis", "max_pixels": None, "stroke_size": None,
                                    "mask_seed": config.MASK_SEED}
    assert settings["input"]["file"] == str(source) and len(settings["input"]["sha256"]) == 64


def test_cli_apply_records_precision_and_tiling(model_file, onnx_file, tmp_path):
    from typer.testing import CliRunner

    from painterly.cli import app

    source = picture(tmp_path / "photo.png")
    run = CliRunner().invoke(app, ["apply", str(model_file), str(source), "-o", str(tmp_path / "out.png"),
                                   "--precision", "fp32", "--tile", "0", "--quiet"])
    assert run.exit_code == 0, run.output
    settings = read_settings(tmp_path / "out.png")["config"]
    assert (settings["precision"], settings["tile"]) == ("fp32", 0)
    refused = CliRunner().invoke(app, ["apply", str(onnx_file), str(source), "-o", str(tmp_path / "no.png"),
                                       "--precision", "bf16"])
    assert refused.exit_code == 2 and "fp32" in refused.output and not (tmp_path / "no.png").exists()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt exists on Linux only")
def test_cli_apply_keeps_freed_memory_on_the_torch_backend_only(model_file, onnx_file, tmp_path):
    """ONNX Runtime's threads each get a malloc arena: kept blocks there cost memory, not time."""
    code = ("import sys\nfrom painterly import allocator\nfrom painterly.cli import main\n"
            "try:\n    main(sys.argv[1:])\nexcept SystemExit as done:\n    assert not done.code, done.code\n"
            "print(allocator._done)")
    source = picture(tmp_path / "photo.png")
    kept = {}
    for model in (model_file, onnx_file):
        args = ["apply", str(model), str(source), "-o", str(tmp_path / f"{model.suffix[1:]}.png"), "--quiet"]
        done = cli_processes.run([sys.executable, "-c", code, *args], capture_output=True, text=True, check=True)
        kept[model.suffix] = done.stdout.split()[-1]
    assert kept == {".safetensors": "True", ".onnx": "None"}


def test_apply_matches_stylize(stylizer, tmp_path):
    source = picture(tmp_path / "photo.png", 37, 53)
    apply_files(using(stylizer, size=40), [source], tmp_path / "out.png")
    written, _ = read_array(tmp_path / "out.png")
    expected = using(stylizer, size=40).stylize(read_array(source)[0])
    np.testing.assert_allclose(written, expected, atol=1 / 255)


def test_apply_keeps_8_bit_images_8_bit(tiled, tmp_path, monkeypatch):
    """The output file is 8-bit anyway: images are read, tiled and written as uint8, strength and colour kept."""
    source = save_image(to_uint8(smooth_scene(160, 224)), tmp_path / "photo.png")
    seen = []
    stylizer = using(tiled, strength=0.7, preserve_color="luminance")
    stylize_batch = stylizer.stylize_batch
    monkeypatch.setattr(stylizer, "stylize_batch", lambda images: (
        seen.extend(image.dtype for image in images) or stylize_batch(images)))
    apply_files(stylizer, [source], tmp_path / "out.png")
    assert seen == [np.uint8]
    written, _ = read_array(tmp_path / "out.png", dtype=np.uint8)
    pixels, _ = read_array(source, dtype=np.uint8)
    np.testing.assert_array_equal(written, stylize_batch([pixels])[0])


def test_apply_mirrors_a_folder_tree(stylizer, tmp_path):
    picture(tmp_path / "in" / "a.png")
    picture(tmp_path / "in" / "b.jpg")
    picture(tmp_path / "in" / "sub" / "deeper" / "c.png")
    save_image(noise(20, 28), tmp_path / "c.tif")
    (tmp_path / "c.tif").rename(tmp_path / "in" / "sub" / "d.bmp")  # readable, not writable: becomes .png
    events = []
    report = apply_files(stylizer, [tmp_path / "in"], tmp_path / "out", callback=events.append)
    out = tmp_path / "out"
    assert sorted(report.written) == sorted([out / "a.png", out / "b.jpg", out / "sub/deeper/c.png", out / "sub/d.png"])
    assert all(path.is_file() for path in report.written) and not report.failed
    assert [(e.done, e.total) for e in events if isinstance(e, ApplyEvent)] == [(1, 4), (2, 4), (3, 4), (4, 4)]


def test_apply_several_inputs_into_a_folder(stylizer, tmp_path):
    first, second = picture(tmp_path / "one.png"), picture(tmp_path / "two.webp", seed=1)
    report = apply_files(stylizer, [first, second], tmp_path / "out", suffix="jpg")
    assert report.written == [tmp_path / "out" / "one.jpg", tmp_path / "out" / "two.jpg"]


def test_apply_batches_equal_sizes_a_few_at_a_time(model_file, tmp_path):
    stylizer = FastStylizer(model_file, ApplyConfig(device="cpu", batch_size=2))
    for index, size in enumerate([(20, 28), (20, 28), (20, 28), (24, 24), (20, 28)]):
        picture(tmp_path / "in" / f"{index}.png", *size)
    seen = []
    run = stylizer.runtime.run
    stylizer.runtime.run = lambda batch: seen.append(len(batch)) or run(batch)
    assert len(apply_files(stylizer, [tmp_path / "in"], tmp_path / "out").written) == 5
    assert seen == [2, 1, 1, 1]


def test_apply_stdin_to_stdout(stylizer, tmp_path, monkeypatch):
    source = picture(tmp_path / "photo.png")
    stdout = io.TextIOWrapper(io.BytesIO())
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(source.read_bytes())))
    monkeypatch.setattr(sys, "stdout", stdout)
    report = apply_files(stylizer, ["-"], "-")
    (tmp_path / "result.png").write_bytes(stdout.buffer.getvalue())
    written, _ = read_array(tmp_path / "result.png")
    np.testing.assert_allclose(written, stylizer.stylize(read_array(source)[0]), atol=1 / 255)
    assert report.written == [Path("-")]
    assert read_settings(tmp_path / "result.png")["input"]["file"] == "-"


def test_apply_bad_stdin_names_stdin(stylizer, tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"not an image")))
    with pytest.raises(ImageError, match="^<stdin>: "):
        apply_files(stylizer, ["-"], tmp_path / "out.png")
    assert not (tmp_path / "out.png").exists()


def test_apply_carries_on_past_a_corrupt_file(stylizer, tmp_path):
    picture(tmp_path / "in" / "a.png")
    (tmp_path / "in" / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    picture(tmp_path / "in" / "c.png")
    events = []
    report = apply_files(stylizer, [tmp_path / "in"], tmp_path / "out", callback=events.append)
    assert report.written == [tmp_path / "out" / "a.png", tmp_path / "out" / "c.png"]
    [(failed, message)] = report.failed
    assert failed == str(tmp_path / "in" / "b.png") and "b.png" in message and "\n" not in message
    assert any(isinstance(e, MessageEvent) and e.level == "warning" and "b.png" in e.text for e in events)
    assert not (tmp_path / "out" / "b.png").exists()


def test_apply_one_corrupt_file_raises_and_writes_nothing(stylizer, tmp_path):
    (tmp_path / "bad.png").write_bytes(b"not an image at all")
    with pytest.raises(ImageError, match="bad.png"):
        apply_files(stylizer, [tmp_path / "bad.png"], tmp_path / "out" / "bad.png")
    assert not (tmp_path / "out").exists()


def test_apply_never_overwrites_an_input(stylizer, tmp_path):
    source = picture(tmp_path / "in" / "a.png")
    before = source.read_bytes()
    with pytest.raises(ImageError, match="overwrite an input"):
        apply_files(stylizer, [source], source)
    with pytest.raises(ImageError, match="overwrite an input"):
        apply_files(stylizer, [tmp_path / "in"], tmp_path / "in")
    assert source.read_bytes() == before


@pytest.mark.parametrize("inputs, output, message", [
    (["a.png", "b.png"], "out.png", "into a folder"),
    (["a.png", "sub/a.png"], "out", "both be written"),
    (["a.png", "b.png"], "-", "stdout"),
    (["a.png"], "out.gif", "cannot write this file type"),
])
def test_apply_refuses_impossible_requests_before_any_work(stylizer, tmp_path, inputs, output, message):
    for name in inputs:
        picture(tmp_path / name)
    with pytest.raises((UsageError, ImageError), match=message):
        apply_files(stylizer, [tmp_path / name for name in inputs], tmp_path / output if output != "-" else "-")
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.png").exists()


# --- what a model or a request cannot do -------------------------------------------------------------


def poisoned_onnx(onnx_file: Path, path: Path, value: float) -> Path:
    """The exported model with its first convolution's weights set to `value`: it loads and runs,
    and every output pixel is NaN (instance norm spreads a non-finite value over the whole image)."""
    import onnx
    from onnx import numpy_helper

    proto = onnx.load(onnx_file)
    weight = next(tensor for tensor in proto.graph.initializer if len(tensor.dims) == 4)
    weight.CopyFrom(numpy_helper.from_array(np.full_like(numpy_helper.to_array(weight), value), weight.name))
    onnx.save(proto, path)
    return path


@pytest.mark.parametrize("value", [np.nan, np.inf], ids=["nan", "inf"])
def test_a_model_whose_output_is_not_finite_is_refused_not_written_black(onnx_file, tmp_path, value):
    model = poisoned_onnx(onnx_file, tmp_path / "poisoned.onnx", value)
    stylizer = FastStylizer(model)
    with pytest.raises(ModelFileError) as error:
        stylizer.stylize(noise(20, 28))
    message = str(error.value)
    assert message.startswith(f"{model}: ") and "not finite" in message and "\n" not in message
    picture(tmp_path / "in" / "a.png")
    picture(tmp_path / "in" / "b.png", seed=1)
    with pytest.raises(ModelFileError):  # the model is bad, not one file: the batch stops
        apply_files(stylizer, [tmp_path / "in"], tmp_path / "out")
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


def test_a_torch_model_whose_output_overflows_is_refused(tmp_path):
    """Finite weights that no file check refuses, but whose output is infinite."""
    model = TransformerNet("light").eval()
    with torch.no_grad():
        model.deconv3.conv2d.weight.fill_(1e38)
    path = save_model(model, tmp_path / "overflow.safetensors")
    with pytest.raises(ModelFileError, match="not finite"):
        FastStylizer(path, ApplyConfig(device="cpu", precision="fp32")).stylize(noise(20, 28))


def test_an_onnx_model_is_opened_once(onnx_file, monkeypatch):
    """The backend reads the metadata from the session it runs: one session, not two."""
    import onnxruntime

    opened = []

    class CountedSession(onnxruntime.InferenceSession):
        def __init__(self, path, *args, **kwargs):
            opened.append(path)
            super().__init__(path, *args, **kwargs)

    monkeypatch.setattr(onnxruntime, "InferenceSession", CountedSession)
    stylizer = FastStylizer(onnx_file)
    assert opened == [str(onnx_file)]
    assert stylizer.metadata["steps"] == 7 and stylizer.stylize(noise(20, 28)).shape == (20, 28, 3)


def test_an_onnx_model_that_is_no_image_network_is_one_line(tmp_path):
    import onnx

    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("Identity", ["x"], ["y"])], "identity",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])],
    )
    onnx.save(onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)]), tmp_path / "id.onnx")
    with pytest.raises(ModelFileError, match="not an image-to-image model") as error:
        FastStylizer(tmp_path / "id.onnx")
    assert str(tmp_path / "id.onnx") in str(error.value) and "\n" not in str(error.value)


def test_a_size_over_the_pixel_limit_is_refused_before_resizing(stylizer, tmp_path):
    """--size 60000 on a small image asks for 2.7 gigapixels: refused in one line, nothing allocated."""
    with pytest.raises(ImageError, match="at --size 60000: 60000x45000 = 2,700,000,000 pixels is over the limit"):
        using(stylizer, size=60000).stylize(noise(30, 40))
    assert using(stylizer, size=100, max_pixels=100 * 75).stylize(noise(30, 40)).shape == (75, 100, 3)
    with pytest.raises(ImageError, match="over the limit of 7,499"):
        using(stylizer, size=100, max_pixels=100 * 75 - 1).stylize(noise(30, 40))
    source = picture(tmp_path / "photo.png", 30, 40)
    with pytest.raises(ImageError) as error:
        apply_files(using(stylizer, size=60000), [source], tmp_path / "out.png")
    assert str(error.value).startswith(f"{source} at --size 60000: ") and not (tmp_path / "out.png").exists()


def test_apply_carries_on_past_an_output_that_cannot_be_written(stylizer, tmp_path):
    for name in ("a", "b", "c"):
        picture(tmp_path / "in" / f"{name}.png")
    out = tmp_path / "out"
    (out / "b.png").mkdir(parents=True)  # a folder where b's result should go
    events = []
    report = apply_files(stylizer, [tmp_path / "in"], out, callback=events.append)
    assert report.written == [out / "a.png", out / "c.png"]
    [(failed, message)] = report.failed
    assert failed == str(tmp_path / "in" / "b.png") and message.startswith(f"{out / 'b.png'}: cannot write")
    assert [(e.done, e.total) for e in events if isinstance(e, ApplyEvent)] == [(1, 3), (2, 3), (3, 3)]
    assert sorted(path.name for path in out.iterdir()) == ["a.png", "b.png", "c.png"]  # no temporary left
    assert not list((out / "b.png").iterdir())


def truncated_animations() -> list[bytes]:
    """An animated GIF cut at several points: some cuts leave a readable first frame, some fail while
    the frames are counted, some after the first frames have been read."""
    from PIL import Image

    rng = np.random.default_rng(0)
    frames = [Image.fromarray(rng.integers(0, 255, (24, 32, 3), dtype=np.uint8)) for _ in range(4)]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    data = buffer.getvalue()
    return [data[:cut] for cut in range(len(data) // 4, len(data), len(data) // 9)]


def test_a_truncated_animation_never_stops_a_folder_batch(stylizer, tmp_path):
    """Planning a folder counts an animation's frames; a cut-off file must be reported, not end the batch."""
    folder = tmp_path / "in"
    picture(folder / "a.png")
    cuts = truncated_animations()
    for index, data in enumerate(cuts):
        (folder / f"cut{index}.gif").write_bytes(data)
        assert isinstance(is_video(folder / f"cut{index}.gif"), bool)  # never raises
    report = apply_files(stylizer, [folder], tmp_path / "out")
    assert tmp_path / "out" / "a.png" in report.written
    assert len(report.written) + len(report.failed) == 1 + len(cuts)
    assert all("\n" not in message for _, message in report.failed)


def test_a_symlink_loop_in_a_folder_is_reported_and_the_others_written(stylizer, tmp_path):
    folder = tmp_path / "in"
    picture(folder / "a.png")
    (folder / "loop.png").symlink_to("loop.png")
    report = apply_files(stylizer, [folder], tmp_path / "out")
    assert report.written == [tmp_path / "out" / "a.png"]
    [(source, message)] = report.failed
    assert source.endswith("loop.png") and "\n" not in message


def test_running_out_of_memory_is_one_line_with_advice(model_file, monkeypatch):
    """The torch backend's one out-of-memory boundary is `devices.out_of_memory_guard`."""
    stylizer = FastStylizer(model_file, ApplyConfig(device="cpu", precision="fp32"))

    def out_of_memory(self, x):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(TransformerNet, "forward", out_of_memory)
    with pytest.raises(PainterlyError) as error:
        stylizer.stylize(noise(20, 28))
    message = str(error.value)
    assert message.startswith("out of memory on cpu while stylising 1 image(s) of 28x20 pixels")
    assert "--tile 512" in message and "\n" not in message


def reshaping_onnx(path: Path, shape: list[int]) -> Path:
    """An ONNX model that takes (N, 3, H, W) images and reshapes them to `shape` instead of painting them."""
    import onnx

    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("Reshape", ["x", "shape"], ["y"])], "not-a-style",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["N", 3, "H", "W"])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)],
        initializer=[onnx.helper.make_tensor("shape", onnx.TensorProto.INT64, [len(shape)], shape)],
    )
    onnx.save(onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)]), path)
    return path


@pytest.mark.parametrize("shape, expected", [
    ([2, -1], "not an image"),  # runs: every padded batch holds an even number of values
    ([1, 3, 4, 4], "ONNX Runtime cannot run this model"),  # an 8x8 batch holds 192 values, not 48
], ids=["wrong output shape", "fails to run"])
def test_an_onnx_model_that_does_not_give_images_is_one_line(tmp_path, shape, expected):
    model = reshaping_onnx(tmp_path / "reshape.onnx", shape)
    with pytest.raises(ModelFileError) as error:
        FastStylizer(model).stylize(noise(8, 8))
    message = str(error.value)
    assert message.startswith(f"{model}: ") and expected in message and "\n" not in message
