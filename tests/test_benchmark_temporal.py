"""The temporal benchmark (issue 12): its clips' known motion, its metrics on clips whose answer is
known, and `python -m benchmarks --tiny --only video-temporal` end to end."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
import pytest

import cli_processes
from benchmarks import clips, suite, temporal_report
from benchmarks.temporal_metrics import fidelity, ghosting, unmoved_error, warping_error
from benchmarks.temporal_report import _smooth_ghosting_at, matched_weight

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = ["per-frame", "smooth 0.5", "smooth 0.8", "stabilize 0.5", "stabilize 0.8"]
SCORES = {"warping_error", "input_warping_error", "ghosting", "fidelity", "frames_per_s", "frames", "peak_rss"}


def painted(frame: np.ndarray) -> np.ndarray:
    """A deterministic per-pixel 'style': no neighbourhood, so it commutes with whole-pixel motion."""
    return (frame ** 2 * np.array([1.0, 0.6, 0.3], np.float32)).astype(np.float32)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("temporal") / "bench.json"
    # Forked from the test zygote, where torch is imported already.
    done = cli_processes.run([sys.executable, "-m", "benchmarks", "--tiny", "--only", "video-temporal", "--json",
                              str(out)], cwd=ROOT, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout, json.loads(out.read_text())


def test_tiny_run_scores_every_clip_and_variant(tiny_run):
    stdout, summary = tiny_run
    rows = summary["rows"]
    assert {row["workload"] for row in rows} == {"video-temporal"}
    scored = [row for row in rows if "skipped" not in row["painterly"]]
    labels = list(dict.fromkeys(row["size"] for row in scored))
    assert [label.split()[0] for label in labels] == [name for name in clips.CLIP_NAMES for _ in (0, 1)]
    assert sum("noise σ" in label for label in labels) == 3
    for label in labels:
        assert [row["variant"] for row in scored if row["size"] == label] == VARIANTS
    for row in scored:
        assert SCORES <= set(row["painterly"]), row
        assert row["painterly"]["frames"] == 4 and row["painterly"]["frames_per_s"] > 0
    # The clean clips' per-frame rows are their own reference: fidelity and ghosting 0 by definition.
    clean = [row["painterly"] for row in scored if row["variant"] == "per-frame" and "noise" not in row["size"]]
    assert len(clean) == 3 and all(result["fidelity"] == 0 for result in clean)
    # Only the noisy clips' strongest --stabilize row is held to the issue's targets.
    verdicts = [row for row in scored if row["note"].startswith("targets:")]
    assert [row["variant"] for row in verdicts] == ["stabilize 0.8"] * 3
    assert all("noise" in row["size"] for row in verdicts)
    skipped = [row for row in rows if "skipped" in row["painterly"]]  # training and Gatys: not in the tiny plan
    assert [row["variant"] for row in skipped] == ["trained, temporal 3/10/30/100",
                                                   "trained, antialias, temporal 3/10/30/100", "gatys video"]
    assert "stability: mean absolute differences in 8-bit levels" in stdout
    assert "warping error" in stdout and "painterly skipped: not in this plan" in stdout


def test_whole_pixel_motion_is_exact():
    """Pan and moving object move by whole pixels: the input's own warping error is 0, and so is that of
    a per-pixel model; the zoom's is small (resampling) against the error of assuming no motion."""
    for name in ("pan", "moving-object"):
        clip = clips.make_clip(name, 32, 48, 4)
        assert warping_error(clip.frames, clip) == 0.0
        assert warping_error([painted(frame) for frame in clip.frames], clip) == 0.0
        assert warping_error(clip.frames, _still(clip)) > 5.0  # the frames do move
    zoom = clips.make_clip("zoom-rotate", 48, 64, 4)  # the eval photo or, in a fresh clone, the drawn sample
    assert 0 < warping_error(zoom.frames, zoom) < 0.25 * warping_error(zoom.frames, _still(zoom))


def test_the_unmoved_error_tells_a_texture_that_moves_from_one_that_stays_put():
    """A texture fixed to the screen (a pattern added to every frame of a pan) is hardly steadier once the
    motion is taken out; one painted on the picture is perfectly steady. The unmoved error is the change
    with the motion left in: the warping error's share of it tells the two apart."""
    clip = clips.make_clip("pan", 32, 48, 4)
    grain = np.random.default_rng(0).uniform(-0.2, 0.2, clip.frames[0].shape).astype(np.float32)
    on_screen = [frame + grain for frame in clip.frames]
    on_picture = [painted(frame) for frame in clip.frames]
    assert warping_error(on_picture, clip) == 0.0 < unmoved_error(on_picture, clip)
    assert warping_error(on_screen, clip) > 0.8 * unmoved_error(on_screen, clip) > 0
    assert unmoved_error(clip.frames, clip) == warping_error(clip.frames, _still(clip, keep_visible=True))


def test_static_clip_per_frame_and_frozen_output():
    """A static clip: a deterministic per-frame model does not flicker; with sensor noise it does, and a
    frozen output does not, but on a moving clip the frozen output is far from per-frame stylisation."""
    image = clips.make_clip("pan", 32, 48, 1).frames[0]
    still = clips.static(image, 4)
    assert warping_error([painted(frame) for frame in still.frames], still) == 0.0
    noisy = clips.with_noise(still)
    per_frame = [painted(frame) for frame in noisy.frames]
    frozen = [per_frame[0]] * 4
    assert warping_error(per_frame, noisy) > 1.0
    assert warping_error(frozen, noisy) == 0.0
    moving = clips.make_clip("pan", 32, 48, 4)
    references = [painted(frame) for frame in moving.frames]
    assert fidelity(references, references) == 0.0
    assert fidelity([references[0]] * 4, references) > 5.0


