"""A painting as an arbitrary-style model sees it: its per-channel mean and standard deviation at
the model's bottleneck layer (adain.py). Computed once per painting, reused for every photo and
every frame of a clip; torch-free, so the ONNX Runtime path shares it.

Blending paintings blends their statistics: AdaIN's output for weights wₖ summing to 1 is
Σ wₖ(σₖ·n + μₖ) = (Σ wₖσₖ)·n + Σ wₖμₖ, with n the normalised photo features, so interpolating
the AdaIN outputs (the paper's style interpolation) is exactly AdaIN with the blended statistics.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from .errors import UsageError


@dataclass(frozen=True)
class StyleStatistics:
    """(C,) float32 mean and std of a painting's bottleneck features, and where they came from."""

    mean: np.ndarray
    std: np.ndarray
    source: dict = field(default_factory=dict)  # e.g. the painting's name and SHA-256, for the settings record

    def __post_init__(self) -> None:
        mean = np.asarray(self.mean, dtype=np.float32).reshape(-1)
        std = np.asarray(self.std, dtype=np.float32).reshape(-1)
        if mean.shape != std.shape:
            raise ValueError(f"style mean {mean.shape} and std {std.shape} differ in size")
        if not (np.isfinite(mean).all() and np.isfinite(std).all()):
            raise ValueError("style statistics are not finite")
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "std", std)

    @property
    def channels(self) -> int:
        return int(self.mean.shape[0])


def normalised_weights(weights: Sequence[float] | None, count: int) -> list[float]:
    """Blend weights for `count` style images, scaled to sum to 1; None: equal. The one check of
    `--style-blend`, for Gatys (losses.py) and arbitrary-style models alike."""
    if count == 0:
        raise UsageError("at least one style image is needed")
    if weights is None:
        return [1.0 / count] * count
    values = [float(w) for w in weights]
    if len(values) != count:
        raise UsageError(f"--style-blend has {len(values)} weights for {count} style images")
    if any(not np.isfinite(w) or w < 0 for w in values) or sum(values) <= 0:
        raise UsageError("--style-blend weights must be non-negative and not all zero")
    total = sum(values)
    return [w / total for w in values]


def blend_statistics(styles: Sequence[StyleStatistics], weights: Sequence[float] | None = None) -> StyleStatistics:
    """The statistics whose AdaIN output is the weighted interpolation of the paintings' outputs."""
    blend = normalised_weights(weights, len(styles))
    if len({style.channels for style in styles}) != 1:
        raise UsageError("these style statistics come from different models (their channels differ)")
    if len(styles) == 1:
        return styles[0]
    mean = sum(w * style.mean for w, style in zip(blend, styles))
    std = sum(w * style.std for w, style in zip(blend, styles))
    return StyleStatistics(np.asarray(mean), np.asarray(std),
                           {"blend": [{**style.source, "weight": w} for w, style in zip(blend, styles)]})
