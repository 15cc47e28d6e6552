"""Progress events: the library reports, front-ends decide how to show them.

A callback receives each event. It may raise `StopRequested` to end the run
early; the caller then gets the current result instead of an error (the web
UI's stop button, a time budget).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class StopRequested(Exception):
    """Raised by a callback to stop a run and keep what it has so far."""


@dataclass
class StepEvent:
    """One optimisation step of `stylize`.

    `image` is the current image (1, 3, H, W) in [0, 1], detached; copy it if
    you keep it, the next step changes it.
    """

    step: int  # 1-based, within the current scale
    total_steps: int  # steps at this scale
    scale: int  # 1-based scale index
    num_scales: int
    size: tuple[int, int]  # (height, width) at this scale
    losses: dict[str, float]
    elapsed: float  # seconds since the run began
    image: Any = field(repr=False, default=None)

    @property
    def loss(self) -> float:
        return self.losses["total"]


@dataclass
class MessageEvent:
    """A notice the user should see (a warning, a fallback taken)."""

    text: str
    level: str = "info"  # "info" or "warning"


@dataclass
class DoneEvent:
    """The end of a run: what was done, for summaries (`--json`) and metadata."""

    steps: int  # optimiser steps taken over all scales
    seconds: float
    losses: dict[str, float]  # of the last step
    weights: str  # where the VGG weights came from
    stopped_early: bool = False
    precision: str = "fp32"  # what the encoder computed in, "auto" resolved


@dataclass
class TrainStepEvent:
    """One optimiser step of `train`: enough for a progress bar with loss and ETA."""

    step: int  # 1-based, counted over the whole run (resumed runs continue the count)
    total_steps: int
    epoch: int  # 1-based
    epochs: int  # epochs the run will touch
    losses: dict[str, float]  # averaged over processes under torchrun
    lr: float
    images_per_s: float  # over all processes
    elapsed: float  # seconds of training, including the runs this one resumed

    @property
    def loss(self) -> float:
        return self.losses["total"]


@dataclass
class CheckpointEvent:
    """A checkpoint was written; `train(..., resume=True)` continues from it."""

    step: int
    path: Path


@dataclass
class ApplyEvent:
    """One input of `apply_files` finished (written or failed): enough for a progress bar."""

    done: int  # inputs finished so far, this one included
    total: int
    path: str  # the input, as given ("-" for stdin)


@dataclass
class VideoProgressEvent:
    """One batch of video frames written by `stylize_video`: enough for a progress bar with ETA."""

    frames_done: int
    total_frames: int | None  # from the container's header; None when it does not say
    fps: float  # frames stylised per second so far (throughput, not the clip's frame rate)
    elapsed: float  # seconds since the run began


@dataclass
class DownloadEvent:
    """Bytes of a download received so far (VGG weights): enough for a progress bar."""

    url: str
    done: int  # bytes received so far; 0 when the transfer starts
    total: int | None  # from Content-Length; None when the server does not say


Event = (StepEvent | MessageEvent | DoneEvent | TrainStepEvent | CheckpointEvent | ApplyEvent | VideoProgressEvent
         | DownloadEvent)
Callback = Callable[[Event], None]


def ignore(_event: Event) -> None:
    """The default callback: the library never prints."""
