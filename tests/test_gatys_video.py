"""Gatys on a video (gatys_video.py): frames, timing and audio kept, the temporal term, resuming, one-line errors.

Tiny clips (48x32, four frames), a shallow random VGG-16 (relu1_2, relu2_2) and a few steps: what is
checked is the machinery, not the painting. Processes that must be real (the CLI, a run killed with
SIGKILL) compute with one thread, as the suite's workers do, and with the same settings, so that
their results can be compared bit for bit.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

import cli_processes
from painterly import flow, images, pixels
from painterly.cli import app
from painterly.config import StylizeConfig
from painterly.errors import UsageError
from painterly.events import MessageEvent, StepEvent, VideoProgressEvent
from painterly.gatys_video import FramePainter, kept_frames_folder, stylize_video_files
from painterly.provenance import file_sha256
from painterly.video import read_video_settings

FPS = 12
FRAMES = 4
SAMPLE_RATE = 44_100
PAN = 2  # pixels the camera moves right each frame
# The same settings as flags and as a config: a killed library run and a CLI run must agree on them.
FLAGS = ["--size", "48", "--steps", "6", "--frame-steps", "4", "--vgg", "vgg16", "--content-layers", "relu2_2",
         "--style-layers", "relu1_2,relu2_2", "--vgg-weights", "random", "--device", "cpu"]
CONFIG = StylizeConfig(size=48, steps=6, frame_steps=4, vgg="vgg16", content_layers=("relu2_2",),
                       style_layers=("relu1_2", "relu2_2"), vgg_weights="random", device="cpu")
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PAINTERLY_PROGRESS_SECONDS": "0"}
ENV.pop("PAINTERLY_VGG_WEIGHTS", None)


# --- clips made here ---------------------------------------------------------------------------


def texture(height: int, width: int, seed: int = 0, blob: int = 4) -> np.ndarray:
    """Smooth random colour blobs about `blob` pixels across: something for the flow to follow."""
    small = np.random.default_rng(seed).random((height // blob + 2, width // blob + 2, 3)).astype(np.float32)
    channels = [np.asarray(Image.fromarray(small[..., c]).resize((width, height), Image.Resampling.BICUBIC))
                for c in range(3)]
    return np.clip(np.stack(channels, axis=2), 0, 1).astype(np.float32)


def pan(width: int = 48, height: int = 32, count: int = FRAMES) -> list[np.ndarray]:
    """A camera moving PAN pixels right each frame over a still scene: the motion is known exactly. Blobs of
    8 px keep consecutive frames ≈0.1 apart, clearly below flow.SCENE_CUT (4 px ones: 0.149–0.150 decoded)."""
    scene = texture(height, width + PAN * count, blob=8)
    return [scene[:, PAN * index : PAN * index + width] for index in range(count)]


def write_clip(path: Path, frames: list[np.ndarray]) -> Path:
    """At FPS, nearly lossless, with a 440 Hz sine in AAC as long as the video."""
    height, width = frames[0].shape[:2]
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=FPS, options={"crf": "10"})
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        sound = container.add_stream("aac", rate=SAMPLE_RATE, layout="mono")
        for index, frame in enumerate(frames):
            picture = av.VideoFrame.from_ndarray(np.round(frame * 255).astype(np.uint8), format="rgb24")
            picture.pts = index
            container.mux(video.encode(picture))
        container.mux(video.encode(None))
        samples = SAMPLE_RATE * len(frames) // FPS
        wave = (0.3 * np.sin(2 * np.pi * 440 * np.arange(samples) / SAMPLE_RATE)).astype(np.float32)[None]
        for start in range(0, samples, 1024):
            chunk = av.AudioFrame.from_ndarray(wave[:, start : start + 1024], format="fltp", layout="mono")
            chunk.sample_rate, chunk.pts = SAMPLE_RATE, start
            container.mux(sound.encode(chunk))
        container.mux(sound.encode(None))
    return path


def decoded(path: Path) -> tuple[list[np.ndarray], Fraction, float | None]:
    """The frames as 8-bit arrays, the frame rate, and the audio's length in seconds (None: no audio)."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(stream)]
        rate = stream.average_rate
    with av.open(str(path)) as container:
        if not container.streams.audio:
            return frames, rate, None
        audio = container.streams.audio[0]
        return frames, rate, sum(frame.samples for frame in container.decode(audio)) / audio.rate


