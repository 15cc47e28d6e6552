"""ONNX export of AdaIN models: the graph over a photo and a painting's statistics, parity with
PyTorch (every output), the published encoder's layout, metadata, refusals, the CLI."""

from __future__ import annotations

import subprocess
import sys
from functools import cache
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
import torch
from typer.testing import CliRunner

from adain_helpers import adain_net
from painterly.adain import AdaINArchitecture, AdaINNet, encoder_shapes
from painterly.cli import app
from painterly.errors import ModelFileError, UsageError
from painterly.export import ExportReport, export_onnx, read_onnx_metadata
from painterly.images import read_array, save_image
from painterly.modelfile import save_model
from painterly.pixels import to_tensor
from painterly.runtimes import ADAIN_INPUTS, ADAIN_OUTPUTS
from painterly.samples import landscape, swirl_painting

STYLE = {"image": "starry.jpg", "size": 512}
TRAINING = {"lr": 0.0001, "style_weight": 10.0, "batch_size": 8}
# Small, non-square, batches of 1 and 2; multiples of 8, so valid for both variants.
CHECK_SIZES = ((1, 3, 32, 48), (2, 3, 24, 40), (2, 3, 40, 32))
# Multiples of 4 but not of 8: the light variant takes them, the standard one must not.
LIGHT_ONLY_SIZES = ((1, 3, 36, 44), (2, 3, 28, 20))


def published_layout_net(seed: int = 1) -> AdaINNet:
    """The paper's architecture in the published encoder's layout, with He-scaled random tensors of
    `encoder_shapes` (no file of the published weights can be downloaded here)."""
    architecture = AdaINArchitecture(encoder="adain")
    torch.manual_seed(seed)  # the decoder's initialisation
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in encoder_shapes(architecture).items():
        fan_in = int(np.prod(shape[1:])) if len(shape) == 4 else 1
        state[key] = torch.randn(shape, generator=generator) * (2 / fan_in) ** 0.5
    return AdaINNet(architecture, encoder_state=state).eval()


@cache
def session(path: Path) -> onnxruntime.InferenceSession:
    return onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def saved(folder: Path, name: str, net: AdaINNet) -> Path:
    return save_model(net, folder / f"{name}.safetensors", style=STYLE, training=TRAINING, steps=42)


