"""Helpers several test modules share: random fast models in the formats painterly reads, a loss
that turns NaN on cue, and outputs that cannot be written (a full disk, a folder nothing can be
created in). (Imported as `helpers`: pytest puts tests/ on sys.path.)"""

from __future__ import annotations

import functools
import http.server
import os
import shutil
import socket
import ssl
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest
import torch

import cli_processes
from painterly.images import save_image
from painterly.losses import PerceptualLoss
from painterly.modelfile import save_model
from painterly.transformer import Architecture, TransformerNet

STYLE = {"image": "starry.jpg", "size": 256}
TRAINING = {"lr": 0.001, "style_weight": 1e10, "batch_size": 4}


def random_model(architecture: Architecture | str = "light", *, pixel_scale: float = 1.0,
                 seed: int = 0) -> TransformerNet:
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
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    # Forked from the tests' zygote (cli_processes.py), the limit set in the child.
    command = ["-m", "painterly", *args] if not code else ["-c", textwrap.dedent(code)]
    return cli_processes.run([sys.executable, "-B", *command], cwd=cwd, capture_output=True, text=True, timeout=300,
                             file_size_limit=limit, env=env)


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


def gallery_picture(page, gallery: str, path: Path) -> np.ndarray:
    """The first picture the page's `gallery` (a CSS selector) shows, once it shows one, fetched as the browser
    fetches it and written to `path`; read back as float pixels (H, W, 3)."""
    from painterly.images import read_array

    shown = page.locator(f"{gallery} img").first
    shown.wait_for()
    response = page.request.get(shown.get_attribute("src"))
    assert response.ok, f"the gallery's picture answered {response.status}"
    path.write_bytes(response.body())
    return read_array(path)[0]


class Chromium:
    """One Playwright and one headless Chromium for the whole test process (an xdist worker), each started
    when a test first asks (`browser()`), ended by `close()`: a launch costs ~3 CPU-s, a fresh context per
    test (conftest's `open_page`) isolates cookies, storage and permissions for a fraction of that.

    Playwright's sync API marks its event loop as running in this thread between its calls, so that
    `asyncio.run` would fail in every later test of the process; `pause()` (after each test that used it)
    clears the mark and `resume()` (before the next use) sets it again, so the mark lasts only as long as
    it did when each test started its own Playwright.
    """

    def __init__(self) -> None:
        self._playwright = None
        self._loop = None  # Playwright's event loop, marked running in this thread while it is in use
        self._browser = None

    @property
    def playwright(self):  # noqa: ANN201 - playwright.sync_api.Playwright, imported only when a test needs it
        if self._playwright is None:
            from playwright import sync_api

            self._playwright = sync_api.sync_playwright().start()
            import asyncio

            self._loop = asyncio._get_running_loop()
        else:
            self.resume()
        return self._playwright

    def browser(self):  # noqa: ANN201 - playwright.sync_api.Browser
        assert Path(CHROMIUM).exists(), f"no Chromium at {CHROMIUM}: apt-get install chromium (scripts/test.sh does)"
        playwright = self.playwright
        if self._browser is None:
            self._browser = launch_chromium(playwright)
        return self._browser

    def resume(self) -> None:
        if self._loop is not None:
            import asyncio

            asyncio._set_running_loop(self._loop)

    def pause(self) -> None:
        if self._loop is not None:
            import asyncio

            asyncio._set_running_loop(None)

    def close(self) -> None:
        if self._playwright is None:
            return
        self.resume()
        try:
            if self._browser is not None:
                self._browser.close()
        finally:
            self._playwright.stop()
            self._playwright = self._loop = self._browser = None


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


def adain_model(path: Path) -> Path:
    """A random light AdaIN model whose output sits around mid-grey and varies with the photo and the painting."""
    from painterly import weights
    from painterly.adain import ADAIN_ARCHITECTURES, AdaINNet, encoder_state_from_vgg

    arch = ADAIN_ARCHITECTURES["light"]
    torch.manual_seed(0)
    vgg = weights.random_state_dict("vgg19", seed=0, upto=5)  # conv1_1 … conv3_1: all the light encoder has
    net = AdaINNet(arch, encoder_state=encoder_state_from_vgg(vgg, arch))
    with torch.no_grad():
        last = net.decoder[-1]
        last.weight.mul_(10)  # random features vary little: amplified, the output shows them (and the style)
        last.bias.fill_(0.5)
    return save_model(net, path, style={"kind": "random, for tests"})


