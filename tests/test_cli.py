"""The `painterly` command: real runs on tiny images, and every bad input.

Most cases run the Typer app in-process (the same code path as the console
script); two run the installed console script in a subprocess to check the
real exit code and that no traceback reaches the user.
"""

import json
import os
import shutil
import socket
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from painterly import images
from painterly.cli import app
from painterly.devices import native_bf16
from painterly.losses import PerceptualLoss

from helpers import poison_loss_from

FAST = ["--size", "32", "--steps", "3", "--vgg-weights", "random", "--device", "cpu", "--quiet"]


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv("PAINTERLY_VGG_WEIGHTS", raising=False)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def pictures(tmp_path):
    rng = np.random.default_rng(0)
    content = tmp_path / "photo.png"
    style = tmp_path / "painting.jpg"
    style2 = tmp_path / "painting2.png"
    Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(content)
    Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(style)
    Image.fromarray(rng.integers(0, 255, (36, 30, 3), dtype=np.uint8)).save(style2)
    return content, style, style2


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def assert_clean_failure(result, output, *fragments, code=1):
    assert result.exit_code == code, (result.exit_code, result.output)
    # Exactly one error line; a warning printed earlier (e.g. random weights) is allowed.
    lines = [line for line in result.stderr.splitlines() if line.strip() and "painterly: warning:" not in line]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("painterly: error: ")
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    assert not os.path.exists(output)


