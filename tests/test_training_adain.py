"""AdaIN decoders trained by the one training loop: the paper's defaults, the loss, exact resume,
NaN rollback, paintings folders (unreadable files, the hash a resume is checked on, the seeded
order), previews, the model file and the CLI. Tiny photos and paintings written here, the light
decoder, random VGG weights, 16-px crops."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

import cli_processes
from painterly import modelfile, weights
from painterly.adain import ADAIN_ARCHITECTURES, AdaINNet, encoder_state_from_vgg
from painterly.cli import app
from painterly.config import (
    ADAIN_BOTTLENECKS,
    ADAIN_SIZE_MULTIPLES,
    ADAIN_TRAIN_ARCHS,
    INVERSE_LR_DECAY,
    TrainConfig,
)
from painterly.dataset import PAINTINGS, PHOTOS, PairedBatches, folder_sha256
from painterly.errors import PainterlyError, UsageError
from painterly.events import MessageEvent, StopRequested, TrainStepEvent
from painterly.losses import AdaINLoss
from painterly.training import Trainer, train

PHOTO_SIZES = [(24, 32), (28, 28), (32, 24), (20, 30)]
# Three paintings of clearly different colours, so that what the decoder is given to paint differs.
PAINTING_TINTS = [(220, 40, 30), (30, 60, 220), (40, 200, 60)]

# What TrainConfig() recorded before AdaIN existed: a Johnson run's settings must not move.
JOHNSON_DEFAULTS = {
    "data": "", "size": 256, "style_size": None, "epochs": 2, "steps": None, "batch_size": 4, "lr": 1e-3,
    "lr_schedule": "constant", "content_weight": 1.0, "style_weight": 10.0, "tv_weight": 1.0,
    "content_layers": ("relu2_2",), "style_layers": ("relu1_2", "relu2_2", "relu3_3", "relu4_3"),
    "style_layer_weights": None, "vgg": "vgg16", "vgg_weights": None, "pooling": "max",
    "loss_normalisation": "target", "arch": "standard", "channels_last": False, "compile": False, "seed": 0,
    "device": "auto", "workers": 0, "precision": "auto", "checkpoint_every": 500, "checkpoint_minutes": 10.0,
    "log_every": 10, "preview_every": 0,
}


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py: one torch thread for every test here


def _smooth(rng, height, width, tint=None):
    """A smooth random picture; with `tint`, mostly that colour with a texture of its own."""
    coarse = rng.random((4, 4, 3))
    if tint is not None:
        coarse = 0.3 * coarse + 0.7 * np.array(tint) / 255
    return Image.fromarray((coarse * 255).astype(np.uint8)).resize((width, height), Image.Resampling.BICUBIC)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """photos/ and paintings/ (each with a subfolder), and one painting file beside them."""
    root = tmp_path_factory.mktemp("adain")
    rng = np.random.default_rng(0)
    for name in ("photos/sub", "paintings/sub"):
        (root / name).mkdir(parents=True)
    for index, (height, width) in enumerate(PHOTO_SIZES):
        _smooth(rng, height, width).save(root / "photos" / ("sub" if index == 0 else "") / f"p{index}.png")
    for index, tint in enumerate(PAINTING_TINTS):
        folder = root / "paintings" / ("sub" if index == 2 else "")
        _smooth(rng, 26 + 2 * index, 30, tint).save(folder / f"s{index}.png")
    _smooth(rng, 28, 28, (200, 200, 40)).save(root / "painting.png")
    return root


def _config(root, **changes):
    base = {"data": str(root / "photos"), "arch": "adain-light", "size": 16, "resize": 20, "batch_size": 2,
            "steps": 4, "lr": 1e-3, "vgg_weights": "random", "device": "cpu", "checkpoint_every": 2,
            "log_every": 1, "checkpoint_minutes": 0}
    return TrainConfig(**{**base, **changes})


def _train(root, output, *, paintings=None, resume=False, callback=None, **changes):
    events = []
    train(paintings or root / "paintings", _config(root, **changes), output,
          callback=callback or events.append, resume=resume)
    return events


def _metrics(output):
    return [json.loads(line) for line in output.with_name(output.name + ".metrics.jsonl").read_text().splitlines()]


def _weights(path):
    model, _ = modelfile.load_model(path)
    return model.state_dict()


def _inverse(step, lr=1e-3):
    return lr / (1 + INVERSE_LR_DECAY * step)


# --- settings ------------------------------------------------------------------------------------


def test_johnson_defaults_are_unchanged_and_adain_takes_the_papers_recipe():
    # the fields added since: off for Johnson
    assert TrainConfig().to_dict() == {**JOHNSON_DEFAULTS, "resize": None, "temporal_weight": 0.0,
                                     "temporal_warmup": 0.0, "antialias": False}
    adain = TrainConfig(arch="adain")
    assert (adain.lr, adain.lr_schedule, adain.batch_size, adain.tv_weight, adain.vgg) == (
        1e-4, "inverse", 8, 0.0, "vgg19")
    assert (adain.size, adain.resize, adain.style_weight, adain.content_weight) == (256, 512, 10.0, 1.0)
    assert adain.content_layers == ("relu4_1",) and adain.style_layers == ("relu1_1", "relu2_1", "relu3_1", "relu4_1")
    assert adain.layer_weights() == dict.fromkeys(adain.style_layers, 1.0)  # the paper sums its layers
    assert adain.loss_normalisation == "paper" and adain.steps == 160_000
    assert TrainConfig(arch="adain-light").content_layers == ("relu3_1",)
    assert TrainConfig(arch="adain", epochs=3).steps is None  # epochs asked for: they count
    # A copy into the other kind resolves the kind's defaults afresh, and keeps what was given.
    switched = TrainConfig(batch_size=2).replace(arch="adain")
    assert (switched.lr, switched.vgg, switched.batch_size) == (1e-4, "vgg19", 2)
    assert switched.replace(arch="standard").to_dict() == TrainConfig(batch_size=2).to_dict()


def test_the_config_and_adain_py_agree_on_each_decoder():
    for arch, size in (("adain", "standard"), ("adain-light", "light")):
        assert ADAIN_BOTTLENECKS[arch] == ADAIN_ARCHITECTURES[size].bottleneck
        assert ADAIN_SIZE_MULTIPLES[arch] == ADAIN_ARCHITECTURES[size].size_multiple
    assert set(ADAIN_TRAIN_ARCHS) == set(ADAIN_BOTTLENECKS)


@pytest.mark.parametrize("changes,message", [
    ({"vgg": "vgg16"}, "vgg must be vgg19 for --arch adain"),
    ({"pooling": "avg"}, "pooling must be max for --arch adain"),
    ({"content_layers": ("relu2_1",)}, "content_layers must be relu4_1 for --arch adain"),
    ({"style_size": 256}, "style_size is for a Johnson network's one painting"),
    ({"size": 252}, "size must be a multiple of 8"),
    ({"resize": 128}, "resize (128) must be at least the crop size (256)"),
    ({"lr_schedule": "step"}, "lr_schedule must be one of constant, cosine, inverse; got 'step'"),
])
def test_settings_an_adain_decoder_cannot_train_with_are_refused(changes, message):
    with pytest.raises(UsageError, match=message.replace("(", r"\(").replace(")", r"\)")):
        TrainConfig(arch="adain", **changes)


# --- the step ------------------------------------------------------------------------------------


def test_the_loss_is_finite_and_falls_on_a_fixed_batch_and_only_the_decoder_learns(folders):
    config = _config(folders)
    trainer = Trainer(config)
    assert isinstance(trainer.model, AdaINNet) and trainer.model.architecture.bottleneck == "relu3_1"
    assert "relu4_1" in trainer.encoder.layers  # the light decoder's loss still reaches relu4_1
    expected_encoder = encoder_state_from_vgg(weights.random_state_dict("vgg19", seed=0), ADAIN_ARCHITECTURES["light"])
    generator = torch.Generator().manual_seed(0)
    photos = torch.nn.functional.interpolate(torch.rand(2, 3, 4, 4, generator=generator), size=16, mode="bilinear")
    paintings = torch.nn.functional.interpolate(torch.rand(2, 3, 4, 4, generator=generator), size=16, mode="bilinear")
    totals = []
    for _ in range(8):
        losses = trainer.train_step(photos, paintings=paintings)
        assert losses is not None and set(losses) == {"total", "content", "style", "tv"}
        assert all(np.isfinite(value) for value in losses.values()) and losses["tv"] == 0
        totals.append(losses["total"])
    assert np.mean(totals[-2:]) < 0.7 * totals[0], totals
    encoder = {key.removeprefix("encoder."): value for key, value in trainer.model.state_dict().items()
               if key.startswith("encoder.")}
    assert encoder.keys() == expected_encoder.keys()
    assert all(torch.equal(encoder[key], expected_encoder[key]) for key in encoder)  # frozen, the VGG source's
    with pytest.raises(UsageError, match="needs a batch of paintings"):
        trainer.train_step(photos)
    with pytest.raises(UsageError, match="not one style image"):
        Trainer(config, torch.rand(1, 3, 16, 16))
    # Channels-last memory trains the same network: the same first step, to rounding.
    plain, fast = Trainer(config), Trainer(config.replace(channels_last=True))
    assert fast.model.decoder[1].weight.is_contiguous(memory_format=torch.channels_last)
    first, second = (t.train_step(photos, paintings=paintings) for t in (plain, fast))
    assert first is not None and second is not None
    assert second["total"] == pytest.approx(first["total"], rel=1e-4)


# --- whole runs ----------------------------------------------------------------------------------


def test_a_short_run_writes_a_model_that_paints_each_painting_with_metrics_and_previews(folders, tmp_path):
    output = tmp_path / "adain.safetensors"
    events = _train(folders, output, steps=4, preview_every=4)

    records = _metrics(output)
    assert [r["step"] for r in records] == [1, 2, 3, 4]
    assert [r["lr"] for r in records] == pytest.approx([_inverse(step) for step in range(4)])
    assert all(np.isfinite(r["losses"]["total"]) for r in records)
    assert any(isinstance(e, MessageEvent) and "and 3 paintings from" in e.text for e in events)
    previews = sorted(p.name for p in (tmp_path / "adain.safetensors.previews").iterdir())
    assert previews == [f"step000004_{index}.png" for index in range(4)]
    pictures = [np.asarray(Image.open(tmp_path / "adain.safetensors.previews" / name)) for name in previews]
    assert all(max(picture.shape[:2]) <= 256 for picture in pictures)

    model, metadata = modelfile.load_model(output)
    assert isinstance(model, AdaINNet) and modelfile.is_arbitrary(metadata) and metadata["steps"] == 4
    assert metadata["architecture"] == ADAIN_ARCHITECTURES["light"].to_dict()
    assert metadata["style"] == {"paintings": str(folders / "paintings"), "count": 3,
                                 "sha256": folder_sha256(folders / "paintings", sorted(
                                     (folders / "paintings").rglob("*.png")))}
    assert metadata["training"] == {**json.loads(json.dumps(_config(folders, steps=4, preview_every=4).to_dict())),
                                    "precision_used": "fp32"}
    photo = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        red, blue = (model.stylize(photo, *model.statistics(_tensor(folders / "paintings" / name)))
                     for name in ("s0.png", "s1.png"))
    assert (red - blue).abs().mean() > 1e-3  # the output depends on the painting


def _tensor(path):
    return torch.from_numpy(np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255).permute(2, 0, 1)[None]


def test_a_stopped_run_resumes_to_exactly_the_weights_of_an_uninterrupted_one(folders, tmp_path):
    _train(folders, tmp_path / "straight.safetensors", steps=6)

    def stop_at_three(event):
        if isinstance(event, TrainStepEvent) and event.step == 3:
            raise StopRequested

    resumed = tmp_path / "resumed.safetensors"
    _train(folders, resumed, steps=6, callback=stop_at_three)
    assert modelfile.read_metadata(resumed)["steps"] == 3
    events = _train(folders, resumed, steps=6, resume=True)

    assert any(isinstance(e, MessageEvent) and "resuming" in e.text and "at step 3" in e.text for e in events)
    assert [e.step for e in events if isinstance(e, TrainStepEvent)] == [4, 5, 6]
    straight, again = _weights(tmp_path / "straight.safetensors"), _weights(resumed)
    assert straight.keys() == again.keys()
    assert all(torch.equal(straight[key], again[key]) for key in straight)
    assert [r["step"] for r in _metrics(resumed)] == list(range(1, 7))


def test_a_non_finite_loss_rolls_back_and_halves_the_learning_rate(folders, tmp_path, monkeypatch):
    original, calls = AdaINLoss.forward, []

    def nan_at_third(self, *args):
        terms = original(self, *args)
        calls.append(1)
        if len(calls) == 3:
            terms.total = terms.total * float("nan")
        return terms

    monkeypatch.setattr(AdaINLoss, "forward", nan_at_third)
    output = tmp_path / "rolled.safetensors"
    events = _train(folders, output, steps=4)

    warnings = [e.text for e in events if isinstance(e, MessageEvent) and "not finite" in e.text]
    assert len(warnings) == 1 and "step 3" in warnings[0] and "rolled back to step 2" in warnings[0]
    assert [r["lr"] for r in _metrics(output)] == pytest.approx(
        [_inverse(0), _inverse(1), _inverse(2) / 2, _inverse(3) / 2])
    model, metadata = modelfile.load_model(output)
    assert metadata["steps"] == 4 and all(torch.isfinite(p).all() for p in model.parameters())


def test_unreadable_paintings_are_skipped_and_counted(folders, tmp_path):
    paintings = tmp_path / "paintings"
    shutil.copytree(folders / "paintings", paintings)
    (paintings / "sub" / "broken.jpg").write_text("not an image\n")
    (paintings / "empty.png").write_bytes(b"")
    events = _train(folders, tmp_path / "skip.safetensors", paintings=paintings, steps=3)  # 6 paintings drawn

    warnings = [e.text for e in events if isinstance(e, MessageEvent) and e.level == "warning"]
    assert sum("skipping an unreadable painting" in text for text in warnings) == 2
    assert f"skipped 2 unreadable paintings in {paintings}" in warnings
    assert not any("unreadable photo" in text for text in warnings)
    assert modelfile.read_metadata(tmp_path / "skip.safetensors")["steps"] == 3


def test_the_wrong_kind_of_style_argument_is_refused_before_training(folders, tmp_path):
    output = tmp_path / "x.safetensors"
    with pytest.raises(UsageError, match="painting.png: is a file; --arch adain-light learns any painting from a "
                                         "folder"):
        train(folders / "painting.png", _config(folders), output)
    johnson = TrainConfig(data=str(folders / "photos"), size=16, vgg_weights="random", device="cpu", arch="light")
    with pytest.raises(UsageError, match="paintings: is a folder; --arch light learns one painting"):
        train(folders / "paintings", johnson, output)
    empty = tmp_path / "nothing"
    empty.mkdir()
    with pytest.raises(PainterlyError, match="nothing: no image files found"):
        train(empty, _config(folders), output)
    assert not any(path.name.startswith("x.") for path in tmp_path.iterdir())


def test_resume_refuses_other_paintings(folders, tmp_path):
    paintings = tmp_path / "paintings"
    shutil.copytree(folders / "paintings", paintings)
    output = tmp_path / "m.safetensors"
    _train(folders, output, paintings=paintings, steps=2)
    shutil.copy(folders / "painting.png", paintings / "sub" / "another.png")
    with pytest.raises(PainterlyError, match="was made with a different set of paintings"):
        _train(folders, output, paintings=paintings, steps=4, resume=True)


# --- paintings folders ---------------------------------------------------------------------------------


def test_the_paintings_of_each_step_depend_only_on_the_seed_and_the_step():
    def steps(start, stop, rank=0, world_size=1, seed=0):
        return list(PairedBatches(6, 3, 2, seed, start=start, stop=stop, rank=rank, world_size=world_size))

    whole = steps(0, 9)
    assert steps(4, 9) == whole[4:]  # a resumed run draws what the uninterrupted one drew
    for batch in whole:
        assert [key[0] for key in batch] == [PHOTOS, PHOTOS, PAINTINGS, PAINTINGS]
    drawn = [key[1:] for batch in whole for key in batch if key[0] == PAINTINGS]
    for cycle in range(6):  # every painting once per pass over them, in a new order each pass
        assert sorted(index for c, index in drawn if c == cycle) == [0, 1, 2]
    assert len({tuple(index for c, index in drawn if c == cycle) for cycle in range(6)}) > 1
    ranks = [steps(0, 3, rank, 2) for rank in (0, 1)]  # two processes: never the same photo or painting
    for first, second in zip(*ranks, strict=True):
        assert not set(first) & set(second)
    assert steps(0, 9, seed=1) != whole


def test_the_paintings_hash_names_every_file_and_its_place_not_the_folder(tmp_path):
    for name in ("a", "b"):
        (tmp_path / name / "sub").mkdir(parents=True)
        (tmp_path / name / "x.png").write_bytes(b"one")
        (tmp_path / name / "sub" / "y.png").write_bytes(b"two")

    def digest(name):
        return folder_sha256(tmp_path / name, sorted((tmp_path / name).rglob("*.png")))

    assert digest("a") == digest("b")
    (tmp_path / "b" / "sub" / "y.png").rename(tmp_path / "b" / "y.png")
    assert digest("a") != digest("b")
    (tmp_path / "b" / "y.png").rename(tmp_path / "b" / "sub" / "y.png")
    (tmp_path / "b" / "x.png").write_bytes(b"One")
    assert digest("a") != digest("b")


# --- the command ---------------------------------------------------------------------------------------


def test_the_train_command_learns_an_adain_decoder_with_the_defaults_of_its_kind(folders, tmp_path):
    output = tmp_path / "cli.safetensors"
    common = ["--data", folders / "photos", "-o", output, "--size", "16", "--resize", "20", "--batch-size", "2",
              "--steps", "2", "--vgg-weights", "random", "--device", "cpu", "--quiet"]
    result = CliRunner().invoke(app, [str(arg) for arg in ["train", folders / "paintings", "--arch", "adain-light",
                                                           *common]])
    assert result.exit_code == 0, result.output
    training = modelfile.read_metadata(output)["training"]
    assert (training["lr"], training["lr_schedule"], training["vgg"], training["tv_weight"]) == (
        1e-4, "inverse", "vgg19", 0.0)
    refused = CliRunner().invoke(app, [str(arg) for arg in ["train", folders / "painting.png", "--arch", "adain",
                                                            *common, "--overwrite"]])
    assert refused.exit_code == 2
    lines = [line for line in refused.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("painterly: error: ") and "is a file" in lines[0]
    wrong = CliRunner().invoke(app, [str(arg) for arg in ["train", folders / "paintings", "--arch", "adain",
                                                          "--vgg", "vgg16", *common]])
    assert wrong.exit_code == 2 and "--vgg must be vgg19 for --arch adain" in wrong.stderr


@pytest.mark.slow
def test_two_processes_under_torchrun_train_one_adain_decoder(folders, tmp_path):
    output = tmp_path / "ddp.safetensors"
    config = _config(folders, steps=2)
    script = tmp_path / "child.py"
    script.write_text(
        "import json, sys, torch\n"
        "from painterly.config import TrainConfig\n"
        "from painterly.training import train\n"
        "torch.set_num_threads(1)\n"
        "train(sys.argv[1], TrainConfig(**json.loads(sys.argv[3])), sys.argv[2])\n")
    # A real torchrun: its launcher and its two worker processes are forked from the test zygote (torch imported once).
    torchrun = [*cli_processes.TORCHRUN, "--standalone", "--nproc-per-node", "2"]
    cli_processes.run([*torchrun, str(script), str(folders / "paintings"), str(output), json.dumps(config.to_dict())],
                      check=True, timeout=240, capture_output=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    model, metadata = modelfile.load_model(output)
    assert isinstance(model, AdaINNet) and metadata["steps"] == 2
    assert torch.load(tmp_path / "ddp.safetensors.ckpt", weights_only=True)["world_size"] == 2
    assert [r["step"] for r in _metrics(output)] == [1, 2]  # written once, by rank 0
