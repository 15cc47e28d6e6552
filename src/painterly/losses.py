"""Losses of Gatys et al. (2015) and Johnson et al. (2016), shared by both methods.

Two normalisations are offered:

* ``"paper"`` — exactly the paper: content ½·Σ(F−P)², style per layer
  Σ(G−A)² / (4·N²·M²) with G = F·Fᵀ. The content term then grows with the
  image area, so good weights change with ``--size``.
* ``"target"`` (default, a departure from the paper) — each layer's squared
  error is averaged and divided by the mean square of its target, so every
  term starts near 1 whatever the image size, layer depth or VGG weights
  (ImageNet or random). One set of default weights then works everywhere.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from .config import LOSS_NORMALISATIONS, check_choice
from .errors import UsageError
from .style_stats import normalised_weights as normalised_blend

_EPS = 1e-8


def gram_matrix(features: torch.Tensor) -> torch.Tensor:
    """G = F·Fᵀ over spatial positions: (N, C, H, W) -> (N, C, C), not normalised."""
    n, c, h, w = features.shape
    flat = features.reshape(n, c, h * w)
    return torch.bmm(flat, flat.transpose(1, 2))


def content_loss(features: torch.Tensor, target: torch.Tensor, normalisation: str = "paper") -> torch.Tensor:
    """Paper: ½·Σ(F−P)². Target: mean((F−P)²) / mean(P²)."""
    if normalisation == "paper":
        return 0.5 * (features - target).pow(2).sum()
    return (features - target).pow(2).mean() / (target.pow(2).mean() + _EPS)


def style_layer_loss(gram: torch.Tensor, target_gram: torch.Tensor, channels: int, positions: float,
                     normalisation: str = "paper") -> torch.Tensor:
    """Paper: E_l = Σ(G−A)² / (4·N_l²·M_l²). Target: mean((G−A)²) / mean(A²).

    A batch of grams (N, C, C) against one target (1, C, C) is summed over the
    batch in the paper form and averaged in the target form.
    """
    if normalisation == "paper":
        return (gram - target_gram).pow(2).sum() / (4.0 * channels**2 * positions**2)
    return (gram - target_gram).pow(2).mean() / (target_gram.pow(2).mean() + _EPS)


def total_variation(image: torch.Tensor, normalisation: str = "paper") -> torch.Tensor:
    """Squared differences of neighbouring pixels (Mahendran & Vedaldi 2015).

    Paper form: the sum; target form: the mean, so it does not grow with size.
    """
    dy = (image[..., 1:, :] - image[..., :-1, :]).pow(2)
    dx = (image[..., :, 1:] - image[..., :, :-1]).pow(2)
    if normalisation == "paper":
        return dy.sum() + dx.sum()
    return dy.mean() + dx.mean()


@dataclass
class LossTerms:
    """The weighted parts of one evaluation; `total` is what is minimised."""

    total: torch.Tensor
    content: torch.Tensor
    style: torch.Tensor
    tv: torch.Tensor

    def as_floats(self) -> dict[str, float]:
        return {name: float(getattr(self, name).detach()) for name in ("total", "content", "style", "tv")}


class PerceptualLoss(nn.Module):
    """Content + style + TV over a `VGGFeatures` encoder, with targets computed once.

    Style targets are blended Gram matrices of one or more style images. The
    content target is either fixed (`set_content`, Gatys) or passed with each
    call (Johnson: the features of the photo being stylised).
    """

    def __init__(
        self,
        encoder: nn.Module,
        content_layers: Sequence[str],
        style_layers: Mapping[str, float],
        *,
        content_weight: float,
        style_weight: float,
        tv_weight: float,
        normalisation: str = "target",
    ) -> None:
        super().__init__()
        check_choice("loss_normalisation", normalisation, LOSS_NORMALISATIONS)
        missing = set(content_layers) | set(style_layers)
        missing -= set(getattr(encoder, "layers", missing))
        if missing:
            raise UsageError(f"the encoder does not compute layers {sorted(missing)}")
        self.encoder = encoder
        self.content_layers = tuple(content_layers)
        self.style_layers = dict(style_layers)
        self.content_weight = content_weight
        self.style_weight = style_weight
        self.tv_weight = tv_weight
        self.normalisation = normalisation
        self.style_targets: dict[str, torch.Tensor] = {}
        self.content_targets: dict[str, torch.Tensor] = {}
        self.region_targets: list[dict[str, torch.Tensor] | None] | None = None  # set_region_styles
        self.region_masks: torch.Tensor | None = None
        self._layer_masks: dict[tuple[int, int], tuple[torch.Tensor, list[float]]] = {}

    @torch.no_grad()
    def set_style(self, images: Sequence[torch.Tensor], blend: Sequence[float] | None = None) -> None:
        """Blend the Gram matrices of the style images: Σ_i b_i·A_i, weights summing to 1."""
        blend = normalised_blend(blend, len(images))
        self.region_targets, self.region_masks, self._layer_masks = None, None, {}
        self.style_targets = {}
        for image, share in zip(images, blend):
            feats = self.encoder(image)
            for layer in self.style_layers:
                # Stored per position, so a style image of another size gives the same target.
                gram = gram_matrix(feats[layer].float()) / _positions(feats[layer])
                self.style_targets[layer] = self.style_targets.get(layer, 0) + share * gram

    @torch.no_grad()
    def set_content(self, image: torch.Tensor) -> None:
        """Fix the content target (Gatys): features of the content photo."""
        feats = self.encoder(image)
        self.content_targets = {layer: feats[layer].detach().float() for layer in self.content_layers}

    def forward(self, image: torch.Tensor, content: Mapping[str, torch.Tensor] | None = None) -> LossTerms:
        feats = self.encoder(image)
        return self.from_features(image, feats, content)

    def content_features(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        """Content targets for a batch of photos (Johnson), without gradient."""
        if not self.content_layers:  # content weight 0: nothing to run the encoder for
            return {}
        with torch.no_grad():
            feats = self.encoder(image, self.content_layers)
        return {layer: feats[layer].float() for layer in self.content_layers}

    def from_features(self, image: torch.Tensor, feats: Mapping[str, torch.Tensor],
                      content: Mapping[str, torch.Tensor] | None = None) -> LossTerms:
        """Loss from encoder activations already computed for `image`."""
        if not self.style_targets and self.region_targets is None:
            raise RuntimeError("PerceptualLoss.set_style must be called before the loss is evaluated")
        content = self.content_targets if content is None else content
        norm = self.normalisation
        zero = image.new_zeros(())
        content_term = sum((content_loss(feats[layer].float(), content[layer], norm) for layer in self.content_layers),
                           zero)
        if self.region_targets is not None:
            style_term = self._guided_style(feats, zero)
        else:
            style_term = zero
            for layer, weight in self.style_layers.items():
                f = feats[layer].float()
                positions = _positions(f)
                gram, target = gram_matrix(f), self.style_targets[layer]
                if norm == "target":
                    gram = gram / positions
                else:  # the paper's A for an image of this size; exact when the sizes match
                    target = target * positions
                style_term = style_term + weight * style_layer_loss(gram, target, f.shape[1], positions, norm)
        tv_term = total_variation(image.float(), norm) if self.tv_weight else zero
        content_term = self.content_weight * content_term
        style_term = self.style_weight * style_term
        tv_term = self.tv_weight * tv_term
        return LossTerms(content_term + style_term + tv_term, content_term, style_term, tv_term)

    @torch.no_grad()
    def set_region_styles(self, images: Sequence[torch.Tensor | None], masks: torch.Tensor) -> None:
        """Guided Gram matrices (Gatys et al. 2017, "Controlling Perceptual Factors", spatial control):
        region k of `masks` (1, K, H, W; soft weights summing to 1 at each pixel of the image being
        optimised) is compared with `images[k]`'s Gram matrix, of the whole painting as `set_style`
        computes it, or has no style term where `images[k]` is None. Replaces any `set_style` targets.
        """
        if masks.ndim != 4 or masks.shape[0] != 1 or masks.shape[1] != len(images):
            raise ValueError(f"masks of shape {tuple(masks.shape)} for {len(images)} region styles")
        self.style_targets = {}
        self.region_targets = []
        for image in images:
            if image is None:
                self.region_targets.append(None)
                continue
            feats = self.encoder(image)
            self.region_targets.append({layer: gram_matrix(feats[layer].float()) / _positions(feats[layer])
                                        for layer in self.style_layers})
        self.region_masks = masks.detach().float()
        self._layer_masks = {}

    def _guided_style(self, feats: Mapping[str, torch.Tensor], zero: torch.Tensor) -> torch.Tensor:
        """Σ_l w_l Σ_k E_l^k with region k's Gram G_k = Σ_p m_k(p)·f(p)f(p)ᵀ: the features weighted by √m_k
        (so a feathered pixel's weights over the regions add up to 1; a hard mask gives the paper's
        F∘T exactly), the mask brought to the layer's size by area averaging. "target" divides G_k by
        the region's weight Σm_k and weights E_l^k by the region's share of the image, so a region's
        style counts per pixel as the whole image's does without a mask; "paper" keeps the paper's sum
        over regions, with M_l the region's weight."""
        assert self.region_targets is not None and self.region_masks is not None
        norm = self.normalisation
        style_term = zero
        for layer, weight in self.style_layers.items():
            f = feats[layer].float()
            roots, masses = self._masks_at(f.shape[-2], f.shape[-1])
            total = float(sum(masses))
            for region, targets in enumerate(self.region_targets):
                if targets is None or masses[region] <= _EPS:  # kept, or gone at this layer's size
                    continue
                mass = masses[region]
                gram, target = gram_matrix(f * roots[region]), targets[layer]
                if norm == "target":
                    loss = style_layer_loss(gram / mass, target, f.shape[1], 1, norm) * (mass / total)
                else:
                    loss = style_layer_loss(gram, target * mass, f.shape[1], mass, norm)
                style_term = style_term + weight * loss
        return style_term

    def _masks_at(self, height: int, width: int) -> tuple[torch.Tensor, list[float]]:
        """(√weights (K, 1, h, w), each region's weight sum) at a layer's size, kept per size."""
        key = (height, width)
        if key not in self._layer_masks:
            assert self.region_masks is not None
            small = nn.functional.interpolate(self.region_masks, size=key, mode="area")[0, :, None]
            self._layer_masks[key] = (small.sqrt(), [float(value) for value in small.sum(dim=(1, 2, 3))])
        return self._layer_masks[key]


