"""Gatys jobs: ReferenceGatys's Adam steps, painterly's steps, the reference's loss after N steps,
and painterly's time to reach it.

Both implementations get the same images, the same random VGG-19 (seed 0) and the same
content/style layers and weights (StylizeConfig's defaults), so only the way the loss is
computed differs.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from painterly.config import StylizeConfig
from painterly.events import Callback, Event, StepEvent, StopRequested
from painterly.optimize import stylize
from painterly.pixels import to_tensor
from painterly.weights import random_state_dict

from .inputs import SEED, content_image, style_image
from .measure import ConvFlops, StepClock, time_calls
from .reference import ReferenceGatys

WARMUP_STEPS = 2  # painterly's first steps compute the targets and start L-BFGS's history: not timed


def config(size: int, steps: int, **changes: object) -> StylizeConfig:
    """StylizeConfig's defaults but for what a benchmark must fix: size, steps, random VGG (seed 0), CPU."""
    return StylizeConfig(size=size, steps=steps, vgg_weights="random", seed=SEED, device="cpu", **changes)


def images(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Content and style as (1,3,H,W) tensors, both already at long side `size`, so neither
    implementation resizes anything."""
    return to_tensor(content_image(size)), to_tensor(style_image(size))


def reference(size: int, frozen: bool = False) -> ReferenceGatys:
    """ReferenceGatys set up like painterly's defaults, with the learning rate painterly's Adam uses."""
    settings = config(size, 1, optimizer="adam")
    content, style = images(size)
    return ReferenceGatys(
        random_state_dict("vgg19", seed=SEED), content, style,
        content_layers=settings.content_layers, style_layers=settings.layer_weights(),
        content_weight=settings.content_weight, style_weight=settings.style_weight,
        tv_weight=settings.tv_weight, lr=settings.learning_rate, freeze_vgg=frozen,
    )


def reference_steps(size: int, steps: int, frozen: bool = False) -> dict:
    """`steps` ReferenceGatys steps; the first is a warm-up, the others are timed."""
    gatys = reference(size, frozen)
    with ConvFlops() as counter:
        timing = time_calls(gatys.step, steps - 1, counter)
    return timing.summary()


def painterly_steps(size: int, steps: int, precision: str = "auto") -> dict:
    """`steps` steps of `stylize` with default settings; per-step times from StepEvent.elapsed after
    the first WARMUP_STEPS.

    One scale, so that every step is at `size` (the default "auto" is one scale up to 512 px anyway).
    """
    content, style = images(size)
    settings = config(size, steps, multiscale="off", precision=precision)
    with ConvFlops() as counter:
        clock = StepClock(counter, skip=WARMUP_STEPS)
        stylize(content, [style], settings, callback=_on_steps(lambda event: clock.tick(event.elapsed)))
    return clock.timing.summary()


def adam_target_loss(size: int, steps: int) -> dict:
    """The loss ReferenceGatys reaches at its step `steps`, computed by painterly's engine running the
    same algorithm: Adam at the same learning rate, content init, fp32, one scale, and the same
    loss functions (the reference calls painterly's). Hundreds of reference steps take an hour
    here; the test suite checks that the two agree step by step.

    Like ReferenceGatys.step(), a StepEvent's loss is that of the image before the step's update.
    """
    content, style = images(size)
    losses: list[float] = []
    settings = config(size, steps, optimizer="adam", precision="fp32", multiscale="off", init="content")
    start = time.perf_counter()
    stylize(content, [style], settings, callback=_on_steps(lambda event: losses.append(event.loss)))
    return {"loss": losses[-1], "losses": losses, "steps": steps, "seconds": time.perf_counter() - start}


def painterly_time_to_quality(size: int, steps: int, target: float, cap_s: float) -> dict:
    """Wall time from calling `stylize` with its best settings until the final scale's loss is at most
    `target`: StylizeConfig's defaults (L-BFGS, content init, precision "auto") coarse-to-fine from
    size/2, with `steps` steps at the final scale and the default third of them at the coarse one.

    Gives up at `cap_s` seconds. L-BFGS does not clamp the image between steps, so its loss is
    that of the unclamped image; the output is clamped at the end. The loss compared is the
    one the run computes (in bf16 autocast where that is the default).
    """
    content, style = images(size)
    settings = config(size, steps, multiscale="on", min_scale=size // 2)
    watch = _UntilTarget(target, cap_s)
    with ConvFlops() as counter:
        stylize(content, [style], settings, callback=watch)
    return {
        "seconds": watch.reached_at, "reached": watch.reached_at is not None, "steps": watch.steps,
        "final_scale_steps": watch.final_steps, "loss": watch.loss, "flops": counter.total,
        "scales": settings.scales(), "cap_s": cap_s,
    }


def precision_drift(size: int, steps: int, optimizer: str) -> dict:
    """How far bf16 autocast's loss curve is from fp32's, step by step, next to how far fp32's
    own curve moves when the photo moves by 1e-6 (far below one 8-bit level): the yardstick for
    "within 2 % of fp32 at the same step" on an optimiser whose path is itself that sensitive.
    """
    content, style = images(size)
    nudged = (content + 1e-6 * torch.randn(content.shape, generator=torch.Generator().manual_seed(SEED))).clamp(0, 1)
    curves = {}
    for name, photo, precision in (("fp32", content, "fp32"), ("bf16", content, "bf16"),
                                   ("fp32_nudged", nudged, "fp32")):
        losses: list[float] = []
        settings = config(size, steps, optimizer=optimizer, precision=precision, multiscale="off")
        stylize(photo, [style], settings, callback=_on_steps(lambda event, into=losses: into.append(event.loss)))
        curves[name] = losses
    return {"curves": curves, "bf16": _drift(curves["fp32"], curves["bf16"]),
            "nudged": _drift(curves["fp32"], curves["fp32_nudged"])}


def _drift(base: list[float], other: list[float]) -> dict:
    """Relative differences step by step: the largest (and its 1-based step) and the last."""
    gaps = [abs(b - a) / abs(a) for a, b in zip(base, other, strict=True)]
    worst = max(range(len(gaps)), key=gaps.__getitem__)
    return {"max": gaps[worst], "max_step": worst + 1, "last": gaps[-1]}


@dataclass
class _UntilTarget:
    """A stylize callback that stops the run once the final scale's loss is at most `target`, or at `cap_s`."""

    target: float
    cap_s: float
    start: float = field(default_factory=time.perf_counter)
    steps: int = 0
    final_steps: int = 0
    loss: float | None = None
    reached_at: float | None = None

    def __call__(self, event: Event) -> None:
        if not isinstance(event, StepEvent):
            return
        now = time.perf_counter() - self.start
        self.steps += 1
        if event.scale == event.num_scales:
            self.final_steps += 1
            self.loss = event.loss
            if event.loss <= self.target:
                self.reached_at = now
                raise StopRequested
        if now > self.cap_s:
            raise StopRequested


def _on_steps(handle: Callable[[StepEvent], object]) -> Callback:
    """A stylize callback passing only StepEvents to `handle` (random-weights warnings are expected here)."""

    def callback(event: Event) -> None:
        if isinstance(event, StepEvent):
            handle(event)

    return callback
