"""The web UI's Live tab: headless Chromium's fake camera streamed through a random light model and back.

The server is the process's shared one (conftest's `web_server`); a random light network is added to its
models folder beside the tiny one (and removed afterwards), and the tab lists it at page load, chosen
first. The stream must bring back stylised frames (the model's output of the camera's frame, not the
frame), changing as the camera's picture moves, with a frame rate in the page, and leave no file anywhere
under the server's folders.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import io
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from painterly.config import ApplyConfig
from painterly.fast import FastStylizer
from painterly.pixels import to_float32

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `benchmarks` is a folder of the repository

from benchmarks.live import camera_frames, fake_camera, write_models, write_y4m  # noqa: E402

LIGHT = "wave-light.safetensors"  # listed after tiny.safetensors, a model of another architecture
SCREENSHOT_ENV = "PAINTERLY_WEB_LIVE_SCREENSHOT"  # where the browser test saves a screenshot of the tab
CAMERA = (240, 320)  # the fake camera's frames: 4 views of the drawn landscape, 48 px apart, 5 a second
SIZE = 160  # the working size the test chooses: the smallest, the cheapest to run


def decoded(data_url: str) -> np.ndarray:
    """A data URL's image as an HxWx3 float array in [0, 1]."""
    payload = base64.b64decode(data_url.split(",", 1)[1])
    return np.asarray(Image.open(io.BytesIO(payload)).convert("RGB"), dtype=np.float32) / 255


def files_under(folder: Path) -> set[Path]:
    return {path for path in folder.rglob("*") if path.is_file()}


def test_frame_rate_is_measured_over_the_last_frames_and_restarts_after_a_pause():
    from painterly.web_live import FrameRate  # Gradio with it: imported by the tests that need it, not at collection

    rate = FrameRate(window=3, gap_s=1.0)
    assert rate.tick(9.9, 10.0) is None  # one frame: no rate yet
    assert rate.tick(10.1, 10.5) == 2.0
    assert [rate.tick(10.5, 10.6), rate.tick(10.6, 10.7)] == pytest.approx([2 / 0.6, 2 / 0.2])  # the last 3 only
    assert rate.tick(10.8, 15.0) == pytest.approx(2 / 4.4)  # a slow frame: still the same stream
    assert rate.tick(16.5, 16.6) is None  # a pause: the stream was started again, measured afresh


def test_the_model_list_names_each_architecture_and_a_mistake_is_one_line(tmp_path):
    """The handler alone: labels from the files' metadata, the first listed when no light network is there,
    and a wrong model, working size or a frame over the pixel limit one line that stays in the page (and ends
    the stream)."""
    import gradio as gr

    from helpers import tiny_model
    from painterly.modelfile import save_model
    from painterly.transformer import TransformerNet
    from painterly.web_handlers import Handlers, ModelCatalog
    from painterly.web_live import LiveStreams

    tiny_model(tmp_path / "a-tiny.safetensors")
    save_model(TransformerNet("standard"), tmp_path / "b-standard.safetensors", style={"image": "random"})
    handlers = Handlers(catalog=ModelCatalog([tmp_path], device="cpu"), workspace=None, vgg_weights=None,  # type: ignore[arg-type]
                        device="cpu", max_pixels=1_000_000)
    streams = LiveStreams(handlers)
    listed = streams.models()
    assert listed.choices == [("a-tiny.safetensors", "a-tiny.safetensors"),
                              ("b-standard.safetensors · standard", "b-standard.safetensors")]
    assert listed.value == "a-tiny.safetensors"  # no light network: the first listed
    frame, request = camera_frames(24, 32, 1)[0], gr.Request(session_hash="s")
    for model, size, limit, message in (
            ("gone.safetensors", 160, 1_000_000, "unknown model 'gone.safetensors': choose one from the list"),
            ("a-tiny.safetensors", 100, 1_000_000, "working size: choose one of 160, 320, 640 (long side"),
            ("a-tiny.safetensors", 160, 700, "camera frame: 32x24 = 768 pixels is over the limit of 700")):
        with pytest.raises(gr.Error) as error:
            LiveStreams(dataclasses.replace(handlers, max_pixels=limit)).frame(frame, model, size, request)
        assert error.value.message.startswith(message) and "\n" not in error.value.message, error.value.message
        assert error.value.duration is None  # stays until closed
    styled, readout = streams.frame(frame, "a-tiny.safetensors", 160, request)
    assert styled.shape == (24, 32, 3) and styled.dtype == np.uint8  # a small frame is not enlarged
    assert readout.startswith("measuring…") and "32×24" in readout and "network" not in readout


