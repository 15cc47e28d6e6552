"""REFERENCE implementations, for the benchmark only — not part of painterly.

Written the way tutorials and the seed's repository write style transfer, so
the benchmark can show what painterly's engineering buys:

* `ReferenceGatys`: the full VGG-19 feature stack run on the generated, the
  content and the style image at every step, Adam, the network as torchvision
  builds it (weights requiring gradients, as in the popular tutorials that
  recompute the targets each step), so every backward also computes weight
  gradients through all three passes. `freeze_vgg=True` gives a more careful
  variant that the report shows too. The loss *definition* is painterly's (same
  functions), so loss values compare directly; only the way it is computed differs.
* `ReferenceTransformerNet`: pytorch/examples' fast_neural_style network,
  eager fp32 on 0–255 pixels, ConvTranspose-free as there.
* `ReferenceTrainer`: pytorch/examples' training step: VGG-16 up to relu4_3,
  separate passes for the stylised and the original batch, fp32.
* `ReferenceAdaIN`: naoto0804/pytorch-AdaIN's test.py: its nn.Sequential VGG
  (cut at relu4_1) and decoder, eager fp32, the style image encoded again for
  every content image.
"""

from __future__ import annotations

import torch
from torch import nn

from painterly.features import layer_names
from painterly.losses import content_loss, gram_matrix, style_layer_loss, total_variation

_MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
_STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


def _vgg(arch: str, state_dict: dict[str, torch.Tensor], *, frozen: bool = True) -> nn.Sequential:
    """torchvision's whole `features` stack, as tutorials build it (`torchvision.models.vgg19(weights=None)
    .features`); `frozen=False` leaves its weights requiring gradients, torchvision's default.

    Built here layer for layer as torchvision builds it (3×3 convs with padding 1, ReLUs, 2×2 max-pools,
    at torchvision's indices), since importing torchvision, and initialising the classifier that
    `.features` drops, cost every job seconds; tests/test_benchmarks.py checks the two are the same.
    """
    layers: list[nn.Module] = []
    for index, name in enumerate(layer_names(arch)):
        if name.startswith("conv"):
            c_out, c_in = state_dict[f"features.{index}.weight"].shape[:2]
            layers.append(nn.Conv2d(c_in, c_out, kernel_size=3, padding=1))
        else:
            layers.append(nn.ReLU(inplace=True) if name.startswith("relu") else nn.MaxPool2d(kernel_size=2, stride=2))
    features = nn.Sequential(*layers)
    features.load_state_dict({k.removeprefix("features."): v for k, v in state_dict.items()})
    for module in features:
        if isinstance(module, nn.ReLU):
            module.inplace = False
    return features.eval().requires_grad_(not frozen)


class ReferenceGatys:
    """Tutorial-style Gatys: every step re-runs the full VGG-19 on three images."""

    def __init__(self, state_dict, content, style, *, content_layers, style_layers, content_weight,
                 style_weight, tv_weight, lr=0.02, freeze_vgg=False):
        self.vgg = _vgg("vgg19", state_dict, frozen=freeze_vgg)
        self.names = layer_names("vgg19")
        self.content, self.style = content, style
        self.content_layers, self.style_layers = list(content_layers), dict(style_layers)
        self.weights = (content_weight, style_weight, tv_weight)
        self.image = content.clone().requires_grad_(True)
        self.optimizer = torch.optim.Adam([self.image], lr=lr)

    def _features(self, x):
        out = {}
        x = (x - _MEAN) / _STD
        for name, module in zip(self.names, self.vgg):
            x = module(x)
            out[name] = x
        return out

    def loss(self, image):
        generated, target_c, target_s = self._features(image), self._features(self.content), self._features(self.style)
        cw, sw, tw = self.weights
        content = sum(content_loss(generated[name], target_c[name], "target") for name in self.content_layers)
        style = 0.0
        for layer, weight in self.style_layers.items():
            g, a = generated[layer], target_s[layer]
            g_gram = gram_matrix(g) / (g.shape[2] * g.shape[3])
            a_gram = gram_matrix(a) / (a.shape[2] * a.shape[3])
            style = style + weight * style_layer_loss(g_gram, a_gram, g.shape[1], g.shape[2] * g.shape[3], "target")
        return cw * content + sw * style + tw * total_variation(image, "target")

    def step(self) -> float:
        self.optimizer.zero_grad()
        loss = self.loss(self.image)
        loss.backward()
        self.optimizer.step()
        with torch.no_grad():
            self.image.clamp_(0, 1)
        return float(loss.detach())