def warping_error(frames: list[np.ndarray]) -> float:
    """Mean |O_t − O_{t−1} moved by the known pan| over the pixels seen in both frames."""
    floats = [frame.astype(np.float32) / 255 for frame in frames]
    return float(np.mean([np.abs(now[:, :-PAN] - before[:, PAN:]).mean() for before, now in zip(floats, floats[1:])]))


def stylize_command(clip: Path, style: Path, output: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "painterly", "stylize", str(clip), str(style), "-o", str(output), *FLAGS, *extra]


# --- fixtures ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("gatys_video")


@pytest.fixture(scope="module")
def clip(folder) -> Path:
    """pan() in H.264: as decoded, every frame clearly continues the one before it (no scene cut)."""
    path = write_clip(folder / "clip.mp4", pan())
    thumbnails = [flow.scene_thumbnail(frame) for frame in decoded(path)[0]]
    assert all(np.abs(b - a).mean() < 0.8 * flow.SCENE_CUT for a, b in zip(thumbnails, thumbnails[1:]))
    return path


@pytest.fixture(scope="module")
def style(folder) -> Path:
    return images.save_image(texture(40, 40, seed=5), folder / "style.png")


@pytest.fixture(scope="module")
def uninterrupted(folder, clip, style) -> tuple[Path, subprocess.CompletedProcess]:
    """`painterly stylize clip.mp4 style.png -o out.mp4`, run once from start to end."""
    output = folder / "whole" / "out.mp4"
    proc = cli_processes.run(stylize_command(clip, style, output), capture_output=True, text=True, timeout=600,
                             env=ENV, cwd=folder)
    return output, proc


@pytest.fixture(autouse=True)
def _no_weights_env(monkeypatch):
    monkeypatch.delenv("PAINTERLY_VGG_WEIGHTS", raising=False)


# --- tests -------------------------------------------------------------------------------------


@pytest.mark.slow
def test_the_cli_keeps_frame_count_rate_and_audio_and_records_the_settings(uninterrupted, clip, style):
    output, proc = uninterrupted
    assert proc.returncode == 0, proc.stderr
    frames, rate, audio_seconds = decoded(output)
    assert len(frames) == FRAMES and frames[0].shape == (32, 48, 3)
    assert rate == FPS
    assert audio_seconds == pytest.approx(FRAMES / FPS, abs=0.05)
    settings = read_video_settings(output)
    assert settings is not None and settings["method"] == "gatys"
    assert settings["config"] == json.loads(json.dumps(CONFIG.to_dict()))
    assert settings["content"]["sha256"] == file_sha256(clip)
    assert [entry["sha256"] for entry in settings["styles"]] == [file_sha256(style)]
    assert not kept_frames_folder(output).exists()  # removed once the video is written
    assert sorted(path.name for path in output.parent.iterdir()) == ["out.mp4"]  # no temporaries either
    assert f"frame {FRAMES}/{FRAMES}" in proc.stderr
    assert "ETA" in proc.stderr  # from the second frame on, the pace is known


@pytest.mark.slow
def test_the_temporal_term_lowers_the_warping_error(clip, style, tmp_path):
    """Against the same run without it (each frame still starting from the warped result): the painted
    texture should follow the pan more closely. Can fail: it is what the term is for."""
    errors = {}
    for weight in (0.0, CONFIG.temporal_weight):
        output = tmp_path / f"out-{weight:g}.mp4"
        stylize_video_files(clip, [style], output, CONFIG.replace(temporal_weight=weight))
        errors[weight] = warping_error(decoded(output)[0])
    assert errors[CONFIG.temporal_weight] < 0.8 * errors[0.0], errors


KILL_AFTER_SECOND_FRAME = textwrap.dedent("""
    import os, signal, sys
    from painterly.config import StylizeConfig
    from painterly.events import VideoProgressEvent
    from painterly.gatys_video import stylize_video_files

    def kill_after_second_frame(event):
        if isinstance(event, VideoProgressEvent) and event.frames_done == 2:
            os.kill(os.getpid(), signal.SIGKILL)

    config = StylizeConfig(**{CONFIG})
    stylize_video_files(sys.argv[1], [sys.argv[2]], sys.argv[3], config, callback=kill_after_second_frame)
""")


