"""flow.py: DIS flow recovers known motion, warping brings a frame into the next one's geometry,
the visibility test finds disocclusions, and FlowBlender follows the motion and restarts at cuts."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from painterly import flow

SHIFT = (2.5, -1.5)  # (dx, dy): current(p) = previous(p + SHIFT)
MARGIN = 8  # pixels from the edges where a frame's content came from beyond it


def texture(height: int, width: int, dx: float = 0.0, dy: float = 0.0, *, seed: int = 0) -> np.ndarray:
    """A smooth random texture sampled at (x + dx, y + dy): shifted copies are exact, to the sub-pixel."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    image = np.zeros((height, width, 3))
    for _ in range(12):
        fx, fy = rng.uniform(-0.6, 0.6, 2)
        image += rng.uniform(0.2, 1.0, 3) * np.sin(fx * (x + dx) + fy * (y + dy) + rng.uniform(0, 2 * np.pi))[..., None]
    return (0.5 + image / 12).astype(np.float32)


def square_over_background(left: int, *, top: int = 22, side: int = 20) -> np.ndarray:
    """A textured square over a still textured background, its left edge at `left`."""
    frame = texture(64, 64, seed=1)
    frame[top : top + side, left : left + side] = 0.4 + 0.6 * texture(side, side, seed=2)[::-1]
    return frame


def interior(array: np.ndarray) -> np.ndarray:
    return array[MARGIN:-MARGIN, MARGIN:-MARGIN]


@pytest.fixture(scope="module")
def pair() -> tuple[np.ndarray, np.ndarray]:
    """(previous, current): a texture and the same texture moved by SHIFT."""
    return texture(64, 64), texture(64, 64, *SHIFT)


# --- flow ----------------------------------------------------------------------------------------


def test_backward_flow_recovers_a_known_translation(pair):
    previous, current = pair
    backward = flow.flow_between(current, previous)
    assert backward.shape == (64, 64, 2) and backward.dtype == np.float32
    assert np.abs(interior(backward) - SHIFT).max() < 0.5


def test_forward_flow_is_the_opposite_motion(pair):
    previous, current = pair
    forward = flow.flow_between(previous, current)
    assert np.abs(interior(forward) + SHIFT).max() < 0.5


def test_eight_bit_frames_give_the_same_flow(pair):
    previous, current = (np.round(frame * 255).astype(np.uint8) for frame in pair)
    assert np.abs(interior(flow.flow_between(current, previous)) - SHIFT).max() < 0.5


def test_flow_found_at_a_smaller_working_size_is_scaled_back(pair, monkeypatch):
    """Frames over FLOW_LONG_SIDE are measured downscaled: the vectors come back in the frame's pixels."""
    monkeypatch.setattr(flow, "FLOW_LONG_SIDE", 32)
    previous, current = texture(64, 64), texture(64, 64, 4.0, -2.0)
    backward = flow.flow_between(current, previous)
    assert backward.shape == (64, 64, 2)
    assert np.abs(np.median(interior(backward).reshape(-1, 2), axis=0) - (4.0, -2.0)).max() < 0.5
    found = flow.motion(previous, current)
    assert found.backward.shape == found.forward.shape == (64, 64, 2) and found.visible.shape == (64, 64)
    assert interior(found.visible).mean() > 0.9


def test_frames_of_different_sizes_are_refused(pair):
    with pytest.raises(ValueError, match="differ in size"):
        flow.flow_between(pair[0], pair[1][:32])


# --- warp ----------------------------------------------------------------------------------------


def test_warp_brings_the_previous_frame_onto_the_current_one(pair):
    previous, current = pair
    found = flow.motion(previous, current)
    warped = flow.warp(previous, found.backward)
    visible = found.visible > 0.5
    assert visible.mean() > 0.8
    before, after = np.abs(previous - current)[visible].mean(), np.abs(warped - current)[visible].mean()
    assert after < 0.1 * before


def test_warp_by_a_whole_pixel_is_a_shift():
    image = np.random.default_rng(0).random((16, 16, 3)).astype(np.float32)
    moved = flow.warp(image, np.broadcast_to(np.float32([1, 0]), (16, 16, 2)).copy())
    np.testing.assert_allclose(moved[:, :-1], image[:, 1:], atol=1e-6)
    np.testing.assert_allclose(moved[:, -1], image[:, -1], atol=1e-6)  # the border is replicated


