"""Rendering library events for people: a progress bar on a terminal, plain lines anywhere else.

On a terminal tqdm draws a bar. Off one (a log file, CI, a batch scheduler) a bar is either noise
or nothing at all, so a plain line is printed every `interval` seconds instead, as neural-style's
-print_iter does: the position, the loss, the seconds per step and the time left, plus a line when
each phase ends. $PAINTERLY_PROGRESS_SECONDS sets the interval (default 30; 0 prints every event).
`quiet` silences both; warnings are printed regardless.
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TextIO

from tqdm import tqdm

from . import events
from .errors import UsageError

PROGRESS_SECONDS_ENV = "PAINTERLY_PROGRESS_SECONDS"
DEFAULT_INTERVAL = 30.0  # seconds between plain progress lines when stderr is not a terminal


def interval_from_env() -> float:
    """$PAINTERLY_PROGRESS_SECONDS, or the default; a value that is not a number of seconds is refused."""
    raw = os.environ.get(PROGRESS_SECONDS_ENV, "").strip()
    if not raw:
        return DEFAULT_INTERVAL
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value >= 0):
        raise UsageError(f"{PROGRESS_SECONDS_ENV} must be a number of seconds (0 or more), got {raw!r}")
    return value


@dataclass(frozen=True)
class _Position:
    """Where a run stands, as the bar and the plain lines both show it."""

    phase: object  # a new phase starts a new bar, and a new measure of the pace
    desc: str  # the bar's description
    done: int
    total: int | None
    unit: str  # "step", "file", "frame" or "B"
    postfix: dict[str, str] = field(default_factory=dict)


def _position(event: events.Event) -> _Position | None:
    if isinstance(event, events.StepEvent):
        h, w = event.size
        return _Position(("scale", event.scale), f"scale {event.scale}/{event.num_scales} {w}x{h}", event.step,
                         event.total_steps, "step", {"loss": f"{event.loss:.4g}"})
    if isinstance(event, events.TrainStepEvent):
        return _Position("train", f"epoch {event.epoch}/{event.epochs}", event.step, event.total_steps, "step",
                         {"loss": f"{event.loss:.4g}", "img_s": f"{event.images_per_s:.1f}"})
    if isinstance(event, events.ApplyEvent):
        return _Position("apply", "stylizing", event.done, event.total, "file")
    if isinstance(event, events.VideoProgressEvent):
        return _Position("video", "frames", event.frames_done, event.total_frames, "frame")
    if isinstance(event, events.DownloadEvent):
        name = event.url.rstrip("/").rsplit("/", 1)[-1]
        return _Position(("download", event.url), f"downloading {name}", event.done, event.total, "B")
    return None


@dataclass
class _Pace:
    """The first event of a phase: seconds per unit are measured from it."""

    phase: object
    time: float
    done: int


def duration(seconds: float) -> str:
    """37s, 4m12s, 1h02m: short enough for a progress line."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def plain_line(event: events.Event, seconds_per_unit: float | None) -> str | None:
    """The plain progress line for `event`, given the pace measured so far (None: not known yet)."""
    position = _position(event)
    if position is None:
        return None
    done, total, unit = position.done, position.total, position.unit
    left = None  # the time left: not shown once the phase is done
    if total is not None and done < total and seconds_per_unit is not None:
        left = (total - done) * seconds_per_unit
    if unit == "B":
        amount = f"{done / 1e6:.1f}/{total / 1e6:.1f} MB" if total else f"{done / 1e6:.1f} MB"
        pace = f"{1 / seconds_per_unit / 1e6:.1f} MB/s" if seconds_per_unit else None
        parts = [f"{position.desc}: {amount}", pace]
    elif unit == "frame":
        pace = f"{1 / seconds_per_unit:.1f} frames/s" if seconds_per_unit else None
        parts = [f"frame {done}/{total if total is not None else '?'}", pace]
    else:
        pace = f"{seconds_per_unit:.2f} s/{unit}" if seconds_per_unit is not None else None
        where = f" ({position.desc})" if unit == "step" else ""
        parts = [f"{unit} {done}/{total}{where}", *(f"{key.replace('_', '/')} {value}"
                                                    for key, value in position.postfix.items()), pace]
    if left is not None:
        parts.append(f"ETA {duration(left)}")
    return "painterly: " + ", ".join(part for part in parts if part)


class ProgressPrinter:
    """A callback that shows progress: a bar on a terminal, a plain line every `interval` seconds
    elsewhere (and one when each phase ends); nothing when quiet.

    Warnings are printed even when quiet: they say something about the result. `interval`
    defaults to $PAINTERLY_PROGRESS_SECONDS or 30 s; `clock` is there for tests.
    """

    def __init__(self, *, quiet: bool = False, stream: TextIO | None = None, interval: float | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.stream = stream or sys.stderr
        self.quiet = quiet
        on_terminal = bool(getattr(self.stream, "isatty", lambda: False)())
        self.show_bar = not quiet and on_terminal
        self.show_lines = not quiet and not on_terminal
        self.interval = interval_from_env() if interval is None else interval
        self._clock = clock
        self._last_line = clock()  # the first line comes one interval after the start
        self._pace: _Pace | None = None
        self.bar: tqdm | None = None
        self._phase: object = None

    def __enter__(self) -> ProgressPrinter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
            self._phase = None

    def __call__(self, event: events.Event) -> None:
        if isinstance(event, events.MessageEvent):
            if not self.quiet or event.level == "warning":
                self._write(f"painterly: {event.level}: {event.text}")
        elif isinstance(event, events.DoneEvent):
            self.close()
            self._pace = None
        elif self.show_bar:
            self._draw(event)
        elif self.show_lines:
            self._line(event)

    def _line(self, event: events.Event) -> None:
        position = _position(event)
        if position is None:
            return
        now = self._clock()
        if self._pace is None or self._pace.phase != position.phase:
            self._pace = _Pace(position.phase, now, position.done)
        pace = self._pace
        finished = position.total is not None and position.done >= position.total
        if not finished and now - self._last_line < self.interval:
            return
        units = position.done - pace.done
        seconds_per_unit = (now - pace.time) / units if units > 0 else None
        text = plain_line(event, seconds_per_unit)
        if text is not None:
            self._last_line = now
            self._write(text)

    def _draw(self, event: events.Event) -> None:
        position = _position(event)
        if position is None:
            return
        if self._phase != position.phase or self.bar is None:
            self.close()
            self._phase = position.phase
            self.bar = tqdm(total=position.total, desc=position.desc, file=self.stream, unit=position.unit,
                            unit_scale=position.unit == "B", leave=True)
        bar = self.bar
        bar.set_description(position.desc, refresh=False)
        if position.postfix:
            bar.set_postfix(position.postfix, refresh=False)
        bar.update(position.done - bar.n)

    def _write(self, text: str) -> None:
        if self.bar is not None:
            self.bar.write(text, file=self.stream)
        else:
            print(text, file=self.stream, flush=True)
