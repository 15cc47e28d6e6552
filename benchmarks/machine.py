"""The machine's ceiling: matrix-multiply GFLOP/s in fp32 and bf16, and what was measured on."""

from __future__ import annotations

import os
import platform
from pathlib import Path

import torch

from painterly.devices import native_bf16

from .measure import time_calls

# Where bf16 is emulated a 2048² torch.mm takes minutes (and says only "slow"): it is timed at this size instead.
EMULATED_BF16_MATMUL_SIZE = 512


def describe(matmul_size: int) -> dict:
    """CPU, versions, threads, whether bf16 is native, and the peak GFLOP/s each workload's share is computed
    against."""
    native = native_bf16(torch.device("cpu"))
    bf16_size = matmul_size if native else min(matmul_size, EMULATED_BF16_MATMUL_SIZE)
    return {
        "cpu": _cpu_name(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "matmul_size": matmul_size,
        "fp32_gflops": matmul_gflops(matmul_size, torch.float32),
        "bf16_matmul_size": bf16_size,
        "bf16_gflops": matmul_gflops(bf16_size, torch.bfloat16),
        "native_bf16": native,  # else bf16 is emulated: slower than fp32
    }


def matmul_gflops(size: int, dtype: torch.dtype, runs: int = 5) -> float:
    """GFLOP/s of torch.mm on two size×size matrices, from the fastest of `runs` after two warm-ups.

    The fastest, not the median: a ceiling is what the machine can do, and on a shared
    machine only slowdowns are noise.
    """
    generator = torch.Generator().manual_seed(0)
    a, b = (torch.randn(size, size, generator=generator).to(dtype) for _ in range(2))
    timing = time_calls(lambda: torch.mm(a, b), runs, warmup=2)
    return 2 * size**3 / min(timing.seconds) / 1e9


def _cpu_name() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"
