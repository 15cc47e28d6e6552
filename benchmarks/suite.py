"""The suite: which jobs each workload runs, at which sizes, and the rows of the report they make.

The parent process only plans and collects; every measurement happens in a worker process
(`benchmarks.worker`), one per job, and a job asked for twice (the reference Gatys step at
512 px serves two workloads) runs once.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]  # the repository, where `python -m benchmarks.worker` resolves
WORKLOADS = ("gatys-step", "gatys-precision", "gatys-time-to-quality", "fast-inference", "train-step",
             "peak-memory", "adain-inference", "video-temporal", "video-flow", "stroke-scale")
TILED_TARGET_BYTES = 2 * 2**30  # the fast stylisation of a huge image should stay under 2 GiB
# Issue 10's AdaIN targets, at ADAIN_TARGET_SIZE²: the reference's time over painterly's, painterly's
# counted conv FLOP/s over the matmul rate of the precision it ran in, standard's time over light's.
ADAIN_TARGET_SIZE, ADAIN_SPEEDUP, ADAIN_SHARE, ADAIN_LIGHT_SPEEDUP = 1024, 2.0, 0.6, 3.0


@dataclass(frozen=True)
class Plan:
    """Sizes and repetitions of one run of the suite."""

    runs: int = 3  # timed repetitions (median reported), after one warm-up
    gatys_sizes: tuple[int, ...] = (256, 512)
    drift_size: int = 512  # Gatys loss curves, bf16 against fp32
    drift_steps: int = 30
    quality_size: int = 512
    quality_steps: int = 300  # the reference's Adam steps whose loss painterly must reach
    quality_cap_s: float = 1000.0
    fast_sizes: tuple[int, ...] = (512, 1024, 2048)
    train_size: int = 256
    train_batch: int = 4
    memory_gatys_size: int = 1024
    memory_gatys_steps: int = 2
    tiled_size: int | None = 8192  # None: skipped
    tile: int | None = None  # None: FastStylizer's default (automatic tiling)
    matmul_size: int = 2048
    adain_sizes: tuple[int, ...] = (512, 1024)  # photo and painting both size²
    adain_pairs: int = 5  # light against standard: interleaved pairs timed in one worker (adain_jobs.paired_inference)
    emulated_bf16: bool = True  # False: the bf16 rows are skipped (and say so) where the CPU only emulates bf16
    temporal_size: tuple[int, int] = (480, 640)  # (height, width) of the synthetic clips: 480p
    temporal_frames: int = 48  # two seconds at 24 frames/s
    temporal_smooth: tuple[float, ...] = (0.5, 0.8)  # --smooth strengths measured
    temporal_stabilize: tuple[float, ...] = (0.5, 0.8)  # --stabilize strengths; the largest is held to the targets
    temporal_train_steps: int = 200  # for the pair trained with and without the temporal loss; 0: skipped
    temporal_train_size: int = 128
    temporal_train_batch: int = 2
    # TrainConfig.temporal_weight of the networks trained with the loss; the report holds the strongest whose
    # training losses match the one trained without it (temporal_report.MATCHED_LOSS) to the target
    temporal_train_weights: tuple[float, ...] = (3.0, 10.0, 30.0, 100.0)
    # One set of those networks for each: plain TransformerNets, and anti-aliased ones (`train --antialias`)
    temporal_train_antialias: tuple[bool, ...] = (False, True)
    gatys_video_size: tuple[int, int] = (96, 128)  # Gatys video's very short clip
    gatys_video_frames: int = 6  # 0: skipped
    gatys_video_steps: int = 100  # L-BFGS steps of each per-frame run and of Gatys video's first frame
    flow_size: tuple[int, int] = (480, 640)  # video-flow: (height, width) of the pair each estimator is timed on
    flow_estimators: tuple[str, ...] = ("raft-small", "raft-large")  # timed against DIS (flow.FLOWS)
    stroke_sizes: tuple[int, int] = (1024, 4096)  # stroke-scale: the fast engines' preview and large long sides
    # stroke_jobs.ENGINES
    stroke_engines: tuple[str, ...] = ("johnson standard", "johnson light", "adain", "adain light")
    stroke_gatys_sizes: tuple[int, int] = (512, 2048)  # Gatys's preview and large long sides
    stroke_gatys_steps: int = 10  # L-BFGS steps of the preview and of each coarser scale of the large run; 0: skipped
    stroke_gatys_final_steps: int = 3  # at the large run's last scale (16× the pixels of a 512 px step)


FULL = Plan()
QUICK = dataclasses.replace(FULL, runs=1, gatys_sizes=(256,), drift_size=256, drift_steps=10, quality_steps=30,
                            quality_cap_s=120.0, fast_sizes=(512, 1024), tiled_size=None, temporal_frames=24,
                            temporal_train_steps=60, stroke_sizes=(512, 2048), stroke_gatys_sizes=(256, 1024),
                            adain_pairs=3)
# For the test suite: every job at sizes that take a second or two, and the bf16 rows only where the CPU
# computes bf16 (emulated, one Gatys row alone takes seconds).
# (64 px: the reference runs all of VGG-19, whose pool5 needs 32 px on the short side.)
TINY = Plan(runs=1, gatys_sizes=(64,), drift_size=64, drift_steps=3, quality_size=64, quality_steps=3,
            quality_cap_s=30.0, fast_sizes=(64,), train_size=32, train_batch=2, memory_gatys_size=64,
            tiled_size=384, tile=128, matmul_size=256, adain_sizes=(64,), adain_pairs=2, emulated_bf16=False,
            temporal_size=(48, 64), temporal_frames=4, temporal_train_steps=0, gatys_video_frames=0,
            stroke_sizes=(32, 128), stroke_engines=("johnson light",), stroke_gatys_steps=0, flow_size=(48, 64),
            flow_estimators=("raft-small",))


def plan_for(quick: bool, tiny: bool, only: tuple[str, ...]) -> Plan:
    """FULL, QUICK or TINY; --quick still stylises the huge tiled image when peak memory is all it was asked for."""
    if tiny:
        return TINY
    if not quick:
        return FULL
    return dataclasses.replace(QUICK, tiled_size=FULL.tiled_size) if only == ("peak-memory",) else QUICK


@dataclass
class Row:
    """One line of the report: the reference's and painterly's results for one workload at one size.

    A result is a worker's JSON (`seconds`, `flops`, `peak_rss`, …), or {"error": …} if it failed.
    `timed` is False for rows that report only peak memory.
    """

    workload: str
    size: str
    reference: dict | None
    painterly: dict | None
    variant: str = ""
    note: str = ""
    timed: bool = True


class Runner:
    """Runs jobs in worker processes, each distinct job once, and reports progress on `log`; `forked`: each
    forked from one process that imported torch (worker.forked, --tiny's way), not a fresh interpreter."""

    def __init__(self, log: Callable[[str], None], forked: bool = False) -> None:
        from . import worker

        self.log = log
        self._results: dict[str, dict] = {}
        self._spawn = worker.forked if forked else _spawn

    def __call__(self, job: str, **args: object) -> dict:
        spec = json.dumps({"job": job, "args": args}, sort_keys=True)
        if spec not in self._results:
            self.log(f"running {job} {json.dumps(args)}")
            self._results[spec] = self._spawn(spec)
        return self._results[spec]


def _spawn(spec: str) -> dict:
    """A worker's result, or {"error": its last line of stderr} when it fails."""
    done = subprocess.run([sys.executable, "-m", "benchmarks.worker", spec], cwd=ROOT, capture_output=True,
                          text=True, check=False)
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines() or [f"exit status {done.returncode}"]
        return {"error": lines[-1]}
    return json.loads(done.stdout.strip().splitlines()[-1])


@dataclass
class Suite:
    """The workloads of one run, sharing a runner and a scratch folder for the fast model files."""

    plan: Plan
    run: Runner
    scratch: Path

    def rows(self, workloads: tuple[str, ...]) -> list[Row]:
        make = {"gatys-step": self.gatys_step, "gatys-precision": self.gatys_precision,
                "gatys-time-to-quality": self.gatys_time_to_quality,
                "fast-inference": self.fast_inference, "train-step": self.train_step, "peak-memory": self.peak_memory,
                "adain-inference": self.adain_inference, "video-temporal": self.video_temporal,
                "video-flow": self.video_flow, "stroke-scale": self.stroke_scale}
        return [row for name in workloads for row in make[name]()]

    def gatys_step(self) -> list[Row]:
        """The default precision ("auto": fp32 for L-BFGS) and the bf16 option, each against the textbook
        reference; the note gives the ratio to the reference with frozen VGG weights too."""
        rows = []
        for size in self.plan.gatys_sizes:
            reference = self._gatys_reference(size)
            frozen = self._gatys_reference(size, frozen=True)
            for precision in ("auto", "bf16"):
                skipped = self._bf16_skipped() if precision == "bf16" else None
                painterly = skipped or self.run("gatys-painterly", size=size, steps=2 + self.plan.runs,
                                                precision=precision)
                rows.append(Row("gatys-step", f"{size} px", reference, painterly, variant=precision,
                                note=_frozen_note(frozen, painterly)))
        return rows

    def gatys_precision(self) -> list[Row]:
        """bf16's loss curve against fp32's, for L-BFGS and Adam (no times): whether "auto" may use it."""
        size, steps = self.plan.drift_size, self.plan.drift_steps
        rows = []
        for optimizer in ("lbfgs", "adam"):
            drift = self.run("gatys-precision", size=size, steps=steps, optimizer=optimizer)
            rows.append(Row("gatys-precision", f"{size} px, {steps} steps", None, drift, variant=optimizer,
                            timed=False, note=_drift_note(drift)))
        return rows

    def _bf16_skipped(self) -> dict | None:
        """The result of a bf16 row the plan leaves out on this CPU ({"skipped": why}), or None to run it."""
        if self.plan.emulated_bf16 or self.run("machine", matmul_size=self.plan.matmul_size).get("native_bf16", True):
            return None
        return {"skipped": "this CPU only emulates bf16, and this plan times bf16 only where it is native"}

    def _gatys_reference(self, size: int, frozen: bool = False) -> dict:
        return self.run("gatys-reference", size=size, steps=1 + self.plan.runs, frozen=frozen)

    def gatys_time_to_quality(self) -> list[Row]:
        """painterly's time to the loss the reference reaches in N Adam steps; the reference's time is
        N × its measured step time (N steps of it take an hour)."""
        size, steps = self.plan.quality_size, self.plan.quality_steps
        step, target = self._gatys_reference(size), self.run("gatys-adam-loss", size=size, steps=steps)
        failed = next((result for result in (step, target) if "error" in result), None)
        if failed:
            return [Row("gatys-time-to-quality", f"{size} px", failed, None)]
        reached = self.run("gatys-to-quality", size=size, steps=steps, target=target["loss"],
                           cap_s=self.plan.quality_cap_s)
        reference = {"seconds": steps * step["seconds"], "flops": steps * step["flops"],
                     "peak_rss": step["peak_rss"], "extrapolated_from": len(step["samples"]),
                     "steps": steps, "loss": target["loss"]}
        return [Row("gatys-time-to-quality", f"{size} px", reference, reached,
                    note=_quality_note(reference, step, target, reached))]

    def fast_inference(self) -> list[Row]:
        """Two rows per size, painterly's torch and ONNX Runtime backends, against the same reference run.

        Only the reference counts conv FLOPs (ONNX Runtime has no hooks); the weights are copied, so
        the network and input are the same and both backends are credited with the same count.
        """
        models = self._models()
        if "error" in models:
            return [Row("fast-inference", "", models, models)]
        rows = []
        for size in self.plan.fast_sizes:
            reference = self.run("fast-reference", model=models["torch"], size=size, runs=self.plan.runs)
            standard = {}
            for variant in ("torch", "torch-fp32", "onnx", "light-torch", "light-onnx"):
                backend = variant.removeprefix("light-").removesuffix("-fp32")
                precision = "fp32" if variant.endswith("-fp32") else "auto"
                painterly = self.run("fast-painterly", model=models[variant.removesuffix("-fp32")], size=size,
                                     runs=self.plan.runs, backend=backend, precision=precision)
                note = ""
                if variant.startswith("light-"):
                    note = _light_note(size, backend, standard.get(backend), painterly)
                elif "error" not in painterly:
                    painterly = {**painterly, "flops": reference.get("flops")}
                    standard.setdefault(backend, painterly)  # the default precision's row
                rows.append(Row("fast-inference", f"{size}²", reference, painterly, variant=variant, note=note))
        return rows

    def _models(self) -> dict:
        """The random model's files, {"torch": path, "onnx": path}; written once (the runner remembers)."""
        return self.run("fast-models", folder=str(self.scratch))

    def adain_inference(self) -> list[Row]:
        """AdaIN (issue 10): a size² photo with a size² painting. Reference: ReferenceAdaIN (pytorch-AdaIN's
        test.py, the painting encoded for every photo). painterly: its torch backend (precision "auto", and
        fp32 where "auto" is not fp32) and ONNX Runtime, the painting's statistics measured once; then the
        light architecture on both. Each painterly row is credited with its own network's conv FLOPs
        (photo only); the notes give its share of the matmul rate of the precision it ran in."""
        models = self.run("adain-models", folder=str(self.scratch))
        if "error" in models:
            return [Row("adain-inference", "", models, models)]
        machine = self.run("machine", matmul_size=self.plan.matmul_size)
        rows = []
        for size in self.plan.adain_sizes:
            reference = self.run("adain-reference", model=models["torch"], size=size, runs=self.plan.runs,
                                 matmul_size=self.plan.matmul_size)
            torch_rows: dict[str, dict] = {}  # "standard"/"light" -> the default precision's torch result
            standard: dict[str, dict] = {}  # backend -> the standard network's result
            fp32_rate = None  # the fp32 matmul rate a torch worker measured at this size: ONNX runs in fp32
            for variant in ("torch", "torch-fp32", "onnx", "light-torch", "light-onnx"):
                name = "light" if variant.startswith("light-") else "standard"
                backend = variant.removeprefix("light-").removesuffix("-fp32")
                precision = "fp32" if variant.endswith("-fp32") else "auto"
                if precision == "fp32" and torch_rows.get(name, {}).get("precision", "fp32") == "fp32":
                    continue  # "auto" ran in fp32 already (no native bf16 here): the same measurement
                model = models[variant.removesuffix("-fp32")]
                painterly = self.run("adain-painterly", model=model, size=size, runs=self.plan.runs,
                                     backend=backend, precision=precision, matmul_size=self.plan.matmul_size)
                if "error" not in painterly:
                    if backend == "torch" and precision == "auto":
                        torch_rows[name] = painterly
                    if backend == "torch" and painterly.get("precision") == "fp32":
                        fp32_rate = painterly.get("matmul_gflops")
                    if backend == "onnx":  # the torch row's network and FLOPs; the rate a torch worker measured in
                        # fp32 ("auto" in bf16 where the CPU has AMX: then the torch-fp32 row's)
                        painterly = {**painterly, "flops": torch_rows.get(name, {}).get("flops"),
                                     "matmul_gflops": fp32_rate}
                    if name == "standard":
                        standard.setdefault(backend, painterly)
                note = _adain_note(size, reference, painterly, machine, standard_network=name == "standard")
                if name == "light":
                    pairs = self.run("adain-pairs", standard=models[backend], light=model, size=size,
                                     runs=self.plan.adain_pairs, backend=backend)
                    note = _adain_light_note(size, backend, standard.get(backend), painterly, pairs) + note
                    painterly = {**painterly, "pairs": pairs}
                rows.append(Row("adain-inference", f"{size}²", reference, painterly, variant=variant, note=note))
        return rows

    def video_temporal(self) -> list[Row]:
        """Issue 12: flicker on synthetic clips of known motion, per frame, --smooth, --stabilize, trained
        with the temporal loss, Gatys video (benchmarks.temporal_report plans it and judges the targets)."""
        from .temporal_report import temporal_rows

        return temporal_rows(self.plan, self.run)

    def video_flow(self) -> list[Row]:
        """What `--flow raft-small|raft-large` costs: `flow.motion` on one noisy pair, each RAFT against DIS
        (the reference: the default, weight-free flow) timed in the same run. Random RAFT weights."""
        height, width = self.plan.flow_size
        runs = max(3, self.plan.runs)
        dis = self.run("flow-cost", flow_name="dis", height=height, width=width, runs=runs)
        return [Row("video-flow", f"{width}×{height} pair", dis,
                    self.run("flow-cost", flow_name=name, height=height, width=width, runs=runs), variant=name,
                    note=(f"{name} against DIS (the reference), both flows and the visibility of one pair, on "
                          "the CPU; seeded random RAFT weights: the cost is the real one's, the flow is not"))
                for name in self.plan.flow_estimators]

    def stroke_scale(self) -> list[Row]:
        """Issue 13: SSIM of each engine's large output, downscaled, against its preview, without and with
        the option that keeps the preview's strokes (benchmarks.stroke_report plans it and judges the target)."""
        from .stroke_report import stroke_rows

        return stroke_rows(self.plan, self.run, self.scratch)

    def train_step(self) -> list[Row]:
        size, batch, runs = self.plan.train_size, self.plan.train_batch, self.plan.runs
        reference = self.run("train-reference", size=size, batch=batch, steps=1 + runs)
        rows = []
        for precision in ("auto", "bf16"):
            skipped = self._bf16_skipped() if precision == "bf16" else None
            painterly = skipped or self.run("train-painterly", size=size, batch=batch, steps=2 + runs,
                                            precision=precision)
            rates = [result.get("images_per_s") for result in (reference, painterly)]
            note = "images/s: reference {}, painterly {}".format(*(f"{r:.2f}" if r else "—" for r in rates))
            rows.append(Row("train-step", f"{size}² ×{batch}", reference, painterly, variant=precision, note=note))
        return rows

    def peak_memory(self) -> list[Row]:
        """Gatys at a large size (reference vs painterly, one scale) and, unless skipped, painterly
        alone stylising a huge image in tiles."""
        size, steps = self.plan.memory_gatys_size, self.plan.memory_gatys_steps
        reference = self.run("gatys-reference", size=size, steps=steps)
        painterly = self.run("gatys-painterly", size=size, steps=steps)
        rows = [Row("peak-memory", f"Gatys {size} px, {steps} steps", reference, painterly, timed=False)]
        if self.plan.tiled_size:
            side, tile = self.plan.tiled_size, self.plan.tile
            models = self._models()
            for backend in ("torch", "onnx"):
                tiled = models if "error" in models else self.run("fast-tiled", model=models[backend], size=side,
                                                                  tile=tile, backend=backend)
                rows.append(Row("peak-memory", f"fast {side}², 8-bit, tiles {tile or 'auto'}", None, tiled,
                                variant=backend, timed=False, note=_tiled_note(tiled)))
        return rows


def _quality_note(reference: dict, step: dict, target: dict, reached: dict) -> str:
    """How the time-to-quality row was made: the extrapolation, the target, and what painterly did."""
    measured = reference["extrapolated_from"]
    note = (f"reference time extrapolated from {measured} measured step{'s' * (measured != 1)}: "
            f"{reference['steps']} × {step['seconds']:.2f} s. Target: the reference's loss after "
            f"{reference['steps']} Adam steps, {target['loss']:.5g}, computed by painterly's engine running "
            f"the same Adam ({target['seconds']:.0f} s). ")
    if "error" in reached:
        return note
    how = f"painterly (L-BFGS, {' → '.join(f'{side} px' for side in reached['scales'])})"
    if reached["reached"]:
        return note + (f"{how} reached it after {reached['steps']} steps, {reached['final_scale_steps']} of them "
                       "at the final scale.")
    last = "never got to the final scale" if reached["loss"] is None else f"final-scale loss {reached['loss']:.5g}"
    return note + (f"{how} did NOT reach it within {reached['cap_s']:.0f} s or the step budget: {last} "
                   f"after {reached['steps']} steps.")


def _drift_note(drift: dict) -> str:
    if "error" in drift:
        return ""
    ours, nudged = drift["bf16"], drift["nudged"]
    verdict = "yes" if ours["max"] <= 0.02 else "no"
    return (f"loss, bf16 vs fp32: largest gap {100 * ours['max']:.2f} % (step {ours['max_step']}), "
            f"last step {100 * ours['last']:.2f} %; within 2 % at every step: {verdict}. fp32 vs fp32 with the "
            f"photo moved by 1e-6: largest {100 * nudged['max']:.2f} % (step {nudged['max_step']}), "
            f"last {100 * nudged['last']:.2f} %")


def _frozen_note(frozen: dict, painterly: dict) -> str:
    """painterly against the more careful reference, whose VGG weights need no gradient."""
    if "error" in frozen or "seconds" not in painterly:  # failed, or skipped
        return ""
    return (f"vs the reference with frozen VGG weights ({frozen['seconds']:.3g} s): "
            f"{frozen['seconds'] / painterly['seconds']:.1f}×")


def _light_note(size: int, backend: str, standard: dict | None, light: dict) -> str:
    """The light architecture against the standard one on the same backend (the 4x target is at 1024²)."""
    if not standard or "error" in light:
        return ""
    return f"light vs standard TransformerNet, {backend}, {size}²: {standard['seconds'] / light['seconds']:.1f}× faster"


def _tiled_note(tiled: dict) -> str:
    if "error" in tiled:
        return ""
    verdict = "met" if tiled["peak_rss"] < TILED_TARGET_BYTES else "MISSED"
    return (f"target < 2 GiB {verdict}; {tiled['tile']} px tiles, {tiled['precision']}; the 8-bit input "
            f"alone is {tiled['input_bytes'] / 2**20:.0f} MiB; took {tiled['seconds']:.0f} s")


def _adain_note(size: int, reference: dict, painterly: dict, machine: dict, standard_network: bool) -> str:
    """Where an AdaIN row's speed comes from: its share of the matmul rate of the precision it ran in
    (measured in its own worker, else the suite's), the reference's work per photo against its own (the
    standard network is the reference's), the painting's statistics (once), and the targets."""
    if "error" in painterly or "error" in reference:
        return ""
    precision = painterly["precision"]
    peak = painterly.get("matmul_gflops") or machine.get(f"{precision}_gflops")
    where = "in its worker" if painterly.get("matmul_gflops") else "by the suite"
    share = painterly["flops"] / painterly["seconds"] / 1e9 / peak if peak and painterly.get("flops") else None
    parts = []
    if share is not None:
        work = ""
        if standard_network and reference.get("flops"):
            ratio = reference["flops"] / painterly["flops"]
            work = f"; the reference does {ratio:.2f}× that, encoding the painting again"
            if reference.get("matmul_gflops"):
                rate = reference["matmul_gflops"]
                work += (f", at {100 * reference['flops'] / reference['seconds'] / 1e9 / rate:.0f} % of the fp32 "
                         f"rate its worker measured ({rate:.0f} GFLOP/s)")
        parts.append(f"{100 * share:.0f} % of the {precision} matmul rate ({peak:.0f} GFLOP/s, measured {where}; "
                     f"{painterly['flops'] / 1e9:.3g} GFLOP of convs per photo{work})")
    parts.append(f"the painting's statistics, measured once: {painterly['statistics_seconds']:.3g} s")
    if size == ADAIN_TARGET_SIZE and standard_network:
        speedup = reference["seconds"] / painterly["seconds"]
        verdicts = [f"≥ {ADAIN_SPEEDUP:g}× the reference {'met' if speedup >= ADAIN_SPEEDUP else 'MISSED'}"]
        if share is not None:
            verdicts.append(f"≥ {100 * ADAIN_SHARE:.0f} % of the {precision} rate "
                            f"{'met' if share >= ADAIN_SHARE else 'MISSED'}")
        parts.append("targets: " + ", ".join(verdicts))
    return "; ".join(parts)


def _adain_light_note(size: int, backend: str, standard: dict | None, light: dict, pairs: dict | None = None) -> str:
    """The light AdaIN architecture against the standard one on the same backend: the pairs timed interleaved
    in one worker (the target's measure, at ADAIN_TARGET_SIZE²), and the two rows' separate workers."""
    parts = []
    if pairs and "error" not in pairs:
        speedup = pairs["median_ratio"]
        verdict = ""
        if size == ADAIN_TARGET_SIZE:
            verdict = f" (target ≥ {ADAIN_LIGHT_SPEEDUP:g}×: {'met' if speedup >= ADAIN_LIGHT_SPEEDUP else 'MISSED'})"
        ratios = pairs["pair_ratios"]
        parts.append(f"light vs standard AdaIN, {backend}, {size}², {len(ratios)} pairs interleaved in one worker: "
                     f"{speedup:.2f}× faster{verdict}, the median of {min(ratios):.2f}–{max(ratios):.2f}×; "
                     f"{pairs['standard']['seconds']:.3g} s against {pairs['light']['seconds']:.3g} s (medians), "
                     f"ratio of minima {pairs['ratio_of_minima']:.2f}×, of CPU seconds {pairs['cpu_ratio']:.2f}×; "
                     f"load average {pairs['load_average'][0]:.1f} → {pairs['load_average'][1]:.1f}")
    elif pairs:
        parts.append(f"light vs standard pairs failed: {pairs['error']}")
    if standard and "error" not in light:
        parts.append(f"the rows' separate workers: {standard['seconds'] / light['seconds']:.1f}×")
    return "; ".join(parts) + "; " if parts else ""
