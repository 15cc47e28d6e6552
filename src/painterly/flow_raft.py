"""RAFT optical flow (Teed & Deng 2020) from torchvision, for `--flow raft-small` / `--flow raft-large`.

A learned flow is more accurate than DIS on large motions, thin structures and low texture, and it
runs on the GPU; on a CPU it is slow (`flow.motion` on a 640×480 pair, on two cores: 2.61 s small,
9.23 s large, against DIS's 0.072 s; `python -m benchmarks --only video-flow`). Its weights are
torchvision's files (Raft_Small_Weights.C_T_V2, Raft_Large_Weights.C_T_SKHT_V2), fetched once into
torch.hub's cache through `weights` (the mirror, the hash check, the offline message), never
required: DIS is the default and needs none.

The estimator slots into `flow`'s motion: it gives the backward and forward flows at a working
size, and `flow` decides visibility there as for DIS. RAFT needs both sides at least 128 pixels and
multiples of 8, so the working size is the frame scaled to a long side of at most
`flow.FLOW_LONG_SIDE`, enlarged where a side would be under 128, rounded up to multiples of 8.
Torch-free at import (`painterly weights` lists these files without importing torch).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from . import weights
from .errors import UsageError, WeightsError
from .events import Callback, ignore

if TYPE_CHECKING:
    import torch

# torchvision's files (`Raft_*_Weights.*.url`), written out so that listing them needs no torchvision;
# tests/test_flow_raft.py checks them against torchvision's.
RAFT_URLS = {
    "raft-small": "https://download.pytorch.org/models/raft_small_C_T_V2-01064c6d.pth",
    "raft-large": "https://download.pytorch.org/models/raft_large_C_T_SKHT_V2-ff5fadd5.pth",
}
NAMES = tuple(RAFT_URLS)
_LABELS = {"raft-small": "RAFT-small", "raft-large": "RAFT-large"}

OFFLINE_MESSAGE = (
    "{label} optical-flow weights are not in the cache ({path}) and could not be downloaded from {url} "
    "({reason}). Either connect to the internet once (`painterly weights --download --arch {arch}`), "
    "copy the file from a machine that has it (`painterly weights --import {filename} --arch {arch}`), "
    "or use --flow dis (weight-free, the default)."
)
DOWNLOAD_FAILED_MESSAGE = (
    "{label} optical-flow weights could not be downloaded from {url} ({reason}). Run this again once "
    "connected (or with " + weights.MIRROR_ENV + " set to a mirror you can reach), or copy the file from a "
    "machine that has it: `painterly weights --import {filename} --arch {arch}`."
)

SPECS: dict[str, weights.WeightsSpec] = {
    name: weights.spec_from_url(name, url, label=_LABELS[name], offline_message=OFFLINE_MESSAGE,
                                failed_message=DOWNLOAD_FAILED_MESSAGE)
    for name, url in RAFT_URLS.items()
}

_MIN_SIDE = 128  # torchvision's RAFT: its correlation pyramid needs feature maps of 16 at 1/8 scale
_MULTIPLE = 8


def spec_for(name: str) -> weights.WeightsSpec:
    """The spec of RAFT `name`, from the mirror when $PAINTERLY_WEIGHTS_MIRROR is set."""
    if name not in SPECS:
        raise UsageError(f"the RAFT flows are {', '.join(NAMES)}; got {name!r}")
    return weights.mirrored(SPECS[name])


def status() -> list[dict]:
    """`weights.status`'s rows for the RAFT files."""
    rows = []
    for name in NAMES:
        spec = spec_for(name)
        path = weights.cached_path(spec)
        present = path.is_file()
        rows.append({"arch": name, "url": spec.url, "path": path, "present": present,
                     "size": path.stat().st_size if present else None})
    return rows


def ensure_weights(name: str, *, download_missing: bool = True, callback: Callback = ignore) -> Path:
    """The cached official file of RAFT `name`, downloaded (and hash-checked) if absent: called before any
    work, so that a clip, or a folder of them, is refused in one line rather than failing at its first pair."""
    spec = spec_for(name)
    path = weights.cached_path(spec)
    if not path.is_file():
        if not download_missing:
            raise weights.unavailable(spec, "downloads disabled")
        weights.download(spec, callback=callback)
    return path


def load_model(name: str, *, download_missing: bool = True, callback: Callback = ignore) -> Any:
    """torchvision's RAFT `name` with the cached official weights (`ensure_weights`), in eval mode on the
    CPU. A file that is not that network's weights is one WeightsError naming it, and the way out."""
    path = ensure_weights(name, download_missing=download_missing, callback=callback)
    try:
        return _model_from_file(path, name)
    except WeightsError as error:  # a download is hash-checked: this file was put or changed there since
        raise WeightsError(f"{error}; it is the cached copy: delete it to download it again, or use --flow dis") \
            from None


