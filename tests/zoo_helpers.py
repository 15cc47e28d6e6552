"""The model zoo's downloads in miniature: pytorch/examples' saved_models.zip with tiny random
networks in it, laid out as the real one is, for a local file_server to serve as a mirror
($PAINTERLY_MODELS_MIRROR). (Imported as `zoo_helpers`: pytest puts tests/ on sys.path.)"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import torch

from helpers import examples_state_dict
from painterly.transformer import Architecture, TransformerNet

# The catalogue's pytorch/examples entries and their members in saved_models.zip.
EXAMPLES_MEMBERS = {"candy": "candy.pth", "mosaic": "mosaic.pth", "rain-princess": "rain_princess.pth",
                    "udnie": "udnie.pth"}
EXAMPLES_ZIP = "saved_models.zip"


def examples_model(seed: int = 0) -> TransformerNet:
    """A TransformerNet a few kernels wide in pytorch/examples' 0-255 convention, every weight random and
    its output around mid-grey (not clipped), so that a stylised picture visibly differs from its input."""
    torch.manual_seed(seed)
    model = TransformerNet(Architecture(channels=(4, 8, 8), residual_blocks=1), pixel_scale=255.0).eval()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
        model.deconv3.conv2d.weight.mul_(0.3 * 255)
        model.deconv3.conv2d.bias.fill_(0.5 * 255)
    return model


def examples_zip(path: Path, members: dict[str, str] | None = None) -> Path:
    """saved_models.zip as pytorch/examples publishes it (saved_models/candy.pth, ...): one tiny model per
    member, each with its own seed, saved as that project saved them (stale InstanceNorm statistics)."""
    members = EXAMPLES_MEMBERS if members is None else members
    with zipfile.ZipFile(path, "w") as archive:
        for seed, member in enumerate(members.values()):
            buffer = io.BytesIO()
            torch.save(examples_state_dict(examples_model(seed)), buffer)
            archive.writestr(f"saved_models/{member}", buffer.getvalue())
    return path


def zoo_mirror(folder: Path) -> Path:
    """A folder to serve as $PAINTERLY_MODELS_MIRROR: the pytorch/examples zip under its catalogue file name."""
    folder.mkdir(parents=True, exist_ok=True)
    examples_zip(folder / EXAMPLES_ZIP)
    return folder
