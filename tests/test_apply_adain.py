"""Arbitrary-style (AdaIN) models through files, the CLI, animations and videos, and ONNX Runtime."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import cli_processes
from adain_helpers import export_adain_graph, painting, photo, save_adain
from helpers import random_model
from painterly import images
from painterly.apply import apply_files
from painterly.cli import app
from painterly.config import ApplyConfig
from painterly.errors import UsageError
from painterly.fast import FastStylizer, Painting
from painterly.images import read_array, read_settings, save_image
from painterly.modelfile import save_model
from painterly.video import read_video_settings

RED, BLUE = (0.9, 0.15, 0.1), (0.1, 0.2, 0.8)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A light AdaIN model, its ONNX graph, a Johnson model, two paintings, photos and a two-colour mask."""
    folder = tmp_path_factory.mktemp("adain_files")
    model = save_adain(folder / "adain.safetensors")
    paths = {
        "model": model,
        "onnx": export_adain_graph(model, folder / "adain.onnx"),
        "johnson": save_model(random_model("light"), folder / "johnson.safetensors", style={"image": "x.png"}),
        "red": save_image(painting(60, 80, RED), folder / "red.png"),
        "blue": save_image(painting(50, 50, BLUE), folder / "blue.png"),
        "photo": save_image(photo(40, 56), folder / "photo.png"),
    }
    mask = np.zeros((20, 28, 3), dtype=np.uint8)
    mask[:, :14] = (0, 255, 0)  # green is met first: region 0, the left half
    mask[:, 14:] = (255, 255, 255)
    paths["mask"] = save_image(mask, folder / "mask.png")
    photos = folder / "photos"
    photos.mkdir()
    for index, (height, width) in enumerate([(40, 56), (36, 36), (44, 30)]):
        save_image(photo(height, width, seed=index), photos / f"p{index}.png")
    paths["photos"] = photos
    return paths


def invoke(*args):
    return CliRunner().invoke(app, ["apply", *[str(a) for a in args]])


def assert_one_line_failure(result, output: Path, fragment: str, code: int) -> None:
    assert result.exit_code == code, (result.exit_code, result.output)
    lines = [line for line in result.stderr.splitlines() if line.strip() and "painterly: warning:" not in line]
    assert len(lines) == 1 and lines[0].startswith("painterly: error: "), result.stderr
    assert fragment in lines[0], lines[0]
    assert not output.exists()


def test_apply_command_end_to_end_in_a_real_process(files, tmp_path):
    out = tmp_path / "out.png"
    command = [sys.executable, "-m", "painterly", "apply", str(files["model"]), str(files["photo"]), "--style",
               str(files["red"]), "--style", str(files["blue"]), "--style-blend", "0.7,0.3", "--alpha", "0.8",
               "--style-size", "64", "--precision", "fp32", "-o", str(out)]
    result = cli_processes.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    settings = read_settings(out)
    assert settings["method"] == "adain" and settings["config"]["alpha"] == 0.8
    assert settings["config"]["style_size"] == 64 and settings["input"]["file"] == str(files["photo"])
    assert [(s["file"], s["weight"]) for s in settings["styles"]] == [(str(files["red"]), 0.7),
                                                                     (str(files["blue"]), 0.3)]
    assert all(len(s["sha256"]) == 64 for s in settings["styles"])
    # The recorded settings reproduce the output through the Python API.
    config = ApplyConfig(**{key: settings["config"][key] for key in ("alpha", "style_size", "precision")})
    stylizer = FastStylizer(files["model"], config)
    again = stylizer.with_styles([stylizer.read_painting(s["file"]) for s in settings["styles"]],
                                 blend=[s["weight"] for s in settings["styles"]])
    expected = again.stylize(read_array(files["photo"], dtype=np.uint8)[0])
    np.testing.assert_array_equal(read_array(out, dtype=np.uint8)[0], expected)


