"""Fast-model files: safetensors round trip, atomic writes, pytorch/examples imports, refusing bad files."""

from __future__ import annotations

import json
import os
import pickle
import stat
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import cli_processes
from helpers import STYLE, TRAINING, examples_state_dict, images, random_model, run, run_limited
from painterly import modelfile
from painterly.errors import ModelFileError
from painterly.modelfile import convert_model, load_model, read_metadata, save_model
from painterly.transformer import ARCHITECTURES, Architecture, TransformerNet


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


@pytest.mark.skipif(os.name != "posix", reason="RLIMIT_FSIZE")
def test_failed_save_leaves_no_temp_file_and_the_old_model_intact(tmp_path):
    """A real failing write: the file limit (RLIMIT_FSIZE) fails it as a full disk would, with EFBIG."""
    path = save_model(random_model(seed=1), tmp_path / "m.safetensors", steps=1)
    before = path.read_bytes()

    result = run_limited(f"""
        from painterly.errors import OutputError
        from painterly.modelfile import save_model
        from painterly.transformer import TransformerNet
        try:
            save_model(TransformerNet("light"), {str(path)!r}, steps=2)
        except OutputError as error:
            print(error)
    """, limit=len(before) // 2)

    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{path}: cannot write (File too large)\n"
    assert list(tmp_path.iterdir()) == [path]
    assert path.read_bytes() == before


@pytest.mark.skipif(os.name != "posix", reason="file modes")
def test_model_files_respect_the_umask_and_keep_an_existing_mode(tmp_path):
    """safetensors' own writer made every model 0600; painterly's are what `open` would make."""
    old = os.umask(0o022)
    try:
        path = save_model(random_model(), tmp_path / "m.safetensors")
        assert stat.S_IMODE(path.stat().st_mode) == 0o644
        path.chmod(0o640)
        save_model(random_model(seed=2), path)
        assert stat.S_IMODE(path.stat().st_mode) == 0o640
    finally:
        os.umask(old)


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


# --- metadata from strangers: every field checked before anything is built ---------------------------


def _light_tensors(seed: int = 0) -> dict[str, torch.Tensor]:
    return {key: value.contiguous() for key, value in random_model("light", seed=seed).state_dict().items()}


def _write(path: Path, tensors: dict[str, torch.Tensor], **fields: str) -> Path:
    """A model file with exactly these metadata strings (the light architecture's unless overridden)."""
    metadata = {"format": modelfile.FORMAT_NAME, "format_version": "1",
                "architecture": json.dumps(ARCHITECTURES["light"].to_dict()), **fields}
    save_file(tensors, path, metadata={key: value for key, value in metadata.items() if value is not None})
    return path


BAD_METADATA = {  # field -> (stored string, words the one-line error must contain)
    "architecture a string": ("architecture", '"light"', "architecture must be an object"),
    "architecture a list": ("architecture", "[16, 32, 64]", "architecture must be an object"),
    "architecture null": ("architecture", "null", "architecture must be an object"),
    "unknown key": ("architecture", '{"channels": [16, 32, 64], "residual_blocks": 2, "edge_kernel": 5, "depth": 3}',
                    "unknown key 'depth'"),
    "missing key": ("architecture", '{"channels": [16, 32, 64], "edge_kernel": 5}', "missing 'residual_blocks'"),
    "two channels": ("architecture", '{"channels": [16, 32], "residual_blocks": 2}', "channels must be three"),
    "text channel": ("architecture", '{"channels": [16, 32, "64"], "residual_blocks": 2}', "channels must be three"),
    "zero channels": ("architecture", '{"channels": [0, 32, 64], "residual_blocks": 2}', "channels must be three"),
    "absurd channels": ("architecture", '{"channels": [100000, 32, 64], "residual_blocks": 2}', "from 1 to 1024"),
    "boolean channel": ("architecture", '{"channels": [true, 32, 64], "residual_blocks": 2}', "channels must be"),
    "absurd blocks": ("architecture", '{"channels": [16, 32, 64], "residual_blocks": 1000000000}', "from 0 to 64"),
    "negative blocks": ("architecture", '{"channels": [16, 32, 64], "residual_blocks": -1}', "residual_blocks must"),
    "text blocks": ("architecture", '{"channels": [16, 32, 64], "residual_blocks": "2"}', "residual_blocks must"),
    "fractional blocks": ("architecture", '{"channels": [16, 32, 64], "residual_blocks": 2.5}', "residual_blocks"),
    "even edge": ("architecture", '{"channels": [16, 32, 64], "residual_blocks": 2, "edge_kernel": 4}', "odd"),
    "huge edge": ("architecture", '{"channels": [16, 32, 64], "residual_blocks": 2, "edge_kernel": 99}', "1 to 15"),
    "text antialias": ("architecture", '{"channels": [16, 32, 64], "residual_blocks": 2, "antialias": "yes"}',
                       "antialias must be true or false"),
    "numeric antialias": ("architecture", '{"channels": [16, 32, 64], "residual_blocks": 2, "antialias": 1}',
                          "antialias must be true or false"),
    "text format_version": ("format_version", "one", "format_version must be a whole number"),
    "fractional format_version": ("format_version", "1.5", "format_version must be a whole number"),
    "quoted format_version": ("format_version", '"1"', "format_version must be a whole number"),
    "NaN pixel_scale": ("pixel_scale", "NaN", "pixel_scale must be a number above 0"),
    "infinite pixel_scale": ("pixel_scale", "1e999", "pixel_scale must be"),
    "negative pixel_scale": ("pixel_scale", "-255", "pixel_scale must be"),
    "text pixel_scale": ("pixel_scale", '"255"', "pixel_scale must be"),
    "huge integer pixel_scale": ("pixel_scale", "1" + "0" * 400, "pixel_scale must be"),
    "text steps": ("steps", '"7"', "steps must be a whole number"),
    "style a list": ("style", "[]", "style must be an object"),
    "bad checksum field": ("tensors_sha256", '"abc"', "tensors_sha256 must be 64 hex digits"),
    "not JSON": ("training", "{lr: 1}", "'training' is not valid JSON"),
    "nested past recursion": ("training", "[" * 100_000, "'training' is not valid JSON"),
    "other format": ("format", "something-else", "a 'something-else' file, not a painterly model"),
}


@pytest.mark.parametrize("case", BAD_METADATA)
def test_malformed_metadata_is_one_line_naming_the_field(tmp_path, case):
    field, value, words = BAD_METADATA[case]
    path = _write(tmp_path / "hostile.safetensors", _light_tensors(), **{field: value})
    for reader in (load_model, read_metadata):
        with pytest.raises(ModelFileError) as excinfo:
            reader(path)
        assert words in one_line_error(excinfo, path)


def test_a_declared_architecture_must_match_the_tensors(tmp_path):
    nine = TransformerNet(Architecture(channels=(16, 32, 64), residual_blocks=2, edge_kernel=9))
    path = _write(tmp_path / "lies.safetensors", {k: v.contiguous() for k, v in nine.state_dict().items()})
    with pytest.raises(ModelFileError) as excinfo:
        load_model(path)  # says light (5×5 edges), holds 9×9 edges
    message = one_line_error(excinfo, path)
    assert "conv1.conv2d.weight has shape (16, 3, 9, 9), expected (16, 3, 5, 5)" in message

    standard = {key: value.contiguous() for key, value in TransformerNet("standard").state_dict().items()}
    with pytest.raises(ModelFileError, match="unexpected 'res3.conv1.conv2d.bias'") as excinfo:
        load_model(_write(tmp_path / "standard.safetensors", standard))
    one_line_error(excinfo, tmp_path / "standard.safetensors")

    tensors = _light_tensors()
    del tensors["res2.in2.bias"]
    tensors["extra.weight"] = torch.zeros(2)
    with pytest.raises(ModelFileError, match="missing 'res2.in2.bias'; unexpected 'extra.weight'") as excinfo:
        load_model(_write(tmp_path / "other.safetensors", tensors))
    one_line_error(excinfo, tmp_path / "other.safetensors")


ABSURD = {
    "10⁹ residual blocks": '{"channels": [16, 32, 64], "residual_blocks": 1000000000}',
    "100,000 channels": '{"channels": [100000, 100000, 100000], "residual_blocks": 5}',
    "the largest allowed, with small tensors": '{"channels": [1024, 1024, 1024], "residual_blocks": 64, '
                                               '"edge_kernel": 15}',
}


@pytest.mark.skipif(sys.platform != "linux", reason="ru_maxrss in kilobytes")
def test_absurd_architectures_are_refused_without_allocating(tmp_path):
    """In a process of its own (forked from the test zygote): the peak memory does not grow while each hostile
    file is refused.

    Before the limits and the shape check on the meta device, the first file took 21.6 GB before the
    kernel killed the process; the third would allocate 4.8 GB of parameters for a file of 100 kB.
    """
    paths = [_write(tmp_path / f"absurd{i}.safetensors", _light_tensors(), architecture=arch)
             for i, arch in enumerate(ABSURD.values())]
    good = save_model(random_model(), tmp_path / "good.safetensors")
    result = cli_processes.run([sys.executable, "-c", textwrap.dedent(f"""
        import resource
        from painterly.errors import ModelFileError
        from painterly.modelfile import load_model
        load_model({str(good)!r})  # imports and first-use allocations, before the baseline
        baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        for path in {[str(p) for p in paths]!r}:
            try:
                load_model(path)
            except ModelFileError as error:
                print(error)
        print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - baseline) // 1024)
    """)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    *messages, grown_mb = result.stdout.splitlines()
    assert [m.split(":")[0] for m in messages] == [str(p) for p in paths]
    assert "residual_blocks must be a whole number from 0 to 64" in messages[0]
    assert "channels must be three whole numbers from 1 to 1024" in messages[1]
    assert "not a TransformerNet state dict for channels (1024, 1024, 1024), 64 residual blocks" in messages[2]
    assert int(grown_mb) < 64


# --- tensors: names, types, finiteness, checksum ------------------------------------------------------


@pytest.mark.parametrize("bad", ["nan", "inf", "-inf"])
@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_a_model_with_non_finite_weights_is_refused(tmp_path, bad, suffix):
    tensors = _light_tensors()
    tensors["res1.conv2.conv2d.weight"][0, 0, 1, 1] = float(bad)
    path = tmp_path / f"broken{suffix}"
    _write(path, tensors) if suffix == ".safetensors" else torch.save(tensors, path)
    with pytest.raises(ModelFileError) as excinfo:
        load_model(path)
    kind = "NaN" if bad == "nan" else "infinite"
    assert f"res1.conv2.conv2d.weight has {kind} weights" in one_line_error(excinfo, path)


def test_integer_weights_are_refused(tmp_path):
    tensors = _light_tensors()
    tensors["in1.bias"] = torch.zeros(16, dtype=torch.int64)
    path = _write(tmp_path / "ints.safetensors", tensors)
    with pytest.raises(ModelFileError, match="in1.bias holds int64 values") as excinfo:
        load_model(path)
    one_line_error(excinfo, path)


PTH_CONTENTS = {
    "integer keys": ({0: torch.zeros(3), 1: torch.zeros(3)}, "key 0 is an int, not a parameter name"),
    "a non-tensor value": ({"conv1.conv2d.weight": [0.0] * 3}, "'conv1.conv2d.weight' is a list, not a tensor"),
    "a number": (3, "holds an int, not a state dict"),
    "a nested non-tensor": ({"state_dict": {"conv1.conv2d.weight": {"x": 1}}}, "is a dict, not a tensor"),
    "no convs": ({"embedding.weight": torch.zeros(3)}, "no conv1/conv2/conv3 weights"),
    "0-d conv weights": ({f"conv{i}.conv2d.weight": torch.tensor(1.0) for i in (1, 2, 3)}, "not 4-D"),
    "2000 channels": ({f"conv{i}.conv2d.weight": torch.zeros(2000, 1, 1, 1) for i in (1, 2, 3)}, "from 1 to 1024"),
}


@pytest.mark.parametrize("case", PTH_CONTENTS)
def test_a_pth_that_is_not_a_state_dict_of_named_tensors_is_one_line(tmp_path, case):
    content, words = PTH_CONTENTS[case]
    path = tmp_path / "odd.pth"
    torch.save(content, path)
    with pytest.raises(ModelFileError) as excinfo:
        load_model(path)
    assert words in one_line_error(excinfo, path)


def test_a_pth_wrapped_in_state_dict_with_compile_prefixes_loads(tmp_path, examples_model):
    state = {f"_orig_mod.module.{key}": value for key, value in examples_state_dict(examples_model).items()}
    torch.save({"state_dict": state, "epoch": 3}, tmp_path / "wrapped.pth")
    loaded, _ = load_model(tmp_path / "wrapped.pth")
    x = images(1, 3, 32, 32)
    torch.testing.assert_close(run(loaded, x), run(examples_model, x * 255) / 255)


def test_the_checksum_is_written_and_a_flipped_byte_is_refused(tmp_path):
    path = save_model(random_model(), tmp_path / "m.safetensors")
    assert len(read_metadata(path)[modelfile.CHECKSUM_FIELD]) == 64
    data = bytearray(path.read_bytes())
    data[-3] ^= 0x01  # the last tensor's bytes: safetensors itself reads them without a word
    damaged = tmp_path / "damaged.safetensors"
    damaged.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="do not match the checksum") as excinfo:
        load_model(damaged)
    one_line_error(excinfo, damaged)


def test_a_file_without_a_checksum_still_loads(tmp_path):
    """Files written before the checksum existed: format_version 1 without the field."""
    model = random_model(seed=4)
    path = _write(tmp_path / "old.safetensors", {k: v.contiguous() for k, v in model.state_dict().items()},
                  pixel_scale="1.0", steps="10")
    loaded, metadata = load_model(path)
    assert modelfile.CHECKSUM_FIELD not in metadata and metadata["format_version"] == 1
    x = images(1, 3, 16, 16)
    assert torch.equal(run(loaded, x), run(model, x))


# --- `painterly convert` at the output boundary ---------------------------------------------------------


def _convert(*args: str) -> tuple[int, str]:
    """`painterly convert ARGS` in this process (the current folder is the test's): exit code and stderr."""
    from typer.testing import CliRunner

    from painterly.cli import app

    result = CliRunner().invoke(app, ["convert", *args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.stderr


@pytest.fixture
def examples_pth(tmp_path, examples_model) -> Path:
    torch.save(examples_state_dict(examples_model), tmp_path / "mosaic.pth")
    return tmp_path / "mosaic.pth"


@pytest.mark.skipif(os.name != "posix", reason="RLIMIT_FSIZE")
def test_convert_on_a_full_disk_is_one_line_and_leaves_nothing(tmp_path, examples_pth):
    result = run_limited("", limit=examples_pth.stat().st_size // 2, cwd=tmp_path,  # reading is free
                         args=("convert", "mosaic.pth", "-o", "out/models/mosaic.safetensors"))
    assert result.returncode == 1, result.stderr
    assert result.stderr == "painterly: error: out/models/mosaic.safetensors: cannot write (File too large)\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mosaic.pth"]


def test_convert_onto_a_folder_or_under_a_file_is_one_line(tmp_path, examples_pth, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "taken.safetensors").mkdir()
    (tmp_path / "notes").write_text("a file")
    for target, reason in [("taken.safetensors", "a folder is in the way"),
                           ("notes/m.safetensors", "notes is a file, not a folder")]:
        assert _convert("mosaic.pth", "-o", target) == (1, f"painterly: error: {target}: cannot write ({reason})\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mosaic.pth", "notes", "taken.safetensors"]
    assert list((tmp_path / "taken.safetensors").iterdir()) == []


def test_convert_of_a_hostile_file_is_one_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    torch.save({0: torch.zeros(3)}, tmp_path / "ints.pth")
    code, stderr = _convert("ints.pth", "-o", "out.safetensors")
    assert code == 1 and "Traceback" not in stderr
    assert stderr.startswith("painterly: error: ints.pth: key 0 is an int") and stderr.count("\n") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ints.pth"]
