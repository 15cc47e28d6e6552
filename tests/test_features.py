"""VGGFeatures: names, truncation, normalisation, freezing."""

import pytest
import torch

from painterly.errors import UsageError
from painterly.features import VGGFeatures, layer_names


@pytest.mark.parametrize("arch", ["vgg16", "vgg19"])
def test_layer_names_follow_torchvision_indices(arch):
    import torchvision  # ~3 CPU-s: here, not at every worker's collection

    with torch.device("meta"):  # the modules only: no weights made and initialised (the classifier's 120 M)
        reference = getattr(torchvision.models, arch)(weights=None).features
    names = layer_names(arch)
    assert len(names) == len(reference)
    for name, module in zip(names, reference):
        kind = {"conv": torch.nn.Conv2d, "relu": torch.nn.ReLU, "pool": torch.nn.MaxPool2d}[name.rstrip("0123456789_")]
        assert isinstance(module, kind), name
    assert names[21] == "conv4_2" if arch == "vgg19" else names[19] == "conv4_2"


def test_truncated_after_deepest_layer_and_frozen():
    enc = VGGFeatures(["relu2_1", "conv1_1"], weights="random")
    assert len(enc.features) == layer_names("vgg19").index("relu2_1") + 1
    assert all(not p.requires_grad for p in enc.parameters())
    enc.train()
    assert not enc.training
    out = enc(torch.rand(1, 3, 32, 32))
    assert set(out) == {"relu2_1", "conv1_1"}
    assert out["relu2_1"].shape == (1, 128, 16, 16)
    assert (out["conv1_1"] < 0).any(), "conv output must not be clobbered by an in-place ReLU"


def test_a_subset_of_layers_stops_the_network_early():
    enc = VGGFeatures(["relu1_2", "relu4_3"], arch="vgg16", weights="random")
    image = torch.rand(2, 3, 32, 32)
    ran = []
    hooks = [module.register_forward_hook(lambda *_: ran.append(1)) for module in enc.features]
    subset = enc(image, ["relu1_2"])
    assert len(ran) == layer_names("vgg16").index("relu1_2") + 1  # nothing past relu1_2 ran
    for hook in hooks:
        hook.remove()
    assert set(subset) == {"relu1_2"}
    torch.testing.assert_close(subset["relu1_2"], enc(image)["relu1_2"])
    with pytest.raises(ValueError, match="relu3_3"):
        enc(image, ["relu3_3"])


def test_normalisation_is_inside():
    enc = VGGFeatures(["conv1_1"], weights="random")
    x = torch.rand(1, 3, 8, 8)
    normalised = (x - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)) / torch.tensor(
        [0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    assert torch.allclose(enc(x)["conv1_1"], enc.features[0](normalised), atol=1e-6)


def test_mistyped_layer_gets_a_suggestion():
    with pytest.raises(UsageError, match="did you mean relu4_2"):
        VGGFeatures(["relu4_22"], weights="random")


def test_vgg16_has_no_conv3_4():
    with pytest.raises(UsageError, match="conv3_4"):
        VGGFeatures(["conv3_4"], arch="vgg16", weights="random")


def test_average_pooling_and_min_side():
    enc = VGGFeatures(["relu5_1"], weights="random", pooling="avg")
    assert isinstance(enc.features[4], torch.nn.AvgPool2d)
    assert enc.min_side == 16
    assert enc(torch.rand(1, 3, 16, 16))["relu5_1"].shape == (1, 512, 1, 1)


def test_same_seed_same_random_weights():
    a = VGGFeatures(["relu2_1"], weights="random", seed=3)
    b = VGGFeatures(["relu2_1"], weights="random", seed=3)
    c = VGGFeatures(["relu2_1"], weights="random", seed=4)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert not torch.equal(a.features[0].weight, c.features[0].weight)


def test_a_bad_choice_gets_the_one_message_the_config_gives():
    from painterly.config import StylizeConfig

    for option, encoder_option, value in (("pooling", "pooling", "min"), ("vgg", "arch", "vgg11")):
        with pytest.raises(UsageError) as from_config:
            StylizeConfig(**{option: value})
        with pytest.raises(UsageError) as from_encoder:
            VGGFeatures(["relu1_1"], weights="random", **{encoder_option: value})
        assert str(from_encoder.value) == str(from_config.value) == f"{option} must be one of " + {
            "pooling": "max, avg", "vgg": "vgg16, vgg19"}[option] + f"; got {value!r}"


def test_one_builder_gives_both_methods_their_encoder_loss_and_warning(tmp_path, unchosen_random_weights):
    from painterly.config import StylizeConfig, TrainConfig
    from painterly.events import MessageEvent
    from painterly.features import build_perceptual_loss
    from painterly.weights import RANDOM_WARNING, random_state_dict

    cpu = torch.device("cpu")
    events = []
    gatys = build_perceptual_loss(StylizeConfig(vgg_weights=None, pooling="avg"), cpu, channels_last=True,
                                  callback=events.append)
    assert events == [MessageEvent(RANDOM_WARNING, "warning")]
    assert gatys.encoder.layers == ("relu4_2", "relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
    assert gatys.content_layers == ("relu4_2",)
    assert gatys.style_layers == {name: 0.2 for name in gatys.encoder.layers[1:]}
    assert isinstance(gatys.encoder.features[4], torch.nn.AvgPool2d) and gatys.encoder.channels_last
    settings = (gatys.content_weight, gatys.style_weight, gatys.tv_weight, gatys.normalisation)
    assert settings == (1.0, 100.0, 1.0, "target")

    # No content target at content weight 0 (texture synthesis), and no warning for weights from a file.
    weights = tmp_path / "vgg16.pth"
    torch.save(random_state_dict("vgg16"), weights)
    events.clear()
    johnson = build_perceptual_loss(TrainConfig(vgg_weights=str(weights), content_weight=0, loss_normalisation="paper"),
                                    cpu, autocast=torch.bfloat16, callback=events.append)
    assert events == []
    assert johnson.encoder.arch == "vgg16" and johnson.encoder.autocast == torch.bfloat16
    assert johnson.content_layers == () and johnson.normalisation == "paper"
    assert johnson.content_features(torch.rand(1, 3, 16, 16)) == {}
