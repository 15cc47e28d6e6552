"""Video containers through PyAV: frames in with their timestamps, frames out, audio kept.

The optional `painterly[video]` dependency ends at this file: nothing else imports `av`, and
this file imports it only when a video is opened, so animations and images work without it.

Output: H.264 (libx264, yuv420p, tagged BT.709) in .mp4/.m4v/.mov/.mkv, VP9 in .webm. The first
audio stream is copied packet for packet when the output container takes its codec, and
otherwise re-encoded (AAC; Opus for WebM); other streams (subtitles, more audio) are dropped.
4:2:0 H.264 cannot code an odd width or height (its crop unit is two pixels), and the 4:4:4
H.264 that could does not play in browsers, QuickTime or most hardware decoders, so an odd
side is padded with one repeated edge pixel: a 65x49 clip comes out 66x50 (a warning says so).
VP9 codes odd sizes, so .webm keeps them exactly. A phone's rotation flag is applied to the
pixels, so frames are stylised upright.

Errors are worded at the boundary: FFmpeg failing to read the input is an `ImageError` naming
the input; failing to write (a full disk, a read-only folder) an `OutputError` naming the output.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, suppress
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from .atomic import cannot_write
from .errors import ImageError, UsageError
from .events import Callback, MessageEvent
from .pixels import to_uint8

VIDEO_EXTENSIONS = (".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v")  # read; written: WRITABLE_VIDEO_EXTENSIONS


@dataclass
class Frame:
    """One input frame and when it is shown, in its source's time base."""

    image: np.ndarray  # HxWx3 float32 in [0, 1], upright
    pts: int
    duration: int


@dataclass
class Written:
    """What a sink wrote, for the report."""

    frames: int
    fps: Fraction | float
    duration: float
    size: tuple[int, int]
    audio: bool


@dataclass(frozen=True)
class OutputFormat:
    """What one output extension is written with."""

    video_codec: str
    audio_codec: str  # when the input's audio cannot be copied into this container
    video_options: dict[str, str]
    container_options: dict[str, str]
    even_sides: bool  # the codec cannot code an odd width or height in 4:2:0


# faststart moves the index to the front so players start before the whole file has arrived.
_MP4 = OutputFormat("libx264", "aac", {"crf": "18"}, {"movflags": "+faststart"}, even_sides=True)
OUTPUT_FORMATS = {
    ".mp4": _MP4,
    ".m4v": _MP4,
    ".mov": _MP4,
    ".mkv": dataclasses.replace(_MP4, container_options={}),
    # crf with b=0 is VP9's constant-quality mode; cpu-used 4 and row-mt keep encoding fast.
    ".webm": OutputFormat("libvpx-vp9", "libopus", {"crf": "30", "b": "0", "cpu-used": "4", "row-mt": "1"},
                          {}, even_sides=False),
}
WRITABLE_VIDEO_EXTENSIONS = tuple(OUTPUT_FORMATS)


def require_av() -> ModuleType:
    try:
        import av
    except ImportError:
        raise UsageError("video needs PyAV: pip install 'painterly[video]'") from None
    return av


def _reason(error: Exception) -> str:
    """FFmpeg's own words without the file name PyAV appends (which may be a temporary's)."""
    return getattr(error, "strerror", None) or str(error).splitlines()[0][:200]


@contextmanager
def open_container(path: Path) -> Iterator[Any]:
    """A PyAV input container; a file FFmpeg cannot open is an `ImageError` naming it."""
    container = _open_input(path)
    with container:
        yield container


def _open_input(path: Path) -> Any:
    """The one way an input is opened (twice for a clip with sound: video and audio demux apart).

    Damaged metadata is read with replacement characters: PyAV decodes it strictly and raises
    UnicodeDecodeError otherwise, before any frame is looked at.
    """
    av = require_av()
    try:
        return av.open(os.fspath(path), metadata_errors="replace")
    except (av.FFmpegError, OSError, ValueError) as error:
        raise ImageError(f"{path}: not a readable video ({_reason(error)})") from None


def read_comment(path: Path) -> str | None:
    """The container's comment tag (where `VideoSink` stores the settings), or None."""
    with open_container(path) as container:
        return next((value for key, value in container.metadata.items() if key.lower() == "comment"), None)


