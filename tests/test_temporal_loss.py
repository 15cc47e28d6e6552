"""The temporal loss for Johnson networks (temporal_loss.py): the warp, the loss, and training with it on
tiny photos with random VGG weights (exact resume, the term logged, held-out crops steadier)."""

import math

import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from painterly import modelfile
from painterly.cli import app
from painterly.config import TrainConfig
from painterly.errors import UsageError
from painterly.temporal_loss import (
    MAX_DEGREES,
    MAX_SHIFT,
    MAX_ZOOM,
    NOISE_STD,
    CameraMotion,
    motion_matrices,
    temporal_loss,
)
from painterly.training import Trainer
from painterly.transformer import TransformerNet
from test_training import _assert_same_weights, _cli_train_here, _config, _metrics, _train, _write_photos

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py: one torch thread for every test here


@pytest.fixture
def photos(tmp_path):
    return _write_photos(tmp_path)


def _smooth(generator, count, side=32):
    """Photo-like crops: smooth colour fields, not noise."""
    coarse = torch.rand(count, 3, 5, 5, generator=generator)
    return nn.functional.interpolate(coarse, size=(side, side), mode="bicubic", align_corners=False).clamp(0, 1)


def _pointwise_net():
    """A network of 1×1 convolutions: it commutes with any whole-pixel shift by construction."""
    torch.manual_seed(3)
    return nn.Sequential(nn.Conv2d(3, 8, 1), nn.ReLU(), nn.Conv2d(8, 3, 1), nn.Sigmoid())


def test_an_identity_motion_costs_nothing_and_a_real_one_does():
    torch.manual_seed(0)
    net = TransformerNet("light").eval()
    photos = _smooth(torch.Generator().manual_seed(0), 2)
    with torch.no_grad():
        still = temporal_loss(net, photos, CameraMotion.shift(photos, 0, 0))
        moved = temporal_loss(net, photos, CameraMotion.random(photos, generator=torch.Generator().manual_seed(1)))
        clean = temporal_loss(net, photos, CameraMotion.random(photos, generator=torch.Generator().manual_seed(1),
                                                              noise_std=0))
    assert still < 1e-10
    assert moved > 1e-4 and clean > 1e-4 and moved > clean  # the noise adds to it


def test_the_warp_moves_by_whole_pixels_and_rotates_without_stretching():
    photos = torch.rand(2, 3, 32, 40, generator=torch.Generator().manual_seed(0))
    motion = CameraMotion.shift(photos, 3, -2)  # frame pixel (x, y) shows the photo at (x + 3, y − 2)
    moved = motion.move(photos)
    assert torch.allclose(moved[..., 2:, :37], photos[..., :30, 3:], atol=1e-5)
    valid = motion.valid(32, 40)
    assert valid.shape == (2, 1, 32, 40)
    assert valid[..., 2:, :37].all() and valid.sum() == 2 * 30 * 37  # exactly the pixels that stayed inside
    # A quarter turn about the centre of a 40×32 image turns its middle 32×32 square into itself, turned:
    # wrong only if the aspect ratio stretched the rotation.
    quarter_turn = motion_matrices(torch.zeros(2, 2), torch.full((2,), 90.0), torch.ones(2), 32, 40)
    turned = CameraMotion(quarter_turn).move(photos)
    assert torch.allclose(turned[..., 4:36], torch.rot90(photos[..., 4:36], 1, dims=(2, 3)), atol=1e-5)


def test_a_network_of_1x1_convolutions_has_no_temporal_loss_on_whole_pixel_shifts():
    net, photos = _pointwise_net(), torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        for dx, dy in [(1, 0), (3, -2), (-5, 4), (0, -7)]:
            assert temporal_loss(net, photos, CameraMotion.shift(photos, dx, dy)) < 1e-12, (dx, dy)
        # Between pixels the network's nonlinearity and the bilinear sampling no longer commute.
        assert temporal_loss(net, photos, CameraMotion.shift(photos, 0.5, 0.5)) > 1e-6


def test_random_motions_stay_within_their_limits_and_come_from_their_generator():
    photos = torch.zeros(256, 3, 32, 32)
    motion = CameraMotion.random(photos, generator=torch.Generator().manual_seed(4))
    linear, offset = motion.theta[:, :, :2], motion.theta[:, :, 2]
    zoom = linear.det().sqrt()  # a square image: zoom × a rotation
    degrees = torch.rad2deg(torch.atan2(linear[:, 1, 0], linear[:, 0, 0]))
    shift = offset * 16  # normalised to pixels: half the side
    assert (shift.abs() <= MAX_SHIFT * 32 + 1e-4).all() and shift.abs().max() > 0.8 * MAX_SHIFT * 32
    assert (degrees.abs() <= MAX_DEGREES + 1e-3).all() and degrees.abs().max() > 0.8 * MAX_DEGREES
    assert ((zoom - 1).abs() <= MAX_ZOOM + 1e-5).all() and (zoom - 1).abs().max() > 0.8 * MAX_ZOOM
    assert motion.noise is not None and motion.noise.std() == pytest.approx(NOISE_STD, rel=0.05)
    again = CameraMotion.random(photos, generator=torch.Generator().manual_seed(4))
    assert torch.equal(again.theta, motion.theta) and torch.equal(again.noise, motion.noise)
    # Without a generator: torch's global CPU one, which a training checkpoint stores and restores.
    torch.manual_seed(9)
    first = CameraMotion.random(photos[:2])
    torch.manual_seed(9)
    assert torch.equal(CameraMotion.random(photos[:2]).theta, first.theta)


