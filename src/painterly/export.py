"""ONNX export of a fast-style model, checked in ONNX Runtime before it is kept.

The exported graph takes what every painterly model takes: float32 RGB in
[0, 1], shape (N, 3, H, W), input "image", output "stylized" of the same
shape. Batch, height and width are dynamic, but H and W must be multiples of
`config.SIZE_MULTIPLE` (4): the caller pads, as `FastStylizer` does. A model trained
on 0–255 pixels (pytorch/examples) has its `pixel_scale` inside the graph, so
an ONNX file never needs scaling by its user.

The file carries the model file's metadata (style, training settings, steps,
architecture…) as JSON strings in ONNX `metadata_props`, so an exported
model still says what made it.

`onnx` and `onnxruntime` are the optional `painterly[onnx]` extra and are
imported only when needed; `read_onnx_metadata` needs neither torch nor the
`onnx` package, only `onnxruntime`. Every ONNX Runtime session is opened by
`runtimes.open_onnx_session`, as the ONNX backend opens it.
"""

from __future__ import annotations

import importlib
import io
import json
import os
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from . import __version__
from .atomic import atomic_path, same_file
from .config import SIZE_MULTIPLE
from .errors import ModelFileError, PainterlyError, UsageError
from .runtimes import onnx_metadata, open_onnx_session

if TYPE_CHECKING:
    from .transformer import TransformerNet

INPUT_NAME = "image"
OUTPUT_NAME = "stylized"
# Opsets the TorchScript exporter writes for this network: 9 is the first with a
# dynamic-size Upsample, 20 the last it supports.
OPSETS = range(9, 21)
DEFAULT_OPSET = 17
_DYNAMIC_AXES = {0: "batch", 2: "height", 3: "width"}
_PARITY_SEED = 0
_MISSING_EXTRA = "ONNX export needs the onnx extra: pip install 'painterly[onnx]'"


@dataclass
class ExportReport:
    """What `export_onnx` wrote and how closely ONNX Runtime matches PyTorch."""

    path: Path
    max_abs_diff: float  # ONNX Runtime vs torch on seeded [0, 1] test images
    opset: int
    seconds: float


def export_onnx(
    model_path: str | os.PathLike,
    output: str | os.PathLike,
    *,
    opset: int = DEFAULT_OPSET,
    tolerance: float = 1e-3,
    check_sizes: Sequence[tuple[int, int, int, int]] = ((1, 3, 64, 96), (2, 3, 80, 52)),
) -> ExportReport:
    """Export a painterly `.safetensors` or pytorch/examples `.pth` model to `output` (.onnx).

    The file is written beside `output` under a temporary name, run in ONNX
    Runtime on seeded random images of every size in `check_sizes` and
    compared with PyTorch; only if the largest difference is within
    `tolerance` is it renamed to `output`. On any failure nothing is left
    behind and an existing `output` is untouched.
    """
    started = time.perf_counter()
    model_path, output = Path(model_path), Path(output)
    _check_request(model_path, output, opset, tolerance, check_sizes)
    onnx = _require("onnx")
    _require("onnxruntime")
    from .modelfile import load_model

    model, metadata = load_model(model_path)
    proto = onnx.load_model_from_string(_trace(model, opset, check_sizes[0]))
    _describe(proto, metadata, opset)
    with atomic_path(output) as temporary:  # checked before it replaces anything; OSErrors become OutputError
        temporary.write_bytes(proto.SerializeToString())
        difference = _max_abs_diff(model, temporary, check_sizes)
        if not difference <= tolerance:  # also refuses NaN
            raise ModelFileError(
                f"{model_path}: ONNX Runtime output differs from PyTorch by {difference:.3g} "
                f"(tolerance {tolerance:g}); {output} not written"
            )
    return ExportReport(path=output, max_abs_diff=difference, opset=opset, seconds=time.perf_counter() - started)


