"""Optical flow between video frames, and motion-compensated blending of their stylised outputs.

A fast-style network paints each frame on its own, so a pixel's texture changes from frame to
frame even where the scene does not (flicker). Blending each stylised frame with the previous
output *warped along the input's motion* keeps the painted texture attached to what it paints;
where a pixel was not visible in the previous frame (it was just uncovered, or a cut started a new
shot) the new frame is taken alone, so nothing ghosts there (Ruder et al. 2016's occlusion test,
applied at run time as Lai et al. 2018 do).

The flow is OpenCV's DIS (Kroeger et al. 2016), a weight-free CPU estimator, from the optional
extra `flow` (`opencv-python-headless`); cv2 is imported when flow is first needed, so the rest of
painterly runs without it. Where torchvision's RAFT weights can be had, `estimator("raft-small")` or
`"raft-large"` (`flow_raft`) finds the flows instead; the visibility is decided the same way for both
(its thresholds were tuned on DIS's flows). Frames are numpy arrays in and out (HxWx3, float32 in
[0, 1] or uint8), flows (H, W, 2) float32 in pixels, (x, y).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from .config import FLOWS, check_choice
from .errors import UsageError
from .events import Callback, ignore

__all__ = ["FLOWS", "SCENE_CUT", "FlowBlender", "FlowEstimator", "Motion", "appeared", "estimator", "flow_between",
           "is_scene_cut", "motion", "require_opencv", "scene_thumbnail", "visibility", "warp", "widen_occlusions"]


# A mean absolute difference (in [0, 1]) between consecutive input frames above this is a scene
# cut: temporal blending (`--smooth`, `--stabilize`) restarts there rather than blending two
# shots. Motion and sensor noise stay well below it (typically < 0.05); a cut between unrelated
# shots is typically 0.2-0.4.
SCENE_CUT = 0.15
_CUT_STRIDE = 4  # compare every 4th pixel each way: a cut shows at any resolution

# Flow is computed with the long side at most this many pixels, then upsampled (and its vectors
# scaled). DIS's cost grows with the pixel count, while a blend needs only where each painted
# stroke went, and strokes are many pixels wide. The downscale also averages sensor noise away,
# which misleads the flow most: on a noisy 480p pan FAST's error was 0.29 px at 640 px against
# 0.35 px at full size.
FLOW_LONG_SIDE = 640
# DIS's MEDIUM preset. At the working size, on a 480p pan and a zoom with a 1-degree rotation
# (sensor noise sigma 0.02), its end-point error was 0.26 and 0.39 px against FAST's 0.29 and 0.54
# (0.11 and 0.16 against 0.26 and 0.46 without noise), and it found 1-4 % more pixels visible.
# FlowBlender takes about 0.15 s a 480p frame on two CPU cores (FAST: 0.06 s), most of it the two
# flows, beside the 2-5 s the fast network takes for that frame there. On a GPU the network is far
# faster and the flow sets the pace: FAST would be the better trade there.
_PRESET = "MEDIUM"

# Ruder et al. 2016: a pixel is occluded where the backward flow and the forward flow
# it lands on do not cancel, relative to their lengths; and on a motion boundary, where the flow's
# gradient is large relative to the flow itself.
_CONSISTENCY_RELATIVE, _CONSISTENCY_ABSOLUTE = 0.01, 0.5
_BOUNDARY_RELATIVE, _BOUNDARY_ABSOLUTE = 0.01, 0.002
# Those tests miss a band beside a moving edge: DIS matches patches, so it carries an object's motion a
# few pixels past its trailing edge, into the background just uncovered there, and both flows then
# agree. That band is as wide as the relative motion across the edge, so `widen_occlusions` takes the
# visibility to 0 within _FADE_START × the local spread of the flow (its max − min over a window
# _SPREAD_RADIUS pixels each way at FLOW_LONG_SIDE, the same share of a smaller frame: at 64 px a
# 33-pixel window is half the frame, and the flow's noise there cut the blend everywhere) of an
# occluded pixel, and back to 1 over _FADE_WIDTH × spread + 1 pixels more. On the benchmark's noisy
# moving-object clip (640×480, 24 frames, strength 0.8) the just-uncovered pixels' mean visibility fell
# from 0.37 to 0.03 and their ghosting from 20.61 to 16.80 levels (per frame: 16.57), while the warping
# error rose from 29 % to 36 % of per frame's; on the noisy pan (uncovered pixels only at the edge)
# ghosting went from 18.41 to 18.39 (per frame 18.40), warping error from 25 % to 29 %. It costs about
# 16 ms of CPU a 640×480 working frame (one OpenCV thread), beside the 20 ms of `visibility`.
_FADE_START, _FADE_WIDTH, _SPREAD_RADIUS = 2.5, 2.0, 16
# Both tests, and that widening, need an occluded pixel near the band. Where the background beside a
# moving edge is flat (the sky above the benchmark's moving disc), DIS spreads the object's motion far
# into it and turns it back into the background's only gradually, so neither test fires anywhere near
# the band just uncovered, and matching flat sky onto flat sky leaves no photometric trace either. The
# uncovered area still shows in the flow: where content appeared, the backward map p ↦ p + b(p)
# compresses (a window of the current frame came from a smaller area of the previous one), by the
# motion across the edge over the width DIS spread it. `appeared` finds where the map's area change
# (its Jacobian determinant less 1, of the flow smoothed over _AREA_SIGMA pixels at FLOW_LONG_SIDE, the
# same share of smaller frames) is below the frame's median by more than _AREA_DROP; the median takes
# out a camera zoom, which compresses every pixel alike (0.6 % a frame on the benchmark's zoom).
# With it (and _FADE_START 2.5, was 2) the noisy moving-object clip's just-uncovered pixels' mean visibility
# fell from 0.029 to 0.001 and its ghosting from 16.80 to 16.572 (per frame 16.574), warping error 36 % →
# 38 % of per frame's; the noisy pan's 18.393 (per frame 18.396), 29 % → 32 %. About 19 ms of CPU a
# 640×480 working frame (one OpenCV thread, on a loaded machine), beside `visibility`'s 23 there.
_AREA_SIGMA, _AREA_DROP = 10.0, 0.02

_MISSING_CV2 = "motion-compensated video (stabilize) needs OpenCV: pip install 'painterly[flow]'"


@dataclass(frozen=True)
class Motion:
    """The motion between two frames, in the current frame's geometry."""

    backward: np.ndarray  # (H, W, 2): previous sampled at p + backward(p) ≈ current at p
    forward: np.ndarray  # (H, W, 2): current sampled at p + forward(p) ≈ previous at p
    visible: np.ndarray  # (H, W) in [0, 1]: the current pixel was visible in the previous frame (widened)


