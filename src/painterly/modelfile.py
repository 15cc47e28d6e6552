"""Fast-style model files: safetensors with the settings that made them.

A painterly model is a `.safetensors` file whose metadata (JSON strings, as
safetensors requires) records the format version, the architecture, the
style image, the full training settings, the steps trained and a SHA-256 of
the tensors. Two kinds share the format: a Johnson `TransformerNet`
(format "painterly-transformer") and an arbitrary-style `AdaINNet` (format
"painterly-adain": the decoder and the VGG encoder it was trained against).
Loading never unpickles code: safetensors has no code, and `.pth` files
(pytorch/examples' fast_neural_style, pytorch-AdaIN's) are read with
`weights_only=True` (`torchfiles`).

Model files come from strangers, so nothing in one is trusted: every
metadata field is checked against the limits in `transformer.py` before
anything is allocated, the tensors' names and shapes against the
architecture before a network is built, and their values for NaN and
infinity; the checksum, where the file has one, must match.
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from . import __version__
from .atomic import atomic_path
from .errors import ModelFileError, one_line, quote_short
from .torchfiles import load_torch_file, state_dict_of, tensors_sha256
from .transformer import MAX_PIXEL_SCALE, Architecture, TransformerNet

if TYPE_CHECKING:
    from .adain import AdaINNet

    Network = TransformerNet | AdaINNet

# 1 is still written: the checksum is an optional field that older painterly versions read as extra metadata.
FORMAT_VERSION = 1
FORMAT_NAME = "painterly-transformer"
ADAIN_FORMAT = "painterly-adain"
FORMATS = (FORMAT_NAME, ADAIN_FORMAT)
CHECKSUM_FIELD = "tensors_sha256"
TORCH_SUFFIXES = (".pth", ".pt", ".model")
# Metadata fields stored as plain text; every other field is JSON.
_TEXT_FIELDS = ("format", "format_version", "painterly_version")
# Old PyTorch versions saved InstanceNorm running statistics that current ones neither use nor accept.
_STALE_KEY = re.compile(r"(^|\.)in\d+\.running_(mean|var)$|(^|\.)in\d+\.num_batches_tracked$")
_SHA256 = re.compile(r"[0-9a-f]{64}")


def save_model(model: Network, path: str | os.PathLike, *, style: dict | None = None,
               training: dict | None = None, steps: int = 0, extra: dict | None = None) -> Path:
    """Write `model` atomically (temp file, then rename): never a half-written model file.

    The file is serialised in memory and written by painterly itself, so a full
    disk is an `OSError` that `atomic_path` turns into one `OutputError` line
    (safetensors' own writer reports it as a `SafetensorError`, and creates its
    files with mode 0600 whatever the umask).
    """
    from safetensors.torch import save

    path = Path(path)
    if path.suffix != ".safetensors":
        raise ModelFileError(f"{path}: model files are written as .safetensors")
    tensors = {key: value.detach().cpu().contiguous() for key, value in model.state_dict().items()}
    is_transformer = isinstance(model, TransformerNet)
    metadata = {
        "format": FORMAT_NAME if is_transformer else ADAIN_FORMAT,
        "format_version": str(FORMAT_VERSION),
        "architecture": json.dumps(model.architecture.to_dict()),
        **({"pixel_scale": json.dumps(model.pixel_scale)} if is_transformer else {}),
        "style": json.dumps(style or {}),
        "training": json.dumps(training or {}),
        "steps": str(steps),
        "painterly_version": __version__,
        **{key: json.dumps(value) for key, value in (extra or {}).items()},
        CHECKSUM_FIELD: json.dumps(tensors_sha256(tensors)),
    }
    data = save(tensors, metadata=metadata)
    with atomic_path(path) as temporary:
        temporary.write_bytes(data)
    return path


def load_model(path: str | os.PathLike, *, device: str | torch.device = "cpu") -> tuple[Network, dict]:
    """A network in eval mode and its metadata, from painterly or pytorch/examples files: a
    TransformerNet, or an AdaINNet for a "painterly-adain" file (`is_arbitrary` tells them apart)."""
    path = Path(path)
    _check_file(path)
    if path.suffix == ".safetensors":
        tensors, metadata = _read_safetensors(path)  # shapes checked already if the architecture is recorded
        if metadata.get("format") == ADAIN_FORMAT:
            return _load_adain(tensors, metadata, path, device)
    elif path.suffix in TORCH_SUFFIXES:
        tensors, metadata = _read_torch(path), {"format": "pytorch-examples", "pixel_scale": 255.0}
    else:
        raise ModelFileError(f"{path}: unknown model file type; expected .safetensors or {', '.join(TORCH_SUFFIXES)}")
    if "architecture" in metadata:
        architecture = Architecture(**metadata["architecture"])
    else:
        architecture = _infer(tensors, path)
        _check_shapes({key: tuple(value.shape) for key, value in tensors.items()}, architecture, path)
    _check_values(tensors, path)
    metadata["architecture"] = architecture.to_dict()
    model = TransformerNet(architecture, pixel_scale=float(metadata.get("pixel_scale", 1.0)))
    try:
        model.load_state_dict(tensors)
    except RuntimeError as error:  # not expected after the shape check; kept as the last line of defence
        first = str(error).strip().splitlines()[-1].strip()
        raise ModelFileError(f"{path}: not a TransformerNet state dict ({first[:200]})") from None
    return model.to(device).eval(), metadata


def is_arbitrary(metadata: dict) -> bool:
    """Whether a model file's metadata is that of an arbitrary-style (AdaIN) model, which needs a
    painting at run time."""
    return metadata.get("format") == ADAIN_FORMAT


def _load_adain(tensors: dict[str, torch.Tensor], metadata: dict, path: Path,
                device: str | torch.device) -> tuple[Network, dict]:
    from .adain import AdaINArchitecture, AdaINNet

    if "architecture" not in metadata:
        raise ModelFileError(f"{path}: an AdaIN model file must record its architecture")
    _check_values(tensors, path)
    model = AdaINNet(AdaINArchitecture(**metadata["architecture"]))
    model.load_state_dict(tensors)  # names and shapes were checked against the architecture
    return model.to(device).eval(), metadata


def read_metadata(path: str | os.PathLike) -> dict:
    """The metadata of a painterly model file, checked, without loading its tensors."""
    path = Path(path)
    _check_file(path)
    return _open_safetensors(path, with_tensors=False)[1]


def convert_model(source: str | os.PathLike, output: str | os.PathLike, *,
                  encoder: str | os.PathLike | None = None, style: dict | None = None,
                  provenance: dict | None = None) -> Path:
    """Turn a pytorch/examples `.pth` into a painterly `.safetensors` with metadata; with `encoder`,
    `source` is pytorch-AdaIN's `decoder.pth` and `encoder` its `vgg_normalised.pth`, made into one
    AdaIN model file.

    `style` is recorded as the model's style; `provenance` (where a published model came from, as
    the model zoo writes it) is stored as the "provenance" field, and the source files are then
    named by file name alone: the provenance says where they came from, a local path would not.
    """
    from .provenance import describe_file

    def named(path: str | os.PathLike) -> str:
        return Path(path).name if provenance is not None else os.fspath(path)

    extra = {} if provenance is None else {"provenance": provenance}
    if encoder is not None:
        from .adain import import_published

        adain = import_published(Path(source), Path(encoder))
        files = [{**describe_file(path), "file": named(path)} for path in (Path(source), Path(encoder))]
        return save_model(adain, output, style=style,
                          extra={"converted_from": {"files": files, "format": "pytorch-adain"}, **extra})
    model, metadata = load_model(source)
    return save_model(model, output, style=style,
                      extra={"converted_from": {"file": named(source), "format": metadata["format"]}, **extra})


def _check_file(path: Path) -> None:
    if not path.exists():
        raise ModelFileError(f"{path}: no such model file")
    if path.is_dir():
        raise ModelFileError(f"{path}: is a directory, not a model file")
    if path.stat().st_size == 0:
        raise ModelFileError(f"{path}: empty file")


def _open_safetensors(path: Path, *, with_tensors: bool) -> tuple[dict[str, torch.Tensor], dict]:
    """Tensors (if asked) and checked metadata; any unreadable file becomes one ModelFileError line.

    The metadata, then the tensors' names and shapes (from the header) are
    checked before a single tensor is read. SafetensorError (a bad or oversized
    header, e.g. a text file) derives from neither OSError nor ValueError, so it
    is named here.
    """
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(path, "pt") as handle:
            metadata = _decode(handle.metadata() or {}, path)
            if not with_tensors:
                return {}, metadata
            if "architecture" in metadata:
                shapes = {key: tuple(handle.get_slice(key).get_shape()) for key in handle.keys()}
                _check_shapes(shapes, _architecture(metadata), path)
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as error:
        raise ModelFileError(f"{path}: not a readable safetensors model ({one_line(error)})") from None
    expected = metadata.get(CHECKSUM_FIELD)
    if expected is not None and tensors_sha256(tensors) != expected:
        raise ModelFileError(f"{path}: the tensors do not match the checksum stored in the file; "
                             "the file is damaged (copy it again)")
    return tensors, metadata


def _read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict]:
    return _open_safetensors(path, with_tensors=True)


def _read_torch(path: Path) -> dict[str, torch.Tensor]:
    raw = load_torch_file(path, "model", error=ModelFileError)
    state = state_dict_of(raw, path, "TransformerNet", error=ModelFileError)
    return {key: value for key, value in state.items() if not _STALE_KEY.search(key)}


def _infer(tensors: dict[str, torch.Tensor], path: Path) -> Architecture:
    """Widths and depth from the tensor shapes of a file that does not record them (within the limits)."""
    try:
        convs = [tensors[f"conv{i}.conv2d.weight"] for i in (1, 2, 3)]
    except KeyError:
        raise ModelFileError(f"{path}: not a TransformerNet state dict (no conv1/conv2/conv3 weights)") from None
    if any(conv.dim() != 4 for conv in convs):
        raise ModelFileError(f"{path}: not a TransformerNet state dict (conv weights that are not 4-D)")
    blocks = len({key.split(".")[0] for key in tensors if re.match(r"res\d+\.", key)})
    try:
        return Architecture(channels=(int(convs[0].shape[0]), int(convs[1].shape[0]), int(convs[2].shape[0])),
                            residual_blocks=blocks, edge_kernel=int(convs[0].shape[-1]))
    except ValueError as error:
        raise ModelFileError(f"{path}: not a TransformerNet state dict ({error})") from None


def _architecture(metadata: dict) -> Any:
    """The architecture a file's (checked) metadata records, of its kind."""
    if metadata.get("format") == ADAIN_FORMAT:
        from .adain import AdaINArchitecture

        return AdaINArchitecture(**metadata["architecture"])
    return Architecture(**metadata["architecture"])