class _ConvLayer(nn.Module):
    def __init__(self, cin, cout, kernel, stride=1):
        super().__init__()
        self.reflection_pad = nn.ReflectionPad2d(kernel // 2)
        self.conv2d = nn.Conv2d(cin, cout, kernel, stride)

    def forward(self, x):
        return self.conv2d(self.reflection_pad(x))


class _Residual(nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.conv1, self.in1 = _ConvLayer(channels, channels, 3), nn.InstanceNorm2d(channels, affine=True)
        self.conv2, self.in2 = _ConvLayer(channels, channels, 3), nn.InstanceNorm2d(channels, affine=True)

    def forward(self, x):
        return x + self.in2(self.conv2(torch.relu(self.in1(self.conv1(x)))))


class _Upsample(_ConvLayer):
    def forward(self, x):
        return super().forward(nn.functional.interpolate(x, mode="nearest", scale_factor=2))


class ReferenceTransformerNet(nn.Module):
    """pytorch/examples' TransformerNet: 0–255 pixels in and out, eager fp32."""

    def __init__(self):
        super().__init__()
        self.down = nn.Sequential(
            _ConvLayer(3, 32, 9), nn.InstanceNorm2d(32, affine=True), nn.ReLU(),
            _ConvLayer(32, 64, 3, 2), nn.InstanceNorm2d(64, affine=True), nn.ReLU(),
            _ConvLayer(64, 128, 3, 2), nn.InstanceNorm2d(128, affine=True), nn.ReLU(),
        )
        self.res = nn.Sequential(*[_Residual(128) for _ in range(5)])
        self.up = nn.Sequential(
            _Upsample(128, 64, 3), nn.InstanceNorm2d(64, affine=True), nn.ReLU(),
            _Upsample(64, 32, 3), nn.InstanceNorm2d(32, affine=True), nn.ReLU(),
            _ConvLayer(32, 3, 9),
        )

    def forward(self, x):
        return self.up(self.res(self.down(x)))

    def stylize(self, image01: torch.Tensor) -> torch.Tensor:
        """As pytorch/examples' `stylize`: no_grad, ×255 in, /255 and clamp out."""
        with torch.no_grad():
            return (self(image01 * 255) / 255).clamp(0, 1)


class ReferenceTrainer:
    """pytorch/examples' training step: VGG-16 to relu4_3, two separate VGG passes, fp32."""

    LAYERS = ("relu1_2", "relu2_2", "relu3_3", "relu4_3")

    def __init__(self, state_dict, style, *, content_weight, style_weight, tv_weight, lr=1e-3):
        names = layer_names("vgg16")
        depth = names.index("relu4_3") + 1
        self.vgg = _vgg("vgg16", state_dict)[:depth]
        self.names = names[:depth]
        self.model = ReferenceTransformerNet()
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=lr)
        self.weights = (content_weight, style_weight, tv_weight)
        with torch.no_grad():
            self.style_grams = {k: gram_matrix(v) / (v.shape[2] * v.shape[3]) for k, v in self._features(style).items()}

    def _features(self, x):
        out = {}
        x = (x - _MEAN) / _STD
        for name, module in zip(self.names, self.vgg):
            x = module(x)
            if name in self.LAYERS:
                out[name] = x
        return out

    def step(self, photos01: torch.Tensor) -> float:
        cw, sw, tw = self.weights
        self.optimizer.zero_grad()
        y = self.model(photos01 * 255) / 255
        features_y, features_x = self._features(y), self._features(photos01)
        content = content_loss(features_y["relu2_2"], features_x["relu2_2"], "target")
        style = 0.0
        for layer in self.LAYERS:
            f = features_y[layer]
            gram = gram_matrix(f) / (f.shape[2] * f.shape[3])
            style = style + 0.25 * style_layer_loss(gram, self.style_grams[layer], f.shape[1], 1, "target")
        loss = cw * content + sw * style + tw * total_variation(y, "target")
        loss.backward()
        self.optimizer.step()
        return float(loss.detach())


def _adain_vgg() -> nn.Sequential:
    """pytorch-AdaIN's `net.vgg` (the published normalised VGG-19) cut as its test.py cuts it,
    `nn.Sequential(*list(vgg.children())[:31])`: the 1×1 input conv, then conv1_1 … relu4_1."""
    return nn.Sequential(
        nn.Conv2d(3, 3, (1, 1)),
        nn.ReflectionPad2d((1, 1, 1, 1)), nn.Conv2d(3, 64, (3, 3)), nn.ReLU(),  # relu1-1
        nn.ReflectionPad2d((1, 1, 1, 1)), nn.Conv2d(64, 64, (3, 3)), nn.ReLU(),  # relu1-2
        nn.MaxPool2d((2, 2), (2, 2), (0, 0), ceil_mode=True),
        nn.ReflectionPad2d((1, 1, 1, 1)), nn.Conv2d(64, 128, (3, 3)), nn.ReLU(),  # relu2-1
        nn.ReflectionPad2d((1, 1, 1, 1)), nn.Conv2d(128, 128, (3, 3)), nn.ReLU(),  # relu2-2
        nn.MaxPool2d((2, 2), (2, 2), (0, 0), ceil_mode=True),
        nn.ReflectionPad2d((1, 1, 1, 1)), nn.Conv2d(128, 256, (3, 3)), nn.ReLU(),  # relu3-1
        nn.ReflectionPad2d((1, 1, 1, 1)), nn.Conv2d(256, 256, (3, 3)), nn.ReLU(),  # relu3-2
        nn.ReflectionPad2d((1, 1, 1, 1)), nn.Conv2d(256, 256, (3, 3)), nn.ReLU(),  # relu3-3
        nn.ReflectionPad2d((1, 1, 1, 1)), nn.Conv2d(256, 256, (3, 3)), nn.ReLU(),  # relu3-4
        nn.MaxPool2d((2, 2), (2, 2), (0, 0), ceil_mode=True),
        nn.ReflectionPad2d((1, 1, 1, 1)), nn.Conv2d(256, 512, (3, 3)), nn.ReLU(),  # relu4-1
    )


def _adain_decoder() -> nn.Sequential:
    """pytorch-AdaIN's `net.decoder`, module for module."""
    return nn.Sequential(
        nn.ReflectionPad2d((1, 1, 1, 1)), nn.Conv2d(512, 256, (3, 3)), nn.ReLU(),
        nn.Upsample(scale_factor=2, mode="nearest"),
        nn.ReflectionPad2d((1, 1, 1, 1)), nn.Conv2d(256, 256, (3, 3)), nn.ReLU(),
        nn.ReflectionPad2d((1, 1, 1, 1)), nn.Conv2d(256, 256, (3, 3)), nn.ReLU(),
        nn.ReflectionPad2d((1, 1, 1, 1)), nn.Conv2d(256, 256, (3, 3)), nn.ReLU(),
        nn.ReflectionPad2d((1, 1, 1, 1)), nn.Conv2d(256, 128, (3, 3)), nn.ReLU(),
        nn.Upsample(scale_factor=2, mode="nearest"),
        nn.ReflectionPad2d((1, 1, 1, 1)), nn.Conv2d(128, 128, (3, 3)), nn.ReLU(),
        nn.ReflectionPad2d((1, 1, 1, 1)), nn.Conv2d(128, 64, (3, 3)), nn.ReLU(),
        nn.Upsample(scale_factor=2, mode="nearest"),
        nn.ReflectionPad2d((1, 1, 1, 1)), nn.Conv2d(64, 64, (3, 3)), nn.ReLU(),
        nn.ReflectionPad2d((1, 1, 1, 1)), nn.Conv2d(64, 3, (3, 3)),
    )


def _calc_mean_std(feat: torch.Tensor, eps: float = 1e-5) -> tuple[torch.Tensor, torch.Tensor]:
    """pytorch-AdaIN's function.calc_mean_std: unbiased variance + eps, per image and channel."""
    n, c = feat.size()[:2]
    feat_var = feat.view(n, c, -1).var(dim=2) + eps
    return feat.view(n, c, -1).mean(dim=2).view(n, c, 1, 1), feat_var.sqrt().view(n, c, 1, 1)


def _adaptive_instance_normalization(content_feat: torch.Tensor, style_feat: torch.Tensor) -> torch.Tensor:
    """pytorch-AdaIN's function.adaptive_instance_normalization."""
    size = content_feat.size()
    style_mean, style_std = _calc_mean_std(style_feat)
    content_mean, content_std = _calc_mean_std(content_feat)
    normalized_feat = (content_feat - content_mean.expand(size)) / content_std.expand(size)
    return normalized_feat * style_std.expand(size) + style_mean.expand(size)


class ReferenceAdaIN:
    """pytorch-AdaIN's test.py: `vgg[:31]` and `decoder` as nn.Sequential in eval mode, eager fp32
    on [0, 1] pixels, and `style_transfer` under no_grad, which encodes the content and the style
    image at every call (test.py's loop calls it once per content-style pair)."""

    def __init__(self) -> None:
        self.vgg = _adain_vgg().eval()
        self.decoder = _adain_decoder().eval()

    def style_transfer(self, content: torch.Tensor, style: torch.Tensor, alpha: float = 1.0) -> torch.Tensor:
        """As test.py's `style_transfer` inside its `with torch.no_grad()`; the output is not clamped
        (test.py's save_image does that)."""
        with torch.no_grad():
            content_f = self.vgg(content)
            style_f = self.vgg(style)
            feat = _adaptive_instance_normalization(content_f, style_f)
            feat = feat * alpha + content_f * (1 - alpha)
            return self.decoder(feat)
