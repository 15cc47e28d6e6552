"""Temporal-consistency jobs (issue 12): a fast network on the synthetic clips, frame by frame, with
today's `--smooth` blend, with the flow-based `--stabilize` blend, and networks trained with and
without the temporal loss.

Each clip is stylised twice, clean and with per-frame sensor noise; the clean clip's per-frame
stylisation is the reference S_t every fidelity and ghosting figure is measured against
(`benchmarks.temporal_metrics`). Inference rows use the random TransformerNet (seed 0) the
fast-inference rows use: painterly's video pipeline does the same per frame whatever the weights.

The network runs once per frame; every blend (smooth, stabilize) post-processes those same
stylised frames, as `painterly apply` on a video does after the network, and its frames/s is
frames over (the network's time + the blend's own time). torch is imported by painterly only.
"""

from __future__ import annotations

import dataclasses
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from painterly.config import ApplyConfig, TrainConfig
from painterly.fast import FastStylizer

from .clips import Clip, make_clip, with_noise
from .inputs import EVAL, SEED, STYLE_FILE, write_training_data
from .temporal_metrics import disoccluded_share, scores

PostProcess = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (input frame, stylised frame) -> output frame
TRAIN_LAST_STEPS = 10  # the training loss reported: the mean over this many last steps


def clip_rows(clips: Sequence[str], height: int, width: int, frames: int, smooth: Sequence[float],
              stabilize: Sequence[float]) -> dict:
    """Each clip, clean and noisy, through the random TransformerNet: per frame, each `smooth` and each
    `stabilize` strength. One worker for every clip: a process costs seconds to start.

    {"clips": [{"clip", "noise", "disoccluded", "variants": {name: scores + frames_per_s}}, …]}; a
    variant whose feature is missing is {"skipped": why}.
    """
    with tempfile.TemporaryDirectory(prefix="painterly-temporal-") as folder:
        stylizer = FastStylizer(_random_model(Path(folder)), ApplyConfig(device="cpu"))
    results = []
    for name in clips:
        clean = make_clip(name, height, width, frames)
        stylizer.stylize_batch([clean.frames[0]])  # warm-up: first-call allocations are not the clip's cost
        references, clean_seconds = _stylize(stylizer, clean.frames)
        for shown in (clean, with_noise(clean)):
            styled, seconds = _stylize(stylizer, shown.frames) if shown.noise else (references, clean_seconds)
            variants: dict[str, dict] = {"per-frame": _scored(styled, references, shown, seconds, 0.0)}
            for strength in smooth:
                variants[f"smooth {strength:g}"] = _blended(_smoother(strength), styled, references, shown, seconds)
            for strength in stabilize:
                blender = _flow_blender(strength)
                variants[f"stabilize {strength:g}"] = (blender if isinstance(blender, dict) else
                                                       _blended(blender, styled, references, shown, seconds))
            results.append({"clip": shown.label, "noise": shown.noise, "disoccluded": disoccluded_share(shown),
                            "variants": variants})
    return {"clips": results, "precision": stylizer.precision}