def test_warp_keeps_any_number_of_channels():
    image = np.random.default_rng(0).random((8, 8, 6)).astype(np.float32)
    still = np.zeros((8, 8, 2), np.float32)
    np.testing.assert_allclose(flow.warp(image, still), image, atol=1e-6)
    np.testing.assert_allclose(flow.warp(image[..., 0], still), image[..., 0], atol=1e-6)
    assert flow.warp(image[..., :1], still).shape == (8, 8, 1)


# --- visibility ----------------------------------------------------------------------------------


def constant(dx: float, dy: float, size: int = 16) -> np.ndarray:
    return np.broadcast_to(np.float32([dx, dy]), (size, size, 2)).copy()


def test_consistent_flows_are_visible_except_what_came_from_beyond_the_edge():
    visible = flow.visibility(constant(2, 0), constant(-2, 0))
    assert visible.dtype == np.float32 and visible.shape == (16, 16)
    assert (visible[:, :14] == 1).all() and (visible[:, 14:] == 0).all()  # x + 2 lands outside for x >= 14


def test_inconsistent_flows_are_occluded():
    assert (flow.visibility(constant(2, 0), constant(2, 0))[:, :14] == 0).all()  # going and coming back disagree


def test_a_motion_boundary_is_not_visible():
    backward, forward = np.zeros((16, 16, 2), np.float32), np.zeros((16, 16, 2), np.float32)
    backward[:, 8:, 0], forward[:, 8:, 0] = -1.0, 1.0  # the right half moved right by a pixel
    visible = flow.visibility(backward, forward)
    assert (visible[:, 7:9] == 0).all()  # the step in the flow
    assert (visible[:, :6] == 1).all() and (visible[:, 10:] == 1).all()


def test_a_moving_square_uncovers_a_strip_that_is_not_visible():
    previous, current = square_over_background(16), square_over_background(22)
    found = flow.motion(previous, current)
    assert found.visible.shape == (64, 64)
    assert (found.visible[22:42, 16:22] == 0).all()  # the background the square uncovered: none of it blended
    assert (found.visible[:, 58:] == 1).all() and (found.visible[:6] == 1).all()  # far from it


def test_occlusions_are_widened_by_the_local_motion():
    """DIS carries a moving edge's motion into the band it just uncovered, where Ruder et al.'s tests pass:
    the visibility falls to 0 within twice the motion across the edge, and rises back further out."""
    width = flow.FLOW_LONG_SIDE  # where the spread is measured over 16 px each way (a share of the frame)
    backward = np.zeros((8, width, 2), np.float32)
    backward[:, 32:, 0] = -4.0  # the right part moved right by 4 px
    visible = np.ones((8, width), np.float32)
    visible[:, 31:33] = 0.0  # the step, as `visibility` finds it
    widened = flow.widen_occlusions(visible, backward)
    assert (widened[:, 23:41] == 0).all()  # within 2 × 4 px of the step
    assert (0 < widened[:, 20]).all() and (widened[:, 20] < 1).all()  # fading back in
    assert (widened[:, :14] == 1).all() and (widened[:, 50:] == 1).all()  # the flow around is uniform
    uniform = np.broadcast_to(np.float32([3, 1]), (8, width, 2)).copy()
    np.testing.assert_array_equal(flow.widen_occlusions(visible, uniform), visible)  # no motion edge: unchanged


def test_content_appears_where_the_flow_compresses_smoothly_but_not_under_a_zoom():
    """Beside a flat background DIS turns an edge's motion into the background's gradually, with no step for
    `visibility` to find; the uncovered area is still there as a compression of the backward map. A camera
    zoom compresses every pixel alike, and a rigid motion not at all: nothing appeared."""
    width = flow.FLOW_LONG_SIDE  # smoothed over 10 px at this size
    backward = np.zeros((8, width, 2), np.float32)
    backward[:, :, 0] = np.interp(np.arange(width), [300, 380], [0.0, -8.0])  # right part moved 8 px right
    found = flow.appeared(backward)
    assert found.shape == (8, width) and found[:, 310:370].all()  # 8 px appeared over those 80
    assert not found[:, :270].any() and not found[:, 410:].any()
    ys, xs = np.mgrid[0:48, 0:64].astype(np.float32)
    zoom = np.stack([xs - 31.5, ys - 23.5], axis=-1) * np.float32(1 / 1.05 - 1)  # 5 % closer a frame
    assert not flow.appeared(zoom).any() and not flow.appeared(constant(3, -2, 64)).any()


# --- FlowBlender ---------------------------------------------------------------------------------


