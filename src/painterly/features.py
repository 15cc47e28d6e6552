"""`VGGFeatures`: the VGG encoder both methods measure images with.

Layers are asked for by name (`relu4_2`, `conv3_1`, `pool2`), the network is
built only up to the deepest one, the ImageNet normalisation happens inside
(callers pass [0, 1] RGB), and the weights are frozen.

`build_perceptual_loss` is the one place Gatys (optimize.py) and training
(training.py) get their encoder and loss from, and the one place that warns
about random weights.
"""

from __future__ import annotations

import contextlib
import difflib
from collections.abc import Iterable, Sequence

import torch
from torch import nn

from . import weights as vgg_weights
from .config import POOLINGS, VGG_ARCHS, VGG_LAYOUTS, StylizeConfig, TrainConfig, check_choice
from .errors import UsageError
from .events import Callback, MessageEvent, ignore
from .losses import PerceptualLoss


def layer_names(arch: str) -> list[str]:
    """Every layer of `arch` in order, named as in the papers (conv1_1, relu1_1, …, pool5).

    The position in this list is the index in torchvision's `features` Sequential,
    so `features.{i}.weight` belongs to `layer_names(arch)[i]`.
    """
    names: list[str] = []
    block, conv = 1, 1
    for item in _config(arch):
        if item == "M":
            names.append(f"pool{block}")
            block, conv = block + 1, 1
        else:
            names += [f"conv{block}_{conv}", f"relu{block}_{conv}"]
            conv += 1
    return names


def check_layers(layers: Iterable[str], arch: str) -> list[str]:
    """Validate layer names, suggesting the closest name for a typo."""
    known = layer_names(arch)
    checked = []
    for name in layers:
        if name not in known:
            close = difflib.get_close_matches(name, known, n=1)
            hint = f"; did you mean {close[0]}?" if close else f"; known layers: {', '.join(known)}"
            raise UsageError(f"unknown {arch} layer {name!r}{hint}")
        checked.append(name)
    return checked


def _config(arch: str) -> list[int | str]:
    check_choice("vgg", arch, VGG_ARCHS)
    return vgg_weights.CONFIGS[arch]


