"""Weight-free measures of a stylised clip's stability, on clips whose motion is known (`benchmarks.clips`).

All are mean absolute differences in 8-bit levels (0–255, averaged over the colour channels):
- warping error: |O_t − W(O_{t−1})| over the pixels visible in both frames, W the true motion. The
  input's own (the same on the frames fed to the stylizer) is its floor: noise and resampling.
- ghosting: |O_t − S_t| over the pixels just disoccluded (not visible in the previous frame), S_t the
  per-frame stylisation of the noise-free frame t. Carrying the previous output into pixels that
  were not there leaves trails; the new frame alone leaves none.
- fidelity: |O_t − S_t| over every pixel of every frame, so that a frozen or washed-out clip, stable
  as it is, does not win.
- unmoved error: |O_t − O_{t−1}| over the pixels of the warping error, the motion not taken out; the
  warping error's share of it is how much of the change is not the picture moving.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .clips import Clip, warp_back

LEVELS = 255.0


def warping_error(outputs: Sequence[np.ndarray], clip: Clip) -> float:
    """Mean |O_t − W(O_{t−1})| over the pixels visible in both frames, all frames pooled."""
    return _change(outputs, clip, moved=True)


def unmoved_error(outputs: Sequence[np.ndarray], clip: Clip) -> float:
    """Mean |O_t − O_{t−1}| over the same pixels: the change from frame to frame with the motion not taken
    out. Warping error over this says how much of the change is *not* the picture moving: about 1 for a
    texture that stays put as the picture moves, 0 for one that moves with it, whatever its smoothness
    (a smoother texture has a lower warping error for the same share)."""
    return _change(outputs, clip, moved=False)


def _change(outputs: Sequence[np.ndarray], clip: Clip, *, moved: bool) -> float:
    total, count = 0.0, 0
    for t in range(1, len(outputs)):
        visible = clip.visible[t - 1]
        before = np.asarray(outputs[t - 1], np.float32)
        if moved:
            before = warp_back(before, clip.backward[t - 1])
        total += float(np.abs(np.asarray(outputs[t], np.float32) - before)[visible].sum())
        count += int(visible.sum()) * before.shape[-1]
    return LEVELS * total / count if count else 0.0


def ghosting(outputs: Sequence[np.ndarray], references: Sequence[np.ndarray], clip: Clip) -> float | None:
    """Mean |O_t − S_t| over the pixels just disoccluded, all frames pooled; None if the clip has none."""
    total, count = 0.0, 0
    for t in range(1, len(outputs)):
        uncovered = ~clip.visible[t - 1]
        difference = np.abs(np.asarray(outputs[t], np.float32) - np.asarray(references[t], np.float32))
        total += float(difference[uncovered].sum())
        count += int(uncovered.sum()) * difference.shape[-1]
    return LEVELS * total / count if count else None


def fidelity(outputs: Sequence[np.ndarray], references: Sequence[np.ndarray]) -> float:
    """Mean |O_t − S_t| over every pixel of every frame: the distance to per-frame stylisation."""
    distances = [np.abs(np.asarray(o, np.float32) - np.asarray(s, np.float32)).mean()
                 for o, s in zip(outputs, references, strict=True)]
    return LEVELS * float(np.mean(distances))


def disoccluded_share(clip: Clip) -> float:
    """The share of pixels, over frames 1…, that were not visible in the previous frame."""
    return float(np.mean([(~visible).mean() for visible in clip.visible])) if clip.visible else 0.0


def scores(outputs: Sequence[np.ndarray], references: Sequence[np.ndarray], clip: Clip) -> dict:
    """All three measures of one stylised clip, with the input's own warping error (the floor)."""
    return {"warping_error": warping_error(outputs, clip), "input_warping_error": warping_error(clip.frames, clip),
            "unmoved_error": unmoved_error(outputs, clip),
            "ghosting": ghosting(outputs, references, clip), "fidelity": fidelity(outputs, references)}
