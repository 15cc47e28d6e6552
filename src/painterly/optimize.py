"""Gatys et al. (2015): optimise an image's pixels against VGG content and style targets.

Departures from the paper are listed in docs/differences.md; the ones that
live here: coarse-to-fine scales for large sizes, colour preservation, and
starting from the content photo instead of white noise.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence

import torch

from . import color, pixels
from .config import INITS, StylizeConfig
from .devices import autocast_dtype, out_of_memory_guard, precision_name, resolve_device
from .errors import NumericalError, UsageError
from .events import Callback, DoneEvent, StepEvent, StopRequested, ignore
from .features import VGGFeatures, build_perceptual_loss
from .losses import LossTerms, normalised_blend


def stylize(
    content: torch.Tensor,
    styles: Sequence[torch.Tensor],
    config: StylizeConfig | None = None,
    *,
    init_image: torch.Tensor | None = None,
    callback: Callback = ignore,
    extra_loss: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> torch.Tensor:
    """Paint `content` (1, 3, H, W) in the style of `styles`; returns (1, 3, h, w) in [0, 1] on the CPU.

    The output's long side is `config.size`. The optimisation starts from `init_image` (1, 3, H', W'),
    resized to the content's size, when one is given, else from what `config.init` names ("content",
    "noise" or "style"); a `config.init` that is an image path is read by the caller (`stylize_files`
    does), since tensors, not files, come in here. Progress goes to `callback`, which may raise
    `StopRequested` to keep the image reached so far. Raises `NumericalError` (carrying the last good
    image) if the loss stops being finite, and `PainterlyError` on running out of memory.

    `extra_loss(image)`, when given, is added to the loss at every evaluation (the image as optimised,
    (1, 3, h, w) on the device) and reported as "extra": the video path's temporal term (gatys_video.py).
    """
    config = config or StylizeConfig()
    normalised_blend(config.style_blend, len(styles))  # a count mismatch is refused before any work
    if init_image is None and config.init not in INITS:
        raise UsageError(f"init {config.init!r} is an image file: load it and pass it as init_image "
                         "(stylize_files does)")
    device = resolve_device(config.device)
    with out_of_memory_guard(f"stylizing at --size {config.size}", device):
        return _Run(content, list(styles), config, device, callback, init_image, extra_loss).run()


class _Run:
    """One stylisation: the encoder, the loss and the image being optimised."""

    def __init__(self, content: torch.Tensor, styles: list[torch.Tensor], config: StylizeConfig,
                 device: torch.device, callback: Callback, init_image: torch.Tensor | None,
                 extra_loss: Callable[[torch.Tensor], torch.Tensor] | None = None) -> None:
        self.config, self.device, self.callback = config, device, callback
        self.extra_loss = extra_loss
        self.content = content.detach().float().to(device)
        if config.preserve_color == "histogram":
            styles = [color.match_color(style, content) for style in styles]
        self.styles = [style.detach().float().to(device) for style in styles]
        self.init_image = None if init_image is None else init_image.detach().float().to(device)
        self.generator = torch.Generator().manual_seed(config.seed)
        torch.manual_seed(config.seed)
        # "auto" keeps L-BFGS in fp32: in bf16 its loss curve left fp32's by far more than 2 % in the
        # first steps (gatys-precision in docs/benchmarks.md); Adam's stays within 0.5 % at every step.
        autocast = autocast_dtype(config.precision, device, auto_bf16=config.optimizer == "adam",
                                  callback=callback)
        self.loss = build_perceptual_loss(config, device, autocast=autocast, channels_last=True, callback=callback)
        encoder = self.loss.encoder
        assert isinstance(encoder, VGGFeatures)
        self.encoder = encoder
        self.start = time.perf_counter()
        self.steps_done = 0
        self.last_losses: dict[str, float] = {}

    def run(self) -> torch.Tensor:
        scales = self.config.scales()
        image: torch.Tensor | None = None
        stopped = False
        for index, long_side in enumerate(scales, start=1):
            content = self._fit(pixels.resize_long_side(self.content, long_side))
            image = self._initial(content) if image is None else pixels.resize_to(image, *content.shape[-2:])
            style_side = max(1, round(long_side * self.config.style_scale))
            self.loss.set_style([self._fit(pixels.resize_long_side(s, style_side), "style") for s in self.styles],
                                self.config.style_blend)
            if self.loss.content_layers:
                self.loss.set_content(content)
            image, stopped = self._optimise(image, index, len(scales))
            if stopped:
                break
        assert image is not None  # scales() is never empty
        out = image.clamp(0, 1)
        if self.config.preserve_color == "luminance":
            out = color.transfer_luminance(out, pixels.resize_to(self.content, *out.shape[-2:]))
        self.callback(DoneEvent(self.steps_done, time.perf_counter() - self.start, self.last_losses,
                                self.encoder.weights_description, stopped, precision_name(self.encoder.autocast)))
        return out.detach().cpu()

    def _fit(self, image: torch.Tensor, what: str = "content") -> torch.Tensor:
        """Refuse sizes at which the deepest VGG layer would have no pixels left."""
        need = self.encoder.min_side
        if min(image.shape[-2:]) < need:
            h, w = image.shape[-2:]
            raise UsageError(
                f"the {what} image is {w}x{h} at this scale; the layers used need at least {need} pixels "
                f"on each side (raise --size, --style-scale or --min-scale)"
            )
        return image

    def _initial(self, content: torch.Tensor) -> torch.Tensor:
        init = self.config.init
        if self.init_image is not None:
            return pixels.resize_to(self.init_image, *content.shape[-2:])
        if init == "content":
            return content.clone()
        if init == "noise":
            noise = torch.rand(content.shape, generator=self.generator)
            return noise.to(self.device)
        return pixels.resize_to(self.styles[0], *content.shape[-2:])  # "style"

    def _optimise(self, image: torch.Tensor, scale: int, num_scales: int) -> tuple[torch.Tensor, bool]:
        config = self.config
        x = image.detach().clone().requires_grad_(True)
        optimizer: torch.optim.Optimizer
        if config.optimizer == "lbfgs":
            # One iteration per step() call so that progress, NaN checks and stopping
            # happen between iterations; the curvature history persists in the state.
            # The default tolerances stop L-BFGS at once on losses of order 1: disabled.
            optimizer = torch.optim.LBFGS([x], lr=config.learning_rate, max_iter=1, history_size=50,
                                          tolerance_grad=-1, tolerance_change=-1)
        else:
            optimizer = torch.optim.Adam([x], lr=config.learning_rate)
        last_good = x.detach().clone()
        terms: dict[str, LossTerms] = {}
        extras: dict[str, torch.Tensor] = {}

        def closure() -> torch.Tensor:
            optimizer.zero_grad(set_to_none=True)
            loss = self.loss(x)
            total = loss.total
            if self.extra_loss is not None:
                extras["extra"] = self.extra_loss(x)
                total = total + extras["extra"]
            total.backward()
            terms["losses"] = loss
            return total

        steps = config.steps_at(scale, num_scales)
        for step in range(1, steps + 1):
            loss = float(optimizer.step(closure).detach())
            if not math.isfinite(loss) or not torch.isfinite(x).all():
                raise NumericalError(
                    f"the loss became {loss} at step {step}; kept the image from the step before "
                    f"(try a lower --lr, --optimizer adam, or smaller weights)",
                    image=last_good.clamp(0, 1).cpu(), step=step,
                )
            if config.optimizer == "adam":
                with torch.no_grad():
                    x.clamp_(0, 1)
            last_good = x.detach().clone()
            self.steps_done += 1
            self.last_losses = terms["losses"].as_floats()
            if extras:
                self.last_losses["extra"] = float(extras["extra"].detach())
                self.last_losses["total"] += self.last_losses["extra"]
            want_image = config.save_every and step % config.save_every == 0
            height, width = x.shape[-2:]
            event = StepEvent(step, steps, scale, num_scales, (height, width), self.last_losses,
                              time.perf_counter() - self.start, last_good.clamp(0, 1) if want_image else None)
            try:
                self.callback(event)
            except StopRequested:
                return last_good, True
        return last_good, False