@contextmanager
def open_video_source(path: Path) -> Iterator[VideoSource]:
    with open_container(path) as container:
        yield VideoSource(path, container)


class VideoSource:
    """The first video stream of a container, decoded to upright RGB frames with their timestamps."""

    def __init__(self, path: Path, container: Any) -> None:
        if not container.streams.video:
            raise ImageError(f"{path}: has no video stream")
        self.path = path
        self.stream = container.streams.video[0]
        streams = [self.stream, *container.streams.audio[:1]]
        if any(stream.codec_context is None for stream in streams):  # an unknown codec, or a damaged header
            raise ImageError(f"{path}: damaged video data (a stream FFmpeg has no decoder for)")
        self.stream.thread_type = "AUTO"  # frame and slice threads: decoding keeps up with the network
        self.has_audio = bool(container.streams.audio)
        self.time_base: Fraction = self.stream.time_base
        self.rate: Fraction = self.stream.average_rate or self.stream.guessed_rate or Fraction(25)
        self.total_frames: int | None = self.stream.frames or _estimated_frames(container, self.rate)
        # From the header, 0 where it does not say; each decoded frame is checked again.
        self.height, self.width = self.stream.codec_context.height, self.stream.codec_context.width
        self._container = container
        self._period = max(1, round(1 / (self.rate * self.time_base)))  # a frame's ticks, for one that says none

    def frames(self, check: Callable[[int, int], None]) -> Iterator[Frame]:
        """Decoded frames; a frame without a timestamp follows its predecessor. `check(height, width)`
        sees each frame's real size before it is converted, and may refuse it."""
        next_pts = 0
        for decoded in self._decoded():
            turned = round(decoded.rotation / 90) % 2  # a quarter turn swaps the sides
            check(*((decoded.width, decoded.height) if turned else (decoded.height, decoded.width)))
            pts = decoded.pts if decoded.pts is not None else next_pts
            duration = decoded.duration or self._period
            next_pts = pts + duration
            yield Frame(_frame_to_array(decoded), pts, duration)

    def _decoded(self) -> Iterator[Any]:
        """PyAV frames, checked against the container's index so that a cut-off file is refused.

        An MP4 with its index at the front (a partial download, say) demuxes without error up
        to where the data stops; only the index still lists the missing packets. Containers
        without a full index list fewer entries than packets, never more.
        """
        av = require_av()
        packets, end = 0, 0
        try:
            for packet in self._container.demux(self.stream):
                packets += packet.size > 0  # the last, empty packet only flushes the decoder
                for decoded in packet.decode():
                    if decoded.pts is not None:
                        end = max(end, decoded.pts + (decoded.duration or self._period))
                    yield decoded
        except av.FFmpegError as error:
            raise ImageError(f"{self.path}: damaged video data ({_reason(error)})") from None
        indexed = len(self.stream.index_entries)
        if packets < indexed:
            raise ImageError(f"{self.path}: the file is cut off (its index lists {indexed} frames, it holds {packets})")
        stated = _stated_seconds(self._container, self.stream)
        played = float(end * self.time_base)
        if packets and stated is not None and played < stated - 1.5 / float(self.rate):
            raise ImageError(f"{self.path}: the file is cut off (its header says {stated:.2f} s, "
                             f"its frames end at {played:.2f} s)")


def _stated_seconds(container: Any, stream: Any) -> float | None:
    """How long the header says the video stream runs, for a container without a full index (Matroska,
    WebM: their index is at the end and goes with a cut): the stream's duration, else the DURATION tag that
    FFmpeg and mkvmerge write per track, else the container's when the video is its only stream (the
    container's runs to the end of its longest stream, the audio's perhaps). None where none says."""
    if stream.duration:
        return float(stream.duration * stream.time_base)
    tag = next((value for key, value in stream.metadata.items() if key.upper() == "DURATION"), None)
    if tag is not None and (match := _DURATION_TAG.fullmatch(tag.strip())):
        hours, minutes, seconds = match.groups()
        return int(hours) * 3600 + int(minutes) * 60 + float(seconds)
    if container.duration and len(container.streams) == 1:
        return container.duration / 1_000_000
    return None