def test_blender_follows_the_motion(pair):
    """Styled frames that move with the input: the previous output warped onto the current one."""
    previous, current = pair
    blender = flow.FlowBlender(0.8)
    first = blender(previous, texture(64, 64, seed=5))
    styled = texture(64, 64, *SHIFT, seed=5)  # the same painting, moved with the scene
    noisy = styled + np.random.default_rng(0).normal(0, 0.05, styled.shape).astype(np.float32)
    blended = blender(current, noisy)
    expected = 0.2 * noisy + 0.8 * flow.warp(first, flow.flow_between(current, previous))
    np.testing.assert_allclose(interior(blended), interior(expected), atol=1e-4)
    assert np.abs(interior(blended - styled)).mean() < 0.4 * np.abs(interior(noisy - styled)).mean()


def test_blender_scales_the_motion_to_a_resized_output(pair):
    """`size` can make the stylised frames smaller than the input: the flow is scaled to them."""
    previous, current = pair
    blender = flow.FlowBlender(0.8)
    blender(previous, texture(32, 32, seed=5))
    styled = texture(32, 32, SHIFT[0] / 2, SHIFT[1] / 2, seed=5)  # moved as the scene, in its own pixels
    noisy = styled + np.random.default_rng(0).normal(0, 0.05, styled.shape).astype(np.float32)
    blended = blender(current, noisy)
    assert blended.shape == (32, 32, 3)
    inner = (slice(4, -4), slice(4, -4))
    assert np.abs((blended - styled)[inner]).mean() < 0.4 * np.abs((noisy - styled)[inner]).mean()


def test_blender_takes_the_new_frame_where_the_square_uncovered_background():
    """No ghost: the just-uncovered strip is the new stylised frame alone, not the warped old output."""
    blender = flow.FlowBlender(0.8)
    blender(square_over_background(16), texture(64, 64, seed=5))
    styled = texture(64, 64, seed=6)
    blended = blender(square_over_background(22), styled)
    np.testing.assert_array_equal(blended[22:42, 16:22], styled[22:42, 16:22])
    assert not np.allclose(blended[:6], styled[:6])  # far from the square: blended


def test_blender_restarts_at_a_scene_cut_and_a_size_change(pair):
    blender = flow.FlowBlender(0.8)
    styled = [texture(64, 64, seed=seed) for seed in (5, 6, 7, 8)]
    blender(pair[0], styled[0])
    assert not np.allclose(blender(pair[1], styled[1]), styled[1])  # same shot: blended
    cut = 1.0 - pair[1]
    np.testing.assert_array_equal(blender(cut, styled[2]), styled[2])  # new shot: starts afresh
    np.testing.assert_array_equal(blender(cut[:32], styled[3][:32]), styled[3][:32])  # new size too


def test_blender_keeps_eight_bit_frames_eight_bit(pair):
    blender = flow.FlowBlender(0.5)
    styled = [np.round(texture(64, 64, seed=seed) * 255).astype(np.uint8) for seed in (5, 6)]
    blender(pair[0], styled[0])
    assert blender(pair[1], styled[1]).dtype == np.uint8


def test_strength_zero_is_per_frame(pair):
    styled = texture(64, 64, seed=5)
    blender = flow.FlowBlender(0.0)
    assert blender(pair[0], styled) is styled and blender(pair[1], styled) is styled


@pytest.mark.parametrize("strength", [-0.1, 1.0])
def test_strength_out_of_range_is_refused(strength):
    with pytest.raises(ValueError, match="strength must be at least 0 and below 1"):
        flow.FlowBlender(strength)


def test_scene_cut_compares_thumbnails():
    frame = texture(32, 32)
    assert not flow.is_scene_cut(flow.scene_thumbnail(frame), flow.scene_thumbnail(frame + 0.05))
    assert flow.is_scene_cut(flow.scene_thumbnail(frame), flow.scene_thumbnail(1.0 - frame))
    assert flow.is_scene_cut(flow.scene_thumbnail(frame), flow.scene_thumbnail(frame[:16]))


def test_without_opencv_blending_is_one_line_and_smoothing_still_works():
    script = ("import sys; sys.modules['cv2'] = None\n"
              "import numpy as np, painterly.flow as flow, painterly.video as video\n"
              "frames = [np.full((8, 8, 3), v, np.float32) for v in (0.2, 0.3)]\n"
              "smoother, still = video.Smoother(0.5), flow.FlowBlender(0.0)\n"
              "assert np.allclose([smoother(f, f).mean() for f in frames], [0.2, 0.25])\n"
              "assert still(frames[0], frames[1]) is frames[1]\n"
              "try:\n    flow.FlowBlender(0.5)\nexcept Exception as error:\n    print(type(error).__name__, error)\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ("UsageError motion-compensated video (stabilize) needs OpenCV: "
                                     "pip install 'painterly[flow]'")
