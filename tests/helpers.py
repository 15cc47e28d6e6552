"""Helpers several test modules share: random fast models in the formats painterly reads, a loss
that turns NaN on cue, and outputs that cannot be written (a full disk, a folder nothing can be
created in). (Imported as `helpers`: pytest puts tests/ on sys.path.)"""

from __future__ import annotations

import functools
import http.server
import os
import shutil
import socket
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch

from painterly.images import save_image
from painterly.losses import PerceptualLoss
from painterly.modelfile import save_model
from painterly.transformer import Architecture, TransformerNet

STYLE = {"image": "starry.jpg", "size": 256}
TRAINING = {"lr": 0.001, "style_weight": 1e10, "batch_size": 4}


def random_model(architecture: str = "light", *, pixel_scale: float = 1.0, seed: int = 0) -> TransformerNet:
    """A TransformerNet with every parameter random, so a misplaced tensor changes the output."""
    torch.manual_seed(seed)
    model = TransformerNet(architecture, pixel_scale=pixel_scale).eval()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    return model


def images(*shape: int, seed: int = 1) -> torch.Tensor:
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed))


def run(model: TransformerNet, x: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return model(x)


def examples_state_dict(model: TransformerNet, prefix: str = "") -> dict[str, torch.Tensor]:
    """`model`'s weights as pytorch/examples' fast_neural_style saved them, stale InstanceNorm statistics included."""
    state = {f"{prefix}{key}": value.clone() for key, value in model.state_dict().items()}
    for key in [key for key in state if key.endswith(".weight") and ".in" in f".{key}"]:
        norm = key.removesuffix(".weight")
        state[f"{norm}.running_mean"] = torch.zeros_like(state[key])
        state[f"{norm}.running_var"] = torch.ones_like(state[key])
    return state


def poison_loss_from(monkeypatch: pytest.MonkeyPatch, evaluation: int) -> None:
    """Make every PerceptualLoss evaluation from the `evaluation`-th on return a NaN total."""
    original = PerceptualLoss.forward
    calls = {"n": 0}

    def poisoned(self, image, content=None):
        calls["n"] += 1
        terms = original(self, image, content)
        if calls["n"] >= evaluation:
            terms.total = terms.total * float("nan")
        return terms

    monkeypatch.setattr(PerceptualLoss, "forward", poisoned)


def run_limited(code: str, *, limit: int = 4096, cwd: Path | None = None, args: tuple[str, ...] = ()
                ) -> subprocess.CompletedProcess:
    """Run Python `code` (or `python -m painterly ARGS` when code is empty) where no file may grow past `limit` bytes.

    RLIMIT_FSIZE makes the kernel refuse the write (EFBIG, "File too large"); Python ignores SIGXFSZ,
    so the writer sees the error as it would see ENOSPC on a full disk.
    """
    import resource

    def limit_files() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    command = [sys.executable, "-B", "-m", "painterly", *args] if not code else [sys.executable, "-B", "-c",
                                                                                 textwrap.dedent(code)]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=300, preexec_fn=limit_files,
                          env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})


@contextmanager
def unwritable_folder(folder: Path) -> Iterator[Path]:
    """A folder in which nothing can be created, for whoever runs the tests."""
    folder.mkdir()
    if os.geteuid() != 0:
        folder.chmod(0o500)
        try:
            yield folder
        finally:
            folder.chmod(0o700)
        return
    chattr = shutil.which("chattr")
    if chattr is None or subprocess.run([chattr, "+i", str(folder)], capture_output=True).returncode != 0:
        pytest.skip("running as root, and this file system cannot make a folder immutable (chattr +i)")
    try:
        yield folder
    finally:
        subprocess.run([chattr, "-i", str(folder)], check=True)


# The web UI's browser tests drive Debian's Chromium (scripts/test.sh installs it), not Playwright's download.
CHROMIUM = "/usr/bin/chromium"


def launch_chromium(playwright, *args: str):
    """Debian's Chromium, headless, with nothing of its own reaching out to the network; `args` add flags
    (the Live tab's test: a fake camera, `benchmarks.live.fake_camera`)."""
    return playwright.chromium.launch(executable_path=CHROMIUM, args=[
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", *args])


# --- the web UI's tests (test_web.py, test_web_adain.py) ---------------------------------------


def light_model_file(folder: Path) -> Path:
    """A random light TransformerNet saved as a model file (the video tests' model, built once a module)."""
    return save_model(random_model("light"), folder / "light.safetensors", style={"image": "swirl.png"})


def fp32_stylizer(model: Path):
    """The model on torch in fp32 on the CPU: comparable with ONNX Runtime, and exact from run to run."""
    from painterly.config import ApplyConfig
    from painterly.fast import FastStylizer

    return FastStylizer(model, ApplyConfig(backend="torch", device="cpu", precision="fp32"))


def tiny_model(path: Path) -> Path:
    """A random TransformerNet a few kernels wide whose output sits around mid-grey, not clipped."""
    torch.manual_seed(0)
    model = TransformerNet(Architecture(channels=(4, 8, 8), residual_blocks=1)).eval()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
        model.deconv3.conv2d.weight.mul_(0.3)
        model.deconv3.conv2d.bias.fill_(0.5)
    return save_model(model, path, style={"image": "random"})


def picture(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A smooth gradient with some noise: a real picture, not a flat colour."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width] / max(height, width)
    image = np.stack([x, y, 1 - x * y], axis=2) * rng.uniform(0.5, 1, 3) + rng.normal(0, 0.05, (height, width, 3))
    return np.clip(image, 0, 1).astype(np.float32)


def write_picture(path: Path, height: int = 24, width: int = 40, seed: int = 0) -> Path:
    return save_image(picture(height, width, seed), path)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def file_server(root: Path) -> Iterator[str]:
    """A real HTTP server on 127.0.0.1 serving the files in `root` (query strings ignored, as a URL like
    `.../saved_models.zip?dl=1` needs); yields its base URL. For the weights' and the model zoo's downloads."""

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

    with serving(http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                                 functools.partial(Quiet, directory=str(root)))) as url:
        yield url


@contextmanager
def serving(httpd: http.server.HTTPServer) -> Iterator[str]:
    """Run `httpd` on a thread for the block, then stop and close it; yields its base URL. The one way the
    tests' servers (files, the Hub's endpoints, servers that hold their answers) are run."""
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


def dead_url() -> str:
    """A URL on a port nobody listens on: connection refused."""
    return f"http://127.0.0.1:{free_port()}"
