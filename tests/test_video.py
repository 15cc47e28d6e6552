"""stylize_video: frames, rate, size, duration and audio kept; smoothing; animations; clean failures."""

from __future__ import annotations

import random
import re
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from itertools import pairwise
from pathlib import Path

import av  # noqa: E402
import numpy as np
import pytest
from PIL import Image, ImageSequence

import cli_processes
from helpers import fp32_stylizer, light_model_file, unwritable_folder
from painterly import images
from painterly.config import ApplyConfig
from painterly.errors import ImageError, OutputError, PainterlyError, UsageError
from painterly.events import MessageEvent, StopRequested, VideoProgressEvent
from painterly.export import export_onnx
from painterly.fast import FastStylizer
from painterly.images import save_image
from painterly.video import Smoother, is_video, read_video_settings, stylize_video

FPS = 12
FRAMES = 24  # two seconds
SAMPLE_RATE = 44_100


# --- clips made here ---------------------------------------------------------------------------


def gradient(width: int, height: int) -> np.ndarray:
    y = np.linspace(0, 1, height)[:, None, None]
    x = np.linspace(0, 1, width)[None, :, None]
    return (0.15 + 0.5 * x * np.array([1.0, 0.7, 0.4]) + 0.25 * y).astype(np.float32)


def moving_square(width: int, height: int, count: int = FRAMES) -> Iterator[np.ndarray]:
    """A bright square crossing a gradient: every frame differs, as in real footage."""
    side = height // 4
    for index in range(count):
        frame = gradient(width, height)
        left = index * (width - side) // count
        frame[side : 2 * side, left : left + side] = 1.0
        yield frame


def noisy_still(width: int, height: int, count: int = FRAMES) -> Iterator[np.ndarray]:
    """A static scene with fresh sensor noise in each frame: what makes a fast model flicker."""
    rng = np.random.default_rng(0)
    for _ in range(count):
        yield np.clip(gradient(width, height) + rng.normal(0, 0.03, (height, width, 3)), 0, 1)


def write_clip(path: Path, frames: Iterable[np.ndarray], *, codec: str = "libx264", audio: bool = True,
               rotation: int = 0, index_first: bool = False, metadata: dict[str, str] | None = None,
               audio_seconds: float | None = None) -> Path:
    """A clip at FPS with a 440 Hz sine in AAC at 44.1 kHz mono, as long as the video unless told."""
    frames = list(frames)
    height, width = frames[0].shape[:2]
    options = {"movflags": "+faststart"} if index_first else {}
    with av.open(str(path), "w", container_options=options) as container:
        container.metadata.update(metadata or {})
        video = container.add_stream(codec, rate=FPS)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        if rotation:
            video.set_display_rotation(rotation)
        sound = container.add_stream("aac", rate=SAMPLE_RATE, layout="mono") if audio else None
        for index, frame in enumerate(frames):
            picture = av.VideoFrame.from_ndarray(np.round(frame * 255).astype(np.uint8), format="rgb24")
            picture.pts = index
            container.mux(video.encode(picture))
        container.mux(video.encode(None))
        if sound is not None:
            write_sine(container, sound, seconds=audio_seconds or len(frames) / FPS)
    return path


def write_sine(container, stream, *, seconds: float, chunk: int = 1024) -> None:
    samples = int(SAMPLE_RATE * seconds)
    wave = (0.3 * np.sin(2 * np.pi * 440 * np.arange(samples) / SAMPLE_RATE)).astype(np.float32)[None]
    for start in range(0, samples, chunk):
        frame = av.AudioFrame.from_ndarray(wave[:, start : start + chunk], format="fltp", layout="mono")
        frame.sample_rate, frame.pts = SAMPLE_RATE, start
        container.mux(stream.encode(frame))
    container.mux(stream.encode(None))


@dataclass
class Probe:
    """A clip as decoded, not as its header claims."""

    frames: list[np.ndarray]
    rate: Fraction
    size: tuple[int, int]  # (width, height)
    seconds: float  # first frame's start to last frame's end
    audio_rate: int | None
    audio_seconds: float | None


def probe(path: Path) -> Probe:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        decoded = list(container.decode(stream))
        frames = [frame.to_ndarray(format="rgb24").astype(np.float32) / 255 for frame in decoded]
        seconds = float((decoded[-1].pts + decoded[-1].duration - decoded[0].pts) * stream.time_base)
        rate, size = stream.average_rate, (stream.width, stream.height)
    audio_rate, audio_seconds = probe_audio(path)
    return Probe(frames, rate, size, seconds, audio_rate, audio_seconds)


