"""Johnson networks by region (issue 13): a model per mask region or the photo kept, feathered edges, tiling,
folders, ONNX, automatic masks written beside the outputs, and the CLI's one-line refusals."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from adain_helpers import painting, save_adain
from helpers import picture
from painterly.apply import apply_files
from painterly.cli import app
from painterly.config import ApplyConfig
from painterly.errors import ImageError
from painterly.events import VideoProgressEvent
from painterly.export import export_onnx
from painterly.fast import FastStylizer
from painterly.images import read_array, read_settings, save_animation, save_image
from painterly.modelfile import save_model
from painterly.pixels import resize_long_side, to_float32, to_uint8
from painterly.provenance import file_sha256
from painterly.regions import auto_mask, read_mask
from painterly.transformer import Architecture, TransformerNet
from painterly.video import read_video_settings

CONFIG = ApplyConfig(device="cpu", precision="fp32")
FEATHER = 8  # two box blurs of radius 4: a region's weight is exactly 1 from 8 pixels inside its edge on
REACH = FEATHER


def tiny_net(seed: int, bias: float) -> TransformerNet:
    """A random network a few kernels wide, its output around `bias`: two seeds paint visibly differently,
    and mildly enough (like a trained one) that its instance norms barely notice being tiled."""
    torch.manual_seed(seed)
    net = TransformerNet(Architecture(channels=(4, 8, 8), residual_blocks=1)).eval()
    with torch.no_grad():
        for parameter in net.parameters():
            parameter.add_(0.02 * torch.randn_like(parameter))
        net.deconv3.conv2d.weight.mul_(0.2)
        net.deconv3.conv2d.bias.fill_(bias)
    return net


def three_columns(height: int, width: int) -> np.ndarray:
    """Red, then blue, then green columns (regions 1, 2, 3 in the order a mask file numbers them)."""
    mask = np.zeros((height, width, 3), dtype=np.uint8)
    third = width // 3
    mask[:, :third] = (255, 0, 0)
    mask[:, third : 2 * third] = (0, 0, 255)
    mask[:, 2 * third :] = (0, 255, 0)
    return mask


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("regions")
    paths = {
        "a": save_model(tiny_net(0, 0.5), folder / "a.safetensors", style={"image": "a.jpg"}),
        "b": save_model(tiny_net(5, 0.3), folder / "b.safetensors", style={"image": "b.jpg"}),
        "adain": save_adain(folder / "adain.safetensors"),
        "painting": save_image(painting(40, 40, (0.9, 0.15, 0.1)), folder / "red.png"),
        "photo": save_image(picture(48, 72), folder / "photo.png"),
        "mask": save_image(three_columns(24, 36), folder / "mask.png"),  # half the photo's size: resized
    }
    photos = folder / "photos"
    photos.mkdir()
    save_image(picture(48, 72, seed=1), photos / "wide.png")
    save_image(picture(40, 40, seed=2), photos / "square.png")
    paths["photos"] = photos
    frames = [(picture(32, 48, seed=seed) * 255).astype(np.uint8) for seed in (3, 4, 5)]
    paths["clip"] = save_animation(frames, [100, 100, 100], folder / "clip.gif", loop=0)
    return paths


@pytest.fixture(scope="module")
def stylizers(files):
    return {name: FastStylizer(files[name], CONFIG) for name in ("a", "b")}


def photo_uint8(files) -> np.ndarray:
    return read_array(files["photo"], dtype=np.uint8)[0]


def invoke(*args):
    return CliRunner().invoke(app, ["apply", *[str(a) for a in args]])


def test_each_region_is_its_models_output_or_the_photo_and_is_recorded(files, stylizers, one_thread):
    a, b = stylizers["a"], stylizers["b"]
    photo = photo_uint8(files)
    regions = a.with_regions(files["mask"], [None, files["b"], a])
    styled = regions.stylize(photo)
    assert styled.dtype == np.uint8 and styled.shape == photo.shape
    inside = [slice(0, 24 - REACH), slice(24 + REACH, 48 - REACH), slice(48 + REACH, 72)]  # columns of 1, 2, 3
    np.testing.assert_array_equal(styled[:, inside[0]], photo[:, inside[0]])
    np.testing.assert_array_equal(styled[:, inside[1]], b.stylize(photo)[:, inside[1]])
    np.testing.assert_array_equal(styled[:, inside[2]], a.stylize(photo)[:, inside[2]])
    assert np.abs(styled[:, inside[1]].astype(int) - photo[:, inside[1]]).mean() > 10  # b does paint
    record = regions.describe()
    assert record["mask"] == {"file": str(files["mask"]), "sha256": file_sha256(files["mask"]),
                              "regions": ["#ff0000", "#0000ff", "#00ff00"], "feather": FEATHER}
    assert [entry.get("keep") or entry["file"] for entry in record["region_models"]] == [
        True, str(files["b"]), str(files["a"])]
    assert record["region_models"][1]["sha256"] == file_sha256(files["b"])
    assert record["region_models"][1]["style"] == {"image": "b.jpg"}
    assert set(regions.input_files()) >= {str(files["mask"]), str(files["b"])}


def test_feathering_blends_the_outputs_along_a_smooth_ramp(files, stylizers, one_thread):
    a, b = stylizers["a"], stylizers["b"]
    photo = picture(32, 64, seed=4)  # float in, float out: the blend is exact
    labels = np.zeros((32, 64), dtype=np.uint8)
    labels[:, 32:] = 1
    styled = a.with_regions(labels, [None, b]).stylize(photo)
    weight = read_mask_weights(labels, FEATHER)
    np.testing.assert_allclose(styled, weight[0][..., None] * photo + weight[1][..., None] * b.stylize(photo),
                               atol=1e-5)
    ramp = weight[1][16]
    assert ramp[: 32 - REACH].max() == 0 and ramp[32 + REACH :].min() == 1
    steps = np.diff(ramp)
    assert steps.min() >= 0 and 0 < steps.max() < 0.2 and (steps > 0).sum() >= FEATHER  # gradual, not a cut
    hard = a.with_config(CONFIG.replace(mask_feather=0)).with_regions(labels, [None, b]).stylize(photo)
    np.testing.assert_array_equal(hard[:, :32], photo[:, :32])


def read_mask_weights(labels: np.ndarray, feather: int) -> np.ndarray:
    from painterly.regions import mask_from_labels

    return mask_from_labels(labels).weights(*labels.shape, feather)


def test_tiled_regions_are_each_models_tiled_output_and_close_to_untiled(files, stylizers, one_thread):
    tiled_config = CONFIG.replace(tile=48, tile_overlap=24)
    a, b = (stylizers[name].with_config(tiled_config) for name in ("a", "b"))
    cell = (np.random.default_rng(3).random((8, 8, 3)) * 255).astype(np.uint8)
    photo = np.tile(cell, (8, 12, 1))  # a repeating texture: each tile's instance norms see the whole's statistics
    assert a.is_tiled(64, 96)  # 2x3 tiles
    tiled = a.with_regions(files["mask"], [b, None, a]).stylize(photo)
    np.testing.assert_array_equal(tiled[:, : 32 - REACH], b.stylize(photo)[:, : 32 - REACH])
    np.testing.assert_array_equal(tiled[:, 64 + REACH :], a.stylize(photo)[:, 64 + REACH :])
    whole = stylizers["a"].with_regions(files["mask"], [stylizers["b"], None, stylizers["a"]]).stylize(photo)
    difference = np.abs(tiled.astype(int) - whole)
    painted = np.abs(whole[:, 64:].astype(int) - photo[:, 64:]).mean()
    assert difference.mean() < 0.15 * painted and np.percentile(difference, 99) < 32, (difference.mean(), painted)


def test_a_folder_of_two_sizes_shares_one_mask(files, stylizers, tmp_path, one_thread):
    out = tmp_path / "out"
    result = invoke(files["a"], files["photos"], "--mask", files["mask"], "--region", f"2={files['b']}",
                    "--region", "3=keep", "--precision", "fp32", "-o", out)
    assert result.exit_code == 0, result.output
    square = read_array(files["photos"] / "square.png", dtype=np.uint8)[0]
    styled = read_array(out / "square.png", dtype=np.uint8)[0]
    assert styled.shape == (40, 40, 3) and read_array(out / "wide.png")[0].shape == (48, 72, 3)
    # The 36-column mask resized to 40 columns: region 1 is columns 0..13, region 3 from column 27.
    np.testing.assert_array_equal(styled[:, : 13 - REACH], stylizers["a"].stylize(square)[:, : 13 - REACH])
    np.testing.assert_array_equal(styled[:, 27 + REACH :], square[:, 27 + REACH :])
    settings = read_settings(out / "square.png")
    assert settings["mask"]["file"] == str(files["mask"])
    assert [entry.get("keep") or entry["file"] for entry in settings["region_models"]] == [
        str(files["a"]), str(files["b"]), True]
    assert not list(out.glob("*.mask.png"))  # a given mask is not written again


def test_an_onnx_model_paints_its_region_beside_a_torch_one(files, stylizers, tmp_path, one_thread):
    onnx = export_onnx(files["b"], tmp_path / "b.onnx", check_sizes=[(1, 3, 32, 32)]).path
    photo = photo_uint8(files)
    regions = stylizers["a"].with_regions(files["mask"], [None, onnx, stylizers["a"]])
    styled = regions.stylize(photo)
    onnx_alone = FastStylizer(onnx, CONFIG).stylize(photo)
    assert FastStylizer(onnx, CONFIG).backend == "onnx"
    middle = slice(24 + REACH, 48 - REACH)
    np.testing.assert_array_equal(styled[:, middle], onnx_alone[:, middle])
    assert regions.describe()["region_models"][1]["file"] == str(onnx)


def test_a_mask_with_stroke_size_is_checked_at_the_working_size(files):
    """--stroke-size paints (and uses the mask) at the working size: that is the size checked, and named."""
    adain = FastStylizer(files["adain"], CONFIG.replace(style_size=None))  # the painting measured as it is: tiny
    masked = adain.with_styles([adain.style_statistics(painting(16, 16, (1.0, 0.2, 0.1))), None],
                               mask=np.eye(8, dtype=np.int64))
    with pytest.raises(ImageError, match="big.png: 3000x2000 pixels is more than --mask stylises"):
        masked.check_size("big.png", 2000, 3000)
    masked.with_config(masked.config.replace(stroke_size=1024)).check_size("big.png", 2000, 3000)  # 1024x683
    with pytest.raises(ImageError, match=r"big.png: 2900x1933 pixels \(--stroke-size 2900's working size\) is more "
                                         r"than --mask stylises .*give a smaller --stroke-size"):
        masked.with_config(masked.config.replace(stroke_size=2900)).check_size("big.png", 2000, 3000)


def test_johnson_regions_at_stroke_size_are_feathered_as_in_the_preview(files, stylizers, tmp_path, one_thread):
    """--stroke-size N with --region: each region is its model's own print (painted at N, brought back), blended
    with the preview's feathering (8 of its pixels: 16 of the print's at twice the size), so the print downscaled
    is the preview at the seams too. AdaIN's limit on a masked working size is not theirs: each model tiles."""
    common = [files["a"], files["photo"], "--mask", files["mask"], "--region", "1=keep", "--region",
              f"2={files['b']}", "--precision", "fp32", "-o"]
    for name, option in (("preview", "--size"), ("print", "--stroke-size")):
        result = invoke(*common, tmp_path / f"{name}.png", option, 36)  # the 72x48 photo painted at 36x24
        assert result.exit_code == 0, result.output
    printed, preview = (read_array(tmp_path / f"{name}.png", dtype=np.uint8)[0] for name in ("print", "preview"))
    photo = photo_uint8(files)
    at = CONFIG.replace(stroke_size=36)
    outputs = [to_float32(photo)] + [to_float32(stylizers[key].with_config(at).stylize(photo)) for key in ("b", "a")]
    mask = read_mask(files["mask"])
    blend = {feather: to_uint8(sum(w[..., None] * out for w, out in zip(mask.weights(48, 72, feather), outputs)))
             for feather in (FEATHER, 2 * FEATHER)}
    np.testing.assert_array_equal(printed, blend[2 * FEATHER])
    settings = read_settings(tmp_path / "print.png")  # the setting as given; the size it applies at follows
    assert settings["config"]["stroke_size"] == 36 and settings["mask"]["feather"] == FEATHER
    assert np.abs(blend[FEATHER].astype(int) - printed).max() > 8  # the print's own 8 pixels would be other seams
    seen = [np.abs(resize_long_side(to_float32(image), 36) - to_float32(preview)).mean() for image in blend.values()]
    assert seen[1] < seen[0] / 2  # downscaled to the preview's size, the print is closer to it (0.0056 against 0.0138)
    regions = stylizers["a"].with_config(CONFIG.replace(stroke_size=2900)).with_regions(
        files["mask"], [None, stylizers["b"], None])
    regions.check_size("big.png", 2000, 3000)  # 2900x1933 at the working size: tiled, so not refused


