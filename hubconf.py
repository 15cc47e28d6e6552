"""painterly's fast style models through torch.hub.

    stylizer = torch.hub.load("<owner>/painterly", "fast", "candy", strength=0.8)
    out = stylizer.stylize(image)                      # HxWx3 uint8 or float array -> the same, stylised
    net = torch.hub.load("<owner>/painterly", "network", "candy")   # the bare nn.Module

The model comes first, by position: torch.hub.load's own second parameter is called `model` (it is
the entry point's name), so `model="candy"` cannot reach an entry point through it. The model is
anything painterly takes where a model path goes: a catalogue name (`painterly models`; pulled into
$PAINTERLY_HOME/models on first use), a painterly .safetensors, .onnx or pytorch/examples .pth file,
or an hf://owner/repo[/file][@revision] reference. torch.hub imports this file from the repository
it downloaded (or from `source="local"`'s folder); painterly itself is imported from there too
unless it is already installed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from typing import Any

dependencies = ["torch", "torchvision", "numpy", "PIL", "safetensors", "tqdm"]  # what torch.hub checks first


def _import_from_here_unless_installed() -> None:
    """An installed painterly is used as it is; otherwise the package beside this file (torch.hub's
    download of the repository, or a checkout) is put on the path. (Private, with its imports inside:
    torch.hub.list shows every public callable here as an entry point.)"""
    import importlib.util
    import sys
    from pathlib import Path

    if importlib.util.find_spec("painterly") is None:
        sys.path.insert(0, str(Path(__file__).resolve().parent / "src"))


_import_from_here_unless_installed()


def fast(model: str = "candy", device: str = "cpu", progress: bool = True, **settings: Any):
    """A painterly FastStylizer for `model`: `.stylize(image)` paints an HxWx3 array (uint8 or float).

    torch.hub.load(repo, "fast", "candy", device="cpu", strength=0.8)
    model (by position): a catalogue name (pulled on first use), a model file, or an hf://owner/repo reference.
    device: "cpu", "cuda", "mps" or "auto".
    progress: show a pulled model's download progress on stderr.
    settings: any painterly ApplyConfig setting by keyword (strength=0.8, preserve_color="luminance",
        size=512, tile=..., precision="fp32", alpha=... for an AdaIN model).
    An arbitrary-style (AdaIN) model paints after `stylizer.with_styles([stylizer.read_painting(path)])`.
    """
    from painterly.config import ApplyConfig
    from painterly.fast import FastStylizer
    from painterly.progress import ProgressPrinter

    config = ApplyConfig(device=device, **settings)
    with ProgressPrinter(quiet=not progress) as printer:
        return FastStylizer(model, config, callback=printer)


def network(model: str = "candy", device: str = "cpu", progress: bool = True):
    """The bare network of `model`, in eval mode: a TransformerNet (one style) or an AdaINNet (any painting).

    torch.hub.load(repo, "network", "candy")
    model (by position): a catalogue name (pulled on first use), a .safetensors or pytorch/examples .pth file, or an
        hf://owner/repo reference.
    device: where its weights are put ("cpu", "cuda", ...).
    progress: show a pulled model's download progress on stderr.
    A TransformerNet takes (N, 3, H, W) float RGB in [0, 1], H and W multiples of 4, and returns the same.
    """
    from painterly.modelfile import load_model
    from painterly.progress import ProgressPrinter
    from painterly.zoo import resolve_model

    with ProgressPrinter(quiet=not progress) as printer:
        path = resolve_model(model, callback=printer)
    return load_model(path, device=device)[0]
