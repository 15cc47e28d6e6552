"""`AdaINNet`: arbitrary style transfer in one pass (Huang & Belongie 2017).

A frozen VGG-19 prefix encodes the photo and the painting up to a bottleneck layer
(`relu4_1`, as in the paper); adaptive instance normalisation gives the photo's features the
painting's per-channel mean and standard deviation, t = σ(s)·(c − μ(c))/σ(c) + μ(s); a decoder
that mirrors the encoder (nearest-neighbour upsampling + convolution, reflection padding, no
normalisation layers) paints t back into pixels. Any painting works without training for it.

The encoder is `features.VGGFeatures`, the one VGG of the project: torchvision's layout (the
ImageNet weights, or random ones, the other engines use) or the "adain" layout of the published
normalised VGG-19. Its weights travel in the model file with the decoder, so a model always
runs with the encoder it was trained against. Module names and order of the decoder follow
naoto0804/pytorch-AdaIN's `net.py`, so the published `decoder.pth` loads without renaming keys
(`import_published`).

Statistics follow the published code: the variance is unbiased and ε = 1e-5 is added to it
before the square root. Pixel convention: [0, 1] RGB in and out (not clipped here).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from . import weights as vgg_weights
from .config import VGG_LAYOUTS
from .errors import ModelFileError
from .features import VGGFeatures
from .torchfiles import load_torch_file, state_dict_of

EPS = 1e-5  # added to the variance, as pytorch-AdaIN's calc_mean_std does
BOTTLENECKS = ("relu4_1", "relu3_1")  # the paper's, and a cheaper one for the light variant
STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1")  # the paper's style-loss layers
WIDTH_DIVISORS = (1, 2, 4, 8)  # the decoder's widths are VGG-19's divided by this
_ARCH_FIELDS = ("bottleneck", "width", "encoder")


@dataclass(frozen=True)
class AdaINArchitecture:
    """Where the encoder stops, how wide the decoder is, and the encoder's layout; in every model file."""

    bottleneck: str = "relu4_1"
    width: int = 1  # divisor of the decoder's widths (1: the paper's decoder, exactly)
    encoder: str = "torchvision"  # VGGFeatures layout: "torchvision" or "adain" (the published encoder)

    def __post_init__(self) -> None:
        if self.bottleneck not in BOTTLENECKS:
            raise ValueError(f"architecture bottleneck must be one of {', '.join(BOTTLENECKS)}, "
                             f"not {_shown(self.bottleneck)}")
        if isinstance(self.width, bool) or self.width not in WIDTH_DIVISORS:
            raise ValueError(f"architecture width must be one of {', '.join(map(str, WIDTH_DIVISORS))}, "
                             f"not {_shown(self.width)}")
        if self.encoder not in VGG_LAYOUTS:
            raise ValueError(f"architecture encoder must be one of {', '.join(VGG_LAYOUTS)}, "
                             f"not {_shown(self.encoder)}")

    @classmethod
    def from_dict(cls, data: object) -> AdaINArchitecture:
        """From a model file's metadata: only known keys, each valid. Raises ValueError with one line."""
        if not isinstance(data, dict):
            raise ValueError(f"architecture must be an object with {', '.join(_ARCH_FIELDS)}, not {_shown(data)}")
        unknown = [key for key in data if key not in _ARCH_FIELDS]
        if unknown:
            raise ValueError(f"architecture has unknown key{'s' * (len(unknown) > 1)} "
                             f"{', '.join(repr(key) for key in unknown)}; known: {', '.join(_ARCH_FIELDS)}")
        return cls(**data)

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def encoder_layers(self) -> tuple[str, ...]:
        """The layers the run-time encoder computes: the style layers up to the bottleneck."""
        return STYLE_LAYERS[: STYLE_LAYERS.index(self.bottleneck) + 1]

    @property
    def size_multiple(self) -> int:
        """Image sides must be a multiple of this (one per pooling before the bottleneck)."""
        return 2 ** (len(self.encoder_layers) - 1)


ADAIN_ARCHITECTURES = {
    "standard": AdaINArchitecture(),  # Huang & Belongie, exactly
    # For CPUs: the encoder stops at relu3_1 (less than half of VGG-19's work up to relu4_1) and the
    # decoder has a quarter of the widths; the style is painted at a finer scale (docs/differences.md).
    # Models trained before session 8 used width 2; their files record it, so they load as they were.
    "light": AdaINArchitecture(bottleneck="relu3_1", width=4),
}


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:37]}..."


# --- statistics --------------------------------------------------------------------------------


