"""`painterly serve`: a local web UI over the public API (fast models, any painting, Gatys optimisation, video).

Safe by default: it listens on 127.0.0.1, refuses uploads over a size and images over a pixel
limit, writes only inside its working folder, serves from it only the files it wrote there
(besides Gradio's uploads), removes results after `keep_results_minutes` and the working folder
(Gradio's uploads and cache included, unless GRADIO_TEMP_DIR puts them elsewhere) at shutdown,
and fetches no URL for anyone (a published model is pulled by the server itself, from the
catalogue's own URLs or $PAINTERLY_MODELS_MIRROR, never from a URL a request names). The page says
whether the Optimize tab has its VGG weights; the Fast and Any painting tabs list the catalogue's
models of their kind, downloaded or not, with their licence and source.
Heavy jobs share one bounded pool of workers behind Gradio's queue. This module lays out the
page; `web_handlers.py` does the work behind each button and `web_files.py` keeps the working
folder and guards what is served.

Gradio is an optional extra, imported only when an app is built. It must be recent
(gradio>=5.31, see pyproject.toml): older releases had path-traversal and file-access
advisories (the `/file=` route, uploads outside the upload folder).
"""

from __future__ import annotations

import atexit
import functools
import importlib.util
import inspect
import ipaddress
import math
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .config import (
    COLOR_MODES,
    FAST_COLOR_MODES,
    FLOWS,
    JOHNSON_COLOR_MODES,
    OPTIMIZERS,
    ApplyConfig,
    StylizeConfig,
)
from .errors import PainterlyError, UsageError
from .zoo import models_dir

if TYPE_CHECKING:
    import gradio

    from .web_files import Workspace
    from .web_handlers import Handlers
    from .web_regions import RegionControls

LOOPBACK_NAMES = ("localhost",)
# What `painterly serve` and `build_app` run with unless told otherwise.
PORT = 7860
MAX_UPLOAD_MB = 50
MAX_PIXELS = 16_000_000  # a 4000x4000 photo; bounds input images, video frames and the resize choices
CONCURRENCY = 1  # jobs at once: a fast model or Gatys already uses every core
QUEUE_SIZE = 32
KEEP_RESULTS_MINUTES = 60  # long enough to download a result, short enough that a long-running server stays small
# Gatys at 2048 px takes about a minute per step on a CPU and over 10 GiB; larger belongs to the CLI.
MAX_OPTIMIZE_SIDE = 2048
_DEFAULTS = StylizeConfig()
_FAST_DEFAULTS = ApplyConfig()
_INTRO = (
    "# painterly\nNeural style transfer on this machine: **Fast** applies a trained model of one style in a "
    "moment, **Any painting** paints photos after any paintings you upload, as quickly (an arbitrary-style "
    "model, AdaIN), **Optimize** paints a photo in the style of paintings step by step (Gatys et al.), "
    "**Video** applies a model to a short clip, **Live** to your camera as it films. Every download carries the "
    "settings that made it."
)
_MASK_HELP = ("A mask is a PNG with one flat colour per region (at most 16). Its regions are numbered in the order "
              "their colours first appear, reading from the top-left row by row; region 1 takes painting 1, "
              "and so on, unless **Regions** says otherwise: `2, 1, keep` gives region 1 the second painting, "
              "region 2 the first, and keeps the photo in region 3.")
# A result smaller than its box (the Optimize tab's 128-px first look in a 420-px box) is scaled to fit.
_CSS = "#optimize-result img, #live-result img { width: 100%; height: 100%; object-fit: contain; }"


default_model_dir = models_dir  # where trained and pulled models live unless `--models` adds a folder: the zoo's


