"""Fast-model files: safetensors round trip, atomic writes, pytorch/examples imports, refusing bad files."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from painterly import modelfile
from painterly.errors import ModelFileError
from painterly.modelfile import convert_model, load_model, read_metadata, save_model
from painterly.transformer import ARCHITECTURES, Architecture, TransformerNet

from helpers import STYLE, TRAINING, examples_state_dict, images, random_model, run

def one_line_error(excinfo: pytest.ExceptionInfo, path: Path) -> str:
    message = str(excinfo.value)
    assert "\n" not in message and path.name in message
    return message


# --- round trip ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("architecture, pixel_scale", [("light", 1.0), ("standard", 255.0)])
def test_save_load_round_trip(tmp_path, architecture, pixel_scale):
    model = random_model(architecture, pixel_scale=pixel_scale)
    path = save_model(model, tmp_path / "m.safetensors", style=STYLE, training=TRAINING, steps=1234)

    loaded, metadata = load_model(path)

    assert loaded.architecture == ARCHITECTURES[architecture]
    assert loaded.pixel_scale == pixel_scale and not loaded.training
    assert metadata["style"] == STYLE and metadata["training"] == TRAINING and metadata["steps"] == 1234
    assert metadata["format"] == modelfile.FORMAT_NAME and metadata["format_version"] == modelfile.FORMAT_VERSION
    x = images(2, 3, 32, 44)
    assert torch.equal(run(loaded, x), run(model, x))


def test_read_metadata_matches_load(tmp_path):
    path = save_model(random_model(), tmp_path / "m.safetensors", style=STYLE, training=TRAINING, steps=7)
    assert read_metadata(path) == load_model(path)[1]


def test_save_refuses_other_suffixes(tmp_path):
    with pytest.raises(ModelFileError, match="safetensors"):
        save_model(random_model(), tmp_path / "m.pth")
    assert list(tmp_path.iterdir()) == []


def test_failed_save_leaves_no_temp_file_and_the_old_model_intact(tmp_path, monkeypatch):
    path = save_model(random_model(seed=1), tmp_path / "m.safetensors", steps=1)
    before = path.read_bytes()

    def half_written(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"half a model")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("safetensors.torch.save_file", half_written)
    with pytest.raises(OSError, match="No space"):
        save_model(random_model(seed=2), path, steps=2)

    assert list(tmp_path.iterdir()) == [path]
    assert path.read_bytes() == before


# --- pytorch/examples files ---------------------------------------------------------------------------


@pytest.fixture
def examples_model() -> TransformerNet:
    """The network pytorch/examples trains: 0–255 pixels in and out, i.e. pixel_scale 1 fed 0–255 values."""
    return random_model("standard", seed=3)


@pytest.mark.parametrize("prefix", ["", "module."])  # module.: saved from DataParallel
def test_pytorch_examples_pth_loads_with_pixel_scale_255(tmp_path, examples_model, prefix):
    state = examples_state_dict(examples_model, prefix)
    assert {f"{prefix}{key}" for key in ("conv1.conv2d.weight", "in1.weight", "in1.running_mean",
                                         "res1.conv1.conv2d.weight", "res5.in2.running_var",
                                         "deconv1.conv2d.weight", "in4.bias", "deconv2.conv2d.bias",
                                         "in5.weight", "deconv3.conv2d.weight")} <= state.keys()
    torch.save(state, tmp_path / "mosaic.pth")

    loaded, metadata = load_model(tmp_path / "mosaic.pth")

    assert loaded.pixel_scale == 255.0 and metadata["format"] == "pytorch-examples"
    assert loaded.architecture == ARCHITECTURES["standard"]
    native = TransformerNet("standard", pixel_scale=255.0).eval()
    native.load_state_dict(examples_model.state_dict())
    x = images(1, 3, 48, 64)
    assert torch.equal(run(loaded, x), run(native, x))
    torch.testing.assert_close(run(loaded, x), run(examples_model, x * 255) / 255)


def test_convert_pth_to_safetensors(tmp_path, examples_model):
    torch.save(examples_state_dict(examples_model), tmp_path / "mosaic.pth")

    converted = convert_model(tmp_path / "mosaic.pth", tmp_path / "mosaic.safetensors")

    metadata = read_metadata(converted)
    assert metadata["pixel_scale"] == 255.0
    assert metadata["converted_from"] == {"file": str(tmp_path / "mosaic.pth"), "format": "pytorch-examples"}
    x = images(1, 3, 40, 36)
    assert torch.equal(run(load_model(converted)[0], x), run(load_model(tmp_path / "mosaic.pth")[0], x))


# --- files that must be refused -----------------------------------------------------------------------


class _Exploit:
    """Unpickling this runs a shell command: what a malicious .pth does."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.mark.parametrize("writer", ["torch.save", "pickle.dump"])
