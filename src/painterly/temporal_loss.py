"""A temporal loss for training fast networks without a video data set (Huang et al. 2017, ReCoNet).

A network flickers when a small change of its input (the camera moving a little, sensor noise)
changes its output by more than the same change of the output would. So each training crop x gets
a random small camera motion T (translation, rotation, zoom) and per-frame Gaussian noise n, and
the loss is the mean over the pixels T kept inside the image of (net(T(x) + n) − T(net(x)))²: the
moved frame's painting should be the painting moved. The network then needs no flow at run time.

The motion is known exactly, so no optical flow is estimated; T is one `F.affine_grid` per crop,
sampled bilinearly. Cost: one more forward of the network per step (the moved crops go through it
in the same call as the crops), and none of VGG.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .losses import LossTerms

# The largest motion between two frames, each drawn uniformly up to it: a hand-held camera at video
# frame rates. The shift is a fraction of each side (10 pixels of a 256 crop).
MAX_SHIFT = 0.04
MAX_DEGREES = 2.0
MAX_ZOOM = 0.03  # the scale is drawn in [1 − MAX_ZOOM, 1 + MAX_ZOOM]
NOISE_STD = 0.02  # a camera's per-frame noise on [0, 1] pixels (≈ 5 of 255)
_INSIDE = 0.999  # a warped ones image at least this high: sampled from inside the image only


@dataclass
class TemporalTerms(LossTerms):
    """A Johnson step's loss terms with the weighted temporal term; `total` includes it."""

    temporal: torch.Tensor


def motion_matrices(shifts: torch.Tensor, degrees: torch.Tensor, zooms: torch.Tensor, height: int,
                    width: int) -> torch.Tensor:
    """(N, 2, 3) `F.affine_grid` matrices (align_corners=False): frame pixel p shows the image at
    zoom·R(degrees)·p + shift about the centre, in pixels, so a rotation stays a rotation on a
    non-square image and an integer shift samples exactly at pixel centres."""
    radians = degrees.double() * (math.pi / 180)
    cos, sin = torch.cos(radians) * zooms.double(), torch.sin(radians) * zooms.double()
    half = torch.tensor([width / 2, height / 2], dtype=torch.float64)
    # From centred pixels u = D·x (x normalised, D = diag(W/2, H/2)): x_in = D⁻¹(A·D·x + t).
    linear = torch.stack([torch.stack([cos, -sin * half[1] / half[0]], -1),
                          torch.stack([sin * half[0] / half[1], cos], -1)], -2)
    offset = shifts.double() / half
    return torch.cat([linear, offset.unsqueeze(-1)], -1).float()


@dataclass(frozen=True)
class CameraMotion:
    """One small camera motion per image of a batch, and the noise of the frame it gives."""

    theta: torch.Tensor  # (N, 2, 3), for F.affine_grid
    noise: torch.Tensor | None = None  # (N, C, H, W), added to the moved frame; None: a clean frame

    @classmethod
    def random(cls, photos: torch.Tensor, *, generator: torch.Generator | None = None, max_shift: float = MAX_SHIFT,
               max_degrees: float = MAX_DEGREES, max_zoom: float = MAX_ZOOM,
               noise_std: float = NOISE_STD) -> CameraMotion:
        """A motion per photo of (N, C, H, W) `photos`, each drawn uniformly within the limits. Drawn on
        the CPU from `generator` (None: torch's global CPU generator, which a training checkpoint
        stores, so a resumed run draws what an uninterrupted one would, on any device)."""
        count, channels, height, width = photos.shape
        draws = torch.rand(count, 4, generator=generator, dtype=torch.float64) * 2 - 1
        shifts = draws[:, :2] * max_shift * torch.tensor([width, height], dtype=torch.float64)
        theta = motion_matrices(shifts, draws[:, 2] * max_degrees, 1 + draws[:, 3] * max_zoom, height, width)
        noise = None
        if noise_std:
            noise = torch.randn(count, channels, height, width, generator=generator) * noise_std
            noise = noise.to(photos.device)
        return cls(theta.to(photos.device), noise)

    @classmethod
    def shift(cls, photos: torch.Tensor, dx: float, dy: float) -> CameraMotion:
        """The same translation by (dx, dy) pixels for every photo, without noise."""
        count, _, height, width = photos.shape
        shifts = torch.tensor([[dx, dy]], dtype=torch.float64).expand(count, 2)
        zeros = torch.zeros(count, dtype=torch.float64)
        return cls(motion_matrices(shifts, zeros, zeros + 1, height, width).to(photos.device))

    def move(self, images: torch.Tensor, padding: str = "border") -> torch.Tensor:
        """`images` as the moved camera sees them (bilinear; outside the image: `padding`)."""
        grid = F.affine_grid(self.theta, list(images.shape), align_corners=False)
        return F.grid_sample(images.float(), grid, mode="bilinear", padding_mode=padding, align_corners=False)

    def frames(self, photos: torch.Tensor) -> torch.Tensor:
        """The next frame: the photos moved (edges reflected, as a wider view would show something there),
        plus the noise, kept in [0, 1] like a camera's pixels, in the photos' memory format."""
        moved = self.move(photos, padding="reflection")
        if self.noise is not None:
            moved = (moved + self.noise).clamp(0, 1)
        channels_last = photos.dim() == 4 and photos.is_contiguous(memory_format=torch.channels_last) \
            and not photos.is_contiguous()
        return moved.contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)

    def valid(self, height: int, width: int) -> torch.Tensor:
        """(N, 1, H, W): 1 where the motion sampled from inside the image, else 0."""
        ones = torch.ones(self.theta.shape[0], 1, height, width, device=self.theta.device)
        return (self.move(ones, padding="zeros") >= _INSIDE).float()

    def loss(self, styled: torch.Tensor, moved_styled: torch.Tensor) -> torch.Tensor:
        """Mean over the valid pixels (and channels) of (moved_styled − T(styled))², in float32."""
        difference = moved_styled.float() - self.move(styled)
        mask = self.valid(*styled.shape[-2:])
        return (difference.square() * mask).sum() / (mask.sum() * styled.shape[1]).clamp_min(1)


def styled_pair(net: Callable[..., torch.Tensor], photos: torch.Tensor,
                motion: CameraMotion) -> tuple[torch.Tensor, torch.Tensor]:
    """net(photos) and net(the moved frames), in one call of the network on the two batches together
    (instance norm keeps each image to itself, so it is the same as two calls)."""
    styled, moved = net(torch.cat([photos, motion.frames(photos)])).chunk(2)
    return styled, moved


def temporal_loss(net: Callable[..., torch.Tensor], photos: torch.Tensor, motion: CameraMotion) -> torch.Tensor:
    """The unweighted temporal loss of `net` on `photos` under `motion`."""
    return motion.loss(*styled_pair(net, photos, motion))
