"""The web UI's Live tab: the browser's camera through a fast model and back, frame by frame, nothing stored.

Gradio streams the webcam: every `STREAM_EVERY_S` the page sends the camera's current frame (a JPEG
data URL, decoded in memory) unless the frame before is still being stylised, so the rate shown is
what the model and the connection manage, never a growing backlog. Each frame is downscaled to the
working size chosen (its long side; a smaller frame is not enlarged) and stylised by the model that
`ModelCatalog` keeps loaded between frames; the result goes back as a JPEG data URL inside the
response (`in_memory_image`) instead of through Gradio's cache, so a stream writes no file. A stream holds
one of `LIVE_SESSIONS` slots of its own, not the heavy jobs' pool (a camera would hold it for
minutes), for at most `TIME_LIMIT_S` seconds; more sessions wait in the queue. (A page closed mid-stream
keeps its slot until then: Gradio sees the page go but waits out the stream's time limit for its next
frame.) The frame rate shown is measured on the server, over the last `RATE_WINDOW` frames of the session.
Browsers give a page the camera only on a secure origin: http://127.0.0.1 and localhost, or HTTPS.

Imported only by `web.build_app`, once it has made sure that Gradio is installed.
"""

from __future__ import annotations

import base64
import io
import threading
import time
from collections import OrderedDict, deque
from dataclasses import replace
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np
from gradio.data_classes import Base64ImageData
from PIL import Image

from .config import LIVE_SIZES, ApplyConfig
from .errors import PainterlyError, UsageError
from .images import check_pixels
from .modelfile import read_metadata
from .transformer import ARCHITECTURES, Architecture
from .web_handlers import FAST, Handlers, shown_in_page

DEFAULT_SIZE = 320  # long side of the working size: 320×240 from a 4:3 camera
DEFAULT_ARCH = "light"  # the model chosen first, where one of this architecture is listed
CAMERA = {"video": {"width": {"ideal": 640}, "height": {"ideal": 480}}}  # what the page asks the camera for
STREAM_EVERY_S = 0.04  # the page sends a frame at most this often (25 a second), and none while one is out
TIME_LIMIT_S = 120  # a stream ends after this long (Record starts another); a closed page holds its slot till then
LIVE_SESSIONS = 2  # streams at once; each runs the model on every core, so more only share them
RATE_WINDOW = 20  # frames the rate is measured over
RESTART_GAP_S = 2.0  # a frame this long after the one before was sent back starts the measurement afresh
JPEG_QUALITY = 85
_TRACKED = 64  # sessions whose rate is remembered; the oldest is forgotten first
_ARCH_NAMES = {arch: name for name, arch in ARCHITECTURES.items()}


def in_memory_image(**options: Any) -> gr.Image:
    """An output `gr.Image` whose pictures go inside the response as JPEG data URLs, never into Gradio's cache.

    (`gr.Image` saves every array it shows as a file in the cache: a stream would leave one a frame.) Its
    own `postprocess` is replaced on the instance: a subclass of a Gradio component would make Gradio write a
    .pyi stub beside this module when it is imported.
    """
    image = gr.Image(**options)

    def postprocess(value: Any) -> Base64ImageData | None:
        return None if value is None else Base64ImageData(url=jpeg_data_url(np.asarray(value)))

    image.postprocess = postprocess  # type: ignore[method-assign]
    return image


def jpeg_data_url(image: np.ndarray) -> str:
    """An HxWx3 uint8 array as a `data:image/jpeg;base64,...` URL, encoded in memory."""
    with io.BytesIO() as buffer:
        Image.fromarray(image).save(buffer, "JPEG", quality=JPEG_QUALITY)
        return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


class FrameRate:
    """Frames per second over the last `window` frames of one stream.

    A frame that arrives over `gap_s` after the one before it was finished starts afresh: the stream was
    stopped and started again. (The gap is the idle time between frames, not the time between their ends,
    so a slow model, seconds a frame, still gets a rate.)
    """

    def __init__(self, window: int = RATE_WINDOW, gap_s: float = RESTART_GAP_S) -> None:
        self._ends: deque[float] = deque(maxlen=window)
        self._gap_s = gap_s

    def tick(self, start: float, end: float) -> float | None:
        """Count a frame that arrived at `start` and was finished at `end` (seconds); the rate so far, None
        until two frames are in."""
        if self._ends and start - self._ends[-1] > self._gap_s:
            self._ends.clear()
        self._ends.append(end)
        if len(self._ends) < 2:
            return None
        return (len(self._ends) - 1) / max(self._ends[-1] - self._ends[0], 1e-9)