def build_app(
    *,
    models: Path | None = None,
    workdir: Path | None = None,
    vgg_weights: str | None = None,
    device: str = "auto",
    max_upload_mb: int = MAX_UPLOAD_MB,
    max_pixels: int = MAX_PIXELS,
    concurrency: int = CONCURRENCY,
    queue_size: int = QUEUE_SIZE,
    keep_results_minutes: float = KEEP_RESULTS_MINUTES,
) -> gradio.Blocks:
    """The web UI as a Gradio app, not yet launched.

    Models are listed from `models` and `zoo.models_dir()`, beside the catalogue's. Results go into a new
    `painterly-web-*` folder inside `workdir` (default: the system's temporary folder); each job's
    folder is removed `keep_results_minutes` after it was written, and the `painterly-web-*`
    folder when the server shuts down (or the process exits); `workdir` itself is kept. Gradio's
    uploads and cache go into that folder too, unless GRADIO_TEMP_DIR is set (a process serving
    several apps at once sets it). `max_pixels` bounds input images, video frames and the resize
    choices; `concurrency` jobs run at once and `queue_size` more may wait. Its `launch()` already
    carries the safe settings (loopback address, upload limit, the guard on what is served, no URL
    fetching), so whoever launches it, `serve()`, a test or a script, gets them; a caller may still
    override one explicitly.
    """
    _require_gradio()
    if not (isinstance(keep_results_minutes, (int, float)) and keep_results_minutes >= 1):
        raise UsageError(f"keep results must be at least 1 minute, got {keep_results_minutes!r}")
    from .web_files import CLEANUP_EVERY_S, Workspace  # no Gradio in it

    keep_seconds = keep_results_minutes * 60
    workspace = Workspace(_working_folder(workdir), keep_seconds=keep_seconds)
    atexit.register(workspace.close)  # also when the server thread cannot finish its own shutdown
    workspace.keep_gradio_files()  # before Gradio is imported: it reads GRADIO_TEMP_DIR then
    import gradio as gr

    from .web_handlers import Handlers, ModelCatalog
    from .web_live import live_tab

    folders = [Path(models)] if models is not None else []
    handlers = Handlers(
        catalog=ModelCatalog([*folders, models_dir()], device=device),
        workspace=workspace,
        vgg_weights=vgg_weights,
        device=device,
        max_pixels=max_pixels,
    )
    max_side = math.isqrt(max_pixels)  # a long side that keeps even a square output within the limit
    # One pool for every heavy job, whichever tab it comes from: `concurrency` of them at a time.
    heavy = {"concurrency_limit": concurrency, "concurrency_id": "painterly-jobs"}
    # delete_cache: Gradio's own copies of uploads and results age out with the job folders.
    with gr.Blocks(title="painterly", analytics_enabled=False,
                   delete_cache=(CLEANUP_EVERY_S, int(keep_seconds))) as app:
        gr.Markdown(_INTRO)
        with gr.Tab("Fast"):
            _fast_tab(handlers, heavy, max_side=max_side)
        with gr.Tab("Any painting", elem_id="any-painting-tab"):
            _any_painting_tab(handlers, heavy, max_side=max_side)
        with gr.Tab("Optimize"):
            _optimize_tab(handlers, heavy, max_side=max_side, random_weights=_uses_random_weights(vgg_weights))
        with gr.Tab("Video"):
            _video_tab(handlers, heavy, max_side=max_side)
        with gr.Tab("Live", elem_id="live-tab"):
            live_tab(handlers)
    app.queue(max_size=queue_size, default_concurrency_limit=concurrency)
    _fetch_no_urls(app)
    app.launch = functools.partial(_launch, app, app.launch, workspace, max_upload_mb)
    return app


def serve(*, host: str = "127.0.0.1", port: int = PORT, models: Path | None = None, **build_options: Any) -> None:
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
    """Whether the page shows the random-weights banner: `weights.random_weights_warning` decides, as for the
    CLI (an explicit --vgg-weights random or $PAINTERLY_RANDOM_WEIGHTS_OK=1 is consent)."""
    from .weights import random_weights_warning

    return random_weights_warning(vgg_weights) is not None


