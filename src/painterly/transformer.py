"""`TransformerNet`: Johnson et al.'s (2016) feed-forward style network.

Reads top to bottom: downsample, residual blocks, upsample. Module names
follow pytorch/examples' fast_neural_style (conv1/in1 … deconv3), so models
trained there load without renaming keys.

Pixel convention: [0, 1] RGB in and out. Models trained on 0–255 pixels
(pytorch/examples) set `pixel_scale=255`, applied here at the boundary.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from .config import SIZE_MULTIPLE  # noqa: F401 - defined torch-free, for the ONNX path; re-exported here

# Limits on what an architecture may declare. Model files come from strangers and their metadata is
# read before any tensor: these bounds are checked first, so a file cannot make painterly allocate
# without bound (10⁹ residual blocks asked for 21.6 GB). They sit far above any published fast-style
# network (Johnson et al.: 32/64/128 channels, 5 blocks, 9×9 edges) and far below what exhausts memory:
# at the limits a network has about 1.2·10⁹ parameters, and a file that big really holds 4.8 GB of tensors.
MAX_CHANNELS = 1024  # each of the three widths
MAX_RESIDUAL_BLOCKS = 64  # 0 is allowed: a plain encoder–decoder
MAX_EDGE_KERNEL = 15  # odd, 1 to 15: reflection padding of kernel // 2 keeps the size
MAX_PIXEL_SCALE = 65535.0  # pixel_scale: 1 for [0, 1] pixels, 255 for pytorch/examples' 0–255; 16-bit at most
_FIELDS = ("channels", "residual_blocks", "edge_kernel", "antialias")
_REQUIRED = ("channels", "residual_blocks")  # older files: 9×9 edges, no anti-aliasing


@dataclass(frozen=True)
class Architecture:
    """Widths and depth of a TransformerNet; stored in every model file; checked against the limits above."""

    channels: tuple[int, int, int] = (32, 64, 128)  # after the first conv and the two stride-2 convs
    residual_blocks: int = 5
    edge_kernel: int = 9  # kernel of the first and the last conv, at full resolution (Johnson: 9)
    # Blur before each stride-2 conv and bilinear (not nearest) upsampling (Zhang 2019, "Making
    # Convolutional Networks Shift-Invariant Again"): the texture moves with the picture under shifts
    # that are not a multiple of 4, which is most of a video's flicker. Adds no parameters.
    antialias: bool = False

    def __post_init__(self) -> None:
        channels = self.channels
        if not (isinstance(channels, (tuple, list)) and len(channels) == 3
                and all(_is_int(c) and 1 <= c <= MAX_CHANNELS for c in channels)):
            raise ValueError(f"architecture channels must be three whole numbers from 1 to {MAX_CHANNELS}, "
                             f"not {_shown(channels)}")
        if not (_is_int(self.residual_blocks) and 0 <= self.residual_blocks <= MAX_RESIDUAL_BLOCKS):
            raise ValueError(f"architecture residual_blocks must be a whole number from 0 to {MAX_RESIDUAL_BLOCKS}, "
                             f"not {_shown(self.residual_blocks)}")
        if not (_is_int(self.edge_kernel) and 1 <= self.edge_kernel <= MAX_EDGE_KERNEL and self.edge_kernel % 2):
            raise ValueError(f"architecture edge_kernel must be an odd whole number from 1 to {MAX_EDGE_KERNEL}, "
                             f"not {_shown(self.edge_kernel)}")
        if not isinstance(self.antialias, bool):
            raise ValueError(f"architecture antialias must be true or false, not {_shown(self.antialias)}")
        object.__setattr__(self, "channels", tuple(channels))

    @classmethod
    def from_dict(cls, data: object) -> Architecture:
        """From a model file's metadata: exactly the known keys (edge_kernel optional), every value in its limits.

        Raises ValueError with a one-line reason.
        """
        if not isinstance(data, dict):
            raise ValueError(f"architecture must be an object with {', '.join(_FIELDS)}, not {_shown(data)}")
        unknown = [key for key in data if key not in _FIELDS]
        if unknown:
            raise ValueError(f"architecture has unknown key{'s' * (len(unknown) > 1)} "
                             f"{', '.join(repr(key) for key in unknown)}; known: {', '.join(_FIELDS)}")
        missing = [key for key in _REQUIRED if key not in data]
        if missing:
            raise ValueError(f"architecture is missing {', '.join(repr(key) for key in missing)}")
        return cls(**data)

    def to_dict(self) -> dict:
        """As a model file records it; `antialias` only when set, so a plain network's file reads as it
        did before the field existed (older painterly versions refuse unknown keys)."""
        fields = asdict(self)
        if not self.antialias:
            del fields["antialias"]
        return fields


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _shown(value: object) -> str:
    """A value for a message, cut short: it may come from a hostile file."""
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:37]}..."


ARCHITECTURES = {
    "standard": Architecture(),  # Johnson et al., exactly
    # For CPUs: half the widths, 2 blocks, 5×5 edges; 4-5x faster at 1024² (docs/benchmarks.md). The
    # edges matter most: a 9×9 conv at full resolution into 3 channels fills 3 of a CPU's 16 lanes.
    "light": Architecture(channels=(16, 32, 64), residual_blocks=2, edge_kernel=5),
}



class ConvLayer(nn.Module):
    """Reflection padding then a convolution: no zero-padding borders in the output."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1) -> None:
        super().__init__()
        self.pad = nn.ReflectionPad2d(kernel_size // 2)
        self.conv2d = nn.Conv2d(in_channels, out_channels, kernel_size, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2d(self.pad(x))


class BlurConvLayer(ConvLayer):
    """A binomial 3×3 blur, then the (strided) convolution: the stride samples a band-limited signal.

    The blur is fixed, a non-persistent buffer: model files hold the same tensors as without it.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride)
        taps = torch.tensor([1.0, 2.0, 1.0])
        kernel = (taps[:, None] * taps[None, :]) / 16
        self.blur: torch.Tensor
        self.register_buffer("blur", kernel.expand(in_channels, 1, 3, 3).contiguous(), persistent=False)
        self.blur_pad = nn.ReflectionPad2d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        blurred = nn.functional.conv2d(self.blur_pad(x), self.blur.to(x.dtype), groups=x.shape[1])
        return super().forward(blurred)


class UpsampleConvLayer(ConvLayer):
    """×2 upsampling then a convolution: nearest-neighbour (Johnson's), or bilinear when anti-aliased.

    Used instead of ConvTranspose2d, whose uneven kernel overlap paints
    checkerboard artifacts (Odena et al. 2016, "Deconvolution and Checkerboard Artifacts").
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, *, bilinear: bool = False) -> None:
        super().__init__(in_channels, out_channels, kernel_size)
        self.bilinear = bilinear

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.bilinear:
            x = nn.functional.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        else:
            x = nn.functional.interpolate(x, scale_factor=2, mode="nearest")
        return super().forward(x)


class ResidualBlock(nn.Module):
    """Two 3×3 convs with instance norm; the identity path keeps the content through the bottleneck."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = ConvLayer(channels, channels, 3)
        self.in1 = nn.InstanceNorm2d(channels, affine=True)
        self.conv2 = ConvLayer(channels, channels, 3)
        self.in2 = nn.InstanceNorm2d(channels, affine=True)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.relu(self.in1(self.conv1(x)))
        return x + self.in2(self.conv2(y))


class TransformerNet(nn.Module):
    """Image -> stylised image of the same size (a multiple of 4; `fast.py` pads others)."""

    def __init__(self, architecture: Architecture | str = "standard", *, pixel_scale: float = 1.0) -> None:
        super().__init__()
        if isinstance(architecture, str):
            architecture = ARCHITECTURES[architecture]
        self.architecture = architecture
        self.pixel_scale = pixel_scale
        c1, c2, c3 = architecture.channels
        # Downsampling: (N,3,H,W) -> (N,c3,H/4,W/4)
        self.conv1 = ConvLayer(3, c1, architecture.edge_kernel)
        self.in1 = nn.InstanceNorm2d(c1, affine=True)
        strided = BlurConvLayer if architecture.antialias else ConvLayer
        self.conv2 = strided(c1, c2, 3, stride=2)
        self.in2 = nn.InstanceNorm2d(c2, affine=True)
        self.conv3 = strided(c2, c3, 3, stride=2)
        self.in3 = nn.InstanceNorm2d(c3, affine=True)
        # Residual blocks at 1/4 resolution, where most of the style is painted.
        self.residual_names = [f"res{i}" for i in range(1, architecture.residual_blocks + 1)]
        for name in self.residual_names:
            self.add_module(name, ResidualBlock(c3))
        # Upsampling: (N,c3,H/4,W/4) -> (N,3,H,W)
        self.deconv1 = UpsampleConvLayer(c3, c2, 3, bilinear=architecture.antialias)
        self.in4 = nn.InstanceNorm2d(c2, affine=True)
        self.deconv2 = UpsampleConvLayer(c2, c1, 3, bilinear=architecture.antialias)
        self.in5 = nn.InstanceNorm2d(c1, affine=True)
        self.deconv3 = ConvLayer(c1, 3, architecture.edge_kernel)  # no norm, no ReLU: the output is the image
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x * self.pixel_scale
        y = self.relu(self.in1(self.conv1(y)))
        y = self.relu(self.in2(self.conv2(y)))
        y = self.relu(self.in3(self.conv3(y)))
        for name in self.residual_names:
            y = getattr(self, name)(y)
        y = self.relu(self.in4(self.deconv1(y)))
        y = self.relu(self.in5(self.deconv2(y)))
        # The output layer stays fp32 under autocast: bf16 would round the image to 8 significant
        # bits (steps of 1/256 near white), and this one layer is 5 % of the standard network's work.
        with torch.autocast(y.device.type, enabled=False):
            return self.deconv3(y.float()) / self.pixel_scale