class VGGFeatures(nn.Module):
    """A frozen VGG-16/19 prefix that returns the activations of the named layers.

    Args:
        layers: names of the layers to return, e.g. ``["relu1_1", "relu4_2"]``.
        arch: ``"vgg19"`` (Gatys) or ``"vgg16"`` (Johnson).
        weights: ``"imagenet"`` (torchvision's file, downloaded and cached),
            ``"random"`` (seeded, offline), a path to a state-dict file, or None
            for the ``PAINTERLY_VGG_WEIGHTS`` environment variable / ImageNet.
        pooling: ``"max"`` as trained, or ``"avg"``, which Gatys et al. found gives
            smoother results.
        seed: seed of the random weights.
        state_dict: weights already loaded (skips `weights`); used to share one
            download between several encoders.
        layout: ``"torchvision"`` (zero padding, floor pooling, ImageNet normalisation)
            or ``"adain"``: the normalised VGG-19 published with AdaIN (Huang & Belongie
            2017): reflection padding, ceil-mode max pooling and a learned 1×1 input conv
            (``front``) on [0, 1] RGB instead of the normalisation. Its weights come only as
            a `state_dict` (the same ``features.N`` keys, plus ``front.weight``/``front.bias``).
    """

    def __init__(
        self,
        layers: Sequence[str],
        *,
        arch: str = "vgg19",
        weights: str | None = None,
        pooling: str = "max",
        seed: int = 0,
        state_dict: dict[str, torch.Tensor] | None = None,
        progress: bool = True,
        layout: str = "torchvision",
    ) -> None:
        super().__init__()
        if not layers:
            raise UsageError("VGGFeatures needs at least one layer")
        check_choice("pooling", pooling, POOLINGS)
        check_choice("layout", layout, VGG_LAYOUTS)
        if layout == "adain" and state_dict is None:
            raise UsageError("the adain VGG layout has no downloadable weights: pass its state_dict")
        self.arch = arch
        self.layout = layout
        self.layers = tuple(dict.fromkeys(check_layers(layers, arch)))
        names = layer_names(arch)
        self.depth = max(names.index(name) for name in self.layers) + 1
        self._names = names[: self.depth]
        self.features = self._build(pooling)
        self.front = nn.Conv2d(3, 3, 1) if layout == "adain" else None
        # Keys in torchvision's layout ("features.21.weight"), only those of the prefix built.
        required = [f"features.{key}" for key in self.features.state_dict()]
        if state_dict is None:
            state_dict, self.weights_description = vgg_weights.resolve(
                weights, arch, seed=seed, required=required, progress=progress
            )
        else:
            self.weights_description = "given state dict"
        self.features.load_state_dict({key[len("features."):]: state_dict[key] for key in required})
        if self.front is not None:
            self.front.load_state_dict({"weight": state_dict["front.weight"], "bias": state_dict["front.bias"]})
        self.mean: torch.Tensor
        self.std: torch.Tensor
        self.register_buffer("mean", torch.tensor(vgg_weights.IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(vgg_weights.IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.autocast: torch.dtype | None = None
        self.channels_last = False
        self.requires_grad_(False)
        self.eval()

    def _build(self, pooling: str) -> nn.Sequential:
        modules: list[nn.Module] = []
        in_channels = 3
        reflect = self.layout == "adain"
        for item in _config(self.arch):
            if isinstance(item, int):
                modules += [nn.Conv2d(in_channels, item, 3, padding=1, padding_mode="reflect" if reflect else "zeros"),
                            nn.ReLU(inplace=False)]
                in_channels = item
            else:  # "M"
                pool = (nn.MaxPool2d(2, 2, ceil_mode=reflect) if pooling == "max"
                        else nn.AvgPool2d(2, 2, ceil_mode=reflect))
                modules.append(pool)
            if len(modules) >= self.depth:
                break
        return nn.Sequential(*modules[: self.depth])

    def train(self, mode: bool = True) -> VGGFeatures:
        """Stay in eval mode: the encoder is a fixed measuring instrument."""
        return super().train(False)

    @property
    def min_side(self) -> int:
        """Smallest image side for which the deepest layer still has at least one pixel."""
        pools = sum(name.startswith("pool") for name in self._names)
        return 2**pools

    def set_speed(self, *, autocast: torch.dtype | None = None, channels_last: bool = False) -> VGGFeatures:
        """Run in reduced precision (autocast) and/or channels-last memory: 2–3x faster on CPUs
        with bf16 units. Activations then come out in that dtype; losses cast them to fp32."""
        self.autocast = autocast
        self.channels_last = channels_last
        if channels_last:
            self.features.to(memory_format=torch.channels_last)
        return self

    def forward(self, image: torch.Tensor, layers: Iterable[str] | None = None) -> dict[str, torch.Tensor]:
        """[0, 1] RGB (N, 3, H, W) -> {layer name: activation (N, C, H', W')}.

        `layers` (a subset of `self.layers`) stops the network after the deepest of them: Johnson's
        content target needs only relu2_2, a third of VGG-16's work up to relu4_3.
        """
        wanted = set(self.layers if layers is None else layers)
        if not wanted <= set(self.layers):
            raise ValueError(f"layers {sorted(wanted - set(self.layers))} are not computed by this encoder")
        x = self.front(image) if self.front is not None else (image - self.mean) / self.std
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        out: dict[str, torch.Tensor] = {}
        # No autocast of its own unless set_speed asked for one: a caller's autocast then applies.
        with torch.autocast(x.device.type, dtype=self.autocast) if self.autocast else contextlib.nullcontext():
            for name, module in zip(self._names, self.features):
                x = module(x)
                if name in wanted:
                    out[name] = x
                    if len(out) == len(wanted):
                        break
        return out


def build_perceptual_loss(
    config: StylizeConfig | TrainConfig,
    device: torch.device,
    *,
    autocast: torch.dtype | None = None,
    channels_last: bool = False,
    callback: Callback = ignore,
) -> PerceptualLoss:
    """The VGG encoder and the perceptual loss over it that `config` describes, on `device`.

    The encoder computes the content and style layers (it is `loss.encoder`); the content term is
    left out when its weight is 0 (texture synthesis needs no content target). Random VGG weights
    are reported once, through `callback`, as a warning (their results are far below ImageNet's),
    unless the user consented (`weights.random_weights_warning`).
    """
    encoder = VGGFeatures(
        list(dict.fromkeys(config.content_layers + config.style_layers)),
        arch=config.vgg,
        weights=config.vgg_weights,
        pooling=config.pooling,
        seed=config.seed,
    ).to(device)
    encoder.set_speed(autocast=autocast, channels_last=channels_last)
    warning = vgg_weights.random_weights_warning(config.vgg_weights)
    if warning is not None:
        callback(MessageEvent(warning, "warning"))
    return PerceptualLoss(
        encoder,
        config.content_layers if config.content_weight > 0 else (),
        config.layer_weights(),
        content_weight=config.content_weight,
        style_weight=config.style_weight,
        tv_weight=config.tv_weight,
        normalisation=config.loss_normalisation,
    )