def _expected_shapes(architecture: Any) -> dict[str, tuple[int, ...]]:
    """Every tensor name and shape of a network of `architecture`, measured on one of no memory."""
    if isinstance(architecture, Architecture):
        with torch.device("meta"):
            return {key: tuple(value.shape) for key, value in TransformerNet(architecture).state_dict().items()}
    from .adain import build_decoder, encoder_shapes

    shapes = {f"encoder.{key}": tuple(shape) for key, shape in encoder_shapes(architecture).items()}
    with torch.device("meta"):
        shapes.update({f"decoder.{key}": tuple(value.shape)
                       for key, value in build_decoder(architecture).state_dict().items()})
    return shapes


def _check_shapes(shapes: dict[str, tuple[int, ...]], architecture: Any, path: Path) -> None:
    """The tensors' names and shapes are exactly the architecture's."""
    expected = _expected_shapes(architecture)
    kind = "TransformerNet" if isinstance(architecture, Architecture) else "AdaIN"
    missing = [key for key in expected if key not in shapes]
    unexpected = [key for key in shapes if key not in expected]
    if missing or unexpected:
        problem = (f"missing {_names(missing)}" if missing else "") + ("; " if missing and unexpected else "") + (
            f"unexpected {_names(unexpected)}" if unexpected else "")
        raise ModelFileError(f"{path}: not a {kind} state dict for {_arch(architecture)}: {problem}")
    for key, shape in expected.items():
        if shapes[key] != shape:
            raise ModelFileError(f"{path}: {key} has shape {shapes[key]}, expected {shape} for {_arch(architecture)}")


