"""Rendering library events on a terminal: a progress bar and notices on stderr."""

from __future__ import annotations

import sys

from tqdm import tqdm

from .events import DoneEvent, Event, MessageEvent, StepEvent


class ProgressPrinter:
    """A callback that draws step, scale, loss and ETA; silent when quiet or not a terminal."""

    def __init__(self, *, quiet: bool = False, stream=None) -> None:
        self.stream = stream or sys.stderr
        self.quiet = quiet
        self.show_bar = not quiet and self.stream.isatty()
        self.bar: tqdm | None = None
        self._scale = None

    def __enter__(self) -> ProgressPrinter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def __call__(self, event: Event) -> None:
        if isinstance(event, MessageEvent):
            if not self.quiet or event.level == "warning":
                self._write(f"painterly: {event.level}: {event.text}")
        elif isinstance(event, StepEvent) and self.show_bar:
            self._step(event)
        elif isinstance(event, DoneEvent):
            self.close()

    def _step(self, event: StepEvent) -> None:
        if self._scale != event.scale:
            self.close()
            self._scale = event.scale
            h, w = event.size
            desc = f"scale {event.scale}/{event.num_scales} {w}x{h}"
            self.bar = tqdm(total=event.total_steps, desc=desc, file=self.stream, unit="step", leave=True)
        self.bar.set_postfix(loss=f"{event.loss:.4g}", refresh=False)
        self.bar.update(event.step - self.bar.n)

    def _write(self, text: str) -> None:
        if self.bar is not None:
            self.bar.write(text, file=self.stream)
        else:
            print(text, file=self.stream)
