"""The AdaIN engine's core: the operation, the networks, the published weights and the model file.

The published layout is rebuilt independently (tests/adain_helpers.py), as plain nn.Sequential networks in the
order pytorch-AdaIN's net.py lists its modules, with a style transfer written the way its
test.py does it; painterly's import of state dicts in that key layout must give the same output.
"""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

import cli_processes
from adain_helpers import reference_decoder, write_published
from painterly import weights
from painterly.adain import (
    ADAIN_ARCHITECTURES,
    AdaINArchitecture,
    AdaINNet,
    adaptive_instance_norm,
    build_decoder,
    encoder_shapes,
    encoder_state_from_vgg,
    import_published,
    mean_std,
)
from painterly.errors import ModelFileError
from painterly.modelfile import ADAIN_FORMAT, convert_model, is_arbitrary, load_model, read_metadata, save_model
from painterly.style_stats import StyleStatistics, blend_statistics

# --- a plain reference of the test's own ---------------------------------------------------------

def reference_mean_std(feat: torch.Tensor, eps: float = 1e-5) -> tuple[torch.Tensor, torch.Tensor]:
    n, c = feat.shape[:2]
    var = feat.reshape(n, c, -1).var(dim=2) + eps
    return feat.reshape(n, c, -1).mean(dim=2).reshape(n, c, 1, 1), var.sqrt().reshape(n, c, 1, 1)


def reference_transfer(vgg: nn.Module, decoder: nn.Module, content: torch.Tensor, style: torch.Tensor,
                       alpha: float = 1.0) -> torch.Tensor:
    """Encode both, renormalise the content's features to the style's statistics, mix by alpha, decode."""
    content_f, style_f = vgg(content), vgg(style)
    c_mean, c_std = reference_mean_std(content_f)
    s_mean, s_std = reference_mean_std(style_f)
    t = (content_f - c_mean) / c_std * s_std + s_mean
    return decoder(alpha * t + (1 - alpha) * content_f)


@pytest.fixture(scope="module")
def published(tmp_path_factory) -> tuple[Path, Path, nn.Module, nn.Module]:
    """decoder.pth and vgg_normalised.pth written in pytorch-AdaIN's key layout (the encoder file with
    the layers past relu4_1 too, as the published one has them)."""
    return write_published(tmp_path_factory.mktemp("published"))


@functools.cache
def vgg19_to_relu4_1(seed: int) -> dict[str, torch.Tensor]:
    return weights.random_state_dict("vgg19", seed=seed, upto=9)  # conv1_1 … conv4_1


def tiny_net(name: str = "light", seed: int = 0) -> AdaINNet:
    arch = ADAIN_ARCHITECTURES[name]
    return AdaINNet(arch, encoder_state=encoder_state_from_vgg(vgg19_to_relu4_1(seed), arch))


# --- the operation --------------------------------------------------------------------------------


def test_adain_gives_the_content_the_styles_mean_and_std():
    generator = torch.Generator().manual_seed(0)
    content = torch.randn(2, 5, 6, 7, generator=generator) * 3 + 1
    style = torch.randn(2, 5, 4, 9, generator=generator) * 0.5 - 2
    style_mean, style_std = mean_std(style)
    out = adaptive_instance_norm(content, style_mean, style_std)
    out_mean, out_std = mean_std(out)
    torch.testing.assert_close(out_mean, style_mean, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out_std, style_std, atol=1e-3, rtol=1e-3)  # ε in the content's std
    ref_mean, ref_std = reference_mean_std(style)
    torch.testing.assert_close(style_mean, ref_mean)
    torch.testing.assert_close(style_std, ref_std)


