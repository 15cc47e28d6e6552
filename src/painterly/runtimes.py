"""The two runtimes a fast-style network runs in: PyTorch and ONNX Runtime.

Both take and give (N, 3, H, W) float32 batches in [0, 1], H and W multiples of
`config.SIZE_MULTIPLE` (the caller pads); everything around the network is numpy, in
`fast.py`. torch is imported only inside `TorchBackend`, so a `.onnx` model runs where torch
is not installed. `open_onnx_session` is the one place an `.onnx` file is opened: by the ONNX
backend (which reads the metadata from the same session) and by `export.py`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from .config import ApplyConfig
from .errors import ModelFileError, PainterlyError, UsageError
from .events import Callback, ignore

OOM_HINT = "--tile 512 stylises a large image in pieces"
_NO_ONNX_RUNTIME = "the onnx backend needs ONNX Runtime: pip install 'painterly[onnx]'"


class Backend(Protocol):
    """A loaded network: what runs it, where, in what precision, and what its file says about it."""

    name: str  # "torch" or "onnx"
    device: str  # "cpu", "cuda" or "mps"
    precision: str  # "fp32", or "bf16"/"fp16" autocast
    metadata: dict

    def run(self, batch: np.ndarray) -> np.ndarray:
        """(N,3,H,W) float32 in [0, 1] -> (N,3,H,W) float32, not yet clipped."""
        ...


def open_backend(path: Path, config: ApplyConfig, *, callback: Callback = ignore) -> Backend:
    """"auto" runs a .onnx file in ONNX Runtime and anything else in PyTorch; `callback` hears of an
    emulated bf16 (`devices.autocast_dtype`)."""
    is_onnx = path.suffix.lower() == ".onnx"
    if config.backend == "torch" and is_onnx:
        raise UsageError(f"{path}: an ONNX model runs with the onnx backend, not torch")
    if config.backend == "onnx" and not is_onnx:
        raise UsageError(f"{path}: the onnx backend needs a .onnx model; make one with `painterly export`")
    if is_onnx and config.precision not in ("auto", "fp32"):
        raise UsageError(
            f"{path}: the onnx backend computes in fp32; --precision {config.precision} needs the torch backend")
    if is_onnx:
        return OnnxBackend(path, config.device)
    from .modelfile import TORCH_SUFFIXES  # the torch path: torch is loaded next anyway

    if path.is_file() and path.suffix not in (".safetensors", *TORCH_SUFFIXES):  # modelfile's own list lacks .onnx
        raise ModelFileError(f"{path}: unknown model file type; expected .safetensors, .onnx or a pytorch/examples "
                             f"{', '.join(TORCH_SUFFIXES)} file")
    return TorchBackend(path, config.device, config.precision, callback=callback)


def oom_what(batch: np.ndarray) -> str:
    """What was running when memory ran out, with the way around it."""
    count, _, height, width = batch.shape
    return f"stylising {count} image(s) of {width}x{height} pixels ({OOM_HINT})"


class TorchBackend:
    """PyTorch in eval mode under inference_mode (no autograd memory), autocast to bf16 where the
    hardware computes it natively (`devices.autocast_dtype`): 1.5x faster on such CPUs, 55 dB
    PSNR from fp32's output."""

    name = "torch"

    def __init__(self, path: Path, device: str, precision: str, *, callback: Callback = ignore) -> None:
        from .devices import autocast_dtype, precision_name, resolve_device
        from .modelfile import load_model

        self._device = resolve_device(device)
        self._autocast = autocast_dtype(precision, self._device, callback=callback)
        self._model, self.metadata = load_model(path, device=self._device)
        self.device = self._device.type
        self.precision = precision_name(self._autocast)

    def run(self, batch: np.ndarray) -> np.ndarray:
        import torch

        from .devices import out_of_memory_guard

        dtype = self._autocast or torch.float32
        with out_of_memory_guard(oom_what(batch), self._device), torch.inference_mode(), \
                torch.autocast(self._device.type, dtype=dtype, enabled=self._autocast is not None):
            return self._model(torch.from_numpy(batch).to(self._device)).float().cpu().numpy()