def probe_audio(path: Path) -> tuple[int | None, float | None]:
    with av.open(str(path)) as container:
        if not container.streams.audio:
            return None, None
        stream = container.streams.audio[0]
        samples = sum(frame.samples for frame in container.decode(stream))
        return stream.rate, samples / stream.rate


def flicker(frames: list[np.ndarray]) -> float:
    return float(np.mean([np.abs(a - b).mean() for a, b in pairwise(frames)]))


# --- fixtures ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def model_path(tmp_path_factory) -> Path:
    return light_model_file(tmp_path_factory.mktemp("model"))


@pytest.fixture(scope="module")
def stylizer(model_path) -> FastStylizer:
    return fp32_stylizer(model_path)


def using(stylizer: FastStylizer, **settings) -> FastStylizer:
    """The same loaded model with some settings changed."""
    return stylizer.with_config(stylizer.config.replace(**settings))


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return write_clip(tmp_path_factory.mktemp("clips") / "square.mp4", moving_square(64, 48))


@pytest.fixture(scope="module")
def odd_clip(tmp_path_factory) -> Path:
    """65x49: H.264 cannot hold it, VP9 (here in Matroska, with AAC) can."""
    return write_clip(tmp_path_factory.mktemp("clips") / "odd.mkv", moving_square(65, 49), codec="libvpx-vp9")


# --- video -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "source, suffix, size, audio_rate",
    [
        ("clip", ".mp4", (64, 48), SAMPLE_RATE),  # AAC copied into MP4
        ("odd_clip", ".mp4", (66, 50), SAMPLE_RATE),  # odd sides padded for H.264
        ("odd_clip", ".webm", (65, 49), 48_000),  # VP9 keeps odd sides; AAC re-encoded to Opus
    ],
)
def test_frames_rate_size_duration_and_audio_are_kept(request, stylizer, tmp_path, source, suffix, size, audio_rate):
    source = request.getfixturevalue(source)
    events = []
    report = stylize_video(stylizer, source, tmp_path / f"out{suffix}", callback=events.append)
    before, after = probe(source), probe(report.path)

    assert len(after.frames) == len(before.frames) == report.frames == FRAMES
    assert after.rate == before.rate == report.fps == FPS
    assert after.size == report.size == size
    assert abs(after.seconds - before.seconds) <= 1 / FPS and abs(report.duration - before.seconds) <= 1 / FPS
    assert report.audio and after.audio_rate == audio_rate
    assert abs(after.audio_seconds - before.audio_seconds) < 0.1
    width, height = before.size
    assert np.abs(after.frames[0][:height, :width] - before.frames[0]).mean() > 0.05  # stylised, not copied
    progress = [event for event in events if isinstance(event, VideoProgressEvent)]
    assert [event.frames_done for event in progress] == [4, 8, 12, 16, 20, 24]
    assert all(event.total_frames == FRAMES and event.fps > 0 for event in progress)
    padded = [event for event in events if isinstance(event, MessageEvent) and "padded" in event.text]
    assert bool(padded) == (size != before.size)
    stored = read_video_settings(report.path)
    assert stored == stylizer.describe(input=stored["input"])  # what an image output records, nothing else
    assert stored["model"]["style"] == {"image": "swirl.png"} and stored["config"]["smooth"] == 0.0
    assert stored["input"]["file"] == str(source) and len(stored["input"]["sha256"]) == 64


def test_clip_without_audio_and_resized(stylizer, tmp_path):
    source = write_clip(tmp_path / "silent.mp4", moving_square(64, 48, count=8), audio=False)
    report = stylize_video(using(stylizer, size=32), source, tmp_path / "out.mkv")
    after = probe(report.path)
    assert not report.audio and after.audio_rate is None
    assert len(after.frames) == 8 and after.size == report.size == (32, 24)


def test_rotated_clip_is_stylised_upright(stylizer, tmp_path):
    """A phone's portrait clip: landscape pixels plus a rotation flag; the output is portrait pixels."""
    source = write_clip(tmp_path / "phone.mp4", moving_square(64, 48, count=3), audio=False, rotation=90)
    assert stylize_video(stylizer, source, tmp_path / "out.mp4").size == (48, 64)


