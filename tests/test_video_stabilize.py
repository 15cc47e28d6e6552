"""`stabilize`: motion-compensated blending steadies a fast model's video where `smooth` ghosts, restarts
at cuts, and goes through `painterly apply`, the settings record and the web UI's Video tab."""

from __future__ import annotations

import subprocess
import sys
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import cli_processes
from helpers import fp32_stylizer, light_model_file, tiny_model
from painterly import samples
from painterly.cli import app
from painterly.config import ApplyConfig
from painterly.errors import UsageError
from painterly.fast import FastStylizer
from painterly.flow import FlowBlender
from painterly.video import Smoother, read_video_settings
from test_video import FPS, SAMPLE_RATE, moving_square, probe, write_clip

STEP = (2, 1)  # (dx, dy) pixels a frame: frame_t(p) = frame_{t-1}(p + STEP), exactly
HEIGHT, WIDTH, FRAMES = 48, 64, 12
NOISE = 0.03  # a camera's sensor noise, fresh in every frame: what makes a fast model flicker


def panning(count: int = FRAMES, *, seed: int = 0) -> list[np.ndarray]:
    """A window moving STEP a frame over a photo-like scene, with per-frame noise: the motion is known."""
    scene = samples.landscape(96, 128).astype(np.float32)
    rng = np.random.default_rng(seed)
    dx, dy = STEP
    return [np.clip(scene[t * dy : t * dy + HEIGHT, t * dx : t * dx + WIDTH]
                    + rng.normal(0, NOISE, (HEIGHT, WIDTH, 3)), 0, 1).astype(np.float32) for t in range(count)]


def warping_error(frames: list[np.ndarray]) -> float:
    """Mean |O_t - W(O_{t-1})| over the pixels visible in both frames, W from the known motion."""
    dx, dy = STEP
    return float(np.mean([np.abs(now[:-dy, :-dx] - before[dy:, dx:]).mean() for before, now in pairwise(frames)]))


def distance(frames: list[np.ndarray], others: list[np.ndarray]) -> float:
    return float(np.mean([np.abs(a - b).mean() for a, b in zip(frames, others)]))


def blended(blender, originals: list[np.ndarray], styled: list[np.ndarray]) -> list[np.ndarray]:
    return [blender(original, image) for original, image in zip(originals, styled)]


@pytest.fixture(scope="module")
def model_path(tmp_path_factory) -> Path:
    return light_model_file(tmp_path_factory.mktemp("model"))


@pytest.fixture(scope="module")
def stylizer(model_path) -> FastStylizer:
    return fp32_stylizer(model_path)