def test_a_folder_with_one_mask_fits_the_mask_to_each_photo(files, tmp_path):
    out = tmp_path / "out"
    result = invoke(files["model"], files["photos"], "--style", files["red"], "--style", "keep", "--mask",
                    files["mask"], "--precision", "fp32", "--style-size", "64", "-o", out)
    assert result.exit_code == 0, result.output
    for index in range(3):
        styled = read_array(out / f"p{index}.png")[0]
        original = read_array(files["photos"] / f"p{index}.png")[0]
        assert styled.shape == original.shape
        settings = read_settings(out / f"p{index}.png")
        assert settings["mask"]["file"] == str(files["mask"]) and settings["mask"]["regions"] == ["#00ff00", "#ffffff"]
        assert settings["styles"][1] == {"keep": True, "region": 1}
    stylizer = FastStylizer(files["model"], ApplyConfig(precision="fp32", style_size=64))
    red = stylizer.read_painting(files["red"])
    all_red = stylizer.with_styles([red]).stylize(read_array(files["photos"] / "p0.png", dtype=np.uint8)[0])
    masked = read_array(out / "p0.png", dtype=np.uint8)[0].astype(int)
    left, right = (slice(4, 36), slice(4, 20)), (slice(4, 36), slice(36, 52))
    assert np.abs(masked[left] - all_red[left]).mean() < 0.5 * np.abs(masked[right] - all_red[right]).mean()


@pytest.mark.parametrize("args, fragment, code", [
    ([], "an arbitrary-style (AdaIN) model needs a painting: give --style", 2),
    (["--style", "{blue}", "--style-blend", "1,2,3"], "--style-blend has 3 weights for 1 style images", 2),
    (["--style", "{missing}"], "missing.png", 1),
    (["--style", "{photo}", "--mask", "{photo}"], "photo.png: a mask has one flat colour per region", 1),
    (["--style", "{blue}", "--mask", "{mask}"], "has 2 regions and 1 --style given", 2),
    (["--style", "{blue}", "--style", "keep", "--mask", "{mask}", "--tile", "64", "--tile-overlap", "8"],
     "--mask stylises each image whole", 2),
    (["--mask", "{mask}"], "--mask needs --style paintings", 2),
    (["--style", "keep"], "--style keep keeps the photo in a --mask region", 2),
    (["--style", "keep", "--style", "keep", "--mask", "{mask}"],
     "every region of the mask is 'keep': there is nothing to paint", 2),
    (["--style", "{blue}", "--alpha", "1.5"], "--alpha must be between 0 and 1", 2),
    (["--style", "{blue}", "--style-size", "-3"], "--style-size must be 0 (as it is)", 2),
])
def test_apply_refusals_are_one_line_and_write_nothing(files, tmp_path, args, fragment, code):
    out = tmp_path / "out.png"
    names = {key: value for key, value in files.items()} | {"missing": tmp_path / "missing.png"}
    result = invoke(files["model"], files["photo"], *[arg.format(**names) for arg in args], "-o", out)
    assert_one_line_failure(result, out, fragment, code)


def test_a_johnson_model_refuses_style_and_histogram(files, tmp_path):
    out = tmp_path / "out.png"
    assert_one_line_failure(invoke(files["johnson"], files["photo"], "--style", files["red"], "-o", out), out,
                            "a Johnson model paints the one style it was trained on", 2)
    assert_one_line_failure(invoke(files["johnson"], files["photo"], "--preserve-color", "histogram", "-o", out),
                            out, "--preserve-color 'histogram' recolours the style image", 2)


def test_an_output_never_overwrites_a_painting(files, tmp_path):
    painting_copy = save_image(painting(40, 40, RED), tmp_path / "art.png")
    before = painting_copy.read_bytes()
    result = invoke(files["model"], files["photo"], "--style", painting_copy, "-o", painting_copy)
    assert result.exit_code == 1 and "refusing to overwrite an input file" in result.stderr
    assert painting_copy.read_bytes() == before