def mean_std(features: torch.Tensor, mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image, per-channel mean and standard deviation of (N, C, H, W) features, as (N, C, 1, 1).

    `mask` (N or 1, 1, H, W) weights the positions (a region's soft mask): the statistics of that
    region only. Unbiased variance plus EPS, as the published code computes it.
    """
    n, c = features.shape[:2]
    flat = features.float().reshape(n, c, -1)
    if mask is None:
        mean = flat.mean(dim=2)
        if flat.stride(2) == 1 or flat.shape[2] == 1:  # positions in a row of memory (NCHW): torch's one pass
            var = flat.var(dim=2) + EPS
        else:  # channels-last (the CPU runtime): two passes, 4× faster than var's strided one, the same to fp32
            var = (flat - mean.unsqueeze(2)).square_().sum(dim=2) / (flat.shape[2] - 1) + EPS
    else:
        weights = mask.float().reshape(mask.shape[0], 1, -1).expand(n, 1, flat.shape[2])
        total = weights.sum(dim=2).clamp_min(1e-6)
        mean = (flat * weights).sum(dim=2) / total
        # Unbiased for a hard mask (count − 1), the same formula as `var` on the region's pixels.
        var = ((flat - mean.unsqueeze(2)) ** 2 * weights).sum(dim=2) / (total - 1).clamp_min(1e-6) + EPS
    return mean.reshape(n, c, 1, 1), var.sqrt().reshape(n, c, 1, 1)


def adaptive_instance_norm(content: torch.Tensor, style_mean: torch.Tensor, style_std: torch.Tensor,
                           mask: torch.Tensor | None = None) -> torch.Tensor:
    """Content features with the style's per-channel mean and std: σ(s)·(c − μ(c))/σ(c) + μ(s).

    `style_mean`/`style_std` broadcast as (N or 1, C, 1, 1); `mask` restricts the content's statistics
    to a region.
    """
    mean, std = mean_std(content, mask)
    return (content.float() - mean) / std * style_std + style_mean


# --- the networks ------------------------------------------------------------------------------


def _encoder_items(bottleneck: str) -> list[int | str]:
    """VGG-19's configuration (channels, "M" for pooling) up to the conv before `bottleneck`."""
    block, conv = (int(part) for part in re.findall(r"\d+", bottleneck))
    items: list[int | str] = []
    seen_block, seen_conv = 1, 0
    for item in vgg_weights.CONFIGS["vgg19"]:
        if item == "M":
            seen_block, seen_conv = seen_block + 1, 0
        else:
            seen_conv += 1
        items.append(item)
        if (seen_block, seen_conv) == (block, conv):
            return items
    raise AssertionError(bottleneck)


def build_decoder(architecture: AdaINArchitecture) -> nn.Sequential:
    """The encoder mirrored: each conv in reverse with its channels swapped, each pooling an ×2 upsampling.

    Reflection padding, ReLU after every conv but the last, no normalisation. For the paper's
    architecture the modules and their indices are exactly pytorch-AdaIN's decoder.
    """
    channels: list[int] = []
    pools_before: list[int] = []  # poolings met before each conv, to place the upsamplings
    pools = 0
    for item in _encoder_items(architecture.bottleneck):
        if item == "M":
            pools += 1
        else:
            assert isinstance(item, int)
            channels.append(item)
            pools_before.append(pools)
    inputs = [3, *channels[:-1]]  # conv i maps inputs[i] -> channels[i] in the encoder
    modules: list[nn.Module] = []
    for i in reversed(range(len(channels))):
        c_in = channels[i] if i == len(channels) - 1 else channels[i] // architecture.width
        c_out = 3 if i == 0 else inputs[i] // architecture.width
        modules += [nn.ReflectionPad2d((1, 1, 1, 1)), nn.Conv2d(c_in, c_out, (3, 3))]
        if i > 0:
            modules.append(nn.ReLU())
            if pools_before[i] != pools_before[i - 1]:
                modules.append(nn.Upsample(scale_factor=2, mode="nearest"))
    return nn.Sequential(*modules)


class AdaINNet(nn.Module):
    """Photo + a painting's bottleneck statistics -> stylised photo, of the photo's size.

    Sides must be multiples of `size_multiple` (`fast.py` pads others). `forward` is the graph
    that ONNX export traces: besides the image it returns the photo's own statistics, so a
    painting's statistics can be computed by the same graph (run it with the painting as the
    photo) where torch is not installed.
    """

    def __init__(self, architecture: AdaINArchitecture | str = "standard", *,
                 encoder_state: dict[str, torch.Tensor] | None = None) -> None:
        super().__init__()
        if isinstance(architecture, str):
            architecture = ADAIN_ARCHITECTURES[architecture]
        self.architecture = architecture
        self.size_multiple = architecture.size_multiple
        if encoder_state is None:  # filled by load_state_dict (a model file) or by training
            encoder_state = _empty_encoder_state(architecture)
        self.encoder = VGGFeatures(list(architecture.encoder_layers), arch="vgg19", layout=architecture.encoder,
                                   state_dict=encoder_state)
        self.decoder = build_decoder(architecture)
        self.channels_last = False

    def use_channels_last(self) -> AdaINNet:
        """Convolve in channels-last (NHWC) memory, for inference on a CPU: oneDNN then works on the
        activations as they are instead of reordering each one into its blocked layout and back, and
        max-pooling is 6-9x cheaper; the thin full-resolution layers gain most (docs/benchmarks.md). The same
        function to fp32 rounding; the weights change layout in memory, not value (`save_model` writes
        them contiguous). The torch runtime sets it on the CPU; training and ONNX export do not."""
        self.encoder.set_speed(autocast=self.encoder.autocast, channels_last=True)
        self.decoder.to(memory_format=torch.channels_last)
        self.channels_last = True
        return self

    def train(self, mode: bool = True) -> AdaINNet:
        """Only the decoder learns; the encoder stays a frozen measuring instrument (VGGFeatures)."""
        super().train(mode)
        self.encoder.train(False)
        return self

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """[0, 1] RGB (N, 3, H, W) -> bottleneck features."""
        # The encoder's layers end at the bottleneck: run them all, fused (unless hooks watch the encoder).
        if self.channels_last and self.encoder.autocast is None and fusable(images) and not _watched([self.encoder]):
            encoder = self.encoder
            x = encoder.front(images) if encoder.front is not None else (images - encoder.mean) / encoder.std
            return run_fused(encoder.features, x.contiguous(memory_format=torch.channels_last))
        return self.encoder(images, [self.architecture.bottleneck])[self.architecture.bottleneck]

    def statistics(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """A painting's (or photo's) bottleneck mean and std, each (N, C)."""
        mean, std = mean_std(self.encode(images))
        return mean.flatten(1), std.flatten(1)

    def decode(self, features: torch.Tensor) -> torch.Tensor:
        # The output layer is the image: it stays fp32 under autocast, as in TransformerNet.
        body, last = self.decoder[:-1], self.decoder[-1]
        if self.channels_last:  # a region mix may come in either layout
            features = features.contiguous(memory_format=torch.channels_last)
        y = run_fused(body, features) if self.channels_last and fusable(features) else body(features)
        with torch.autocast(y.device.type, enabled=False):
            image = last(y.float())
        return image.contiguous() if self.channels_last else image  # callers get the usual NCHW tensor

    def forward(self, image: torch.Tensor, style_mean: torch.Tensor, style_std: torch.Tensor,
                alpha: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """image (N, 3, H, W); style_mean, style_std (N or 1, C); alpha (1,) in [0, 1]
        -> (stylised (N, 3, H, W), the image's own mean (N, C), std (N, C)).

        alpha interpolates in feature space: alpha·t + (1 − alpha)·c.
        """
        content = self.encode(image)
        t, mean, std = _transferred(content, style_mean, style_std)
        a = alpha.reshape(1, 1, 1, 1).to(t.dtype)
        return self.decode(a * t + (1 - a) * content.float()), mean.flatten(1), std.flatten(1)

    def stylize(self, image: torch.Tensor, style_mean: torch.Tensor, style_std: torch.Tensor,
                alpha: float = 1.0) -> torch.Tensor:
        """The stylised image alone: `forward` with a plain alpha. At alpha 1 (the default) the blend
        1·t + 0·c is t itself, so it is skipped: three passes over the bottleneck fewer, the same numbers."""
        if alpha == 1.0:
            return self.decode(_transferred(self.encode(image), style_mean, style_std)[0])
        alpha_tensor = torch.tensor([alpha], device=image.device)
        return self.forward(image, style_mean, style_std, alpha_tensor)[0]

    def stylize_regions(self, image: torch.Tensor, regions: list[tuple[torch.Tensor, torch.Tensor] | None],
                        masks: torch.Tensor, alpha: float = 1.0) -> torch.Tensor:
        """Spatial control (the paper's Figure 8): region k of `masks` (1, K, H, W), soft weights summing
        to 1 at each pixel, takes `regions[k]`'s (mean, std) each (1, C), or keeps the photo (None).

        The photo's statistics are computed over each region alone, and the features are decoded once,
        so the regions meet without a seam.
        """
        if masks.shape[1] != len(regions):
            raise ValueError(f"{masks.shape[1]} mask regions for {len(regions)} styles")
        content = self.encode(image).float()
        small = nn.functional.interpolate(masks.float(), size=content.shape[2:], mode="area")
        mixed = torch.zeros_like(content)
        for k, region in enumerate(regions):
            weight = small[:, k : k + 1]
            if region is None:
                mixed = mixed + weight * content
                continue
            style_mean, style_std = region
            c = content.shape[1]
            t = adaptive_instance_norm(content, style_mean.reshape(-1, c, 1, 1), style_std.reshape(-1, c, 1, 1),
                                       mask=(weight > 1e-3).float() * weight)
            mixed = mixed + weight * (alpha * t + (1 - alpha) * content)
        return self.decode(mixed)


def fusable(x: torch.Tensor) -> bool:
    """Whether `run_fused` can run on `x`: fp32 inference on a CPU whose torch has oneDNN's fused conv."""
    return (x.device.type == "cpu" and x.dtype == torch.float32 and not torch.is_grad_enabled()
            and not torch.is_autocast_enabled("cpu") and torch.backends.mkldnn.is_available()
            and hasattr(torch.ops.mkldnn, "_convolution_pointwise"))


def run_fused(modules: nn.Sequential, x: torch.Tensor, fuse: bool = True) -> torch.Tensor:
    """`modules(x)`, with each Conv2d followed by a ReLU run as one oneDNN convolution with the ReLU as its
    post-op (the call inductor makes for the same fusion): the ReLU's pass over the activation saved, the same
    numbers to fp32 rounding (oneDNN may pick another kernel for the call than for Conv2d's; 1e-6 relative
    at most in tests/test_adain_channels_last.py). Reflection padding is applied before, as Conv2d does it.
    Where forward hooks watch the modules (a FLOP counter, a profiler) they are called one by one."""
    layers = list(modules)
    fuse = fuse and not _watched(layers)
    index = 0
    while index < len(layers):
        layer = layers[index]
        following = layers[index + 1] if index + 1 < len(layers) else None
        if fuse and isinstance(layer, nn.Conv2d) and isinstance(following, nn.ReLU) and layer.groups == 1:
            padding = list(layer.padding) if isinstance(layer.padding, tuple) else [0, 0]
            if layer.padding_mode != "zeros":
                x = nn.functional.pad(x, layer._reversed_padding_repeated_twice, mode=layer.padding_mode)
                padding = [0, 0]
            x = torch.ops.mkldnn._convolution_pointwise(x, layer.weight, layer.bias, padding, list(layer.stride),
                                                         list(layer.dilation), 1, "relu", [], "")
            index += 2
        else:
            x = layer(x)
            index += 1
    return x


def _watched(layers: list[nn.Module]) -> bool:
    """Whether a forward hook, global or on one of `layers`, expects to see each module called."""
    from torch.nn.modules import module

    return bool(module._global_forward_hooks or module._global_forward_pre_hooks
                or any(layer._forward_hooks or layer._forward_pre_hooks for layer in layers))


def _transferred(content: torch.Tensor, style_mean: torch.Tensor,
                 style_std: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """AdaIN at the bottleneck, t = σ(s)·(c − μ(c))/σ(c) + μ(s), with style (N or 1, C), and the content's
    own mean and std (N, C, 1, 1)."""
    mean, std = mean_std(content)
    c = style_mean.shape[-1]
    t = (content.float() - mean) / std * style_std.reshape(-1, c, 1, 1) + style_mean.reshape(-1, c, 1, 1)
    return t, mean, std


def _empty_encoder_state(architecture: AdaINArchitecture) -> dict[str, torch.Tensor]:
    """Zero weights of the right shapes, to be replaced by `load_state_dict`: building the encoder
    from a model file must not download or generate VGG weights it is about to overwrite."""
    return {key: torch.zeros(shape) for key, shape in encoder_shapes(architecture).items()}


def encoder_shapes(architecture: AdaINArchitecture) -> dict[str, tuple[int, ...]]:
    """The encoder's tensor names (VGGFeatures' keys) and shapes for `architecture`."""
    shapes: dict[str, tuple[int, ...]] = {}
    if architecture.encoder == "adain":
        shapes["front.weight"], shapes["front.bias"] = (3, 3, 1, 1), (3,)
    in_channels = 3
    for index, item in enumerate(_torchvision_items(architecture.bottleneck)):
        if isinstance(item, int):
            shapes[f"features.{index}.weight"] = (item, in_channels, 3, 3)
            shapes[f"features.{index}.bias"] = (item,)
            in_channels = item
    return shapes


def _torchvision_items(bottleneck: str) -> list[int | str | None]:
    """The encoder's modules in torchvision's index order: a channel count for each conv, None for
    each ReLU, "M" for each pooling."""
    out: list[int | str | None] = []
    for item in _encoder_items(bottleneck):
        out += [item, None] if isinstance(item, int) else [item]
    return out


def encoder_state_from_vgg(state: dict[str, torch.Tensor], architecture: AdaINArchitecture) -> dict[str, torch.Tensor]:
    """The encoder's tensors from a torchvision-layout VGG-19 state dict (`weights.resolve`)."""
    return {key: state[key].clone() for key in encoder_shapes(architecture)}


# --- the published weights ---------------------------------------------------------------------


def _published_encoder_keys(architecture: AdaINArchitecture) -> dict[str, str]:
    """painterly encoder key -> key in pytorch-AdaIN's `vgg_normalised.pth` (nn.Sequential indices:
    the 1×1 conv, then a ReflectionPad2d before every conv, a ReLU after it, ceil-mode pools)."""
    mapping = {"front.weight": "0.weight", "front.bias": "0.bias"}
    published = 1
    for index, item in enumerate(_torchvision_items(architecture.bottleneck)):
        if isinstance(item, int):
            mapping[f"features.{index}.weight"] = f"{published + 1}.weight"
            mapping[f"features.{index}.bias"] = f"{published + 1}.bias"
            published += 2  # the pad and the conv
        else:
            published += 1  # a ReLU or a pool
    return mapping


def import_published(decoder: str | Path, encoder: str | Path) -> AdaINNet:
    """The published AdaIN model (pytorch-AdaIN's `decoder.pth` and `vgg_normalised.pth`) as an
    AdaINNet in eval mode; read with `weights_only`, every key and shape checked, one line per problem.

    The encoder file holds VGG-19 up to relu5_4; the layers after relu4_1 are not used.
    """
    architecture = AdaINArchitecture(encoder="adain")
    decoder, encoder = Path(decoder), Path(encoder)
    encoder_raw = state_dict_of(load_torch_file(encoder, "AdaIN encoder", error=ModelFileError), encoder,
                                "AdaIN VGG encoder", error=ModelFileError)
    decoder_raw = state_dict_of(load_torch_file(decoder, "AdaIN decoder", error=ModelFileError), decoder,
                                "AdaIN decoder", error=ModelFileError)
    mapping = _published_encoder_keys(architecture)
    shapes = encoder_shapes(architecture)
    _check_published_shapes(encoder_raw, {theirs: shapes[ours] for ours, theirs in mapping.items()}, encoder,
                            "vgg_normalised.pth")
    encoder_state = {ours: encoder_raw[theirs] for ours, theirs in mapping.items()}
    with torch.device("meta"):
        expected = {key: tuple(value.shape) for key, value in build_decoder(architecture).state_dict().items()}
    unexpected = [key for key in decoder_raw if key not in expected]
    if unexpected:
        raise ModelFileError(f"{decoder}: not pytorch-AdaIN's decoder.pth (unexpected {', '.join(unexpected[:3])})")
    _check_published_shapes(decoder_raw, expected, decoder, "decoder.pth")
    for path, state in ((encoder, encoder_state), (decoder, decoder_raw)):
        for key, tensor in state.items():
            if not tensor.is_floating_point() or not bool(torch.isfinite(tensor).all()):
                raise ModelFileError(f"{path}: {key} holds non-finite or non-float weights")
    model = AdaINNet(architecture, encoder_state={key: value.float() for key, value in encoder_state.items()})
    model.decoder.load_state_dict({key: value.float() for key, value in decoder_raw.items()})
    return model.eval()


def _check_published_shapes(state: dict[str, torch.Tensor], expected: dict[str, tuple[int, ...]], path: Path,
                            what: str) -> None:
    for key, shape in expected.items():
        if key not in state:
            raise ModelFileError(f"{path}: not pytorch-AdaIN's {what} (missing {key})")
        if tuple(state[key].shape) != tuple(shape):
            raise ModelFileError(f"{path}: {key} has shape {tuple(state[key].shape)}, expected {tuple(shape)} "
                                 f"for pytorch-AdaIN's {what}")
