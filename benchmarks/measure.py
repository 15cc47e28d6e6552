"""Measuring inside a worker process: wall time per step, convolution FLOPs, peak memory.

torch is imported only where FLOPs are counted, so a worker that runs ONNX Runtime alone
keeps torch out of the memory it reports.
"""

from __future__ import annotations

import resource
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


def peak_rss_bytes() -> int:
    """This process's resident-memory high-water mark (Linux reports ru_maxrss in KiB, macOS in bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def conv_flops(module: Any, inputs: tuple[Any, ...], output: Any) -> int:
    """FLOPs of one Conv2d call, forward and the backward it will get.

    Forward: 2·(Cin/groups)·Cout·kh·kw·Hout·Wout per image (a multiply-add is two FLOPs).
    A call that records a graph is counted once more for each gradient its backward computes:
    the input's (when the input needs one) and the weight's (when trained). That assumes one
    backward per forward, which holds in every workload here; it gives ×2 for Gatys (frozen
    VGG, gradient to the image) and ×3 for a trained layer whose input needs a gradient.
    """
    kh, kw = module.kernel_size
    batch, _, height, width = output.shape
    forward = 2 * (module.in_channels // module.groups) * module.out_channels * kh * kw * height * width * batch
    if not output.requires_grad:
        return forward
    return forward * (1 + int(inputs[0].requires_grad) + int(module.weight.requires_grad))


class ConvFlops:
    """Counts the FLOPs of every Conv2d run while active (a global forward hook), in `total`.

    Only convolutions are counted; Gram matrices, norms and pointwise layers are not, so the
    share of peak computed from this count slightly understates the work done.
    """

    def __init__(self) -> None:
        self.total = 0

    def __enter__(self) -> ConvFlops:
        import torch

        self._conv = torch.nn.Conv2d
        self._handle = torch.nn.modules.module.register_module_forward_hook(self._hook)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._handle.remove()

    def _hook(self, module: Any, inputs: tuple[Any, ...], output: Any) -> None:
        if isinstance(module, self._conv):
            self.total += conv_flops(module, inputs, output)


@dataclass
class Timing:
    """Wall times (and conv FLOPs, when counted) of the measured steps or calls of one run."""

    seconds: list[float] = field(default_factory=list)
    flops: list[int] = field(default_factory=list)

    def add(self, seconds: float, flops: int | None = None) -> None:
        self.seconds.append(seconds)
        if flops is not None:
            self.flops.append(flops)

    def summary(self) -> dict[str, Any]:
        """The median, as the reported time (robust to one slow step on a shared machine), and the samples."""
        return {
            "seconds": statistics.median(self.seconds) if self.seconds else None,
            "samples": self.seconds,
            "flops": statistics.median(self.flops) if self.flops else None,
        }


def time_calls(call: Callable[[], object], runs: int, counter: ConvFlops | None = None, warmup: int = 1) -> Timing:
    """Time `runs` calls of `call` after `warmup` untimed ones (first-call allocations, lazy init)."""
    timing = Timing()
    for index in range(warmup + runs):
        flops_before = counter.total if counter else 0
        start = time.perf_counter()
        call()
        seconds = time.perf_counter() - start
        if index >= warmup:
            timing.add(seconds, counter.total - flops_before if counter else None)
    return timing


class StepClock:
    """Per-step times from a run's own progress events (`elapsed` since it began), skipping warm-up steps.

    A step's time is the difference between its event and the previous one; the first `skip`
    steps are left out (they include computing targets, building the optimiser's state).
    """

    def __init__(self, counter: ConvFlops | None, skip: int) -> None:
        self.counter, self.skip = counter, skip
        self.timing = Timing()
        self._steps = 0
        self._last = (0.0, 0)

    def tick(self, elapsed: float) -> None:
        flops = self.counter.total if self.counter else 0
        self._steps += 1
        if self._steps > self.skip:
            self.timing.add(elapsed - self._last[0], flops - self._last[1] if self.counter else None)
        self._last = (elapsed, flops)
