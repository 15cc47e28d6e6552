"""One benchmark job in a fresh process: `python -m benchmarks.worker '{"job": NAME, "args": {...}}'`.

Prints one JSON line: the job's result plus `peak_rss`, this process's peak resident memory in
bytes. A process per job and implementation keeps each one's peak memory its own, and its
allocations (and the allocator state they leave) out of the other's timing.
"""

from __future__ import annotations

import importlib
import json
import sys

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
    "temporal-clip": "benchmarks.temporal_jobs:clip_rows",
    "temporal-trained": "benchmarks.temporal_jobs:trained_rows",
    "temporal-gatys": "benchmarks.temporal_jobs:gatys_rows",
}


# painterly's jobs run with the allocator setting its CLI applies (painterly.allocator; not with
# ONNX Runtime, where it costs memory); the references run with glibc's defaults, as their scripts do.
TUNED_ALLOCATOR = {"gatys-painterly", "gatys-to-quality", "fast-painterly", "fast-tiled", "train-painterly",
                   "adain-painterly", "temporal-clip", "temporal-trained", "temporal-gatys"}


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


if __name__ == "__main__":
    main(sys.argv[1:])