def test_auto_masks_are_found_per_photo_and_written_beside_each_output(files, tmp_path, one_thread):
    out = tmp_path / "out"
    result = invoke(files["a"], files["photos"], "--mask", "auto:2", "--region", f"1={files['b']}",
                    "--precision", "fp32", "--mask-seed", "3", "-o", out)
    assert result.exit_code == 0, result.output
    for name in ("wide", "square"):
        photo = read_array(files["photos"] / f"{name}.png", dtype=np.uint8)[0]
        written = out / f"{name}.mask.png"
        np.testing.assert_array_equal(read_mask(written).labels, auto_mask(photo, 2, seed=3).labels)
        settings = read_settings(out / f"{name}.png")
        recorded = settings["mask"]
        assert recorded["file"] == str(written) and recorded["sha256"] == file_sha256(written)
        assert recorded["auto"] == 2 and recorded["seed"] == 3 and settings["config"]["mask_seed"] == 3
    # The written mask given back as --mask gives the same picture.
    again = tmp_path / "again.png"
    result = invoke(files["a"], files["photos"] / "wide.png", "--mask", out / "wide.mask.png", "--region",
                    f"1={files['b']}", "--precision", "fp32", "-o", again)
    assert result.exit_code == 0, result.output
    np.testing.assert_array_equal(read_array(again)[0], read_array(out / "wide.png")[0])