def _check_values(tensors: dict[str, torch.Tensor], path: Path) -> None:
    """Floating-point and finite: a NaN or an infinity in any weight makes every output black."""
    for key, tensor in tensors.items():
        if not tensor.is_floating_point():
            raise ModelFileError(f"{path}: {key} holds {str(tensor.dtype).removeprefix('torch.')} values, "
                                 "not floating-point weights")
        if not bool(torch.isfinite(tensor).all()):
            kind = "NaN" if bool(torch.isnan(tensor).any()) else "infinite"
            raise ModelFileError(f"{path}: {key} has {kind} weights; the model is broken "
                                 "(was its training diverging?) and would paint every image black")


def _decode(metadata: dict[str, str], path: Path) -> dict:
    """Every known field checked and decoded; unknown fields (e.g. `converted_from`) kept as JSON."""
    decoded: dict[str, Any] = {}
    for key, value in metadata.items():
        if key in _TEXT_FIELDS:
            decoded[key] = value
            continue
        try:
            decoded[key] = json.loads(value)
        except (ValueError, RecursionError):
            raise ModelFileError(f"{path}: metadata field {key!r} is not valid JSON") from None
    if decoded.get("format") not in (None, *FORMATS):
        raise ModelFileError(f"{path}: a {quote_short(decoded['format'], 40)} file, not a painterly model")
    if "format_version" in decoded:
        text = decoded["format_version"]
        if not re.fullmatch(r"[0-9]{1,9}", text):
            raise ModelFileError(f"{path}: metadata format_version must be a whole number, not {quote_short(text, 40)}")
        decoded["format_version"] = int(text)
        if decoded["format_version"] > FORMAT_VERSION:
            raise ModelFileError(f"{path}: model format {decoded['format_version']} is newer than this painterly "
                                 "reads; upgrade painterly")
    if "architecture" in decoded:
        try:
            if decoded.get("format") == ADAIN_FORMAT:
                from .adain import AdaINArchitecture

                decoded["architecture"] = AdaINArchitecture.from_dict(decoded["architecture"]).to_dict()
            else:
                decoded["architecture"] = Architecture.from_dict(decoded["architecture"]).to_dict()
        except (TypeError, ValueError) as error:
            raise ModelFileError(f"{path}: metadata {error}") from None
    _check_field(decoded, "pixel_scale", path, f"a number above 0, at most {MAX_PIXEL_SCALE:g}",
                 lambda v: _is_number(v) and 0 < v <= MAX_PIXEL_SCALE)
    _check_field(decoded, "steps", path, "a whole number, 0 or more", lambda v: _is_int(v) and v >= 0)
    for key in ("style", "training"):
        _check_field(decoded, key, path, "an object", lambda v: isinstance(v, dict))
    _check_field(decoded, CHECKSUM_FIELD, path, "64 hex digits",
                 lambda v: isinstance(v, str) and _SHA256.fullmatch(v) is not None)
    return decoded


def _check_field(decoded: dict, key: str, path: Path, wanted: str, valid) -> None:
    if key in decoded and not valid(decoded[key]):
        raise ModelFileError(f"{path}: metadata {key} must be {wanted}, not {quote_short(decoded[key], 40)}")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    """A finite int or float (not a bool, which Python counts as an int)."""
    return _is_int(value) or (isinstance(value, float) and math.isfinite(value))



def _names(keys: list[str]) -> str:
    more = f" and {len(keys) - 3} more" if len(keys) > 3 else ""
    return ", ".join(quote_short(key, 40) for key in keys[:3]) + more


def _arch(architecture: Any) -> str:
    if not isinstance(architecture, Architecture):
        return (f"bottleneck {architecture.bottleneck}, decoder width 1/{architecture.width}, "
                f"{architecture.encoder} encoder")
    return (f"channels {architecture.channels}, {architecture.residual_blocks} residual blocks, "
            f"{architecture.edge_kernel}×{architecture.edge_kernel} edges")