def trained_rows(temporal_weights: Sequence[float], steps: int, size: int, batch: int, arch: str,
                 clips: Sequence[str], height: int, width: int, frames: int, antialias: bool = False) -> dict:
    """For each of `temporal_weights` (0: without the loss), train a network (`arch`, anti-aliased or not,
    random VGG-16, seed 0, `steps` steps of `batch` size² crops of the eval photos, starry_night: the same
    crops for each), then score it frame by frame on the noisy `clips`. {"skipped": why} while TrainConfig
    lacks the field a run needs.
    """
    fields = {field.name for field in dataclasses.fields(TrainConfig)}
    if "temporal_weight" not in fields:
        return {"skipped": "TrainConfig.temporal_weight (the temporal training loss) does not exist yet"}
    if antialias and "antialias" not in fields:
        return {"skipped": "TrainConfig.antialias (anti-aliased networks) does not exist yet"}
    changes = {"antialias": True} if antialias else {}  # a version without the field still trains plain ones
    networks = []
    with tempfile.TemporaryDirectory(prefix="painterly-temporal-") as folder:
        photos, style = _training_data(Path(folder), size)
        for weight in temporal_weights:
            settings = TrainConfig(data=str(photos), size=size, batch_size=batch, steps=steps, arch=arch,
                                   vgg_weights="random", seed=SEED, device="cpu", temporal_weight=weight,
                                   log_every=max(1, steps // 10), checkpoint_minutes=0.0, **changes)
            losses: list[dict[str, float]] = []
            started = time.perf_counter()
            model = _train(style, settings, Path(folder) / f"temporal-{antialias:d}-{weight:g}.safetensors", losses)
            train_seconds = time.perf_counter() - started
            stylizer = FastStylizer(model, ApplyConfig(device="cpu"))
            results = []
            for name in clips:
                clip = with_noise(make_clip(name, height, width, frames))
                references, _ = _stylize(stylizer, clip.clean)
                styled, seconds = _stylize(stylizer, clip.frames)
                results.append({"clip": clip.label, **_scored(styled, references, clip, seconds, 0.0)})
            last = losses[-TRAIN_LAST_STEPS:]
            final = {key: statistics.mean(step[key] for step in last) for key in last[0]} if last else {}
            networks.append({"temporal_weight": weight, "antialias": antialias, "clips": results,
                             "train_seconds": train_seconds, "steps": steps, "final_losses": final})
    return {"networks": networks}


def gatys_rows(clip: str, height: int, width: int, frames: int, steps: int) -> dict:
    """Gatys on the noisy `clip`: each frame optimised alone (`steps` L-BFGS steps from the frame), and
    Gatys video (the first frame as alone, every later one from the previous result warped along the
    flow, StylizeConfig's frame_steps and temporal_weight). Random VGG-19 (seed 0), starry_night. The
    reference S_t is the per-frame result of the same noisy frame (a second set of Gatys runs on the
    clean frames would double the minutes), so the per-frame row's fidelity and ghosting are 0 by
    definition. {"skipped": why} without painterly.gatys_video.
    """
    try:
        from painterly import gatys_video
    except ImportError as error:
        return {"skipped": f"painterly.gatys_video is not available ({error})"}
    from painterly.config import StylizeConfig
    from painterly.events import ignore
    from painterly.optimize import stylize
    from painterly.pixels import to_array, to_tensor

    from .inputs import style_image

    shown = with_noise(make_clip(clip, height, width, frames))
    config = StylizeConfig(size=max(height, width), steps=steps, vgg_weights="random", seed=SEED, device="cpu",
                           multiscale="off")
    styles = [to_tensor(style_image(max(height, width)))]
    started = time.perf_counter()
    alone = [_as_8bit(to_array(stylize(to_tensor(frame), styles, config))) for frame in shown.frames]
    alone_seconds = time.perf_counter() - started
    painter = gatys_video.FramePainter(styles, config, None, ignore)
    chained: list[np.ndarray] = []
    started = time.perf_counter()
    for index, frame in enumerate(shown.frames):
        previous = (shown.frames[index - 1], _as_8bit(chained[-1])) if chained else None
        painted = painter.paint(frame, previous)
        assert painted is not None  # no callback asks it to stop
        chained.append(_as_8bit(painted))
    video_seconds = time.perf_counter() - started
    return {"clip": shown.label, "steps": steps, "frame_steps": config.frame_steps_or_default(),
            "temporal_weight": config.temporal_weight,
            "variants": {"gatys per-frame": _scored(alone, alone, shown, alone_seconds, 0.0),
                         "gatys video": _scored(chained, alone, shown, video_seconds, 0.0)}}


def flow_cost(flow_name: str, height: int, width: int, runs: int, device: str = "cpu") -> dict:
    """`flow.motion` (both flows and the visibility) between two frames of the noisy pan with `flow_name`:
    DIS (OpenCV, on the CPU whatever `device` says), or RAFT on `device` with seeded random weights (the
    real ones cannot be downloaded here; a RAFT's cost does not depend on its weights). The median seconds
    of `runs` pairs after one warm-up pair; a pair's flows come back to the CPU, so the device is done."""
    from painterly import flow

    clip = with_noise(make_clip("pan", height, width, 2))
    if flow_name == "dis":
        estimator = flow.estimator("dis")
    else:
        from painterly.flow_raft import RaftFlow, random_network

        estimator = RaftFlow(flow_name, device, long_side=flow.FLOW_LONG_SIDE,
                             model=random_network(flow_name, seed=SEED))
    previous, current = clip.frames
    flow.motion(previous, current, estimator)  # warm-up: first-call allocations are not a pair's cost
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        flow.motion(previous, current, estimator)
        times.append(time.perf_counter() - started)
    return {"seconds": statistics.median(times), "runs": runs, "flow": flow_name,
            "device": "cpu" if flow_name == "dis" else device}


def _stylize(stylizer: FastStylizer, frames: Sequence[np.ndarray]) -> tuple[list[np.ndarray], float]:
    """Every frame through the network in `batch_size` groups, as the video pipeline does; the time taken."""
    size = stylizer.config.batch_size
    started = time.perf_counter()
    styled = [image for index in range(0, len(frames), size)
              for image in stylizer.stylize_batch(list(frames[index:index + size]))]
    return styled, time.perf_counter() - started


def _blended(blend: PostProcess, styled: Sequence[np.ndarray], references: Sequence[np.ndarray], clip: Clip,
             network_seconds: float) -> dict:
    """The stylised frames through one clip's blend (a fresh state), scored, with the blend's own time."""
    started = time.perf_counter()
    outputs = [blend(frame, image) for frame, image in zip(clip.frames, styled, strict=True)]
    return _scored(outputs, references, clip, network_seconds, time.perf_counter() - started)


def _scored(outputs: Sequence[np.ndarray], references: Sequence[np.ndarray], clip: Clip, network_seconds: float,
            blend_seconds: float) -> dict:
    frames = len(outputs)
    return {**scores(outputs, references, clip), "frames": frames, "network_seconds": network_seconds,
            "blend_seconds": blend_seconds, "frames_per_s": frames / (network_seconds + blend_seconds)}


def _smoother(strength: float) -> PostProcess:
    """Today's `--smooth`: the video pipeline's exponential blend, restarted at scene cuts."""
    from painterly.video import Smoother

    return Smoother(strength)


def _flow_blender(strength: float) -> PostProcess | dict:
    """`--stabilize`: painterly.flow's motion-compensated blend, or {"skipped": why} without it."""
    try:
        from painterly.flow import FlowBlender
    except ImportError as error:
        return {"skipped": f"painterly.flow is not available ({error})"}
    return FlowBlender(strength)


def _random_model(folder: Path) -> Path:
    """The fast-inference rows' random TransformerNet (seed 0, fast_jobs.write_models' torch file), without its
    ONNX export."""
    import torch

    from painterly.modelfile import save_model
    from painterly.transformer import TransformerNet

    torch.manual_seed(SEED)
    return save_model(TransformerNet("standard"), folder / "random-standard.safetensors",
                      style={"image": f"none: random weights, seed {SEED}"})


def _as_8bit(image: np.ndarray) -> np.ndarray:
    """A result as Gatys video keeps it between frames: 8-bit, back as float."""
    from painterly.pixels import to_float32, to_uint8

    return to_float32(to_uint8(image))


def _training_data(folder: Path, size: int) -> tuple[Path, Path]:
    """The eval photos and starry_night when present (read in place), else generated ones."""
    photos = EVAL / "photos"
    if photos.is_dir() and STYLE_FILE.is_file():
        return photos, STYLE_FILE
    return write_training_data(folder, 8, size)


def _train(style: Path, settings: TrainConfig, output: Path, losses: list[dict[str, float]]) -> Path:
    """painterly's `train()`, keeping every step's losses."""
    from painterly.events import Event, TrainStepEvent
    from painterly.training import train

    def on_step(event: Event) -> None:
        if isinstance(event, TrainStepEvent):
            losses.append(dict(event.losses))

    return train(style, settings, output, callback=on_step)