def test_stylize_writes_an_image_with_its_settings(pictures, tmp_path):
    content, style, _ = pictures
    out = tmp_path / "out.png"
    result = invoke("stylize", content, style, "-o", out, *FAST, "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["steps"] == 3 and summary["weights"].startswith("random")
    with Image.open(out) as img:
        assert img.size == (32, 27)
    stored = images.read_settings(out)
    assert stored["config"]["size"] == 32 and stored["config"]["vgg_weights"] == "random"
    assert stored["content"]["file"] == str(content) and len(stored["content"]["sha256"]) == 64
    assert "random" in result.stderr  # the random-weights warning is shown even with --quiet
    # "auto" with L-BFGS (the default optimiser) is fp32; what it resolved to is recorded.
    assert summary["precision"] == stored["precision"] == "fp32" and stored["config"]["precision"] == "auto"


def test_stylize_records_the_precision_auto_chose_for_adam(pictures, tmp_path):
    content, style, _ = pictures
    out = tmp_path / "out.png"
    result = invoke("stylize", content, style, "-o", out, *FAST, "--optimizer", "adam", "--json")
    assert result.exit_code == 0, result.output
    expected = "bf16" if native_bf16(torch.device("cpu")) else "fp32"  # bf16 where this CPU computes it natively
    assert json.loads(result.stdout)["precision"] == images.read_settings(out)["precision"] == expected


def test_same_seed_same_settings_identical_file(pictures, tmp_path):
    content, style, _ = pictures
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    assert invoke("stylize", content, style, "-o", a, *FAST).exit_code == 0
    assert invoke("stylize", content, style, "-o", b, *FAST).exit_code == 0
    with Image.open(a) as ia, Image.open(b) as ib:
        assert np.array_equal(np.asarray(ia), np.asarray(ib))
    assert images.read_settings(a)["config"] == images.read_settings(b)["config"]


def test_several_styles_layer_weights_and_intermediates(pictures, tmp_path):
    content, style, style2 = pictures
    out = tmp_path / "blend.webp"
    result = invoke("stylize", content, style, style2, "-o", out, *FAST, "--style-blend", "0.7,0.3",
                    "--style-layers", "relu1_1:0.5,relu2_1", "--save-every", "2", "--preserve-color", "luminance")
    assert result.exit_code == 0, result.output
    settings = images.read_settings(out)
    assert settings["config"]["style_blend"] == [0.7, 0.3]
    assert settings["config"]["style_layer_weights"] == [0.5, 1.0]
    assert len(settings["styles"]) == 2
    assert (tmp_path / "blend.scale1-step00002.webp").exists()


@pytest.mark.parametrize("case", ["missing", "directory", "empty", "text", "truncated", "tiny"])
def test_bad_content_image(case, pictures, tmp_path):
    _, style, _ = pictures
    bad = tmp_path / f"bad_{case}.png"
    if case == "directory":
        bad.mkdir()
    elif case == "empty":
        bad.write_bytes(b"")
    elif case == "text":
        bad.write_text("not an image")
    elif case == "truncated":
        Image.fromarray(np.zeros((64, 64, 3), np.uint8) + 100).save(bad)
        bad.write_bytes(bad.read_bytes()[:-40])
    elif case == "tiny":
        Image.new("RGB", (8, 8)).save(bad)
    out = tmp_path / "out.png"
    assert_clean_failure(invoke("stylize", bad, style, "-o", out, *FAST), out, str(bad))


def test_image_over_the_pixel_limit(pictures, tmp_path):
    content, style, _ = pictures
    out = tmp_path / "out.png"
    assert_clean_failure(invoke("stylize", content, style, "-o", out, *FAST, "--max-pixels", "1000"),
                         out, str(content), "--max-pixels")


def test_unsupported_output_format_refused_before_work(pictures, tmp_path):
    content, style, _ = pictures
    out = tmp_path / "out.gif"
    assert_clean_failure(invoke("stylize", content, style, "-o", out, *FAST), out, "out.gif")


def test_never_overwrites_an_input(pictures, tmp_path):
    content, style, _ = pictures
    before = content.read_bytes()
    result = invoke("stylize", content, style, "-o", content, *FAST)
    assert result.exit_code == 1 and "input" in result.stderr
    assert content.read_bytes() == before


@pytest.mark.parametrize("args,fragment", [
    (["--style-layers", "relu4_22"], "did you mean relu4_2"),
    (["--style-blend", "1,2,3"], "3 weights for 1 style images"),
    (["--optimizer", "sgd"], "optimizer"),
    (["--size", "0"], "size"),
    (["--preserve-color", "sepia"], "preserve_color"),
])
def test_bad_settings_are_usage_errors(args, fragment, pictures, tmp_path):
    content, style, _ = pictures
    out = tmp_path / "out.png"
    assert_clean_failure(invoke("stylize", content, style, "-o", out, *FAST, *args), out, fragment, code=2)


def test_bad_weights_file(pictures, tmp_path):
    content, style, _ = pictures
    weights = tmp_path / "vgg.pth"
    weights.write_text("garbage")
    out = tmp_path / "out.png"
    args = [a if a != "random" else str(weights) for a in FAST]
    assert_clean_failure(invoke("stylize", content, style, "-o", out, *args), out, str(weights))


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_offline_without_weights_names_the_three_ways_out(pictures, tmp_path, monkeypatch):
    content, style, _ = pictures
    monkeypatch.setenv("PAINTERLY_WEIGHTS_MIRROR", f"http://127.0.0.1:{_closed_port()}/")
    out = tmp_path / "out.png"
    args = [a for a in FAST if a not in ("--vgg-weights", "random")]
    result = invoke("stylize", content, style, "-o", out, *args)
    assert_clean_failure(result, out, "painterly weights --download", "--vgg-weights PATH", "--vgg-weights random")


def test_nan_keeps_the_last_good_image(pictures, tmp_path, monkeypatch):
    content, style, _ = pictures
    poison_loss_from(monkeypatch, 3)
    out = tmp_path / "out.png"
    result = invoke("stylize", content, style, "-o", out, *FAST, "--steps", "6")
    assert result.exit_code == 1 and "nan" in result.stderr.lower()
    assert images.read_settings(out)["status"] == "diverged at step 3"
    pixels = np.asarray(Image.open(out))
    assert pixels.std() > 5, "the kept image must be the last good one, not a black file"


def test_demo_offline_falls_back_to_random_weights(tmp_path, monkeypatch):
    monkeypatch.setenv("PAINTERLY_WEIGHTS_MIRROR", f"http://127.0.0.1:{_closed_port()}/")
    out = tmp_path / "demo.png"
    result = invoke("demo", "-o", out, "--size", "48", "--steps", "2", "--quiet")
    assert result.exit_code == 0, result.output
    assert "random" in result.stderr
    assert images.read_settings(out)["config"]["vgg_weights"] == "random"
    with Image.open(out) as img:
        assert img.size == (48, 36)


def test_weights_command_shows_status(tmp_path):
    result = invoke("weights")
    assert result.exit_code == 0
    assert "vgg19: not downloaded" in result.stdout and "vgg16: not downloaded" in result.stdout
    assert str(tmp_path / "torch") in result.stdout


def test_console_script_errors_without_traceback(pictures, tmp_path):
    content, _, _ = pictures
    out = tmp_path / "out.png"
    exe = shutil.which("painterly") or os.path.join(os.path.dirname(sys.executable), "painterly")
    proc = subprocess.run([exe, "stylize", str(content), str(tmp_path / "nope.jpg"), "-o", str(out), *FAST],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert proc.stderr.strip().count("\n") == 0 and "nope.jpg" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not out.exists()


def test_console_script_usage_error_exit_code(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "painterly", "stylize"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr


def _raise_in_loss(monkeypatch, error):
    def broken(self, image, targets=None):
        raise error

    monkeypatch.setattr(PerceptualLoss, "forward", broken)


def test_out_of_memory_gives_advice(pictures, tmp_path, monkeypatch):
    import torch

    content, style, _ = pictures
    _raise_in_loss(monkeypatch, torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    out = tmp_path / "out.png"
    assert_clean_failure(invoke("stylize", content, style, "-o", out, *FAST), out, "out of memory", "--size")


def test_ctrl_c_writes_nothing(pictures, tmp_path, monkeypatch):
    content, style, _ = pictures
    _raise_in_loss(monkeypatch, KeyboardInterrupt())
    out = tmp_path / "out.png"
    assert_clean_failure(invoke("stylize", content, style, "-o", out, *FAST), out, "interrupted", code=130)
    assert not list(tmp_path.glob(".out.png*")), "no temporary file may be left behind"


def test_unavailable_device_is_a_usage_error(pictures, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    content, style, _ = pictures
    out = tmp_path / "out.png"
    args = [a if a != "cpu" else "cuda" for a in FAST]
    assert_clean_failure(invoke("stylize", content, style, "-o", out, *args), out, "--device cuda", code=2)


def test_progress_bar_on_a_terminal_shows_step_scale_and_loss(pictures, tmp_path):
    import io

    from painterly.config import StylizeConfig
    from painterly.optimize import stylize
    from painterly.progress import ProgressPrinter

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    content, style, _ = pictures
    screen = Terminal()
    with ProgressPrinter(stream=screen) as progress:
        stylize(images.load_image(content), [images.load_image(style)],
                StylizeConfig(size=32, steps=3, vgg_weights="random", device="cpu"), callback=progress)
    text = screen.getvalue()
    assert "scale 1/1 32x27" in text and "loss=" in text and "3/3" in text
    assert "warning" in text and "random" in text