# The shared servers' models and limits (low, so that refusals are cheap to provoke).
WEB_FAST = "tiny.safetensors"  # a tiny random fast (Johnson) model
WEB_ADAIN = "any.safetensors"  # a tiny random light AdaIN model
WEB_MAX_UPLOAD_MB = 1
WEB_MAX_PIXELS = 1_000_000


class WebServer(NamedTuple):
    url: str
    workdir: Path  # the app's painterly-web-* folder, in root/work (beside a private.txt it must never serve)
    models: Path  # its --models folder


@contextmanager
def shared_web_server(root: Path, *, with_adain: bool) -> Iterator[WebServer]:
    """A web UI the tests of several modules share (conftest's `web_server` and `adain_server`, one each per
    process: building and launching one costs ~2 CPU-s), on a free port of 127.0.0.1 with random VGG weights,
    WEB_MAX_UPLOAD_MB and WEB_MAX_PIXELS, Gradio's uploads in root/uploads and no models from the real user
    cache. `with_adain`: WEB_ADAIN beside WEB_FAST, one job at a time (the default); otherwise WEB_FAST alone,
    two at once, and a private.txt beside the working folder. Closed after the block; until then
    $GRADIO_TEMP_DIR and $PAINTERLY_HOME name its folders (Gradio checks uploads against the first at every
    request)."""
    from painterly import web

    models = root / "models"
    models.mkdir()
    if with_adain:
        adain_model(models / WEB_ADAIN)
    tiny_model(models / WEB_FAST)
    parent = root / "work"
    parent.mkdir()
    if not with_adain:
        (parent / "private.txt").write_text("TOP SECRET CONTENT")  # there before: must not be served
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PAINTERLY_HOME", str(root / "home"))  # no models from the real user cache
        patch.setenv("GRADIO_TEMP_DIR", str(root / "uploads"))
        app = web.build_app(models=models, workdir=parent, vgg_weights="random", device="cpu",
                            max_upload_mb=WEB_MAX_UPLOAD_MB, max_pixels=WEB_MAX_PIXELS,
                            concurrency=web.CONCURRENCY if with_adain else 2)
        [workdir] = parent.glob("painterly-web-*")
        port = free_port()
        app.launch(server_port=port, prevent_thread_lock=True, quiet=True)
        try:
            yield WebServer(f"http://127.0.0.1:{port}", workdir, models)
        finally:
            app.close()


def picture(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A smooth gradient with some noise: a real picture, not a flat colour."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width] / max(height, width)
    image = np.stack([x, y, 1 - x * y], axis=2) * rng.uniform(0.5, 1, 3) + rng.normal(0, 0.05, (height, width, 3))
    return np.clip(image, 0, 1).astype(np.float32)


def write_picture(path: Path, height: int = 24, width: int = 40, seed: int = 0) -> Path:
    return save_image(picture(height, width, seed), path)


@functools.cache
def click_command(app):  # noqa: ANN001, ANN201 - a typer.Typer; its click.Command
    """The click command typer builds from `app`'s functions, built once per process: typer's `CliRunner`
    rebuilds it at every invoke (~50 CPU-ms for painterly's, hundreds of times a suite), where click's own
    model is one command object invoked again and again. conftest hands it to typer's CliRunner."""
    import typer.main

    return typer.main.get_command(app)


@functools.cache
def _tls_context() -> ssl.SSLContext:
    return ssl.create_default_context()


def local_http() -> dict:
    """httpx keyword arguments for talking to a test server: one TLS context for the whole process. httpx
    otherwise loads the CA bundle for every client it makes (~40 CPU-ms), and gradio_client makes one for
    each upload, request, stream and download: 378 in test_web and test_web_adain, for servers on plain
    http (the two modules took 65 s instead of 80 s serially, 2026-12-02)."""
    return {"verify": _tls_context()}


def web_client(url: str, downloads: Path):
    """A gradio_client `Client` of the web UI at `url`, saving what it downloads in `downloads`."""
    from gradio_client import Client

    # ssl_verify goes to httpx's `verify` as it is (its docs say a bool; httpx takes a context too)
    return Client(url, verbose=False, download_files=str(downloads), ssl_verify=_tls_context())


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