def test_an_animation_takes_its_first_frames_auto_mask_written_once(files, tmp_path, one_thread):
    out = tmp_path / "clip.gif"
    result = invoke(files["a"], files["clip"], "--mask", "auto:2", "--region", "2=keep", "--precision", "fp32",
                    "-o", out)
    assert result.exit_code == 0, result.output
    first = read_array(files["clip"], dtype=np.uint8)[0]
    np.testing.assert_array_equal(read_mask(tmp_path / "clip.mask.png").labels, auto_mask(first, 2).labels)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["clip.gif", "clip.mask.png"]
    recorded = read_video_settings(out)["mask"]  # as an image's: the file, its SHA-256, its regions' colours
    assert recorded == {"file": str(tmp_path / "clip.mask.png"), "sha256": file_sha256(tmp_path / "clip.mask.png"),
                        "auto": 2, "seed": 0, "regions": ["#e6194b", "#3cb44b"], "feather": 8}
    before = {name: file_sha256(tmp_path / name) for name in ("clip.gif", "clip.mask.png")}

    def interrupt(event):
        if isinstance(event, VideoProgressEvent):  # after the first frame: its new mask is found and staged
            assert file_sha256(tmp_path / "clip.mask.png") == before["clip.mask.png"]  # not yet in place
            [staged] = [path for path in tmp_path.iterdir() if path.name.startswith(".clip.mask.png.")]
            assert staged.suffix == ".png" and file_sha256(staged) != before["clip.mask.png"]
            raise KeyboardInterrupt

    again = FastStylizer(files["a"], CONFIG.replace(mask_seed=5)).with_regions("auto:3", [None, None, files["b"]])
    with pytest.raises(KeyboardInterrupt):  # a second run onto the same clip is interrupted
        apply_files(again, [files["clip"]], out, callback=interrupt)
    assert {name: file_sha256(tmp_path / name) for name in before} == before  # the earlier run's mask stands
    assert sorted(path.name for path in tmp_path.iterdir()) == ["clip.gif", "clip.mask.png"]  # nor a temporary


