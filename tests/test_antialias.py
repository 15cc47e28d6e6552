"""Anti-aliased TransformerNets (`Architecture.antialias`, `train --antialias`): the texture moves with the
picture, the model file holds the same tensors and says so, ONNX agrees, training and its refusals."""

import dataclasses

import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from helpers import images, random_model, run
from painterly import modelfile
from painterly.cli import app
from painterly.config import TrainConfig
from painterly.errors import UsageError
from painterly.transformer import ARCHITECTURES, Architecture, TransformerNet
from test_training import _cli_train_here, _config, _metrics, _write_photos

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py: one torch thread for every test here

LIGHT_AA = dataclasses.replace(ARCHITECTURES["light"], antialias=True)


def _photo_like(side: int = 96) -> torch.Tensor:
    """Smooth colour fields with a little grain: what a frame of video looks like to the network."""
    generator = torch.Generator().manual_seed(0)
    coarse = torch.rand(1, 3, 12, 12, generator=generator)
    smooth = nn.functional.interpolate(coarse, size=(side, side), mode="bicubic", align_corners=False)
    return (smooth + 0.1 * torch.rand(1, 3, side, side, generator=generator)).clamp(0, 1)


def _unexplained_change(model: TransformerNet, photo: torch.Tensor, shift: int) -> float:
    """How much of the change in the output when the photo moves by `shift` pixels is not the output moving
    with it, inside a 16-pixel margin: |O(moved) − moved O| over |O(moved) − O|. 0 for a network whose texture
    moves with the picture; about 1 where moving the output explains none of the change. A ratio, so a
    smoother output does not score better by being smooth."""
    with torch.no_grad():
        base, moved = model(photo), model(torch.roll(photo, shift, dims=3))
    inside = moved[..., 16:-16, 16 + shift:-16]
    followed = (inside - base[..., 16:-16, 16:-16 - shift]).abs().mean()
    still = (inside - base[..., 16:-16, 16 + shift:-16]).abs().mean()
    return float(followed / still)


@pytest.mark.parametrize("seed", [0, 1])
def test_an_anti_aliased_network_moves_its_texture_with_the_picture(seed):
    plain, smooth = random_model(ARCHITECTURES["light"], seed=seed), random_model(LIGHT_AA, seed=seed)
    photo = _photo_like()
    for shift in (1, 2, 3):  # not a multiple of the stride-4 grid: where a plain network's texture jumps
        assert _unexplained_change(smooth, photo, shift) < 0.8 * _unexplained_change(plain, photo, shift), shift
    # A plain network's 1-pixel change is hardly the output moving at all; on its grid (4) it nearly is.
    assert _unexplained_change(plain, photo, 1) > 0.9
    assert _unexplained_change(plain, photo, 4) < 0.3


def test_the_file_holds_the_same_tensors_records_antialias_and_loads_as_it_was_saved(tmp_path):
    plain, smooth = random_model(ARCHITECTURES["light"], seed=0), random_model(LIGHT_AA, seed=0)
    assert {k: v.shape for k, v in smooth.state_dict().items()} == {k: v.shape for k, v in plain.state_dict().items()}
    path = modelfile.save_model(smooth, tmp_path / "aa.safetensors", style={"image": "random"})
    plain_path = modelfile.save_model(plain, tmp_path / "plain.safetensors", style={"image": "random"})

    assert modelfile.read_metadata(path)["architecture"]["antialias"] is True
    # A plain network's file is as before this field: older painterly versions read it unchanged.
    assert "antialias" not in modelfile.read_metadata(plain_path)["architecture"]
    loaded, _ = modelfile.load_model(path)
    assert loaded.architecture == LIGHT_AA
    x = images(1, 3, 40, 56, seed=3)
    assert torch.equal(run(loaded, x), run(smooth, x))
    assert not torch.allclose(run(modelfile.load_model(plain_path)[0], x), run(smooth, x), atol=1e-3)


def test_a_file_without_the_field_is_a_plain_network():
    assert Architecture.from_dict({"channels": [16, 32, 64], "residual_blocks": 2, "edge_kernel": 5}) == \
        ARCHITECTURES["light"]
    assert Architecture.from_dict({**LIGHT_AA.to_dict()}) == LIGHT_AA


