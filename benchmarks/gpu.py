"""`python -m benchmarks.gpu [--tiny] [--json PATH] [--budget-s S]`: painterly's speed on one CUDA GPU, in under
8 minutes.

A prepared script for a short, paid-for GPU session: one command, one table, JSON written after
every row (so a run cut short still leaves what it measured).

Fast-NST training (256², batch 4, 16, 32): images/s of the step `train()` takes
(`training.Trainer.train_step`, on random photos already on the GPU, so no data loading),
after untimed warm-up steps (their time, compilation included, is reported), with
torch.cuda.synchronize() around the timed steps. Each variant adds one TrainConfig setting to
the one before:

    fp32             precision="fp32" (cuDNN may still use TF32 for convs: see the header)
    bf16             precision="bf16" (the TransformerNet and VGG in autocast)
    bf16+cl          also channels_last=True: TransformerNet, photos and encoder, as stylize() does
    bf16+cl+compile  also compile=True: torch.compile of the TransformerNet and of the encoder

Each row gives the projected time of Johnson et al.'s recipe at its
rate: 40,000 steps × batch 4 = 160,000 images at 256² (target: under 10 minutes, ≈ 270 img/s).

Gatys: wall time of `stylize()` for 500 steps at 512 px, StylizeConfig's defaults apart from
size, steps, one scale, random VGG weights and the device; L-BFGS and Adam, fp32 and bf16
(target: under 5 s), after one short untimed warm-up run.

Optical flow (`--flow`): `flow.motion` on one 640×480 pair, both flows and the visibility, the median of
3 pairs after a warm-up: DIS on the CPU (OpenCV has no GPU path here), RAFT-small and RAFT-large on the GPU
with seeded random weights (their cost is the real ones'; the files cannot be downloaded here).

Each row has a time cap (a row past it stops early and says so) and the script a budget:
rows that would start after it are reported as skipped, torch.compile rows last, since
compiling is the slowest and least certain. A failing row is an error row; the rest still run.
`--budget-s S` sets the budget; `--budget-s 0` lifts it and the row caps, so every row runs all
its steps and what runs never depends on the machine's speed (the test suite runs it so).
`--tiny` runs everything on the CPU at toy sizes in seconds, for the test suite.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import math
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from painterly.config import StylizeConfig, TrainConfig
from painterly.devices import resolve_device
from painterly.errors import PainterlyError
from painterly.events import Event, StepEvent, StopRequested
from painterly.optimize import stylize
from painterly.pixels import to_tensor
from painterly.training import Trainer

from .inputs import SEED, content_image, image_source, style_image

VARIANTS = ("fp32", "bf16", "bf16+cl", "bf16+cl+compile")
GATYS_RUNS = (("lbfgs", "fp32"), ("lbfgs", "bf16"), ("adam", "fp32"), ("adam", "bf16"))
JOHNSON_IMAGES = 40_000 * 4
JOHNSON_TARGET_S = 600.0
GATYS_TARGET_S = 5.0
MIN_TIMED_STEPS = 3


@dataclass(frozen=True)
class Plan:
    """Sizes, step counts and time caps of one run."""

    device: str
    size: int
    batches: tuple[int, ...]
    warmup_steps: int
    timed_steps: int  # at most; fewer when `row_s` runs out first
    row_s: float  # timed seconds per training row, at most
    gatys_size: int
    gatys_steps: int
    gatys_s: float  # a Gatys run is stopped after this many seconds and reports the steps done
    budget_s: float  # no row starts after this, counted from the script's start; inf: no budget
    compile_reserve_s: float  # a compile row starts only with this much budget left
    compile: bool
    flow_size: tuple[int, int] = (480, 640)  # (height, width) of the pair the flows are timed on
    flow_runs: int = 3

    def unlimited(self) -> Plan:
        """No budget and no row caps: every row runs all its steps, however slow the machine."""
        return dataclasses.replace(self, row_s=math.inf, gatys_s=math.inf, budget_s=math.inf)


GPU = Plan("cuda", 256, (4, 16, 32), warmup_steps=3, timed_steps=50, row_s=5.0, gatys_size=512, gatys_steps=500,
           gatys_s=30.0, budget_s=400.0, compile_reserve_s=90.0, compile=True)
FLOWS = ("dis", "raft-small", "raft-large")  # config.FLOWS, in the order of the table
# The smallest sizes every row runs at (the bf16 rows are emulated on most CPUs, and cost seconds a step even here);
# Gatys at 26 px: the eval painting's short side is then 16, the least VGG to relu5_1 takes.
TINY = Plan("cpu", 16, (2,), warmup_steps=1, timed_steps=MIN_TIMED_STEPS, row_s=30.0, gatys_size=26, gatys_steps=3,
            gatys_s=30.0, budget_s=50.0, compile_reserve_s=0.0, compile=False, flow_size=(48, 64), flow_runs=1)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def fresh_memory(device: torch.device) -> None:
    """Free the previous row's memory and restart the peak count, so each row's peak is its own."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory(device: torch.device) -> int | None:
    return torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None