def test_pickle_with_code_is_refused_and_not_run(tmp_path, writer):
    marker = tmp_path / "pwned"
    payload = {"conv1.conv2d.weight": _Exploit(marker)}
    path = tmp_path / "evil.pth"
    if writer == "torch.save":
        torch.save(payload, path)
    else:
        path.write_bytes(pickle.dumps(payload, protocol=2))  # torch.save's protocol: no warning

    with pytest.raises(ModelFileError, match="refusing to load") as excinfo:
        load_model(path)

    one_line_error(excinfo, path)
    assert not marker.exists()


def _unrelated_safetensors(path: Path) -> None:
    save_file({"embedding.weight": torch.zeros(4, 2)}, path)


BAD_FILES = {
    "missing.safetensors": None,
    "empty.safetensors": lambda path: path.write_bytes(b""),
    "empty.pth": lambda path: path.write_bytes(b""),
    "folder.safetensors": lambda path: path.mkdir(),
    "notes.safetensors": lambda path: path.write_text("these are not weights\n"),
    "notes.pth": lambda path: path.write_text("these are not weights\n"),
    "tensors.pth": lambda path: torch.save([torch.zeros(3)], path),
    "other.safetensors": _unrelated_safetensors,
    "model.bin": lambda path: path.write_bytes(b"\0" * 64),
}


@pytest.mark.parametrize("name", BAD_FILES)
def test_bad_files_give_one_line_errors(tmp_path, name):
    path = tmp_path / name
    if BAD_FILES[name]:
        BAD_FILES[name](path)

    with pytest.raises(ModelFileError) as excinfo:
        load_model(path)

    one_line_error(excinfo, path)


def test_read_metadata_of_a_text_file_is_one_line(tmp_path):
    path = tmp_path / "notes.safetensors"
    path.write_text("these are not weights\n")
    with pytest.raises(ModelFileError) as excinfo:
        read_metadata(path)
    one_line_error(excinfo, path)


def test_newer_format_version_asks_to_upgrade(tmp_path):
    model = random_model()
    path = tmp_path / "future.safetensors"
    metadata = {
        "format": modelfile.FORMAT_NAME,
        "format_version": str(modelfile.FORMAT_VERSION + 1),
        "architecture": '{"channels": [16, 32, 64], "residual_blocks": 3}',
    }
    save_file({key: value.contiguous() for key, value in model.state_dict().items()}, path, metadata=metadata)

    with pytest.raises(ModelFileError, match="upgrade painterly") as excinfo:
        load_model(path)

    one_line_error(excinfo, path)


def test_a_file_from_before_edge_kernels_were_recorded_loads_with_9x9_edges(tmp_path):
    """Light models trained before the light architecture changed: (16, 32, 64), 3 blocks, 9×9 edges."""
    old = TransformerNet(Architecture(channels=(16, 32, 64), residual_blocks=3)).eval()
    path = tmp_path / "old-light.safetensors"
    metadata = {"format": modelfile.FORMAT_NAME, "format_version": str(modelfile.FORMAT_VERSION),
                "architecture": '{"channels": [16, 32, 64], "residual_blocks": 3}'}
    save_file({key: value.contiguous() for key, value in old.state_dict().items()}, path, metadata=metadata)
    loaded, _ = load_model(path)
    assert loaded.architecture == Architecture(channels=(16, 32, 64), residual_blocks=3, edge_kernel=9)
    image = torch.rand(1, 3, 32, 32)
    with torch.inference_mode():
        torch.testing.assert_close(loaded(image), old(image))


def test_edge_kernel_is_inferred_from_a_plain_state_dict(tmp_path):
    path = tmp_path / "light.pth"
    torch.save(TransformerNet("light").state_dict(), path)
    loaded, _ = load_model(path)
    assert loaded.architecture == ARCHITECTURES["light"] and ARCHITECTURES["light"].edge_kernel == 5
