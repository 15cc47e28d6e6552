"""Tiny AdaIN models for the apply-path tests: random VGG encoders (only the convs they use), a decoder
whose output sits mid-range, written as real model files, and a hand-made ONNX graph with the
runtime's input and output names; and pytorch-AdaIN's published files (`decoder.pth`,
`vgg_normalised.pth`) rebuilt independently with random weights, for the import and the model zoo.
(Imported as `adain_helpers`: pytest puts tests/ on sys.path.)"""

from __future__ import annotations

import io
import json
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

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


# --- pytorch-AdaIN's published files, rebuilt as plain nn.Sequential networks -----------------------

VGG19_TO_RELU4_1 = [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512]


def reference_encoder() -> nn.Sequential:
    """The published normalised VGG-19 up to relu4_1: a 1×1 conv, then pad+conv+ReLU per conv and
    ceil-mode max pools, one module each, in that order."""
    modules: list[nn.Module] = [nn.Conv2d(3, 3, 1)]
    channels = 3
    for item in VGG19_TO_RELU4_1:
        if item == "M":
            modules.append(nn.MaxPool2d(2, 2, 0, ceil_mode=True))
        else:
            assert isinstance(item, int)
            modules += [nn.ReflectionPad2d(1), nn.Conv2d(channels, item, 3), nn.ReLU()]
            channels = item
    return nn.Sequential(*modules)


def reference_decoder() -> nn.Sequential:
    """The published decoder, module by module as the paper's Table/code lists it."""
    layout = [(512, 256), "up", (256, 256), (256, 256), (256, 256), (256, 128), "up", (128, 128), (128, 64), "up",
              (64, 64), (64, 3)]
    modules: list[nn.Module] = []
    for index, item in enumerate(layout):
        if item == "up":
            modules.append(nn.Upsample(scale_factor=2, mode="nearest"))
            continue
        modules += [nn.ReflectionPad2d(1), nn.Conv2d(*item, 3)]
        if index < len(layout) - 1:
            modules.append(nn.ReLU())
    return nn.Sequential(*modules)


def randomised(module: nn.Module, seed: int) -> nn.Module:
    """Weights small enough that 12 layers neither vanish nor explode."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.08)
    return module.eval()


def write_published(folder: Path, *, seed: int = 1) -> tuple[Path, Path, nn.Module, nn.Module]:
    """decoder.pth and vgg_normalised.pth in `folder`, written in pytorch-AdaIN's key layout (the encoder
    file with the layers past relu4_1 too, as the published one has them); also the two networks."""
    folder.mkdir(parents=True, exist_ok=True)
    vgg, decoder = randomised(reference_encoder(), seed), randomised(reference_decoder(), seed + 1)
    encoder_state = dict(vgg.state_dict())
    encoder_state["32.weight"], encoder_state["32.bias"] = torch.zeros(512, 512, 3, 3), torch.zeros(512)
    torch.save(encoder_state, folder / "vgg_normalised.pth")
    torch.save(decoder.state_dict(), folder / "decoder.pth")
    return folder / "decoder.pth", folder / "vgg_normalised.pth", vgg, decoder
