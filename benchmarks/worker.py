"""One benchmark job in a fresh process: `python -m benchmarks.worker '{"job": NAME, "args": {...}}'`.

Prints one JSON line: the job's result plus `peak_rss`, this process's peak resident memory in
bytes. A process per job and implementation keeps each one's peak memory its own, and its
allocations (and the allocator state they leave) out of the other's timing. `forked` (the tests' `--tiny`
runs) forks each job's process from the suite's own, which imports torch once.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import traceback

from .measure import peak_rss_bytes

# Job name -> "module:function"; modules are imported only when their job runs (the ONNX job needs no torch).
JOBS = {
    "machine": "benchmarks.machine:describe",
    "gatys-reference": "benchmarks.gatys_jobs:reference_steps",
    "gatys-painterly": "benchmarks.gatys_jobs:painterly_steps",
    "gatys-adam-loss": "benchmarks.gatys_jobs:adam_target_loss",
    "gatys-to-quality": "benchmarks.gatys_jobs:painterly_time_to_quality",
    "gatys-precision": "benchmarks.gatys_jobs:precision_drift",
    "fast-models": "benchmarks.fast_jobs:write_models",
    "fast-reference": "benchmarks.fast_jobs:reference_inference",
    "fast-painterly": "benchmarks.fast_jobs:painterly_inference",
    "fast-tiled": "benchmarks.fast_jobs:painterly_tiled",
    "train-reference": "benchmarks.train_jobs:reference_steps",
    "train-painterly": "benchmarks.train_jobs:painterly_steps",
    "adain-models": "benchmarks.adain_jobs:write_models",
    "adain-reference": "benchmarks.adain_jobs:reference_inference",
    "adain-painterly": "benchmarks.adain_jobs:painterly_inference",
    "adain-pairs": "benchmarks.adain_jobs:paired_inference",
    "temporal-clip": "benchmarks.temporal_jobs:clip_rows",
    "temporal-trained": "benchmarks.temporal_jobs:trained_rows",
    "temporal-gatys": "benchmarks.temporal_jobs:gatys_rows",
    "flow-cost": "benchmarks.temporal_jobs:flow_cost",
    "stroke-photos": "benchmarks.stroke_jobs:write_photos",
    "stroke-models": "benchmarks.stroke_jobs:write_models",
    "stroke-fast": "benchmarks.stroke_jobs:fast_run",
    "stroke-gatys": "benchmarks.stroke_jobs:gatys_run",
    "stroke-compare": "benchmarks.stroke_jobs:compare",
}


# painterly's jobs run with the allocator setting its CLI applies (painterly.allocator; not with
# ONNX Runtime, where it costs memory); the references run with glibc's defaults, as their scripts do.
TUNED_ALLOCATOR = {"gatys-painterly", "gatys-to-quality", "fast-painterly", "fast-tiled", "train-painterly",
                   "adain-painterly", "adain-pairs", "temporal-clip", "temporal-trained", "temporal-gatys",
                   "stroke-fast", "stroke-gatys"}


def run(job: str, args: dict) -> dict:
    """Run one job in this process and return its result with the peak memory it took."""
    if job in TUNED_ALLOCATOR and args.get("backend") != "onnx":
        from painterly.allocator import keep_freed_memory

        keep_freed_memory()
    module, function = JOBS[job].split(":")
    result = getattr(importlib.import_module(module), function)(**args)
    return {**result, "peak_rss": peak_rss_bytes()}


def main(argv: list[str]) -> None:
    spec = json.loads(argv[0])
    print(json.dumps(run(spec["job"], spec["args"])))



# What a forked job finds imported already: torch (~3.5 s of CPU in every fresh worker) and torch._dynamo
# (~3 s more in every job that builds a torch.optim optimizer or exports ONNX).
PRELOAD = ("torch", "torch._dynamo", "benchmarks.gatys_jobs", "benchmarks.fast_jobs", "benchmarks.adain_jobs",
           "benchmarks.temporal_jobs")


def preload() -> None:
    """Import PRELOAD, so that every job forked after it finds it imported (it runs no torch op: fork-safe)."""
    for name in PRELOAD:
        importlib.import_module(name)


def forked(line: str) -> dict:
    """One job spec (a JSON line) run in a child forked from this process, after PRELOAD is imported here
    (once: later imports find it done): `--tiny`'s way (the test suite's), where imports were most of each
    job's CPU, and where this process (a fork of the tests' zygote) has torch imported already. Results as
    a `python -m benchmarks.worker` process gives them; peak memory counts the preloaded modules in every
    job (the ONNX ones too), so the full and --quick runs keep a fresh interpreter per job. This process
    runs no torch op itself (the suite only plans jobs and writes notes), so each child starts with torch
    as an import left it; it is waited for as it finishes (its CPU time counted in ours)."""
    preload()
    sys.stdout.flush()  # nothing of ours buffered twice
    sys.stderr.flush()
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the job's own process
        os.close(read_end)
        os.dup2(2, 1)  # anything a job prints goes to stderr, not into the results
        try:
            spec = json.loads(line)
            result = json.dumps(run(spec["job"], spec["args"]))
        except Exception as error:  # the line a worker's traceback ends with
            result = json.dumps({"error": traceback.format_exception_only(error)[-1].strip()})
        with os.fdopen(write_end, "w") as answer:
            answer.write(result)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end) as answer:
        result = answer.read()
    _, status = os.waitpid(pid, 0)
    return json.loads(result) if result else {"error": f"exit status {os.waitstatus_to_exitcode(status)}"}


if __name__ == "__main__":
    main(sys.argv[1:])
