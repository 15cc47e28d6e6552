"""Settings shared by the CLI, the Python API and the web UI.

Every front-end reads its defaults from these dataclasses, so a default is
changed in one place. `to_dict()` is what gets stored in output metadata.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .errors import UsageError

# The valid choices of every setting that has a fixed list: validation, the CLI's help and the web UI
# read them here, and `check_choice` words every refusal the same way.
DEVICES = ("auto", "cpu", "cuda", "mps")
OPTIMIZERS = ("lbfgs", "adam")
COLOR_MODES = ("luminance", "histogram")
INITS = ("content", "noise", "style")  # or the path of an image file
MULTISCALE = ("auto", "on", "off")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
POOLINGS = ("max", "avg")
LOSS_NORMALISATIONS = ("target", "paper")
VGG_ARCHS = ("vgg16", "vgg19")
NET_ARCHS = ("standard", "light")  # TransformerNet sizes (transformer.ARCHITECTURES)
LR_SCHEDULES = ("constant", "cosine")
BACKENDS = ("auto", "torch", "onnx")
FAST_COLOR_MODES = ("luminance",)  # a fast model has learned its style: there is no style image to recolour

# Gatys et al.: conv4_2 for content (we take the ReLU after it), the first layer of every block for style.
DEFAULT_CONTENT_LAYERS = ("relu4_2",)
DEFAULT_STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")


@dataclass
class StylizeConfig:
    """Gatys-style optimisation of an image's pixels."""

    size: int = 512  # long side of the output in pixels; aspect ratio kept
    steps: int = 300  # optimiser steps at the final scale
    # Steps at each coarser scale; None: a third of `steps`. A coarse scale only has to settle the
    # layout and palette the next one starts from, and its steps are 4x cheaper per halving.
    coarse_steps: int | None = None
    optimizer: str = "lbfgs"  # L-BFGS converges in far fewer steps than Adam on this problem
    lr: float | None = None  # None: 1.0 for L-BFGS, 0.02 for Adam (≈5 on 0–255 pixels)
    content_weight: float = 1.0
    style_weight: float = 100.0  # "target" normalisation starts each term near 1; style needs the upper hand
    tv_weight: float = 1.0  # light smoothing against high-frequency noise
    content_layers: tuple[str, ...] = DEFAULT_CONTENT_LAYERS
    style_layers: tuple[str, ...] = DEFAULT_STYLE_LAYERS
    style_layer_weights: tuple[float, ...] | None = None  # None: equal weights summing to 1
    style_blend: tuple[float, ...] | None = None  # one weight per style image; None: equal
    style_scale: float = 1.0  # style image long side = style_scale × current size
    init: str = "content"  # "content", "noise", "style" or the path of an image file (read by pipeline.py)
    preserve_color: str | None = None  # None, "luminance" or "histogram"
    multiscale: str = "auto"  # "auto": coarse-to-fine when size > multiscale_threshold
    multiscale_threshold: int = 512
    min_scale: int = 256  # long side of the coarsest scale
    pooling: str = "max"  # "avg" is what Gatys et al. used for their figures
    vgg: str = "vgg19"
    vgg_weights: str | None = None  # "imagenet", "random", a path; None: $PAINTERLY_VGG_WEIGHTS or imagenet
    loss_normalisation: str = "target"  # "paper" gives the exact Gatys formulas (see docs)
    seed: int = 0
    device: str = "auto"
    # "auto": bf16 autocast with Adam where the GPU or CPU computes bf16 natively; fp32 with L-BFGS
    # (its bf16 loss curve is not within 2 % of fp32's) and on other hardware.
    precision: str = "auto"
    save_every: int = 0  # >0: hand an intermediate image to the callback every N steps

    def __post_init__(self) -> None:
        self.content_layers = tuple(self.content_layers)
        self.style_layers = tuple(self.style_layers)
        if isinstance(self.init, os.PathLike):  # an image path given as a Path is recorded as text
            self.init = os.fspath(self.init)
        if self.style_layer_weights is not None:
            self.style_layer_weights = tuple(float(w) for w in self.style_layer_weights)
        if self.style_blend is not None:
            self.style_blend = tuple(float(w) for w in self.style_blend)
        self.validate()

    def validate(self) -> None:
        """Refuse impossible settings before any work is done."""
        _positive_int("size", self.size)
        _positive_int("steps", self.steps)
        if self.coarse_steps is not None:
            _positive_int("coarse_steps", self.coarse_steps)
        check_choice("optimizer", self.optimizer, OPTIMIZERS)
        check_choice("multiscale", self.multiscale, MULTISCALE)
        _check_init(self.init)
        _check_loss_and_device(self)
        if self.preserve_color is not None:
            check_choice("preserve_color", self.preserve_color, COLOR_MODES)
        if self.lr is not None and not (math.isfinite(self.lr) and self.lr > 0):
            raise UsageError(f"lr must be a positive number, got {self.lr}")
        if not (math.isfinite(self.style_scale) and self.style_scale > 0):
            raise UsageError(f"style_scale must be positive, got {self.style_scale}")
        if not self.content_layers and self.content_weight > 0:
            raise UsageError("content_layers is empty; set content_weight 0 for pure texture synthesis")
        _positive_int("min_scale", self.min_scale)
        if self.save_every < 0:
            raise UsageError("save_every must be 0 (off) or a positive number of steps")

    @property
    def learning_rate(self) -> float:
        if self.lr is not None:
            return self.lr
        return 1.0 if self.optimizer == "lbfgs" else 0.02

    def layer_weights(self) -> dict[str, float]:
        """Style layer -> weight w_l; equal weights summing to 1 unless given."""
        return _layer_weights(self.style_layers, self.style_layer_weights)

    def scales(self) -> list[int]:
        """Long sides of the coarse-to-fine pyramid, ending at `size`."""
        use = self.multiscale == "on" or (self.multiscale == "auto" and self.size > self.multiscale_threshold)
        sizes = [self.size]
        while use and sizes[0] // 2 >= self.min_scale:
            sizes.insert(0, sizes[0] // 2)
        return sizes

    def steps_at(self, scale: int, num_scales: int) -> int:
        """Steps at the 1-based `scale` of `num_scales`: `steps` at the last, `coarse_steps` before it."""
        if scale == num_scales:
            return self.steps
        return self.coarse_steps if self.coarse_steps is not None else max(1, self.steps // 3)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def replace(self, **changes) -> StylizeConfig:
        return dataclasses.replace(self, **changes)


def _check_init(init: str) -> None:
    """One of INITS or an image file that exists: a typo is refused now, not after VGG is built."""
    if init in INITS:
        return
    path = Path(init)
    if not path.is_file():
        problem = "is a folder" if init and path.is_dir() else "no such file"
        raise UsageError(f"init must be {', '.join(INITS)} or an image file; got {init!r} ({problem})")


def _check_loss_and_device(config: StylizeConfig | TrainConfig) -> None:
    """The checks both methods share: the perceptual loss's settings, the device and the precision."""
    check_choice("device", config.device, DEVICES)
    check_choice("precision", config.precision, PRECISIONS)
    check_choice("vgg", config.vgg, VGG_ARCHS)
    check_choice("pooling", config.pooling, POOLINGS)
    check_choice("loss_normalisation", config.loss_normalisation, LOSS_NORMALISATIONS)
    for name in ("content_weight", "style_weight", "tv_weight"):
        value = getattr(config, name)
        if not (math.isfinite(value) and value >= 0):
            raise UsageError(f"{name} must be a non-negative number, got {value}")
    if not config.style_layers:
        raise UsageError("style_layers must name at least one layer")
    if config.style_layer_weights is not None and len(config.style_layer_weights) != len(config.style_layers):
        raise UsageError(
            f"{len(config.style_layer_weights)} style layer weights for {len(config.style_layers)} style layers"
        )


def _layer_weights(layers: tuple[str, ...], weights: tuple[float, ...] | None) -> dict[str, float]:
    return dict(zip(layers, weights or (1.0 / len(layers),) * len(layers)))


def _positive_int(name: str, value: int) -> None:
    if not isinstance(value, int) or value <= 0:
        raise UsageError(f"{name} must be a positive integer, got {value!r}")


def check_choice(name: str, value: object, choices: Sequence[str]) -> None:
    """The one refusal of a value outside its list, wherever it is checked (config, encoder, loss, device)."""
    if value not in choices:
        raise UsageError(f"{name} must be one of {', '.join(choices)}; got {value!r}")




def choices_text(choices: Sequence[str]) -> str:
    """("max", "avg") -> "max or avg": for help texts and messages."""
    return choices[0] if len(choices) == 1 else f"{', '.join(choices[:-1])} or {choices[-1]}"


# Johnson et al.: VGG-16, content relu2_2, style relu1_2 relu2_2 relu3_3 relu4_3.
JOHNSON_CONTENT_LAYERS = ("relu2_2",)
JOHNSON_STYLE_LAYERS = ("relu1_2", "relu2_2", "relu3_3", "relu4_3")


@dataclass
class TrainConfig:
    """Training a fast (Johnson) style network on a folder of photos."""

    data: str = ""  # folder of training photos, searched recursively
    size: int = 256  # side of the square random crops
    style_size: int | None = None  # long side of the style image; None: as it is
    epochs: int = 2  # passes over the data, unless `steps` is set
    steps: int | None = None  # total optimiser steps; overrides epochs
    batch_size: int = 4
    lr: float = 1e-3
    lr_schedule: str = "constant"  # or "cosine" (decays to 1 % of lr at the last step)
    content_weight: float = 1.0
    style_weight: float = 10.0  # with "target" normalisation each term starts near 1
    tv_weight: float = 1.0
    content_layers: tuple[str, ...] = JOHNSON_CONTENT_LAYERS
    style_layers: tuple[str, ...] = JOHNSON_STYLE_LAYERS
    style_layer_weights: tuple[float, ...] | None = None
    vgg: str = "vgg16"
    vgg_weights: str | None = None
    pooling: str = "max"
    loss_normalisation: str = "target"
    arch: str = "standard"  # TransformerNet size: "standard" (Johnson) or "light"
    # Channels-last memory for the TransformerNet, the photos and VGG: faster convolutions on GPUs with
    # tensor cores (benchmarks/gpu.py measures it); the weights come out the same, in the usual layout.
    channels_last: bool = False
    # torch.compile the TransformerNet and VGG: CUDA only (train() refuses it elsewhere: a CPU compile
    # takes minutes and needs a C++ toolchain); the first steps are slow while it compiles.
    compile: bool = False
    seed: int = 0
    device: str = "auto"
    workers: int = 0  # data-loading processes
    precision: str = "auto"  # "auto": bf16 autocast on CUDA GPUs that compute it natively, else fp32
    checkpoint_every: int = 500  # steps between checkpoints (and at the end)
    # Also a checkpoint once this many minutes have passed since the last one (0 = off): at ≈3 s a
    # step on a CPU, 500 steps are ≈25 minutes. Written at a step boundary, so a resume stays exact.
    checkpoint_minutes: float = 10.0
    log_every: int = 10  # steps between metrics-log lines
    preview_every: int = 0  # >0: stylise a few fixed photos every N steps

    def __post_init__(self) -> None:
        self.content_layers = tuple(self.content_layers)
        self.style_layers = tuple(self.style_layers)
        if self.style_layer_weights is not None:
            self.style_layer_weights = tuple(float(w) for w in self.style_layer_weights)
        self.validate()

    def validate(self) -> None:
        for name in ("size", "epochs", "batch_size", "checkpoint_every", "log_every"):
            _positive_int(name, getattr(self, name))
        if self.steps is not None:
            _positive_int("steps", self.steps)
        if self.style_size is not None:
            _positive_int("style_size", self.style_size)
        if self.size % SIZE_MULTIPLE:
            raise UsageError(f"size must be a multiple of {SIZE_MULTIPLE} (the network downsamples twice), "
                             f"got {self.size}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise UsageError(f"lr must be a positive number, got {self.lr}")
        check_choice("lr_schedule", self.lr_schedule, LR_SCHEDULES)
        check_choice("arch", self.arch, NET_ARCHS)
        _check_loss_and_device(self)
        if self.workers < 0 or self.preview_every < 0:
            raise UsageError("workers and preview_every must not be negative")
        minutes = self.checkpoint_minutes
        if isinstance(minutes, bool) or not (isinstance(minutes, (int, float)) and math.isfinite(minutes)
                                             and minutes >= 0):
            raise UsageError(f"checkpoint_minutes must be 0 (off) or a positive number of minutes, got {minutes!r}")
        for name in ("channels_last", "compile"):
            if not isinstance(getattr(self, name), bool):
                raise UsageError(f"{name} must be true or false, got {getattr(self, name)!r}")

    def layer_weights(self) -> dict[str, float]:
        return _layer_weights(self.style_layers, self.style_layer_weights)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def replace(self, **changes) -> TrainConfig:
        return dataclasses.replace(self, **changes)


# The fast network's sides must be a multiple of this, so its two stride-2 convolutions and two x2
# upsamplings give back the input's size (fast.py pads to it). Here, not in transformer.py, because the
# ONNX Runtime path runs without torch.
SIZE_MULTIPLE = 4

# Fast-model tiling (fast.py). Instance norm gives each tile its own statistics, so neighbouring tiles
# paint slightly differently; a wide overlap lets the blend hide that (and the tiles' padded borders).
DEFAULT_TILE_OVERLAP = 64
MIN_TILE = 32
# tile=None ("auto"): images over AUTO_TILE_ABOVE pixels go in AUTO_TILE tiles. Whole, the standard
# network takes about 1 KiB of memory a pixel (4.4 GiB at 2048²). An 8192² photo in 768² tiles peaked
# at 1.6 GiB on torch and 1.0 GiB on ONNX Runtime, against 2.1 and 6.3 GiB in 1024² tiles, at the
# same speed on torch and 15 % slower on ONNX Runtime (docs/benchmarks.md).
AUTO_TILE = 768
AUTO_TILE_ABOVE = 2048 * 2048


@dataclass
class ApplyConfig:
    """Running a trained fast model over images, folders and videos (`painterly apply`)."""

    strength: float = 1.0  # 1 = fully stylised, 0 = the original; blended per pixel
    preserve_color: str | None = None  # None or "luminance": keep the input's colours
    size: int | None = None  # resize the long side first; None: the output has the input's size
    # Side of the square tiles large images are stylised in; None: AUTO_TILE tiles for images over
    # AUTO_TILE_ABOVE pixels; 0: never tile.
    tile: int | None = None
    tile_overlap: int = DEFAULT_TILE_OVERLAP
    batch_size: int = 4  # images, tiles or frames per network call
    backend: str = "auto"  # "auto": ONNX Runtime for a .onnx model, PyTorch for anything else
    device: str = "auto"
    # "auto": bf16 autocast where the hardware computes it natively (55 dB PSNR from fp32's output);
    # the onnx backend computes in fp32.
    precision: str = "auto"
    smooth: float = 0.0  # video: temporal smoothing against flicker, in [0, 1)
    max_pixels: int | None = None  # largest input (image or frame) accepted; None: $PAINTERLY_MAX_PIXELS or the default

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        if not (isinstance(self.strength, (int, float)) and 0.0 <= self.strength <= 1.0):
            raise UsageError(f"strength must be between 0 and 1, got {self.strength}")
        if self.preserve_color == "histogram":
            raise UsageError(
                "preserve_color 'histogram' recolours the style image before stylising, but a fast model "
                "has already learned its style; use 'luminance'"
            )
        if self.preserve_color is not None:
            check_choice("preserve_color", self.preserve_color, FAST_COLOR_MODES)
        if self.size is not None:
            _positive_int("size", self.size)
        if self.tile is not None and not (isinstance(self.tile, int) and (self.tile == 0 or self.tile >= MIN_TILE)):
            raise UsageError(f"tile must be 0 (never tile) or at least {MIN_TILE} pixels, got {self.tile!r}")
        largest_overlap = self.tile or AUTO_TILE
        if not (isinstance(self.tile_overlap, int) and 0 <= self.tile_overlap < largest_overlap):
            raise UsageError(
                f"tile overlap must be at least 0 and less than the tile ({largest_overlap}), got {self.tile_overlap!r}"
            )
        _positive_int("batch_size", self.batch_size)
        check_choice("backend", self.backend, BACKENDS)
        check_choice("device", self.device, DEVICES)
        check_choice("precision", self.precision, PRECISIONS)
        if not (isinstance(self.smooth, (int, float)) and 0.0 <= self.smooth < 1.0):
            raise UsageError(f"smooth must be at least 0 and below 1, got {self.smooth}")
        if self.max_pixels is not None:
            _positive_int("max_pixels", self.max_pixels)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def replace(self, **changes) -> ApplyConfig:
        return dataclasses.replace(self, **changes)
