"""Videos and animated images through a fast-style model: frames in, frames out, audio kept.

Frames stream through: decode -> batch -> stylise -> smooth -> encode. At most one batch of
frames (plus the encoder's own look-ahead) is in memory, whatever the clip's length. Every
output frame keeps its input frame's timestamp and duration (put back on the frame-rate grid
where a millisecond time base had rounded them), so the frame count, frame rate and duration
match the input's.

Video (PyAV): H.264 (libx264, yuv420p, tagged BT.709) in .mp4/.m4v/.mov/.mkv, VP9 in .webm.
The first audio stream is copied packet for packet when the output container takes its codec,
and otherwise re-encoded (AAC; Opus for WebM); other streams (subtitles, more audio) are
dropped. 4:2:0 H.264 cannot code an odd width or height (its crop unit is two pixels), and the
4:4:4 H.264 that could does not play in browsers, QuickTime or most hardware decoders, so an
odd side is padded with one repeated edge pixel: a 65x49 clip comes out 66x50 (a warning says
so). VP9 codes odd sizes, so .webm keeps them exactly. A phone's rotation flag is applied to
the pixels, so frames are stylised upright.

Animated GIF and WebP (Pillow): per-frame durations and the loop count are kept. Pillow
writes an animation in one call, so its frames are held in memory as 8-bit RGB until then;
animations are short. GIF's writer merges identical consecutive frames (adding their
durations), so a still stretch may come out as fewer frames lasting as long. Transparency is
flattened onto white, as for still images. Pillow is used here directly because images.py
reads only the first frame.

Temporal smoothing (`smooth=s`) against flicker: out_t = (1-s)*styled_t + s*out_{t-1}, an
exponential moving average of the stylised frames, restarted at scene cuts (a large mean
difference between consecutive input frames). It costs one frame of memory and a little
arithmetic; on fast motion it leaves ghosts trailing behind moving things, more as s nears 1.
There is no motion compensation (optical flow): nothing installed computes it well.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from fractions import Fraction
from itertools import islice
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from . import images
from .atomic import atomic_path, same_file
from .provenance import describe_file
from .errors import ImageError, UsageError
from .events import Callback, MessageEvent, StopRequested, VideoProgressEvent, ignore

if TYPE_CHECKING:
    from .fast import FastStylizer

VIDEO_EXTENSIONS = (".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v")
ANIMATION_EXTENSIONS = (".gif", ".webp")
# A mean absolute difference (in [0, 1]) between consecutive input frames above this is a scene
# cut: smoothing restarts there rather than blending two shots. Motion and sensor noise stay
# well below it (typically < 0.05); a cut between unrelated shots is typically 0.2-0.4.
SCENE_CUT = 0.15
_CUT_STRIDE = 4  # compare every 4th pixel each way: a cut shows at any resolution


@dataclass(frozen=True)
class _OutputFormat:
    """What one output extension is written with."""

    video_codec: str
    audio_codec: str  # when the input's audio cannot be copied into this container
    video_options: dict[str, str]
    container_options: dict[str, str]
    even_sides: bool  # the codec cannot code an odd width or height in 4:2:0


_H264 = {"video_codec": "libx264", "audio_codec": "aac", "video_options": {"crf": "18"}, "even_sides": True}
# faststart moves the index to the front so players start before the whole file has arrived.
_MP4 = _OutputFormat(**_H264, container_options={"movflags": "+faststart"})
_OUTPUT_FORMATS = {
    ".mp4": _MP4,
    ".m4v": _MP4,
    ".mov": _MP4,
    ".mkv": _OutputFormat(**_H264, container_options={}),
    # crf with b=0 is VP9's constant-quality mode; cpu-used 4 and row-mt keep encoding fast.
    ".webm": _OutputFormat("libvpx-vp9", "libopus", {"crf": "30", "b": "0", "cpu-used": "4", "row-mt": "1"},
                           {}, even_sides=False),
}
WRITABLE_VIDEO_EXTENSIONS = tuple(_OUTPUT_FORMATS)


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
    """Whether `stylize_video` should take this file: a video extension or an animated GIF/WebP."""
    suffix = Path(path).suffix.lower()
    if suffix in VIDEO_EXTENSIONS:
        return True
    if suffix not in ANIMATION_EXTENSIONS:
        return False
    try:
        return images.frame_count(path) > 1
    except ImageError:
        return False  # unreadable: the image reader reports it by name


def stylize_video(
    stylizer: FastStylizer,
    input: str | os.PathLike,
    output: str | os.PathLike,
    *,
    strength: float = 1.0,
    preserve_color: str | None = None,
    size: int | None = None,
    smooth: float = 0.0,
    batch_size: int = 4,
    callback: Callback = ignore,
    settings: dict | None = None,
) -> VideoReport:
    """Stylise every frame of a video or animated GIF/WebP and write `output` atomically.

    `strength`, `preserve_color` and `size` mean what they mean for `FastStylizer.stylize`;
    `size` resizes the long side, and the output then has that size. `smooth` in [0, 1)
    damps flicker (see the module's notes). `batch_size` frames go through the network
    together. `settings` is what `apply` records in every output (model, settings); it is
    stored, with the input's hash and `smooth`, in the container's comment.

    A damaged or unsupported input raises `ImageError` naming the file; on any error or
    KeyboardInterrupt nothing is written. A callback raising `StopRequested` ends the clip at
    the frames done so far.
    """
    started = time.perf_counter()
    source_path, target = Path(input), Path(output)
    _check_request(source_path, target, smooth, batch_size)
    options = {"strength": strength, "preserve_color": preserve_color, "size": size}
    with _open_source(source_path) as source:
        metadata = _output_settings(settings, stylizer, options, smooth, source_path)
        with atomic_path(target) as temporary, _open_sink(source, temporary, target, metadata, callback) as sink:
            run = _Run(stylizer, options, _Smoother(smooth), batch_size, callback, started)
            stopped = run.stream(source, sink)
            written = sink.finish(complete=not stopped)
    seconds = time.perf_counter() - started
    return VideoReport(target, written.frames, written.fps, written.duration, written.size, written.audio,
                       seconds, written.frames / seconds, stopped_early=stopped)


def read_video_settings(path: str | os.PathLike) -> dict | None:
    """The settings `stylize_video` stored in a file it wrote, or None when there are none."""
    path = Path(path)
    if _is_animation(path):
        return images.read_settings(path)
    with _open_container(path) as container:
        comment = next((value for key, value in container.metadata.items() if key.lower() == "comment"), None)
    return images.parse_settings(comment)


# --- checks and settings -----------------------------------------------------------------------


def _check_request(source: Path, target: Path, smooth: float, batch_size: int) -> None:
    """Refuse before any work: bad settings, a missing input, an unwritable or protected output."""
    if not 0.0 <= smooth < 1.0:
        raise UsageError(f"smooth must be at least 0 and below 1, got {smooth}")
    if batch_size < 1:
        raise UsageError(f"batch size must be at least 1, got {batch_size}")
    if not source.is_file():
        raise ImageError(f"{source}: no such file")
    animated_in, animated_out = _is_animation(source), _is_animation(target)
    if not animated_out and target.suffix.lower() not in _OUTPUT_FORMATS:
        writable = ", ".join((*WRITABLE_VIDEO_EXTENSIONS, *ANIMATION_EXTENSIONS))
        raise UsageError(f"{target}: cannot write this file type; use one of {writable}")
    if animated_in != animated_out:
        kind, suffixes = ("an animated image", ANIMATION_EXTENSIONS) if animated_in else ("a video", _OUTPUT_FORMATS)
        raise UsageError(f"{target}: {source} is {kind}; write it as one of {', '.join(suffixes)}")
    if same_file(source, target):
        raise ImageError(f"{target}: refusing to overwrite an input file")


def _is_animation(path: Path) -> bool:
    return path.suffix.lower() in ANIMATION_EXTENSIONS


def _output_settings(settings: dict | None, stylizer: FastStylizer, options: dict, smooth: float, source: Path) -> dict:
    """The stylizer's record of model and settings, plus `smooth` and the input's name and hash."""
    base = settings if settings is not None else stylizer.describe(**options)
    return {**base, "settings": {**base.get("settings", {}), "smooth": smooth}, "input": describe_file(source)}


# --- the pipeline: frames in batches through the network ---------------------------------------


@dataclass
class _Frame:
    """One input frame and when it is shown, in its source's time base."""

    image: np.ndarray  # HxWx3 float32 in [0, 1], upright
    pts: int
    duration: int


@dataclass
class _Written:
    """What a sink wrote, for the report."""

    frames: int
    fps: Fraction | float
    duration: float
    size: tuple[int, int]
    audio: bool


class _Source(Protocol):
    total_frames: int | None

    def frames(self) -> Iterator[_Frame]: ...


class _Sink(Protocol):
    def write(self, image: np.ndarray, frame: _Frame) -> None: ...

    def finish(self, *, complete: bool) -> _Written: ...


@dataclass
class _Run:
    """One `stylize_video` call: streams frames from a source through the stylizer into a sink."""

    stylizer: FastStylizer
    options: dict  # stylize_batch's keyword arguments
    smoother: _Smoother
    batch_size: int
    callback: Callback
    started: float

    def stream(self, source: _Source, sink: _Sink) -> bool:
        """Stylise every frame; True when a callback asked to stop early."""
        done = 0
        try:
            for batch in _batches(source.frames(), self.batch_size):
                styled = self.stylizer.stylize_batch([frame.image for frame in batch], **self.options)
                for frame, image in zip(batch, styled):
                    sink.write(self.smoother(frame.image, image), frame)
                done += len(batch)
                elapsed = time.perf_counter() - self.started
                self.callback(VideoProgressEvent(done, source.total_frames, done / elapsed, elapsed))
        except StopRequested:
            return True
        return False


def _batches(frames: Iterable[_Frame], size: int) -> Iterator[list[_Frame]]:
    iterator = iter(frames)
    while batch := list(islice(iterator, size)):
        yield batch


class _Smoother:
    """An exponential moving average of the stylised frames, restarted at scene cuts.

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
        thumbnail = original[::_CUT_STRIDE, ::_CUT_STRIDE].copy()
        if self._continues(thumbnail, styled):
            styled = (1.0 - self.strength) * styled + self.strength * self._output
        self._output, self._thumbnail = styled, thumbnail
        return styled

    def _continues(self, thumbnail: np.ndarray, styled: np.ndarray) -> bool:
        """Whether this frame continues the previous shot (same size, no cut)."""
        if self._output is None or self._output.shape != styled.shape or self._thumbnail.shape != thumbnail.shape:
            return False
        return float(np.abs(thumbnail - self._thumbnail).mean()) < SCENE_CUT


def _to_uint8(image: np.ndarray) -> np.ndarray:
    return np.round(np.clip(image, 0.0, 1.0) * 255).astype(np.uint8)


@contextmanager
def _open_source(path: Path) -> Iterator[_Source]:
    if _is_animation(path):
        with images.open_animation(path) as animation:
            yield _AnimationSource(animation)
    else:
        with _open_container(path) as container:
            yield _VideoSource(path, container)


@contextmanager
def _open_sink(source: _Source, temporary: Path, target: Path, settings: dict, callback: Callback) -> Iterator[_Sink]:
    if isinstance(source, _AnimationSource):
        yield _AnimationSink(temporary, target, source.loop, settings)
        return
    av = _require_av()
    output_format = _OUTPUT_FORMATS[target.suffix.lower()]
    try:
        container = av.open(os.fspath(temporary), "w", container_options=output_format.container_options)
    except av.FFmpegError as error:
        raise ImageError(f"{target}: cannot write ({_reason(error)})") from None
    sink = _VideoSink(container, source, output_format, settings, target, callback)
    try:
        yield sink
    finally:
        sink.close()


# --- video (PyAV) ------------------------------------------------------------------------------


def _require_av() -> ModuleType:
    try:
        import av
    except ImportError:
        raise UsageError("video needs PyAV: pip install 'painterly[video]'") from None
    return av


def _reason(error: Exception) -> str:
    """FFmpeg's own words without the file name PyAV appends (which may be a temporary's)."""
    return getattr(error, "strerror", None) or str(error).splitlines()[0][:200]


@contextmanager
def _open_container(path: Path) -> Iterator[Any]:
    av = _require_av()
    try:
        container = av.open(os.fspath(path))
    except av.FFmpegError as error:
        raise ImageError(f"{path}: not a readable video ({_reason(error)})") from None
    with container:
        yield container


class _VideoSource:
    """The first video stream of a container, decoded to upright RGB frames with their timestamps."""

    def __init__(self, path: Path, container: Any) -> None:
        if not container.streams.video:
            raise ImageError(f"{path}: has no video stream")
        self.path = path
        self.stream = container.streams.video[0]
        self.stream.thread_type = "AUTO"  # frame and slice threads: decoding keeps up with the network
        self.has_audio = bool(container.streams.audio)
        self.time_base: Fraction = self.stream.time_base
        self.rate: Fraction = self.stream.average_rate or self.stream.guessed_rate or Fraction(25)
        self.total_frames = self.stream.frames or _estimated_frames(container, self.rate)
        self._container = container

    def frames(self) -> Iterator[_Frame]:
        """Decoded frames; a frame without a timestamp follows its predecessor."""
        default_duration = max(1, round(1 / (self.rate * self.time_base)))
        next_pts = 0
        for decoded in self._decoded():
            pts = decoded.pts if decoded.pts is not None else next_pts
            duration = decoded.duration or default_duration
            next_pts = pts + duration
            yield _Frame(_frame_to_array(decoded), pts, duration)

    def _decoded(self) -> Iterator[Any]:
        """PyAV frames, checked against the container's index so that a cut-off file is refused.

        An MP4 with its index at the front (a partial download, say) demuxes without error up
        to where the data stops; only the index still lists the missing packets. Containers
        without a full index list fewer entries than packets, never more.
        """
        av = _require_av()
        packets = 0
        try:
            for packet in self._container.demux(self.stream):
                packets += packet.size > 0  # the last, empty packet only flushes the decoder
                yield from packet.decode()
        except av.FFmpegError as error:
            raise ImageError(f"{self.path}: damaged video data ({_reason(error)})") from None
        indexed = len(self.stream.index_entries)
        if packets < indexed:
            raise ImageError(f"{self.path}: the file is cut off (its index lists {indexed} frames, it holds {packets})")


def _estimated_frames(container: Any, rate: Fraction) -> int | None:
    """Frames from the container's duration when the stream's header does not count them (WebM)."""
    return round(container.duration / 1_000_000 * rate) if container.duration else None


_UNSPECIFIED_COLORSPACE = 2  # AVCOL_SPC_UNSPECIFIED


def _frame_to_array(frame: Any) -> np.ndarray:
    """A decoded frame as upright float32 RGB in [0, 1].

    An untagged frame taller than SD is read with BT.709, as players show it (swscale alone
    would use BT.601 and shift the colours); a tagged one with its own matrix.
    """
    untagged_hd = frame.colorspace == _UNSPECIFIED_COLORSPACE and frame.height > 576
    rgb = frame.to_ndarray(format="rgb24", src_colorspace="ITU709" if untagged_hd else None,
                           src_color_range=frame.color_range)
    upright = np.rot90(rgb, round(frame.rotation / 90) % 4)  # rotation: degrees counterclockwise
    return upright.astype(np.float32) / 255


class _Timing:
    """Output timestamps: the input's, put back on the frame-rate grid where its time base rounded them.

    Matroska and WebM count milliseconds, which cannot hold 1/12 s: a 12 fps clip's frames sit
    at 0, 83, 167… ms. Written as they are, an MP4 of it would measure 11.998 fps. Within one
    input tick of the grid a time is taken to mean the grid's; a variable-rate frame elsewhere
    keeps its own time. When the input's time base holds the frame period exactly (MP4, MOV)
    the timestamps pass through unchanged.
    """

    def __init__(self, time_base: Fraction, rate: Fraction) -> None:
        self._input, self._rate = time_base, rate
        period = 1 / (rate * time_base)  # in input ticks
        timescale = math.lcm(time_base.denominator, rate.numerator)  # holds both grids exactly
        # Snap only where the input rounded the grid, the grid stands clear of that rounding, and
        # encoders take the time base (a 32-bit integer).
        self._snaps = period.denominator != 1 and period > 4 and timescale < 2**31
        self.output = Fraction(1, timescale) if self._snaps else time_base
        self._last = -math.inf  # the previous output pts: they must keep increasing

    def __call__(self, pts: int, duration: int) -> tuple[int, int]:
        """(pts, duration) in input ticks -> the same in `self.output` ticks."""
        if not self._snaps:
            return pts, duration
        start = max(self._snap(pts), self._last + 1)
        end = max(self._snap(pts + duration), start + 1)
        self._last = start
        return start, end - start

    def _snap(self, ticks: int) -> int:
        seconds = ticks * self._input
        on_grid = round(seconds * self._rate) / self._rate
        if abs(seconds - on_grid) <= self._input:
            seconds = on_grid
        return round(seconds / self.output)


class _VideoSink:
    """Encodes frames into an output container; its streams open with the first frame's size."""

    _BT709 = 1  # AVCOL_PRI/TRC/SPC_BT709: how the RGB frames are converted, so players convert back
    _LIMITED_RANGE = 1  # AVCOL_RANGE_MPEG, what every player expects of yuv420p

    def __init__(self, container: Any, source: _VideoSource, output_format: _OutputFormat, settings: dict,
                 target: Path, callback: Callback) -> None:
        self._container = container
        self._source = source
        self._format = output_format
        self._settings = settings
        self._target = target
        self._callback = callback
        self._stream: Any = None
        self._audio: _AudioTrack | None = None
        self._timing = _Timing(source.time_base, source.rate)
        self._frames = 0
        self._start: Fraction | None = None  # seconds, of the first frame
        self._end = Fraction(0)  # seconds, of the latest frame's end

    def write(self, image: np.ndarray, frame: _Frame) -> None:
        if self._stream is None:
            self._open(*image.shape[:2])
        pts, duration = self._timing(frame.pts, frame.duration)
        with self._writing():
            self._container.mux(self._stream.encode(self._encodable(image, pts, duration)))
        self._frames += 1
        self._start = pts * self._timing.output if self._start is None else self._start
        self._end = max(self._end, (pts + duration) * self._timing.output)
        if self._audio is not None:
            self._audio.write_until(float(self._end))

    def finish(self, *, complete: bool) -> _Written:
        """Flush the encoder, write the rest of the audio (up to the video's end when stopped early)."""
        if self._stream is None:
            raise ImageError(f"{self._source.path}: no video frames could be decoded")
        with self._writing():
            self._container.mux(self._stream.encode(None))
        if self._audio is not None:
            self._audio.finish(None if complete else float(self._end))
        with self._writing():
            self._container.close()
        return _Written(self._frames, self._source.rate, float(self._end - self._start),
                        (self._stream.width, self._stream.height), self._audio is not None)

    def close(self) -> None:
        """Release both files; after an error the output is discarded, so its errors are too."""
        if self._audio is not None:
            self._audio.close()
        with suppress(_require_av().FFmpegError, OSError):  # a half-written output that atomic_path deletes
            self._container.close()

    def _open(self, height: int, width: int) -> None:
        """Add the video stream (and audio after it) now that the frame size is known."""
        if self._format.even_sides and (height % 2 or width % 2):
            height, width = _even(height), _even(width)
            self._callback(MessageEvent(f"{self._target}: {self._format.video_codec} needs even sides; frames are "
                                        f"padded by one edge pixel to {width}x{height}", level="warning"))
        self._container.metadata["comment"] = json.dumps(self._settings)  # Matroska reads it back as COMMENT
        with self._writing():
            self._stream = self._video_stream(width, height)
        if self._source.has_audio:
            self._audio = _AudioTrack(self._source.path, self._container, self._format.audio_codec,
                                      self._target, self._callback)

    def _video_stream(self, width: int, height: int) -> Any:
        stream = self._container.add_stream(self._format.video_codec, rate=self._source.rate,
                                            options=self._format.video_options)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        context = stream.codec_context
        stream.time_base = context.time_base = self._timing.output
        context.color_primaries = context.color_trc = context.colorspace = self._BT709
        context.color_range = self._LIMITED_RANGE
        if self._source.stream.sample_aspect_ratio:
            context.sample_aspect_ratio = self._source.stream.sample_aspect_ratio
        return stream

    def _encodable(self, image: np.ndarray, pts: int, duration: int) -> Any:
        """The stylised image as a BT.709 yuv420p frame of the stream's size at the given time.

        Odd sides for H.264 get one repeated edge row or column. A frame whose size differs
        from the first frame's (a stream that changes resolution) is scaled to the stream's.
        """
        av = _require_av()
        pixels = _to_uint8(image)
        if self._format.even_sides:
            height, width = pixels.shape[:2]
            pixels = np.pad(pixels, ((0, _even(height) - height), (0, _even(width) - width), (0, 0)), mode="edge")
        encodable = av.VideoFrame.from_ndarray(pixels, format="rgb24").reformat(
            width=self._stream.width, height=self._stream.height, format="yuv420p",
            dst_colorspace="ITU709", dst_color_range="MPEG")
        encodable.pts, encodable.duration, encodable.time_base = pts, duration, self._timing.output
        return encodable

    @contextmanager
    def _writing(self) -> Iterator[None]:
        """FFmpeg's errors while encoding or muxing, as one line naming the output."""
        av = _require_av()
        try:
            yield
        except (av.FFmpegError, OSError) as error:
            raise ImageError(f"{self._target}: cannot write ({_reason(error)})") from None