def test_smoothing_reduces_flicker(stylizer, tmp_path):
    source = write_clip(tmp_path / "still.mp4", noisy_still(64, 48, count=12), audio=False)
    plain = probe(stylize_video(stylizer, source, tmp_path / "plain.mp4").path)
    smooth = probe(stylize_video(using(stylizer, smooth=0.8), source, tmp_path / "smooth.mp4").path)
    assert flicker(smooth.frames) < 0.6 * flicker(plain.frames)


def test_smoothing_restarts_at_a_scene_cut():
    smoother = Smoother(0.8)
    shot, cut = np.zeros((8, 8, 3), np.float32), np.ones((8, 8, 3), np.float32)
    styled = [np.full((8, 8, 3), value, np.float32) for value in (0.2, 0.6, 0.9)]
    smoother(shot, styled[0])
    np.testing.assert_allclose(smoother(shot, styled[1]), 0.2 * 0.6 + 0.8 * 0.2, rtol=1e-6)  # same shot: averaged
    np.testing.assert_array_equal(smoother(cut, styled[2]), styled[2])  # new shot: starts afresh


def test_onnx_runtime_backend_matches_torch(model_path, stylizer, clip, tmp_path):
    onnx_model = export_onnx(model_path, tmp_path / "light.onnx").path
    onnx = FastStylizer(onnx_model, ApplyConfig(backend="onnx", device="cpu"))
    by_onnx = probe(stylize_video(onnx, clip, tmp_path / "onnx.mp4").path)
    by_torch = probe(stylize_video(stylizer, clip, tmp_path / "torch.mp4").path)
    assert len(by_onnx.frames) == FRAMES and by_onnx.audio_rate == SAMPLE_RATE
    # Both are fp32 (1e-6 apart), but H.264 is lossy and a random network's noise-like frames turn
    # an 8-bit rounding flip into other encoding decisions: about 2.5 levels on average. A broken
    # backend is ~80 levels off.
    assert np.abs(np.stack(by_onnx.frames) - np.stack(by_torch.frames)).mean() < 0.02


def test_stop_requested_ends_the_clip_where_it_stopped(stylizer, clip, tmp_path):
    def stop_after_two_batches(event):
        if isinstance(event, VideoProgressEvent) and event.frames_done == 8:
            raise StopRequested

    report = stylize_video(stylizer, clip, tmp_path / "out.mp4", callback=stop_after_two_batches)
    after = probe(report.path)
    assert report.stopped_early and report.frames == len(after.frames) == 8
    assert abs(after.audio_seconds - 8 / FPS) < 0.1  # the audio stops with the video


# --- failures ----------------------------------------------------------------------------------


