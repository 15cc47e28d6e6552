"""Gatys stylisation on tiny images with random VGG weights."""

import pytest
import torch

from helpers import poison_loss_from
from painterly import color
from painterly.config import StylizeConfig
from painterly.errors import NumericalError, UsageError
from painterly.events import DoneEvent, MessageEvent, StepEvent, StopRequested
from painterly.optimize import stylize
from painterly.weights import RANDOM_WARNING


def _image(seed, h=48, w=64, tint=(1.0, 1.0, 1.0)):
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(1, 3, h // 8, w // 8, generator=g)
    smooth = torch.nn.functional.interpolate(base, size=(h, w), mode="bilinear", align_corners=False)
    detail = torch.rand(1, 3, h, w, generator=g) * 0.3
    return ((smooth * 0.7 + detail) * torch.tensor(tint).view(1, 3, 1, 1)).clamp(0, 1)


CONTENT = _image(0)
RED = _image(1, tint=(1.0, 0.2, 0.2))
BLUE = _image(2, tint=(0.2, 0.3, 1.0))


# VGG-19 up to relu3_1, not relu5_1: a third of the work per step, the colours and textures the tests look at.
SHALLOW = dict(content_layers=("relu3_1",), style_layers=("relu1_1", "relu2_1", "relu3_1"))
DEFAULT_LAYERS = dict(content_layers=StylizeConfig().content_layers, style_layers=StylizeConfig().style_layers)


def _config(**changes):
    base = dict(size=64, steps=12, vgg_weights="random", device="cpu", multiscale="off", **SHALLOW)
    return StylizeConfig(**{**base, **changes})


def _run(config, styles=(RED,), content=CONTENT, **options):
    events = []
    out = stylize(content, list(styles), config, callback=events.append, **options)
    return out, events


def test_stylize_lowers_the_loss_and_keeps_the_size(unchosen_random_weights):
    out, events = _run(_config(vgg_weights=None, **DEFAULT_LAYERS))  # the defaults' descent
    steps = [e for e in events if isinstance(e, StepEvent)]
    assert len(steps) == 12
    assert steps[-1].loss < 0.5 * steps[0].loss
    assert out.shape == (1, 3, 48, 64)
    assert 0 <= out.min() and out.max() <= 1
    assert any(isinstance(e, MessageEvent) and e.level == "warning" and "random" in e.text for e in events)
    done = [e for e in events if isinstance(e, DoneEvent)]
    assert len(done) == 1 and done[0].steps == 12 and done[0].weights.startswith("random")


def test_adam_lowers_the_loss_too():
    _, events = _run(_config(optimizer="adam", steps=10))  # 0.5 of the first loss by then
    steps = [e for e in events if isinstance(e, StepEvent)]
    assert steps[-1].loss < 0.8 * steps[0].loss


def test_same_seed_gives_identical_output_and_noise_init_depends_on_seed():
    a, _ = _run(_config(init="noise", seed=5, steps=4))
    b, _ = _run(_config(init="noise", seed=5, steps=4))
    c, _ = _run(_config(init="noise", seed=6, steps=4))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_multiscale_runs_coarse_to_fine():
    config = _config(size=96, min_scale=48, multiscale="on", steps=3)
    assert config.scales() == [48, 96]
    out, events = _run(config)
    sizes = [(e.scale, e.size) for e in events if isinstance(e, StepEvent)]
    assert sizes[0] == (1, (36, 48)) and sizes[-1] == (2, (72, 96))
    assert out.shape == (1, 3, 72, 96)


def test_coarse_scales_take_fewer_steps():
    config = _config(size=96, min_scale=24, multiscale="on", steps=6)
    assert [config.steps_at(scale, 3) for scale in (1, 2, 3)] == [2, 2, 6]  # a third by default
    _, events = _run(config.replace(coarse_steps=1))
    steps = [(e.scale, e.step, e.total_steps) for e in events if isinstance(e, StepEvent)]
    assert steps == [(1, 1, 1), (2, 1, 1)] + [(3, step, 6) for step in range(1, 7)]
    with pytest.raises(UsageError, match="coarse_steps"):
        config.replace(coarse_steps=0)


def test_multiscale_auto_turns_on_above_threshold():
    assert StylizeConfig(size=1024).scales() == [256, 512, 1024]
    assert StylizeConfig(size=512).scales() == [512]


def test_style_blend_moves_the_colours_towards_the_heavier_style():
    config = _config(steps=8, content_weight=0.05, style_weight=50)  # 0.4 apart by then
    reddish, _ = _run(config.replace(style_blend=(0.9, 0.1)), styles=(RED, BLUE))
    bluish, _ = _run(config.replace(style_blend=(0.1, 0.9)), styles=(RED, BLUE))
    red_minus_blue = lambda img: (img[0, 0].mean() - img[0, 2].mean()).item()  # noqa: E731
    assert red_minus_blue(reddish) > red_minus_blue(bluish) + 0.05


def test_luminance_preservation_keeps_the_content_chroma():
    out, _ = _run(_config(preserve_color="luminance", steps=4))
    plain, _ = _run(_config(steps=4))
    to_iq = torch.tensor(color._RGB_TO_YIQ[1:], dtype=torch.float32)
    chroma = lambda img: torch.einsum("cd,nd...->nc...", to_iq, img)  # noqa: E731
    assert (chroma(out) - chroma(CONTENT)).abs().mean() < 0.02
    assert (chroma(plain) - chroma(CONTENT)).abs().mean() > 2 * (chroma(out) - chroma(CONTENT)).abs().mean()


def test_histogram_preservation_gives_the_style_the_content_colours():
    matched = color.match_color(RED, CONTENT)
    assert torch.allclose(matched.mean(dim=(2, 3)), CONTENT.mean(dim=(2, 3)), atol=0.02)
    out, _ = _run(_config(preserve_color="histogram", steps=5, content_weight=0.05, style_weight=50))
    plain, _ = _run(_config(steps=5, content_weight=0.05, style_weight=50))
    distance = lambda img: (img.mean(dim=(2, 3)) - CONTENT.mean(dim=(2, 3))).abs().sum()  # noqa: E731
    assert distance(out) < distance(plain)


def test_nan_loss_stops_with_the_last_good_image(monkeypatch):
    poison_loss_from(monkeypatch, 4)
    with pytest.raises(NumericalError) as caught:
        _run(_config(steps=10, optimizer="adam"))
    assert caught.value.step == 4
    assert caught.value.image is not None and torch.isfinite(caught.value.image).all()
    assert caught.value.image.shape == (1, 3, 48, 64)


def test_callback_can_stop_and_keep_the_current_image():
    seen = []

    def stop_at_three(event):
        if isinstance(event, StepEvent):
            seen.append(event.step)
            if event.step == 3:
                raise StopRequested

    out = stylize(CONTENT, [RED], _config(steps=50), callback=stop_at_three)
    assert seen == [1, 2, 3]
    assert out.shape == (1, 3, 48, 64)


def test_save_every_hands_out_images():
    _, events = _run(_config(steps=6, save_every=3))
    with_images = [e.step for e in events if isinstance(e, StepEvent) and e.image is not None]
    assert with_images == [3, 6]


def test_too_small_for_the_network_is_refused():
    with pytest.raises(UsageError, match="at least 16 pixels"):  # the default layers: down to relu5_1
        _run(_config(size=12, **DEFAULT_LAYERS))


def test_style_init_and_path_init(tmp_path):
    from painterly.images import load_image, save_image

    start = tmp_path / "start.png"
    save_image(BLUE, start)
    from_style, _ = _run(_config(init="style", steps=1, style_weight=0, tv_weight=0, content_weight=0.0001))
    # A path init is read by the caller (pipeline.stylize_files), and the optimiser gets the tensor.
    from_path, _ = _run(_config(init=str(start), steps=1, style_weight=0, tv_weight=0, content_weight=0.0001),
                        init_image=load_image(start))
    assert (from_style - RED).abs().mean() < 0.05
    assert (from_path - BLUE).abs().mean() < 0.05


def test_stylize_files_reads_the_init_image_and_records_it(tmp_path):
    from painterly import images
    from painterly.pipeline import stylize_files

    content, style, start, out = (tmp_path / name for name in ("content.png", "style.png", "start.png", "out.png"))
    for image, path in ((CONTENT, content), (RED, style), (BLUE, start)):
        images.save_image(image, path)
    config = _config(init=str(start), steps=1, style_weight=0, tv_weight=0, content_weight=0.0001)
    summary = stylize_files(content, [style], out, config)
    assert (images.load_image(out) - BLUE).abs().mean() < 0.05
    assert summary["init"]["file"] == str(start) and len(summary["init"]["sha256"]) == 64
    assert images.read_settings(out)["init"] == summary["init"]


def test_a_path_init_without_its_image_is_refused():
    with pytest.raises(UsageError, match="pass it as init_image"):
        _run(_config(init=__file__))


def test_the_random_weights_warning_comes_once_per_run(unchosen_random_weights):
    # Two scales: the encoder is built once, and so is the warning.
    _, events = _run(_config(size=96, min_scale=48, multiscale="on", steps=1, vgg_weights=None))
    warnings = [e for e in events if isinstance(e, MessageEvent) and e.level == "warning"]
    assert [e.text for e in warnings] == [RANDOM_WARNING]
    assert sum(isinstance(e, StepEvent) for e in events) == 2


@pytest.mark.parametrize("init,problem", [("noize", "no such file"), (".", "is a folder"), ("", "no such file")])
def test_an_init_that_is_neither_a_choice_nor_a_file_is_refused_at_once(init, problem):
    with pytest.raises(UsageError) as caught:
        StylizeConfig(init=init)
    message = str(caught.value)
    assert message == f"init must be content, noise, style or an image file; got {init!r} ({problem})"


def test_an_init_typo_on_the_command_line_is_refused_before_vgg_is_built(tmp_path):
    from typer.testing import CliRunner

    from painterly import images
    from painterly.cli import app

    content, style, out = tmp_path / "content.png", tmp_path / "style.png", tmp_path / "out.png"
    images.save_image(CONTENT, content)
    images.save_image(RED, style)
    # Weights from a file that is not there: were VGG built first, that would be the error.
    args = ["stylize", content, style, "-o", out, "--init", "noize", "--vgg-weights", tmp_path / "missing.pth",
            "--device", "cpu", "--quiet"]
    result = CliRunner().invoke(app, [str(arg) for arg in args])
    assert result.exit_code == 2, result.output
    assert result.stderr.splitlines() == [
        "painterly: error: --init must be content, noise, style or an image file; got 'noize' (no such file)"]
    assert not out.exists()


CHOICES = [("optimizer", "sgd"), ("multiscale", "maybe"), ("pooling", "min"), ("vgg", "vgg11"),
           ("loss_normalisation", "papers"), ("precision", "fp8"), ("device", "tpu"), ("preserve_color", "sepia")]


@pytest.mark.parametrize("name,value", CHOICES)
def test_each_choice_is_refused_with_one_line_naming_the_option(name, value):
    with pytest.raises(UsageError) as caught:
        StylizeConfig(**{name: value})
    message = str(caught.value)
    assert message.startswith(f"{name} must be one of ") and message.endswith(f"got {value!r}")
    assert "\n" not in message
