"""Training checkpoints: everything a step changes, saved so a resumed run is bit-identical.

Model, optimiser, step and every random generator are stored as tensors and
plain values, so `torch.load(weights_only=True)` reads them back and no code
is ever unpickled. A checkpoint is trusted no more than a stranger's file:
its tensors carry a SHA-256 (a flipped byte would otherwise resume silently
from damaged weights) and every field is checked before it is used, each
problem one line naming the file.
"""

from __future__ import annotations

import io
import math
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

from .atomic import atomic_path
from .config import TrainConfig
from .errors import PainterlyError
from .torchfiles import load_torch_file, nested_tensors, tensors_sha256

CHECKPOINT_FORMAT = "painterly-train-checkpoint"
CHECKSUM_FIELD = "tensors_sha256"  # absent from checkpoints written before it existed: those still resume
# Settings that only change bookkeeping; anything else would make a resumed run compute other steps.
RESUMABLE_CHANGES = frozenset({"steps", "epochs", "checkpoint_every", "checkpoint_minutes", "log_every",
                               "preview_every", "workers"})
_MT_WORDS = 624  # Mersenne Twister state: 624 32-bit words and a position (Python adds one word for it)


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Written atomically: a kill at any moment leaves the previous checkpoint intact.

    Serialised in memory first: torch.save reports a full disk as a bare
    RuntimeError ("unexpected pos …"), a plain write reports it as the OSError
    that `atomic_path` turns into one line.
    """
    state = {key: value for key, value in state.items() if key != CHECKSUM_FIELD}
    state["format"] = CHECKPOINT_FORMAT
    state[CHECKSUM_FIELD] = tensors_sha256(nested_tensors(state))
    buffer = io.BytesIO()
    torch.save(state, buffer)
    with atomic_path(path) as temporary:
        temporary.write_bytes(buffer.getbuffer())


def load_checkpoint(path: Path) -> dict[str, Any]:
    """A checkpoint whose every field has the type and range `restore` needs; else one PainterlyError line."""
    if not path.is_file():
        raise PainterlyError(f"{path}: no checkpoint to resume from; train without --resume to start afresh")
    state = load_torch_file(path, "training checkpoint")
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise PainterlyError(f"{path}: not a painterly training checkpoint")
    missing = [key for key in _FIELDS if key not in state]
    if missing:
        raise PainterlyError(f"{path}: an incomplete training checkpoint: no {', '.join(missing)}")
    _check_checksum(state, path)
    for key, (wanted, valid) in _FIELDS.items():
        if not valid(state[key]):
            raise PainterlyError(f"{path}: checkpoint field {key!r} must be {wanted}, not {_shown(state[key])}")
    _check_rng(state["rng"], path)
    return state


def check_state(state: dict[str, Any], model: torch.nn.Module, path: Path,
                optimizer: torch.optim.Optimizer | None = None) -> None:
    """The checkpoint's model and optimiser state fit `model` (and `optimizer`): call before restoring.

    load_state_dict would stop at a wrong shape with a RuntimeError, and Adam takes
    moments of the wrong shape without a word and fails at the next step. The optimiser holds the
    parameters that train (an AdaIN net's decoder; its frozen encoder is in the model state only).
    """
    expected = {key: tuple(value.shape) for key, value in model.state_dict().items()}
    saved = state["model"]
    missing = [key for key in expected if key not in saved]
    unexpected = [key for key in saved if key not in expected]
    if missing or unexpected:
        what = f"no {_names(missing)}" if missing else f"unexpected {_names(unexpected)}"
        raise PainterlyError(f"{path}: the checkpoint's model is not this network ({what})")
    for key, shape in expected.items():
        if tuple(saved[key].shape) != shape:
            raise PainterlyError(f"{path}: the checkpoint's {key} has shape {tuple(saved[key].shape)}, "
                                 f"this network's {shape}")
    parameters = [parameter for parameter in model.parameters() if parameter.requires_grad]
    groups = state["optimizer"]["param_groups"]
    if sorted(index for group in groups for index in group["params"]) != list(range(len(parameters))):
        raise PainterlyError(f"{path}: the checkpoint's optimiser state is for another network")
    for index, moments in state["optimizer"]["state"].items():
        for name, value in moments.items():
            if isinstance(value, torch.Tensor) and value.dim() and value.shape != parameters[index].shape:
                raise PainterlyError(f"{path}: the checkpoint's optimiser {name} of parameter {index} has shape "
                                     f"{tuple(value.shape)}, the parameter {tuple(parameters[index].shape)}")
    if optimizer is not None:
        current = optimizer.state_dict()["param_groups"]
        if len(groups) != len(current):
            raise PainterlyError(f"{path}: the checkpoint's optimiser has {len(groups)} parameter groups, "
                                 f"this one {len(current)}")
        for group, ours in zip(groups, current, strict=True):
            for key, value in ours.items():  # a setting a newer torch added is absent, and defaulted by torch
                if key != "params" and key in group and not _same_kind(group[key], value):
                    raise PainterlyError(f"{path}: the checkpoint's optimiser setting {key!r} is "
                                         f"{_shown(group[key])}, expected something like {value!r}")


def check_resumable(saved: dict[str, Any], config: TrainConfig, style_sha256: str, path: Path) -> None:
    """A resumed run must compute the same steps: only bookkeeping settings may change.

    A setting added after the checkpoint was written counts as its default (for the kind of network
    trained), which is what that older run computed with. `style_sha256` is the painting's digest, or
    for AdaIN the paintings folder's (`dataset.folder_sha256`)."""
    defaults = TrainConfig(arch=config.arch).to_dict()
    changed = [name for name, value in config.to_dict().items()
               if name not in RESUMABLE_CHANGES and saved["config"].get(name, defaults[name]) != value]
    if saved["style_sha256"] != style_sha256:
        changed.append("style image" if config.kind == "johnson" else "set of paintings")
    if changed:
        raise PainterlyError(f"{path}: was made with a different {', '.join(changed)}; "
                             "resume with the same settings, or train without --resume")


def cpu_copy(value: Any) -> Any:
    """A copy of a nested state dict on the CPU, which later steps cannot change."""
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", copy=True)
    if isinstance(value, dict):
        return {key: cpu_copy(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(cpu_copy(item) for item in value)
    return value


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)


def rng_states(device: torch.device) -> dict[str, Any]:
    """Every global generator, as tensors and plain values so that `weights_only` loading accepts them."""
    _, keys, position, has_gauss, gauss = cast(tuple[str, np.ndarray, int, int, float], np.random.get_state())
    states: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "position": position,
                  "has_gauss": has_gauss, "gauss": gauss},
    }
    if device.type == "cuda":
        states["cuda"] = torch.cuda.get_rng_state(device)
    return states