_AUDIO_SLACK = 0.1  # s: an audio track may end this much short of its header's duration (encoder padding)
_DURATION_TAG = re.compile(r"([0-9]{1,9}):([0-5]?[0-9]):([0-9]{1,2}(?:\.[0-9]{1,9})?)")


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
        self._last: int | None = None  # the previous output pts: they must keep increasing

    def __call__(self, pts: int, duration: int) -> tuple[int, int]:
        """(pts, duration) in input ticks -> the same in `self.output` ticks."""
        if not self._snaps:
            return pts, duration
        start = self._snap(pts) if self._last is None else max(self._snap(pts), self._last + 1)
        end = max(self._snap(pts + duration), start + 1)
        self._last = start
        return start, end - start

    def _snap(self, ticks: int) -> int:
        seconds = ticks * self._input
        on_grid = round(seconds * self._rate) / self._rate
        if abs(seconds - on_grid) <= self._input:
            seconds = on_grid
        return round(seconds / self.output)


@contextmanager
def open_video_sink(source: VideoSource, temporary: Path, target: Path, settings: dict,
                    callback: Callback) -> Iterator[VideoSink]:
    """A sink encoding into `temporary` (which becomes `target`), in `target`'s format; closed on the way out."""
    av = require_av()
    output_format = OUTPUT_FORMATS[target.suffix.lower()]
    try:
        container = av.open(os.fspath(temporary), "w", container_options=output_format.container_options)
    except (av.FFmpegError, OSError) as error:
        raise cannot_write(target, _reason(error)) from None
    sink = VideoSink(container, source, output_format, settings, target, callback)
    try:
        yield sink
    finally:
        sink.close()


class VideoSink:
    """Encodes frames into an output container; its streams open with the first frame's size."""

    _BT709 = 1  # AVCOL_PRI/TRC/SPC_BT709: how the RGB frames are converted, so players convert back
    _LIMITED_RANGE = 1  # AVCOL_RANGE_MPEG, what every player expects of yuv420p

    def __init__(self, container: Any, source: VideoSource, output_format: OutputFormat, settings: dict,
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

    def write(self, image: np.ndarray, frame: Frame) -> None:
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

    def finish(self, *, complete: bool) -> Written:
        """Flush the encoder, write the rest of the audio (up to the video's end when stopped early)."""
        if self._stream is None:
            raise ImageError(f"{self._source.path}: no video frames could be decoded")
        with self._writing():
            self._container.mux(self._stream.encode(None))
        if self._audio is not None:
            self._audio.finish(None if complete else float(self._end))
        with self._writing():
            self._container.close()
        start = self._start if self._start is not None else Fraction(0)  # set with the first frame
        return Written(self._frames, self._source.rate, float(self._end - start),
                        (self._stream.width, self._stream.height), self._audio is not None)

    def close(self) -> None:
        """Release both files; after an error the output is discarded, so its errors are too."""
        if self._audio is not None:
            self._audio.close()
        with suppress(require_av().FFmpegError, OSError):  # a half-written output that atomic_path deletes
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
                                      self._target, self._callback, self._writing)

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
        av = require_av()
        pixels = to_uint8(image)
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
        """FFmpeg's errors while encoding or muxing (a full disk, say), as one line naming the output."""
        av = require_av()
        try:
            yield
        except (av.FFmpegError, OSError) as error:
            raise cannot_write(self._target, _reason(error)) from None


def _even(length: int) -> int:
    return length + length % 2