class OnnxBackend:
    """ONNX Runtime on the CPU, or CUDA when its provider is installed; needs no torch."""

    name = "onnx"
    precision = "fp32"

    def __init__(self, path: Path, device: str) -> None:
        self._path = path
        self._session = open_onnx_session(path, device=device)
        self.device = "cuda" if "CUDAExecutionProvider" in self._session.get_providers() else "cpu"
        inputs = self._session.get_inputs()
        shape = inputs[0].shape if len(inputs) == 1 else []
        if len(shape) != 4:
            raise ModelFileError(f"{path}: not an image-to-image model (it should take one (N, 3, H, W) input)")
        if any(isinstance(side, int) for side in shape[2:]):
            raise ModelFileError(f"{path}: exported for one image size only; export it again with dynamic sizes")
        self._input = inputs[0].name
        self._one_at_a_time = shape[0] == 1  # exported with a fixed batch of one
        self.metadata = onnx_metadata(self._session)

    def run(self, batch: np.ndarray) -> np.ndarray:
        if self._one_at_a_time:
            return np.concatenate([self._run(batch[i : i + 1]) for i in range(len(batch))])
        return self._run(batch)

    def _run(self, batch: np.ndarray) -> np.ndarray:
        try:  # ONNX Runtime's exceptions share no base class but Exception
            output = self._session.run(None, {self._input: batch})[0]
        except Exception as error:
            if "allocat" in str(error):
                raise PainterlyError(f"out of memory on {self.device} while {oom_what(batch)}") from None
            raise ModelFileError(f"{self._path}: ONNX Runtime cannot run this model ({first_line(error)})") from None
        if not (isinstance(output, np.ndarray) and output.shape == batch.shape):
            shape = getattr(output, "shape", type(output).__name__)
            raise ModelFileError(f"{self._path}: the model gives {shape} for an input of {batch.shape}, not an image")
        return output.astype(np.float32, copy=False)


def open_onnx_session(path: str | os.PathLike, *, device: str = "cpu") -> Any:
    """An ONNX Runtime inference session of `path` on `device` ("auto", "cpu" or "cuda").

    The one way an .onnx file is opened: it logs errors only (the library never prints), and
    without the CPU memory arena, which grows in powers of two and never gives memory back
    (an 8192² image in 1024² tiles, four a batch, peaked at 8.6 GB with it and 3.3 GB without,
    as fast). Any failure to read the file is a one-line `ModelFileError`.
    """
    try:
        import onnxruntime
    except ImportError:
        raise UsageError(_NO_ONNX_RUNTIME) from None
    path = Path(path)
    if path.is_dir():
        raise ModelFileError(f"{path}: is a directory, not a model file")
    if not path.is_file():
        raise ModelFileError(f"{path}: no such model file")
    providers = _onnx_providers(onnxruntime.get_available_providers(), device)
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3  # errors only
    options.enable_cpu_mem_arena = False
    try:  # ONNX Runtime's exceptions share no base class but Exception
        return onnxruntime.InferenceSession(str(path), options, providers=providers)
    except Exception as error:
        raise ModelFileError(f"{path}: not a readable ONNX model ({first_line(error)})") from None


def onnx_metadata(session: Any) -> dict[str, Any]:
    """A session's `metadata_props`, JSON values decoded; values that are not JSON (ONNX files from
    other tools) come back as text."""
    return {key: _decode(value) for key, value in session.get_modelmeta().custom_metadata_map.items()}


def first_line(error: BaseException) -> str:
    """The first line of an error's message, shortened: ONNX Runtime's run to pages."""
    lines = str(error).strip().splitlines()
    return lines[0][:200] if lines else type(error).__name__


def _decode(value: str) -> Any:
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        return value


def _onnx_providers(available: list[str], device: str) -> list[str]:
    """ONNX Runtime providers for a --device value."""
    has_cuda = "CUDAExecutionProvider" in available
    if device == "cuda" and not has_cuda:
        raise UsageError("--device cuda: this ONNX Runtime has no CUDA provider; install onnxruntime-gpu or use cpu")
    if device not in ("auto", "cpu", "cuda"):
        raise UsageError(f"the onnx backend runs on auto, cpu or cuda, not {device!r}")
    cpu = ["CPUExecutionProvider"]
    return ["CUDAExecutionProvider", *cpu] if device != "cpu" and has_cuda else cpu