def _even(length: int) -> int:
    return length + length % 2


class _AudioTrack:
    """The input's first audio stream in the output, written in step with the video.

    It is read through a second demuxer of the same file, so its packets are written as soon
    as the video reaches their time, however the input interleaves them: the muxer then
    interleaves closely and nothing piles up in memory. Packets are copied when the output
    container takes the codec; otherwise decoded and re-encoded (PyAV's encoder resamples to
    what the codec needs).
    """

    def __init__(self, path: Path, output: Any, fallback_codec: str, target: Path, callback: Callback) -> None:
        av = _require_av()
        self._path, self._target = path, target
        self._input = av.open(os.fspath(path))
        self._source = self._input.streams.audio[0]
        codec = self._source.codec_context.name
        self._copy = codec in output.supported_codecs
        if self._copy:
            self._stream = output.add_stream_from_template(self._source)
        else:
            self._stream = _audio_encoder(output, fallback_codec, self._source)
            callback(MessageEvent(f"{target}: audio re-encoded from {codec} to {self._stream.codec_context.name}"))
        self._output = output
        self._packets = self._input.demux(self._source)
        self._pending: Any = None  # the first packet past the last `write_until`

    def write_until(self, seconds: float | None) -> None:
        """Write the packets that start before `seconds`; all that are left when None."""
        with self._reading():
            while (packet := self._next_packet()) is not None:
                if seconds is not None and packet.dts is not None and _start(packet) >= seconds:
                    self._pending = packet
                    return
                self._write(packet)

    def finish(self, seconds: float | None) -> None:
        """Write the packets up to `seconds` (all when None) and what the encoder still holds."""
        self.write_until(seconds)
        if not self._copy:
            with self._reading():
                self._output.mux(self._stream.encode(None))

    def close(self) -> None:
        self._input.close()

    @contextmanager
    def _reading(self) -> Iterator[None]:
        av = _require_av()
        try:
            yield
        except av.FFmpegError as error:
            raise ImageError(f"{self._path}: damaged audio data ({_reason(error)})") from None

    def _next_packet(self) -> Any:
        """The held-back packet if any, else the demuxer's next; None at the end."""
        packet, self._pending = self._pending, None
        return packet if packet is not None else next(self._packets, None)

    def _write(self, packet: Any) -> None:
        if not self._copy:
            for frame in packet.decode():  # the last, empty packet flushes the decoder
                self._output.mux(self._stream.encode(frame))
        elif packet.dts is not None:  # the demuxer's last packet is empty
            packet.stream = self._stream
            self._output.mux(packet)