def painting_statistics(net: AdaINNet, painting: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.inference_mode():
        return net.statistics(to_tensor(painting))


def ort_outputs(path: Path, image: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, alpha: float
                ) -> list[np.ndarray]:
    feeds = dict(zip(ADAIN_INPUTS, (image.numpy(), mean.numpy(), std.numpy(), np.array([alpha], np.float32))))
    return session(path).run(list(ADAIN_OUTPUTS), feeds)


def torch_outputs(net: AdaINNet, image, mean, std, alpha: float) -> list[np.ndarray]:
    with torch.inference_mode():
        return [t.numpy() for t in net(image, mean, std, torch.tensor([alpha]))]


def assert_same(actual: list[np.ndarray], expected: list[np.ndarray]) -> None:
    """The image to 1e-4 absolute (ten times the export's own tolerance), the statistics to 1e-5 of
    their scale."""
    for name, got, wanted in zip(ADAIN_OUTPUTS, actual, expected, strict=True):
        assert got.shape == wanted.shape, name
        tolerance = 1e-4 if name == "stylized" else 1e-5 * max(1.0, float(np.abs(wanted).max()))
        np.testing.assert_allclose(got, wanted, atol=tolerance, rtol=0, err_msg=name)


def listing(folder: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in folder.iterdir()}


def export_variant(name: str, folder: Path) -> tuple[AdaINNet, ExportReport]:
    net = adain_net(name)  # random; its output mid-range and depending on the painting
    path = saved(folder, name, net)
    sizes = CHECK_SIZES + LIGHT_ONLY_SIZES if name == "light" else CHECK_SIZES
    return net, export_onnx(path, path.with_suffix(".onnx"), check_sizes=sizes)


@pytest.fixture(scope="module")
def exported_light(tmp_path_factory):
    return export_variant("light", tmp_path_factory.mktemp("light"))


@pytest.fixture(scope="module")
def exported_standard(tmp_path_factory):
    return export_variant("standard", tmp_path_factory.mktemp("standard"))


@pytest.fixture(params=["light", "standard"])
def exported(request):
    """(net, export report) for a random model of each variant, exported once."""
    return request.getfixturevalue(f"exported_{request.param}")


# --- a good export ------------------------------------------------------------------------------------


def test_the_graph_takes_a_photo_and_a_paintings_statistics(exported):
    net, report = exported
    assert report.path.is_file() and report.opset == 17 and 0.0 <= report.max_abs_diff < 1e-3

    channels = 256 if net.architecture.bottleneck == "relu3_1" else 512
    assert [(i.name, i.shape) for i in session(report.path).get_inputs()] == [
        ("image", ["batch", 3, "height", "width"]), ("style_mean", ["styles", channels]),
        ("style_std", ["styles", channels]), ("alpha", [1])]
    assert [(o.name, o.shape) for o in session(report.path).get_outputs()] == [
        ("stylized", ["batch", 3, "height", "width"]), ("content_mean", ["batch", channels]),
        ("content_std", ["batch", channels])]


@pytest.mark.parametrize("rows", [1, 3])  # one painting for the batch, or one per photo
def test_onnx_matches_torch_at_a_size_the_export_never_checked(exported, rows):
    net, report = exported
    photos = torch.rand((3, 3, 40, 56), generator=torch.Generator().manual_seed(7))
    mean, std = painting_statistics(net, landscape(48, 64))  # not the painting the parity check used
    scale = 0.6 + 0.8 * torch.rand((rows, mean.shape[1]), generator=torch.Generator().manual_seed(8))
    mean, std = mean * scale, std * scale.flip(0)

    assert_same(ort_outputs(report.path, photos, mean, std, 0.65), torch_outputs(net, photos, mean, std, 0.65))


def test_a_paintings_statistics_come_from_the_same_graph(exported):
    """Where torch is not installed, the painting is run through the graph as the image."""
    net, report = exported
    painting = swirl_painting(40, 48)
    mean, std = painting_statistics(net, painting)

    _, onnx_mean, onnx_std = ort_outputs(report.path, to_tensor(painting), mean, std, 1.0)

    np.testing.assert_allclose(onnx_mean, mean.numpy(), atol=1e-5 * float(mean.abs().max()), rtol=0)
    np.testing.assert_allclose(onnx_std, std.numpy(), atol=1e-5 * float(std.abs().max()), rtol=0)


def test_the_style_and_alpha_inputs_reach_the_output(exported):
    net, report = exported
    photo = torch.rand((1, 3, 32, 32), generator=torch.Generator().manual_seed(3))
    swirl = painting_statistics(net, swirl_painting(32, 32))
    scene = painting_statistics(net, landscape(32, 32))

    with_swirl = ort_outputs(report.path, photo, *swirl, 1.0)[0]
    with_scene = ort_outputs(report.path, photo, *scene, 1.0)[0]
    photo_only = ort_outputs(report.path, photo, *scene, 0.0)[0]

    assert np.abs(with_swirl - with_scene).max() > 1e-4  # not constant-folded away
    assert np.abs(with_scene - photo_only).max() > 1e-4
    assert_same(ort_outputs(report.path, photo, *swirl, 0.0), torch_outputs(net, photo, *swirl, 0.0))


def test_metadata_says_what_made_the_model(exported):
    net, report = exported

    metadata = read_onnx_metadata(report.path)

    assert metadata["format"] == "painterly-adain"
    assert metadata["architecture"] == net.architecture.to_dict()
    assert metadata["size_multiple"] == net.size_multiple == (4 if net.architecture.bottleneck == "relu3_1" else 8)
    assert metadata["style"] == STYLE and metadata["training"] == TRAINING and metadata["steps"] == 42
    assert metadata["onnx_opset"] == 17 and metadata["exported_by"] == metadata["painterly_version"]
    doc = onnx.load(report.path).doc_string
    assert "AdaINNet" in doc and f"multiples of {net.size_multiple}" in doc and "style_mean" in doc


def test_the_file_is_self_contained(exported):
    net, report = exported
    proto = onnx.load(report.path, load_external_data=False)
    assert not any(onnx.external_data_helper.uses_external_data(tensor) for tensor in proto.graph.initializer)
    onnx.checker.check_model(proto, full_check=True)
    assert report.path.stat().st_size > 4 * sum(parameter.numel() for parameter in net.parameters())


# --- the published encoder's layout ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def published_layout(tmp_path_factory):
    """The paper's architecture with the published encoder's layout (reflection padding, ceil-mode
    pooling, the 1x1 input conv), random tensors, exported once."""
    net = published_layout_net()
    path = saved(tmp_path_factory.mktemp("published"), "published", net)
    return net, path, export_onnx(path, path.with_suffix(".onnx"), check_sizes=CHECK_SIZES[:2])


def test_the_published_layout_exports_and_matches(published_layout):
    net, _, report = published_layout
    assert report.max_abs_diff < 1e-3
    photos = torch.rand((2, 3, 48, 56), generator=torch.Generator().manual_seed(4))
    mean, std = painting_statistics(net, swirl_painting(48, 48))
    assert_same(ort_outputs(report.path, photos, mean, std, 0.8), torch_outputs(net, photos, mean, std, 0.8))


def test_ceil_mode_pooling_survives_the_export(published_layout):
    """At sides that are no multiple of 8 ceil-mode and floor pooling disagree on every feature map's
    size (44 -> 22 -> 11 -> 6, not 5), so a floor-mode graph could not give torch's shape."""
    net, _, report = published_layout
    photo = torch.rand((1, 3, 36, 44), generator=torch.Generator().manual_seed(5))
    mean, std = painting_statistics(net, swirl_painting(32, 32))

    actual = ort_outputs(report.path, photo, mean, std, 1.0)

    assert actual[0].shape == (1, 3, 40, 48)  # each side rounded up at each of the three poolings
    assert_same(actual, torch_outputs(net, photo, mean, std, 1.0))


def test_opset_9_is_refused_for_the_published_layout(published_layout, tmp_path):
    _, path, _ = published_layout
    with pytest.raises(UsageError) as excinfo:
        export_onnx(path, tmp_path / "old.onnx", opset=9)
    message = str(excinfo.value)
    assert "\n" not in message and path.name in message and "use 10–20" in message
    assert listing(tmp_path) == {}


# --- failures leave nothing behind ---------------------------------------------------------------------


@pytest.fixture
def light_model(tmp_path):
    return saved(tmp_path, "light", adain_net("light"))


@pytest.mark.parametrize("perturbation, shown", [(0.25, "differs from PyTorch by 0.0"), (float("nan"), "by nan")])
def test_a_statistics_output_out_of_parity_writes_nothing(light_model, monkeypatch, perturbation, shown):
    """Only content_std is off: the parity check covers the statistics, not only the image."""
    output = light_model.with_suffix(".onnx")
    output.write_bytes(b"an earlier export")
    before = listing(light_model.parent)
    original_run = onnxruntime.InferenceSession.run

    def perturbed(self, names, feeds, *args, **kwargs):
        results = original_run(self, names, feeds, *args, **kwargs)
        return [r + np.float32(perturbation) if n == "content_std" else r for n, r in zip(names, results)]

    monkeypatch.setattr(onnxruntime.InferenceSession, "run", perturbed)
    with pytest.raises(ModelFileError) as excinfo:
        export_onnx(light_model, output, check_sizes=CHECK_SIZES[:1])

    message = str(excinfo.value)
    assert "\n" not in message and light_model.name in message and shown in message and "tolerance 0.001" in message
    assert listing(light_model.parent) == before


def test_a_damaged_model_file_is_one_line_and_writes_nothing(light_model):
    data = bytearray(light_model.read_bytes())
    data[-100] ^= 0xFF  # a byte of tensor data: the checksum no longer matches
    light_model.write_bytes(bytes(data))
    with pytest.raises(ModelFileError) as excinfo:
        export_onnx(light_model, light_model.with_suffix(".onnx"))
    message = str(excinfo.value)
    assert "\n" not in message and light_model.name in message and "checksum" in message
    assert set(listing(light_model.parent)) == {light_model.name}


def test_check_sizes_must_fit_the_models_size_multiple(published_layout, tmp_path):
    _, path, _ = published_layout  # relu4_1: sides must be multiples of 8
    with pytest.raises(UsageError) as excinfo:
        export_onnx(path, tmp_path / "standard.onnx", check_sizes=LIGHT_ONLY_SIZES)
    message = str(excinfo.value)
    assert "\n" not in message and path.name in message and "multiples of 8" in message
    assert listing(tmp_path) == {}


# --- the command line -----------------------------------------------------------------------------------


def test_export_command(light_model):
    output = light_model.parent / "out" / "adain.onnx"
    result = CliRunner().invoke(app, ["export", str(light_model), "-o", str(output)])
    assert result.exit_code == 0, result.output
    assert f"wrote {output} (opset 17" in result.stdout
    assert read_onnx_metadata(output)["format"] == "painterly-adain"


def test_export_command_refusal_is_one_line(light_model):
    result = CliRunner().invoke(app, ["export", str(light_model), "-o", str(light_model.with_suffix(".onnx")),
                                      "--opset", "8"])
    assert result.exit_code != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "opset 8" in lines[0] and "Traceback" not in result.output
    assert not light_model.with_suffix(".onnx").exists()



def test_apply_with_the_exported_model_imports_no_torch(exported_light, tmp_path):
    """`painterly apply model.onnx photo --style painting` in a process where importing torch fails,
    giving the picture the torch backend gives from the .safetensors model."""
    _, report = exported_light
    save_image(landscape(40, 56), tmp_path / "photo.png")
    save_image(swirl_painting(48, 48), tmp_path / "painting.png")
    args = ["apply", "photo.png", "--style", "painting.png", "--style-size", "0", "--alpha", "0.7", "-q"]
    code = (
        "import sys\n"
        "sys.modules['torch'] = None  # any import of torch now fails\n"
        "from painterly.cli import main\n"
        "main(sys.argv[1:])\n"
    )
    onnx_args = [args[0], str(report.path), *args[1:], "-o", "onnx.png"]
    subprocess.run([sys.executable, "-c", code, *onnx_args], cwd=tmp_path, check=True, timeout=300)
    torch_args = [args[0], str(report.path.with_suffix(".safetensors")), *args[1:], "-o", str(tmp_path / "torch.png")]
    result = CliRunner().invoke(app, [arg.replace("photo.png", str(tmp_path / "photo.png"))
                                      .replace("painting.png", str(tmp_path / "painting.png")) for arg in torch_args])
    assert result.exit_code == 0, result.output

    from_onnx, from_torch = (read_array(tmp_path / name)[0] for name in ("onnx.png", "torch.png"))
    assert from_onnx.shape == (40, 56, 3) and from_onnx.std() > 0.01  # a picture, not a flat colour
    assert np.abs(from_onnx - from_torch).max() <= 2 / 255