class _AudioTrack:
    """The input's first audio stream in the output, written in step with the video.

    It is read through a second demuxer of the same file, so its packets are written as soon
    as the video reaches their time, however the input interleaves them: the muxer then
    interleaves closely and nothing piles up in memory. Packets are copied when the output
    container takes the codec; otherwise decoded and re-encoded (PyAV's encoder resamples to
    what the codec needs). Reading fails as the input (`ImageError`), writing through the
    sink's `writing` guard (`OutputError`).
    """

    def __init__(self, path: Path, output: Any, fallback_codec: str, target: Path, callback: Callback,
                 writing: Callable[[], AbstractContextManager[None]]) -> None:
        self._path, self._target = path, target
        self._writing = writing
        self._input = _open_input(path)
        self._source = self._input.streams.audio[0]
        codec = self._source.codec_context.name
        self._copy = codec in output.supported_codecs
        with writing():
            if self._copy:
                self._stream = output.add_stream_from_template(self._source)
            else:
                self._stream = _audio_encoder(output, fallback_codec, self._source)
        if not self._copy:
            callback(MessageEvent(f"{target}: audio re-encoded from {codec} to {self._stream.codec_context.name}"))
        self._output = output
        self._packets = self._input.demux(self._source)
        self._pending: Any = None  # the first packet past the last `write_until`
        self._read, self._end = 0, 0.0  # packets with data read, and where the last one ends (s)

    def write_until(self, seconds: float | None) -> None:
        """Write the packets that start before `seconds`; all that are left when None."""
        while (packet := self._next_packet()) is not None:
            if seconds is not None and packet.dts is not None and _start(packet) >= seconds:
                self._pending = packet
                return
            self._write(packet)

    def finish(self, seconds: float | None) -> None:
        """Write the packets up to `seconds` (all when None) and what the encoder still holds; all of them
        read, the track is checked against its header, as the video is (`VideoSource._decoded`)."""
        self.write_until(seconds)
        if seconds is None:
            self._check_whole()
        if not self._copy:
            with self._writing():
                self._output.mux(self._stream.encode(None))

    def close(self) -> None:
        self._input.close()

    def _check_whole(self) -> None:
        """Refuse a track cut short: fewer packets than an MP4's index lists, or (Matroska, WebM) an end
        short of the duration its header states by more than an encoder's padding (AAC's ends 23 ms short)."""
        indexed = len(self._source.index_entries)
        if self._read < indexed:
            raise ImageError(f"{self._path}: the file is cut off (its index lists {indexed} audio packets, it "
                             f"holds {self._read})")
        stated = _stated_seconds(self._input, self._source)
        frame_size, rate = self._source.codec_context.frame_size or 0, self._source.codec_context.sample_rate or 0
        slack = max(_AUDIO_SLACK, 3 * frame_size / rate if rate else 0)
        if self._read and stated is not None and self._end < stated - slack:
            raise ImageError(f"{self._path}: the file is cut off (its header says its audio runs {stated:.2f} s, "
                             f"the audio ends at {self._end:.2f} s)")

    @contextmanager
    def _reading(self) -> Iterator[None]:
        av = require_av()
        try:
            yield
        except (av.FFmpegError, OSError) as error:
            raise ImageError(f"{self._path}: damaged audio data ({_reason(error)})") from None

    def _next_packet(self) -> Any:
        """The held-back packet if any, else the demuxer's next; None at the end."""
        packet, self._pending = self._pending, None
        if packet is not None:
            return packet
        with self._reading():
            packet = next(self._packets, None)
        if packet is not None and packet.size > 0:  # the last, empty packet only flushes the decoder
            self._read += 1
            if packet.pts is not None:
                self._end = max(self._end, float((packet.pts + (packet.duration or 0)) * packet.time_base))
        return packet

    def _write(self, packet: Any) -> None:
        if not self._copy:
            with self._reading():
                frames = packet.decode()  # the last, empty packet flushes the decoder
            for frame in frames:
                with self._writing():
                    self._output.mux(self._stream.encode(frame))
        elif packet.dts is not None:  # the demuxer's last packet is empty
            packet.stream = self._stream
            with self._writing():
                self._output.mux(packet)


def _start(packet: Any) -> float:
    return float((packet.pts if packet.pts is not None else packet.dts) * packet.time_base)


def _audio_encoder(output: Any, codec: str, source: Any) -> Any:
    """An encoder for `codec` at the source's rate (Opus only runs at 48 kHz), mono or stereo."""
    rate = 48_000 if codec == "libopus" else source.codec_context.sample_rate
    layout = "mono" if source.codec_context.channels == 1 else "stereo"
    return output.add_stream(codec, rate=rate, layout=layout)
