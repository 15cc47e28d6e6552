"""ONNX export: parity with PyTorch at several sizes, metadata, atomic output, refusals."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx  # noqa: E402
import onnxruntime  # noqa: E402
import pytest
import torch

from helpers import STYLE, TRAINING, examples_state_dict, images, random_model, run
from painterly.errors import ModelFileError, OutputError, PainterlyError, UsageError
from painterly.export import INPUT_NAME, OUTPUT_NAME, export_onnx, read_onnx_metadata
from painterly.modelfile import save_model
from painterly.transformer import TransformerNet

# Non-square, a batch of 2 and a second height and width: the dynamic axes have to work.
CHECK_SIZES = ((1, 3, 64, 96), (2, 3, 80, 52), (1, 3, 32, 32))
MISSING_EXTRA = "ONNX export needs the onnx extra: pip install 'painterly[onnx]'"


def ort_run(path: Path, x: torch.Tensor) -> torch.Tensor:
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return torch.from_numpy(session.run([OUTPUT_NAME], {INPUT_NAME: x.numpy()})[0])


def saved_model(folder: Path, architecture: str = "light") -> tuple[TransformerNet, Path]:
    model = random_model(architecture)
    return model, save_model(model, folder / f"{architecture}.safetensors", style=STYLE, training=TRAINING, steps=99)


def listing(folder: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in folder.iterdir()}


@pytest.fixture(scope="module", params=["light", "standard"])
def exported(request, tmp_path_factory):
    """(torch model, export report) for a random model of each architecture, exported once."""
    model, path = saved_model(tmp_path_factory.mktemp(request.param), request.param)
    return model, export_onnx(path, path.with_suffix(".onnx"), check_sizes=CHECK_SIZES)


# --- a good export ------------------------------------------------------------------------------------


def test_onnx_matches_torch_at_several_sizes(exported):
    model, report = exported
    assert report.path.is_file() and report.opset == 17 and report.seconds > 0
    assert 0.0 <= report.max_abs_diff < 1e-3

    session = onnxruntime.InferenceSession(str(report.path), providers=["CPUExecutionProvider"])
    (image,), (stylized,) = session.get_inputs(), session.get_outputs()
    assert (image.name, image.shape) == (INPUT_NAME, ["batch", 3, "height", "width"])
    assert (stylized.name, stylized.shape) == (OUTPUT_NAME, ["batch", 3, "height", "width"])
    x = images(3, 3, 44, 128, seed=5)  # a size the export never checked
    assert torch.max(torch.abs(ort_run(report.path, x) - run(model, x))) < 1e-3


def test_metadata_says_what_made_the_model(exported):
    model, report = exported

    metadata = read_onnx_metadata(report.path)

    assert metadata["style"] == STYLE and metadata["training"] == TRAINING and metadata["steps"] == 99
    assert metadata["architecture"] == {"channels": list(model.architecture.channels),
                                        "residual_blocks": model.architecture.residual_blocks,
                                        "edge_kernel": model.architecture.edge_kernel}
    assert metadata["pixel_scale"] == 1.0 and metadata["onnx_opset"] == 17
    assert metadata["exported_by"] == metadata["painterly_version"]
    doc = onnx.load(report.path).doc_string
    assert "[0, 1]" in doc and "multiples of 4" in doc


def test_the_file_is_self_contained(exported):
    model, report = exported
    assert sorted(path.suffix for path in report.path.parent.iterdir()) == [".onnx", ".safetensors"]
    proto = onnx.load(report.path, load_external_data=False)
    assert not any(onnx.external_data_helper.uses_external_data(tensor) for tensor in proto.graph.initializer)
    onnx.checker.check_model(proto, full_check=True)
    weights_bytes = 4 * sum(parameter.numel() for parameter in model.parameters())
    assert report.path.stat().st_size > weights_bytes


def test_read_metadata_needs_neither_torch_nor_onnx(exported):
    _, report = exported
    script = (
        "import json, sys\n"
        "sys.modules['torch'] = sys.modules['onnx'] = None  # importing either now fails\n"
        "from painterly.export import read_onnx_metadata\n"
        f"print(json.dumps(read_onnx_metadata({str(report.path)!r})['style']))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert json.loads(result.stdout) == STYLE


def test_pytorch_examples_pth_exports_in_zero_one_pixels(tmp_path):
    examples_model = random_model("light", seed=3)  # trained on 0–255 pixels
    torch.save(examples_state_dict(examples_model), tmp_path / "mosaic.pth")

    report = export_onnx(tmp_path / "mosaic.pth", tmp_path / "new" / "mosaic.onnx", check_sizes=CHECK_SIZES)

    assert report.max_abs_diff < 1e-3
    metadata = read_onnx_metadata(report.path)
    assert metadata["format"] == "pytorch-examples" and metadata["pixel_scale"] == 255.0
    x = images(2, 3, 36, 60)
    torch.testing.assert_close(ort_run(report.path, x), run(examples_model, x * 255) / 255, atol=1e-3, rtol=0)


def test_read_onnx_metadata_keeps_other_tools_text(tmp_path):
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("Identity", ["x"], ["y"])], "identity",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])],
    )
    proto = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)])
    onnx.helper.set_model_props(proto, {"author": "someone else", "steps": "12"})
    onnx.save(proto, tmp_path / "foreign.onnx")
    assert read_onnx_metadata(tmp_path / "foreign.onnx") == {"author": "someone else", "steps": 12}


# --- failures leave nothing behind ---------------------------------------------------------------------


@pytest.mark.parametrize("perturbation, shown", [(0.25, "0.25"), (float("nan"), "nan")])
def test_parity_failure_writes_nothing(tmp_path, monkeypatch, perturbation, shown):
    _, path = saved_model(tmp_path)
    output = tmp_path / "light.onnx"
    output.write_bytes(b"an earlier export")
    before = listing(tmp_path)
    original_run = onnxruntime.InferenceSession.run

    def perturbed(self, *args, **kwargs):
        return [result + np.float32(perturbation) for result in original_run(self, *args, **kwargs)]

    monkeypatch.setattr(onnxruntime.InferenceSession, "run", perturbed)
    with pytest.raises(ModelFileError) as excinfo:
        export_onnx(path, output)

    message = str(excinfo.value)
    assert "\n" not in message and path.name in message and shown in message and "tolerance 0.001" in message
    assert listing(tmp_path) == before


def test_unwritable_output_is_one_line_and_leaves_nothing(tmp_path):
    _, path = saved_model(tmp_path)
    (tmp_path / "taken.onnx").mkdir()  # a folder where the file should go: the rename fails
    before = sorted(tmp_path.iterdir())
    with pytest.raises(OutputError, match="cannot write") as excinfo:
        export_onnx(path, tmp_path / "taken.onnx")
    assert "\n" not in str(excinfo.value)
    assert sorted(tmp_path.iterdir()) == before


@pytest.mark.parametrize("output, options", [
    ("light.safetensors", {}),
    ("light.onnx.tmp", {}),
    ("light.onnx", {"opset": 7}),
    ("light.onnx", {"opset": 30}),
    ("light.onnx", {"tolerance": -1.0}),
    ("light.onnx", {"check_sizes": ()}),
    ("light.onnx", {"check_sizes": ((1, 3, 30, 32),)}),  # 30 is no multiple of 4
    ("light.onnx", {"check_sizes": ((1, 1, 32, 32),)}),
])
def test_bad_requests_are_refused_before_any_work(tmp_path, output, options):
    missing_model = tmp_path / "not-there.safetensors"  # loading it would raise ModelFileError instead
    with pytest.raises(UsageError):
        export_onnx(missing_model, tmp_path / output, **options)
    assert listing(tmp_path) == {}


def test_never_overwrites_the_input(tmp_path):
    path = tmp_path / "model.onnx"
    path.write_bytes(b"precious")
    with pytest.raises(UsageError, match="overwrite the input"):
        export_onnx(path, tmp_path / "." / "model.onnx")
    assert path.read_bytes() == b"precious"


@pytest.mark.parametrize("content", [None, b"", b"not a model at all\n"])
def test_missing_or_corrupt_model_is_one_line(tmp_path, content):
    path = tmp_path / "broken.safetensors"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ModelFileError) as excinfo:
        export_onnx(path, tmp_path / "broken.onnx")
    assert "\n" not in str(excinfo.value) and path.name in str(excinfo.value)
    assert set(listing(tmp_path)) <= {path.name}


def test_bad_onnx_file_is_one_line(tmp_path):
    path = tmp_path / "broken.onnx"
    path.write_text("not a protobuf")
    with pytest.raises(ModelFileError) as excinfo:
        read_onnx_metadata(path)
    assert "\n" not in str(excinfo.value) and path.name in str(excinfo.value)


# --- the optional extra --------------------------------------------------------------------------------


def test_export_without_the_extra_says_how_to_install(tmp_path, monkeypatch):
    _, path = saved_model(tmp_path)
    monkeypatch.setitem(sys.modules, "onnx", None)
    with pytest.raises(PainterlyError) as excinfo:
        export_onnx(path, tmp_path / "light.onnx")
    assert str(excinfo.value) == MISSING_EXTRA
    assert not (tmp_path / "light.onnx").exists()


def test_read_metadata_without_onnxruntime_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(PainterlyError) as excinfo:
        read_onnx_metadata(tmp_path / "any.onnx")
    assert str(excinfo.value) == MISSING_EXTRA
