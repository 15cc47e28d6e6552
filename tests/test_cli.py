"""The `painterly` command: real runs on tiny images, and every bad input.

Most cases run the Typer app in-process (the same code path as the console
script); two run the installed console script in a subprocess to check the
real exit code and that no traceback reaches the user.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

import cli_processes
from helpers import poison_loss_from
from painterly import images
from painterly.cli import app
from painterly.devices import native_bf16
from painterly.losses import PerceptualLoss

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
    # --vgg-weights random asked for explicitly is consent: no warning, and --quiet prints nothing else
    # (test_random_weights_warn_unless_the_user_consented: an implicit choice still warns, even with --quiet).
    assert result.stderr == ""
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
    (["--preserve-color", "sepia"], "--preserve-color must be one of luminance, histogram"),
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
    assert "raft-small: not downloaded" in result.stdout and "raft-large: not downloaded" in result.stdout
    assert "raft_small_C_T_V2-01064c6d.pth" in result.stdout
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
    proc = cli_processes.run([sys.executable, "-m", "painterly", "stylize"], capture_output=True, text=True,
                             timeout=120)
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


def test_progress_bar_on_a_terminal_shows_step_scale_and_loss(pictures, tmp_path, monkeypatch):
    import io

    from painterly.config import StylizeConfig
    from painterly.optimize import stylize
    from painterly.progress import ProgressPrinter

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    content, style, _ = pictures
    screen = Terminal()
    monkeypatch.setenv("PAINTERLY_VGG_WEIGHTS", "random")  # random weights nobody asked for here: they warn
    with ProgressPrinter(stream=screen) as progress:
        stylize(images.load_image(content), [images.load_image(style)],
                StylizeConfig(size=32, steps=3, device="cpu"), callback=progress)
    text = screen.getvalue()
    assert "scale 1/1 32x27" in text and "loss=" in text and "3/3" in text
    assert "warning" in text and "random" in text
    assert "painterly: step" not in text  # a terminal gets the bar, not the plain lines


# --- apply and export: one line for what cannot be done, and signals -------------------------------


@pytest.fixture
def fast_model(tmp_path):
    from helpers import random_model
    from painterly.modelfile import save_model

    return save_model(random_model("light"), tmp_path / "light.safetensors")


def write_clip(path, frames=12, width=64, height=48):
    """A short H.264 clip of noise, written with PyAV."""
    import av

    rng = np.random.default_rng(0)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=12)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for index in range(frames):
            frame = av.VideoFrame.from_ndarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8), format="rgb24")
            frame.pts = index
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def test_apply_size_over_the_pixel_limit_is_one_line(fast_model, pictures, tmp_path):
    content, _, _ = pictures
    out = tmp_path / "out.png"
    result = invoke("apply", fast_model, content, "-o", out, "--size", "60000", "--device", "cpu")
    assert_clean_failure(result, out, str(content), "--size 60000", "over the limit")


def test_apply_max_pixels_covers_videos(fast_model, tmp_path):
    clip = write_clip(tmp_path / "clip.mp4")
    out = tmp_path / "out.mp4"
    result = invoke("apply", fast_model, clip, "-o", out, "--max-pixels", "1000", "--device", "cpu")
    assert_clean_failure(result, out, str(clip), "over the limit of 1,000")
    assert not list(tmp_path.glob(".out.mp4*"))


def test_apply_a_video_to_stdout_is_refused_as_such(fast_model, tmp_path):
    clip = write_clip(tmp_path / "clip.mp4")
    result = invoke("apply", fast_model, clip, "-o", "-", "--device", "cpu")
    assert_clean_failure(result, tmp_path / "-", str(clip), "stdout", "-o FILE.mp4", code=2)
    assert result.stdout == ""


@pytest.mark.parametrize("flag", ["--smooth", "--stabilize"])
def test_apply_video_settings_without_a_video_are_refused(fast_model, pictures, tmp_path, flag):
    content, _, other = pictures
    out = tmp_path / "out.png"
    result = invoke("apply", fast_model, content, "-o", out, flag, "0.5", "--device", "cpu")
    assert_clean_failure(result, out, flag.strip("-"), "video", f"{content} is not a video",
                         code=2)
    result = invoke("apply", fast_model, content, other, "-o", tmp_path / "styled", flag, "0.5", "--device", "cpu")
    assert_clean_failure(result, tmp_path / "styled", "none of the 2 inputs is a video", code=2)


def test_export_to_an_unwritable_place_is_one_line(fast_model, tmp_path):
    (tmp_path / "taken").write_text("a file where a folder should be")
    out = tmp_path / "taken" / "light.onnx"
    assert_clean_failure(invoke("export", fast_model, "-o", out), out, str(out), "cannot write")


# A real `painterly` process that pauses, at a progress event, until a signal arrives: the test then
# knows what was written before the signal, whatever the machine's speed.
PAUSING_APPLY = """
import sys, time
from pathlib import Path
from painterly import events
from painterly.cli import main
from painterly.progress import ProgressPrinter

