"""Tiny AdaIN models for the apply-path tests: random VGG encoders (only the convs they use), a decoder
whose output sits mid-range, written as real model files, and a hand-made ONNX graph with the
runtime's input and output names. (Imported as `adain_helpers`: pytest puts tests/ on sys.path.)"""

from __future__ import annotations

import io
import json
import warnings
from pathlib import Path

import numpy as np
import torch

from painterly import weights
from painterly.adain import ADAIN_ARCHITECTURES, AdaINNet, encoder_state_from_vgg
from painterly.modelfile import load_model, save_model
from painterly.runtimes import ADAIN_FORMAT, ADAIN_INPUTS, ADAIN_OUTPUTS

CONVS = {"light": 5, "standard": 9}  # VGG-19 convs up to relu3_1 / relu4_1


def adain_net(arch: str = "light", seed: int = 0) -> AdaINNet:
    """A random AdaIN network whose output depends on the painting and is not clipped away: the last
    conv is scaled up and centred on 0.5 (a random decoder alone gives near-constant images)."""
    architecture = ADAIN_ARCHITECTURES[arch]
    vgg = weights.random_state_dict("vgg19", seed=seed, upto=CONVS[arch])
    torch.manual_seed(seed)
    net = AdaINNet(architecture, encoder_state=encoder_state_from_vgg(vgg, architecture)).eval()
    last = net.decoder[-1]
    assert isinstance(last, torch.nn.Conv2d)
    with torch.no_grad():
        last.weight.mul_(5.0)
        last.bias.fill_(0.5)
    return net


def save_adain(path: Path, arch: str = "light", seed: int = 0) -> Path:
    return save_model(adain_net(arch, seed), path, style={"paintings": "tests"}, steps=0)


def export_adain_graph(model_path: Path, onnx_path: Path, *, opset: int = 17) -> Path:
    """The ONNX graph the runtime expects of an AdaIN model (what export.py writes): AdaINNet.forward
    with the names in runtimes.py, batch, height and width dynamic, format and size_multiple recorded."""
    import onnx

    net, metadata = load_model(model_path)
    assert isinstance(net, AdaINNet)
    channels = 256 if net.architecture.bottleneck == "relu3_1" else 512
    example = (torch.rand(1, 3, 32, 32), torch.zeros(1, channels), torch.ones(1, channels), torch.ones(1))
    axes = {"image": {0: "batch", 2: "height", 3: "width"}, "style_mean": {0: "styles"}, "style_std": {0: "styles"},
            "stylized": {0: "batch", 2: "height", 3: "width"}, "content_mean": {0: "batch"},
            "content_std": {0: "batch"}}
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, example, buffer, dynamo=False, opset_version=opset, input_names=list(ADAIN_INPUTS),
                          output_names=list(ADAIN_OUTPUTS), dynamic_axes=axes)
    proto = onnx.load_model_from_string(buffer.getvalue())
    for key, value in {**metadata, "format": ADAIN_FORMAT, "size_multiple": net.size_multiple}.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, json.dumps(value)
    onnx_path.write_bytes(proto.SerializeToString())
    return onnx_path


def painting(height: int, width: int, tint: tuple[float, float, float], seed: int = 0) -> np.ndarray:
    """A textured painting of one dominant colour: two of different tints give clearly different styles."""
    rng = np.random.default_rng(seed)
    texture = rng.random((height, width, 1), dtype=np.float32)
    return np.clip(np.asarray(tint, dtype=np.float32) * (0.5 + texture), 0, 1).astype(np.float32)


def photo(height: int, width: int, seed: int = 1) -> np.ndarray:
    """Statistically the same everywhere (noise), so a region's own statistics are the whole image's."""
    return np.random.default_rng(seed).random((height, width, 3), dtype=np.float32)