def test_moving_object_uncovers_background_behind_it():
    """With a still background, the pixels not visible in the previous frame are those the object has just
    left: the background there, which the previous frame did not show; carrying the previous output into
    them (an exponential blend) ghosts, the new frame alone does not."""
    clip = clips.moving_object(32, 48, 4, background_step=(0, 0))
    background = clips.pan(32, 48, 4, (0, 0)).frames[0]
    for t in range(1, 4):
        uncovered = ~clip.visible[t - 1]
        assert uncovered.sum() > 0
        assert np.array_equal(clip.frames[t][uncovered], background[uncovered])
        hidden = np.abs(clip.frames[t - 1][uncovered] - background[uncovered]).max(axis=-1) > 1e-3
        assert hidden.mean() > 0.9  # the object was there (where it matches the background by chance, too)
    references = [painted(frame) for frame in clip.frames]
    blended = [references[0]] + [0.5 * now + 0.5 * before for before, now in zip(references, references[1:])]
    assert ghosting(references, references, clip) == 0.0
    assert ghosting(blended, references, clip) > 5.0


def test_smooth_ghosting_is_read_at_the_flow_rows_warping_error():
    per_frame = {"warping_error": 10.0, "ghosting": 1.0}
    variants = {"smooth 0.5": {"warping_error": 6.0, "ghosting": 3.0}, "smooth 0.8": {"warping_error": 4.0,
                                                                                     "ghosting": 5.0}}
    value, how = _smooth_ghosting_at(5.0, per_frame, variants)
    assert value == pytest.approx(4.0) and "between smooth 0.8 and smooth 0.5" in how
    value, how = _smooth_ghosting_at(2.0, per_frame, variants)
    assert value == 5.0 and "lowest --smooth reached" in how


def test_the_trained_network_held_to_the_target_is_the_strongest_at_matched_fidelity():
    """The rule is fixed before the run: style and content losses each within 1.1× the plain network's."""
    def network(weight, style, content):
        return {"temporal_weight": weight, "final_losses": {"style": style, "content": content, "temporal": 0.1}}

    plain = network(0.0, 1.0, 1.0)
    candidates = [network(3.0, 1.02, 0.99), network(10.0, 1.09, 1.05), network(30.0, 1.3, 0.9),
                  network(100.0, 4.0, 0.9)]
    assert matched_weight(plain, candidates) == 10.0
    assert matched_weight(plain, [network(10.0, 1.0, 1.2)]) is None  # the content loss counts too


def test_each_architecture_is_held_to_the_target_against_its_own_network_without_the_loss():
    """Two sets (plain, anti-aliased), as `_trained_rows` gets them from its workers: each set's verdict is
    against that set's network without the loss; the anti-aliased one is also set beside the plain one."""
    def network(weight, antialias, style, warping):
        return {"temporal_weight": weight, "antialias": antialias, "steps": 200, "train_seconds": 100.0,
                "final_losses": {"style": style, "content": 1.0},
                "clips": [{"clip": "pan", "warping_error": warping, "unmoved_error": 40.0, "frames": 4}]}

    sets = {False: [network(0.0, False, 0.5, 30.0), network(10.0, False, 0.9, 15.0)],
            True: [network(0.0, True, 0.6, 12.0), network(10.0, True, 0.62, 6.0)]}
    calls = []

    def run(job, **args):
        calls.append((job, args["antialias"], args["temporal_weights"]))
        return {"networks": sets[args["antialias"]], "peak_rss": 1}

    plan = dataclasses.replace(suite.TINY, temporal_train_steps=200, temporal_train_weights=(10.0,))
    rows = temporal_report._trained_rows(plan, run)
    assert calls == [("temporal-trained", False, [0.0, 10.0]), ("temporal-trained", True, [0.0, 10.0])]
    notes = {row.variant: row.note for row in rows}
    assert list(notes) == ["trained", "trained, temporal 10", "trained, antialias", "trained, antialias, temporal 10"]
    assert "no weight matched: the target is not shown" in notes["trained, temporal 10"]  # style 1.8×
    assert "warping error 50 % of the network trained without the loss (≤ 60 %: met)" in \
        notes["trained, antialias, temporal 10"]
    assert notes["trained, antialias"].startswith("anti-aliased light TransformerNet")
    assert "warping error 75 % of the change with the motion left in (40.00)" in notes["trained"]
    assert "against the plain network trained without the loss: warping error 40 % of its, style loss 1.20×" in \
        notes["trained, antialias"]


def _still(clip: clips.Clip, *, keep_visible: bool = False) -> clips.Clip:
    """The clip with its motion replaced by none (a wrong answer the metrics must tell apart), every pixel
    visible unless `keep_visible`."""
    zero = tuple(np.zeros_like(flow) for flow in clip.backward)
    visible = clip.visible if keep_visible else tuple(np.ones_like(mask) for mask in clip.visible)
    return clips.Clip(clip.name, clip.frames, zero, visible, clip.clean)