def test_a_mask_takes_the_statistics_of_its_region_alone():
    generator = torch.Generator().manual_seed(1)
    features = torch.randn(1, 3, 8, 8, generator=generator)
    mask = torch.zeros(1, 1, 8, 8)
    mask[..., :3, :] = 1
    mean, std = mean_std(features, mask)
    region_mean, region_std = reference_mean_std(features[..., :3, :])
    torch.testing.assert_close(mean, region_mean, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(std, region_std, atol=1e-5, rtol=1e-5)


def test_blending_statistics_is_interpolating_the_adain_outputs():
    generator = torch.Generator().manual_seed(2)
    content = torch.randn(1, 4, 5, 5, generator=generator)
    stats = [mean_std(torch.randn(1, 4, 6, 6, generator=generator)) for _ in range(2)]
    outputs = [adaptive_instance_norm(content, m, s) for m, s in stats]
    blended = blend_statistics([StyleStatistics(m.flatten().numpy(), s.flatten().numpy()) for m, s in stats],
                               [0.7, 0.3])
    mixed = adaptive_instance_norm(content, torch.from_numpy(blended.mean).view(1, 4, 1, 1),
                                   torch.from_numpy(blended.std).view(1, 4, 1, 1))
    torch.testing.assert_close(mixed, 0.7 * outputs[0] + 0.3 * outputs[1], atol=1e-5, rtol=1e-5)
    assert [part["weight"] for part in blended.source["blend"]] == pytest.approx([0.7, 0.3])


# --- the networks ---------------------------------------------------------------------------------


def test_the_standard_decoder_is_the_published_one_module_for_module():
    ours, theirs = build_decoder(AdaINArchitecture()), reference_decoder()
    assert [type(m) for m in ours] == [type(m) for m in theirs]
    assert {k: v.shape for k, v in ours.state_dict().items()} == {k: v.shape for k, v in theirs.state_dict().items()}


@pytest.mark.parametrize(("name", "multiple", "channels"), [("standard", 8, 512), ("light", 4, 256)])
def test_the_output_has_the_photos_size_and_the_statistics_the_bottlenecks_width(name, multiple, channels):
    net = tiny_net(name)
    assert net.size_multiple == multiple
    mean, std = net.statistics(torch.rand(1, 3, 24, 40))
    assert mean.shape == std.shape == (1, channels)
    with torch.inference_mode():
        out = net.stylize(torch.rand(2, 3, 3 * multiple, 5 * multiple), mean, std, alpha=0.5)
    assert out.shape == (2, 3, 3 * multiple, 5 * multiple)
    assert torch.isfinite(out).all()


def test_alpha_zero_reconstructs_the_photos_features_and_the_style_matters_otherwise():
    net = tiny_net()
    photo = torch.rand(1, 3, 32, 32)
    a, b = net.statistics(torch.rand(1, 3, 32, 32) * 0.2), net.statistics(torch.rand(1, 3, 32, 32) * 0.8 + 0.2)
    with torch.inference_mode():
        plain = net.decode(net.encode(photo))
        torch.testing.assert_close(net.stylize(photo, *a, alpha=0.0), plain)
        torch.testing.assert_close(net.stylize(photo, *b, alpha=0.0), plain)
        assert (net.stylize(photo, *a) - net.stylize(photo, *b)).abs().max() > 1e-4


def test_regions_take_their_own_paintings_and_a_kept_region_the_photo():
    net = tiny_net()
    photo = torch.rand(1, 3, 32, 32)
    style = net.statistics(torch.rand(1, 3, 32, 32))
    whole = torch.ones(1, 1, 32, 32)
    with torch.inference_mode():
        torch.testing.assert_close(net.stylize_regions(photo, [style], whole), net.stylize(photo, *style),
                                   atol=1e-5, rtol=1e-4)
        kept = net.stylize_regions(photo, [None], whole)
        torch.testing.assert_close(kept, net.decode(net.encode(photo)))
    with pytest.raises(ValueError, match="2 mask regions for 1 styles"):
        net.stylize_regions(photo, [style], torch.ones(1, 2, 32, 32) / 2)


def test_the_encoder_stays_frozen_and_in_eval_mode_while_the_decoder_trains():
    net = tiny_net().train()
    assert net.decoder.training and not net.encoder.training
    assert not any(p.requires_grad for p in net.encoder.parameters())
    assert all(p.requires_grad for p in net.decoder.parameters())


def test_the_encoder_is_the_torchvision_vgg19_prefix_the_other_engines_use():
    state = vgg19_to_relu4_1(3)
    arch = ADAIN_ARCHITECTURES["standard"]
    net = AdaINNet(arch, encoder_state=encoder_state_from_vgg(state, arch))
    for key, value in net.encoder.state_dict().items():
        assert torch.equal(value, state[key])
    assert set(net.encoder.state_dict()) == set(encoder_shapes(arch))


# --- the published weights ------------------------------------------------------------------------


def test_the_published_weights_give_the_reference_implementations_output(published, tmp_path):
    decoder_path, encoder_path, vgg, decoder = published
    model = import_published(decoder_path, encoder_path)
    generator = torch.Generator().manual_seed(4)
    photo, painting = torch.rand(1, 3, 48, 40, generator=generator), torch.rand(1, 3, 36, 52, generator=generator)
    with torch.inference_mode():
        expected = reference_transfer(vgg, decoder, photo, painting, alpha=0.7)
        ours = model.stylize(photo, *model.statistics(painting), alpha=0.7)
    assert expected.abs().mean() > 1e-3  # the reference paints something
    torch.testing.assert_close(ours, expected, atol=1e-5, rtol=1e-4)

    # Converted to one painterly model file, it loads as the same model, with its provenance.
    path = convert_model(decoder_path, tmp_path / "adain.safetensors", encoder=encoder_path)
    loaded, metadata = load_model(path)
    assert isinstance(loaded, AdaINNet) and is_arbitrary(metadata)
    assert metadata["architecture"] == {"bottleneck": "relu4_1", "width": 1, "encoder": "adain"}
    files = metadata["converted_from"]["files"]
    assert [Path(part["file"]).name for part in files] == ["decoder.pth", "vgg_normalised.pth"]
    assert all(len(part["sha256"]) == 64 for part in files)
    with torch.inference_mode():
        torch.testing.assert_close(loaded.stylize(photo, *loaded.statistics(painting), alpha=0.7), expected,
                                   atol=1e-5, rtol=1e-4)


def test_odd_sizes_pool_like_the_published_encoder(published):
    decoder_path, encoder_path, vgg, _ = published
    model = import_published(decoder_path, encoder_path)
    odd = torch.rand(1, 3, 37, 29)
    with torch.inference_mode():
        torch.testing.assert_close(model.encode(odd), vgg(odd), atol=1e-5, rtol=1e-4)


def _broken(published, tmp_path: Path, change) -> tuple[Path, Path]:
    decoder_path, encoder_path, _, _ = published
    decoder, encoder = torch.load(decoder_path), torch.load(encoder_path)
    change(decoder, encoder)
    torch.save(decoder, tmp_path / "decoder.pth")
    torch.save(encoder, tmp_path / "vgg_normalised.pth")
    return tmp_path / "decoder.pth", tmp_path / "vgg_normalised.pth"


@pytest.mark.parametrize(("change", "message"), [
    (lambda d, e: e.pop("29.weight"), r"vgg_normalised.pth: not pytorch-AdaIN's vgg_normalised.pth "
                                      r"\(missing 29.weight"),
    (lambda d, e: e.update({"2.weight": torch.zeros(64, 3, 5, 5)}),
     r"vgg_normalised.pth: 2.weight has shape \(64, 3, 5, 5\), expected \(64, 3, 3, 3\)"),
    (lambda d, e: d.pop("28.bias"), r"decoder.pth: not pytorch-AdaIN's decoder.pth \(missing 28.bias\)"),
    (lambda d, e: d.update({"30.weight": torch.zeros(1)}),
     r"decoder.pth: not pytorch-AdaIN's decoder.pth \(unexpected 30"),
    (lambda d, e: d["1.weight"].fill_(float("nan")), r"decoder.pth: 1.weight holds non-finite"),
])
def test_wrong_keys_shapes_or_values_in_the_published_files_are_one_line(published, tmp_path, change, message):
    decoder, encoder = _broken(published, tmp_path, change)
    with pytest.raises(ModelFileError, match=message):
        import_published(decoder, encoder)


def test_convert_writes_nothing_for_a_bad_file_and_says_so_in_one_line(published, tmp_path):
    decoder_path, _, _, _ = published
    text = tmp_path / "vgg_normalised.pth"
    text.write_text("not a checkpoint")
    output = tmp_path / "adain.safetensors"
    result = cli_processes.run([sys.executable, "-m", "painterly", "convert", str(decoder_path), "--encoder",
                                str(text), "-o", str(output)], capture_output=True, text=True)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and str(text) in lines[0] and "Traceback" not in result.stderr
    assert not output.exists() and list(tmp_path.iterdir()) == [text]


# --- the model file -------------------------------------------------------------------------------


def test_a_model_file_round_trip_keeps_the_network_and_its_record(tmp_path):
    net = tiny_net(seed=5).eval()
    path = save_model(net, tmp_path / "a.safetensors", style={"paintings": 3}, training={"lr": 1e-4}, steps=7)
    loaded, metadata = load_model(path)
    assert isinstance(loaded, AdaINNet)
    assert metadata["format"] == ADAIN_FORMAT and metadata["steps"] == 7 and metadata["style"] == {"paintings": 3}
    assert read_metadata(path)["architecture"] == ADAIN_ARCHITECTURES["light"].to_dict()
    photo, painting = torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 16)
    with torch.inference_mode():
        torch.testing.assert_close(loaded.stylize(photo, *loaded.statistics(painting)),
                                   net.stylize(photo, *net.statistics(painting)))


