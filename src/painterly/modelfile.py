"""Fast-style model files: safetensors with the settings that made them.

A painterly model is a `.safetensors` file whose metadata (JSON strings, as
safetensors requires) records the format version, the architecture, the
style image, the full training settings and the steps trained. Loading
never unpickles code: safetensors has no code, and `.pth` files from
pytorch/examples' fast_neural_style are read with `weights_only=True`.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import torch

from . import __version__
from .atomic import atomic_path
from .errors import ModelFileError
from .transformer import Architecture, TransformerNet

FORMAT_VERSION = 1
FORMAT_NAME = "painterly-transformer"
TORCH_SUFFIXES = (".pth", ".pt", ".model")
# Old PyTorch versions saved InstanceNorm running statistics that current ones neither use nor accept.
_STALE_KEY = re.compile(r"(^|\.)in\d+\.running_(mean|var)$|(^|\.)in\d+\.num_batches_tracked$")


def save_model(model: TransformerNet, path: str | os.PathLike, *, style: dict | None = None,
               training: dict | None = None, steps: int = 0, extra: dict | None = None) -> Path:
    """Write `model` atomically (temp file, then rename): never a half-written model file."""
    from safetensors.torch import save_file

    path = Path(path)
    if path.suffix != ".safetensors":
        raise ModelFileError(f"{path}: model files are written as .safetensors")
    metadata = {
        "format": FORMAT_NAME,
        "format_version": str(FORMAT_VERSION),
        "architecture": json.dumps(model.architecture.to_dict()),
        "pixel_scale": json.dumps(model.pixel_scale),
        "style": json.dumps(style or {}),
        "training": json.dumps(training or {}),
        "steps": str(steps),
        "painterly_version": __version__,
        **{key: json.dumps(value) for key, value in (extra or {}).items()},
    }
    tensors = {key: value.detach().cpu().contiguous() for key, value in model.state_dict().items()}
    with atomic_path(path) as temporary:
        save_file(tensors, temporary, metadata=metadata)
    return path


def load_model(path: str | os.PathLike, *, device: str | torch.device = "cpu") -> tuple[TransformerNet, dict]:
    """A TransformerNet in eval mode and its metadata, from painterly or pytorch/examples files."""
    path = Path(path)
    _check_file(path)
    if path.suffix == ".safetensors":
        tensors, metadata = _read_safetensors(path)
    elif path.suffix in TORCH_SUFFIXES:
        tensors, metadata = _read_torch(path), {"format": "pytorch-examples", "pixel_scale": 255.0}
    else:
        raise ModelFileError(f"{path}: unknown model file type; expected .safetensors or {', '.join(TORCH_SUFFIXES)}")
    architecture = Architecture(**metadata["architecture"]) if "architecture" in metadata else _infer(tensors, path)
    metadata["architecture"] = architecture.to_dict()
    model = TransformerNet(architecture, pixel_scale=float(metadata.get("pixel_scale", 1.0)))
    try:
        model.load_state_dict(tensors)
    except RuntimeError as error:
        first = str(error).strip().splitlines()[-1].strip()
        raise ModelFileError(f"{path}: not a TransformerNet state dict ({first[:200]})") from None
    return model.to(device).eval(), metadata


def read_metadata(path: str | os.PathLike) -> dict:
    """The metadata of a painterly model file, without loading its tensors."""
    path = Path(path)
    _check_file(path)
    return _open_safetensors(path, with_tensors=False)[1]


def convert_model(source: str | os.PathLike, output: str | os.PathLike) -> Path:
    """Turn a pytorch/examples `.pth` into a painterly `.safetensors` with metadata."""
    model, metadata = load_model(source)
    return save_model(model, output, extra={"converted_from": {"file": str(source), "format": metadata["format"]}})


def _check_file(path: Path) -> None:
    if not path.exists():
        raise ModelFileError(f"{path}: no such model file")
    if path.is_dir():
        raise ModelFileError(f"{path}: is a directory, not a model file")
    if path.stat().st_size == 0:
        raise ModelFileError(f"{path}: empty file")


def _open_safetensors(path: Path, *, with_tensors: bool) -> tuple[dict[str, torch.Tensor], dict]:
    """Tensors (if asked) and decoded metadata; any unreadable file becomes one ModelFileError line.

    SafetensorError (a bad or oversized header, e.g. a text file) derives from
    neither OSError nor ValueError, so it is named here.
    """
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(path, "pt") as handle:
            metadata = _decode(handle.metadata() or {}, path)
            tensors = {key: handle.get_tensor(key) for key in handle.keys()} if with_tensors else {}
    except (SafetensorError, OSError, ValueError, RuntimeError) as error:
        raise ModelFileError(f"{path}: not a readable safetensors model ({error})") from None
    return tensors, metadata


def _read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict]:
    tensors, metadata = _open_safetensors(path, with_tensors=True)
    if metadata.get("format") not in (None, FORMAT_NAME):
        raise ModelFileError(f"{path}: a {metadata['format']!r} file, not a painterly model")
    version = int(metadata.get("format_version", FORMAT_VERSION))
    if version > FORMAT_VERSION:
        raise ModelFileError(f"{path}: model format {version} is newer than this painterly reads; upgrade painterly")
    return tensors, metadata


def _read_torch(path: Path) -> dict[str, torch.Tensor]:
    import pickle

    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise ModelFileError(
            f"{path}: refusing to load: the file contains Python objects other than tensors (weights_only)"
        ) from None
    except Exception as error:  # on arbitrary bytes the unpickler trips on anything: KeyError, IndexError, EOFError…
        raise ModelFileError(f"{path}: not a readable PyTorch state dict ({type(error).__name__})") from None
    if isinstance(raw, dict) and isinstance(raw.get("state_dict"), dict):
        raw = raw["state_dict"]
    if not isinstance(raw, dict) or not all(isinstance(v, torch.Tensor) for v in raw.values()):
        raise ModelFileError(f"{path}: not a state dict of tensors")
    return {_strip_prefix(key): value for key, value in raw.items() if not _STALE_KEY.search(key)}


def _strip_prefix(key: str) -> str:
    for prefix in ("module.", "_orig_mod."):
        key = key.removeprefix(prefix)
    return key


def _infer(tensors: dict[str, torch.Tensor], path: Path) -> Architecture:
    """Widths and depth from the tensor shapes of a file that does not record them."""
    try:
        channels = tuple(int(tensors[f"conv{i}.conv2d.weight"].shape[0]) for i in (1, 2, 3))
    except KeyError:
        raise ModelFileError(f"{path}: not a TransformerNet state dict (no conv1/conv2/conv3 weights)") from None
    blocks = len({key.split(".")[0] for key in tensors if re.match(r"res\d+\.", key)})
    return Architecture(channels=channels, residual_blocks=blocks,
                        edge_kernel=int(tensors["conv1.conv2d.weight"].shape[-1]))


def _decode(metadata: dict[str, str], path: Path) -> dict:
    decoded: dict = {}
    for key, value in metadata.items():
        if key in ("format", "painterly_version"):
            decoded[key] = value
            continue
        try:
            decoded[key] = json.loads(value)
        except json.JSONDecodeError:
            raise ModelFileError(f"{path}: metadata field {key!r} is not valid JSON") from None
    if "architecture" in decoded:
        decoded["architecture"]["channels"] = tuple(decoded["architecture"]["channels"])
    return decoded
