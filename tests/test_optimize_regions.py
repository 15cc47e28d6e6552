"""Gatys with a mask (Gatys et al. 2017's guided Gram matrices) on tiny images with random VGG weights."""

import json

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from painterly.cli import app
from painterly.config import StylizeConfig
from painterly.errors import ImageError, UsageError
from painterly.events import StepEvent
from painterly.features import build_perceptual_loss
from painterly.images import read_settings
from painterly.losses import gram_matrix
from painterly.optimize import stylize
from painterly.pipeline import stylize_files
from painterly.provenance import file_sha256
from painterly.regions import mask_from_labels, read_mask

LAYERS = ("relu1_1", "relu2_1", "relu3_1")  # shallow: cheap, and enough to tell two paintings apart
BASE = dict(size=32, vgg_weights="random", device="cpu", multiscale="off", style_layers=LAYERS,
            content_layers=("relu3_1",))


def _image(seed, h=32, w=32, tint=(1.0, 1.0, 1.0)):
    g = torch.Generator().manual_seed(seed)
    smooth = torch.nn.functional.interpolate(torch.rand(1, 3, h // 8, w // 8, generator=g), size=(h, w),
                                             mode="bilinear", align_corners=False)
    return ((smooth * 0.6 + torch.rand(1, 3, h, w, generator=g) * 0.4) * torch.tensor(tint).view(1, 3, 1, 1))


PHOTO = _image(0)
RED = _image(1, tint=(1.0, 0.15, 0.1))
BLUE = _image(2, tint=(0.1, 0.3, 1.0))
HALVES = np.zeros((32, 32), dtype=np.uint8)
HALVES[:, 16:] = 1  # region 0 the left half, region 1 the right


def _half_distance(encoder, image, painting, half):
    """Σ_l ‖G_l(half of image) − G_l(painting)‖² / ‖G_l(painting)‖², Grams per position: the paper's
    guided Gram for a hard mask (features of that half only), computed independently of losses.py."""
    total = 0.0
    with torch.no_grad():
        feats, target = encoder(image), encoder(painting)
        for layer in LAYERS:
            f = feats[layer]
            width = f.shape[-1] // 2
            part = f[..., :width] if half == 0 else f[..., width:]
            gram = gram_matrix(part) / (part.shape[-2] * part.shape[-1])
            wanted = gram_matrix(target[layer]) / (target[layer].shape[-2] * target[layer].shape[-1])
            total += float((gram - wanted).pow(2).sum() / wanted.pow(2).sum())
    return total


def test_each_region_moves_toward_its_own_painting(one_thread):
    config = StylizeConfig(**BASE, steps=10, mask_feather=0)
    out = stylize(PHOTO, [RED, BLUE], config, mask=mask_from_labels(HALVES))
    encoder = build_perceptual_loss(config, torch.device("cpu")).encoder
    for half, own, other in ((0, RED, BLUE), (1, BLUE, RED)):
        before = _half_distance(encoder, PHOTO, own, half)
        after = _half_distance(encoder, out, own, half)
        assert after < 0.75 * before, (half, before, after)  # seen: 2.0 -> 1.1 (left), 2.0 -> 0.8 (right)
        assert after < 0.75 * _half_distance(encoder, out, other, half)  # and nearer its own than the other (1.9)
    assert out[0, 0, :, :12].mean() > out[0, 0, :, 20:].mean() + 0.05  # the left is redder (seen: 0.46, 0.32)
    assert out[0, 2, :, 20:].mean() > out[0, 2, :, :12].mean() + 0.05  # the right bluer (0.53, 0.31)


def test_a_kept_region_is_the_photo(one_thread):
    mask = mask_from_labels(HALVES)
    config = StylizeConfig(**BASE, steps=3, mask_feather=4)
    out = stylize(PHOTO, [RED, None], config, mask=mask)
    kept = torch.from_numpy(mask.weights(32, 32, 4)[1] == 1)
    painted = torch.from_numpy(mask.weights(32, 32, 4)[0] == 1)
    assert kept.sum() > 300 and painted.sum() > 300
    assert torch.allclose(out[0][:, kept], PHOTO.clamp(0, 1)[0][:, kept], atol=1e-6)
    assert (out[0][:, painted] - PHOTO[0][:, painted]).abs().mean() > 0.005  # seen: 0.012 after 3 steps


@pytest.mark.parametrize("normalisation", ["target", "paper"])
def test_guided_style_term_is_the_papers_for_hard_masks(normalisation, one_thread):
    config = StylizeConfig(**BASE, loss_normalisation=normalisation)
    loss = build_perceptual_loss(config, torch.device("cpu"))
    loss.set_content(PHOTO)
    loss.set_style([RED])
    plain = loss(BLUE).style
    loss.set_region_styles([RED], torch.ones(1, 1, 32, 32))  # one region over everything: no mask at all
    assert torch.allclose(loss(BLUE).style, plain, rtol=1e-5)
    loss.set_region_styles([RED, None], torch.from_numpy(mask_from_labels(HALVES).weights(32, 32, 0))[None])
    expected = 0.0  # the left half's features alone against RED's Gram, the right half kept (no term)
    with torch.no_grad():
        feats, target = loss.encoder(BLUE), loss.encoder(RED)
        for layer, weight in config.layer_weights().items():
            left = feats[layer][..., : feats[layer].shape[-1] // 2]
            channels, positions = left.shape[1], left.shape[-2] * left.shape[-1]
            wanted = gram_matrix(target[layer]) / (target[layer].shape[-2] * target[layer].shape[-1])
            if normalisation == "paper":  # Σ(G − A)² / (4 N² M²), M the region's positions
                error = (gram_matrix(left) - wanted * positions).pow(2).sum() / (4 * channels**2 * positions**2)
            else:  # per position, over the target's mean square, weighted by the region's share (1/2)
                error = 0.5 * (gram_matrix(left) / positions - wanted).pow(2).mean() / wanted.pow(2).mean()
            expected += weight * float(error)
    assert float(loss(BLUE).style) == pytest.approx(config.style_weight * expected, rel=1e-4)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("regions")
    photo = np.zeros((24, 32, 3), dtype=np.uint8)
    photo[:12], photo[12:] = (90, 150, 235), (50, 140, 60)  # a sky over a field
    photo = np.clip(photo + np.random.default_rng(0).normal(0, 10, photo.shape), 0, 255).astype(np.uint8)
    Image.fromarray(photo).save(folder / "photo.png")
    Image.fromarray((RED[0].permute(1, 2, 0).numpy() * 255).astype(np.uint8)).save(folder / "red.png")
    three = np.zeros((24, 32, 3), dtype=np.uint8)
    three[:, 10:], three[:, 20:] = (255, 0, 0), (0, 0, 255)
    Image.fromarray(three).save(folder / "three.png")
    return folder


def test_cli_paints_an_auto_mask_and_writes_it_out(files, one_thread):
    out = files / "out.png"
    result = CliRunner().invoke(app, [
        "stylize", str(files / "photo.png"), str(files / "red.png"), "keep", "--mask", "auto:2", "-o", str(out),
        "--size", "32", "--steps", "2", "--style-layers", "relu1_1,relu2_1", "--content-layers", "relu2_1",
        "--vgg-weights", "random", "--device", "cpu", "--mask-feather", "2", "--mask-seed", "1", "--json", "--quiet"])
    assert result.exit_code == 0, result.output
    mask_file = files / "out.mask.png"
    mask = read_mask(mask_file)
    assert mask.count == 2 and mask.labels[0, 0] == 0 and mask.labels[-1, 0] == 1  # the sky, then the field
    settings = read_settings(out)
    assert settings["mask"] == {**mask.source, "auto": 2, "seed": 1, "regions": ["#e6194b", "#3cb44b"],
                                "feather": 2}
    assert settings["styles"][1] == "keep" and settings["config"]["mask_feather"] == 2
    assert settings["config"]["mask_seed"] == 1 and settings["config"]["seed"] == StylizeConfig().seed
    assert json.loads(result.stdout)["mask"]["file"] == str(mask_file)
    photo = np.asarray(Image.open(files / "photo.png")).astype(int)
    assert np.abs(np.asarray(Image.open(out)).astype(int)[-3:] - photo[-3:]).max() <= 1  # the field is kept


@pytest.mark.parametrize(("args", "words"), [
    (["red.png", "--mask", "auto:2"], "the auto:2 mask has 2 regions and 1 styles were given"),
    (["red.png", "keep", "--mask", "three.png"], "three.png has 3 regions and 2 styles were given"),
    (["red.png", "keep"], "'keep' style keeps the photo in a --mask region"),
    (["red.png", "keep", "--mask", "auto:2", "--style-blend", "1,1"], "--style-blend"),
    (["keep", "keep", "--mask", "auto:2"], "nothing to paint"),
    (["red.png", "--mask", "auto:x"], "auto:K"),
    (["red.png", "red.png", "--mask", "missing.png"], "missing.png: no such file"),
])
def test_mask_mistakes_are_one_line_and_write_nothing(files, args, words):
    before = sorted(files.iterdir())
    result = CliRunner().invoke(app, ["stylize", str(files / "photo.png"),
                                      *(str(files / a) if a.endswith(".png") else a for a in args),
                                      "-o", str(files / "bad.png"), "--vgg-weights", "random", "--device", "cpu"])
    assert result.exit_code in (1, 2) and words in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1
    assert sorted(files.iterdir()) == before


def test_a_failed_run_leaves_no_auto_mask_behind(files):
    """The mask takes its place with the output: a run that fails leaves none, or an earlier run's as it was,
    and no temporary."""

    class Broken(Exception):
        pass

    def fail(event):
        if isinstance(event, StepEvent):
            raise Broken("the run fails")

    with pytest.raises(Broken):
        stylize_files(files / "photo.png", [files / "red.png", "keep"], files / "failed.png",
                      StylizeConfig(**{**BASE, "style_layers": ("relu1_1",), "content_layers": ("relu1_1",)},
                                    steps=2), mask="auto:2", callback=fail)  # one layer: cheap
    assert not (files / "failed.png").exists() and not (files / "failed.mask.png").exists()
    config = StylizeConfig(**{**BASE, "style_layers": ("relu1_1",), "content_layers": ("relu1_1",)}, steps=1)
    stylize_files(files / "photo.png", [files / "red.png", "keep"], files / "kept.png", config, mask="auto:2")
    before = {name: file_sha256(files / name) for name in ("kept.png", "kept.mask.png")}
    listed = sorted(files.iterdir())
    with pytest.raises(Broken):  # another run onto the same output, with its own mask, fails
        stylize_files(files / "photo.png", [files / "red.png", "keep", "keep"], files / "kept.png",
                      config.replace(mask_seed=5), mask="auto:3", callback=fail)
    assert {name: file_sha256(files / name) for name in before} == before  # the earlier run's mask stands
    assert sorted(files.iterdir()) == listed
    with pytest.raises(UsageError, match="mask_seed must be a whole number, 0 or more"):
        StylizeConfig(mask_seed=-1)


def test_an_auto_mask_never_overwrites_an_input_and_videos_refuse_masks(files):
    painting = files / "clash.mask.png"
    painting.write_bytes((files / "red.png").read_bytes())
    config = StylizeConfig(**BASE, steps=1)
    with pytest.raises(ImageError, match="refusing to overwrite an input"):
        stylize_files(files / "photo.png", [painting, "keep"], files / "clash.png", config, mask="auto:2")
    assert painting.read_bytes() == (files / "red.png").read_bytes() and not (files / "clash.png").exists()
    with pytest.raises(UsageError, match="video"):
        stylize_files(files / "clip.mp4", [files / "red.png"], files / "clip-out.mp4", config, mask="auto:2")
