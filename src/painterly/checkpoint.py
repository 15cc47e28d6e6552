"""Training checkpoints: everything a step changes, saved so a resumed run is bit-identical.

Model, optimiser, step and every random generator are stored as tensors and
plain values, so `torch.load(weights_only=True)` reads them back and no code
is ever unpickled.
"""

from __future__ import annotations

import pickle
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .atomic import atomic_path
from .config import TrainConfig
from .errors import PainterlyError

CHECKPOINT_FORMAT = "painterly-train-checkpoint"
# Settings that only change bookkeeping; anything else would make a resumed run compute other steps.
RESUMABLE_CHANGES = frozenset({"steps", "epochs", "checkpoint_every", "log_every", "preview_every", "workers"})


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Written atomically: a kill at any moment leaves the previous checkpoint intact."""
    with atomic_path(path) as temporary:
        torch.save({**state, "format": CHECKPOINT_FORMAT}, temporary)


def load_checkpoint(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise PainterlyError(f"{path}: no checkpoint to resume from; train without --resume to start afresh")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError) as error:
        raise PainterlyError(f"{path}: not a readable training checkpoint ({type(error).__name__})") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise PainterlyError(f"{path}: not a painterly training checkpoint")
    return state


def check_resumable(saved: dict[str, Any], config: TrainConfig, style_sha256: str, path: Path) -> None:
    """A resumed run must compute the same steps: only bookkeeping settings may change."""
    changed = [name for name, value in config.to_dict().items()
               if name not in RESUMABLE_CHANGES and saved["config"].get(name) != value]
    if saved["style_sha256"] != style_sha256:
        changed.append("style image")
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
    _, keys, position, has_gauss, gauss = np.random.get_state()
    states = {
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
