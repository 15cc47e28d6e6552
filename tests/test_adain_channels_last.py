"""The torch runtime convolves AdaIN networks in channels-last memory on the CPU, for speed: the same
numbers as the plain network (fp32 rounding), the usual contiguous arrays out, and a model that still
saves to the same file."""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import pytest
import torch

from adain_helpers import adain_net, painting, photo, save_adain
from painterly.adain import AdaINNet, fusable, run_fused
from painterly.config import ApplyConfig
from painterly.modelfile import load_model, save_model
from painterly.runtimes import StyleInput, open_backend

pytestmark = pytest.mark.usefixtures("one_thread")


def nchw(image: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(image.transpose(2, 0, 1)[None])


@pytest.mark.parametrize("arch", ["light", "standard"])
def test_channels_last_computes_what_the_plain_network_does(arch):
    plain = adain_net(arch)
    fast = copy.deepcopy(plain).use_channels_last()
    assert fast.encoder.features[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert fast.decoder[1].weight.is_contiguous(memory_format=torch.channels_last)
    image = torch.from_numpy(np.concatenate([nchw(photo(32, 40)), nchw(photo(32, 40, seed=2))]))
    art = torch.from_numpy(nchw(painting(32, 40, (0.9, 0.2, 0.1))))
    masks = torch.zeros(1, 2, 32, 40)
    masks[:, 0, :, :20], masks[:, 1, :, 20:] = 1, 1
    with torch.inference_mode():
        mean, std = plain.statistics(art)
        fast_mean, fast_std = fast.statistics(art)
        torch.testing.assert_close(fast_mean, mean, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(fast_std, std, rtol=1e-5, atol=1e-5)
        expected, got = plain.stylize(image, mean, std, 0.7), fast.stylize(image, mean, std, 0.7)
        regions = [(mean, std), None]
        expected_regions = plain.stylize_regions(image[:1], regions, masks)
        got_regions = fast.stylize_regions(image[:1], regions, masks)
    assert got.is_contiguous() and got_regions.is_contiguous()  # callers get NCHW, as before
    assert float((expected - expected.mean()).abs().max()) > 1e-3  # the output depends on the input at all
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(got_regions, expected_regions, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("layout", ["torchvision", "adain"])  # zero padding in the encoder, and reflection
def test_fused_convolutions_and_the_skipped_blend_change_no_number(layout):
    """Channels-last inference runs each conv + ReLU as one oneDNN call (`run_fused`): what the modules one by
    one give, to fp32 rounding (oneDNN may pick another kernel for the call); and it skips the blend at alpha 1,
    bitwise the same."""
    plain = adain_net("light")
    if layout == "adain":
        arch = dataclasses.replace(plain.architecture, encoder="adain")
        state = {**plain.encoder.features.state_dict(), "weight": torch.eye(3).reshape(3, 3, 1, 1) * 4,
                 "bias": torch.full((3,), -2.0)}
        front = {"front.weight": state.pop("weight"), "front.bias": state.pop("bias")}
        plain = AdaINNet(arch, encoder_state={**{f"features.{k}": v for k, v in state.items()}, **front}).eval()
    fast = copy.deepcopy(plain).use_channels_last()
    image = torch.from_numpy(nchw(photo(32, 40)))
    with torch.inference_mode():
        assert fusable(image)  # this torch has oneDNN's fused conv: the fast path is the one tested
        front = fast.encoder.front(image) if layout == "adain" else (image - fast.encoder.mean) / fast.encoder.std
        x = front.contiguous(memory_format=torch.channels_last)
        encoded = run_fused(fast.encoder.features, x)
        torch.testing.assert_close(encoded, run_fused(fast.encoder.features, x, fuse=False), rtol=1e-5, atol=1e-5)
        assert float(encoded.abs().max()) > 1  # features of size, not a vanishing signal
        torch.testing.assert_close(fast.decode(encoded), fast.decoder[-1](fast.decoder[:-1](encoded)),
                                   rtol=1e-5, atol=1e-6)
        mean, std = fast.statistics(torch.from_numpy(nchw(painting(32, 40, (0.9, 0.2, 0.1)))))
        styled = fast.stylize(image, mean, std)
        assert torch.equal(styled, fast.forward(image, mean, std, torch.tensor([1.0]))[0])
        torch.testing.assert_close(styled, plain.stylize(image, mean, std), rtol=1e-4, atol=1e-5)
    assert float(styled.std()) > 1e-3


def test_the_torch_runtime_uses_channels_last_and_gives_the_plain_networks_output(tmp_path):
    path = save_adain(tmp_path / "light.safetensors")
    backend = open_backend(path, ApplyConfig(backend="torch", device="cpu", precision="fp32"))
    assert backend._adain().channels_last  # type: ignore[attr-defined]
    batch, art = nchw(photo(32, 32)), nchw(painting(32, 32, (0.1, 0.2, 0.8)))
    mean, std = backend.statistics(art)
    styled = backend.run(batch, StyleInput(mean, std))
    plain, _ = load_model(path)
    with torch.inference_mode():
        expected = plain.stylize(torch.from_numpy(batch), torch.from_numpy(mean), torch.from_numpy(std)).numpy()
    assert styled.flags.c_contiguous and styled.shape == batch.shape
    np.testing.assert_allclose(styled, expected, rtol=1e-4, atol=1e-5)
    # The runtime's network, weights in channels-last memory, saves the same tensors as the file it came from.
    again, _ = load_model(save_model(backend._adain(), tmp_path / "again.safetensors"))  # type: ignore[attr-defined]
    for key, value in plain.state_dict().items():
        assert torch.equal(again.state_dict()[key], value), key