def damaged(kind: str, folder: Path) -> Path:
    """Random bytes, or the first half of a clip with its index at the end (none of it opens) or
    at the front (it opens and plays until the data stops: a partial download), or the first 70 % of
    a Matroska or WebM clip (whose index is at the end: it plays, and only the header's duration says
    that frames are missing), or a Matroska clip cut where its sound runs on after the last frame (the
    video whole, only the audio's header duration says that sound is missing)."""
    suffix = {"cut-mkv": "mkv", "cut-webm": "webm", "cut-mkv-audio": "mkv"}.get(kind, "mp4")
    path = folder / f"{kind}.{suffix}"
    if kind == "random":
        path.write_bytes(np.random.default_rng(0).bytes(20_000))
    elif kind in ("cut-mkv", "cut-webm"):
        codec = "libvpx-vp9" if kind == "cut-webm" else "libx264"
        whole = write_clip(folder / f"whole{path.suffix}", moving_square(64, 48), codec=codec, audio=kind == "cut-mkv")
        data = whole.read_bytes()
        path.write_bytes(data[: len(data) * 7 // 10])
    elif kind == "cut-mkv-audio":
        whole = write_clip(folder / "whole.mkv", moving_square(64, 48), audio_seconds=FRAMES / FPS + 1.5)
        with av.open(str(whole)) as container:  # the first sound packet a second past the video's end
            cut = next(packet.pos for packet in container.demux(container.streams.audio[0])
                       if packet.pts is not None and packet.pts * packet.time_base >= FRAMES / FPS + 1)
        path.write_bytes(whole.read_bytes()[:cut])
    else:
        whole = write_clip(folder / f"whole-{kind}.mp4", moving_square(64, 48), index_first=kind == "cut-index-first")
        data = whole.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    return path


@pytest.mark.parametrize("kind", ["random", "cut-index-last", "cut-index-first", "cut-mkv", "cut-webm",
                                  "cut-mkv-audio"])
def test_damaged_clip_is_refused_in_one_line_and_writes_nothing(stylizer, tmp_path, kind):
    source = damaged(kind, tmp_path)
    before = sorted(tmp_path.iterdir())
    with pytest.raises(ImageError) as error:
        stylize_video(stylizer, source, tmp_path / "styled.mp4")
    message = str(error.value)
    assert message.startswith(f"{source}: ") and "\n" not in message
    if kind in ("cut-mkv", "cut-webm"):
        assert re.search(r": the file is cut off \(its header says 2\.00 s, its frames end at 1\.[0-9]{2} s\)$",
                         message)
    if kind == "cut-mkv-audio":
        assert re.search(r": the file is cut off \(its header says its audio runs [0-9.]+ s, the audio ends at "
                         r"[0-9.]+ s\)$", message)
    assert sorted(tmp_path.iterdir()) == before  # no output, no temporary


def test_interrupt_leaves_nothing_behind(stylizer, clip, tmp_path):
    def interrupt(event):
        if isinstance(event, VideoProgressEvent):
            raise KeyboardInterrupt

    output = tmp_path / "styled.mp4"
    with pytest.raises(KeyboardInterrupt):
        stylize_video(stylizer, clip, output, callback=interrupt)
    assert sorted(path.name for path in tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "name, error",
    [
        (None, ImageError),  # the input itself
        ("styled.avi", UsageError),  # not a format written here
        ("styled.gif", UsageError),  # a video is not written as an animated image
    ],
)
def test_refused_outputs(stylizer, clip, name, error):
    target = clip.with_name(name) if name else clip
    with pytest.raises(error, match=re.escape(str(target))):
        stylize_video(stylizer, clip, target)
    assert name is None or not target.exists()


@pytest.mark.parametrize(
    "source_name, target_name, listed, unlisted",
    [
        ("clip.mp4", "out.png", (".mp4", ".webm"), (".gif", ".webp", ".png")),
        ("clip.mp4", "out.gif", (".mp4", ".webm"), (".gif", ".webp")),
        ("clip.mp4", "out.webp", (".mp4", ".mkv"), (".gif", ".webp")),
        ("anim.gif", "out.mp4", (".gif", ".webp"), (".mp4", ".mkv")),
        ("anim.webp", "out.png", (".gif", ".webp"), (".mp4", ".png")),
    ],
)
def test_refused_output_type_lists_only_what_that_input_can_be_written_as(
    stylizer, tmp_path, source_name, target_name, listed, unlisted
):
    source = tmp_path / source_name
    source.write_bytes(b"never read: the request is refused first")
    target = tmp_path / target_name
    with pytest.raises(UsageError) as refused:
        stylize_video(stylizer, source, target)
    message = str(refused.value)
    assert message.startswith(f"{target}: {source} is ") and "write it as one of" in message
    offered = message.split("write it as one of ", 1)[1].split(", ")
    assert all(suffix in offered for suffix in listed)
    assert not any(suffix in offered for suffix in unlisted)
    assert not target.exists()


def test_smooth_out_of_range_is_a_usage_error(stylizer, clip, tmp_path):
    with pytest.raises(UsageError, match="smooth"):
        stylize_video(using(stylizer, smooth=1.0), clip, tmp_path / "out.mp4")


# --- animated images ---------------------------------------------------------------------------

DURATIONS = [100, 200, 100, 300]


def write_animation(path: Path, **options) -> Path:
    frames = [Image.fromarray(np.round(frame * 255).astype(np.uint8)) for frame in moving_square(40, 32, count=4)]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=DURATIONS, **options)
    return path


def durations(path: Path) -> list[int]:
    """Per-frame durations; WebP sets a frame's duration when the frame is loaded."""
    with Image.open(path) as image:
        return [frame.load() and frame.info["duration"] for frame in ImageSequence.Iterator(image)]


@pytest.mark.parametrize("suffix", [".gif", ".webp"])
def test_animation_keeps_frames_durations_and_loop(stylizer, tmp_path, suffix):
    source = write_animation(tmp_path / f"anim{suffix}", loop=0)
    report = stylize_video(stylizer, source, tmp_path / f"out{suffix}")
    assert report.frames == 4 and report.duration == pytest.approx(0.7)
    assert durations(report.path) == DURATIONS
    with Image.open(report.path) as written, Image.open(source) as original:
        assert written.n_frames == 4 and written.info["loop"] == 0 and written.size == (40, 32)
        first = np.asarray(written.convert("RGB"), np.float32)
        assert np.abs(first - np.asarray(original.convert("RGB"), np.float32)).mean() > 10  # stylised
    assert read_video_settings(report.path)["input"]["file"] == str(source)


def test_gif_that_plays_once_still_plays_once(stylizer, tmp_path):
    source = write_animation(tmp_path / "once.gif")  # no loop block
    with Image.open(stylize_video(stylizer, source, tmp_path / "out.gif").path) as written:
        assert "loop" not in written.info


def test_is_video(tmp_path):
    write_animation(tmp_path / "anim.gif", loop=0)
    Image.new("RGB", (8, 8)).save(tmp_path / "still.gif")
    assert is_video("clip.MP4") and is_video("clip.webm") and is_video(tmp_path / "anim.gif")
    assert not is_video(tmp_path / "still.gif") and not is_video("photo.png") and not is_video(tmp_path / "none.gif")


# --- through `painterly apply` -----------------------------------------------------------------


def test_painterly_apply_dispatches_videos_and_animations(model_path, clip, tmp_path):
    """The CLI takes a clip like an image: same command, audio kept, settings stored."""
    from typer.testing import CliRunner

    from painterly.cli import app

    out = tmp_path / "styled.mp4"
    result = CliRunner().invoke(app, ["apply", str(model_path), str(clip), "-o", str(out), "--smooth", "0.5",
                                      "--quiet"])
    assert result.exit_code == 0, result.output
    after = probe(out)
    assert len(after.frames) == FRAMES and after.audio_rate == SAMPLE_RATE
    assert read_video_settings(out)["config"]["smooth"] == 0.5

    folder = tmp_path / "inputs"
    folder.mkdir()
    (folder / "clip.mp4").write_bytes(clip.read_bytes())
    gif = folder / "anim.gif"
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, (24, 32, 3), dtype=np.uint8) for _ in range(3)]  # distinct: GIF merges repeats
    images.save_animation(frames, [100, 200, 300], gif, loop=0)
    save_image(np.full((20, 24, 3), 0.5, np.float32), folder / "still.png")
    result = CliRunner().invoke(app, ["apply", str(model_path), str(folder), "-o", str(tmp_path / "out"), "--quiet"])
    assert result.exit_code == 0, result.output
    assert len(probe(tmp_path / "out" / "clip.mp4").frames) == FRAMES
    assert images.frame_count(tmp_path / "out" / "anim.gif") == 3
    assert (tmp_path / "out" / "still.png").exists()