@pytest.fixture(scope="module")
def pan(stylizer) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(input frames, their per-frame stylisations)."""
    frames = panning()
    return frames, stylizer.stylize_batch(frames)


# --- the blend on a known motion -----------------------------------------------------------------


def test_stabilizing_steadies_a_pan_where_smoothing_ghosts(pan):
    frames, styled = pan
    per_frame = warping_error(styled)
    stabilized = blended(FlowBlender(0.8), frames, styled)
    smoothed = blended(Smoother(0.8), frames, styled)
    assert warping_error(frames) < 0.2 * per_frame  # the random network turns the noise into flicker
    assert warping_error(stabilized) < 0.45 * per_frame
    assert warping_error(stabilized) < 0.8 * warping_error(smoothed)  # same strength, motion followed
    assert distance(stabilized, styled) < distance(smoothed, styled)  # and closer to each frame's painting
    frozen = [styled[0]] * len(styled)  # no flicker at all, and no fidelity: a blend must stay far from it
    assert distance(stabilized, styled) < 0.7 * distance(frozen, styled)


def test_a_weaker_blend_steadies_less_and_stays_closer(pan):
    frames, styled = pan
    weak, strong = (blended(FlowBlender(strength), frames, styled) for strength in (0.4, 0.8))
    assert warping_error(strong) < warping_error(weak) < warping_error(styled)
    assert distance(weak, styled) < distance(strong, styled)


def test_a_scene_cut_restarts_the_chain(stylizer, pan):
    frames, styled = pan
    other_shot = [np.ascontiguousarray(frame[::-1, ::-1]) * 0.3 for frame in panning(3, seed=1)]
    clip = frames[:4] + other_shot
    paintings = styled[:4] + stylizer.stylize_batch(other_shot)
    outputs = blended(FlowBlender(0.8), clip, paintings)
    assert not np.allclose(outputs[3], paintings[3], atol=1e-3)  # within the first shot: blended
    np.testing.assert_array_equal(outputs[4], paintings[4])  # the frame after the cut: its own painting
    assert not np.allclose(outputs[5], paintings[5], atol=1e-3)  # and the new shot is blended from there


def test_smooth_and_stabilize_together_are_refused():
    with pytest.raises(UsageError, match="smooth or with stabilize, not both"):
        ApplyConfig(smooth=0.5, stabilize=0.5)
    with pytest.raises(UsageError, match="stabilize must be at least 0 and below 1"):
        ApplyConfig(stabilize=1.0)


# --- painterly apply: once end to end in a real process, the refusals in this one ------------------


def painterly(*args: str) -> subprocess.CompletedProcess:
    """`painterly ARGS` in a fresh process: the real exit code, stdout and stderr."""
    return cli_processes.run([sys.executable, "-m", "painterly", *args], capture_output=True, text=True, timeout=300)


def invoke(*args: str):
    """`painterly ARGS` through the Typer app the console script runs, in this process."""
    return CliRunner().invoke(app, list(args))


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return write_clip(tmp_path_factory.mktemp("clips") / "square.mp4", moving_square(64, 48, count=8))


def test_apply_stabilize_keeps_frames_rate_and_audio(model_path, clip, tmp_path):
    out = tmp_path / "steady.mp4"
    result = painterly("apply", str(model_path), str(clip), "-o", str(out), "--stabilize", "0.8",
                       "--device", "cpu", "--quiet")
    assert result.returncode == 0, result.stderr
    before, after = probe(clip), probe(out)
    assert len(after.frames) == len(before.frames) == 8
    assert after.rate == before.rate == FPS and after.size == before.size
    assert after.audio_rate == SAMPLE_RATE and abs(after.audio_seconds - before.audio_seconds) < 0.1
    settings = read_video_settings(out)
    assert settings is not None and settings["config"]["stabilize"] == 0.8 and settings["config"]["smooth"] == 0.0


def test_apply_with_smooth_and_stabilize_is_one_line(model_path, clip, tmp_path):
    result = invoke("apply", str(model_path), str(clip), "-o", str(tmp_path / "out.mp4"),
                    "--stabilize", "0.5", "--smooth", "0.5", "--device", "cpu")
    assert result.exit_code == 2, result.output
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("painterly: error: steady a video with smooth or with stabilize, not both")
    assert list(tmp_path.iterdir()) == []


def test_apply_stabilize_without_opencv_is_one_line(model_path, clip, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "cv2", None)  # `import cv2` raises ImportError, as if it were not installed
    result = invoke("apply", str(model_path), str(clip), "-o", str(tmp_path / "out.mp4"),
                    "--stabilize", "0.5", "--device", "cpu")
    assert result.exit_code == 2, result.output
    [line] = result.stderr.strip().splitlines()
    assert line == "painterly: error: motion-compensated video (stabilize) needs OpenCV: pip install 'painterly[flow]'"
    assert list(tmp_path.iterdir()) == []


# --- the web UI's Video tab ----------------------------------------------------------------------


def test_video_tab_stabilize_reaches_the_output_s_settings(clip, tmp_path):
    from painterly.web_files import Workspace
    from painterly.web_handlers import Handlers, ModelCatalog

    models = tmp_path / "models"
    models.mkdir()
    tiny_model(models / "tiny.safetensors")
    (tmp_path / "work").mkdir()
    handlers = Handlers(catalog=ModelCatalog([models], device="cpu"),
                        workspace=Workspace(tmp_path / "work", keep_seconds=60), vgg_weights="random", device="cpu",
                        max_pixels=1_000_000)
    result = handlers.video(str(clip), "tiny.safetensors", 1.0, "none", None, 0.0, 0.6)
    settings = read_video_settings(result)
    assert settings is not None and settings["config"]["stabilize"] == 0.6
    assert len(probe(Path(result)).frames) == 8

    import gradio as gr

    with pytest.raises(gr.Error, match="smooth or with stabilize, not both"):
        handlers.video(str(clip), "tiny.safetensors", 1.0, "none", None, 0.5, 0.5)