def test_adain_paintings_take_an_auto_mask_too(files, tmp_path, one_thread):
    out = tmp_path / "out.png"
    result = invoke(files["adain"], files["photo"], "--style", files["painting"], "--style", "keep", "--mask",
                    "auto:2", "--style-size", "32", "--precision", "fp32", "-o", out)
    assert result.exit_code == 0, result.output
    written = tmp_path / "out.mask.png"
    np.testing.assert_array_equal(read_mask(written).labels, auto_mask(photo_uint8(files), 2).labels)
    assert read_settings(out)["mask"]["sha256"] == file_sha256(written)


@pytest.mark.parametrize("args, fragment", [
    (["--region", "1=keep"], "--region N=MODEL needs --mask"),
    (["--mask", "{mask}", "--region", "4=keep"], "has 3 regions, numbered 1 to 3"),
    (["--mask", "auto:2", "--region", "3=keep"], "--mask auto:2 has 2 regions"),
    (["--mask", "{mask}", "--region", "2=keep", "--region", "2={b}"], "--region 2 is given twice"),
    (["--mask", "{mask}", "--region", "two=keep"], "expected N=MODEL or N=keep"),
    (["--mask", "{mask}", "--region", "2="], "expected N=MODEL or N=keep"),
    (["--mask", "{mask}", "--region", "2={adain}"], "an arbitrary-style (AdaIN) model takes one --style"),
    (["--mask", "{mask}", "--region", "2=nosuch.safetensors"], "nosuch.safetensors: no such model file"),
    (["--mask", "{mask}"], "--mask needs --style paintings (an AdaIN model) or --region"),
    (["--mask", "{mask}", "--region", "2=keep", "--style-blend", "1,1"], "with --region each region takes one"),
    (["--mask", "auto:x", "--region", "1=keep"], "auto:K takes a number of regions K from 2 to 16"),
    (["--mask", "{photo}", "--region", "1=keep"], "a mask has one flat colour per region"),
    (["--mask", "{mask}", "--region", "1=keep", "--region", "2=keep", "--region", "3=keep"],
     "every region of the mask is 'keep': there is nothing to paint"),
])
def test_region_mistakes_are_one_line_and_write_nothing(files, tmp_path, args, fragment):
    out = tmp_path / "out.png"
    names = {key: str(value) for key, value in files.items()}
    result = invoke(files["a"], files["photo"], *[arg.format(**names) for arg in args], "-o", out)
    assert result.exit_code in (1, 2), result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("painterly: error: ") and fragment in lines[0], result.stderr
    assert not out.exists() and not (tmp_path / "out.mask.png").exists()


def test_adain_refuses_region_stdout_refuses_auto_and_the_mask_is_never_overwritten(files, tmp_path):
    out = tmp_path / "out.png"
    result = invoke(files["adain"], files["photo"], "--mask", files["mask"], "--region", "1=keep", "-o", out)
    assert result.exit_code == 2 and "takes one --style painting per --mask region" in result.stderr
    result = invoke(files["a"], files["photo"], "--mask", "auto:2", "--region", "1=keep", "-o", "-")
    assert result.exit_code == 2 and "-o - has no beside" in result.stderr and not result.stdout
    assert not list(tmp_path.iterdir())
    before = file_sha256(files["mask"])
    result = invoke(files["a"], files["photo"], "--mask", files["mask"], "--region", "1=keep", "-o", files["mask"])
    assert result.exit_code == 1 and "refusing to overwrite an input file" in result.stderr
    assert file_sha256(files["mask"]) == before
