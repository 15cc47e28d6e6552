"""Gatys et al. (2015): optimise an image's pixels against VGG content and style targets.

Departures from the paper are listed in docs/differences.md; the ones that
live here: coarse-to-fine scales for large sizes, colour preservation, and
starting from the content photo instead of white noise.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from . import color, images
from .config import StylizeConfig
from .devices import autocast_dtype, is_out_of_memory, out_of_memory_error, precision_name, resolve_device
from .errors import NumericalError, UsageError
from .events import Callback, DoneEvent, MessageEvent, StepEvent, StopRequested, ignore
from .features import VGGFeatures
from .losses import PerceptualLoss, normalised_blend
from .weights import RANDOM_WARNING


def stylize(
    content: torch.Tensor,
    styles: Sequence[torch.Tensor],
    config: StylizeConfig | None = None,
    *,
    callback: Callback = ignore,
) -> torch.Tensor:
    """Paint `content` (1, 3, H, W) in the style of `styles`; returns (1, 3, h, w) in [0, 1] on the CPU.

    The output's long side is `config.size`. Progress goes to `callback`,
    which may raise `StopRequested` to keep the image reached so far.
    Raises `NumericalError` (carrying the last good image) if the loss stops
    being finite, and `PainterlyError` on running out of memory.
    """
    config = config or StylizeConfig()
    normalised_blend(config.style_blend, len(styles))  # a count mismatch is refused before any work
    device = resolve_device(config.device)
    try:
        return _Run(content, list(styles), config, device, callback).run()
    except RuntimeError as error:
        if is_out_of_memory(error):
            raise out_of_memory_error(f"stylizing at --size {config.size}", device) from None
        raise


class _Run:
    """One stylisation: the encoder, the loss and the image being optimised."""

    def __init__(self, content, styles, config: StylizeConfig, device, callback: Callback) -> None:
        self.config, self.device, self.callback = config, device, callback
        self.content = content.detach().float().to(device)
        if config.preserve_color == "histogram":
            styles = [color.match_color(style, content) for style in styles]
        self.styles = [style.detach().float().to(device) for style in styles]
        self.generator = torch.Generator().manual_seed(config.seed)
        torch.manual_seed(config.seed)
        self.encoder = VGGFeatures(
            list(dict.fromkeys(config.content_layers + config.style_layers)),
            arch=config.vgg,
            weights=config.vgg_weights,
            pooling=config.pooling,
            seed=config.seed,
        ).to(device)
        # "auto" keeps L-BFGS in fp32: in bf16 its loss curve left fp32's by far more than 2 % in the
        # first steps (gatys-precision in docs/benchmarks.md); Adam's stays within 0.5 % at every step.
        autocast = autocast_dtype(config.precision, device, auto_bf16=config.optimizer == "adam")
        self.encoder.set_speed(autocast=autocast, channels_last=True)
        if self.encoder.weights_description.startswith("random"):
            callback(MessageEvent(RANDOM_WARNING, "warning"))
        self.loss = PerceptualLoss(
            self.encoder,
            config.content_layers if config.content_weight > 0 else (),
            config.layer_weights(),
            content_weight=config.content_weight,
            style_weight=config.style_weight,
            tv_weight=config.tv_weight,
            normalisation=config.loss_normalisation,
        )
        self.start = time.perf_counter()
        self.steps_done = 0
        self.last_losses: dict[str, float] = {}

    def run(self) -> torch.Tensor:
        scales = self.config.scales()
        image = None
        stopped = False
        for index, long_side in enumerate(scales, start=1):
            content = self._fit(images.resize_long_side(self.content, long_side))
            image = self._initial(content) if image is None else images.resize_to(image, *content.shape[-2:])
            style_side = max(1, round(long_side * self.config.style_scale))
            self.loss.set_style([self._fit(images.resize_long_side(s, style_side), "style") for s in self.styles],
                                self.config.style_blend)
            if self.loss.content_layers:
                self.loss.set_content(content)
            image, stopped = self._optimise(image, index, len(scales))
            if stopped:
                break
        out = image.clamp(0, 1)
        if self.config.preserve_color == "luminance":
            out = color.transfer_luminance(out, images.resize_to(self.content, *out.shape[-2:]))
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
        if init == "content":
            return content.clone()
        if init == "noise":
            noise = torch.rand(content.shape, generator=self.generator)
            return noise.to(self.device)
        if init == "style":
            return images.resize_to(self.styles[0], *content.shape[-2:])
        return images.resize_to(images.load_image(Path(init)).to(self.device), *content.shape[-2:])

    def _optimise(self, image: torch.Tensor, scale: int, num_scales: int) -> tuple[torch.Tensor, bool]:
        config = self.config
        x = image.detach().clone().requires_grad_(True)
        if config.optimizer == "lbfgs":
            # One iteration per step() call so that progress, NaN checks and stopping
            # happen between iterations; the curvature history persists in the state.
            # The default tolerances stop L-BFGS at once on losses of order 1: disabled.
            optimizer = torch.optim.LBFGS([x], lr=config.learning_rate, max_iter=1, history_size=50,
                                          tolerance_grad=-1, tolerance_change=-1)
        else:
            optimizer = torch.optim.Adam([x], lr=config.learning_rate)
        last_good = x.detach().clone()
        terms = {}

        def closure():
            optimizer.zero_grad(set_to_none=True)
            loss = self.loss(x)
            loss.total.backward()
            terms["losses"] = loss
            return loss.total

        steps = config.steps_at(scale, num_scales)
        for step in range(1, steps + 1):
            loss = optimizer.step(closure)
            loss = float(loss.detach())
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
            want_image = config.save_every and step % config.save_every == 0
            event = StepEvent(step, steps, scale, num_scales, tuple(x.shape[-2:]), self.last_losses,
                              time.perf_counter() - self.start, last_good.clamp(0, 1) if want_image else None)
            try:
                self.callback(event)
            except StopRequested:
                return last_good, True
        return last_good, False