# --- the pixel limit and the output boundary ------------------------------------------------------


def leftovers(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.rglob("*"))


@pytest.mark.parametrize("kind", ["video", "animation"])
def test_max_pixels_applies_to_every_frame(stylizer, clip, tmp_path, kind):
    """A 64x48 clip (3,072 pixels a frame) used to go through with --max-pixels 1000."""
    source, target, pixels = ((clip, tmp_path / "out.mp4", 64 * 48) if kind == "video"
                              else (write_animation(tmp_path / "anim.gif", loop=0), tmp_path / "out.gif", 40 * 32))
    before = leftovers(tmp_path)
    with pytest.raises(ImageError) as error:
        stylize_video(using(stylizer, max_pixels=1000), source, target)
    message = str(error.value)
    assert message.startswith(f"{source}: ") and "over the limit of 1,000" in message and "\n" not in message
    assert leftovers(tmp_path) == before  # no output, no temporary
    frames = stylize_video(using(stylizer, max_pixels=pixels), source, target).frames  # at the limit: accepted
    assert frames == (FRAMES if kind == "video" else 4)


def test_a_size_over_the_pixel_limit_is_refused_for_videos(stylizer, clip, tmp_path):
    with pytest.raises(ImageError, match="at --size 60000: 60000x45000"):
        stylize_video(using(stylizer, size=60000), clip, tmp_path / "out.mp4")
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("blocker", ["a file as the folder", "a folder as the file"])
def test_an_output_that_cannot_be_written_is_one_line_and_leaves_nothing(stylizer, clip, tmp_path, blocker):
    if blocker == "a file as the folder":
        (tmp_path / "taken").write_text("a file")
        target = tmp_path / "taken" / "out.mp4"
    else:
        target = tmp_path / "out.mp4"
        target.mkdir()
    before = leftovers(tmp_path)
    with pytest.raises(OutputError) as error:
        stylize_video(stylizer, clip, target)
    assert str(error.value).startswith(f"{target}: cannot write") and "\n" not in str(error.value)
    assert leftovers(tmp_path) == before