class LiveStreams:
    """What the Live tab's stream does with each frame, and each session's frame rate."""

    def __init__(self, handlers: Handlers) -> None:
        self.handlers = handlers
        self._rates: OrderedDict[str, FrameRate] = OrderedDict()
        self._lock = threading.Lock()

    def frame(self, image: np.ndarray | None, model: str | None, size: float | None,
              request: gr.Request) -> tuple[np.ndarray | None, str]:
        """One camera frame stylised at the working size, and the readout line."""
        if image is None:
            return None, "waiting for the camera"
        arrived = time.perf_counter()
        with shown_in_page():
            long_side = _working_size(size)
            height, width = image.shape[:2]
            check_pixels("camera frame", width, height, self.handlers.max_pixels)  # the page may send any size
            config = ApplyConfig(size=long_side if max(height, width) > long_side else None,
                                 device=self.handlers.device, max_pixels=self.handlers.max_pixels)
            stylizer = self.handlers.catalog.stylizer(model, config, kind=FAST)
            start = time.perf_counter()
            styled = stylizer.stylize(np.ascontiguousarray(image[..., :3], dtype=np.uint8))
            seconds = time.perf_counter() - start
        rate = self._rate(request.session_hash or "").tick(arrived, time.perf_counter())
        shown = "measuring…" if rate is None else f"{rate:.1f} frames/s" if rate >= 1 else f"{rate:.2f} frames/s"
        architecture = architecture_name(self.handlers.catalog, model)
        network = f" · {architecture} network" if architecture else ""
        return styled, (f"{shown} (server, last {RATE_WINDOW} frames) · model {seconds * 1000:.0f} ms a frame · "
                        f"{styled.shape[1]}×{styled.shape[0]}{network}")

    def models(self) -> gr.Dropdown:
        """The model list as it is now, for the page's load event."""
        choices, default = self.choices()
        return gr.Dropdown(choices=choices, value=default)

    def choices(self) -> tuple[list[tuple[str, str]], str | None]:
        """The fast models listed now, each labelled with its architecture, and the light network's first."""
        catalog = self.handlers.catalog
        choices = []
        for label, name in catalog.choices(FAST):
            architecture = architecture_name(catalog, name)
            choices.append((f"{label} · {architecture}" if architecture else label, name))
        return choices, default_model(catalog, [name for _, name in choices])

    def _rate(self, session: str) -> FrameRate:
        with self._lock:
            rate = self._rates.pop(session, None) or FrameRate()
            self._rates[session] = rate  # the most recent last
            while len(self._rates) > _TRACKED:
                self._rates.popitem(last=False)
            return rate


def architecture_name(catalog: Any, name: str | None) -> str | None:
    """"light" or "standard" for a model file whose metadata records that architecture (anti-aliased or not:
    the speed is the size's); None for another one, a file without one (.pth, .onnx) or a catalogue model."""
    for folder in catalog.folders:
        path = Path(folder) / (name or "")
        if name and path.suffix.lower() == ".safetensors" and path.is_file():
            try:
                recorded = read_metadata(path).get("architecture")
            except PainterlyError:
                return None
            try:
                architecture = Architecture.from_dict(recorded)
            except ValueError:
                return None
            return _ARCH_NAMES.get(replace(architecture, antialias=False))
    return None


def default_model(catalog: Any, names: list[str]) -> str | None:
    """The first listed model of DEFAULT_ARCH, else the first listed, else None."""
    return next((name for name in names if architecture_name(catalog, name) == DEFAULT_ARCH),
                names[0] if names else None)


def _working_size(size: float | None) -> int:
    if size is None or int(size) not in LIVE_SIZES:
        raise UsageError(f"working size: choose one of {', '.join(map(str, LIVE_SIZES))} (long side in pixels), "
                         f"got {size!r}")
    return int(size)


def live_tab(handlers: Handlers) -> None:
    """The Live tab's layout and its stream; called inside `with gr.Tab("Live")`."""
    streams = LiveStreams(handlers)
    gr.Markdown("Your camera, stylised as it films by a fast model on this machine. The frames go to the "
                "server and back and are not stored. The light network keeps up best on a CPU.")
    with gr.Row():
        with gr.Column():
            choices, default = streams.choices()
            model = gr.Dropdown(choices, value=default, label="Model",
                                info="fast models of one style; the architecture after the name",
                                elem_id="live-model")
            size = gr.Radio([(f"{side}×{side * 3 // 4}", side) for side in LIVE_SIZES], value=DEFAULT_SIZE,
                            label="Working size", info="each frame is downscaled to this (long side) first",
                            elem_id="live-size")
            camera = gr.Image(sources=["webcam"], streaming=True, type="numpy", label="Camera",
                              webcam_options=gr.WebcamOptions(constraints=CAMERA), elem_id="live-camera")
        with gr.Column():
            result = in_memory_image(label="Stylised", interactive=False, height=450, elem_id="live-result",
                                     buttons=["fullscreen"])  # scaled to fill its box (web._CSS)
            rate = gr.Textbox(label="Frame rate", interactive=False, elem_id="live-rate")
    # Looked at again on each page load: a model trained or pulled since the server started is listed.
    gr.on(None, streams.models, inputs=[], outputs=model, api_visibility="private")
    camera.stream(streams.frame, inputs=[camera, model, size], outputs=[result, rate], api_name="live",
                  stream_every=STREAM_EVERY_S, time_limit=TIME_LIMIT_S, concurrency_limit=LIVE_SESSIONS,
                  concurrency_id="painterly-live", show_progress="hidden")
