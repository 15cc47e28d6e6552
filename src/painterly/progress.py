"""Rendering library events on a terminal: a progress bar and notices on stderr."""

from __future__ import annotations

import sys

from tqdm import tqdm

from . import events


class ProgressPrinter:
    """A callback that draws a bar with position, loss and ETA; silent when quiet or not a terminal.

    Warnings are printed even when quiet: they say something about the result.
    """

    def __init__(self, *, quiet: bool = False, stream=None) -> None:
        self.stream = stream or sys.stderr
        self.quiet = quiet
        self.show_bar = not quiet and self.stream.isatty()
        self.bar: tqdm | None = None
        self._phase: object = None

    def __enter__(self) -> ProgressPrinter:
        return self

    def __exit__(self, *exc) -> None:
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
        elif self.show_bar:
            self._draw(event)

    def _draw(self, event: events.Event) -> None:
        if isinstance(event, events.StepEvent):
            h, w = event.size
            self._advance(("scale", event.scale), f"scale {event.scale}/{event.num_scales} {w}x{h}",
                          event.total_steps, event.step, "step", loss=f"{event.loss:.4g}")
        elif isinstance(event, events.TrainStepEvent):
            self._advance("train", f"epoch {event.epoch}/{event.epochs}", event.total_steps, event.step, "step",
                          loss=f"{event.loss:.4g}", img_s=f"{event.images_per_s:.1f}")
        elif isinstance(event, events.ApplyEvent):
            self._advance("apply", "stylizing", event.total, event.done, "file")
        elif isinstance(event, events.VideoProgressEvent):
            self._advance("video", "frames", event.total_frames, event.frames_done, "frame")
        elif isinstance(event, events.DownloadEvent):
            name = event.url.rstrip("/").rsplit("/", 1)[-1]
            self._advance(("download", event.url), f"downloading {name}", event.total, event.done, "B",
                          unit_scale=True)

    def _advance(self, phase: object, desc: str, total: int | None, position: int, unit: str, *,
                 unit_scale: bool = False, **postfix) -> None:
        if self._phase != phase or self.bar is None:
            self.close()
            self._phase = phase
            self.bar = tqdm(total=total, desc=desc, file=self.stream, unit=unit, unit_scale=unit_scale, leave=True)
        bar = self.bar
        bar.set_description(desc, refresh=False)
        if postfix:
            bar.set_postfix(postfix, refresh=False)
        bar.update(position - bar.n)

    def _write(self, text: str) -> None:
        if self.bar is not None:
            self.bar.write(text, file=self.stream)
        else:
            print(text, file=self.stream)