def _positions(features: torch.Tensor) -> int:
    return features.shape[-2] * features.shape[-1]


# --- AdaIN (Huang & Belongie 2017) --------------------------------------------------------------------

Statistics = dict[str, tuple[torch.Tensor, torch.Tensor]]  # layer -> (mean, std), each (N, C, 1, 1)


def _mse(value: torch.Tensor, target: torch.Tensor, normalisation: str) -> torch.Tensor:
    """Paper: mean((x−y)²), as pytorch-AdaIN's nn.MSELoss. Target: that divided by mean(y²)."""
    error = (value - target).pow(2).mean()
    return error if normalisation == "paper" else error / (target.pow(2).mean() + _EPS)


class AdaINLoss(nn.Module):
    """The AdaIN decoder's loss over a `VGGFeatures` encoder: content ‖f(g(t)) − t‖² at the bottleneck,
    style Σ_l w_l·(‖μ(f_l(g(t))) − μ(f_l(s))‖² + ‖σ(…) − σ(…)‖²) over the style layers, plus optional TV.

    The paintings change with every batch, so their statistics (`style_statistics`) are computed per
    step and passed in, pairing photo i with painting i. Means and standard deviations are
    `adain.mean_std`'s (unbiased variance + 1e-5, as pytorch-AdaIN's calc_mean_std).
    """

    def __init__(self, encoder: nn.Module, bottleneck: str, style_layers: Mapping[str, float], *,
                 content_weight: float, style_weight: float, tv_weight: float,
                 normalisation: str = "paper") -> None:
        super().__init__()
        check_choice("loss_normalisation", normalisation, LOSS_NORMALISATIONS)
        missing = ({bottleneck} | set(style_layers)) - set(getattr(encoder, "layers", ()))
        if missing:
            raise UsageError(f"the encoder does not compute layers {sorted(missing)}")
        self.encoder = encoder
        self.bottleneck = bottleneck
        self.style_layers = dict(style_layers)
        self.content_weight, self.style_weight, self.tv_weight = content_weight, style_weight, tv_weight
        self.normalisation = normalisation

    @torch.no_grad()
    def style_statistics(self, paintings: torch.Tensor) -> Statistics:
        """Each style layer's (and the bottleneck's) per-painting mean and std: the step's targets,
        and the bottleneck statistics the AdaIN target t is made with."""
        from .adain import mean_std  # adain.py builds on features.py, which imports this module

        feats = self.encoder(paintings)
        return {layer: mean_std(feats[layer]) for layer in dict.fromkeys([*self.style_layers, self.bottleneck])}

    def forward(self, image: torch.Tensor, target: torch.Tensor, style: Statistics) -> LossTerms:
        """The loss of decoded `image` (N, 3, H, W) for AdaIN targets `target` (N, C, h, w) and the
        paintings' `style` statistics."""
        from .adain import mean_std

        norm = self.normalisation
        feats = self.encoder(image, list(dict.fromkeys([self.bottleneck, *self.style_layers])))
        content_term = _mse(feats[self.bottleneck].float(), target.float(), norm)
        style_term = image.new_zeros(())
        for layer, weight in self.style_layers.items():
            mean, std = mean_std(feats[layer])
            style_mean, style_std = style[layer]
            style_term = style_term + weight * (_mse(mean, style_mean, norm) + _mse(std, style_std, norm))
        tv_term = total_variation(image.float(), norm) if self.tv_weight else image.new_zeros(())
        content_term = self.content_weight * content_term
        style_term = self.style_weight * style_term
        tv_term = self.tv_weight * tv_term
        return LossTerms(content_term + style_term + tv_term, content_term, style_term, tv_term)
