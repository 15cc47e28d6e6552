"""`painterly card`: Hub model cards from model files' metadata (a Johnson model as training writes it, a
tiny AdaIN model, a catalogue model's provenance), their pictures, and the refusals."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from huggingface_hub import ModelCard
from typer.testing import CliRunner

import cli_processes
from adain_helpers import adain_net, painting
from helpers import write_picture
from painterly import zoo
from painterly.card import card_text, write_card
from painterly.cli import app
from painterly.config import TrainConfig
from painterly.errors import ModelFileError, OutputError, UsageError
from painterly.images import read_array, read_settings, save_image
from painterly.modelfile import read_metadata, save_model
from painterly.provenance import file_sha256
from painterly.transformer import Architecture, TransformerNet

STYLE_SHA = "5" * 64
TRAINER_HOME = "/home/trainer"  # a path on the trainer's machine, which no card may show


def _johnson() -> TransformerNet:
    torch.manual_seed(0)
    model = TransformerNet(Architecture(channels=(4, 8, 8), residual_blocks=1)).eval()
    with torch.no_grad():
        model.deconv3.conv2d.bias.fill_(0.5)
    return model


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    """The three kinds of file a card is made from, each as painterly writes it."""
    folder = tmp_path_factory.mktemp("models")
    config = TrainConfig(data=f"{TRAINER_HOME}/coco", vgg_weights="imagenet", steps=1234)
    trained = save_model(_johnson(), folder / "starry.safetensors", steps=1234,
                         style={"file": "starry.jpg", "sha256": STYLE_SHA},  # as training.py records it
                         training={**config.to_dict(), "precision_used": "bf16"})
    adain_config = TrainConfig(data=f"{TRAINER_HOME}/coco", arch="adain-light")
    adain = save_model(adain_net("light"), folder / "any.safetensors", steps=77,
                       style={"paintings": f"{TRAINER_HOME}/wikiart", "count": 12, "sha256": STYLE_SHA},
                       training={**adain_config.to_dict(), "precision_used": "fp32"})
    entry = zoo.entry("candy")
    pulled = save_model(_johnson(), folder / "candy.safetensors", style=dict(entry.style),
                        extra={"provenance": entry.provenance(
                            used={"saved_models.zip": f"{TRAINER_HOME}/Downloads/saved_models.zip"},
                            pulled="2026-01-02")})
    return {"johnson": trained, "adain": adain, "zoo": pulled}


def _front_matter(text: str) -> dict:
    assert text.startswith("---\n")
    header, _, _ = text[4:].partition("\n---\n")
    return yaml.safe_load(header)


def test_a_trained_johnson_models_card(models, tmp_path):
    card = write_card(models["johnson"], tmp_path / "starry" / "README.md")
    text = card.read_text(encoding="utf-8")
    assert _front_matter(text) == {"license": "unknown", "library_name": "painterly", "pipeline_tag": "image-to-image",
                                   "tags": ["style-transfer", "painterly", "johnson"]}
    hub_view = ModelCard.load(card)  # the Hub client's own parser reads it as the Hub would
    assert hub_view.data.license == "unknown" and hub_view.data.tags == ["style-transfer", "painterly", "johnson"]
    metadata = read_metadata(models["johnson"])
    for expected in ["# starry", "- File: starry.jpg", f"- SHA-256: {STYLE_SHA}", "1234 steps, with these settings",
                     "| style_weight | 10 |", "| precision_used | bf16 |", "| data | coco |",
                     "| content_layers | relu2_2 |", "VGG weights of the loss network: vgg16, torchvision's ImageNet",
                     f"`{metadata['tensors_sha256']}`", f"`{file_sha256(models['johnson'])}`",
                     "painterly apply hf://OWNER/REPO photo.jpg -o photo_painted.png",
                     "Replace OWNER/REPO with the repo", "hf auth login\nhf upload OWNER/REPO .",
                     "holds this README.md and `starry.safetensors`"]:
        assert expected in text, expected
    assert "--style" not in text and "| device |" not in text
    assert TRAINER_HOME not in text
    assert sorted(os.listdir(card.parent)) == ["README.md"]


def test_repo_and_licence_fill_the_card(models, tmp_path):
    text = write_card(models["johnson"], tmp_path / "README.md", repo="alice/starry-painterly",
                      licence="MIT").read_text()
    assert _front_matter(text)["license"] == "mit"
    assert "# starry-painterly" in text
    assert "painterly apply hf://alice/starry-painterly photo.jpg" in text
    assert "hf upload alice/starry-painterly ." in text
    assert "OWNER/REPO" not in text


def test_an_adain_models_card(models, tmp_path):
    text = write_card(models["adain"], tmp_path / "README.md").read_text()
    assert _front_matter(text)["tags"] == ["style-transfer", "painterly", "adain"]
    for expected in ["An arbitrary-style network (AdaIN", "Any painting, given with `--style`",
                     "- Paintings: wikiart", "- Number of paintings: 12", "77 steps",
                     "photo.jpg --style painting.jpg -o photo_painted.png", "VGG weights of the loss network: vgg19, "
                     "the default weights", "| arch | adain-light |", "bottleneck relu3_1"]:
        assert expected in text, expected
    assert TRAINER_HOME not in text


def test_a_catalogue_models_card_carries_its_provenance(models, tmp_path):
    text = write_card(models["zoo"], tmp_path / "README.md").read_text()
    assert _front_matter(text)["license"] == "bsd-3-clause"  # the catalogue's licence, as the Hub writes SPDX ids
    for expected in ["# Candy — pytorch/examples' fast_neural_style", "- Title: Candy",
                     "Not trained by painterly", "## Where it came from", "- catalogue: candy",
                     "- project: pytorch/examples", "  - spdx: BSD-3-Clause",
                     "  - file: pytorch/examples: LICENSE", "- content_weight: 100000",
                     "https://www.dropbox.com/s/lrvwfehqdcxoza8/saved_models.zip?dl=1", "- used: saved_models.zip",
                     "- pulled: 2026-01-02"]:
        assert expected in text, expected
    assert TRAINER_HOME not in text
    assert _front_matter(write_card(models["zoo"], tmp_path / "other.md", licence="CC-BY-4.0").read_text()
                         )["license"] == "cc-by-4.0"


def test_style_image_and_sample_are_written_beside_the_card_and_linked(models, tmp_path):
    style = save_image(np.random.default_rng(0).random((200, 300, 3), dtype=np.float32), tmp_path / "paint.png")
    photo = write_picture(tmp_path / "photo.png", height=24, width=40)
    card = write_card(models["johnson"], tmp_path / "out" / "README.md", style_image=style, sample=photo)
    text = card.read_text()
    assert "![The style image](style.jpg)" in text and "![A photo painted by this model](sample.jpg)" in text
    assert "holds this README.md and `starry.safetensors`, `style.jpg`, `sample.jpg`" in text
    thumbnail, _ = read_array(card.parent / "style.jpg")
    assert thumbnail.shape == (171, 256, 3)  # shrunk to 256 on its long side
    sample, _ = read_array(card.parent / "sample.jpg")
    assert sample.shape == (24, 40, 3)
    assert np.abs(sample - read_array(photo)[0]).mean() > 0.02  # painted, not the photo copied
    settings = read_settings(card.parent / "sample.jpg")
    assert settings["model"]["file"] == "starry.safetensors" and settings["input"]["file"] == "photo.png"
    assert read_settings(card.parent / "style.jpg") == {"thumbnail_of": {"file": "paint.png",
                                                                         "sha256": file_sha256(style)}}


def test_an_adain_sample_is_painted_with_the_style_image(models, tmp_path):
    style = save_image(painting(48, 48, (0.9, 0.2, 0.1)), tmp_path / "red.png")
    photo = write_picture(tmp_path / "photo.png", height=32, width=32)
    card = write_card(models["adain"], tmp_path / "out" / "README.md", style_image=style, sample=photo)
    assert read_array(card.parent / "sample.jpg")[0].shape == (32, 32, 3)
    assert read_settings(card.parent / "sample.jpg")["styles"][0]["file"] == "red.png"
    with pytest.raises(UsageError, match="paints the sample with a painting: give --style-image"):
        write_card(models["adain"], tmp_path / "bare" / "README.md", sample=photo)
    assert not (tmp_path / "bare").exists()


@pytest.mark.parametrize(("content", "name", "expected"), [
    (b"not a model at all", "broken.safetensors", "not a readable safetensors model"),
    (b"\x80\x04junk", "model.pth", "a card describes a painterly .safetensors model"),
    (None, "missing.safetensors", "no such model file"),
])
def test_a_bad_model_file_is_one_line_and_nothing_is_written(tmp_path, content, name, expected):
    model = tmp_path / name
    if content is not None:
        model.write_bytes(content)
    photo = write_picture(tmp_path / "photo.png")
    with pytest.raises(ModelFileError) as caught:
        write_card(model, tmp_path / "card" / "README.md", style_image=photo, sample=photo)
    assert str(caught.value).startswith(str(model)) and expected in str(caught.value)
    assert "\n" not in str(caught.value)
    assert not (tmp_path / "card").exists()


def test_a_safetensors_file_that_is_not_a_painterly_model_is_refused(tmp_path):
    from safetensors.torch import save_file

    save_file({"weight": torch.zeros(2)}, tmp_path / "other.safetensors")
    with pytest.raises(ModelFileError, match="without painterly's metadata"):
        write_card(tmp_path / "other.safetensors", tmp_path / "README.md")
    assert not (tmp_path / "README.md").exists()


def test_inputs_are_never_overwritten(models, tmp_path):
    folder = tmp_path / "card"
    folder.mkdir()
    style = write_picture(folder / "style.jpg")  # just where the thumbnail would go
    before = style.read_bytes()
    with pytest.raises(UsageError, match="refusing to overwrite an input"):
        write_card(models["johnson"], folder / "README.md", style_image=style)
    assert style.read_bytes() == before and sorted(os.listdir(folder)) == ["style.jpg"]
    with pytest.raises(UsageError, match="a model card is a Markdown file"):
        write_card(models["johnson"], models["johnson"])


def test_a_failed_write_takes_back_the_pictures_it_wrote(models, tmp_path):
    (tmp_path / "README.md").mkdir()  # a folder where the card goes: the last write fails
    with pytest.raises(OutputError, match="a folder is in the way"):
        write_card(models["johnson"], tmp_path / "README.md", style_image=write_picture(tmp_path / "paint.png"))
    assert sorted(os.listdir(tmp_path)) == ["README.md", "paint.png"]


def test_bad_repo_and_licence_are_refused(models, tmp_path):
    with pytest.raises(UsageError, match="--repo: 'alice': a Hub repo is OWNER/REPO"):
        write_card(models["johnson"], tmp_path / "README.md", repo="alice")
    with pytest.raises(UsageError, match="licence must be an SPDX identifier"):
        write_card(models["johnson"], tmp_path / "README.md", licence="MIT\nlicense: evil")
    assert not (tmp_path / "README.md").exists()


def test_a_strangers_metadata_cannot_inject_markup():
    metadata = {"format": "painterly-transformer", "steps": 1, "training": {},
                "style": {"title": "<script>x</script> | two\n# heading", "artist": "`code`"},
                "provenance": {"licence": {"spdx": "mit\nlicense: evil"}}}
    text = card_text(metadata, model_name="m.safetensors", file_sha256="0" * 64)
    assert _front_matter(text)["license"] == "unknown"  # an invalid recorded licence is not copied
    assert "- Title: &lt;script&gt;x&lt;/script&gt; \\| two # heading" in text
    assert "- Artist: 'code'" in text and "<script>" not in text


def test_the_card_command(models, tmp_path):
    """Once in a real process: the command writes the card and the thumbnail, and says so."""
    style = write_picture(tmp_path / "paint.png")
    done = cli_processes.run([sys.executable, "-m", "painterly", "card", str(models["johnson"]), "-o",
                              str(tmp_path / "up" / "README.md"), "--style-image", str(style), "--repo",
                              "alice/starry", "--licence", "Apache-2.0"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"wrote {tmp_path / 'up' / 'README.md'}\n"
    text = (tmp_path / "up" / "README.md").read_text()
    assert _front_matter(text)["license"] == "apache-2.0" and "hf upload alice/starry ." in text
    assert (tmp_path / "up" / "style.jpg").is_file()


def test_the_card_command_refuses_in_one_line(tmp_path):
    (tmp_path / "bad.safetensors").write_bytes(b"junk")
    result = CliRunner().invoke(app, ["card", str(tmp_path / "bad.safetensors"), "-o", str(tmp_path / "README.md")])
    assert result.exit_code == 1
    [line] = result.output.splitlines()
    assert line.startswith(f"painterly: error: {tmp_path / 'bad.safetensors'}: not a readable safetensors model (")
    assert not (tmp_path / "README.md").exists()