def guarded(measure: Any, *args: Any) -> dict[str, Any]:
    """The row `measure` returns, or an error row: one failure (a compile error, OOM) must not end the run."""
    try:
        return measure(*args)
    except Exception as error:  # noqa: BLE001 - any failure becomes a row
        return {"error": f"{type(error).__name__}: {error}".strip()[:500]}


def train_row(plan: Plan, variant: str, batch: int, style: torch.Tensor) -> dict[str, Any]:
    """Images/s of painterly's training step in `variant`, on random photos already on the device."""
    config = TrainConfig(size=plan.size, batch_size=batch, vgg_weights="random", seed=SEED, device=plan.device,
                         precision="fp32" if variant == "fp32" else "bf16", channels_last="+cl" in variant,
                         compile="+compile" in variant)
    device = resolve_device(plan.device)
    fresh_memory(device)
    if config.compile:
        # A reset first, so that each row's warm-up times its own compile and no row meets the
        # recompile limit (past it torch runs eager, silently).
        torch.compiler.reset()
    trainer = Trainer(config, style)
    photos = torch.rand(batch, 3, plan.size, plan.size, device=device)
    if config.channels_last:  # as a loader would hand them over; train_step converts them otherwise
        photos = photos.contiguous(memory_format=torch.channels_last)
    nonfinite = 0

    def step() -> None:
        nonlocal nonfinite
        nonfinite += trainer.train_step(photos) is None  # it syncs: it reads the losses back

    sync(device)
    start = time.perf_counter()
    for _ in range(plan.warmup_steps):
        step()
    sync(device)
    warmup_s = time.perf_counter() - start
    steps, start = 0, time.perf_counter()
    while steps < plan.timed_steps and (steps < MIN_TIMED_STEPS or time.perf_counter() - start < plan.row_s):
        step()
        steps += 1
    sync(device)
    seconds = time.perf_counter() - start
    rate = batch * steps / seconds
    return {"images_per_s": rate, "step_s": seconds / steps, "timed_steps": steps, "warmup_steps": plan.warmup_steps,
            "warmup_s": warmup_s, "nonfinite_steps": nonfinite, "peak_memory_bytes": peak_memory(device),
            "johnson_projection_s": JOHNSON_IMAGES / rate}


def gatys_row(plan: Plan, optimizer: str, precision: str, content: torch.Tensor, style: torch.Tensor,
              steps: int | None = None) -> dict[str, Any]:
    """Wall time of one `stylize()` call; stopped after `plan.gatys_s`, with the steps it got through."""
    config = StylizeConfig(size=plan.gatys_size, steps=steps or plan.gatys_steps, optimizer=optimizer,
                           multiscale="off", vgg_weights="random", device=plan.device, precision=precision)
    device = resolve_device(plan.device)
    fresh_memory(device)
    last: list[StepEvent] = []

    def on_event(event: Event) -> None:
        if isinstance(event, StepEvent):
            last[:] = [event]
            if event.elapsed > plan.gatys_s:
                raise StopRequested

    start = time.perf_counter()
    stylize(content, [style], config, callback=on_event)  # returns a CPU tensor: the device is done
    wall = time.perf_counter() - start
    done = last[0].step if last else 0
    return {"wall_s": wall, "steps": done, "steps_asked": config.steps, "complete": done == config.steps,
            "step_s": last[0].elapsed / done if done else None, "peak_memory_bytes": peak_memory(device)}


def flow_row(plan: Plan, name: str) -> dict[str, Any]:
    """One flow estimator's seconds a pair (`benchmarks.temporal_jobs.flow_cost`) on the plan's device."""
    from .temporal_jobs import flow_cost

    height, width = plan.flow_size
    device = resolve_device(plan.device)
    fresh_memory(device)
    result = flow_cost(name, height, width, plan.flow_runs, device=str(device))
    return {**result, "peak_memory_bytes": peak_memory(device) if result["device"] != "cpu" else None}