def test_an_animated_gif_is_painted_with_statistics_measured_once(files, tmp_path):
    gif = tmp_path / "clip.gif"
    frames = [(photo(24, 32, seed=seed) * 255).astype(np.uint8) for seed in range(4)]
    images.save_animation(frames, [80, 80, 80, 80], gif, loop=0)
    stylizer = FastStylizer(files["model"], ApplyConfig(precision="fp32", style_size=48, batch_size=2))
    measured: list[int] = []
    statistics = stylizer.runtime.statistics
    stylizer.runtime.statistics = lambda batch: measured.append(len(batch)) or statistics(batch)  # type: ignore
    bound = stylizer.with_styles([stylizer.read_painting(files["red"])])
    report = apply_files(bound, [gif], tmp_path / "styled.gif")
    assert report.written == [tmp_path / "styled.gif"] and measured == [1]  # once for the clip, not per frame
    with images.open_animation(tmp_path / "styled.gif") as animation:
        assert animation.count == 4
    settings = read_video_settings(tmp_path / "styled.gif")
    assert settings is not None and settings["styles"][0]["file"] == str(files["red"])
    with pytest.raises(UsageError, match="every frame of a video would be painted differently"):
        apply_files(bound.with_config(bound.config.replace(preserve_color="histogram")), [gif],
                    tmp_path / "other.gif")
    assert not (tmp_path / "other.gif").exists()


def test_a_video_goes_through_the_same_path(files, tmp_path):
    pytest.importorskip("av")
    clip = tmp_path / "clip.mp4"
    _write_mp4(clip, [(photo(32, 48, seed=seed) * 255).astype(np.uint8) for seed in range(3)])
    out = tmp_path / "styled.mp4"
    result = invoke(files["model"], clip, "--style", files["blue"], "--alpha", "0.5", "--style-size", "48", "-o", out)
    assert result.exit_code == 0, result.output
    settings = read_video_settings(out)
    assert settings is not None and settings["config"]["alpha"] == 0.5
    assert settings["styles"][0]["file"] == str(files["blue"])


def _write_mp4(path: Path, frames: list[np.ndarray]) -> None:
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = frames[0].shape[1], frames[0].shape[0], "yuv420p"
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


# --- ONNX Runtime ------------------------------------------------------------------------------


def test_onnx_matches_torch_for_statistics_blends_and_batches(files):
    config = ApplyConfig(precision="fp32", style_size=48, batch_size=2)
    torch_side, onnx_side = FastStylizer(files["model"], config), FastStylizer(files["onnx"], config)
    assert onnx_side.backend == "onnx" and onnx_side.is_arbitrary and onnx_side.size_multiple == 4
    art = painting(50, 70, RED)
    ours, theirs = onnx_side.style_statistics(art), torch_side.style_statistics(art)
    np.testing.assert_allclose(ours.mean, theirs.mean, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(ours.std, theirs.std, rtol=1e-4, atol=1e-5)
    blue = torch_side.style_statistics(painting(40, 40, BLUE))
    inputs = [photo(30, 41, seed) for seed in range(3)]
    for stylizers in [(s.with_styles([theirs, blue], blend=[2, 1]) for s in (onnx_side, torch_side)),
                      (s.with_config(config.replace(preserve_color="histogram")).with_styles(
                          [Painting(art)]) for s in (onnx_side, torch_side))]:
        first, second = stylizers
        for a, b in zip(first.stylize_batch(inputs), second.stylize_batch(inputs)):
            np.testing.assert_allclose(a, b, atol=1e-4)


def test_onnx_refuses_a_mask_in_one_line(files, tmp_path):
    out = tmp_path / "out.png"
    result = invoke(files["onnx"], files["photo"], "--style", files["red"], "--style", "keep", "--mask",
                    files["mask"], "-o", out)
    assert_one_line_failure(result, out, "--mask needs the torch backend", 2)


def test_an_adain_onnx_model_runs_without_torch(files, tmp_path):
    out = tmp_path / "out.png"
    code = f"""
import sys
sys.modules["torch"] = None  # any import of torch now fails
from painterly.cli import main
sys.argv = ["painterly", "apply", {str(files['onnx'])!r}, {str(files['photo'])!r}, "--style", {str(files['red'])!r},
            "--style-size", "48", "-o", {str(out)!r}]
main()
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                            env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
    assert result.returncode == 0, result.stderr
    torch_side = FastStylizer(files["model"], ApplyConfig(precision="fp32", style_size=48))
    expected = torch_side.with_styles([torch_side.read_painting(files["red"])]).stylize(
        read_array(files["photo"], dtype=np.uint8)[0])
    assert np.abs(read_array(out, dtype=np.uint8)[0].astype(int) - expected).max() <= 1
    assert read_settings(out)["config"]["backend"] == "onnx"
