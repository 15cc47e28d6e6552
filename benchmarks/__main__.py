"""`python -m benchmarks [--quick] [--json PATH] [--only NAME ...]`: painterly against textbook references.

Everything runs in one command, on the same random-weight networks for both sides (VGG from
`weights.random_state_dict(seed=0)`; one random TransformerNet, seed 0, whose weights are
copied into the reference network), and prints one table: reference time, painterly time,
speed-up (reference / painterly), each side's peak resident memory, and each side's share of
the machine's peak — counted conv FLOPs per second over torch.mm's fp32 GFLOP/s on 2048²
matrices (bf16 is shown too). `--json PATH` writes the same, with every sample, to PATH.

Each job (each implementation of each workload) runs in its own process
(`python -m benchmarks.worker`), so its peak memory (ru_maxrss) is its own and its allocations
do not slow the other down (the tests' hidden `--tiny` forks each job from one process that
imported torch once, `worker.forked`: a fresh interpreter's imports were most of a tiny job's
CPU, and its peak memory then counts that torch in every job). Times are medians of 3 timed runs
(1 with --quick) after one untimed warm-up. Conv FLOPs are counted with a forward hook on every Conv2d:
2·Cin·Cout·k²·Hout·Wout, and once more for each gradient (input, weight) a backward computes.

Workloads
---------
gatys-step (256 and 512 px; --quick 256)
    Time of one optimisation step on a photo and a painting at that long side.
    Reference: `ReferenceGatys.step` — Adam, the full VGG-19 run on the generated, content and
    style images every step, the network as torchvision builds it (weights requiring gradients,
    as the tutorials that recompute targets each step leave it); the note gives the ratio to the
    same reference with frozen weights too. painterly: `stylize` with StylizeConfig's defaults
    (L-BFGS, one loss evaluation per step, targets computed once, VGG cut after relu5_1,
    channels-last, precision "auto", which is fp32 for L-BFGS), apart
    from size, steps, random weights and one scale (as "auto" is up to 512 px); the median of the
    differences between consecutive StepEvent.elapsed after the first 2 steps. A second row
    takes the `--precision bf16` option. Same layers and loss weights.

gatys-precision (512 px, 30 steps; --quick 256 px, 10 steps)
    No times: bf16 autocast's loss curve against fp32's at every step, for L-BFGS and Adam,
    next to fp32's own curve when the photo moves by 1e-6 (far below one 8-bit level), which
    shows how sensitive the optimiser's path is itself. The bar for bf16 to be the default
    ("auto") with that optimiser: within 2 % at every step.

gatys-time-to-quality (512 px)
    Reference: the loss ReferenceGatys reaches after 300 Adam steps (--quick 30). 300 reference
    steps take about an hour here, so that loss is computed by painterly's engine running the
    same algorithm (Adam at the same learning rate, content init, fp32, one scale — the
    reference calls painterly's loss functions, and the test suite checks the two agree step by
    step), and the reference's time is EXTRAPOLATED: 300 × its measured median step time (the
    table's note says from how many measured steps). painterly: wall time from calling
    `stylize` with its default settings (L-BFGS, content init, precision "auto"), coarse-to-fine
    from 256 px (100 steps there, then up to 300 at 512 px) until the final scale's loss is at or
    below that target, stopping it
    there with StopRequested; the steps taken are reported. Given up after 1000 s (--quick
    120 s): "not reached".

fast-inference (512², 1024², 2048²; --quick 512² and 1024²)
    One image through the fast network, image in and image out. Reference:
    `ReferenceTransformerNet.stylize` (no_grad, eager fp32, 0–255 pixels). painterly:
    `FastStylizer.stylize` with the torch backend (precision "auto", and fp32), and with the ONNX
    Runtime backend on the model's export: one row each, against the same reference measurement.
    Two more rows run the light architecture (`--arch light`) on both backends; their notes give
    its speed-up over the standard network.

adain-inference (512², 1024²)
    One AdaIN transfer: a photo and a painting, both size². Reference: `ReferenceAdaIN.style_transfer`
    (as pytorch-AdaIN's test.py: nn.Sequential VGG to relu4_1 and decoder, eager fp32, no_grad, the
    painting encoded for every photo). painterly: `FastStylizer.style_statistics` once, then
    `with_styles([stats]).stylize(photo)` on torch (precision "auto", and fp32 where "auto" is not)
    and ONNX Runtime, and the light architecture on both. Random weights (seed 0) in the published
    encoder layout, so the standard model is the reference's network weight for weight. Notes: each
    row's share of the matmul rate of its precision (measured in its worker), the reference's work
    per photo, the painting's statistics time, and issue 10's targets at 1024²; the light rows' notes,
    light against standard timed interleaved in one worker (5 pairs per backend), which decides the
    ≥ 3× target.

train-step (256², batch 4)
    One training step of a fast network. Reference: `ReferenceTrainer.step` on a ready batch.
    painterly: `train()` with TrainConfig's defaults (precision "auto") on a folder of 8 generated
    photos, per-step times from TrainStepEvent.elapsed after the first 2 steps (its data loading
    included), and with `--precision bf16`. Images per second are in the notes.

peak-memory
    Peak resident memory only: Gatys at 1024 px, 2 steps, one scale (reference against
    painterly), and painterly alone stylising an 8-bit 8192×8192 image with FastStylizer's
    defaults (automatic 768 px tiles), on torch and on ONNX Runtime (target: under 2 GiB; the
    8-bit input alone is 192 MiB). --quick skips the 8192² image unless `--only peak-memory`
    asks for nothing else.

video-temporal (480p clips of 48 frames; --quick 24 frames; --tiny 64×48, 4 frames, no training, no Gatys)
    Flicker, measured on clips the benchmark makes from the eval photos with exactly known motion
    (benchmarks/clips.py): a pan, a zoom with rotation, an object crossing a background (occlusions),
    each clean and with per-frame sensor noise. Weight-free, in 8-bit levels (temporal_metrics.py):
    warping error |O_t − W(O_{t−1})| over the pixels visible in both frames, W the true motion, with
    the input's own as its floor; ghosting, |O_t − S_t| over the pixels just disoccluded; fidelity,
    |O_t − S_t| everywhere (S_t: per-frame stylisation of the noise-free frame), so a frozen clip
    cannot win; frames/s (the network's time plus the blend's). Rows: per frame, --smooth 0.5 and 0.8,
    --stabilize 0.5 and 0.8 (flow at run time), on the random TransformerNet (seed 0); a light network
    trained with the temporal loss against one trained without (same steps, seed, crops of the eval
    photos); Gatys per frame against Gatys video on a very short clip. Notes: issue 12's targets, met
    or not.

video-flow (a 640×480 pair; --tiny 64×48, RAFT-small alone)
    What `--flow raft-small|raft-large` costs: `flow.motion` (both flows and the visibility) on one
    pair of the noisy pan, each RAFT against DIS (the reference: the default, weight-free flow),
    medians of 3 pairs after a warm-up, on the CPU. RAFT with seeded random weights (the real ones
    cannot be downloaded here): the cost is the real one's, the flow is not.

stroke-scale (fast engines 1024 → 4096 px, Gatys 512 → 2048 px; --quick 512 → 2048 and 256 → 1024;
--tiny the light network alone at 32 → 128 px, no Gatys)
    Issue 13: how alike a large output and its preview look. SSIM (benchmarks/ssim.py: Gaussian
    window, on luminance and the mean over R, G, B) between the large output, downscaled to the
    preview's size, and the preview. Fast engines: seeded random networks whose output layer is
    calibrated to mid-grey (Johnson and AdaIN, standard and light; AdaIN with the eval painting), the large
    output without and with `--stroke-size` = the preview's long side. Gatys: coarse-to-fine with
    `--style-scale` 1 (the default) and with the painting held at the preview's pixels. Time and
    peak RSS of each run; notes: the ≥ 0.8 target and the option's cost against the run without.

painterly's jobs run with the malloc setting painterly's CLI makes
(`painterly.allocator.keep_freed_memory`; not for ONNX Runtime, as `painterly apply`); the
references run with glibc's defaults, as a script of theirs would. GPU figures come from a separate script,
`python -m benchmarks.gpu`.

The timings are only as good as the machine is quiet: a shared machine makes them noisy.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from .inputs import image_source
from .report import document, text
from .suite import TINY, WORKLOADS, Plan, Row, Runner, Suite, plan_for


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description="painterly against reference "
                                     "implementations; see the module docstring for what each workload measures")
    parser.add_argument("--quick", action="store_true", help="smaller sizes, fewer steps, 1 timed run")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the results as JSON to PATH")
    parser.add_argument("--only", nargs="+", choices=WORKLOADS, metavar="NAME",
                        help=f"run only these workloads ({', '.join(WORKLOADS)})")
    parser.add_argument("--tiny", action="store_true", help=argparse.SUPPRESS)  # seconds-long sizes, for tests
    return parser.parse_args(argv)


def measure(plan: Plan, workloads: tuple[str, ...], log: Callable[[str], None] = print) -> tuple[dict, list[Row]]:
    """The machine's description and the report's rows, every measurement in a worker process."""
    run = Runner(log, forked=plan == TINY)  # the tests' plan: jobs forked from one torch import
    machine = run("machine", matmul_size=plan.matmul_size)
    with tempfile.TemporaryDirectory(prefix="painterly-bench-") as scratch:
        rows = Suite(plan, run, Path(scratch)).rows(workloads)
    return machine, rows


def main(argv: list[str] | None = None) -> None:
    args = parse(sys.argv[1:] if argv is None else argv)
    workloads = tuple(dict.fromkeys(args.only or WORKLOADS))
    mode = "tiny" if args.tiny else "quick" if args.quick else "full"
    machine, rows = measure(plan_for(args.quick, args.tiny, workloads), workloads,
                            log=lambda line: print(line, file=sys.stderr, flush=True))
    summary = document(rows, machine, mode, image_source())
    print(text(summary))
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