def _launch(app: gradio.Blocks, launch: Callable[..., Any], workspace: Workspace, max_upload_mb: int,
            **options: Any) -> Any:
    """Gradio's `launch` with painterly's safe settings; built afresh for each launch (Gradio changes them).

    Gradio is quiet (its hints, such as `share=True`, are for the authors of a Gradio app, not for
    the user of a CLI): painterly says where it serves instead, unless `quiet=True`. A launch that
    blocks (no `prevent_thread_lock`, not an interactive session) serves until Ctrl-C or SIGTERM,
    then closes the server, which removes the working folder, and lets the interrupt through.
    """
    settings = {**_launch_settings(workspace, max_upload_mb), "css": _CSS, **options}
    blocking = not settings.pop("prevent_thread_lock", False) and not _interactive()
    launched = launch(**settings, prevent_thread_lock=True)
    if not options.get("quiet", False):
        print(f"painterly: serving on {str(app.local_url).rstrip('/')} (Ctrl-C to stop)", file=sys.stderr)
    if blocking:
        try:
            while app.is_running:
                time.sleep(0.1)
        finally:
            app.close(verbose=False)
    return launched


def _interactive() -> bool:
    """A Python prompt or notebook, where Gradio's `launch` returns at once: so does painterly's."""
    return bool(getattr(sys, "ps1", sys.flags.interactive))


def vgg_weights_status(vgg_weights: str | None) -> tuple[bool, str]:
    """(ready, a line of Markdown): whether the Optimize tab has its VGG weights and, if not, the way out.

    Torch-free and without a download: it looks at the cache (`weights.status`) or the named file,
    as `weights.resolve` would take them, so a page load costs nothing.
    """
    from . import weights

    source = vgg_weights or os.environ.get(weights.WEIGHTS_ENV) or "imagenet"
    restart = "restart with `painterly serve --vgg-weights PATH` (a .pth or .safetensors file)"
    if source.lower() == "random":
        return True, "VGG weights: **random**: random VGG weights give colours and coarse texture only."
    if source.lower() != "imagenet":
        path = Path(source)
        if path.is_file():
            return True, f"VGG weights: the file `{path}`."
        return False, (f"⚠️ **The VGG weights file `{path}` does not exist: the Optimize tab will fail.** "
                       f"Fetch the ImageNet weights with `painterly weights --download`, or {restart}.")
    [row] = [row for row in weights.status() if row["arch"] == _DEFAULTS.vgg]
    label = f"VGG-{_DEFAULTS.vgg.removeprefix('vgg')}"
    if row["present"]:
        return True, f"VGG weights: {label} ImageNet weights present (`{row['path']}`)."
    return False, (f"⚠️ **The {label} ImageNet weights are missing** (not in `{row['path']}`): the first "
                   "Paint tries to download them, and **offline the Optimize tab will fail**. Fetch them once "
                   f"with `painterly weights --download`, or {restart}, or `--vgg-weights random` "
                   "(offline, colours and coarse texture only).")


def _launch_settings(workspace: Workspace, max_upload_mb: int) -> dict[str, Any]:
    """What makes a launched app safe: loopback only, bounded uploads, only painterly's files served.

    `allowed_paths` adds the working folder to what Gradio serves (its own upload folder), and
    `web_files.FileGuard` in front of Gradio narrows that to the files painterly wrote there and
    refuses the routes that fetch a URL; its lifespan removes old jobs on a timer and the working
    folder at shutdown. The monitoring page, the run history, the MCP server and server-side
    rendering stay off.
    """
    from gradio.utils import get_upload_folder
    from starlette.middleware import Middleware

    from .web_files import FileGuard, lifespan

    guard = Middleware(FileGuard, workspace=workspace, upload_folder=Path(get_upload_folder()))
    return {
        "server_name": "127.0.0.1",
        "max_file_size": max_upload_mb * 1024 * 1024,
        "allowed_paths": [str(workspace.root)],
        "app_kwargs": {"middleware": [guard], "lifespan": lifespan(workspace)},
        "quiet": True,  # Gradio's hints (`share=True`, `gradio deploy`) are for Gradio app authors
        "show_error": False,  # a bug's traceback stays in the server log; gr.Error messages still show
        "enable_monitoring": False,
        "run_history": False,  # its page can connect a Hugging Face bucket: nothing of that for a local tool
        "mcp_server": False,
        "ssr_mode": False,
    }


