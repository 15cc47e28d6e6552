"""Fast-inference jobs: one random TransformerNet (seed 0) run by ReferenceTransformerNet, by
painterly's torch backend and by its ONNX Runtime backend, on the same square photo.

torch is imported only inside the jobs that need it, so that the ONNX worker's peak memory
is that of ONNX Runtime alone, as for a user who installed painterly without torch.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from painterly.config import ApplyConfig
from painterly.fast import FastStylizer

from .inputs import SEED, square_content
from .measure import ConvFlops, time_calls

if TYPE_CHECKING:
    from .reference import ReferenceTransformerNet


def write_models(folder: str, architectures: tuple[str, ...] = ("standard", "light")) -> dict:
    """The random TransformerNets as painterly model files and their ONNX exports (parity-checked):
    {"torch": …, "onnx": …, "light-torch": …, "light-onnx": …} (the tests may ask for fewer)."""
    import torch

    from painterly.export import export_onnx
    from painterly.modelfile import save_model
    from painterly.transformer import TransformerNet

    files = {}
    for arch in architectures:
        prefix = "" if arch == "standard" else f"{arch}-"
        torch.manual_seed(SEED)
        model = save_model(TransformerNet(arch), Path(folder) / f"random-{arch}.safetensors",
                           style={"image": f"none: random weights, seed {SEED}"})
        files[f"{prefix}torch"] = str(model)
        files[f"{prefix}onnx"] = str(export_onnx(model, Path(folder) / f"random-{arch}.onnx").path)
    return files


def reference_network(model: Path) -> ReferenceTransformerNet:
    """ReferenceTransformerNet with the painterly model's weights, copied tensor by tensor in order.

    Both networks list their layers in the same order (conv, norm, …, residual blocks, upsampling),
    so matching shapes in order gives the same weights, and both do exactly the same work.
    """
    import torch

    from painterly.modelfile import load_model

    from .reference import ReferenceTransformerNet

    ours, _ = load_model(model)
    net = ReferenceTransformerNet().eval()
    theirs = net.state_dict()
    if [v.shape for v in theirs.values()] != [v.shape for v in ours.state_dict().values()]:
        raise RuntimeError("ReferenceTransformerNet and painterly's TransformerNet no longer match layer by layer")
    with torch.no_grad():
        for target, source in zip(theirs.values(), ours.state_dict().values(), strict=True):
            target.copy_(source)
    return net


def reference_inference(model: str, size: int, runs: int) -> dict:
    """ReferenceTransformerNet.stylize (no_grad, eager fp32) on a size×size photo; conv FLOPs counted."""
    from painterly.pixels import to_tensor

    net = reference_network(Path(model))
    image = to_tensor(square_content(size))
    with ConvFlops() as counter:
        timing = time_calls(lambda: net.stylize(image), runs, counter)
    return timing.summary()


def painterly_inference(model: str, size: int, runs: int, backend: str, precision: str = "auto") -> dict:
    """FastStylizer.stylize, array in and array out, on the same photo with the `backend` asked for."""
    stylizer = FastStylizer(model, ApplyConfig(backend=backend, device="cpu", precision=precision))
    image = square_content(size)
    return time_calls(lambda: stylizer.stylize(image), runs).summary()


def painterly_tiled(model: str, size: int, tile: int | None = None, backend: str = "torch") -> dict:
    """One run of FastStylizer (defaults, unless `tile` is given) on a size×size 8-bit image, for its
    peak memory (no warm-up: it takes minutes).

    8-bit in and out, as `painterly apply` reads and writes image files. The image is a 1024² photo
    repeated, made without full-size temporaries, so the peak is the input plus what stylising it takes.
    """
    from painterly.pixels import to_uint8

    stylizer = FastStylizer(model, ApplyConfig(backend=backend, device="cpu", tile=tile))
    patch = min(size, 1024)
    image = np.tile(to_uint8(square_content(patch)), (size // patch, size // patch, 1))
    start = time.perf_counter()
    stylizer.stylize(image)
    return {"seconds": time.perf_counter() - start, "input_bytes": image.nbytes,
            "tile": stylizer.tile_for(size, size), "precision": stylizer.precision}