def test_a_light_model_made_with_half_the_widths_loads_as_it_was_made(tmp_path):
    """"light" has had a quarter of the decoder's widths since session 8; files record their architecture,
    so one written with the half-width decoder still loads (and runs) as that network."""
    earlier = AdaINArchitecture(bottleneck="relu3_1", width=2)
    assert ADAIN_ARCHITECTURES["light"] != earlier
    net = AdaINNet(earlier, encoder_state=encoder_state_from_vgg(vgg19_to_relu4_1(0), earlier)).eval()
    loaded, _ = load_model(save_model(net, tmp_path / "half.safetensors"))
    assert isinstance(loaded, AdaINNet) and loaded.architecture == earlier
    photo = torch.rand(1, 3, 16, 16)
    with torch.inference_mode():
        torch.testing.assert_close(loaded.stylize(photo, *loaded.statistics(photo)),
                                   net.stylize(photo, *net.statistics(photo)))


def _rewritten(path: Path, target: Path, *, metadata: dict | None = None, tensors=None) -> Path:
    from safetensors import safe_open

    with safe_open(path, "pt") as handle:
        meta = dict(handle.metadata())
    state = load_file(path)
    if tensors is not None:
        tensors(state)
        meta.pop("tensors_sha256")
    meta.update({key: json.dumps(value) for key, value in (metadata or {}).items()})
    save_file(state, target, metadata=meta)
    return target