def _fetch_no_urls(app: gradio.Blocks) -> None:
    """Make every component refuse a file given as a URL instead of downloading it.

    Gradio downloads a file input whose path is an http(s) URL (its own check only keeps out
    private addresses); painterly takes uploads only. Gradio has no setting for it, so each
    component's own copy-to-cache step, through which every input and output file passes, refuses URLs.
    """
    for block in app.blocks.values():
        for name in ("move_resource_to_block_cache", "async_move_resource_to_block_cache"):
            move = getattr(block, name, None)
            if move is not None:
                setattr(block, name, _refusing_urls(move))


def _refusing_urls(move: Callable[[Any], Any]) -> Callable[[Any], Any]:
    import gradio as gr

    from .web_files import NO_URLS, is_url

    def check(path: Any) -> None:
        if isinstance(path, str) and is_url(path):
            raise gr.Error(NO_URLS, print_exception=False)

    if inspect.iscoroutinefunction(move):
        async def moved_async(path: Any) -> Any:
            check(path)
            return await move(path)

        return moved_async

    def moved(path: Any) -> Any:
        check(path)
        return move(path)

    return moved


# --- layout ----------------------------------------------------------------------------------


def _model_picker(handlers: Handlers, tab: str, *, arbitrary: bool = False, published: bool = False
                  ) -> tuple[gradio.Dropdown, gradio.Button]:
    """A dropdown of the models of one kind found (fast, or arbitrary-style), with a button that looks again
    (returned too, for the lists that follow it); with `published`, the catalogue's models of that kind beside
    it (`_published_picker`)."""
    import gradio as gr

    from .web_handlers import ARBITRARY, FAST

    kind = ARBITRARY if arbitrary else FAST
    choices = handlers.catalog.choices(kind)
    folders = ", ".join(map(str, handlers.catalog.folders))
    info = f"arbitrary-style (AdaIN) models in {folders}" if arbitrary else f"models in {folders}"
    with gr.Row():
        model = gr.Dropdown(choices, value=choices[0][1] if choices else None, label="Model", scale=4, info=info,
                            elem_id=f"{tab}-model")
        refresh = gr.Button("Refresh", scale=0, min_width=90, size="sm", elem_id=f"{tab}-model-refresh")

    def refresh_models(current: str | None) -> gradio.Dropdown:
        return handlers.refresh_models(current, kind)

    refresh.click(refresh_models, inputs=model, outputs=model, api_name=f"{tab}_models")
    if published:
        _published_picker(handlers, tab, kind, model)
    return model, refresh


def _published_picker(handlers: Handlers, tab: str, kind: str, model: gradio.Dropdown) -> None:
    """The catalogue's models of `kind`, downloaded or not, and a line with the licence and source of the one
    chosen. Choosing one pulls it if need be (progress in the page), then makes it the model list's choice.

    The list is looked at again on each page load and whenever the model list's choice changes, so a
    model pulled elsewhere (`painterly models pull`, another page) shows as downloaded without a restart.
    """
    import gradio as gr

    from .web_handlers import licence_line

    entries = handlers.catalog.published(kind)
    if not entries:
        return
    chooser = gr.Radio(handlers.published_choices(kind), value=None, label="Published models",
                       info=f"downloaded the first time one is chosen, into {models_dir()}",
                       elem_id=f"{tab}-published")
    licence = gr.Markdown(licence_line(entries, None), elem_id=f"{tab}-published-licence")

    def choose(name: str | None, progress: gradio.Progress = gr.Progress()) -> tuple:  # noqa: B008 - Gradio's way
        return handlers.choose_published(name, kind, progress)

    def look_again(current: str | None) -> tuple:
        return handlers.published_models(current, kind)

    # A failed pull leaves the choice as the model list has it, so choosing the same model again retries.
    chooser.input(choose, inputs=chooser, outputs=[model, chooser, licence], api_name=f"{tab}_pull").failure(
        look_again, inputs=model, outputs=[chooser, licence], api_visibility="private")
    gr.on(None, look_again, inputs=model, outputs=[chooser, licence], api_visibility="private")  # load, change


