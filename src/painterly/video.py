"""Videos and animated images through a fast-style model: frames in, frames out, audio kept.

Frames stream through: decode -> batch -> stylise -> smooth -> encode. At most one batch of
frames (plus the encoder's own look-ahead) is in memory, whatever the clip's length. Every
output frame keeps its input frame's timestamp and duration (put back on the frame-rate grid
where a millisecond time base had rounded them), so the frame count, frame rate and duration
match the input's. Every frame's real size goes through the pixel limit (and the size
`--size` makes it), not only the header's.

Video containers, codecs and audio are `video_av.py`'s (PyAV, an optional extra); this module
holds the frame pipeline, the smoothing and the animations.

Animated GIF and WebP (Pillow, through `images`): per-frame durations and the loop count are
kept. Pillow writes an animation in one call, so its frames are held in memory as 8-bit RGB
until then; animations are short. GIF's writer merges identical consecutive frames (adding
their durations), so a still stretch may come out as fewer frames lasting as long.
Transparency is flattened onto white, as for still images.

An arbitrary-style (AdaIN) stylizer comes with its paintings bound (`FastStylizer.with_styles`):
their statistics were measured once, and every frame of every clip is painted with them. Its
`preserve_color="histogram"` is refused here: it recolours and measures the paintings for each
photo, so each frame would be painted with other statistics (flicker, and an encoder pass of
every painting per frame); `luminance` keeps a clip's colours frame by frame instead.

Two ways against flicker, one at a time, both restarted at scene cuts (a large mean difference
between consecutive input frames, `flow.SCENE_CUT`). Smoothing (`ApplyConfig.smooth` = s):
out_t = (1-s)*styled_t + s*out_{t-1}, an exponential moving average of the stylised frames. It
costs one frame of memory and a little arithmetic; on motion it leaves ghosts trailing behind
moving things, more as s nears 1. Stabilising (`ApplyConfig.stabilize` = s, the `flow` extra):
`flow.FlowBlender` blends each stylised frame with the previous output warped along the input's
optical flow, only where the pixel was visible in the previous frame, so texture follows the
motion instead of ghosting. It costs two optical flows a frame (about 0.15 s at 480p on two CPU
cores, small beside the network there) and two frames of memory; where the flow is wrong (fast
or blurred motion, thin structures, reflections) it can smear, less as s nears 0.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from . import flow, images, pixels, video_av
from .atomic import atomic_path, same_file
from .errors import ImageError, UsageError
from .events import Callback, StopRequested, VideoProgressEvent, ignore
from .provenance import describe_file
from .video_av import VIDEO_EXTENSIONS, WRITABLE_VIDEO_EXTENSIONS, Frame, Written

if TYPE_CHECKING:
    from .fast import FastStylizer

__all__ = ["ANIMATION_EXTENSIONS", "VIDEO_EXTENSIONS", "WRITABLE_VIDEO_EXTENSIONS", "Smoother", "VideoReport",
           "check_stylizer", "is_video", "read_video_settings", "stylize_video"]

ANIMATION_EXTENSIONS = (".gif", ".webp")


@dataclass
class VideoReport:
    """What `stylize_video` wrote."""

    path: Path
    frames: int
    fps: Fraction | float  # the clip's frame rate: exact for video, frames/duration for animations
    duration: float  # seconds
    size: tuple[int, int]  # (width, height) written; odd sides grow by one pixel for H.264
    audio: bool  # an audio stream was written
    seconds: float  # time taken
    frames_per_second: float  # throughput
    stopped_early: bool = False  # a callback raised StopRequested: the clip ends where it stopped


def is_video(path: str | os.PathLike) -> bool:
    """Whether `stylize_video` should take this file: a video extension or an animated GIF/WebP.

    Never raises: a GIF or WebP that cannot be read (truncated, corrupt) is "not an animation",
    so that the image reader reports it by name and a folder's other files go on.
    """
    suffix = Path(path).suffix.lower()
    if suffix in VIDEO_EXTENSIONS:
        return True
    if suffix not in ANIMATION_EXTENSIONS:
        return False
    try:
        return images.frame_count(path) > 1
    except ImageError:
        return False


def stylize_video(
    stylizer: FastStylizer,
    source: str | os.PathLike,
    target: str | os.PathLike,
    *,
    callback: Callback = ignore,
) -> VideoReport:
    """Stylise every frame of a video or animated GIF/WebP and write `target` atomically.

    The settings are `stylizer.config`'s, as for `FastStylizer.stylize`: `size` resizes the
    long side (the output then has that size), `smooth` or `stabilize` in [0, 1) damps flicker
    (see the module's notes), `batch_size` frames go through the network together, and no frame over
    `max_pixels` is accepted. `stylizer.describe()`, with the input's name and hash, is stored
    in the container's comment (or the animation's metadata).

    A damaged or unsupported input raises `ImageError` naming the file, an output that cannot
    be written `OutputError`; on any error or interrupt nothing is written and no temporary is
    left. A callback raising `StopRequested` ends the clip at the frames done so far.
    """
    started = time.perf_counter()
    source_path, target_path = Path(source), Path(target)
    check_stylizer(stylizer, source_path, callback=callback)
    _check_request(source_path, target_path)
    with _open_source(source_path, stylizer) as frames:
        settings = stylizer.describe(input=describe_file(source_path))
        with atomic_path(target_path) as temporary, _open_sink(frames, temporary, target_path, settings,
                                                               callback) as sink:
            smoother = _smoother(stylizer, callback)
            run = _Run(stylizer, smoother, callback, started, os.fspath(source_path))
            stopped = run.stream(frames, sink)
            written = sink.finish(complete=not stopped)
    seconds = time.perf_counter() - started
    return VideoReport(target_path, written.frames, written.fps, written.duration, written.size, written.audio,
                       seconds, written.frames / seconds, stopped_early=stopped)


def check_stylizer(stylizer: FastStylizer, source: str | os.PathLike, *, callback: Callback = ignore) -> None:
    """Refuse, before any work, a stylizer that cannot paint a clip: an arbitrary-style model without
    a painting, or with `preserve_color="histogram"` (see the module's notes), or `stabilize`
    without OpenCV or without the RAFT weights its `flow` names (fetched now if they can be)."""
    stylizer.check_style()
    if stylizer.config.stabilize > 0:
        flow.require_opencv()
        if stylizer.config.flow != "dis":
            from .flow_raft import ensure_weights

            ensure_weights(stylizer.config.flow, callback=callback)
    if stylizer.is_arbitrary and stylizer.config.preserve_color == "histogram":
        raise UsageError(f"{os.fspath(source)}: preserve_color 'histogram' measures the paintings again for each "
                         "photo, so every frame of a video would be painted differently; use 'luminance'")


def read_video_settings(path: str | os.PathLike) -> dict | None:
    """The settings `stylize_video` stored in a file it wrote, or None when there are none."""
    path = Path(path)
    if _is_animation(path):
        return images.read_settings(path)
    return images.parse_settings(video_av.read_comment(path))


def _check_request(source: Path, target: Path) -> None:
    """Refuse before any work: a missing input, an unwritable or protected output."""
    if not source.is_file():
        raise ImageError(f"{source}: no such file")
    animated_in = _is_animation(source)
    kind, suffixes = (("an animated image", ANIMATION_EXTENSIONS) if animated_in
                      else ("a video", WRITABLE_VIDEO_EXTENSIONS))
    if target.suffix.lower() not in suffixes:  # one list per kind of input: the one it can be written as
        raise UsageError(f"{target}: {source} is {kind}; write it as one of {', '.join(suffixes)}")
    if same_file(source, target):
        raise ImageError(f"{target}: refusing to overwrite an input file")


def _is_animation(path: Path) -> bool:
    return path.suffix.lower() in ANIMATION_EXTENSIONS


# --- the pipeline: frames in batches through the network ---------------------------------------


class _Source(Protocol):
    total_frames: int | None

    def frames(self, check: Callable[[int, int], None]) -> Iterator[Frame]: ...


class _Sink(Protocol):
    def write(self, image: np.ndarray, frame: Frame) -> None: ...

    def finish(self, *, complete: bool) -> Written: ...


@dataclass
class _Run:
    """One `stylize_video` call: streams frames from a source through the stylizer into a sink."""

    stylizer: FastStylizer
    smoother: Callable[[np.ndarray, np.ndarray], np.ndarray]  # (input frame, stylised frame) -> output frame
    callback: Callback
    started: float
    shown: str  # the input, as error messages name it

    def stream(self, source: _Source, sink: _Sink) -> bool:
        """Stylise every frame; True when a callback asked to stop early."""
        done = 0
        try:
            for batch in _batches(source.frames(self._frame_check()), self.stylizer.config.batch_size):
                styled = self.stylizer.stylize_batch([frame.image for frame in batch])
                for frame, image in zip(batch, styled):
                    sink.write(self.smoother(frame.image, image), frame)
                done += len(batch)
                elapsed = time.perf_counter() - self.started
                self.callback(VideoProgressEvent(done, source.total_frames, done / elapsed, elapsed))
        except StopRequested:
            return True
        return False

    def _frame_check(self) -> Callable[[int, int], None]:
        """Each frame's real size (and the size `size` makes it) against the pixel limit: a frame
        can be larger than the header said."""
        count = 0

        def check(height: int, width: int) -> None:
            nonlocal count
            count += 1
            self.stylizer.check_size(f"{self.shown}: frame {count}", height, width)

        return check


def _batches(frames: Iterable[Frame], size: int) -> Iterator[list[Frame]]:
    iterator = iter(frames)
    while batch := list(islice(iterator, size)):
        yield batch


def _smoother(stylizer: FastStylizer, callback: Callback) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """The one temporal filter a clip's frames go through (ApplyConfig refuses both at once); RAFT runs
    where the network does."""
    config = stylizer.config
    if config.stabilize > 0:
        return flow.FlowBlender(config.stabilize, flow.estimator(config.flow, device=stylizer.device,
                                                                 callback=callback))
    return Smoother(config.smooth)


class Smoother:
    """An exponential moving average of the stylised frames, restarted at scene cuts (`--smooth`):
    call it with (input frame, stylised frame) for each frame of one clip, in order.

    A fast-style network maps each frame on its own, so small changes between frames (noise,
    compression) become large changes in painted texture: flicker. Averaging with the
    previous output damps it at the price of ghosts on fast motion.
    """

    def __init__(self, strength: float) -> None:
        self.strength = strength
        self._output: np.ndarray | None = None
        self._thumbnail: np.ndarray | None = None  # of the previous input frame, for cut detection

    def __call__(self, original: np.ndarray, styled: np.ndarray) -> np.ndarray:
        if self.strength == 0.0:
            return styled
        thumbnail = flow.scene_thumbnail(original)
        previous = self._output
        if previous is not None and self._continues(thumbnail, styled):
            styled = (1.0 - self.strength) * styled + self.strength * previous
        self._output, self._thumbnail = styled, thumbnail
        return styled

    def _continues(self, thumbnail: np.ndarray, styled: np.ndarray) -> bool:
        """Whether this frame continues the previous shot (same size, no cut)."""
        if self._output is None or self._thumbnail is None:
            return False
        if self._output.shape != styled.shape:
            return False
        return not flow.is_scene_cut(self._thumbnail, thumbnail)


@contextmanager
def _open_source(path: Path, stylizer: FastStylizer) -> Iterator[_Source]:
    """The input's frames; its header's size is checked against the pixel limit before any is decoded."""
    if _is_animation(path):
        with images.open_animation(path, max_pixels=stylizer.config.max_pixels) as animation:
            yield _AnimationSource(path, animation)
        return
    with video_av.open_video_source(path) as source:
        if source.height and source.width:
            stylizer.check_size(os.fspath(path), source.height, source.width)
        yield source


@contextmanager
def _open_sink(source: _Source, temporary: Path, target: Path, settings: dict, callback: Callback) -> Iterator[_Sink]:
    if isinstance(source, _AnimationSource):
        yield _AnimationSink(temporary, target, source.loop, settings)
        return
    assert isinstance(source, video_av.VideoSource)  # _open_source made one or the other
    with video_av.open_video_sink(source, temporary, target, settings, callback) as sink:
        yield sink


# --- animated GIF and WebP (Pillow) -------------------------------------------------------------


class _AnimationSource:
    """The frames of an animated GIF or WebP with their durations, in milliseconds."""

    time_base = Fraction(1, 1000)

    def __init__(self, path: Path, animation: images.Animation) -> None:
        self.path = path
        self.total_frames: int | None = animation.count
        self.loop = animation.loop
        self._animation = animation

    def frames(self, check: Callable[[int, int], None]) -> Iterator[Frame]:
        pts = 0
        for image, duration in self._animation.frames:
            check(*image.shape[:2])
            yield Frame(image, pts, duration)
            pts += duration


class _AnimationSink:
    """Collects frames as 8-bit images (Pillow writes an animation in one call) and writes them at the end."""

    def __init__(self, temporary: Path, target: Path, loop: int | None, settings: dict) -> None:
        self._path, self._target = temporary, target
        self._loop = loop
        self._settings = settings
        self._frames: list[np.ndarray] = []
        self._durations: list[int] = []

    def write(self, image: np.ndarray, frame: Frame) -> None:
        self._frames.append(pixels.to_uint8(image))
        self._durations.append(frame.duration)

    def finish(self, *, complete: bool) -> Written:
        if not self._frames:
            raise ImageError(f"{self._target}: no frames to write")
        images.save_animation(self._frames, self._durations, self._path, loop=self._loop, settings=self._settings)
        seconds = sum(self._durations) / 1000
        count = len(self._frames)
        height, width = self._frames[0].shape[:2]
        return Written(count, count / seconds if seconds else 0.0, seconds, (width, height), audio=False)
