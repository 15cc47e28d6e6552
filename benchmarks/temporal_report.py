"""The `video-temporal` workload's rows (issue 12): which jobs run, and issue 12's targets against them.

Planning and verdicts only, in the parent process; the measurements are `benchmarks.temporal_jobs`'s,
in worker processes. Figures are in 8-bit levels (see `benchmarks.temporal_metrics`).
"""

from __future__ import annotations

from collections.abc import Callable

from .clips import CLIP_NAMES
from .suite import Plan, Row

WORKLOAD = "video-temporal"
# Issue 12's targets, on the noisy clips: the flow-based blend's warping error at most this share of
# per-frame's, its frames/s at least this share of per-frame's; the temporally trained network's warping
# error at most this share of the one trained without the loss.
STABILIZE_WARPING, STABILIZE_SPEED, TRAINED_WARPING = 0.40, 0.65, 0.60
TRAIN_ARCH = "light"  # the trained rows' network: minutes of training on a CPU
# "The same fidelity" for the temporally trained networks: final training style and content losses each at
# most this many times the network trained without the loss (both trained on the same crops in the same
# order). The target is judged on the strongest weight that matches, a rule fixed before the run.
MATCHED_LOSS = 1.10
# Why a plan with no training steps (or Gatys frames) skips those rows: each worker builds a random VGG,
# which alone takes longer than the whole tiny plan should.
UNPLANNED = "not in this plan (a random VGG alone takes seconds to build); the quick and full plans run it"


def temporal_rows(plan: Plan, run: Callable[..., dict]) -> list[Row]:
    """Per frame, --smooth, --stabilize on each clip (clean and noisy), the trained networks, Gatys video."""
    height, width = plan.temporal_size
    rows: list[Row] = []
    result = run("temporal-clip", clips=list(CLIP_NAMES), height=height, width=width, frames=plan.temporal_frames,
                 smooth=list(plan.temporal_smooth), stabilize=list(plan.temporal_stabilize))
    if "error" in result:
        rows.append(Row(WORKLOAD, f"{width}×{height}", None, result, variant="per-frame", timed=False))
    for clip in result.get("clips", []):
        rows += _clip_rows(clip, result["precision"], target=max(plan.temporal_stabilize, default=None),
                           peak_rss=result["peak_rss"])
    rows += _trained_rows(plan, run)
    return rows + _gatys_rows(plan, run)


def _gatys_rows(plan: Plan, run: Callable[..., dict]) -> list[Row]:
    """Gatys per frame and Gatys video on a very short noisy pan."""
    height, width = plan.gatys_video_size
    result: dict = run("temporal-gatys", clip="pan", height=height, width=width, frames=plan.gatys_video_frames,
                 steps=plan.gatys_video_steps) if plan.gatys_video_frames else {"skipped": UNPLANNED}
    if "variants" not in result:
        return [Row(WORKLOAD, f"pan {width}×{height}, {plan.gatys_video_frames} frames", None, result,
                    variant="gatys video", timed=False)]
    alone, video = result["variants"]["gatys per-frame"], result["variants"]["gatys video"]
    share = video["warping_error"] / alone["warping_error"] if alone["warping_error"] else float("nan")
    notes = {"gatys per-frame": (f"{result['steps']} L-BFGS steps a frame, random VGG-19 (seed 0); the reference "
                                 "S_t here is this row itself (per-frame Gatys on the same noisy frames)"),
             "gatys video": (f"first frame {result['steps']} steps, later ones {result['frame_steps']} from the "
                             f"warped previous result, temporal weight {result['temporal_weight']:g}; warping error "
                             f"{100 * share:.0f} % of per-frame Gatys's")}
    return [Row(WORKLOAD, result["clip"], None, {**variant_result, "peak_rss": result["peak_rss"]}, variant=name,
                note=notes[name], timed=False) for name, variant_result in result["variants"].items()]


def _clip_rows(clip: dict, precision: str, target: float | None, peak_rss: int) -> list[Row]:
    """One clip's rows; each shows the peak memory of the worker that ran every clip."""
    variants = {name: {**result, "peak_rss": peak_rss} for name, result in clip["variants"].items()}
    per_frame = variants["per-frame"]
    rows = []
    for name, result in variants.items():
        note = ""
        if name == "per-frame":
            note = (f"random TransformerNet (seed 0), torch, {precision}: the network "
                    f"{per_frame['network_seconds'] / per_frame['frames']:.3g} s a frame; "
                    f"{100 * clip['disoccluded']:.2f} % of pixels disoccluded per frame")
        elif target is not None and name == f"stabilize {target:g}" and clip["noise"] and "skipped" not in result:
            note = _stabilize_verdict(result, per_frame, variants)
        rows.append(Row(WORKLOAD, clip["clip"], None, result, variant=name, note=note, timed=False))
    return rows