marker, kind, count = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
show = ProgressPrinter.__call__

def pausing(self, event):
    show(self, event)
    if kind == "files" and isinstance(event, events.ApplyEvent) and event.done == count or (
            kind == "frames" and isinstance(event, events.VideoProgressEvent) and event.frames_done == count):
        marker.write_text("paused")
        time.sleep(600)  # until the test's signal

ProgressPrinter.__call__ = pausing
main(sys.argv[4:])
"""


def apply_until_signal(tmp_path, signum, kind, count, *args):
    """Run `painterly apply ARGS`, send `signum` once it has paused after `count` files or frames;
    (exit code, stderr lines)."""
    marker = tmp_path / "paused"
    process = cli_processes.Popen([sys.executable, "-c", PAUSING_APPLY, str(marker), kind, str(count), "apply",
                                   *map(str, args), "--device", "cpu", "--quiet"],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        while not marker.exists():
            if process.poll() is not None:
                pytest.fail(f"apply ended before pausing: {process.communicate()}")
            time.sleep(0.05)
        process.send_signal(signum)
        _, stderr = process.communicate(timeout=300)
    finally:
        if process.poll() is None:
            process.kill()
    return process.returncode, stderr.strip().splitlines()


@pytest.mark.parametrize("signum, code, word", [
    (signal.SIGTERM, 143, "terminated"),  # what a scheduler or `docker stop` sends
    (signal.SIGINT, 130, "interrupted"),  # Ctrl-C
], ids=["SIGTERM", "Ctrl-C"])
def test_a_signal_during_a_folder_says_what_was_written(fast_model, tmp_path, signum, code, word):
    rng = np.random.default_rng(0)
    (tmp_path / "in").mkdir()
    for name in "abcd":
        Image.fromarray(rng.integers(0, 255, (24, 32, 3), dtype=np.uint8)).save(tmp_path / "in" / f"{name}.png")
    out = tmp_path / "out"
    returncode, lines = apply_until_signal(tmp_path, signum, "files", 2, fast_model, tmp_path / "in", "-o", out,
                                           "--batch-size", "1")
    assert returncode == code
    assert lines == [f"painterly: error: {word}; 2 file(s) were written to {out}"]
    assert sorted(path.name for path in out.iterdir()) == ["a.png", "b.png"]  # and no temporary


def test_kill_9_during_an_auto_masked_clip_leaves_the_earlier_mask_and_clip(fast_model, tmp_path):
    """The new auto mask waits in a temporary until its clip is written: a run killed outright midway
    (kill -9, the OOM killer) leaves the earlier run's mask and clip as they were, not a new mask
    that no clip was made with."""
    from painterly.provenance import file_sha256

    clip, out = write_clip(tmp_path / "clip.mp4"), tmp_path / "out.mp4"
    mask = tmp_path / "out.mask.png"
    first = invoke("apply", fast_model, clip, "-o", out, "--mask", "auto:2", "--region", "2=keep", "--device", "cpu",
                   "--quiet")
    assert first.exit_code == 0, first.output
    before = {path: file_sha256(path) for path in (out, mask)}
    returncode, _ = apply_until_signal(tmp_path, signal.SIGKILL, "frames", 4, fast_model, clip, "-o", out, "--mask",
                                       "auto:3", "--mask-seed", "5", "--region", "3=keep")
    assert returncode == -signal.SIGKILL
    assert {path: file_sha256(path) for path in before} == before
    left = sorted(path.name for path in tmp_path.iterdir() if path.name.startswith("."))
    assert left and all(name.startswith((".out.mask.png.", ".out.mp4.")) for name in left)  # temporaries only


def test_sigterm_during_a_video_removes_its_temporary(fast_model, tmp_path):
    """`docker stop` during a clip: the partial .out.mp4.*.tmp.mp4 used to stay behind, with no message."""
    clip = write_clip(tmp_path / "clip.mp4")
    out = tmp_path / "out" / "styled.mp4"
    returncode, lines = apply_until_signal(tmp_path, signal.SIGTERM, "frames", 4, fast_model, clip, "-o", out)
    assert returncode == 143
    assert lines == ["painterly: error: terminated; nothing was written"]
    assert not (tmp_path / "out").exists()  # nor the folder made for it
    assert not [path for path in tmp_path.rglob("*") if ".tmp" in path.name]


def test_apply_to_a_closed_stdout_is_one_line(fast_model, pictures):
    """`painterly apply ... -o - | head -c 0`: the reader has gone before the PNG is written."""
    content, _, _ = pictures
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        result = cli_processes.run([sys.executable, "-m", "painterly", "apply", str(fast_model), str(content), "-o",
                                    "-", "--device", "cpu"], stdout=write_end, stderr=subprocess.PIPE, text=True,
                                   timeout=300)
    finally:
        os.close(write_end)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == ["painterly: error: <stdout>: cannot write (Broken pipe)"]


# --- messages that tell the truth (issue 14) -------------------------------------------------------


FAST_IMPLICIT = [a for a in FAST if a not in ("--vgg-weights", "random")]


@pytest.mark.parametrize("env,args,warned", [
    ({"PAINTERLY_VGG_WEIGHTS": "random"}, [], True),  # random nobody chose on this run: warned, even --quiet
    ({"PAINTERLY_VGG_WEIGHTS": "random", "PAINTERLY_RANDOM_WEIGHTS_OK": "1"}, [], False),  # read and consented
    ({}, ["--vgg-weights", "random"], False),  # asked for explicitly: consent
])
def test_random_weights_warn_unless_the_user_consented(env, args, warned, pictures, tmp_path, monkeypatch):
    from painterly.weights import RANDOM_WARNING

    for name, value in env.items():
        monkeypatch.setenv(name, value)
    content, style, _ = pictures
    out = tmp_path / "out.png"
    result = invoke("stylize", content, style, "-o", out, *FAST_IMPLICIT, *args)
    assert result.exit_code == 0, result.output
    assert images.read_settings(out)["weights"].startswith("random")
    assert result.stderr == (f"painterly: warning: {RANDOM_WARNING}\n" if warned else "")


def test_demo_follows_the_environment_and_warns_of_random_weights(tmp_path, monkeypatch):
    """$PAINTERLY_VGG_WEIGHTS=random: no download is tried, and the weights nobody asked for on the
    command line are warned about."""
    monkeypatch.setenv("PAINTERLY_VGG_WEIGHTS", "random")
    monkeypatch.setenv("PAINTERLY_WEIGHTS_MIRROR", f"http://127.0.0.1:{_closed_port()}/")
    out = tmp_path / "demo.png"
    result = invoke("demo", "-o", out, "--size", "48", "--steps", "2", "--quiet")
    assert result.exit_code == 0, result.output
    assert "could not be downloaded" not in result.stderr
    assert result.stderr.count("painterly: warning: random VGG weights") == 1
    assert images.read_settings(out)["weights"].startswith("random")


@pytest.mark.parametrize("native", [False, True])
def test_bf16_without_native_hardware_is_warned_of(native, pictures, tmp_path, monkeypatch):
    from painterly import devices

    monkeypatch.setattr(devices, "native_bf16", lambda device: native)  # the hardware probe, nothing else
    content, style, _ = pictures
    out = tmp_path / "out.png"
    result = invoke("stylize", content, style, "-o", out, *FAST, "--optimizer", "adam", "--precision", "bf16")
    assert result.exit_code == 0, result.output
    assert images.read_settings(out)["precision"] == "bf16"  # honoured: the user asked for it
    warning = "painterly: warning: --precision bf16: this CPU does not compute bf16 natively"
    assert (warning in result.stderr) is not native and result.stderr.count("warning") == int(not native)


def test_bf16_warning_reaches_apply_and_auto_never_warns(fast_model, pictures, tmp_path, monkeypatch):
    from painterly import devices

    monkeypatch.setattr(devices, "native_bf16", lambda device: False)
    content, _, _ = pictures
    result = invoke("apply", fast_model, content, "-o", tmp_path / "bf16.png", "--device", "cpu",
                    "--precision", "bf16", "--quiet")
    assert result.exit_code == 0, result.output
    assert result.stderr.startswith("painterly: warning: --precision bf16: this CPU does not compute bf16 natively")
    result = invoke("apply", fast_model, content, "-o", tmp_path / "auto.png", "--device", "cpu", "--quiet")
    assert result.exit_code == 0 and result.stderr == ""
    assert images.read_settings(tmp_path / "auto.png")["config"]["precision"] == "fp32"


def test_bf16_warning_is_one_event_from_where_precision_is_resolved(monkeypatch):
    import torch

    from painterly import devices, events

    monkeypatch.setattr(devices, "native_bf16", lambda device: False)
    heard: list = []
    assert devices.autocast_dtype("bf16", torch.device("cpu"), callback=heard.append) is torch.bfloat16
    assert devices.autocast_dtype("auto", torch.device("cpu"), callback=heard.append) is None
    assert devices.autocast_dtype("fp32", torch.device("cpu"), callback=heard.append) is None
    [event] = heard
    assert isinstance(event, events.MessageEvent) and event.level == "warning" and "fp32" in event.text


@pytest.mark.parametrize("command,args,message", [
    ("stylize", ["--preserve-color", "sepia"], "--preserve-color must be one of luminance, histogram; got 'sepia'"),
    ("stylize", ["--content-layers", ","],
     "--content-layers is empty; set --content-weight 0 for pure texture synthesis"),
    ("stylize", ["--optimizer", "sgd"], "--optimizer must be one of lbfgs, adam; got 'sgd'"),
    ("stylize", ["--loss-normalisation", "papers"], "--loss-normalisation must be one of target, paper"),
    ("stylize", ["--init", "noize"], "--init must be content, noise, style or an image file; got 'noize'"),
])
def test_errors_name_the_flag(command, args, message, pictures, tmp_path):
    content, style, _ = pictures
    out = tmp_path / "out.png"
    result = invoke(command, content, style, "-o", out, *FAST, *args)
    assert_clean_failure(result, out, message, code=2)


@pytest.mark.parametrize("args,message", [
    (["--lr-schedule", "step"], "--lr-schedule must be one of constant, cosine, inverse; got 'step'"),
    (["--batch-size", "0"], "--batch-size must be a positive integer, got 0"),
    (["--size", "30"], "--size must be a multiple of 4"),
])
def test_train_errors_name_the_flag(args, message, tmp_path):
    out = tmp_path / "m.safetensors"
    result = invoke("train", tmp_path / "style.png", "--data", tmp_path, "-o", out, *args)
    assert_clean_failure(result, out, message, code=2)


def test_apply_errors_name_the_flag(fast_model, pictures, tmp_path):
    content, _, _ = pictures
    out = tmp_path / "out.png"
    assert_clean_failure(invoke("apply", fast_model, content, "-o", out, "--tile", "5"), out,
                         "--tile must be 0 (never tile) or at least", code=2)
    assert_clean_failure(invoke("apply", fast_model, content, "-o", out, "--preserve-color", "histogram"), out,
                         "--preserve-color 'histogram' recolours the style image", code=2)


def test_flag_names_leave_quoted_values_paths_and_prose_alone():
    from painterly.cli import with_flag_names

    flags = {"style_layers": "--style-layers", "tile": "--tile", "tile_overlap": "--tile-overlap",
             "init": "--init", "size": "--size"}
    assert with_flag_names("style_layers must name a layer; got 'style_layers'", flags) == \
        "--style-layers must name a layer; got 'style_layers'"
    assert with_flag_names("tile overlap must be less than the tile (768)", flags) == \
        "tile overlap must be less than the tile (768)"
    assert with_flag_names("/data/style_layers/a.png: no such file", flags) == "/data/style_layers/a.png: no such file"
    assert with_flag_names("init 'a_b.png' is an image file", flags) == "--init 'a_b.png' is an image file"
    assert with_flag_names("the output size must be even", flags) == "the output size must be even"


def test_apply_names_every_model_type_it_takes(pictures, tmp_path):
    content, _, _ = pictures
    model = tmp_path / "model.ckpt"
    model.write_bytes(b"not a model")
    out = tmp_path / "out.png"
    assert_clean_failure(invoke("apply", model, content, "-o", out, "--device", "cpu"), out,
                         f"{model}: unknown model file type", ".safetensors", ".onnx", ".pth")


def test_a_bad_file_in_a_batch_is_reported_once(fast_model, pictures, tmp_path):
    content, _, _ = pictures
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(content, folder / "a.png")
    (folder / "b.png").write_bytes(b"not a picture")
    out = tmp_path / "out"
    result = invoke("apply", fast_model, folder, "-o", out, "--device", "cpu", "--quiet")
    assert result.exit_code == 1
    assert (out / "a.png").is_file() and not (out / "b.png").exists()
    assert result.stderr.count("b.png") == 1, result.stderr
    lines = result.stderr.splitlines()
    assert lines[0].startswith(f"painterly: warning: {folder / 'b.png'}")
    assert lines[-1] == "painterly: error: 1 of 2 input(s) failed (see above); 1 file(s) written"


# --- progress off a terminal -------------------------------------------------------------------------


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def _step(step, total=10):
    from painterly.events import StepEvent

    return StepEvent(step=step, total_steps=total, scale=1, num_scales=1, size=(48, 64),
                     losses={"total": 1.5}, elapsed=0.0)


def test_plain_progress_lines_every_interval_with_pace_and_eta():
    import io

    from painterly.progress import ProgressPrinter

    log, clock = io.StringIO(), FakeClock()
    printer = ProgressPrinter(stream=log, interval=30, clock=clock)
    for step in range(1, 11):  # one step every 10 s
        printer(_step(step))
        clock.now += 10
    assert log.getvalue().splitlines() == [
        "painterly: step 4/10 (scale 1/1 64x48), loss 1.5, 10.00 s/step, ETA 1m00s",
        "painterly: step 7/10 (scale 1/1 64x48), loss 1.5, 10.00 s/step, ETA 30s",
        "painterly: step 10/10 (scale 1/1 64x48), loss 1.5, 10.00 s/step",  # the end of the phase
    ]


def test_plain_progress_lines_for_training_apply_and_downloads():
    import io

    from painterly import events
    from painterly.progress import ProgressPrinter

    log, clock = io.StringIO(), FakeClock()
    printer = ProgressPrinter(stream=log, interval=0, clock=clock)
    for step in (501, 502):  # a resumed run counts on
        printer(events.TrainStepEvent(step=step, total_steps=1000, epoch=1, epochs=2, losses={"total": 3.25},
                                      lr=1e-3, images_per_s=2.0, elapsed=0.0))
        clock.now += 2
    printer(events.ApplyEvent(done=1, total=4, path="a.png"))
    clock.now += 4
    printer(events.ApplyEvent(done=2, total=4, path="b.png"))
    printer(events.DownloadEvent(url="http://x/vgg19-dcbb9e9d.pth", done=0, total=2_000_000))
    clock.now += 1
    printer(events.DownloadEvent(url="http://x/vgg19-dcbb9e9d.pth", done=1_000_000, total=2_000_000))
    assert log.getvalue().splitlines() == [
        "painterly: step 501/1000 (epoch 1/2), loss 3.25, img/s 2.0",
        "painterly: step 502/1000 (epoch 1/2), loss 3.25, img/s 2.0, 2.00 s/step, ETA 16m36s",
        "painterly: file 1/4",
        "painterly: file 2/4, 4.00 s/file, ETA 8s",
        "painterly: downloading vgg19-dcbb9e9d.pth: 0.0/2.0 MB",
        "painterly: downloading vgg19-dcbb9e9d.pth: 1.0/2.0 MB, 1.0 MB/s, ETA 1s",
    ]


def test_no_plain_lines_when_quiet_or_on_a_terminal():
    import io

    from painterly.events import MessageEvent
    from painterly.progress import ProgressPrinter

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    log, screen = io.StringIO(), Terminal()
    for printer in (ProgressPrinter(stream=log, quiet=True, interval=0), ProgressPrinter(stream=screen, interval=0)):
        printer(_step(1, total=2))
        printer(_step(2, total=2))
        printer(MessageEvent("kept", "warning"))
        printer.close()
    assert log.getvalue() == "painterly: warning: kept\n"
    assert "painterly: step" not in screen.getvalue() and "2/2" in screen.getvalue()


def test_a_bad_progress_interval_is_one_line(pictures, tmp_path, monkeypatch):
    monkeypatch.setenv("PAINTERLY_PROGRESS_SECONDS", "soon")
    content, style, _ = pictures
    out = tmp_path / "out.png"
    assert_clean_failure(invoke("stylize", content, style, "-o", out, *FAST), out,
                         "PAINTERLY_PROGRESS_SECONDS must be a number of seconds", code=2)


def _painterly(*args, interval="0"):
    """`painterly ARGS` in a real process, its stderr a pipe (as in CI or a log file)."""
    return cli_processes.run([sys.executable, "-m", "painterly", *map(str, args)], capture_output=True, text=True,
                             timeout=300, env={**os.environ, "PAINTERLY_PROGRESS_SECONDS": interval})


def _off_a_terminal(quiet, monkeypatch, *args):
    """(exit code, stderr) of `painterly ARGS` off a terminal: the run that prints its lines in a real process
    (its stderr a pipe); the --quiet one, which must print nothing, in this process (CliRunner's stderr is no
    terminal either), since one real process per command shows what a pipe gets."""
    if not quiet:
        done = _painterly(*args)
        return done.returncode, done.stderr
    monkeypatch.setenv("PAINTERLY_PROGRESS_SECONDS", "0")
    result = invoke(*args)
    return result.exit_code, result.stderr


@pytest.mark.parametrize("quiet", [False, True])
def test_stylize_prints_plain_progress_lines_off_a_terminal(quiet, pictures, tmp_path, monkeypatch):
    content, style, _ = pictures
    args = [a for a in FAST if a != "--quiet"] + (["--quiet"] if quiet else [])
    code, stderr = _off_a_terminal(quiet, monkeypatch, "stylize", content, style, "-o", tmp_path / "out.png", *args)
    assert code == 0, stderr
    lines = [line for line in stderr.splitlines() if line.startswith("painterly: step")]
    if quiet:
        assert lines == [] and stderr == ""
    else:
        assert [line.split(",")[0] for line in lines] == [
            f"painterly: step {step}/3 (scale 1/1 32x27)" for step in (1, 2, 3)]
        assert all("loss " in line for line in lines) and "s/step" in lines[-1]
        assert "\r" not in stderr  # no bar drawn into a pipe


@pytest.mark.parametrize("quiet", [False, True])
def test_train_prints_plain_progress_lines_off_a_terminal(quiet, tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    photos = tmp_path / "photos"
    photos.mkdir()
    for index in range(4):
        Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(photos / f"{index}.png")
    Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(tmp_path / "style.png")
    code, stderr = _off_a_terminal(quiet, monkeypatch, "train", tmp_path / "style.png", "--data", photos, "-o",
                                   tmp_path / "m.safetensors", "--size", "32", "--batch-size", "2", "--steps", "2",
                                   "--arch", "light", "--vgg-weights", "random", "--device", "cpu", "--content-layers",
                                   "relu2_2", "--style-layers", "relu1_2,relu2_2", *(["--quiet"] if quiet else []))
    assert code == 0, stderr
    lines = [line for line in stderr.splitlines() if line.startswith("painterly: step")]
    if quiet:
        assert lines == []
    else:
        assert [line.split(",")[0] for line in lines] == ["painterly: step 1/2 (epoch 1/1)",
                                                          "painterly: step 2/2 (epoch 1/1)"]
        assert "s/step" in lines[-1] and "loss " in lines[-1]