def test_training_with_a_temporal_weight_logs_the_term_and_resumes_exactly(photos, tmp_path):
    straight, resumed = tmp_path / "straight.safetensors", tmp_path / "resumed.safetensors"
    _train(photos, straight, steps=8, checkpoint_every=2, temporal_weight=50.0)
    _train(photos, resumed, steps=4, checkpoint_every=2, temporal_weight=50.0)
    _train(photos, resumed, resume=True, steps=8, checkpoint_every=2, temporal_weight=50.0)

    _assert_same_weights(straight, resumed)
    records = _metrics(straight)
    assert [r["losses"] for r in _metrics(resumed)] == [r["losses"] for r in records]  # the motions redrawn alike
    for record in records:
        losses = record["losses"]
        assert losses["temporal"] > 0
        parts = losses["content"] + losses["style"] + losses["tv"] + losses["temporal"]
        assert losses["total"] == pytest.approx(parts, rel=1e-5)
    assert modelfile.read_metadata(straight)["training"]["temporal_weight"] == 50.0
    # Without the weight, the log is as it always was.
    _train(photos, tmp_path / "plain.safetensors", steps=1)
    assert set(_metrics(tmp_path / "plain.safetensors")[0]["losses"]) == {"total", "content", "style", "tv"}


def test_a_warm_up_trains_its_steps_as_a_run_without_the_term_then_adds_it(photos, tmp_path):
    warm, plain = tmp_path / "warm.safetensors", tmp_path / "plain.safetensors"
    _train(photos, warm, steps=2, checkpoint_every=2, temporal_weight=50.0, temporal_warmup=0.5)
    _train(photos, plain, steps=1, checkpoint_every=1)

    first, second = (record["losses"] for record in _metrics(warm))
    assert first["temporal"] == 0.0 and second["temporal"] > 0
    # The warm-up's step is the plain run's to the bit: the same crops, and no motion drawn from the generator.
    assert {k: v for k, v in first.items() if k != "temporal"} == _metrics(plain)[0]["losses"]
    assert modelfile.read_metadata(warm)["training"]["temporal_warmup"] == 0.5


@pytest.mark.parametrize("share", [-0.1, 1.0, math.nan, True, "0.5"])
def test_a_temporal_warm_up_must_be_a_share_of_the_steps_below_1(share, photos):
    with pytest.raises(UsageError, match=f"temporal_warmup must be a share of the steps in \\[0, 1\\), got {share!r}"):
        _config(photos, temporal_weight=1.0, temporal_warmup=share)


def _temporal_after_training(weight, steps, batches, style, held, motion):
    config = TrainConfig(data=".", size=32, batch_size=2, steps=steps, lr=1e-3, vgg_weights="random", arch="light",
                         device="cpu", content_layers=("relu2_2",), style_layers=("relu1_2", "relu2_2"),
                         temporal_weight=weight)
    trainer = Trainer(config, style)
    for step in range(steps):
        trainer.train_step(batches[step])
    with torch.no_grad():
        return float(temporal_loss(trainer.model, held, motion))


def test_a_large_temporal_weight_steadies_the_network_on_held_out_moved_crops():
    generator = torch.Generator().manual_seed(1)
    style = torch.rand(1, 3, 32, 32, generator=generator)
    batches = [_smooth(generator, 2) for _ in range(10)]
    held = _smooth(generator, 4)  # crops no step trained on, under motions no step drew
    motion = CameraMotion.random(held, generator=torch.Generator().manual_seed(2))
    without = _temporal_after_training(0.0, 10, batches, style, held, motion)
    steadied = _temporal_after_training(1000.0, 10, batches, style, held, motion)
    assert steadied < 0.5 * without


def test_the_cli_option_reaches_the_model_and_an_adain_run_refuses_it_in_one_line(photos, tmp_path):
    output = tmp_path / "cli.safetensors"
    result = _cli_train_here(photos, output, "--steps", "2", "--checkpoint-every", "2", "--temporal-weight", "5")
    assert result.exit_code == 0, result.stderr
    assert modelfile.read_metadata(output)["training"]["temporal_weight"] == 5.0
    assert all(record["losses"]["temporal"] > 0 for record in _metrics(output))

    adain = ["train", str(photos.parent), "--data", str(photos), "-o", str(tmp_path / "adain.safetensors"),
             "--arch", "adain", "--temporal-weight", "1"]
    refused = CliRunner().invoke(app, adain)
    assert refused.exit_code == 2
    assert refused.stderr == ("painterly: error: --temporal-weight is for a Johnson network (--arch standard or "
                              "light); --arch adain trains a decoder for any painting without it: leave it at 0\n")
    assert not list(tmp_path.glob("adain*"))
    assert TrainConfig(arch="adain").temporal_weight == 0.0  # the default suits every kind


@pytest.mark.parametrize("weight", [-1.0, math.nan, math.inf, True, "5"])
def test_a_temporal_weight_must_be_a_non_negative_number(weight, photos):
    with pytest.raises(UsageError, match=f"temporal_weight must be a non-negative number, got {weight!r}"):
        _config(photos, temporal_weight=weight)