def _colour_choice(choices: tuple[str, ...], default: str | None) -> gradio.Radio:
    import gradio as gr

    info = "luminance keeps the photo's colours and takes the style's light and texture"
    if "histogram" in choices:
        info += "; histogram first gives the painting the photo's colours"
    return gr.Radio(["none", *choices], value=default or "none", label="Preserve colour", info=info)


def _long_side(max_side: int, what: str = "Long side") -> gradio.Number:
    """An optional resize; its maximum keeps the output within the pixel limit whatever the input."""
    import gradio as gr

    return gr.Number(_FAST_DEFAULTS.size or 0, label=f"{what} in pixels (0 = as uploaded)", precision=0,
                     minimum=0, maximum=max_side)


def _fast_tab(handlers: Handlers, heavy: dict, *, max_side: int) -> None:
    """A trained model applied to one or several images at once."""
    import gradio as gr

    with gr.Row():
        with gr.Column():
            model, refresh = _model_picker(handlers, "fast", published=True)
            uploads = gr.File(file_count="multiple", file_types=["image"], label="Images", elem_id="fast-images")
            strength = gr.Slider(0, 1, value=_FAST_DEFAULTS.strength, step=0.05, label="Strength",
                                 info="0 = the original, 1 = fully styled")
            colour = _colour_choice(JOHNSON_COLOR_MODES, _FAST_DEFAULTS.preserve_color)
            size = _long_side(max_side)
            regions = _region_controls(handlers, "fast", uploads, models=True)
            run = gr.Button("Stylise", variant="primary", elem_id="fast-run")
        with gr.Column():
            gallery = gr.Gallery(label="Results", elem_id="fast-gallery", columns=2, format="png")
            downloads = gr.File(label="Downloads (PNG with the settings inside)", file_count="multiple")
    ran = run.click(handlers.fast, inputs=[uploads, model, strength, colour, size, *regions.inputs],
                    outputs=[gallery, downloads], api_name="fast", **heavy)
    regions.show_used_mask(ran, handlers.masks)
    # The regions' model lists follow the model list: looked at again on Refresh and when a pull changes it.
    gr.on([refresh.click, model.change], handlers.region_models, inputs=regions.choices, outputs=regions.choices,
          api_visibility="private")