def _stabilize_verdict(flow: dict, per_frame: dict, variants: dict) -> str:
    """Issue 12's run-time targets for the flow-based row on one noisy clip."""
    share = flow["warping_error"] / per_frame["warping_error"]
    speed = flow["frames_per_s"] / per_frame["frames_per_s"]
    parts = [f"warping error {100 * share:.0f} % of per-frame's (≤ {100 * STABILIZE_WARPING:.0f} %: "
             f"{_met(share <= STABILIZE_WARPING)})"]
    if flow["ghosting"] is None:
        parts.append("ghosting: no disoccluded pixels in this clip")
    else:
        parts.append(f"ghosting {flow['ghosting']:.2f} against per-frame's {per_frame['ghosting']:.2f} (no worse: "
                     f"{_met(flow['ghosting'] <= per_frame['ghosting'])})")
        smooth, how = _smooth_ghosting_at(flow["warping_error"], per_frame, variants)
        parts.append(f"--smooth's at equal warping error {smooth:.2f}, {how} "
                     f"(below it: {_met(flow['ghosting'] < smooth)})")
    parts.append(f"frames/s {100 * speed:.0f} % of per-frame's (≥ {100 * STABILIZE_SPEED:.0f} %: "
                 f"{_met(speed >= STABILIZE_SPEED)})")
    return "targets: " + "; ".join(parts)


def _smooth_ghosting_at(warping: float, per_frame: dict, variants: dict) -> tuple[float, str]:
    """--smooth's ghosting at the given warping error: interpolated along its strengths (per frame
    being strength 0); beyond the strongest, that one's (which understates what reaching it would cost)."""
    curve = sorted([(per_frame["warping_error"], per_frame["ghosting"], "per-frame")]
                   + [(v["warping_error"], v["ghosting"], name) for name, v in variants.items()
                      if name.startswith("smooth") and "skipped" not in v])
    for (x0, y0, low), (x1, y1, high) in zip(curve, curve[1:]):
        if x0 <= warping <= x1:
            share = (warping - x0) / (x1 - x0) if x1 > x0 else 0.0
            return y0 + share * (y1 - y0), f"interpolated between {low} and {high}"
    lowest = curve[0]
    if warping < lowest[0]:
        return lowest[1], f"{lowest[2]}'s (its warping error, {lowest[0]:.2f}, is the lowest --smooth reached)"
    return curve[-1][1], f"{curve[-1][2]}'s"


def _trained_rows(plan: Plan, run: Callable[..., dict]) -> list[Row]:
    """For each of the plan's architectures (plain, anti-aliased), a network trained without the temporal
    loss and one with each of the plan's weights (same steps, seed, crops), on the noisy clips; in each set
    the strongest at matched fidelity (`matched_weight`) is held to the target against that set's network
    without the loss. An anti-aliased set's network without the loss is also compared with the plain one."""
    height, width = plan.temporal_size
    common = {"steps": plan.temporal_train_steps, "size": plan.temporal_train_size, "batch": plan.temporal_train_batch,
              "arch": TRAIN_ARCH, "clips": list(CLIP_NAMES), "height": height, "width": width,
              "frames": plan.temporal_frames}
    weights = list(plan.temporal_train_weights)
    rows: list[Row] = []
    baseline: dict | None = None  # the plain set's network without the loss
    for antialias in plan.temporal_train_antialias:
        name = "trained, antialias" if antialias else "trained"
        result: dict = (run("temporal-trained", temporal_weights=[0.0, *weights], antialias=antialias, **common)
                        if plan.temporal_train_steps else {"skipped": UNPLANNED})
        if "networks" not in result:
            variant = f"{name}, temporal " + "/".join(f"{weight:g}" for weight in weights)
            rows.append(Row(WORKLOAD, f"{TRAIN_ARCH}, {plan.temporal_train_steps} steps", None, result,
                            variant=variant, timed=False))
            continue
        plain, *temporal = result["networks"]
        rows += _trained_set(plan, name, result["peak_rss"], plain, temporal,
                             baseline if antialias else None)
        if not antialias:
            baseline = plain
    return rows


