"""The two runtimes a fast-style network runs in: PyTorch and ONNX Runtime.

Both take and give (N, 3, H, W) float32 batches in [0, 1], H and W multiples of the loaded
network's `size_multiple` (4 for a Johnson network and the light AdaIN one, 8 for the standard
AdaIN one; the caller pads); everything around the network is numpy, in `fast.py`. torch is
imported only inside `TorchBackend`, so a `.onnx` model runs where torch is not installed.
`open_onnx_session` is the one place an `.onnx` file is opened: by the ONNX backend (which reads
the metadata from the same session) and by `export.py`.

An arbitrary-style (AdaIN) network also takes the painting's bottleneck statistics and alpha
with every batch (`StyleInput`), and measures a painting's statistics (`statistics`). Its ONNX
graph has the inputs `ADAIN_INPUTS` and outputs `ADAIN_OUTPUTS` (export.py writes it); a
painting's statistics come from the same graph, run with the painting as the image (its
`content_mean`/`content_std` outputs), so no second graph and no torch are needed. Spatial
control (`run_regions`, a mask's regions each with their painting) is the torch backend's only.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from .config import SIZE_MULTIPLE, ApplyConfig
from .errors import ModelFileError, PainterlyError, UsageError
from .events import Callback, ignore

if TYPE_CHECKING:
    from .adain import AdaINNet

# The ONNX graph of an arbitrary-style model (export.py writes it, the ONNX backend runs it):
# image (N, 3, H, W), style_mean and style_std (N or 1, C), alpha (1,) -> stylized (N, 3, H, W) and the
# image's own bottleneck statistics content_mean, content_std (N, C).
ADAIN_INPUTS = ("image", "style_mean", "style_std", "alpha")
ADAIN_OUTPUTS = ("stylized", "content_mean", "content_std")
ADAIN_FORMAT = "painterly-adain"  # modelfile.ADAIN_FORMAT, here torch-free for the ONNX metadata
OOM_HINT = "--tile 512 stylises a large image in pieces"
_NO_ONNX_RUNTIME = "the onnx backend needs ONNX Runtime: pip install 'painterly[onnx]'"


@dataclass(frozen=True)
class StyleInput:
    """What an arbitrary-style network paints a batch with: (N or 1, C) float32 mean and std of the
    painting's bottleneck features (one row for the whole batch, or one per image) and alpha."""

    mean: np.ndarray
    std: np.ndarray
    alpha: float = 1.0

    def rows(self, count: int) -> tuple[np.ndarray, np.ndarray]:
        """Mean and std with one row per image of a batch of `count`."""
        mean, std = (np.ascontiguousarray(np.broadcast_to(value, (count, value.shape[-1])), dtype=np.float32)
                     for value in (self.mean, self.std))
        return mean, std


Region = tuple[np.ndarray, np.ndarray] | None  # a mask region's (C,) mean and std, or None: keep the photo