def set_rng_states(states: dict[str, Any], device: torch.device) -> None:
    torch.set_rng_state(states["torch"])
    random.setstate(states["python"])
    numpy = states["numpy"]
    np.random.set_state(("MT19937", numpy["keys"].numpy().astype(np.uint32), numpy["position"],
                         numpy["has_gauss"], numpy["gauss"]))
    if device.type == "cuda" and "cuda" in states:
        torch.cuda.set_rng_state(states["cuda"], device)


# --- checks ---------------------------------------------------------------------------------------------


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    """A finite int or float (not a bool, which Python counts as an int)."""
    return _is_int(value) or (isinstance(value, float) and math.isfinite(value))


def _is_tensor_dict(value: object) -> bool:
    return isinstance(value, dict) and all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                           for k, v in value.items())


def _is_optimizer_state(value: object) -> bool:
    """torch.optim's layout: {"state": {index: {name: tensor or number}}, "param_groups": [{"params": [index…]…}]}."""
    if not (isinstance(value, dict) and isinstance(value.get("state"), dict)
            and isinstance(value.get("param_groups"), list)):
        return False
    groups_ok = all(isinstance(group, dict) and isinstance(group.get("params"), list)
                    and all(_is_int(index) for index in group["params"]) for group in value["param_groups"])
    indices = {index for group in value["param_groups"] for index in group["params"]} if groups_ok else set()
    state_ok = all(index in indices and isinstance(moments, dict)
                   and all(isinstance(name, str) and (isinstance(v, torch.Tensor) or _is_number(v))
                           for name, v in moments.items())
                   for index, moments in value["state"].items())
    return groups_ok and state_ok


_FIELDS: dict[str, tuple[str, Callable[[Any], bool]]] = {
    "step": ("a whole number, 0 or more", lambda v: _is_int(v) and v >= 0),
    "lr_scale": ("a finite positive number", lambda v: _is_number(v) and v > 0),
    "model": ("a state dict of tensors", _is_tensor_dict),
    "optimizer": ("an optimiser state dict", _is_optimizer_state),
    "scaler": ("None or a loss scaler's state", lambda v: v is None or (
        isinstance(v, dict) and all(isinstance(k, str) and _is_number(x) for k, x in v.items()))),
    "rng": ("the random generators' states", lambda v: isinstance(v, dict) and {"torch", "python", "numpy"} <= set(v)),
    "config": ("the training settings", lambda v: isinstance(v, dict) and all(isinstance(k, str) for k in v)),
    "style_sha256": ("a SHA-256 in hex", lambda v: isinstance(v, str)),
    "epoch": ("a whole number, 0 or more", lambda v: _is_int(v) and v >= 0),
    "position": ("a whole number, 0 or more", lambda v: _is_int(v) and v >= 0),
    "world_size": ("a whole number, 1 or more", lambda v: _is_int(v) and v >= 1),
    "elapsed": ("a finite number of seconds", lambda v: _is_number(v) and v >= 0),
    "skipped": ("a record of skipped photos", lambda v: isinstance(v, dict) and all(
        isinstance(k, str) and isinstance(x, str) for k, x in v.items())),
}


