"""Gatys et al. (2015): optimise an image's pixels against VGG content and style targets.

Departures from the paper are listed in docs/differences.md; the ones that
live here: coarse-to-fine scales for large sizes, colour preservation, and
starting from the content photo instead of white noise. With a mask, each region
takes its own painting (Gatys et al. 2017's guided Gram matrices) or keeps the photo.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence

import torch

from . import color, optimizers, pixels
from .config import INITS, StylizeConfig
from .devices import autocast_dtype, out_of_memory_guard, precision_name, resolve_device
from .errors import NumericalError, UsageError
from .events import Callback, DoneEvent, StepEvent, StopRequested, ignore
from .features import VGGFeatures, build_perceptual_loss
from .losses import LossTerms, normalised_blend
from .regions import KEEP, RegionMask, shown_mask


def stylize(
    content: torch.Tensor,
    styles: Sequence[torch.Tensor | None],
    config: StylizeConfig | None = None,
    *,
    init_image: torch.Tensor | None = None,
    callback: Callback = ignore,
    extra_loss: Callable[[torch.Tensor], torch.Tensor] | None = None,
    mask: RegionMask | None = None,
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

    With `mask` (regions.py), styles[k] paints region k through guided Gram matrices (Gatys et al.
    2017; `PerceptualLoss.set_region_styles`), the mask's feathered weights taken at each scale's
    size; a None there keeps the photo in that region (`_keep_photo`).
    """
    config = config or StylizeConfig()
    check_region_styles(styles, mask, config)
    if mask is None:
        normalised_blend(config.style_blend, len(styles))  # a count mismatch is refused before any work
    if init_image is None and config.init not in INITS:
        raise UsageError(f"init {config.init!r} is an image file: load it and pass it as init_image "
                         "(stylize_files does)")
    device = resolve_device(config.device)
    with out_of_memory_guard(f"stylizing at --size {config.size}", device):
        return _Run(content, list(styles), config, device, callback, init_image, extra_loss, mask).run()


class _Run:
    """One stylisation: the encoder, the loss and the image being optimised."""

    def __init__(self, content: torch.Tensor, styles: list[torch.Tensor | None], config: StylizeConfig,
                 device: torch.device, callback: Callback, init_image: torch.Tensor | None,
                 extra_loss: Callable[[torch.Tensor], torch.Tensor] | None = None,
                 mask: RegionMask | None = None) -> None:
        self.mask = mask
        self.config, self.device, self.callback = config, device, callback
        self.extra_loss = extra_loss
        self.content = content.detach().float().to(device)
        if config.preserve_color == "histogram":
            styles = [None if style is None else color.match_color(style, content) for style in styles]
        self.styles = [None if style is None else style.detach().float().to(device) for style in styles]
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
            paintings = [None if s is None else self._fit(pixels.resize_long_side(s, style_side), "style")
                         for s in self.styles]
            if self.mask is None:
                self.loss.set_style([s for s in paintings if s is not None], self.config.style_blend)
            else:
                self.loss.set_region_styles(paintings, self._weights(content.shape, long_side))
            if self.loss.content_layers:
                self.loss.set_content(content)
            image, stopped = self._optimise(image, index, len(scales))
            if stopped:
                break
        assert image is not None  # scales() is never empty
        out = image.clamp(0, 1)
        if self.config.preserve_color == "luminance":
            out = color.transfer_luminance(out, pixels.resize_to(self.content, *out.shape[-2:]))
        out = self._keep_photo(out)
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
        first = next(s for s in self.styles if s is not None)  # check_region_styles: there is one
        return pixels.resize_to(first, *content.shape[-2:])  # "style"

    def _weights(self, size: Sequence[int], long_side: int) -> torch.Tensor:
        """The mask's weights (1, K, H, W) on the device for an image of `size` (.., H, W), feathered
        over `mask_feather` pixels of the final size (proportionally fewer at a coarser scale)."""
        assert self.mask is not None
        feather = round(self.config.mask_feather * long_side / self.config.size)
        return torch.from_numpy(self.mask.weights(size[-2], size[-1], feather))[None].to(self.device)

    def _keep_photo(self, out: torch.Tensor) -> torch.Tensor:
        """The photo composited back where regions keep it, along the feathered mask.

        Without a style term a kept region is still optimised: the content loss only holds its VGG
        features, TV smooths it, and the neighbouring regions' style seeps in through the layers'
        receptive fields, so on its own it drifts from the photo. Compositing is exact (the photo's own
        pixels wherever the region's weight is 1) and seamless (the feathered edge blends the two),
        where a higher content weight there would only make it nearer."""
        kept = [k for k, style in enumerate(self.styles) if style is None]
        if self.mask is None or not kept:
            return out
        weights = self._weights(out.shape, max(out.shape[-2:]))[:, kept].sum(dim=1, keepdim=True)
        photo = pixels.resize_to(self.content, *out.shape[-2:])
        return out * (1 - weights) + photo * weights

    def _optimise(self, image: torch.Tensor, scale: int, num_scales: int) -> tuple[torch.Tensor, bool]:
        config = self.config
        x = image.detach().clone().requires_grad_(True)
        optimizer: torch.optim.Optimizer
        if config.optimizer == "lbfgs":
            # One iteration per step() call so that progress, NaN checks and stopping
            # happen between iterations; the curvature history persists in the state.
            # The default tolerances stop L-BFGS at once on losses of order 1: disabled.
            optimizer = optimizers.LBFGS([x], lr=config.learning_rate, max_iter=1, history_size=50,
                                         tolerance_grad=-1, tolerance_change=-1)
        else:
            optimizer = optimizers.Adam([x], lr=config.learning_rate)
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
                    image=self._keep_photo(last_good.clamp(0, 1)).cpu(), step=step,
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
            shown = self._keep_photo(last_good.clamp(0, 1)) if want_image else None
            event = StepEvent(step, steps, scale, num_scales, (height, width), self.last_losses,
                              time.perf_counter() - self.start, shown)
            try:
                self.callback(event)
            except StopRequested:
                return last_good, True
        return last_good, False


def check_region_styles(styles: Sequence[object], mask: RegionMask | None, config: StylizeConfig) -> None:
    """One painting (or None: keep the photo) per mask region, before any work; without a mask, no None."""
    if mask is None:
        if any(style is None for style in styles):
            raise UsageError(f"a {KEEP!r} style keeps the photo in a --mask region; without a mask it needs a painting")
        return
    if len(styles) != mask.count:
        raise UsageError(f"{shown_mask(mask.source)} has {mask.count} regions and {len(styles)} styles were given: "
                         f"give one painting per region, in the order the regions' colours first appear from the "
                         f"top left ({KEEP!r} keeps the photo there)")
    if config.style_blend is not None:
        raise UsageError("--style-blend mixes paintings over the whole image; with --mask each region takes its own")
    if all(style is None for style in styles):
        raise UsageError(f"every region of the mask is {KEEP!r}: there is nothing to paint")
