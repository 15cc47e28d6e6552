"""Choosing the compute device, and recognising out-of-memory failures."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

from .config import DEVICES, PRECISIONS, check_choice
from .errors import PainterlyError, UsageError
from .events import Callback, MessageEvent, ignore

# bf16 pays only where the hardware multiplies it; elsewhere PyTorch emulates it, and one
# 1024x768 image took 97 s in bf16 against 5.1 s in fp32 on a CPU without AVX-512 (issue 14).
EMULATED_BF16_WARNING = (
    "--precision bf16: this {device} does not compute bf16 natively, so PyTorch emulates it and it runs "
    "many times slower than fp32 (19x in one measurement); use --precision auto or fp32 here"
)


def resolve_device(name: str = "auto") -> torch.device:
    """"auto" picks CUDA, then Apple's MPS, then the CPU; a named device must exist."""
    check_choice("device", name, DEVICES)
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: no CUDA GPU is available to PyTorch here; use --device cpu or auto")
    if name == "mps" and not torch.backends.mps.is_available():
        raise UsageError("--device mps: Apple's MPS backend is not available here; use --device cpu or auto")
    return torch.device(name)


def is_out_of_memory(error: BaseException) -> bool:
    """True for CUDA/MPS OOM errors and for the CPU allocator giving up."""
    if isinstance(error, torch.OutOfMemoryError):
        return True
    text = str(error)
    return isinstance(error, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text)


@contextmanager
def out_of_memory_guard(what: str, device: torch.device, hint: str | None = None) -> Iterator[None]:
    """Turn running out of memory inside the block into one line saying what ran out and what to try.

    The one out-of-memory boundary of Gatys, training and the fast networks."""
    try:
        yield
    except (RuntimeError, MemoryError) as error:
        if isinstance(error, MemoryError) or is_out_of_memory(error):
            raise out_of_memory_error(what, device, hint) from None
        raise


def out_of_memory_error(what: str, device: torch.device, hint: str | None = None) -> PainterlyError:
    if hint is not None:
        return PainterlyError(f"out of memory on {device.type} while {what} ({hint})")
    hint = "a smaller --size" + (" or --device cpu" if device.type != "cpu" else "")
    return PainterlyError(f"out of memory on {device.type} while {what}; try {hint}")


def autocast_dtype(precision: str, device: torch.device, *, auto_bf16: bool = True,
                   callback: Callback = ignore) -> torch.dtype | None:
    """The dtype to autocast the networks to, or None for fp32; losses are summed in fp32 regardless.

    "auto" takes bf16 where the hardware computes it natively (CUDA GPUs from Ampere on, and
    CPUs with AVX-512 BF16 or AMX) and fp32 elsewhere, where bf16 would be emulated and slower.
    `auto_bf16=False` keeps "auto" in fp32 where bf16 failed the project's bar (a loss curve within
    2 % of fp32's at every step, docs/benchmarks.md): Gatys with L-BFGS, and training on CPUs.
    Gatys with Adam stays within 0.5 %, and a fast network's output within 55 dB PSNR of fp32's.
    fp16 needs loss scaling and a GPU. bf16 asked for where it would be emulated is honoured, with a
    warning to `callback`: the one place Gatys, training and the fast networks resolve their precision.
    """
    check_choice("precision", precision, PRECISIONS)
    if precision == "auto":
        return torch.bfloat16 if auto_bf16 and native_bf16(device) else None
    if precision == "fp16" and device.type != "cuda":
        raise UsageError(f"--precision fp16 needs a CUDA GPU (it relies on loss scaling); use bf16 on {device.type}")
    if precision == "bf16" and not native_bf16(device):
        callback(MessageEvent(EMULATED_BF16_WARNING.format(device=_device_name(device)), "warning"))
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def native_bf16(device: torch.device) -> bool:
    """Whether `device` multiplies bf16 in hardware, which is what makes it faster than fp32."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported(including_emulation=False)
    if device.type == "cpu":
        checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")  # private, so looked up with care
        return any(getattr(torch.cpu, check, lambda: False)() for check in checks)
    return False


def _device_name(device: torch.device) -> str:
    return {"cpu": "CPU", "cuda": "GPU", "mps": "Apple GPU"}.get(device.type, device.type)


def precision_name(dtype: torch.dtype | None) -> str:
    """What `autocast_dtype` chose, as recorded with outputs: "fp32", "bf16" or "fp16"."""
    return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[dtype]
