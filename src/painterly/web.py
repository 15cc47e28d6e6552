"""`painterly serve`: a local web UI over the public API (fast models, Gatys optimisation, video).

Safe by default: it listens on 127.0.0.1, refuses uploads over a size and images over a pixel
limit, writes only inside its working folder and serves no file outside that folder and
Gradio's upload folder. Heavy jobs share one bounded pool of workers behind Gradio's queue.
This module lays out the page; `web_handlers.py` does the work behind each button.

Gradio is an optional extra, imported only when an app is built. It must be recent
(gradio>=5.31, see pyproject.toml): older releases had path-traversal and file-access
advisories (the `/file=` route, uploads outside the upload folder).
"""

from __future__ import annotations

import functools
import importlib.util
import ipaddress
import math
import os
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .config import StylizeConfig
from .errors import PainterlyError

if TYPE_CHECKING:
    import gradio

    from .web_handlers import Handlers

LOOPBACK_NAMES = ("localhost",)
# Gatys at 2048 px takes about a minute per step on a CPU and over 10 GiB; larger belongs to the CLI.
MAX_OPTIMIZE_SIDE = 2048
_DEFAULTS = StylizeConfig()
_INTRO = (
    "# painterly\nNeural style transfer on this machine: **Fast** applies a trained model in a moment, "
    "**Optimize** paints a photo in the style of paintings step by step (Gatys et al.), "
    "**Video** applies a model to a short clip. Every download carries the settings that made it."
)


def default_model_dir() -> Path:
    """Where trained models live unless `--models` says otherwise: $PAINTERLY_HOME/models or ~/.cache/painterly/models."""
    home = os.environ.get("PAINTERLY_HOME")
    return Path(home) / "models" if home else Path.home() / ".cache" / "painterly" / "models"


def build_app(
    *,
    models: Path | None = None,
    workdir: Path | None = None,
    vgg_weights: str | None = None,
    device: str = "auto",
    max_upload_mb: int = 50,
    max_pixels: int = 16_000_000,
    concurrency: int = 1,
    queue_size: int = 32,
) -> gradio.Blocks:
    """The web UI as a Gradio app, not yet launched.

    Models are listed from `models` and `default_model_dir()`. Results go into a new
    `painterly-web-*` folder inside `workdir` (default: the system's temporary folder).
    `max_pixels` bounds input images, video frames and the resize choices; `concurrency` jobs
    run at once and `queue_size` more may wait. Its `launch()` already carries the safe settings
    (loopback address, upload limit, served paths), so whoever launches it, `serve()`, a test
    or a script, gets them; a caller may still override one explicitly.
    """
    _require_gradio()
    import gradio as gr

    from .web_handlers import Handlers, ModelCatalog, Workspace

    workdir = _working_folder(workdir)
    folders = [Path(models)] if models is not None else []
    handlers = Handlers(
        catalog=ModelCatalog([*folders, default_model_dir()], device=device),
        workspace=Workspace(workdir),
        vgg_weights=vgg_weights,
        device=device,
        max_pixels=max_pixels,
    )
    max_side = math.isqrt(max_pixels)  # a long side that keeps even a square output within the limit
    # One pool for every heavy job, whichever tab it comes from: `concurrency` of them at a time.
    heavy = {"concurrency_limit": concurrency, "concurrency_id": "painterly-jobs"}
    with gr.Blocks(title="painterly", analytics_enabled=False) as app:
        gr.Markdown(_INTRO)
        with gr.Tab("Fast"):
            _fast_tab(handlers, heavy, max_side=max_side)
        with gr.Tab("Optimize"):
            _optimize_tab(handlers, heavy, max_side=max_side, random_weights=_uses_random_weights(vgg_weights))
        with gr.Tab("Video"):
            _video_tab(handlers, heavy, max_side=max_side)
    app.queue(max_size=queue_size, default_concurrency_limit=concurrency)
    app.launch = functools.partial(app.launch, **_launch_settings(workdir, max_upload_mb))
    return app


def serve(*, host: str = "127.0.0.1", port: int = 7860, models: Path | None = None, **build_options: Any) -> None:
    """Build the app and serve it until interrupted; warns when it is reachable from other machines."""
    app = build_app(models=models, **build_options)
    if not is_loopback(host):
        print(
            f"WARNING: the painterly web UI listens on {host}, so it is reachable from the network, "
            "and it has no authentication: anyone who can reach it can run jobs on this machine.",
            file=sys.stderr,
        )
    app.launch(server_name=host, server_port=port)


def is_loopback(host: str) -> bool:
    """Whether `host` only accepts connections from this machine."""
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        return False


def _working_folder(parent: Path | None) -> Path:
    """A new, empty folder for everything the server writes, inside `parent` when given.

    It is the only folder served besides Gradio's uploads, and being new it holds nothing that
    was there before: `--workdir ~` cannot expose the home folder.
    """
    if parent is not None:
        Path(parent).mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix="painterly-web-", dir=parent)).resolve()


def _require_gradio() -> None:
    if importlib.util.find_spec("gradio") is None:
        raise PainterlyError("the web UI needs the web extra: pip install 'painterly[web]'")


def _uses_random_weights(vgg_weights: str | None) -> bool:
    return (vgg_weights or os.environ.get("PAINTERLY_VGG_WEIGHTS")) == "random"


