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


@dataclass(frozen=True)
class Architecture:
    """Widths and depth of a TransformerNet; stored in every model file."""

    channels: tuple[int, int, int] = (32, 64, 128)  # after the first conv and the two stride-2 convs
    residual_blocks: int = 5
    edge_kernel: int = 9  # kernel of the first and the last conv, at full resolution (Johnson: 9)

    def to_dict(self) -> dict:
        return asdict(self)


ARCHITECTURES = {
    "standard": Architecture(),  # Johnson et al., exactly
    # For CPUs: half the widths, 2 blocks, 5×5 edges; 4-5x faster at 1024² (docs/benchmarks.md). The
    # edges matter most: a 9×9 conv at full resolution into 3 channels fills 3 of a CPU's 16 lanes.
    "light": Architecture(channels=(16, 32, 64), residual_blocks=2, edge_kernel=5),
}

# The image must be a multiple of this so the two stride-2 convs and the two ×2 upsamplings round-trip.
SIZE_MULTIPLE = 4


class ConvLayer(nn.Module):
    """Reflection padding then a convolution: no zero-padding borders in the output."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1) -> None:
        super().__init__()
        self.pad = nn.ReflectionPad2d(kernel_size // 2)
        self.conv2d = nn.Conv2d(in_channels, out_channels, kernel_size, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2d(self.pad(x))


class UpsampleConvLayer(ConvLayer):
    """Nearest-neighbour ×2 upsampling then a convolution.

    Used instead of ConvTranspose2d, whose uneven kernel overlap paints
    checkerboard artifacts (Odena et al. 2016, "Deconvolution and Checkerboard Artifacts").
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(nn.functional.interpolate(x, scale_factor=2, mode="nearest"))


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
        self.conv2 = ConvLayer(c1, c2, 3, stride=2)
        self.in2 = nn.InstanceNorm2d(c2, affine=True)
        self.conv3 = ConvLayer(c2, c3, 3, stride=2)
        self.in3 = nn.InstanceNorm2d(c3, affine=True)
        # Residual blocks at 1/4 resolution, where most of the style is painted.
        self.residual_names = [f"res{i}" for i in range(1, architecture.residual_blocks + 1)]
        for name in self.residual_names:
            self.add_module(name, ResidualBlock(c3))
        # Upsampling: (N,c3,H/4,W/4) -> (N,3,H,W)
        self.deconv1 = UpsampleConvLayer(c3, c2, 3)
        self.in4 = nn.InstanceNorm2d(c2, affine=True)
        self.deconv2 = UpsampleConvLayer(c2, c1, 3)
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