def _start(packet: Any) -> float:
    return float((packet.pts if packet.pts is not None else packet.dts) * packet.time_base)


def _audio_encoder(output: Any, codec: str, source: Any) -> Any:
    """An encoder for `codec` at the source's rate (Opus only runs at 48 kHz), mono or stereo."""
    rate = 48_000 if codec == "libopus" else source.codec_context.sample_rate
    layout = "mono" if source.codec_context.channels == 1 else "stereo"
    return output.add_stream(codec, rate=rate, layout=layout)


# --- animated GIF and WebP (Pillow) -------------------------------------------------------------


class _AnimationSource:
    """The frames of an animated GIF or WebP with their durations, in milliseconds."""

    time_base = Fraction(1, 1000)

    def __init__(self, animation: images.Animation) -> None:
        self.total_frames: int | None = animation.count
        self.loop = animation.loop
        self._animation = animation

    def frames(self) -> Iterator[_Frame]:
        pts = 0
        for image, duration in self._animation.frames:
            yield _Frame(image, pts, duration)
            pts += duration


class _AnimationSink:
    """Collects frames as 8-bit images (Pillow writes an animation in one call) and writes them at the end."""

    def __init__(self, temporary: Path, target: Path, loop: int | None, settings: dict) -> None:
        self._path, self._target = temporary, target
        self._loop = loop
        self._settings = settings
        self._frames: list[np.ndarray] = []
        self._durations: list[int] = []

    def write(self, image: np.ndarray, frame: _Frame) -> None:
        self._frames.append(_to_uint8(image))
        self._durations.append(frame.duration)

    def finish(self, *, complete: bool) -> _Written:
        if not self._frames:
            raise ImageError(f"{self._target}: no frames to write")
        images.save_animation(self._frames, self._durations, self._path, loop=self._loop, settings=self._settings)
        seconds = sum(self._durations) / 1000
        count = len(self._frames)
        height, width = self._frames[0].shape[:2]
        return _Written(count, count / seconds if seconds else 0.0, seconds, (width, height), audio=False)
