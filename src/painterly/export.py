"""ONNX export of a fast-style model, checked in ONNX Runtime before it is kept.

Two kinds of network export through one code path; what differs between them is one
`_Graph` (`_graph_of`): the inputs, outputs, dynamic axes, size multiple, check sizes and
the inputs the parity check feeds.

- A Johnson `TransformerNet` takes what every painterly model takes: float32 RGB in [0, 1],
  shape (N, 3, H, W), input "image", output "stylized" of the same shape. H and W must be
  multiples of `config.SIZE_MULTIPLE` (4): the caller pads, as `FastStylizer` does. A model
  trained on 0–255 pixels (pytorch/examples) has its `pixel_scale` inside the graph, so an
  ONNX file never needs scaling by its user.
- An arbitrary-style `AdaINNet` exports its `forward`: inputs "image" (N, 3, H, W),
  "style_mean" and "style_std" (N or 1, C: a painting's bottleneck statistics) and "alpha"
  (1,); outputs "stylized" and the image's own statistics "content_mean", "content_std"
  (N, C), so a painting's statistics come from the same graph (run it with the painting as
  the image) where torch is not installed. H and W must be multiples of the model's
  `size_multiple` (8, or 4 for the light variant), recorded in the metadata as
  "size_multiple". The names are `runtimes.ADAIN_INPUTS`/`ADAIN_OUTPUTS`, which the ONNX
  backend reads.

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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from . import __version__
from .atomic import atomic_path, same_file
from .config import SIZE_MULTIPLE
from .errors import ModelFileError, PainterlyError, UsageError
from .events import Callback, ignore
from .runtimes import ADAIN_INPUTS, ADAIN_OUTPUTS, first_line, onnx_metadata, open_onnx_session

if TYPE_CHECKING:
    import numpy as np
    import torch

    from .modelfile import Network

INPUT_NAME = "image"
OUTPUT_NAME = "stylized"
# Opsets the TorchScript exporter writes for these networks: 9 is the first with a
# dynamic-size Upsample, 20 the last it supports.
OPSETS = range(9, 21)
DEFAULT_OPSET = 17
# The published AdaIN encoder's ceil-mode pooling needs MaxPool's ceil_mode attribute (opset 10).
CEIL_POOLING_OPSET = 10
_DYNAMIC_AXES = {0: "batch", 2: "height", 3: "width"}
_JOHNSON_CHECK_SIZES = ((1, 3, 64, 96), (2, 3, 80, 52))
# Multiples of 8 (every AdaIN variant); non-square, batches of 1 and 2, the style statistics given
# once for the batch (sizes 1 and 2 below) and once per image (size 3).
_ADAIN_CHECK_SIZES = ((1, 3, 64, 96), (2, 3, 80, 48), (2, 3, 48, 64))
_PARITY_SEED = 0
_PAINTING_SIDE = 64  # the sample painting whose statistics the AdaIN parity check starts from
_MISSING_EXTRA = "ONNX export needs the onnx extra: pip install 'painterly[onnx]'"

Size = tuple[int, int, int, int]


@dataclass
class ExportReport:
    """What `export_onnx` wrote and how closely ONNX Runtime matches PyTorch."""

    path: Path
    # ONNX Runtime vs torch on seeded inputs, over every output: images in absolute terms, an
    # AdaIN model's statistics relative to their largest magnitude (where that is above 1).
    max_abs_diff: float
    opset: int
    seconds: float


@dataclass(frozen=True)
class _Graph:
    """What differs between network kinds in their exported graph (`_graph_of`)."""

    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    dynamic_axes: dict[str, dict[int, str]]
    size_multiple: int
    check_sizes: tuple[Size, ...]  # the parity check's image sizes when the caller gives none
    min_opset: int
    # The parity check's inputs for one image size (its index and a seeded generator), in `inputs` order.
    feeds: Callable[[Size, int, torch.Generator], tuple[torch.Tensor, ...]]
    doc: str
    metadata: dict[str, Any] = field(default_factory=dict)  # added to the model file's
    relative_outputs: tuple[str, ...] = ()  # compared relative to their magnitude: not pixels


def export_onnx(
    model_path: str | os.PathLike,
    output: str | os.PathLike,
    *,
    opset: int = DEFAULT_OPSET,
    tolerance: float = 1e-3,
    check_sizes: Sequence[Size] | None = None,
    callback: Callback = ignore,
) -> ExportReport:
    """Export a painterly `.safetensors` (Johnson or AdaIN) or pytorch/examples `.pth` model to `output` (.onnx).

    `model_path` may also be a catalogue name or an hf:// reference (`zoo.resolve_model`): a model not
    yet pulled is pulled first, its download reported to `callback`, once the request has been checked.

    The file is written beside `output` under a temporary name, run in ONNX
    Runtime on seeded random inputs at every size in `check_sizes` (by default
    a few for the network's kind, multiples of its size multiple) and compared
    with PyTorch, every output; only if the largest difference is within
    `tolerance` is it renamed to `output`. On any failure nothing is left
    behind and an existing `output` is untouched.
    """
    started = time.perf_counter()
    output = Path(output)
    _check_request(Path(model_path), output, opset, tolerance, check_sizes)  # before anything is pulled
    onnx = _require("onnx")
    _require("onnxruntime")
    from .modelfile import load_model
    from .zoo import resolve_model

    model_path = resolve_model(model_path, callback=callback)

    model, metadata = load_model(model_path)
    graph = _graph_of(model, metadata)
    sizes = _check_for_model(model_path, graph, opset, check_sizes)
    proto = onnx.load_model_from_string(_trace(model, model_path, graph, opset, sizes[0]))
    _describe(proto, {**metadata, **graph.metadata}, opset, graph.doc)
    with atomic_path(output) as temporary:  # checked before it replaces anything; OSErrors become OutputError
        temporary.write_bytes(proto.SerializeToString())
        difference = _max_abs_diff(model, graph, temporary, sizes)
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
    model_path: Path, output: Path, opset: int, tolerance: float, check_sizes: Sequence[tuple[int, ...]] | None
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
    if check_sizes is not None:  # every kind's size multiple is a multiple of SIZE_MULTIPLE
        _check_sizes(check_sizes, SIZE_MULTIPLE, "")


def _check_for_model(model_path: Path, graph: _Graph, opset: int, check_sizes: Sequence[Size] | None
                     ) -> tuple[Size, ...]:
    """What only the loaded model can tell: its size multiple and lowest opset; the sizes to check."""
    if opset < graph.min_opset:
        raise UsageError(f"{model_path}: opset {opset} cannot express the ceil-mode pooling of the published "
                         f"AdaIN encoder; use {graph.min_opset}–{OPSETS.stop - 1}")
    if check_sizes is None:
        return graph.check_sizes
    _check_sizes(check_sizes, graph.size_multiple, f"{model_path}: ")
    return tuple(check_sizes)


def _check_sizes(check_sizes: Sequence[tuple[int, ...]], multiple: int, prefix: str) -> None:
    if not check_sizes or not all(_is_image_shape(size, multiple) for size in check_sizes):
        raise UsageError(
            f"{prefix}check_sizes must be (N, 3, H, W) shapes with H and W multiples of {multiple}, "
            f"not {check_sizes!r}"
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


# --- the network kinds ---------------------------------------------------------------------------


def _graph_of(model: Network, metadata: dict[str, Any]) -> _Graph:
    """The exported graph's shape for `model`'s kind."""
    from .modelfile import is_arbitrary

    return _adain_graph(model) if is_arbitrary(metadata) else _johnson_graph(metadata)


def _johnson_graph(metadata: dict[str, Any]) -> _Graph:
    """One image in, one image out, of the same size."""
    import torch

    architecture = metadata["architecture"]

    def feeds(size: Size, index: int, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
        return (torch.rand(size, generator=generator),)

    return _Graph(
        inputs=(INPUT_NAME,),
        outputs=(OUTPUT_NAME,),
        dynamic_axes={INPUT_NAME: _DYNAMIC_AXES, OUTPUT_NAME: _DYNAMIC_AXES},
        size_multiple=SIZE_MULTIPLE,
        check_sizes=_JOHNSON_CHECK_SIZES,
        min_opset=OPSETS.start,
        feeds=feeds,
        doc=(
            f"painterly TransformerNet (channels {list(architecture['channels'])}, "
            f"{architecture['residual_blocks']} residual blocks, {architecture.get('edge_kernel', 9)}² edge kernels"
            f"{', anti-aliased' if architecture.get('antialias') else ''}). "
            f"Input '{INPUT_NAME}': float32 RGB in [0, 1], shape (N, 3, H, W), H and W multiples of "
            f"{SIZE_MULTIPLE} (pad first). Output '{OUTPUT_NAME}': same shape, [0, 1] but not clamped. "
        ),
    )


def _adain_graph(model: Network) -> _Graph:
    """`AdaINNet.forward`: the photo and a painting's statistics in, the stylised photo and the photo's
    own statistics out.

    The parity check feeds the statistics of the sample painting (through the model's own encoder),
    scaled per channel at random, so the comparison runs on realistic values, and an alpha strictly
    between 0 and 1, so both the stylised and the photo's features reach the decoder.
    """
    import torch

    from .adain import AdaINNet
    from .pixels import to_tensor
    from .samples import swirl_painting

    assert isinstance(model, AdaINNet)
    architecture, multiple = model.architecture, model.size_multiple
    image, style_mean, style_std, alpha = ADAIN_INPUTS
    stylized, content_mean, content_std = ADAIN_OUTPUTS
    with torch.inference_mode():
        painting = model.statistics(to_tensor(swirl_painting(_PAINTING_SIDE, _PAINTING_SIDE)))
    channels = painting[0].shape[1]

    def feeds(size: Size, index: int, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
        rows = size[0] if index % 2 == 0 else 1  # per image, or one painting for the whole batch
        mean, std = (values * (0.5 + torch.rand(rows, channels, generator=generator)) for values in painting)
        return (torch.rand(size, generator=generator), mean, std, 0.2 + 0.6 * torch.rand(1, generator=generator))

    return _Graph(
        inputs=ADAIN_INPUTS,
        outputs=ADAIN_OUTPUTS,
        dynamic_axes={image: _DYNAMIC_AXES, style_mean: {0: "styles"}, style_std: {0: "styles"},
                      stylized: _DYNAMIC_AXES, content_mean: {0: "batch"}, content_std: {0: "batch"}},
        size_multiple=multiple,
        check_sizes=_ADAIN_CHECK_SIZES,
        min_opset=CEIL_POOLING_OPSET if architecture.encoder == "adain" else OPSETS.start,
        feeds=feeds,
        doc=(
            f"painterly AdaINNet (arbitrary style, Huang & Belongie 2017; bottleneck {architecture.bottleneck}, "
            f"decoder widths 1/{architecture.width}, '{architecture.encoder}' VGG-19 encoder). "
            f"Inputs '{image}': float32 RGB in [0, 1], shape (N, 3, H, W), H and W multiples of {multiple} "
            f"(pad first); '{style_mean}', '{style_std}': a painting's bottleneck statistics, (N or 1, {channels}); "
            f"'{alpha}': (1,), 0 (the photo) to 1 (the painting's statistics). Outputs '{stylized}': (N, 3, H, W), "
            f"[0, 1] but not clamped; '{content_mean}', '{content_std}': the image's own statistics, (N, {channels}) "
            "(run the model on a painting to get its statistics). "
        ),
        metadata={"size_multiple": multiple},
        relative_outputs=(content_mean, content_std),
    )


# --- trace, describe, check ----------------------------------------------------------------------


def _trace(model: Network, model_path: Path, graph: _Graph, opset: int, example_size: Size) -> bytes:
    """The ONNX bytes of `model`, weights inline, with `graph`'s dynamic axes.

    Uses the TorchScript exporter (`dynamo=False`), deprecated in torch 2.9 but
    the better choice for this network in torch 2.14: both exporters match
    PyTorch to ~5e-6 at every size tried, but the dynamo exporter writes
    opset 18 whatever is asked (its 18→17 conversion has no adapter for Pad),
    prints progress to stdout, names the axes "4*h4", and takes 4× as long
    (5.6 s against 1.4 s, first call, standard model). Its warnings (the
    deprecation, tracing InstanceNorm's shape checks as constants) are
    silenced: the parity check at several sizes is what proves the trace. An
    exporter failure (pages of graph dump) becomes one line.
    """
    import torch

    buffer = io.BytesIO()
    example = graph.feeds(example_size, 0, torch.Generator().manual_seed(_PARITY_SEED))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(
                model,
                example,
                buffer,  # type: ignore[arg-type]  # torch's hints say a path; it takes any binary file
                dynamo=False,
                opset_version=opset,
                input_names=list(graph.inputs),
                output_names=list(graph.outputs),
                dynamic_axes=graph.dynamic_axes,
            )
        except Exception as error:  # the exporter's errors share no useful base class
            raise ModelFileError(f"{model_path}: cannot export to ONNX opset {opset} ({first_line(error)})") from None
    return buffer.getvalue()


def _describe(proto: Any, metadata: dict[str, Any], opset: int, doc: str) -> None:
    """Put the model file's metadata and a usage note into the ONNX model."""
    props = {**metadata, "onnx_opset": opset, "exported_by": __version__}
    for key, value in props.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, json.dumps(value)
    proto.doc_string = doc + "metadata_props hold the style and training settings as JSON."


def _max_abs_diff(model: Network, graph: _Graph, onnx_path: Path, sizes: Sequence[Size]) -> float:
    """Largest |ONNX Runtime − PyTorch| over seeded inputs of every size and every output, on the written file."""
    import numpy as np
    import torch

    session = open_onnx_session(onnx_path)
    generator = torch.Generator().manual_seed(_PARITY_SEED)
    differences = []
    for index, size in enumerate(sizes):
        inputs = graph.feeds(size, index, generator)
        with torch.inference_mode():
            result = model(*inputs)
        expected = [tensor.numpy() for tensor in (result if isinstance(result, tuple) else (result,))]
        actual = session.run(list(graph.outputs), {name: x.numpy() for name, x in zip(graph.inputs, inputs)})
        for name, got, wanted in zip(graph.outputs, actual, expected, strict=True):
            scale = max(1.0, float(np.max(np.abs(wanted)))) if name in graph.relative_outputs else 1.0
            differences.append(_difference(got, wanted) / scale)
    return float(np.max(differences))  # np.max, unlike max(), keeps a NaN


def _difference(actual: np.ndarray, expected: np.ndarray) -> float:
    # A wrong shape counts as an infinite difference (it could otherwise broadcast).
    import numpy as np

    return float(np.max(np.abs(actual - expected))) if actual.shape == expected.shape else float("inf")