def read_onnx_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The `metadata_props` of an ONNX model, JSON values decoded.

    Uses only ONNX Runtime (no torch, no `onnx` package), so the runtime-only
    install can read what an exported model was made from. Values that are
    not JSON (ONNX files from other tools) come back as text.
    """
    _require("onnxruntime")
    return onnx_metadata(open_onnx_session(path))


def _check_request(
    model_path: Path, output: Path, opset: int, tolerance: float, check_sizes: Sequence[tuple[int, ...]]
) -> None:
    """Refuse impossible requests before loading anything or writing a byte."""
    if output.suffix.lower() != ".onnx":
        raise UsageError(f"{output}: the ONNX export must be written to a .onnx file")
    if same_file(model_path, output):
        raise UsageError(f"{output}: refusing to overwrite the input model")
    if opset not in OPSETS:
        raise UsageError(f"opset {opset} is not supported; use {OPSETS.start}–{OPSETS.stop - 1}")
    if not tolerance >= 0:
        raise UsageError(f"tolerance must be 0 or more, not {tolerance}")
    if not check_sizes or not all(_is_image_shape(size, SIZE_MULTIPLE) for size in check_sizes):
        raise UsageError(
            f"check_sizes must be (N, 3, H, W) shapes with H and W multiples of {SIZE_MULTIPLE}, not {check_sizes!r}"
        )


def _is_image_shape(size: Sequence[int], multiple: int) -> bool:
    if len(size) != 4:
        return False
    batch, channels, height, width = size
    return batch >= 1 and channels == 3 and height > 0 and width > 0 and height % multiple == width % multiple == 0


def _require(name: str) -> ModuleType:
    """Import a module of the onnx extra, or say how to install it."""
    try:
        return importlib.import_module(name)
    except ImportError:
        raise PainterlyError(_MISSING_EXTRA) from None


def _trace(model: TransformerNet, opset: int, example_size: tuple[int, int, int, int]) -> bytes:
    """The ONNX bytes of `model`, weights inline, with dynamic batch, height and width.

    Uses the TorchScript exporter (`dynamo=False`), deprecated in torch 2.9 but
    the better choice for this network in torch 2.14: both exporters match
    PyTorch to ~5e-6 at every size tried, but the dynamo exporter writes
    opset 18 whatever is asked (its 18→17 conversion has no adapter for Pad),
    prints progress to stdout, names the axes "4*h4", and takes 4× as long
    (5.6 s against 1.4 s, first call, standard model). Its warnings (the
    deprecation, tracing InstanceNorm's shape checks as constants) are
    silenced: the parity check at several sizes is what proves the trace.
    """
    import torch

    buffer = io.BytesIO()
    axes = {INPUT_NAME: _DYNAMIC_AXES, OUTPUT_NAME: _DYNAMIC_AXES}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (torch.zeros(example_size),),
            buffer,  # type: ignore[arg-type]  # torch's hints say a path; it takes any binary file
            dynamo=False,
            opset_version=opset,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes=axes,
        )
    return buffer.getvalue()


def _describe(proto: Any, metadata: dict[str, Any], opset: int) -> None:
    """Put the model file's metadata and a usage note into the ONNX model."""
    props = {**metadata, "onnx_opset": opset, "exported_by": __version__}
    for key, value in props.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, json.dumps(value)
    architecture = metadata["architecture"]
    proto.doc_string = (
        f"painterly TransformerNet (channels {list(architecture['channels'])}, "
        f"{architecture['residual_blocks']} residual blocks, {architecture.get('edge_kernel', 9)}² edge kernels). "
        f"Input '{INPUT_NAME}': float32 RGB in [0, 1], shape (N, 3, H, W), H and W multiples of "
        f"{SIZE_MULTIPLE} (pad first). Output '{OUTPUT_NAME}': same shape, [0, 1] but not clamped. "
        "metadata_props hold the style and training settings as JSON."
    )


def _max_abs_diff(model: TransformerNet, onnx_path: Path, sizes: Sequence[tuple[int, int, int, int]]) -> float:
    """Largest |ONNX Runtime − PyTorch| over seeded random images of every size, on the written file."""
    import numpy as np
    import torch

    session = open_onnx_session(onnx_path)
    generator = torch.Generator().manual_seed(_PARITY_SEED)
    differences = []
    for size in sizes:
        image = torch.rand(size, generator=generator)
        with torch.inference_mode():
            expected = model(image).numpy()
        (actual,) = session.run([OUTPUT_NAME], {INPUT_NAME: image.numpy()})
        # A wrong shape counts as an infinite difference (it could otherwise broadcast).
        differences.append(np.max(np.abs(actual - expected)) if actual.shape == expected.shape else np.inf)
    return float(np.max(differences))  # np.max, unlike max(), keeps a NaN