class Backend(Protocol):
    """A loaded network: what runs it, where, in what precision, and what its file says about it."""

    name: str  # "torch" or "onnx"
    device: str  # "cpu", "cuda" or "mps"
    precision: str  # "fp32", or "bf16"/"fp16" autocast
    metadata: dict
    size_multiple: int  # image sides the network takes are multiples of this
    is_arbitrary: bool  # an AdaIN network: `run` needs a style, `statistics` measures paintings
    supports_regions: bool  # `run_regions` works (spatial control)

    def run(self, batch: np.ndarray, style: StyleInput | None = None) -> np.ndarray:
        """(N,3,H,W) float32 in [0, 1] -> (N,3,H,W) float32, not yet clipped; `style` for an arbitrary model."""
        ...

    def statistics(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(N,3,H,W) paintings -> their bottleneck mean and std, each (N, C) float32 (arbitrary models)."""
        ...

    def run_regions(self, batch: np.ndarray, regions: list[Region], masks: np.ndarray, alpha: float) -> np.ndarray:
        """(1,3,H,W) -> (1,3,H,W): region k of `masks` (1,K,H,W), weights summing to 1, takes `regions[k]`."""
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
    PSNR from fp32's output. An AdaIN network on the CPU convolves in channels-last memory
    (`AdaINNet.use_channels_last`: 4-17 % less CPU time at 1024², the same output to fp32 rounding), each
    conv + ReLU as one oneDNN call (`adain.run_fused`)."""

    name = "torch"

    def __init__(self, path: Path, device: str, precision: str, *, callback: Callback = ignore) -> None:
        from .devices import autocast_dtype, precision_name, resolve_device
        from .modelfile import load_model

        self._device = resolve_device(device)
        self._autocast = autocast_dtype(precision, self._device, callback=callback)
        self._path = path
        self._model, self.metadata = load_model(path, device=self._device)
        self.device = self._device.type
        self.precision = precision_name(self._autocast)
        self.is_arbitrary = self.metadata.get("format") == ADAIN_FORMAT
        self.supports_regions = self.is_arbitrary
        self.size_multiple = int(getattr(self._model, "size_multiple", SIZE_MULTIPLE))
        if self.is_arbitrary and self._device.type == "cpu":  # measured on CPUs only (docs/benchmarks.md)
            self._adain().use_channels_last()

    def run(self, batch: np.ndarray, style: StyleInput | None = None) -> np.ndarray:
        import torch

        from .devices import out_of_memory_guard

        _check_style(self._path, self.is_arbitrary, style)
        dtype = self._autocast or torch.float32
        with out_of_memory_guard(oom_what(batch), self._device), torch.inference_mode(), \
                torch.autocast(self._device.type, dtype=dtype, enabled=self._autocast is not None):
            images = torch.from_numpy(batch).to(self._device)
            if style is None:
                return self._model(images).float().cpu().numpy()
            mean, std = (torch.from_numpy(value).to(self._device) for value in (style.mean, style.std))
            return self._adain().stylize(images, mean, std, style.alpha).float().cpu().numpy()

    def statistics(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """In fp32 whatever the precision: a painting is measured once and every output is painted with it."""
        import torch

        from .devices import out_of_memory_guard

        _check_arbitrary(self._path, self.is_arbitrary)
        with out_of_memory_guard(f"measuring a painting of {batch.shape[3]}x{batch.shape[2]} pixels "
                                 "(a smaller --style-size needs less)", self._device), torch.inference_mode():
            mean, std = self._adain().statistics(torch.from_numpy(batch).to(self._device))
        return mean.float().cpu().numpy(), std.float().cpu().numpy()

    def run_regions(self, batch: np.ndarray, regions: list[Region], masks: np.ndarray, alpha: float) -> np.ndarray:
        import torch

        from .devices import out_of_memory_guard

        _check_arbitrary(self._path, self.is_arbitrary)
        dtype = self._autocast or torch.float32
        with out_of_memory_guard(oom_what(batch).replace(OOM_HINT, "a smaller --size; --mask is never tiled"),
                                 self._device), torch.inference_mode(), \
                torch.autocast(self._device.type, dtype=dtype, enabled=self._autocast is not None):
            on_device = [None if region is None else (torch.from_numpy(region[0][None]).to(self._device),
                                                      torch.from_numpy(region[1][None]).to(self._device))
                         for region in regions]
            styled = self._adain().stylize_regions(torch.from_numpy(batch).to(self._device), on_device,
                                                 torch.from_numpy(masks).to(self._device), alpha)
            return styled.float().cpu().numpy()

    def _adain(self) -> AdaINNet:
        from .adain import AdaINNet

        assert isinstance(self._model, AdaINNet)
        return self._model


class OnnxBackend:
    """ONNX Runtime on the CPU, or CUDA when its provider is installed; needs no torch."""

    name = "onnx"
    precision = "fp32"
    supports_regions = False

    def __init__(self, path: Path, device: str) -> None:
        self._path = path
        self._session = open_onnx_session(path, device=device)
        self.device = "cuda" if "CUDAExecutionProvider" in self._session.get_providers() else "cpu"
        self.metadata = onnx_metadata(self._session)
        inputs = {item.name: item for item in self._session.get_inputs()}
        self.is_arbitrary = set(inputs) == set(ADAIN_INPUTS)
        if self.metadata.get("format") == ADAIN_FORMAT and not self.is_arbitrary:
            raise ModelFileError(f"{path}: an arbitrary-style ONNX model must take the inputs "
                                 f"{', '.join(ADAIN_INPUTS)}, not {', '.join(inputs)}")
        if self.is_arbitrary:
            outputs = [item.name for item in self._session.get_outputs()]
            if not set(ADAIN_OUTPUTS) <= set(outputs):
                raise ModelFileError(f"{path}: an arbitrary-style ONNX model must give the outputs "
                                     f"{', '.join(ADAIN_OUTPUTS)}, not {', '.join(outputs)}")
            self._input = ADAIN_INPUTS[0]
        else:
            self._input = next(iter(inputs)) if len(inputs) == 1 else ""
        shape = inputs[self._input].shape if self._input else []
        if len(shape) != 4:
            raise ModelFileError(f"{path}: not an image-to-image model (it should take one (N, 3, H, W) input)")
        if any(isinstance(side, int) for side in shape[2:]):
            raise ModelFileError(f"{path}: exported for one image size only; export it again with dynamic sizes")
        self._one_at_a_time = shape[0] == 1  # exported with a fixed batch of one
        # A graph whose style inputs take exactly one row paints a batch with one painting only.
        self._one_style = self.is_arbitrary and inputs[ADAIN_INPUTS[1]].shape[:1] == [1]
        self.size_multiple = self._size_multiple()

    def _size_multiple(self) -> int:
        """The metadata's "size_multiple" (an AdaIN export records it), else the Johnson network's."""
        if not self.is_arbitrary:
            return SIZE_MULTIPLE
        value = self.metadata.get("size_multiple", 8)  # 8: the standard AdaIN network's, the largest there is
        if isinstance(value, bool) or not isinstance(value, int) or value not in (1, 2, 4, 8, 16, 32):
            raise ModelFileError(f"{self._path}: metadata size_multiple must be a power of two up to 32, "
                                 f"not {str(value)[:40]!r}")
        return value

    def run(self, batch: np.ndarray, style: StyleInput | None = None) -> np.ndarray:
        _check_style(self._path, self.is_arbitrary, style)
        if self._one_at_a_time or (self._one_style and style is not None and len(style.mean) > 1):
            return np.concatenate([self._stylize(batch[i : i + 1], _row(style, i)) for i in range(len(batch))])
        return self._stylize(batch, style)

    def statistics(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The graph run with the paintings as its images: their own statistics are two of its outputs."""
        _check_arbitrary(self._path, self.is_arbitrary)
        if self._one_at_a_time and len(batch) > 1:
            pairs = [self.statistics(batch[i : i + 1]) for i in range(len(batch))]
            return np.concatenate([m for m, _ in pairs]), np.concatenate([s for _, s in pairs])
        channels = self._channels()
        neutral = StyleInput(np.zeros((1, channels), np.float32), np.ones((1, channels), np.float32), 1.0)
        mean, std = self._run(batch, ADAIN_OUTPUTS[1:], self._feeds(batch, neutral))
        if not (mean.shape == std.shape and mean.ndim == 2 and len(mean) == len(batch)):
            raise ModelFileError(f"{self._path}: the model gives statistics of shape {mean.shape} for "
                                 f"{len(batch)} image(s), not (N, C)")
        return mean.astype(np.float32, copy=False), std.astype(np.float32, copy=False)

    def run_regions(self, batch: np.ndarray, regions: list[Region], masks: np.ndarray, alpha: float) -> np.ndarray:
        raise UsageError(f"{self._path}: --mask needs the torch backend (the .safetensors model); "
                         "the ONNX graph takes one painting per image")

    def _channels(self) -> int:
        """C of the style inputs; a graph that does not say is asked with 512 (VGG-19's relu4_1)."""
        side = next(item for item in self._session.get_inputs() if item.name == ADAIN_INPUTS[1]).shape[-1]
        if isinstance(side, int):
            return side
        return {"relu3_1": 256}.get(str(self.metadata.get("architecture", {}).get("bottleneck")), 512)

    def _feeds(self, batch: np.ndarray, style: StyleInput | None) -> dict[str, np.ndarray]:
        if style is None:
            return {self._input: batch}
        mean, std = (style.mean, style.std) if self._one_style else style.rows(len(batch))
        return {ADAIN_INPUTS[0]: batch, ADAIN_INPUTS[1]: mean, ADAIN_INPUTS[2]: std,
                ADAIN_INPUTS[3]: np.array([style.alpha], dtype=np.float32)}

    def _stylize(self, batch: np.ndarray, style: StyleInput | None) -> np.ndarray:
        names = [ADAIN_OUTPUTS[0]] if self.is_arbitrary else None
        [output] = self._run(batch, names, self._feeds(batch, style))[:1]
        if not (isinstance(output, np.ndarray) and output.shape == batch.shape):
            shape = getattr(output, "shape", type(output).__name__)
            raise ModelFileError(f"{self._path}: the model gives {shape} for an input of {batch.shape}, not an image")
        return output.astype(np.float32, copy=False)

    def _run(self, batch: np.ndarray, names: Any, feeds: dict[str, np.ndarray]) -> list:
        try:  # ONNX Runtime's exceptions share no base class but Exception
            return list(self._session.run(None if names is None else list(names), feeds))
        except Exception as error:
            if "allocat" in str(error):
                raise PainterlyError(f"out of memory on {self.device} while {oom_what(batch)}") from None
            raise ModelFileError(f"{self._path}: ONNX Runtime cannot run this model ({first_line(error)})") from None


def _row(style: StyleInput | None, index: int) -> StyleInput | None:
    """The style of image `index` of a batch, for a graph that takes one image at a time."""
    if style is None:
        return None
    pick = (lambda value: value[index : index + 1] if len(value) > 1 else value)  # noqa: E731
    return StyleInput(pick(style.mean), pick(style.std), style.alpha)


def _check_style(path: Path, arbitrary: bool, style: StyleInput | None) -> None:
    """An arbitrary-style network paints with a style; a Johnson network has its own."""
    if arbitrary and style is None:
        raise UsageError(f"{path}: an arbitrary-style (AdaIN) model needs a painting: give --style")
    if not arbitrary and style is not None:
        raise UsageError(f"{path}: a Johnson model paints the one style it was trained on; "
                         "--style is for arbitrary-style (AdaIN) models")


def _check_arbitrary(path: Path, arbitrary: bool) -> None:
    if not arbitrary:
        raise UsageError(f"{path}: a Johnson model paints the one style it was trained on; "
                         "--style is for arbitrary-style (AdaIN) models")


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