def import_file(path: Path, name: str) -> Path:
    """Copy a local copy of torchvision's official RAFT file into the cache, so `--flow` works offline."""
    path = Path(path)
    _model_from_file(path, name)
    return weights.install(path, spec_for(name), otherwise="painterly takes only torchvision's official RAFT files")


def random_network(name: str, *, seed: int = 0) -> Any:
    """A seeded random RAFT `name` (torchvision's initialisation), for the tests and the benchmark, which
    cannot download the real weights: it costs what the real one costs, and its flow is meaningless."""
    import torch

    torch.manual_seed(seed)
    return _network(name).eval()


def random_state_dict(name: str, *, seed: int = 0) -> dict[str, torch.Tensor]:
    """`random_network`'s weights, for a file."""
    return random_network(name, seed=seed).state_dict()


def _network(name: str) -> Any:
    from torchvision.models.optical_flow import raft_large, raft_small

    return (raft_small if name == "raft-small" else raft_large)(weights=None)


def _model_from_file(path: Path, name: str) -> Any:
    from .torchfiles import load_torch_file, state_dict_of

    label = _LABELS[name]
    state = state_dict_of(load_torch_file(path, f"{label} weights", error=WeightsError), path, label,
                          error=WeightsError)
    model = _network(name)
    expected = model.state_dict()
    missing = [key for key in expected if key not in state]
    unexpected = [key for key in state if key not in expected]
    if unexpected:  # a file of another network says so by what it holds
        raise WeightsError(f"{path}: not {label} weights (unexpected keys: {_some(unexpected)}; "
                           f"{len(missing)} of its {len(expected)} missing); weights of another network?")
    if missing:
        raise WeightsError(f"{path}: not {label} weights (missing: {_some(missing)})")
    for key, tensor in state.items():
        if tuple(tensor.shape) != tuple(expected[key].shape):
            raise WeightsError(f"{path}: {key} has shape {tuple(tensor.shape)}, expected "
                               f"{tuple(expected[key].shape)} for {label}")
        if tensor.is_floating_point() and not bool(tensor.isfinite().all()):  # every flow would be NaN
            raise WeightsError(f"{path}: {key} holds NaN or infinity; not usable {label} weights")
    model.load_state_dict(state)
    return model.eval()


def _some(keys: list[str]) -> str:
    return ", ".join(keys[:3]) + (f" and {len(keys) - 3} more" if len(keys) > 3 else "")


def working_size(height: int, width: int, long_side: int) -> tuple[int, int]:
    """(height, width) RAFT is run at for a frame: long side at most `long_side`, both sides at least 128,
    multiples of 8 (rounded up)."""
    scale = min(1.0, long_side / max(height, width))
    scale = max(scale, _MIN_SIDE / min(height, width))
    # less a hair: 640 / width · width is 640.0000000001 at some widths, and must not round up to 648
    return tuple(_MULTIPLE * math.ceil(side * scale / _MULTIPLE - 1e-9) for side in (height, width))  # type: ignore[return-value]


class RaftFlow:
    """Both flows between two frames with RAFT `name` on `device` ("cpu", "cuda", …); the weights are
    loaded (and fetched if absent) when it is made, so a missing file is one line before any frame.
    `model` given (the benchmark's random network): that one instead."""

    def __init__(self, name: str, device: str = "cpu", *, long_side: int, callback: Callback = ignore,
                 model: Any = None) -> None:
        self.name, self.device, self.long_side = name, device, long_side
        self._model = (load_model(name, callback=callback) if model is None else model.eval()).to(device)

    def prepare(self, frame: np.ndarray) -> torch.Tensor:
        """An HxWx3 frame (float32 in [0, 1] or uint8) as RAFT takes it: (1, 3, h, w) in [-1, 1] at the
        working size, on the device."""
        import torch
        import torch.nn.functional as F

        if frame.ndim != 3 or frame.shape[2] != 3:
            raise ValueError(f"RAFT takes HxWx3 frames, not {frame.shape}")
        values = frame.astype(np.float32) / 255 if frame.dtype == np.uint8 else frame.astype(np.float32, copy=False)
        tensor = torch.from_numpy(np.ascontiguousarray(values)).permute(2, 0, 1)[None].to(self.device)
        size = working_size(frame.shape[0], frame.shape[1], self.long_side)
        if tuple(tensor.shape[2:]) != size:
            tensor = F.interpolate(tensor, size=size, mode="bilinear", align_corners=False, antialias=True)
        return tensor * 2 - 1

    def flows(self, previous: torch.Tensor, current: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """(backward, forward), each (h, w, 2) float32 in working pixels: previous sampled at p + backward(p)
        ≈ current at p, and current sampled at p + forward(p) ≈ previous at p. One call, a batch of two."""
        import torch

        with torch.inference_mode():
            both = self._model(torch.cat([current, previous]), torch.cat([previous, current]))[-1]
        backward, forward = both.float().permute(0, 2, 3, 1).cpu().numpy()
        return np.ascontiguousarray(backward), np.ascontiguousarray(forward)