@pytest.mark.parametrize("value", ["yes", 1, None, [True]])
def test_antialias_must_be_true_or_false(value):
    with pytest.raises(ValueError, match="architecture antialias must be true or false"):
        Architecture.from_dict({"channels": [16, 32, 64], "residual_blocks": 2, "antialias": value})


def test_onnx_export_of_an_anti_aliased_network_matches_torch(tmp_path):
    import onnx

    from painterly.export import export_onnx, read_onnx_metadata
    from test_export import CHECK_SIZES, ort_run

    model = random_model(LIGHT_AA, seed=2)
    path = modelfile.save_model(model, tmp_path / "aa.safetensors", style={"image": "random"})
    report = export_onnx(path, path.with_suffix(".onnx"), check_sizes=CHECK_SIZES)
    assert report.max_abs_diff < 1e-3
    x = images(2, 3, 36, 60, seed=6)  # a size the export never checked
    assert torch.max(torch.abs(ort_run(report.path, x) - run(model, x))) < 1e-3
    assert read_onnx_metadata(report.path)["architecture"]["antialias"] is True
    assert "anti-aliased" in onnx.load(report.path).doc_string


def test_training_with_antialias_records_it_and_the_cli_option_reaches_the_model(tmp_path):
    photos = _write_photos(tmp_path)
    output = tmp_path / "cli.safetensors"
    result = _cli_train_here(photos, output, "--steps", "2", "--checkpoint-every", "2",
                             "--antialias", "--temporal-weight", "5")
    assert result.exit_code == 0, result.stderr
    metadata = modelfile.read_metadata(output)
    assert metadata["architecture"] == LIGHT_AA.to_dict()
    assert metadata["training"]["antialias"] is True and metadata["training"]["arch"] == "light"
    assert all(record["losses"]["temporal"] > 0 for record in _metrics(output))
    assert modelfile.load_model(output)[0].architecture == LIGHT_AA


def test_a_resume_with_another_antialias_is_refused_and_keeps_the_checkpoint(tmp_path):
    photos = _write_photos(tmp_path)
    output = tmp_path / "run.safetensors"
    first = _cli_train_here(photos, output, "--steps", "4", "--checkpoint-every", "2")
    assert first.exit_code == 0, first.stderr
    checkpoint = output.with_name(output.name + ".ckpt").read_bytes()
    again = _cli_train_here(photos, output, "--steps", "6", "--checkpoint-every", "2",
                            "--antialias", "--resume")
    assert again.exit_code != 0 and "antialias" in again.stderr and "Traceback" not in again.stderr
    assert len(again.stderr.strip().splitlines()) == 1
    assert output.with_name(output.name + ".ckpt").read_bytes() == checkpoint


@pytest.mark.parametrize("value", ["yes", 1, None])
def test_antialias_in_a_train_config_must_be_true_or_false(value, tmp_path):
    with pytest.raises(UsageError, match=f"antialias must be true or false, got {value!r}"):
        _config(_write_photos(tmp_path), antialias=value)


def test_an_adain_run_refuses_antialias_in_one_line(tmp_path):
    photos = _write_photos(tmp_path)
    refused = CliRunner().invoke(app, ["train", str(photos.parent), "--data", str(photos), "-o",
                                       str(tmp_path / "adain.safetensors"), "--arch", "adain", "--antialias"])
    assert refused.exit_code == 2
    assert refused.stderr == ("painterly: error: --antialias must be off for --arch adain: it is for a Johnson "
                              "network (--arch standard or light); the AdaIN decoder upsamples as the paper's does\n")
    assert not list(tmp_path.glob("adain*"))
    assert TrainConfig(arch="adain").antialias is False  # the default suits every kind


def test_the_live_tab_counts_an_anti_aliased_light_network_as_light(tmp_path):
    from types import SimpleNamespace

    from painterly.web_live import architecture_name

    modelfile.save_model(random_model(LIGHT_AA), tmp_path / "aa.safetensors", style={"image": "random"})
    modelfile.save_model(random_model("standard"), tmp_path / "std.safetensors", style={"image": "random"})
    catalog = SimpleNamespace(folders=[str(tmp_path)])
    assert architecture_name(catalog, "aa.safetensors") == "light"
    assert architecture_name(catalog, "std.safetensors") == "standard"
