"""Gatys on a video (Ruder et al. 2016): each frame optimised from the previous result, moved along the motion.

Painting each frame of a clip on its own flickers: every optimisation finds other brush strokes.
Here frame 1 is a normal Gatys run; every later frame starts from the previous *result* warped
along the input's backward optical flow (`flow.motion`, `flow.warp`), with the current content
frame where a pixel was just uncovered, and the loss gains Ruder et al.'s temporal term,
`temporal_weight` · the mean over the pixels visible in both frames of (x − warped result)². Such a
frame starts close to its answer, so it gets `frame_steps` steps (fewer than `steps`) at the final
size only: coarse-to-fine would blur the start it was given. A scene cut (`flow.is_scene_cut`) or a
change of frame size starts the chain again with a full first-frame run.

Resumable: each finished frame is kept as a lossless 8-bit PNG, with the settings, in a hidden folder
beside the output (`.OUTPUT.frames`), so a run killed half-way continues from its last finished
frame when run again with the same settings; other settings are refused in one line naming the
folder. The chain always continues from the 8-bit frame, kept or just made, so a resumed run
computes exactly what an uninterrupted one would; a kept frame that no longer reads back as it was
written (emptied, damaged, another size) is painted again with the frames after it, which continued
from it, and a message says so. The folder is removed once the video is written,
and when the input turns out to be damaged (a rerun could not finish either); an interrupt, a kill
or any other failure leaves it for the next run (which also removes a killed run's half-written
video, atomic_path's temporary). The video itself is written atomically at the end
(video_av's sink: the source's frame timing, its audio), so an interrupted run leaves no partial
output; the settings record is `pipeline.settings_for`'s, stored as `apply` stores its own
(`video.read_video_settings` reads it).

Progress: the first frame's steps, then one `VideoProgressEvent` per frame (an ETA from the frames'
pace; frames kept from an earlier run are reported at once, in one event, so they do not skew it).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from . import flow, images, pixels, video_av
from .atomic import atomic_path, same_file, temporaries_of
from .config import INITS, StylizeConfig
from .devices import resolve_device
from .errors import ImageError, OutputError, UsageError
from .events import Callback, DoneEvent, Event, MessageEvent, StepEvent, StopRequested, VideoProgressEvent, ignore
from .locks import LockBusy, exclusive
from .optimize import stylize
from .pipeline import settings_for

__all__ = ["FramePainter", "is_video_path", "kept_frames_folder", "stylize_video_files", "temporal_loss"]

StrPath = str | os.PathLike[str]
_FRAME_NAME = "frame-{:06d}.png"


def is_video_path(path: StrPath) -> bool:
    """Whether `stylize` takes this content as a video: a video container's extension. (An animated
    GIF or WebP stays an image here, its first frame, as it always was for `stylize`.)"""
    return Path(path).suffix.lower() in video_av.VIDEO_EXTENSIONS


def kept_frames_folder(output: StrPath) -> Path:
    """The hidden folder beside `output` where a run keeps its finished frames until the video is written."""
    target = Path(output)
    return target.with_name(f".{target.name}.frames")


def temporal_loss(previous: torch.Tensor, visible: torch.Tensor,
                  weight: float) -> Callable[[torch.Tensor], torch.Tensor]:
    """Ruder et al.'s short-term temporal loss for `optimize.stylize`'s `extra_loss`: `weight` · the mean,
    over the visible pixels, of (x − previous)². `previous` is the last result warped into this frame
    (1, 3, H, W), `visible` (1, 1, H, W) in [0, 1] where the pixel was seen in the last frame."""
    count = visible.sum().clamp_min(1.0) * previous.shape[1]

    def loss(image: torch.Tensor) -> torch.Tensor:
        target, mask = previous.to(image.device), visible.to(image.device)
        return weight * (mask * (image - target).pow(2)).sum() / count.to(image.device)

    return loss


def stylize_video_files(
    content: StrPath,
    styles: Sequence[StrPath],
    output: StrPath,
    config: StylizeConfig,
    *,
    callback: Callback = ignore,
    max_pixels: int | None = None,
) -> dict:
    """Stylise every frame of the video `content` into the video `output`; returns the summary (the settings
    stored in the output, plus what was done: frames, frames resumed, seconds, audio).

    The output's long side is `config.size`. A bad input or setting is one `PainterlyError` line before any
    work; on any error or interrupt no output is written (see the module's notes for the kept frames). A
    callback raising `StopRequested` ends the clip at the frames finished so far; they are kept, so the same
    run continues later.
    """
    started = time.perf_counter()
    source_path, target = Path(content), Path(output)
    style_paths = [Path(path) for path in styles]
    init_path = None if config.init in INITS else Path(config.init)
    _check_request(source_path, target, [*style_paths, *([init_path] if init_path else [])])
    style_images = [images.load_image(path, max_pixels=max_pixels) for path in style_paths]
    init_image = None if init_path is None else images.load_image(init_path, max_pixels=max_pixels)
    settings = settings_for(config, content=source_path, styles=style_paths)
    _require_flow()
    flows = flow.estimator(config.flow, device=str(resolve_device(config.device)), callback=callback)
    with video_av.open_video_source(source_path) as source:
        if source.height and source.width:
            images.check_pixels(os.fspath(source_path), source.width, source.height, max_pixels)
        with _KeptFrames.open(target, settings, callback) as kept:
            painter = FramePainter(style_images, config, init_image, callback, flows=flows)
            try:
                with atomic_path(target) as temporary, video_av.open_video_sink(source, temporary, target, settings,
                                                                                callback) as sink:
                    run = _Run(painter, kept, callback, started, f"{source_path}", max_pixels)
                    stopped = run.stream(source, sink)
                    if run.done == 0:
                        raise UsageError(f"{target}: stopped before the first frame was finished; nothing written")
                    written = sink.finish(complete=not stopped)
            except ImageError:
                kept.remove()  # a damaged input: a rerun could not finish either
                raise
            except KeyboardInterrupt as interrupt:
                if kept.count:
                    interrupt.add_note(f"{kept.count} finished frame(s) kept in {kept.folder}; the same command "
                                       "continues from there")
                raise
            if not stopped:
                kept.remove()
    seconds = time.perf_counter() - started
    return {**settings, "output": os.fspath(target), "frames": written.frames, "resumed": run.resumed,
            "fps": float(written.fps), "size": list(written.size), "audio": written.audio,
            "seconds": round(seconds, 3), "stopped_early": stopped,
            "weights": painter.weights, "precision": painter.precision}


def _require_flow() -> None:
    """A missing OpenCV is one line before any work (flow.py imports it on first use)."""
    try:
        import cv2  # noqa: F401
    except ImportError:
        raise UsageError("stylize on a video needs OpenCV for the optical flow: "
                         "pip install 'painterly[flow]'") from None


def _check_request(source: Path, target: Path, inputs: Sequence[Path]) -> None:
    """Refuse before any work: a missing clip, an output that is not a video or is one of the inputs."""
    if not source.is_file():
        raise ImageError(f"{source}: no such file")
    if target.suffix.lower() not in video_av.WRITABLE_VIDEO_EXTENSIONS:
        raise UsageError(f"{target}: {source} is a video; write it as one of "
                         f"{', '.join(video_av.WRITABLE_VIDEO_EXTENSIONS)}")
    if any(same_file(path, target) for path in (source, *inputs)):
        raise ImageError(f"{target}: refusing to overwrite an input file")


# --- painting one frame -------------------------------------------------------------------------


class FramePainter:
    """Paints frame after frame: the first (and the first after a cut) by a plain Gatys run, each later
    one from the previous result warped along the motion, with the temporal term. The video pipeline's
    per-frame step, public for callers with frames in memory (the benchmark): `styles` are
    `pixels.to_tensor` images, and `paint` is called for each frame in order. `flows` finds the motion
    (`flow.estimator(config.flow)`; None: DIS)."""

    def __init__(self, styles: list[torch.Tensor], config: StylizeConfig, init_image: torch.Tensor | None,
                 callback: Callback, *, flows: flow.FlowEstimator | None = None) -> None:
        self.styles, self.config, self.init_image = styles, config, init_image
        self.flows = flows
        self.later = config.replace(steps=config.frame_steps_or_default(), multiscale="off")
        self.callback = callback
        self._messages: set[str] = set()  # each notice once, not once a frame
        self.weights, self.precision = "", ""

    def paint(self, current: np.ndarray, previous: tuple[np.ndarray, np.ndarray] | None) -> np.ndarray | None:
        """`current` (HxWx3 float32, at the output size) painted; `previous` is (the last input frame, its
        8-bit result as float), None to start a chain. None when a callback asked to stop."""
        content = pixels.to_tensor(current)
        if previous is None or not self._continues(previous[0], current):
            return self._run(content, self.config, self.init_image, None, show_steps=True)
        last_input, last_result = previous
        found = flow.motion(last_input, current, self.flows)
        warped = flow.warp(last_result, found.backward)
        visible = found.visible[..., None]
        start = visible * warped + (1.0 - visible) * current  # the just-uncovered pixels from the photo
        extra = None
        if self.config.temporal_weight > 0:
            mask = torch.from_numpy(np.ascontiguousarray(found.visible))[None, None]
            extra = temporal_loss(pixels.to_tensor(warped), mask, self.config.temporal_weight)
        return self._run(content, self.later, pixels.to_tensor(start.astype(np.float32)), extra, show_steps=False)

    @staticmethod
    def _continues(last_input: np.ndarray, current: np.ndarray) -> bool:
        if last_input.shape != current.shape:
            return False
        return not flow.is_scene_cut(flow.scene_thumbnail(last_input), flow.scene_thumbnail(current))

    def _run(self, content: torch.Tensor, config: StylizeConfig, init: torch.Tensor | None,
             extra: Callable[[torch.Tensor], torch.Tensor] | None, *, show_steps: bool) -> np.ndarray | None:
        done: list[DoneEvent] = []

        def relay(event: Event) -> None:
            if isinstance(event, DoneEvent):
                done.append(event)  # not passed on: it would end the clip's progress bar
            elif isinstance(event, MessageEvent):
                if event.text not in self._messages:
                    self._messages.add(event.text)
                    self.callback(event)
            elif not isinstance(event, StepEvent) or show_steps:
                self.callback(event)

        result = stylize(content, self.styles, config, init_image=init, callback=relay, extra_loss=extra)
        if done:
            self.weights, self.precision = done[-1].weights, done[-1].precision
            if done[-1].stopped_early:
                return None
        return pixels.to_array(result)


# --- the clip -----------------------------------------------------------------------------------


@dataclass
class _Run:
    """One clip: frames from the source, kept or painted, into the sink."""

    painter: FramePainter
    kept: _KeptFrames
    callback: Callback
    started: float
    shown: str  # the input, as messages name it
    max_pixels: int | None
    done: int = 0
    resumed: int = 0

    def stream(self, source: video_av.VideoSource, sink: video_av.VideoSink) -> bool:
        """Every frame, kept or painted, into `sink`; True when a callback asked to stop."""
        size = self.painter.config.size
        previous: tuple[np.ndarray, np.ndarray] | None = None
        painting_since: float | None = None
        painted = 0
        try:
            for frame in source.frames(self._frame_check()):
                current = pixels.resize_long_side(frame.image, size)
                index = self.done + 1
                result = self.kept.read(index, current.shape) if index <= self.kept.count else None
                if result is not None:
                    self.resumed = index
                else:
                    if painting_since is None:
                        painting_since = time.perf_counter()
                        if self.resumed:  # the kept frames in one event: the pace is measured from here on
                            self._progress(source, 0, painting_since)
                    painted_frame = self.painter.paint(current, previous)
                    if painted_frame is None:
                        return True
                    result = self.kept.write(index, painted_frame)
                    painted += 1
                sink.write(result, frame)
                self.done = index
                if painting_since is not None:
                    self._progress(source, painted, painting_since)
                previous = (current, result)
        except StopRequested:
            return True
        if painting_since is None and self.resumed:  # every frame had been kept: written at once
            self._progress(source, 0, time.perf_counter())
        return False

    def _progress(self, source: video_av.VideoSource, painted: int, since: float) -> None:
        now = time.perf_counter()
        fps = painted / (now - since) if painted and now > since else 0.0
        self.callback(VideoProgressEvent(self.done, source.total_frames, fps, now - self.started))

    def _frame_check(self) -> Callable[[int, int], None]:
        """Each frame's real size against the pixel limit (a frame can be larger than the header said)."""
        count = 0

        def check(height: int, width: int) -> None:
            nonlocal count
            count += 1
            images.check_pixels(f"{self.shown}: frame {count}", width, height, self.max_pixels)

        return check


# --- the kept frames ----------------------------------------------------------------------------


class _KeptFrames:
    """The finished frames of an unfinished run, as 8-bit PNGs with the settings, beside the output.

    Frame i is `frame-00000i.png`; frames count from 1 while their files follow on without a gap (a
    kill during a write leaves only atomic_path's temporary, which is ignored). Held under a lock, so
    that two runs into one output cannot interleave.
    """

    def __init__(self, folder: Path, settings: dict, callback: Callback = ignore) -> None:
        self.folder = folder
        self._settings = json.loads(json.dumps(settings))  # as it reads back from a file: lists, not tuples
        self._callback = callback
        self.count = self._count()

    @classmethod
    @contextmanager
    def open(cls, target: Path, settings: dict, callback: Callback = ignore) -> Iterator[_KeptFrames]:
        folder = kept_frames_folder(target)
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise OutputError(f"{folder}: cannot write ({error.strerror or error})") from None
        try:
            with exclusive(folder / ".lock", wait=False):
                kept = cls(folder, settings, callback)
                kept.check_settings(target)
                _remove_stale_temporaries(target)
                try:
                    yield kept
                finally:
                    if not kept.count:  # nothing finished: no folder left behind
                        kept.remove()
        except LockBusy as busy:
            by = f" (process {busy.holder})" if busy.holder else ""
            raise OutputError(f"{target}: another run{by} is writing this video; wait for it or stop it") from None

    def _count(self) -> int:
        count = 0
        while (self.folder / _FRAME_NAME.format(count + 1)).is_file():
            count += 1
        return count

    def check_settings(self, target: Path) -> None:
        """Refuse to continue frames made with other settings (or inputs); none kept: nothing to refuse."""
        if not self.count:
            return
        try:
            recorded = images.read_settings(self.folder / _FRAME_NAME.format(1)) or {}
        except ImageError as error:
            self._drop_from(1, error)
            return
        recorded.pop("frame", None)
        if recorded != self._settings:
            differ = sorted(_differences(recorded, self._settings)) or ["the settings"]
            raise UsageError(f"{target}: {self.count} frame(s) kept in {self.folder} were made with other "
                             f"settings ({', '.join(differ[:4])}{', …' if len(differ) > 4 else ''} differ); run "
                             f"it again as before to continue, or remove that folder to start afresh")

    def read(self, index: int, shape: tuple[int, ...]) -> np.ndarray | None:
        """Kept frame `index` as float, or None when it does not read back as an HxWx3 `shape` frame: it and
        the frames after it (each continued from the one before) are dropped, to be painted again."""
        path = self.folder / _FRAME_NAME.format(index)
        try:
            rgb, _ = images.read_array(path, dtype=np.uint8)
        except ImageError as error:
            self._drop_from(index, error)
            return None
        if rgb.shape != tuple(shape):
            self._drop_from(index, f"{path}: {rgb.shape[1]}x{rgb.shape[0]}, not the clip's "
                                   f"{shape[1]}x{shape[0]}")
            return None
        return pixels.to_float32(rgb)

    def _drop_from(self, index: int, why: object) -> None:
        for later in range(index, self.count + 1):
            with suppress(OSError):  # one left behind is overwritten when that frame is painted again
                (self.folder / _FRAME_NAME.format(later)).unlink()
        after = self.count - index
        self._callback(MessageEvent(f"{why}; painting frame {index} kept from an earlier run again"
                                    + (f", and the {after} kept after it" if after else "")))
        self.count = index - 1

    def write(self, index: int, image: np.ndarray) -> np.ndarray:
        """Keep frame `index`; returns it as the chain continues from it: its 8-bit values, as float."""
        eight_bit = pixels.to_uint8(image)
        images.save_image(eight_bit, self.folder / _FRAME_NAME.format(index),
                          settings={**self._settings, "frame": index})
        self.count = max(self.count, index)
        return pixels.to_float32(eight_bit)

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def _remove_stale_temporaries(target: Path) -> None:
    """The half-written videos of killed runs into `target` (atomic_path's temporaries, which a SIGKILL
    leaves): called holding the lock, so no live run of this output is writing one."""
    for stale in temporaries_of(target):
        with suppress(OSError):
            stale.unlink()


def _differences(recorded: object, wanted: object, prefix: str = "") -> Iterator[str]:
    """The dotted names of the fields two settings records disagree on."""
    if isinstance(recorded, dict) and isinstance(wanted, dict):
        for key in sorted(set(recorded) | set(wanted)):
            yield from _differences(recorded.get(key), wanted.get(key), f"{prefix}{key}.")
    elif recorded != wanted:
        yield prefix.rstrip(".") or "the settings"