def _launch_settings(workdir: Path, max_upload_mb: int) -> dict[str, Any]:
    """What makes a launched app safe: loopback only, bounded uploads, nothing served outside workdir.

    `allowed_paths` adds only the working folder to what Gradio serves (its own upload folder);
    the monitoring page, the run history, the MCP server and server-side rendering stay off.
    """
    return {
        "server_name": "127.0.0.1",
        "max_file_size": max_upload_mb * 1024 * 1024,
        "allowed_paths": [str(workdir)],
        "show_error": False,  # a bug's traceback stays in the server log; gr.Error messages still show
        "enable_monitoring": False,
        "run_history": False,  # its page can connect a Hugging Face bucket: nothing of that for a local tool
        "mcp_server": False,
        "ssr_mode": False,
    }


# --- layout ----------------------------------------------------------------------------------


def _model_picker(handlers: Handlers, tab: str) -> gradio.Dropdown:
    """A dropdown of the models found, with a button that looks again."""
    import gradio as gr

    names = handlers.catalog.names()
    with gr.Row():
        model = gr.Dropdown(names, value=names[0] if names else None, label="Model", scale=4,
                            info=f"models in {', '.join(map(str, handlers.catalog.folders))}")
        refresh = gr.Button("Refresh", scale=0, min_width=90, size="sm")
    refresh.click(handlers.refresh_models, inputs=model, outputs=model, api_name=f"{tab}_models")
    return model


def _colour_choice(choices: tuple[str, ...]) -> gradio.Radio:
    import gradio as gr

    return gr.Radio(["none", *choices], value="none", label="Preserve colour",
                    info="luminance keeps the photo's colours and takes the style's light and texture")


def _long_side(max_side: int) -> gradio.Number:
    """An optional resize; its maximum keeps the output within the pixel limit whatever the input."""
    import gradio as gr

    return gr.Number(0, label="Long side in pixels (0 = as uploaded)", precision=0, minimum=0, maximum=max_side)


def _fast_tab(handlers: Handlers, heavy: dict, *, max_side: int) -> None:
    """A trained model applied to one or several images at once."""
    import gradio as gr

    with gr.Row():
        with gr.Column():
            model = _model_picker(handlers, "fast")
            uploads = gr.File(file_count="multiple", file_types=["image"], label="Images", elem_id="fast-images")
            strength = gr.Slider(0, 1, value=1, step=0.05, label="Strength", info="0 = the original, 1 = fully styled")
            colour = _colour_choice(("luminance",))
            size = _long_side(max_side)
            run = gr.Button("Stylise", variant="primary", elem_id="fast-run")
        with gr.Column():
            gallery = gr.Gallery(label="Results", elem_id="fast-gallery", columns=2, format="png")
            downloads = gr.File(label="Downloads (PNG with the settings inside)", file_count="multiple")
    run.click(handlers.fast, inputs=[uploads, model, strength, colour, size], outputs=[gallery, downloads],
              api_name="fast", **heavy)


def _optimize_tab(handlers: Handlers, heavy: dict, *, max_side: int, random_weights: bool) -> None:
    """Gatys optimisation with the image shown as it forms, and a Stop that keeps it."""
    import gradio as gr

    from .weights import RANDOM_WARNING

    if random_weights:
        gr.Markdown(f"⚠️ **Warning:** {RANDOM_WARNING}.", elem_id="random-weights-warning")
    with gr.Row():
        with gr.Column():
            photo = gr.File(file_types=["image"], label="Photo", elem_id="optimize-photo")
            paintings = gr.File(file_count="multiple", file_types=["image"], label="Paintings")
            sample = gr.Checkbox(False, label="Also use the built-in sample painting (blue and yellow swirls)")
            largest = min(MAX_OPTIMIZE_SIDE, max_side)
            size = gr.Slider(32, largest, value=min(_DEFAULTS.size, largest), step=16, label="Long side in pixels")
            steps = gr.Slider(1, 2000, value=_DEFAULTS.steps, step=1, label="Steps")
            with gr.Row():
                style_weight = gr.Number(_DEFAULTS.style_weight, label="Style weight", minimum=0)
                content_weight = gr.Number(_DEFAULTS.content_weight, label="Content weight", minimum=0)
            colour = _colour_choice(("luminance", "histogram"))
            with gr.Row():
                run = gr.Button("Paint", variant="primary", elem_id="optimize-run")
                stop = gr.Button("Stop (keep the current image)", variant="stop")
        with gr.Column():
            image = gr.Image(label="Result", format="png", interactive=False, height=420, elem_id="optimize-result")
            status = gr.Textbox(label="Progress", interactive=False)
            download = gr.File(label="Download (PNG with the settings inside)")
    run.click(handlers.optimize,
              inputs=[photo, paintings, sample, size, steps, style_weight, content_weight, colour],
              outputs=[image, status, download], api_name="optimize", **heavy)
    stop.click(handlers.stop, api_name="stop", concurrency_limit=None)  # never waits behind the job it stops


def _video_tab(handlers: Handlers, heavy: dict, *, max_side: int) -> None:
    """A trained model applied to every frame of a short clip; the sound is kept."""
    import gradio as gr

    with gr.Row():
        with gr.Column():
            model = _model_picker(handlers, "video")
            clip = gr.Video(label="Clip", sources=["upload"])
            strength = gr.Slider(0, 1, value=1, step=0.05, label="Strength")
            colour = _colour_choice(("luminance",))
            smooth = gr.Slider(0, 0.9, value=0, step=0.05, label="Smoothing",
                               info="blends each frame with the one before it against flicker")
            size = _long_side(max_side)
            run = gr.Button("Stylise the clip", variant="primary")
        with gr.Column():
            result = gr.Video(label="Result", interactive=False)
    run.click(handlers.video, inputs=[clip, model, strength, colour, size, smooth], outputs=result,
              api_name="video", **heavy)
