"""The one safe reader of PyTorch files (`.pth`, `.pt`, …): VGG weights, imported models, checkpoints.

A `.pth` from a stranger is a pickle: read with `weights_only=True` it can hold
tensors and plain containers only, never code. Whatever is wrong with a file
(not a PyTorch file, truncated, code inside, a list where a state dict should
be, integer keys, a value that is not a tensor) becomes one line naming the
file and what it was meant to be, as the caller's own error class. Modelled on
timm's `_helpers.load_state_dict` / `clean_state_dict`.
"""

from __future__ import annotations

import hashlib
import os
import pickle
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch

from .errors import PainterlyError

# What DataParallel/DistributedDataParallel and torch.compile put in front of every key.
WRAPPER_PREFIXES = ("module.", "_orig_mod.")
# A torch.save file is a zip archive; the legacy format and plain pickles start with the PROTO opcode.
_MAGICS = (b"PK\x03\x04", b"\x80")
# Checkpoints that wrap the weights one level down (timm, Lightning, many training scripts).
_WRAPPING_KEYS = ("state_dict", "model")


def load_torch_file(path: str | os.PathLike, what: str, *, error: type[PainterlyError] = PainterlyError) -> Any:
    """`torch.load(path, map_location="cpu", weights_only=True)`, every failure one `error` line.

    `what` names what the file was meant to be ("weights", "model", "training
    checkpoint"), for the messages.
    """
    path = Path(path)
    try:
        with open(path, "rb") as file:
            head = file.read(4)
    except FileNotFoundError:
        raise error(f"{path}: no such file") from None
    except IsADirectoryError:
        raise error(f"{path}: is a folder, not a {what} file") from None
    except OSError as problem:
        raise error(f"{path}: cannot read ({problem.strerror or problem})") from None
    if not head:
        raise error(f"{path}: empty file")
    if not head.startswith(_MAGICS):
        raise error(f"{path}: not a PyTorch {what} file")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise error(f"{path}: refusing to load: the file contains Python objects other than tensors "
                    "(weights_only)") from None
    except MemoryError:
        raise error(f"{path}: not a readable PyTorch {what} file (it asks for more memory than there is)") from None
    except Exception:  # on damaged bytes the unpickler and the zip reader trip on anything: KeyError, EOFError…
        raise error(f"{path}: truncated or corrupt PyTorch {what} file") from None


def state_dict_of(raw: Any, path: str | os.PathLike, what: str, *,
                  error: type[PainterlyError] = PainterlyError) -> dict[str, torch.Tensor]:
    """The name -> tensor mapping in what `load_torch_file` returned, unwrapped and with clean keys.

    A `{"state_dict": {...}}` or `{"model": {...}}` wrapper is opened; every
    key must be a name and every value a tensor.
    """
    for key in _WRAPPING_KEYS:
        if isinstance(raw, Mapping) and isinstance(raw.get(key), Mapping):
            raw = raw[key]
            break
    if not isinstance(raw, Mapping):
        raise error(f"{path}: holds {_a(raw)}, not a state dict ({what})")
    state: dict[str, torch.Tensor] = {}
    for key, value in raw.items():
        if not isinstance(key, str):
            raise error(f"{path}: key {key!r} is {_a(key)}, not a parameter name; not a {what} state dict")
        if not isinstance(value, torch.Tensor):
            raise error(f"{path}: {key!r} is {_a(value)}, not a tensor")
        state[clean_key(key)] = value
    return state


def _a(value: object) -> str:
    """'an int', 'a list': the type of `value` for a message."""
    name = type(value).__name__
    return f"{'an' if name[:1] in 'aeiou' else 'a'} {name}"


def clean_key(key: str, prefixes: tuple[str, ...] = WRAPPER_PREFIXES) -> str:
    """'module._orig_mod.conv1.weight' -> 'conv1.weight': the wrappers' prefixes off, in any order."""
    while key.startswith(prefixes):
        key = key[next(len(p) for p in prefixes if key.startswith(p)):]
    return key


def tensors_sha256(tensors: Mapping[str, torch.Tensor] | Iterable[tuple[str, torch.Tensor]]) -> str:
    """A SHA-256 of named tensors in a canonical byte order, independent of the file format holding them.

    Stored in model files and checkpoints and checked on load: neither format checks its own
    bytes, so a flipped bit would otherwise load silently as a slightly different network. Names
    are hashed in sorted order, each as name, dtype and shape (NUL-separated) followed by the
    tensor's elements in C order and the machine's (little-endian) byte order.
    """
    items = tensors.items() if isinstance(tensors, Mapping) else tensors
    digest = hashlib.sha256()
    for name, tensor in sorted(items, key=lambda item: item[0]):
        flat = tensor.detach().resolve_conj().resolve_neg().to("cpu").contiguous().reshape(-1)
        digest.update(f"{name}\0{str(flat.dtype).removeprefix('torch.')}\0{tuple(tensor.shape)}\0".encode())
        digest.update(memoryview(flat.view(torch.uint8).numpy()))
    return digest.hexdigest()


def nested_tensors(value: Any, prefix: str = "") -> list[tuple[str, torch.Tensor]]:
    """Every tensor in nested dicts, lists and tuples, named by its path ("optimizer/state/0/exp_avg")."""
    if isinstance(value, torch.Tensor):
        return [(prefix, value)]
    found: list[tuple[str, torch.Tensor]] = []
    if isinstance(value, Mapping):
        for key, item in value.items():
            found += nested_tensors(item, f"{prefix}/{key}" if prefix else str(key))
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            found += nested_tensors(item, f"{prefix}/{index}")
    return found