@pytest.fixture
def light(web_server) -> Iterator[Path]:
    """The random light network in the shared server's models folder for the test, then removed (the other
    modules' tests list that folder's models)."""
    path = write_models(web_server.models, ("light",))["light"].rename(web_server.models / LIGHT)
    yield path
    path.unlink()


# Every src the stylised frame takes, collected in the page as it changes (not sampled by polling from here).
WATCH_RESULT = """() => {
    const box = document.querySelector("#live-result");
    window.shownFrames = new Set();
    const note = () => {
        const src = box.querySelector("img")?.getAttribute("src");
        if (src) window.shownFrames.add(src);
    };
    note();
    new MutationObserver(note).observe(box, {subtree: true, childList: true, attributes: true,
                                             attributeFilter: ["src"]});
}"""


def test_a_real_browser_streams_its_camera_through_the_light_model(web_server, light, open_page, tmp_path):
    from playwright import sync_api

    url, workdir, _ = web_server
    views = camera_frames(*CAMERA, count=4, step=48)
    clip = write_y4m(views, tmp_path / "camera.y4m", fps=5)
    root = workdir.parents[1]  # the server's folder: models, Gradio's uploads and cache, the working folder
    before = files_under(root)
    page = open_page(url, browser_args=fake_camera(clip))
    page.get_by_role("tab", name="Live").click()
    # Listed at page load, the light network chosen first though listed second.
    sync_api.expect(page.locator("#live-model input")).to_have_value(re.compile(r"^wave-light.* · light$"))
    page.locator("#live-size").get_by_text(f"{SIZE}×{SIZE * 3 // 4}").click()
    camera = page.locator("#live-camera")
    camera.get_by_text("Click to Access Webcam").click()
    page.evaluate(WATCH_RESULT)
    camera.get_by_role("button", name="capture photo").click()  # "Record": starts the stream
    with contextlib.suppress(sync_api.TimeoutError):  # three changes of the stylised frame; asserted below
        page.wait_for_function("() => window.shownFrames.size >= 4", polling=100, timeout=90_000)
    shown = page.evaluate("() => [...window.shownFrames]")
    readout = page.locator("#live-rate textarea").input_value()
    if os.environ.get(SCREENSHOT_ENV):
        page.screenshot(path=os.environ[SCREENSHOT_ENV], full_page=True)
    camera.get_by_text("Stop", exact=True).click()  # the stream's end, so that its slot is free at once
    page.context.close()  # the camera off before the checks below
    frames = [decoded(src) for src in dict.fromkeys(shown) if src]
    assert len(frames) >= 4, "the stylised frame did not change three times within 90 s"
    # What the page sends is the camera's view mirrored (Gradio's default for a webcam), at the working size.
    stylizer = FastStylizer(light, ApplyConfig(device="cpu", size=SIZE))
    plain = [to_float32(stylizer.prepare(view[:, ::-1])) for view in views]
    expected = [stylizer.stylize(view) for view in plain]
    matched = set()
    for styled in frames:
        assert styled.shape == expected[0].shape == (120, 160, 3)
        errors = [float(np.abs(styled - candidate).mean()) for candidate in expected]
        nearest = int(np.argmin(errors))
        # The model's output of one of the views: a random network amplifies the two JPEG encodings' noise (the
        # page's of the camera frame, the server's of the result), yet the others are twice as far from it...
        assert errors[nearest] < 0.6 * sorted(errors)[1], errors
        assert np.abs(styled - plain[nearest]).mean() > 2 * errors[nearest]  # ...and the view itself further
        matched.add(nearest)
    assert len(matched) >= 2  # the stream follows the camera: frames of different views came back
    assert re.search(r"^\d+\.\d+ frames/s \(server, last 20 frames\) · model \d+ ms a frame", readout), readout
    assert "light network" in readout and "160×120" in readout
    assert files_under(root) == before  # no frame written anywhere: not the camera's, nor the result's