class FlowEstimator(Protocol):
    """Where flows come from: `prepare` turns a frame into what `flows` takes (kept for the next pair), and
    `flows` gives (backward, forward) between two prepared frames at their working size, in its pixels."""

    def prepare(self, frame: np.ndarray) -> Any: ...

    def flows(self, previous: Any, current: Any) -> tuple[np.ndarray, np.ndarray]: ...


class _Dis:
    """OpenCV's DIS on grey frames at most FLOW_LONG_SIDE on the long side."""

    name = "dis"

    def prepare(self, frame: np.ndarray) -> np.ndarray:
        return _grey(frame)

    def flows(self, previous: np.ndarray, current: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return _dis(current, previous), _dis(previous, current)


def estimator(name: str = "dis", *, device: str = "cpu", callback: Callback = ignore) -> FlowEstimator:
    """The flow estimator `name` (one of FLOWS); RAFT's weights are loaded now (fetched if absent, one line
    when they cannot be), so that nothing fails at the second frame. Each needs OpenCV for the rest."""
    require_opencv()
    check_choice("flow", name, FLOWS)
    if name == "dis":
        return _Dis()
    from .flow_raft import RaftFlow

    return RaftFlow(name, device, long_side=FLOW_LONG_SIDE, callback=callback)


def flow_between(current: np.ndarray, previous: np.ndarray) -> np.ndarray:
    """Backward flow, (H, W, 2) float32 in pixels (x, y): previous sampled at p + f(p) ≈ current at p.

    Frames are HxWx3 float32 in [0, 1] (or uint8), same size. Computed at most FLOW_LONG_SIDE
    pixels on the long side (see there), returned at the frames' size.
    """
    _check_pair(current, previous)
    size = current.shape[:2]
    return _resize_flow(_dis(_grey(current), _grey(previous)), size)


def warp(image: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """`image` (a previous frame or its stylised output, HxWxC) sampled at p + flow(p), bilinear,
    border replicated: brought into the current frame's geometry."""
    height, width = flow.shape[:2]
    if image.shape[:2] != (height, width):
        raise ValueError(f"image {image.shape[:2]} and flow {flow.shape[:2]} differ in size")
    xs, ys = _grid(height, width)
    map_x, map_y = xs + flow[..., 0], ys + flow[..., 1]
    if image.ndim == 2:
        return _remap(image, map_x, map_y)
    # cv2.remap takes at most four channels, and drops a single channel's axis
    chunks = [_remap(image[..., start : start + 4], map_x, map_y) for start in range(0, image.shape[2], 4)]
    return np.concatenate([chunk.reshape(height, width, -1) for chunk in chunks], axis=2)


def visibility(backward: np.ndarray, forward: np.ndarray) -> np.ndarray:
    """(H, W) float32 in [0, 1]: 1 where the current pixel was visible in the previous frame —
    forward/backward consistent and not on a motion boundary (Ruder et al. 2016's criteria).

    `backward` is the current frame's flow to the previous one, `forward` the previous frame's to
    the current one. A pixel whose backward flow lands outside the previous frame came in from
    beyond its edge: not visible either (the replicated border is not what was there).
    """
    height, width = backward.shape[:2]
    if forward.shape != backward.shape:
        raise ValueError(f"backward {backward.shape} and forward {forward.shape} flows differ in size")
    u, v = backward[..., 0], backward[..., 1]
    returned = warp(forward, backward)  # the forward flow where each current pixel came from
    ru, rv = returned[..., 0], returned[..., 1]
    length = u * u + v * v
    consistent = (u + ru) ** 2 + (v + rv) ** 2 <= (
        _CONSISTENCY_RELATIVE * (length + ru * ru + rv * rv) + _CONSISTENCY_ABSOLUTE)
    du_dy, du_dx = np.gradient(u)
    dv_dy, dv_dx = np.gradient(v)
    gradient = du_dx**2 + du_dy**2 + dv_dx**2 + dv_dy**2
    smooth = gradient <= _BOUNDARY_RELATIVE * length + _BOUNDARY_ABSOLUTE
    xs, ys = _grid(height, width)
    x, y = xs + u, ys + v
    inside = (x > -0.5) & (x < width - 0.5) & (y > -0.5) & (y < height - 0.5)  # within the outer pixels
    return (consistent & smooth & inside).astype(np.float32)


def widen_occlusions(visible: np.ndarray, backward: np.ndarray) -> np.ndarray:
    """`visibility`'s mask, (H, W) in [0, 1], lowered near occluded pixels by the local motion (see
    _FADE_START): 0 within twice the flow's local spread of one, rising to 1 further out. Where the
    flow is uniform it is the mask unchanged."""
    if visible.shape != backward.shape[:2]:
        raise ValueError(f"visibility {visible.shape} and flow {backward.shape[:2]} differ in size")
    cv2 = _cv2()
    radius = max(1, round(_SPREAD_RADIUS * max(visible.shape) / FLOW_LONG_SIDE))  # the same share of any frame
    window = np.ones((2 * radius + 1, 2 * radius + 1), np.uint8)
    spread = np.zeros(visible.shape, np.float32)
    for axis in (0, 1):
        component = np.ascontiguousarray(backward[..., axis])
        spread += (cv2.dilate(component, window) - cv2.erode(component, window)) ** 2
    spread = np.sqrt(spread)
    seen = (visible >= 1).astype(np.uint8)
    if seen.all():
        return visible
    distance = cv2.distanceTransform(seen, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)  # to the nearest occluded pixel
    fade = np.clip((distance - _FADE_START * spread) / (_FADE_WIDTH * spread + 1.0), 0.0, 1.0)
    return np.minimum(visible, fade).astype(np.float32)


def appeared(backward: np.ndarray) -> np.ndarray:
    """(H, W) bool: where content appeared that the previous frame did not show, found as a compression of
    the backward map beyond the frame's own (see _AREA_DROP); False everywhere for a rigid or uniformly
    zooming motion."""
    cv2 = _cv2()
    sigma = max(1.0, _AREA_SIGMA * max(backward.shape[:2]) / FLOW_LONG_SIDE)
    u, v = (cv2.GaussianBlur(np.ascontiguousarray(backward[..., axis]), (0, 0), sigma) for axis in (0, 1))
    du_dy, du_dx = np.gradient(u)
    dv_dy, dv_dx = np.gradient(v)
    change = (1.0 + du_dx) * (1.0 + dv_dy) - du_dy * dv_dx - 1.0
    return change < float(np.median(change)) - _AREA_DROP


def motion(previous: np.ndarray, current: np.ndarray, flows: FlowEstimator | None = None) -> Motion:
    """Both flows between two frames and the visibility of the current frame's pixels (DIS's flows
    unless `flows` says otherwise)."""
    _check_pair(current, previous)
    flows = flows or _Dis()
    return _motion(flows.prepare(previous), flows.prepare(current), current.shape[:2], flows)


class FlowBlender:
    """One clip's state: each stylised frame blended with the previous OUTPUT warped along the
    input's motion, weight `strength` × visible; disoccluded pixels and scene cuts take the new
    frame alone (a cut restarts the chain).

    out_t = styled_t + strength·visible·(warp(out_{t-1}) − styled_t): an exponential average that
    follows the motion, so painted texture stays on what it paints instead of trailing behind it
    (`--smooth`'s ghosts). A change of frame size restarts the chain as a cut does. The flow comes
    from the *input* frames (the styled ones' texture would mislead it), at FLOW_LONG_SIDE, and is
    scaled to the styled frame's size, which `size` may have made different. It keeps the previous
    output and the previous input as the flow estimator prepared it (DIS: grey, downscaled).
    """

    def __init__(self, strength: float, flows: FlowEstimator | None = None) -> None:
        if not 0.0 <= strength < 1.0:  # users' settings are checked by ApplyConfig, with their names
            raise ValueError(f"strength must be at least 0 and below 1 (1 would freeze the clip), got {strength}")
        self.strength = strength
        if strength > 0.0:
            require_opencv()  # one line before the first frame, not after it
        self._flows = flows or _Dis()
        self._output: np.ndarray | None = None
        self._grey: Any = None  # the previous input frame, as the flow estimator takes it
        self._thumbnail: np.ndarray | None = None  # the previous input frame, for cut detection

    def __call__(self, original: np.ndarray, styled: np.ndarray) -> np.ndarray:
        if self.strength == 0.0:
            return styled
        grey, thumbnail = self._flows.prepare(original), scene_thumbnail(original)
        new = styled.astype(np.float32) / 255 if styled.dtype == np.uint8 else styled.astype(np.float32, copy=False)
        output = new
        if self._continues(grey, thumbnail, new):
            assert self._grey is not None and self._output is not None  # _continues checked
            found = _motion(self._grey, grey, new.shape[:2], self._flows)
            weight = (self.strength * found.visible)[..., None]
            output = new + weight * (warp(self._output, found.backward) - new)
        self._output, self._grey, self._thumbnail = output, grey, thumbnail
        return np.clip(output * 255 + 0.5, 0, 255).astype(np.uint8) if styled.dtype == np.uint8 else output

    def _continues(self, grey: Any, thumbnail: np.ndarray, styled: np.ndarray) -> bool:
        """Whether this frame continues the previous shot (same sizes, no cut)."""
        if self._output is None or self._grey is None or self._thumbnail is None:
            return False
        if self._output.shape != styled.shape or tuple(self._grey.shape) != tuple(grey.shape):
            return False
        return not is_scene_cut(self._thumbnail, thumbnail)


def scene_thumbnail(frame: np.ndarray) -> np.ndarray:
    """A float copy of every _CUT_STRIDE-th pixel each way, kept to compare with the next frame."""
    sample = frame[::_CUT_STRIDE, ::_CUT_STRIDE]
    return sample.astype(np.float32) / 255 if sample.dtype == np.uint8 else sample.astype(np.float32)


def is_scene_cut(previous: np.ndarray, current: np.ndarray) -> bool:
    """Whether two consecutive frames' `scene_thumbnail`s belong to different shots (or sizes)."""
    if previous.shape != current.shape:
        return True
    return float(np.abs(current - previous).mean()) >= SCENE_CUT


def require_opencv() -> None:
    """Raise the one-line `UsageError` naming the `flow` extra when OpenCV is not installed:
    callers check before any work, not at the second frame."""
    _cv2()


# --- helpers ------------------------------------------------------------------------------------


def _cv2() -> Any:
    try:
        import cv2
    except ImportError:
        raise UsageError(_MISSING_CV2) from None
    return cv2


def _check_pair(current: np.ndarray, previous: np.ndarray) -> None:
    if current.shape[:2] != previous.shape[:2]:
        raise ValueError(f"frames differ in size: {current.shape[:2]} and {previous.shape[:2]}")


def _grey(frame: np.ndarray) -> np.ndarray:
    """The frame as DIS takes it: 8-bit grey, the long side at most FLOW_LONG_SIDE."""
    cv2 = _cv2()
    eight_bit = frame if frame.dtype == np.uint8 else np.clip(frame * 255 + 0.5, 0, 255).astype(np.uint8)
    grey = cv2.cvtColor(eight_bit, cv2.COLOR_RGB2GRAY) if eight_bit.ndim == 3 else eight_bit
    height, width = grey.shape
    scale = FLOW_LONG_SIDE / max(height, width)
    if scale >= 1.0:
        return np.ascontiguousarray(grey)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return cv2.resize(grey, size, interpolation=cv2.INTER_AREA)


def _dis(current: np.ndarray, previous: np.ndarray) -> np.ndarray:
    """DIS flow at the grey frames' size: previous sampled at p + f(p) ≈ current at p."""
    cv2 = _cv2()
    estimator = cv2.DISOpticalFlow_create(getattr(cv2, f"DISOPTICAL_FLOW_PRESET_{_PRESET}"))
    return estimator.calc(current, previous, None).astype(np.float32, copy=False)


def _motion(previous: Any, current: Any, size: tuple[int, int], flows: FlowEstimator) -> Motion:
    """Both flows and the visibility (`visibility`'s less what `appeared`, widened by `widen_occlusions`) from
    two frames as `flows` prepared them, at `size`.

    The visibility is decided at the working size, where the flows were found (its thresholds are
    in those pixels), then resized: a soft edge where a full-size test would have a jagged one.
    """
    backward, forward = flows.flows(previous, current)
    visible = widen_occlusions(np.where(appeared(backward), np.float32(0), visibility(backward, forward)), backward)
    if visible.shape != size:
        visible = np.clip(_cv2().resize(visible, (size[1], size[0]), interpolation=_cv2().INTER_LINEAR), 0, 1)
    return Motion(_resize_flow(backward, size), _resize_flow(forward, size), visible)


def _resize_flow(flow: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A flow at another size: resampled, and its vectors scaled to the new pixels."""
    height, width = size
    if flow.shape[:2] == (height, width):
        return flow
    cv2 = _cv2()
    resized = cv2.resize(flow, (width, height), interpolation=cv2.INTER_LINEAR)
    resized[..., 0] *= width / flow.shape[1]
    resized[..., 1] *= height / flow.shape[0]
    return resized


@functools.lru_cache(maxsize=4)  # a clip's frame size, and its working size
def _grid(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Each pixel's (x, y), read-only: shared by every call at this size."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    xs.flags.writeable = ys.flags.writeable = False
    return xs, ys


def _remap(image: np.ndarray, map_x: np.ndarray, map_y: np.ndarray) -> np.ndarray:
    cv2 = _cv2()
    source = image if image.dtype in (np.uint8, np.float32) else image.astype(np.float32)
    return cv2.remap(np.ascontiguousarray(source), map_x, map_y, interpolation=cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_REPLICATE)