def machine(device: torch.device) -> dict[str, Any]:
    with warnings.catch_warnings():  # newer torch deprecates the allow_tf32 flags in favour of fp32_precision
        warnings.simplefilter("ignore")
        info = {"device": device.type, "torch": torch.__version__, "cuda": torch.version.cuda,
                "cudnn": torch.backends.cudnn.version(), "cudnn_tf32": torch.backends.cudnn.allow_tf32,
                "cudnn_benchmark": torch.backends.cudnn.benchmark,
                "matmul_precision": torch.get_float32_matmul_precision(), "torch_threads": torch.get_num_threads()}
    if device.type == "cuda":
        properties = torch.cuda.get_device_properties(device)
        info |= {"gpu": properties.name, "gpu_memory_bytes": properties.total_memory}
    return info


class Run:
    """The rows measured so far, written to JSON after each one; rows past the budget are skipped."""

    def __init__(self, plan: Plan, mode: str, json_path: Path | None) -> None:
        self.plan, self.json_path, self.start = plan, json_path, time.perf_counter()
        self.device = resolve_device(plan.device)
        self.summary: dict[str, Any] = {
            "mode": mode, "machine": machine(self.device), "images": image_source(),
            "budget_s": plan.budget_s if math.isfinite(plan.budget_s) else 0,  # 0: none
            "targets": {"johnson_images": JOHNSON_IMAGES, "johnson_s": JOHNSON_TARGET_S, "gatys_s": GATYS_TARGET_S},
            "training": [], "gatys": [], "flow": [], "complete": False}

    def left(self) -> float:
        return self.plan.budget_s - (time.perf_counter() - self.start)

    def add(self, kind: str, row: dict[str, Any], measure: Any, *args: Any, reserve: float = 0.0) -> None:
        if self.left() <= reserve:  # never with an unlimited budget: inf - elapsed > reserve
            result = {"error": f"skipped: under {reserve:.0f} s of the script's {self.plan.budget_s:.0f} s budget left"}
        else:
            result = guarded(measure, *args)
        row |= result
        self.summary[kind].append(row)
        print(f"[{time.perf_counter() - self.start:6.1f} s] {kind} {_label(row)}: {_result(row)}", file=sys.stderr)
        self.save()

    def save(self) -> None:
        self.summary["elapsed_s"] = time.perf_counter() - self.start
        if self.json_path is not None:
            self.json_path.write_text(json.dumps(self.summary, indent=2) + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu", description="painterly's training and "
                                     "stylize speed on one CUDA GPU; see the module docstring")
    parser.add_argument("--tiny", action="store_true", help="toy sizes on the CPU, in seconds (for the tests)")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the results as JSON to PATH")
    parser.add_argument("--budget-s", type=float, metavar="S",
                        help="the script's time budget in seconds [default: 400, or 50 with --tiny]; 0: no budget "
                             "and no row caps, so every row runs all its steps whatever the machine's speed")
    args = parser.parse_args(argv)
    plan = TINY if args.tiny else GPU
    if args.budget_s is not None:
        if not (math.isfinite(args.budget_s) and args.budget_s >= 0):
            parser.error(f"--budget-s must be 0 (no limit) or a number of seconds, got {args.budget_s}")
        plan = plan.unlimited() if args.budget_s == 0 else dataclasses.replace(plan, budget_s=args.budget_s)
    try:
        run = Run(plan, "tiny" if args.tiny else "gpu", args.json)
    except PainterlyError as error:
        print(f"python -m benchmarks.gpu: {error}", file=sys.stderr)
        return 2
    train_style = to_tensor(style_image(plan.size))
    eager = [variant for variant in VARIANTS if "+compile" not in variant]
    for variant in eager:
        for batch in plan.batches:
            run.add("training", {"variant": variant, "batch": batch, "size": plan.size}, train_row, plan, variant,
                    batch, train_style)
    content, style = to_tensor(content_image(plan.gatys_size)), to_tensor(style_image(plan.gatys_size))
    guarded(gatys_row, plan, "lbfgs", "fp32", content, style, plan.warmup_steps)  # CUDA context, cuDNN choices
    for optimizer, precision in GATYS_RUNS:
        run.add("gatys", {"optimizer": optimizer, "precision": precision, "size": plan.gatys_size}, gatys_row,
                plan, optimizer, precision, content, style, reserve=min(plan.gatys_s, 10.0))
    height, width = plan.flow_size
    for name in FLOWS:
        run.add("flow", {"flow": name, "size": f"{width}×{height}"}, flow_row, plan, name, reserve=10.0)
    for variant in (variant for variant in VARIANTS if variant not in eager):
        for batch in plan.batches:
            row = {"variant": variant, "batch": batch, "size": plan.size}
            if plan.compile:
                run.add("training", row, train_row, plan, variant, batch, train_style, reserve=plan.compile_reserve_s)
            else:
                run.add("training", row, _skip, "torch.compile is not timed with --tiny (minutes on a CPU)")
    run.summary["training"].sort(key=lambda row: (VARIANTS.index(row["variant"]), row["batch"]))
    run.summary["complete"] = True
    run.save()
    print(table(run.summary))
    return 0