@pytest.mark.slow
def test_a_killed_run_continues_from_its_last_finished_frame(uninterrupted, clip, style, tmp_path):
    """Killed (SIGKILL) after frame 2, the same command finishes frames 3 and 4 from frame 2's kept PNG and
    gives the uninterrupted run's video bit for bit: the chain always continues from the 8-bit frame,
    so nothing of the killed process's floats is missing, and one thread on the CPU computes the same."""
    output = tmp_path / "out.mp4"
    config = {key: value for key, value in CONFIG.to_dict().items()}
    script = KILL_AFTER_SECOND_FRAME.replace("{CONFIG}", repr(config))
    killed = cli_processes.run([sys.executable, "-c", script, str(clip), str(style), str(output)],
                               capture_output=True, text=True, timeout=600, env=ENV, cwd=tmp_path)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    kept = kept_frames_folder(output)
    assert not output.exists()
    assert sorted(path.name for path in kept.glob("frame-*.png")) == ["frame-000001.png", "frame-000002.png"]
    assert any(path.name.startswith(".out.mp4.") for path in tmp_path.iterdir())  # the killed run's temporary

    resumed = cli_processes.run([*stylize_command(clip, style, output), "--json"], capture_output=True, text=True,
                                timeout=600, env=ENV, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["resumed"] == 2
    assert sorted(path.name for path in tmp_path.iterdir()) == ["out.mp4"]  # kept frames and temporary gone
    whole, _ = uninterrupted
    frames, reference = decoded(output)[0], decoded(whole)[0]
    assert len(frames) == len(reference) == FRAMES
    for index, (frame, expected) in enumerate(zip(frames, reference), start=1):
        assert np.array_equal(frame, expected), f"frame {index} differs"


# `painterly stylize` in a real process that sends itself SIGTERM once frame 2 is kept (a scheduler
# stopping the job mid-clip), through the CLI's own handler.
TERMINATE_AFTER_SECOND_FRAME = textwrap.dedent("""
    import os, signal, sys
    from painterly import gatys_video
    from painterly.cli import main

    keep = gatys_video._KeptFrames.write

    def keep_then_terminate(self, index, image):
        kept = keep(self, index, image)
        if index == 2:
            os.kill(os.getpid(), signal.SIGTERM)
        return kept

    gatys_video._KeptFrames.write = keep_then_terminate
    main(sys.argv[1:])
""")


def test_sigterm_mid_clip_exits_143_keeps_the_finished_frames_and_the_rerun_finishes(clip, style, tmp_path,
                                                                                      one_thread):
    output = tmp_path / "out.mp4"
    command = [sys.executable, "-c", TERMINATE_AFTER_SECOND_FRAME, "stylize", str(clip), str(style), "-o", str(output),
               *FLAGS]
    terminated = cli_processes.run(command, capture_output=True, text=True, timeout=600, env=ENV, cwd=tmp_path)
    kept = kept_frames_folder(output)
    assert terminated.returncode == 143, terminated.stderr
    assert terminated.stderr.strip().splitlines()[-1] == (
        f"painterly: error: terminated; 2 finished frame(s) kept in {kept}; the same command continues from there")
    assert sorted(path.name for path in kept.glob("frame-*.png")) == ["frame-000001.png", "frame-000002.png"]
    assert sorted(path.name for path in tmp_path.iterdir()) == [kept.name]  # no video, no temporary

    resumed = CliRunner().invoke(app, ["stylize", str(clip), str(style), "-o", str(output), *FLAGS, "--json"])
    assert resumed.exit_code == 0, resumed.output
    assert json.loads(resumed.stdout)["resumed"] == 2
    assert len(decoded(output)[0]) == FRAMES
    assert sorted(path.name for path in tmp_path.iterdir()) == ["out.mp4"]  # the kept frames removed


def test_a_scene_cut_restarts_the_chain(style, one_thread):
    """The frame after a cut is painted as a first frame (the full steps, from the frame itself), not from the
    previous result warped; the frame after a plain move is."""
    steps: list[StepEvent] = []
    painter = FramePainter([images.load_image(style)], CONFIG, None,
                           lambda event: steps.append(event) if isinstance(event, StepEvent) else None)
    (first, moved), cut = pan(count=2), texture(32, 48, seed=9)
    assert flow.is_scene_cut(flow.scene_thumbnail(first), flow.scene_thumbnail(cut))
    assert not flow.is_scene_cut(flow.scene_thumbnail(first), flow.scene_thumbnail(moved))
    painted = painter.paint(first, None)
    assert painted is not None and steps
    previous = (first, pixels.to_float32(pixels.to_uint8(painted)))  # as the video pipeline keeps it

    steps.clear()
    after_cut = painter.paint(cut, previous)
    assert steps  # the full first-frame run, whose steps are shown
    fresh = FramePainter([images.load_image(style)], CONFIG, None, lambda event: None).paint(cut, None)
    assert after_cut is not None and fresh is not None
    np.testing.assert_array_equal(after_cut, fresh)

    steps.clear()
    continued = painter.paint(moved, previous)
    assert not steps  # frame_steps from the warped result, steps not shown
    alone = painter.paint(moved, None)
    assert continued is not None and alone is not None and not np.allclose(continued, alone, atol=1e-3)


def test_an_interrupt_writes_nothing_and_other_settings_are_refused_in_one_line(clip, style, tmp_path):
    output = tmp_path / "out.mp4"

    def interrupt_after_first_frame(event):
        if isinstance(event, VideoProgressEvent):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt) as interrupted:
        stylize_video_files(clip, [style], output, CONFIG, callback=interrupt_after_first_frame)
    kept = kept_frames_folder(output)
    assert f"1 finished frame(s) kept in {kept}" in " ".join(interrupted.value.__notes__)
    assert sorted(path.name for path in tmp_path.iterdir()) == [kept.name]  # no output, no temporary

    changed = [*FLAGS]
    changed[changed.index("--steps") + 1] = "7"
    result = CliRunner().invoke(app, ["stylize", str(clip), str(style), "-o", str(output), *changed])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("painterly: error: "), result.stderr
    assert "config.steps" in lines[0] and str(kept) in lines[0] and "remove that folder" in lines[0]
    assert "config.temporal_weight" not in lines[0]  # only what differs is named
    assert not output.exists()
    assert sorted(path.name for path in kept.glob("frame-*.png")) == ["frame-000001.png"]  # left as it was