@pytest.mark.parametrize(("change", "message"), [
    ({"metadata": {"architecture": {"bottleneck": "relu5_1", "width": 1, "encoder": "torchvision"}}},
     "architecture bottleneck must be one of relu4_1, relu3_1"),
    ({"metadata": {"architecture": {"bottleneck": "relu3_1", "width": 3, "encoder": "torchvision"}}},
     "architecture width must be one of 1, 2, 4, 8"),
    ({"metadata": {"architecture": {"bottleneck": "relu3_1", "width": 2, "layers": 9}}}, "unknown key 'layers'"),
    ({"metadata": {"architecture": {"bottleneck": "relu4_1", "width": 1, "encoder": "torchvision"}}},
     "not a AdaIN state dict|has shape"),
    ({"tensors": lambda state: state.pop("decoder.1.weight")}, "missing 'decoder.1.weight'"),
    ({"tensors": lambda state: state["encoder.features.0.weight"].fill_(float("inf"))}, "has infinite weights"),
])
def test_a_hostile_adain_model_file_is_refused_in_one_line(tmp_path, change, message):
    path = save_model(tiny_net(), tmp_path / "a.safetensors")
    bad = _rewritten(path, tmp_path / "bad.safetensors", **change)
    with pytest.raises(ModelFileError, match=message) as caught:
        load_model(bad)
    assert str(bad) in str(caught.value) and "\n" not in str(caught.value)


def test_flipped_bytes_in_an_adain_model_are_caught_by_the_checksum(tmp_path):
    path = save_model(tiny_net(), tmp_path / "a.safetensors")
    data = bytearray(path.read_bytes())
    data[-5] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="do not match the checksum"):
        load_model(path)