def _check_checksum(state: dict[str, Any], path: Path) -> None:
    stored = state.get(CHECKSUM_FIELD)
    if stored is None:
        return  # written before checkpoints carried one
    rest = {key: value for key, value in state.items() if key != CHECKSUM_FIELD}
    try:
        actual = tensors_sha256(nested_tensors(rest))
    except RecursionError:  # nesting no checkpoint has
        actual = None
    if not isinstance(stored, str) or actual != stored:
        raise PainterlyError(f"{path}: the checkpoint's tensors do not match its checksum: the file is damaged; "
                             "delete it to train afresh, or resume from a good copy")


def _check_rng(states: dict[str, Any], path: Path) -> None:
    """Each generator's state of the type and size its `set_state` takes, checked on fresh generators."""
    problem = _rng_problem(states)
    if problem:
        raise PainterlyError(f"{path}: the checkpoint's random generator state is damaged ({problem})")


def _rng_problem(states: dict[str, Any]) -> str | None:
    torch_state = states["torch"]
    if not (isinstance(torch_state, torch.Tensor) and torch_state.dtype == torch.uint8 and torch_state.dim() == 1):
        return "torch: not a byte tensor"
    try:
        torch.Generator().set_state(torch_state)
    except RuntimeError:
        return f"torch: {torch_state.numel()} bytes, expected {torch.get_rng_state().numel()}"
    cuda = states.get("cuda")
    if cuda is not None and not (isinstance(cuda, torch.Tensor) and cuda.dtype == torch.uint8 and cuda.dim() == 1):
        return "cuda: not a byte tensor"
    python = states["python"]
    if not (isinstance(python, tuple) and len(python) == 3 and python[0] == 3
            and isinstance(python[1], tuple) and len(python[1]) == _MT_WORDS + 1
            and all(_is_int(word) and 0 <= word < 2**32 for word in python[1][:-1])
            and _is_int(python[1][-1]) and 0 <= python[1][-1] <= _MT_WORDS
            and (python[2] is None or _is_number(python[2]))):
        return "python: not a version-3 Mersenne Twister state"
    numpy = states["numpy"]
    if not (isinstance(numpy, dict) and isinstance(numpy.get("keys"), torch.Tensor)
            and numpy["keys"].dtype == torch.int64 and tuple(numpy["keys"].shape) == (_MT_WORDS,)):
        return f"numpy: keys must be {_MT_WORDS} 64-bit integers"
    keys = numpy["keys"]
    if not (bool((keys >= 0).all()) and bool((keys < 2**32).all())):
        return "numpy: keys out of the 32-bit range"
    if not (_is_int(numpy.get("position")) and 0 <= numpy["position"] <= _MT_WORDS
            and numpy.get("has_gauss") in (0, 1) and not isinstance(numpy.get("has_gauss"), bool)
            and _is_number(numpy.get("gauss"))):
        return "numpy: position, has_gauss or gauss out of range"
    return None


def _same_kind(saved: object, ours: object) -> bool:
    """The saved optimiser setting is of the same kind as the running one's (a number for a number…)."""
    if isinstance(ours, bool) or ours is None:  # flags, and the None that means "torch decides"
        return saved is None or isinstance(saved, bool)
    if isinstance(ours, (int, float)):
        return _is_number(saved)
    if isinstance(ours, (tuple, list)):
        return isinstance(saved, (tuple, list)) and len(saved) == len(ours) and all(
            _same_kind(a, b) for a, b in zip(saved, ours, strict=True))
    return type(saved) is type(ours)


def _shown(value: object) -> str:
    text = repr(value) if not isinstance(value, torch.Tensor) else f"a tensor of shape {tuple(value.shape)}"
    return text if len(text) <= 40 else f"{text[:37]}..."


def _names(keys: list[str]) -> str:
    more = f" and {len(keys) - 3} more" if len(keys) > 3 else ""
    return ", ".join(repr(key) for key in keys[:3]) + more