@pytest.mark.parametrize("damage, frame, resumed", [
    ("emptied", 2, 1),  # a disk filled, a sync cut short: frame 1 stands, 2 and 3 are painted again
    ("another size", 3, 2),  # not the frame this clip's settings make
    ("not an image", 1, 0),  # the first frame, whose settings every resume is checked against
])
def test_a_damaged_kept_frame_is_painted_again_with_those_after_it(clip, style, tmp_path, one_thread, damage, frame,
                                                                     resumed):
    output = tmp_path / "out.mp4"
    progress = []

    def interrupt_after_third_frame(event):
        if isinstance(event, VideoProgressEvent):
            progress.append(event)
            if len(progress) == 3:
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        stylize_video_files(clip, [style], output, CONFIG, callback=interrupt_after_third_frame)
    damaged = kept_frames_folder(output) / f"frame-{frame:06d}.png"
    assert damaged.is_file()
    if damage == "emptied":
        damaged.write_bytes(b"")
    elif damage == "another size":
        images.save_image(texture(10, 12), damaged)
    else:
        damaged.write_bytes(b"not a PNG at all")

    messages: list[str] = []
    report = stylize_video_files(clip, [style], output, CONFIG,
                                 callback=lambda event: isinstance(event, MessageEvent) and messages.append(event.text))
    assert report["resumed"] == resumed and report["frames"] == FRAMES
    said = [text for text in messages if str(damaged) in text]
    assert len(said) == 1, messages
    assert f"painting frame {frame} kept from an earlier run again" in said[0]
    assert (f"and the {3 - frame} kept after it" in said[0]) == (frame < 3)
    assert len(decoded(output)[0]) == FRAMES
    assert sorted(path.name for path in tmp_path.iterdir()) == ["out.mp4"]  # the kept frames removed


@pytest.mark.parametrize("case", ["not a video", "image output"])
def test_a_bad_clip_or_output_is_one_line_and_writes_nothing(case, clip, style, tmp_path):
    if case == "not a video":
        source, output, fragment, code = tmp_path / "clip.mp4", tmp_path / "out.mp4", "not a readable video", 1
        source.write_bytes(b"this is not a video\n" * 50)
    else:
        source, output, fragment, code = clip, tmp_path / "out.png", "write it as one of .mp4", 2
    result = CliRunner().invoke(app, ["stylize", str(source), str(style), "-o", str(output), *FLAGS])
    assert result.exit_code == code, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("painterly: error: ") and fragment in lines[0], result.stderr
    assert str(source) in lines[0]
    assert sorted(path.name for path in tmp_path.iterdir()) == (["clip.mp4"] if case == "not a video" else [])


def test_video_settings_are_checked_and_later_frames_take_fewer_steps():
    assert StylizeConfig(steps=300).frame_steps_or_default() == 120  # two fifths
    assert StylizeConfig(steps=300, frame_steps=50).frame_steps_or_default() == 50
    for bad in ({"temporal_weight": -1.0}, {"temporal_weight": float("nan")}, {"frame_steps": 0}):
        with pytest.raises(UsageError, match=next(iter(bad))):
            StylizeConfig(**bad)
