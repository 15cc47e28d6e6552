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
from typing import Any

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
VGG_LAYOUTS = ("torchvision", "adain")  # features.VGGFeatures: torchvision's VGG, or AdaIN's normalised VGG-19
NET_ARCHS = ("standard", "light")  # TransformerNet sizes (transformer.ARCHITECTURES)
# AdaIN decoders `train` learns: adain.ADAIN_ARCHITECTURES "standard" (the paper's) and "light".
ADAIN_TRAIN_ARCHS = ("adain", "adain-light")
TRAIN_ARCHS = (*NET_ARCHS, *ADAIN_TRAIN_ARCHS)  # what `train --arch` takes: the network kind and its size
# "inverse" is the AdaIN paper's decay, lr / (1 + 5e-5 · step) (pytorch-AdaIN's adjust_learning_rate).
LR_SCHEDULES = ("constant", "cosine", "inverse")
INVERSE_LR_DECAY = 5e-5
BACKENDS = ("auto", "torch", "onnx")
# Optical flow for video (`flow.estimator`): OpenCV's DIS, weight-free; torchvision's RAFT where its weights can be had.
FLOWS = ("dis", "raft-small", "raft-large")
# `apply`'s choices: "histogram" recolours the painting an arbitrary-style (AdaIN) model is given; a Johnson
# model has learned its style, so there is no painting to recolour (JOHNSON_COLOR_MODES).
FAST_COLOR_MODES = ("luminance", "histogram")
JOHNSON_COLOR_MODES = ("luminance",)
LIVE_SIZES = (160, 320, 640)  # the web UI's Live tab: working sizes (long side) a camera frame is downscaled to
MASK_FEATHER = 8  # pixels over which a --mask region's edge fades into the next (stylize and apply)
# A feather wider than the image already fades every region into every other: more is a slip of the keys.
MAX_MASK_FEATHER = 65_536
MASK_SEED = 0  # seeds --mask auto:K's clustering (regions.auto_mask): the same photo and seed, the same regions

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
    # Video (gatys_video.py, Ruder et al. 2016): weight of the temporal loss, the mean squared difference
    # between a frame and the previous result warped along the motion, over the pixels visible in both.
    # Ruder et al.'s temporal/content ratio of 200 brought to these units (pixels in [0, 1], "target"
    # content loss) is of this order; 0: later frames only start from the warped result.
    temporal_weight: float = 1000.0
    # Steps on each frame after the first, which starts from the previous result and needs fewer.
    # None: two fifths of `steps` (`frame_steps_or_default`), Ruder et al.'s 800 after 2000.
    frame_steps: int | None = None
    flow: str = "dis"  # video: the optical flow each frame's start and temporal term follow (FLOWS)
    mask_feather: int = MASK_FEATHER  # with a mask (regions.py): pixels over which a region's edge fades
    mask_seed: int = MASK_SEED  # with --mask auto:K: the clustering's seed (not `seed`, the optimisation's)

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
        check_choice("flow", self.flow, FLOWS)
        if self.save_every < 0:
            raise UsageError("save_every must be 0 (off) or a positive number of steps")
        if isinstance(self.temporal_weight, bool) or not (
                isinstance(self.temporal_weight, (int, float)) and math.isfinite(self.temporal_weight)
                and self.temporal_weight >= 0):
            raise UsageError(f"temporal_weight must be a non-negative number, got {self.temporal_weight!r}")
        if self.frame_steps is not None:
            _positive_int("frame_steps", self.frame_steps)
        _check_feather(self.mask_feather)
        _check_mask_seed(self.mask_seed)

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

    def frame_steps_or_default(self) -> int:
        """Steps on each video frame after the first: `frame_steps`, else two fifths of `steps`."""
        return self.frame_steps if self.frame_steps is not None else max(1, self.steps * 2 // 5)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def replace(self, **changes) -> StylizeConfig:
        return dataclasses.replace(self, **changes)


def _check_feather(feather: object) -> None:
    if isinstance(feather, bool) or not (isinstance(feather, int) and 0 <= feather <= MAX_MASK_FEATHER):
        raise UsageError(f"mask_feather must be 0 (hard edges) to {MAX_MASK_FEATHER} pixels, got {feather!r}")


def _check_mask_seed(seed: object) -> None:
    if isinstance(seed, bool) or not (isinstance(seed, int) and seed >= 0):
        raise UsageError(f"mask_seed must be a whole number, 0 or more, got {seed!r}")


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
# Huang & Belongie: the style loss at relu1_1 … relu4_1; the content loss at the decoder's bottleneck
# (adain.ADAIN_ARCHITECTURES: relu4_1, and relu3_1 for the light decoder; tests/test_training_adain.py
# checks that the two tables agree).
ADAIN_STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1")
ADAIN_BOTTLENECKS = {"adain": "relu4_1", "adain-light": "relu3_1"}
ADAIN_SIZE_MULTIPLES = {"adain": 8, "adain-light": 4}  # one ×2 per pooling before the bottleneck
ADAIN_STEPS = 160_000  # pytorch-AdaIN's max_iter: ≈15 epochs of COCO at batch 8

# The settings whose default depends on the kind of network trained, each written once here;
# TrainConfig leaves them None and fills them in (`to_dict()`, hence every model file and
# checkpoint, records the resolved values). AdaIN's are the paper's recipe (Huang & Belongie 2017,
# pytorch-AdaIN's train.py): Adam 1e-4 with lr/(1 + 5e-5·step), batch 8, no TV, VGG-19, the
# paper's plain mean squared errors, photos and paintings resized to 512 on their short side
# before the 256² crop, style layers summed with weight 1 each.
TRAIN_DEFAULTS: dict[str, dict[str, object]] = {
    "johnson": {"lr": 1e-3, "lr_schedule": "constant", "batch_size": 4, "tv_weight": 1.0, "vgg": "vgg16",
                "content_layers": JOHNSON_CONTENT_LAYERS, "style_layers": JOHNSON_STYLE_LAYERS,
                "loss_normalisation": "target", "resize": None},
    "adain": {"lr": 1e-4, "lr_schedule": "inverse", "batch_size": 8, "tv_weight": 0.0, "vgg": "vgg19",
              "content_layers": None,  # the arch's bottleneck (ADAIN_BOTTLENECKS)
              "style_layers": ADAIN_STYLE_LAYERS, "loss_normalisation": "paper",
              "resize": 512},
}
_KIND_DEPENDENT = (*TRAIN_DEFAULTS["johnson"], "epochs", "steps", "style_layer_weights")
# The default of a field TrainConfig fills in from its kind's (None, typed as the resolved value).
KIND_DEFAULT: Any = None


def train_kind(arch: str) -> str:
    """"adain" for the AdaIN decoders, "johnson" for a TransformerNet: what `arch` trains."""
    return "adain" if arch in ADAIN_TRAIN_ARCHS else "johnson"


@dataclass
class TrainConfig:
    """Training a fast network on a folder of photos: a Johnson TransformerNet for one painting, or an
    AdaIN decoder (`arch` "adain"/"adain-light") for any painting, from a folder of paintings.

    Fields defaulting to KIND_DEFAULT (None) take their kind's default (TRAIN_DEFAULTS) when the
    config is made; an explicit None asks for it too.
    """

    data: str = ""  # folder of training photos, searched recursively
    size: int = 256  # side of the square random crops
    style_size: int | None = None  # long side of the style image; None: as it is (Johnson only)
    epochs: int = KIND_DEFAULT  # passes over the data, unless `steps` is set; 2
    # Total optimiser steps; overrides epochs. None: `epochs` of the photos (Johnson), ADAIN_STEPS
    # unless `epochs` is given (AdaIN).
    steps: int | None = None
    batch_size: int = KIND_DEFAULT  # 4 (Johnson), 8 (AdaIN)
    lr: float = KIND_DEFAULT  # 1e-3 (Johnson), 1e-4 (AdaIN)
    # "cosine" decays to 1 % of lr at the last step, "inverse" is lr/(1 + 5e-5·step); constant
    # (Johnson), inverse (AdaIN)
    lr_schedule: str = KIND_DEFAULT
    content_weight: float = 1.0
    style_weight: float = 10.0  # with "target" normalisation each term starts near 1; the AdaIN paper's λ
    tv_weight: float = KIND_DEFAULT  # 1 (Johnson), 0 (AdaIN)
    # Johnson only: weight of the temporal loss (temporal_loss.py), against flicker on video; 0 = off.
    # Costs one more forward of the network per step (not of VGG).
    temporal_weight: float = 0.0
    # The share of the steps trained without the temporal term before it starts (its warm-up), in [0, 1).
    temporal_warmup: float = 0.0
    content_layers: tuple[str, ...] = KIND_DEFAULT  # relu2_2 (Johnson), the bottleneck (AdaIN)
    style_layers: tuple[str, ...] = KIND_DEFAULT  # Johnson's four (Johnson), relu1_1 … relu4_1 (AdaIN)
    style_layer_weights: tuple[float, ...] | None = None  # None: equal summing to 1 (Johnson), 1 each (AdaIN)
    vgg: str = KIND_DEFAULT  # vgg16 (Johnson), vgg19 (AdaIN: its encoder is VGG-19)
    vgg_weights: str | None = None
    pooling: str = "max"
    loss_normalisation: str = KIND_DEFAULT  # target (Johnson), paper (AdaIN: plain mean squared errors)
    # "standard"/"light": a TransformerNet of that size; "adain"/"adain-light": an AdaIN decoder
    arch: str = "standard"
    # Johnson only: an anti-aliased TransformerNet (transformer.Architecture.antialias), whose texture moves
    # with the picture on video; the same parameters, recorded in the model.
    antialias: bool = False
    # Short side photos (and AdaIN's paintings) are scaled to before the crop; None (Johnson): `size`,
    # so a crop covers the photo's height or width; 512 (AdaIN, as the paper).
    resize: int | None = KIND_DEFAULT
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
        # As given, before the kind's defaults fill them: `replace(arch=...)` resolves afresh from these.
        self._given = {name: getattr(self, name) for name in _KIND_DEPENDENT}
        self._resolve()
        self.validate()

    @property
    def kind(self) -> str:
        """"johnson" or "adain": which network `arch` trains."""
        return train_kind(self.arch)

    @property
    def bottleneck(self) -> str | None:
        """The AdaIN decoder's bottleneck layer (its content-loss layer); None for a Johnson network."""
        return ADAIN_BOTTLENECKS.get(self.arch)

    def _resolve(self) -> None:
        """Fill the fields left None with the kind's defaults, and make the sequences tuples."""
        check_choice("arch", self.arch, TRAIN_ARCHS)
        defaults = dict(TRAIN_DEFAULTS[self.kind])
        if self.kind == "adain":
            defaults["content_layers"] = (self.bottleneck,)
            if self.steps is None and self.epochs is None:
                self.steps = ADAIN_STEPS
        for name, value in defaults.items():
            if getattr(self, name) is None:
                setattr(self, name, value)
        if self.epochs is None:
            self.epochs = 2
        self.content_layers = tuple(self.content_layers)
        self.style_layers = tuple(self.style_layers)
        if self.style_layer_weights is not None:
            self.style_layer_weights = tuple(float(w) for w in self.style_layer_weights)
        elif self.kind == "adain":  # the paper sums its layers' terms
            self.style_layer_weights = (1.0,) * len(self.style_layers)

    def validate(self) -> None:
        for name in ("size", "epochs", "batch_size", "checkpoint_every", "log_every"):
            _positive_int(name, getattr(self, name))
        if self.steps is not None:
            _positive_int("steps", self.steps)
        if self.style_size is not None:
            _positive_int("style_size", self.style_size)
        multiple = ADAIN_SIZE_MULTIPLES.get(self.arch, SIZE_MULTIPLE)
        if self.size % multiple:
            pools = "the network downsamples twice" if self.kind == "johnson" else "the encoder pools before it"
            raise UsageError(f"size must be a multiple of {multiple} ({pools}), got {self.size}")
        if self.resize is not None:
            _positive_int("resize", self.resize)
            if self.resize < self.size:
                raise UsageError(f"resize ({self.resize}) must be at least the crop size ({self.size})")
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise UsageError(f"lr must be a positive number, got {self.lr}")
        check_choice("lr_schedule", self.lr_schedule, LR_SCHEDULES)
        _check_loss_and_device(self)
        weight = self.temporal_weight
        if isinstance(weight, bool) or not (isinstance(weight, (int, float)) and math.isfinite(weight) and weight >= 0):
            raise UsageError(f"temporal_weight must be a non-negative number, got {weight!r}")
        warmup = self.temporal_warmup
        if isinstance(warmup, bool) or not (isinstance(warmup, (int, float)) and 0 <= warmup < 1):
            raise UsageError(f"temporal_warmup must be a share of the steps in [0, 1), got {warmup!r}")
        if self.kind == "adain":
            self._validate_adain()
        if self.workers < 0 or self.preview_every < 0:
            raise UsageError("workers and preview_every must not be negative")
        minutes = self.checkpoint_minutes
        if isinstance(minutes, bool) or not (isinstance(minutes, (int, float)) and math.isfinite(minutes)
                                             and minutes >= 0):
            raise UsageError(f"checkpoint_minutes must be 0 (off) or a positive number of minutes, got {minutes!r}")
        for name in ("channels_last", "compile", "antialias"):
            if not isinstance(getattr(self, name), bool):
                raise UsageError(f"{name} must be true or false, got {getattr(self, name)!r}")

    def _validate_adain(self) -> None:
        """What an AdaIN decoder's training cannot take: the encoder it decodes is VGG-19 as trained."""
        if self.vgg != "vgg19":
            raise UsageError(f"vgg must be vgg19 for --arch {self.arch}: the AdaIN encoder is VGG-19, got {self.vgg}")
        if self.pooling != "max":
            raise UsageError(f"pooling must be max for --arch {self.arch}: the AdaIN encoder pools as VGG-19 was "
                             f"trained, got {self.pooling}")
        if self.content_layers != (self.bottleneck,):
            raise UsageError(f"content_layers must be {self.bottleneck} for --arch {self.arch}: the content loss "
                             f"compares the output with the AdaIN target at the bottleneck, got "
                             f"{','.join(self.content_layers or ()) or 'none'}")
        if self.style_size is not None:
            raise UsageError(f"style_size is for a Johnson network's one painting; --arch {self.arch} resizes "
                             "its paintings like the photos, with resize")
        if self.antialias is True:
            raise UsageError(f"antialias must be off for --arch {self.arch}: it is for a Johnson network (--arch "
                             f"{' or '.join(NET_ARCHS)}); the AdaIN decoder upsamples as the paper's does")
        if self.temporal_weight:
            raise UsageError(f"temporal_weight is for a Johnson network (--arch {' or '.join(NET_ARCHS)}); --arch "
                             f"{self.arch} trains a decoder for any painting without it: leave it at 0")

    def layer_weights(self) -> dict[str, float]:
        return _layer_weights(self.style_layers, self.style_layer_weights)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def replace(self, **changes) -> TrainConfig:
        """A copy with `changes`; the settings this one took from its kind's defaults are resolved
        afresh, so `replace(arch="adain")` gets AdaIN's learning rate, not Johnson's."""
        values = {field.name: getattr(self, field.name) for field in dataclasses.fields(self)}
        values.update(self._given)
        values.update(changes)
        return TrainConfig(**values)


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
    stabilize: float = 0.0  # video: motion-compensated blending strength in [0, 1) (needs the flow extra)
    flow: str = "dis"  # the optical flow `stabilize` follows (FLOWS)
    max_pixels: int | None = None  # largest input (image or frame) accepted; None: $PAINTERLY_MAX_PIXELS or the default
    # Arbitrary-style (AdaIN) models only. alpha: 1 paints with the painting's statistics, 0 decodes the
    # photo's own features (interpolated in feature space, unlike `strength`, which blends pixels).
    alpha: float = 1.0
    # Long side the painting is resized to before its statistics are measured (pytorch-AdaIN's test.py:
    # 512, though it resizes the short side); it sets the brush strokes' scale. None: as it is.
    style_size: int | None = 512
    style_blend: tuple[float, ...] | None = None  # one weight per painting; None: equal
    mask_feather: int = MASK_FEATHER
    mask_seed: int = MASK_SEED  # with --mask auto:K: the clustering's seed
    # Paint as if the image's long side were this many pixels (the approved preview's size): the network
    # runs at that size and strokes.py brings the result to full size with the photo's detail, so a
    # large print has the preview's strokes. None: strokes of the network's own size in pixels.
    stroke_size: int | None = None

    def __post_init__(self) -> None:
        if self.style_blend is not None:
            self.style_blend = tuple(float(w) for w in self.style_blend)
        self.validate()

    def validate(self) -> None:
        if not (isinstance(self.strength, (int, float)) and 0.0 <= self.strength <= 1.0):
            raise UsageError(f"strength must be between 0 and 1, got {self.strength}")
        if self.preserve_color is not None:  # "histogram" only for arbitrary-style models: FastStylizer checks
            check_choice("preserve_color", self.preserve_color, FAST_COLOR_MODES)
        if isinstance(self.alpha, bool) or not (isinstance(self.alpha, (int, float)) and 0.0 <= self.alpha <= 1.0):
            raise UsageError(f"alpha must be between 0 and 1, got {self.alpha}")
        if self.style_size is not None:
            _positive_int("style_size", self.style_size)
        if self.style_blend is not None and (
                not self.style_blend or any(not math.isfinite(w) or w < 0 for w in self.style_blend)
                or sum(self.style_blend) <= 0):
            raise UsageError("style_blend weights must be non-negative and not all zero")
        _check_feather(self.mask_feather)
        _check_mask_seed(self.mask_seed)
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
        if isinstance(self.stabilize, bool) or not (isinstance(self.stabilize, (int, float))
                                                    and 0.0 <= self.stabilize < 1.0):
            raise UsageError(f"stabilize must be at least 0 and below 1, got {self.stabilize}")
        if self.smooth > 0 and self.stabilize > 0:
            raise UsageError("steady a video with smooth or with stabilize, not both (stabilize follows the motion, "
                             "smooth ghosts on it)")
        check_choice("flow", self.flow, FLOWS)
        if self.flow != "dis" and self.stabilize == 0:
            raise UsageError(f"flow {self.flow} is the motion stabilize follows; without stabilize nothing uses it")
        if self.max_pixels is not None:
            _positive_int("max_pixels", self.max_pixels)
        if self.stroke_size is not None and (isinstance(self.stroke_size, bool) or not isinstance(self.stroke_size, int)
                                             or self.stroke_size < MIN_TILE):
            raise UsageError(f"stroke_size must be a long side of at least {MIN_TILE} pixels (the look of the "
                             f"preview at that size), got {self.stroke_size!r}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def replace(self, **changes) -> ApplyConfig:
        return dataclasses.replace(self, **changes)