def _any_painting_tab(handlers: Handlers, heavy: dict, *, max_side: int) -> None:
    """An arbitrary-style model applied to photos after any paintings: blended, or one per region of a mask."""
    import gradio as gr

    with gr.Row():
        with gr.Column():
            model, _ = _model_picker(handlers, "any", arbitrary=True, published=True)
            photos = gr.File(file_count="multiple", file_types=["image"], label="Photos", elem_id="any-photos")
            paintings = gr.File(file_count="multiple", file_types=["image"], label="Paintings",
                                elem_id="any-paintings")
            style_blend = gr.Textbox("", label="Blend", placeholder="e.g. 0.7, 0.3 (empty: equal)",
                                     info="one weight per painting, in upload order", elem_id="any-blend")
            alpha = gr.Slider(0, 1, value=_FAST_DEFAULTS.alpha, step=0.05, label="Style strength (alpha)",
                              info="0 = the photo's own features, 1 = fully the paintings' (mixed before painting)",
                              elem_id="any-alpha")
            colour = _colour_choice(FAST_COLOR_MODES, _FAST_DEFAULTS.preserve_color)
            # The mask file and region order of `painterly apply --mask`: the API's; the page draws (below).
            with gr.Accordion("A different painting in each region (mask file)", open=False, visible=False):
                gr.Markdown(_MASK_HELP)
                mask = gr.File(file_types=["image"], label="Mask", elem_id="any-mask")
                with gr.Row():
                    regions = gr.Textbox("", label="Regions", placeholder="e.g. 2, 1, keep (empty: in upload order)",
                                         info="the painting number each region takes, or keep", elem_id="any-order")
                    feather = gr.Number(_FAST_DEFAULTS.mask_feather, label="Feather (pixels)", precision=0, minimum=0,
                                        maximum=256, info="how far region edges fade into each other")
            with gr.Accordion("More settings", open=False, elem_id="any-more"):
                with gr.Row():
                    size = _long_side(max_side, "Photos' long side")
                    style_size = gr.Number(_FAST_DEFAULTS.style_size or 0, precision=0, minimum=0, maximum=max_side,
                                           label="Painting's long side (0 = as uploaded)",
                                           info="sets the scale of the strokes: larger paints bigger strokes")
            drawn = _region_controls(handlers, "any", photos, paintings=paintings)
            run = gr.Button("Paint", variant="primary", elem_id="any-run")
        with gr.Column():
            gallery = gr.Gallery(label="Results", elem_id="any-gallery", columns=2, format="png")
            downloads = gr.File(label="Downloads (PNG with the settings inside)", file_count="multiple",
                                elem_id="any-downloads")
    ran = run.click(handlers.any_painting, inputs=[photos, paintings, model, style_blend, alpha, colour, mask, regions,
                                                   feather, size, style_size, *drawn.inputs],
                    outputs=[gallery, downloads], api_name="any_painting", **heavy)
    drawn.show_used_mask(ran, handlers.masks)


def _optimize_tab(handlers: Handlers, heavy: dict, *, max_side: int, random_weights: bool) -> None:
    """Gatys optimisation with the image shown as it forms, and a Stop that keeps it."""
    import gradio as gr

    from .weights import RANDOM_WARNING

    if random_weights:
        gr.Markdown(f"⚠️ **Warning:** {RANDOM_WARNING}.", elem_id="random-weights-warning")
    else:  # looked at again on each page load: `painterly weights --download` needs no restart
        gr.Markdown(lambda: vgg_weights_status(handlers.vgg_weights)[1], elem_id="vgg-weights-status")
    with gr.Row():
        with gr.Column():
            photo = gr.File(file_types=["image"], label="Photo", elem_id="optimize-photo")
            paintings = gr.File(file_count="multiple", file_types=["image"], label="Paintings",
                                elem_id="optimize-paintings")
            sample = gr.Checkbox(False, label="Also use the built-in sample painting (blue and yellow swirls)")
            largest = min(MAX_OPTIMIZE_SIDE, max_side)
            size = gr.Slider(32, largest, value=min(_DEFAULTS.size, largest), step=16, label="Long side in pixels",
                             elem_id="optimize-size")
            steps = gr.Slider(1, 2000, value=_DEFAULTS.steps, step=1, label="Steps", elem_id="optimize-steps")
            with gr.Row():
                style_weight = gr.Number(_DEFAULTS.style_weight, label="Style weight", minimum=0)
                content_weight = gr.Number(_DEFAULTS.content_weight, label="Content weight", minimum=0)
            colour = _colour_choice(COLOR_MODES, _DEFAULTS.preserve_color)
            with gr.Accordion("More settings", open=False, elem_id="optimize-more"):
                optimizer = gr.Radio(list(OPTIMIZERS), value=_DEFAULTS.optimizer, label="Optimizer",
                                     info="lbfgs converges in fewer steps; adam takes less memory")
                with gr.Row():
                    tv_weight = gr.Number(_DEFAULTS.tv_weight, label="TV weight", minimum=0,
                                          info="smoothing against pixel noise")
                    style_scale = gr.Number(_DEFAULTS.style_scale, label="Style scale", minimum=0,
                                            info="above 1: larger strokes")
                style_blend = gr.Textbox("", label="Style blend", placeholder="e.g. 2, 1 (empty: equal)",
                                         info="one weight per painting, in upload order (the sample last)")
            regions = _region_controls(handlers, "optimize", photo, paintings=paintings, sample=sample)
            with gr.Row():
                run = gr.Button("Paint", variant="primary", elem_id="optimize-run")
                stop = gr.Button("Stop (keep the current image)", variant="stop")
        with gr.Column():
            # No "share" button: it posts to Hugging Face discussions, nothing of that for a local tool.
            image = gr.Image(label="Result", format="png", interactive=False, height=420, elem_id="optimize-result",
                             buttons=["download", "fullscreen"])
            status = gr.Textbox(label="Progress", interactive=False, elem_id="optimize-status")
            download = gr.File(label="Download (PNG with the settings inside)", elem_id="optimize-download")
    ran = run.click(handlers.optimize,
                    inputs=[photo, paintings, sample, size, steps, style_weight, content_weight, colour,
                            optimizer, tv_weight, style_scale, style_blend, *regions.inputs],
                    outputs=[image, status, download], api_name="optimize", **heavy)
    regions.show_used_mask(ran, handlers.masks)
    stop.click(handlers.stop, api_name="stop", concurrency_limit=None)  # never waits behind the job it stops