def _skip(reason: str) -> dict[str, Any]:
    return {"error": f"skipped: {reason}"}


# --- the table ------------------------------------------------------------------------------------


def table(summary: dict[str, Any]) -> str:
    """The header (GPU, torch, precision flags), then one line per row, then the errors in full."""
    info = summary["machine"]
    cuda = (f", CUDA {info['cuda']}, cuDNN {info['cudnn']} (TF32 convs {info['cudnn_tf32']}, benchmark mode "
            f"{info['cudnn_benchmark']})") if "gpu" in info else ""
    title = (f"painterly GPU benchmark ({summary['mode']}): {info.get('gpu', info['device'])}, torch {info['torch']}"
             f"{cuda}, {summary['elapsed_s']:.0f} s in all")
    targets = (f"images: {summary['images']}; Johnson recipe = {JOHNSON_IMAGES:,} images at 256² "
               f"(target {JOHNSON_TARGET_S / 60:.0f} min); Gatys target {GATYS_TARGET_S:.0f} s")
    lines = [title, targets, ""]
    header = ("workload", "variant", "shape", "result", "per step", "warm-up", "peak memory", "against target")
    rows = [header] + [_cells(row, "train") for row in summary["training"]]
    rows += [_cells(row, "gatys") for row in summary["gatys"]]
    dis = next((row["seconds"] for row in summary.get("flow", []) if row["flow"] == "dis" and "seconds" in row), None)
    rows += [_flow_cells(row, dis) for row in summary.get("flow", [])]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines += ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]
    errors = [f"  {_label(row)}: {row['error']}" for row in summary["training"] + summary["gatys"]
              + summary.get("flow", []) if "error" in row]
    return "\n".join(lines + (["", "errors and skipped rows:"] + errors if errors else []))


def _label(row: dict[str, Any]) -> str:
    if "flow" in row:
        return f"{row['flow']} {row['size']}"
    if "variant" in row:
        return f"{row['variant']} batch {row['batch']}"
    return f"{row['optimizer']} {row['precision']}"


def _result(row: dict[str, Any]) -> str:
    if "error" in row:
        return "error" if not row["error"].startswith("skipped") else "skipped"
    if "images_per_s" in row:
        return f"{row['images_per_s']:.0f} img/s"
    if "flow" in row:
        return f"{row['seconds'] * 1e3:.1f} ms a pair on the {row['device'].upper()}"
    return f"{row['wall_s']:.2f} s" + ("" if row["complete"] else f" for {row['steps']} steps (stopped)")


def _cells(row: dict[str, Any], workload: str) -> tuple[str, ...]:
    if workload == "train":
        variant, shape = row["variant"], f"{row['batch']}×{row['size']}²"
    else:
        variant, shape = f"{row['optimizer']} {row['precision']}", f"{row['size']} px"
        workload = f"gatys {row.get('steps_asked', '')}".strip()
    if "error" in row:
        return (workload, variant, shape, _result(row), "", "", "", "")
    step = f"{row['step_s'] * 1e3:.1f} ms" if row.get("step_s") else ""
    memory = f"{row['peak_memory_bytes'] / 2**30:.2f} GiB" if row.get("peak_memory_bytes") else "n/a (CPU)"
    if workload == "train":
        projection = row["johnson_projection_s"]
        verdict = f"recipe {projection / 60:.1f} min " + ("ok" if projection < JOHNSON_TARGET_S else "MISSED")
        return (workload, variant, shape, _result(row), step, f"{row['warmup_s']:.1f} s", memory, verdict)
    verdict = ("ok" if row["wall_s"] < GATYS_TARGET_S else "MISSED") if row["complete"] else "incomplete"
    return (workload, variant, shape, _result(row), step, "", memory, f"< {GATYS_TARGET_S:.0f} s {verdict}")


def _flow_cells(row: dict[str, Any], dis: float | None) -> tuple[str, ...]:
    shape = f"{row['size']} pair"
    if "error" in row:
        return ("flow", row["flow"], shape, _result(row), "", "", "", "")
    memory = f"{row['peak_memory_bytes'] / 2**30:.2f} GiB" if row.get("peak_memory_bytes") else "n/a (CPU)"
    against = f"{row['seconds'] / dis:.3g}× DIS's time" if dis else ""
    return ("flow", row["flow"], shape, _result(row), "", "", memory, against)


if __name__ == "__main__":
    sys.exit(main())