def test_a_read_only_folder_is_one_line_and_leaves_nothing(stylizer, clip, tmp_path):
    with unwritable_folder(tmp_path / "read-only") as folder:
        with pytest.raises(OutputError, match="cannot write"):
            stylize_video(stylizer, clip, folder / "out.mp4")
        assert leftovers(folder) == []


def test_a_full_disk_is_one_line_and_leaves_nothing(model_path, clip, tmp_path):
    """With RLIMIT_FSIZE every write past 4 KiB fails (EFBIG), as writes on a full disk do (ENOSPC):
    FFmpeg's write error, raised by PyAV as its own av.error.OSError, must end as one line."""
    out = tmp_path / "out"
    out.mkdir()
    # RLIMIT_FSIZE in the child: Python ignores SIGXFSZ, so writes fail instead
    result = cli_processes.run([sys.executable, "-m", "painterly", "apply", str(model_path), str(clip), "-o",
                                str(out / "styled.mp4"), "--device", "cpu", "--quiet"],
                               file_size_limit=4096, capture_output=True, text=True, timeout=300)
    assert result.returncode == 1, result.stderr
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(f"painterly: error: {out / 'styled.mp4'}: cannot write (")
    assert leftovers(out) == []


@pytest.mark.slow
def test_mutated_clips_either_play_or_raise_the_project_s_error(stylizer, tmp_path):
    """Flipped bytes, cuts and zeroed runs in MP4 and Matroska clips (a fixed seed, a bounded count):
    each is stylised or refused with a PainterlyError, never another exception. 200 such cases (another
    seed) found three escapes at PyAV's boundary, kept as the tests below: undecodable metadata, and a
    video or audio stream without a decoder; 600 found none once they were fixed. The clips are small
    ones of clip's and odd_clip's kinds (8 frames, with audio), so the cases cost decoding, not painting."""
    clips = tmp_path / "clips"
    clips.mkdir()
    small = write_clip(clips / "square.mp4", moving_square(32, 24, count=8))
    odd = write_clip(clips / "odd.mkv", moving_square(33, 25, count=8), codec="libvpx-vp9")
    rng = random.Random(0)
    seeds = [(small.suffix, small.read_bytes()), (odd.suffix, odd.read_bytes())]
    for case in range(40):
        suffix, data = seeds[case % 2]
        data = bytearray(data)
        kind = rng.choice(["flip", "cut", "zero"])
        if kind == "flip":
            for _ in range(rng.randint(1, 20)):
                data[rng.randrange(len(data))] = rng.randrange(256)
        elif kind == "cut":
            data = data[: rng.randrange(len(data))]
        else:
            start = rng.randrange(len(data))
            data[start : start + 200] = bytes(len(data[start : start + 200]))
        source = tmp_path / f"mutated{suffix}"
        source.write_bytes(bytes(data))
        try:
            stylize_video(using(stylizer, batch_size=8), source, tmp_path / "out.mkv")
        except PainterlyError as error:
            assert "\n" not in str(error)
        assert not [path for path in tmp_path.iterdir() if ".tmp" in path.name]


def test_metadata_that_is_not_utf8_does_not_stop_a_clip(stylizer, tmp_path):
    """PyAV decodes container tags strictly: a damaged title raised UnicodeDecodeError before any frame."""
    source = write_clip(tmp_path / "titled.mkv", moving_square(32, 24, count=4), metadata={"title": "TITLEXYZ"})
    data = source.read_bytes()
    source.write_bytes(data.replace(b"TITLEXYZ", b"\xff\xfe\xfdLEXYZ"))
    assert stylize_video(stylizer, source, tmp_path / "out.mkv").frames == 4


@pytest.mark.parametrize("codec_id, replacement", [(b"avc1", b"zzzz"), (b"A_AAC", b"A_ZZZ")], ids=["video", "audio"])
def test_a_stream_without_a_decoder_is_one_line(stylizer, tmp_path, codec_id, replacement):
    """A codec tag FFmpeg does not know leaves PyAV a stream without a codec context (None)."""
    suffix = ".mp4" if codec_id == b"avc1" else ".mkv"
    source = write_clip(tmp_path / f"clip{suffix}", moving_square(32, 24, count=4))
    data = source.read_bytes()
    assert codec_id in data
    source.write_bytes(data.replace(codec_id, replacement))
    with pytest.raises(ImageError) as error:
        stylize_video(stylizer, source, tmp_path / f"out{suffix}")
    assert str(error.value).startswith(f"{source}: damaged video data") and "\n" not in str(error.value)
    assert sorted(path.name for path in tmp_path.iterdir()) == [source.name]