def _region_controls(handlers: Handlers, tab: str, photo: Any, *, paintings: Any = None, sample: Any = None,
                     models: bool = False) -> RegionControls:
    """The tab's mask editor and a style per region (`web_regions`): the uploaded paintings, or the fast models."""
    from .config import MASK_FEATHER
    from .regions import KEEP
    from .web_handlers import FAST
    from .web_regions import (
        REGION_NAMES,
        default_model,
        default_painting,
        follow_paintings,
        model_choices,
        region_controls,
    )

    if models:
        listed = handlers.catalog.choices(FAST)
        choices = model_choices(listed)
        defaults = [default_model(label, listed) for label in range(len(REGION_NAMES))]
    else:
        slots = len(REGION_NAMES) - 1  # a number for every brush colour until paintings are uploaded
        choices = [("keep the photo", KEEP), *((f"painting {number}", str(number)) for number in range(1, slots + 1))]
        defaults = [default_painting(label, slots) for label in range(len(REGION_NAMES))]
    controls = region_controls(tab, choices=choices, defaults=defaults, feather=MASK_FEATHER,
                               max_pixels=handlers.max_pixels, photo=photo)
    if paintings is not None:
        follow_paintings(controls, paintings, sample, extra_name="the sample painting")
    return controls


def _video_tab(handlers: Handlers, heavy: dict, *, max_side: int) -> None:
    """A trained model applied to every frame of a short clip; the sound is kept."""
    import gradio as gr

    with gr.Row():
        with gr.Column():
            model, _ = _model_picker(handlers, "video")
            clip = gr.Video(label="Clip", sources=["upload"])
            strength = gr.Slider(0, 1, value=_FAST_DEFAULTS.strength, step=0.05, label="Strength")
            colour = _colour_choice(JOHNSON_COLOR_MODES, _FAST_DEFAULTS.preserve_color)
            with gr.Row():
                smooth = gr.Slider(0, 0.9, value=_FAST_DEFAULTS.smooth, step=0.05, label="Smoothing",
                                   info="blends each frame with the one before it against flicker; ghosts on motion")
                stabilize = gr.Slider(0, 0.9, value=_FAST_DEFAULTS.stabilize, step=0.05, label="Stabilise",
                                      info="blends each frame with the one before it moved along the motion "
                                      "(optical flow); not with Smoothing")
            flow = gr.Radio(list(FLOWS), value=_FAST_DEFAULTS.flow, label="Optical flow",
                            info="what Stabilise follows: dis needs no weights; RAFT is fetched once, and slow "
                            "without a GPU")
            size = _long_side(max_side)
            run = gr.Button("Stylise the clip", variant="primary")
        with gr.Column():
            result = gr.Video(label="Result", interactive=False)
    run.click(handlers.video, inputs=[clip, model, strength, colour, size, smooth, stabilize, flow], outputs=result,
              api_name="video", **heavy)