def _trained_set(plan: Plan, name: str, peak_rss: int, plain: dict, temporal: list[dict],
                 baseline: dict | None) -> list[Row]:
    held = matched_weight(plain, temporal)
    rows = []
    for index, before in enumerate(plain["clips"]):
        note = f"{_training_note(plain, plan)}; {_moving_share(before)}"
        if baseline is not None:
            note += f"; {_against_plain(before, plain, baseline, index)}"
        rows.append(Row(WORKLOAD, before["clip"], None, {**before, "peak_rss": peak_rss}, variant=name,
                        timed=False, note=note))
        for network in temporal:
            after, weight = network["clips"][index], network["temporal_weight"]
            verdict = (_trained_verdict(after, before, held) if weight == held
                       else _match_note(network, plain, held))
            rows.append(Row(WORKLOAD, after["clip"], None, {**after, "peak_rss": peak_rss},
                            variant=f"{name}, temporal {weight:g}", timed=False,
                            note=f"{_training_note(network, plan)}; {_moving_share(after)}; {verdict}"))
    return rows


def _moving_share(clip: dict) -> str:
    """How much of the network's change from frame to frame is its texture moving with the picture."""
    unmoved = clip["unmoved_error"]
    if not unmoved:
        return "no change from frame to frame"
    return (f"warping error {100 * clip['warping_error'] / unmoved:.0f} % of the change with the motion left in "
            f"({unmoved:.2f}): the rest moved with the picture")


def _against_plain(clip: dict, network: dict, baseline: dict, index: int) -> str:
    """An anti-aliased network without the loss beside the plain one: its steadiness and its losses."""
    share = clip["warping_error"] / baseline["clips"][index]["warping_error"]
    ratios = ", ".join(f"{term} loss {network['final_losses'][term] / baseline['final_losses'][term]:.2f}×"
                       for term in ("style", "content"))
    return f"against the plain network trained without the loss: warping error {100 * share:.0f} % of its, {ratios}"


def matched_weight(plain: dict, temporal: list[dict]) -> float | None:
    """The strongest temporal weight whose network paints as closely as the one trained without the loss:
    its final style and content losses each at most MATCHED_LOSS × that network's. None if none does."""
    matched = [network["temporal_weight"] for network in temporal if _matches(network, plain)]
    return max(matched, default=None)


def _matches(network: dict, plain: dict) -> bool:
    return all(network["final_losses"][term] <= MATCHED_LOSS * plain["final_losses"][term]
               for term in ("style", "content"))


def _match_note(network: dict, plain: dict, held: float | None) -> str:
    ratios = ", ".join(f"{term} loss {network['final_losses'][term] / plain['final_losses'][term]:.2f}×"
                       for term in ("style", "content"))
    if _matches(network, plain):
        return f"matches the fidelity ({ratios} the untrained one's), weaker than {held:g}: not held to the target"
    outcome = "not held to the target" if held is not None else "no weight matched: the target is not shown"
    return (f"not the same fidelity ({ratios} the network trained without the loss; at most {MATCHED_LOSS:g}× "
            f"each to match): {outcome}")


def _training_note(result: dict, plan: Plan) -> str:
    losses = ", ".join(f"{name} {value:.3g}" for name, value in result["final_losses"].items())
    kind = "anti-aliased " if result.get("antialias") else ""
    return (f"{kind}{TRAIN_ARCH} TransformerNet, {result['steps']} steps of {plan.temporal_train_batch} × "
            f"{plan.temporal_train_size}² crops, random VGG-16 (seed 0), {result['train_seconds']:.0f} s; "
            f"mean loss over its last steps: {losses}")


def _trained_verdict(temporal: dict, plain: dict, held: float) -> str:
    share = temporal["warping_error"] / plain["warping_error"]
    return (f"target: warping error {100 * share:.0f} % of the network trained without the loss "
            f"(≤ {100 * TRAINED_WARPING:.0f} %: {_met(share <= TRAINED_WARPING)}) at the same fidelity (temporal "
            f"weight {held:g}, the strongest whose style and content losses are within {MATCHED_LOSS:g}× of it)")


def _met(condition: bool) -> str:
    return "met" if condition else "NOT met"
