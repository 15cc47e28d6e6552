"""The `painterly` command: parse, build a config, call the library, show progress.

Defaults come from the config dataclasses; user errors become one line on
stderr and an exit code (2 for usage, 1 otherwise), never a traceback.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import re
import signal
import sys
import threading
import typing
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperArgument, TyperCommand
from typer.models import OptionInfo

from . import web
from .allocator import keep_freed_memory
from .config import (
    ADAIN_BOTTLENECKS,
    AUTO_TILE,
    AUTO_TILE_ABOVE,
    BACKENDS,
    COLOR_MODES,
    DEVICES,
    FAST_COLOR_MODES,
    FLOWS,
    INITS,
    LOSS_NORMALISATIONS,
    LR_SCHEDULES,
    MULTISCALE,
    OPTIMIZERS,
    POOLINGS,
    PRECISIONS,
    TRAIN_ARCHS,
    VGG_ARCHS,
    ApplyConfig,
    StylizeConfig,
    TrainConfig,
)
from .errors import PainterlyError, UsageError
from .export import DEFAULT_OPSET
from .images import DEFAULT_MAX_PIXELS
from .progress import DEFAULT_INTERVAL, PROGRESS_SECONDS_ENV

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    # Help is shown as written. Rich markup (Typer's default) took every "[...]" for a tag, so
    # "pip install 'painterly[web]'" lost its "[web]" and each "[default: ...]" its text.
    rich_markup_mode=None,
    context_settings={"max_content_width": 120},
    help="Neural style transfer: Gatys optimisation and fast feed-forward networks.",
)

_DEFAULTS = StylizeConfig()
_TRAIN = TrainConfig()
_ADAIN_TRAIN = TrainConfig(arch="adain")  # the defaults that differ for an AdaIN decoder, for the help
_APPLY = ApplyConfig()


def _one_of(choices: Sequence[str]) -> str:
    """("lbfgs", "adam") -> "<lbfgs|adam>": a choice option's value placeholder, as Typer writes <int>."""
    return f"<{'|'.join(choices)}>"


_PRECISION_HELP = (
    "auto: bf16 where the GPU or CPU computes it natively and it keeps to fp32's results, else fp32. "
    "bf16 pays only where the hardware computes it (CUDA GPUs from Ampere on, CPUs with AVX-512 BF16 or AMX); "
    "elsewhere it is emulated and many times slower than fp32, and painterly warns. fp16: CUDA GPUs only."
)
_QUIET_HELP = (
    "No progress bar, progress lines or notices (warnings still show). Off a terminal (a log file, CI) "
    f"progress is a plain line every {DEFAULT_INTERVAL:g} s; ${PROGRESS_SECONDS_ENV} sets the interval."
)
_VGG_WEIGHTS = "<imagenet|random|path>"
_VGG_WEIGHTS_HELP = ("The VGG weights: ImageNet's (downloaded once), seeded random (offline, far lower quality; "
                     "asking for them here, or $PAINTERLY_RANDOM_WEIGHTS_OK=1, silences their warning), "
                     "or a .pth/.safetensors file.")
_VGG_WEIGHTS_DEFAULT = "$PAINTERLY_VGG_WEIGHTS, else imagenet"
_MAX_PIXELS_DEFAULT = f"$PAINTERLY_MAX_PIXELS, else {DEFAULT_MAX_PIXELS}"
_DEVICE_HELP = "Where to compute; auto: a CUDA GPU, then Apple's MPS, then the CPU."
_FLOW_HELP = ("Video: the optical flow the frames follow. dis: OpenCV's, weight-free; raft-small, raft-large: "
              "torchvision's RAFT (fetched once into the weights cache, see `painterly weights`; slow on a CPU).")
_SEED_HELP = "Seed of every random choice: the same seed and settings give the same result."
_MODEL_NAME_HELP = ("a catalogue name (`painterly models`; pulled on first use) or hf://owner/repo[/file][@revision] "
                    "(a model on the Hugging Face Hub).")


class _Command(TyperCommand):
    """Typer's command with help that reads as the command is typed: `CONTENT STYLES...` in the usage
    line and the arguments list (Typer writes `{content} {styles}...`)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for param in self.params:
            if isinstance(param, TyperArgument) and param.metavar is None and param.name:
                param.metavar = param.name.upper() + ("..." if param.nargs != 1 else "")

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            if isinstance(param, TyperArgument) and param.metavar:
                pieces.append(param.metavar if param.required else f"[{param.metavar}]")
        return pieces


class Terminated(KeyboardInterrupt):
    """SIGTERM (a scheduler, `docker stop`), raised in the main thread like Ctrl-C's KeyboardInterrupt,
    so that the same cleanup runs (temporaries removed by `atomic_path` and the video sink)."""


def _terminate(_signum: int, _frame: object) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # once: a second SIGTERM must not cut the cleanup short
    raise Terminated


def user_errors(command: Callable[..., Any]) -> Callable[..., Any]:
    """Turn PainterlyError, Ctrl-C and SIGTERM into one line and an exit code (130 and 143 for the signals).

    A refused setting is named by its flag (`--preserve-color`), not by the config field the
    library knows it as (`preserve_color`). An interrupted command's library call may note what it
    had written (`apply_files` does); otherwise nothing was.
    """

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except UsageError as error:
            _error(with_flag_names(str(error), _flags(command)))
            raise typer.Exit(error.exit_code) from None
        except PainterlyError as error:
            _error(str(error))
            raise typer.Exit(error.exit_code) from None
        except KeyboardInterrupt as interrupt:
            terminated = isinstance(interrupt, Terminated)
            written = "; ".join(getattr(interrupt, "__notes__", ())) or "nothing was written"
            _error(f"{'terminated' if terminated else 'interrupted'}; {written}")
            raise typer.Exit(143 if terminated else 130) from None

    return wrapper


_CONFIG_FIELDS = frozenset(field.name for config in (StylizeConfig, TrainConfig, ApplyConfig)
                           for field in dataclasses.fields(config))
_QUOTED = re.compile(r"('[^']*')")  # a value as a message quotes it (repr): never rewritten


def _flags(command: Callable[..., Any]) -> dict[str, str]:
    """The options of `command` that set a config field, by field: {"preserve_color": "--preserve-color"}."""
    flags = {}
    for name, hint in typing.get_type_hints(command, include_extras=True).items():
        for info in getattr(hint, "__metadata__", ()):
            if isinstance(info, OptionInfo) and name in _CONFIG_FIELDS:
                declared = [info.default, *(info.param_decls or ())]
                long = [decl for decl in declared if isinstance(decl, str) and decl.startswith("--")]
                flags[name] = long[0] if long else "--" + name.replace("_", "-")
    return flags


def with_flag_names(message: str, flags: dict[str, str]) -> str:
    """A config's refusal in the command line's words: "preserve_color must be one of…" -> "--preserve-color…".

    A field name with an underscore is replaced wherever it stands outside a quoted value; a one-word
    name ("size", "tile") only as the subject that opens the message ("size must…", "workers and…"),
    so that "tile overlap must…" keeps its words.
    """
    parts = _QUOTED.split(message)
    for index in range(0, len(parts), 2):  # even parts are outside quotes
        for name, flag in flags.items():
            if "_" in name:
                parts[index] = re.sub(rf"(?<![\w/\\.-]){name}(?![\w/\\-]|\.\w)", flag, parts[index])
    text = "".join(parts)
    subject = re.match(r"(\w+)(?= must\b| and\b| ')", text)
    if subject and subject.group(1) in flags:
        text = flags[subject.group(1)] + text[subject.end():]
    return text


def _error(message: str) -> None:
    print(f"painterly: error: {message}", file=sys.stderr)


def _warn(message: str) -> None:
    print(f"painterly: warning: {message}", file=sys.stderr)


def _floats(text: str | None, what: str) -> tuple[float, ...] | None:
    if text is None:
        return None
    try:
        return tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise UsageError(f"{what}: expected comma-separated numbers, got {text!r}") from None


def _layers(text: str | None, default: tuple[str, ...]) -> tuple[tuple[str, ...], tuple[float, ...] | None]:
    """'relu1_1:0.5,relu2_1' -> names and (if any weight is given) weights, missing ones 1."""
    if text is None:
        return default, None
    names, weights, weighted = [], [], False
    for part in (p.strip() for p in text.split(",") if p.strip()):
        name, _, weight = part.partition(":")
        names.append(name)
        try:
            weights.append(float(weight) if weight else 1.0)
        except ValueError:
            raise UsageError(f"layer weight in {part!r} is not a number") from None
        weighted |= bool(weight)
    return tuple(names), tuple(weights) if weighted else None


def _version(value: bool) -> None:
    if value:
        from . import __version__

        print(f"painterly {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    ctx: typer.Context,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Show the version.")] = False,
) -> None:
    """Neural style transfer: Gatys optimisation and fast feed-forward networks."""
    if ctx.invoked_subcommand != "apply":  # apply decides once it knows its backend
        keep_freed_memory()  # large activations reused, not mapped afresh each layer: see allocator.py


@app.command(cls=_Command)
@user_errors
def stylize(
    content: Annotated[Path, typer.Argument(
        help="The photo to repaint, or a video (needs `pip install 'painterly[video,flow]'`).", show_default=False)],
    styles: Annotated[list[Path], typer.Argument(
        help="One or more paintings; with --mask one per region, where 'keep' keeps the photo.", show_default=False)],
    output: Annotated[Path, typer.Option(
        "--output", "-o", help="Output image (.png .jpg .webp .tif); for a video, a video (.mp4 .mkv .webm .mov).")],
    mask: Annotated[str | None, typer.Option(
        metavar="<mask.png|auto:K>", help="A painting per region: an image with one flat colour (or grey) per "
        "region, the regions in the order their colours first appear from the top left taking the STYLES in "
        "turn; or auto:K, K regions found from the photo's colours and layout, written as <output>.mask.png "
        "to edit.", show_default=False)] = None,
    mask_feather: Annotated[int, typer.Option(
        help="Pixels over which a --mask region's edge fades into the next (0 = hard).")] = _DEFAULTS.mask_feather,
    mask_seed: Annotated[int, typer.Option(
        help="Seed of --mask auto:K's clustering: another seed, other regions.")] = _DEFAULTS.mask_seed,
    size: Annotated[int, typer.Option(help="Long side of the output in pixels.")] = _DEFAULTS.size,
    steps: Annotated[int, typer.Option(help="Optimiser steps (at the final scale).")] = _DEFAULTS.steps,
    coarse_steps: Annotated[int | None, typer.Option(
        help="Steps at each coarser scale of --multiscale.", show_default="a third of --steps")] = None,
    optimizer: Annotated[str, typer.Option(
        metavar=_one_of(OPTIMIZERS), help="lbfgs converges in far fewer steps; adam takes bf16 under "
        "--precision auto where the hardware computes it.")] = _DEFAULTS.optimizer,
    lr: Annotated[float | None, typer.Option(help="Learning rate.", show_default="1 for lbfgs, 0.02 for adam")] = None,
    content_weight: Annotated[float, typer.Option(
        help="Weight of the content loss: how closely the photo's layout is kept.")] = _DEFAULTS.content_weight,
    style_weight: Annotated[float, typer.Option(
        help="Weight of the style loss: how strongly the paintings' textures are taken on.")] = _DEFAULTS.style_weight,
    tv_weight: Annotated[float, typer.Option(
        help="Total-variation weight, against pixel noise (0 = off).")] = _DEFAULTS.tv_weight,
    content_layers: Annotated[str | None, typer.Option(
        help="VGG layers the content is compared at, comma-separated.",
        show_default=",".join(_DEFAULTS.content_layers))] = None,
    style_layers: Annotated[str | None, typer.Option(
        help="VGG layers the style is compared at, comma-separated, each with an optional weight: relu1_1:0.5,relu2_1.",
        show_default=",".join(_DEFAULTS.style_layers))] = None,
    style_blend: Annotated[str | None, typer.Option(
        help="One weight per style image: 0.7,0.3.", show_default="equal weights")] = None,
    style_scale: Annotated[float, typer.Option(
        help="Style image size relative to the output.")] = _DEFAULTS.style_scale,
    init: Annotated[str, typer.Option(
        metavar=f"<{'|'.join(INITS)}|path>",
        help="Where the image starts from: the photo, noise, the first painting, or an image file.")] = _DEFAULTS.init,
    preserve_color: Annotated[str | None, typer.Option(
        metavar=_one_of(COLOR_MODES), help="Keep the photo's colours: luminance transfers brightness only, "
        "histogram recolours the paintings first.", show_default="the paintings' colours")] = None,
    multiscale: Annotated[str, typer.Option(
        metavar=_one_of(MULTISCALE),
        help=f"Coarse-to-fine through halved sizes; auto: on above {_DEFAULTS.multiscale_threshold} px.",
    )] = _DEFAULTS.multiscale,
    min_scale: Annotated[int, typer.Option(help="Long side of the coarsest scale.")] = _DEFAULTS.min_scale,
    pooling: Annotated[str, typer.Option(
        metavar=_one_of(POOLINGS), help="VGG's pooling (avg is what Gatys et al. used for their figures).",
    )] = _DEFAULTS.pooling,
    vgg: Annotated[str, typer.Option(
        metavar=_one_of(VGG_ARCHS), help="The VGG network the losses are measured with.")] = _DEFAULTS.vgg,
    vgg_weights: Annotated[str | None, typer.Option(
        metavar=_VGG_WEIGHTS, help=_VGG_WEIGHTS_HELP, show_default=_VGG_WEIGHTS_DEFAULT)] = None,
    loss_normalisation: Annotated[str, typer.Option(
        metavar=_one_of(LOSS_NORMALISATIONS),
        help="target: each loss term starts near 1; paper: the exact Gatys formulas.",
    )] = _DEFAULTS.loss_normalisation,
    seed: Annotated[int, typer.Option(help=_SEED_HELP)] = _DEFAULTS.seed,
    device: Annotated[str, typer.Option(metavar=_one_of(DEVICES), help=_DEVICE_HELP)] = _DEFAULTS.device,
    precision: Annotated[str, typer.Option(
        metavar=_one_of(PRECISIONS), help=_PRECISION_HELP)] = _DEFAULTS.precision,
    save_every: Annotated[int, typer.Option(
        help="Also write an intermediate image every N steps (0 = off).")] = _DEFAULTS.save_every,
    temporal_weight: Annotated[float, typer.Option(
        help="Video: weight of the temporal loss tying each frame to the previous result moved along the "
        "motion (0 = only start from it).")] = _DEFAULTS.temporal_weight,
    frame_steps: Annotated[int | None, typer.Option(
        help="Video: steps on each frame after the first.", show_default="two fifths of --steps")] = None,
    flow: Annotated[str, typer.Option(metavar=_one_of(FLOWS), help=_FLOW_HELP)] = _DEFAULTS.flow,
    max_pixels: Annotated[int | None, typer.Option(
        help="Largest input image accepted, in pixels.", show_default=_MAX_PIXELS_DEFAULT)] = None,
    json_summary: Annotated[bool, typer.Option("--json", help="Print a JSON summary on stdout.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help=_QUIET_HELP)] = False,
) -> None:
    """Optimise an image so it keeps CONTENT's layout and takes on the STYLES' textures (Gatys et al.).

    A video CONTENT is painted frame by frame, each from the previous result (Ruder et al.), audio kept;
    a run stopped half-way continues from its last finished frame when run again with the same settings.
    """
    from . import images
    from .gatys_video import is_video_path
    from .pipeline import stylize_files
    from .progress import ProgressPrinter

    names, layer_weights = _layers(style_layers, _DEFAULTS.style_layers)
    config = StylizeConfig(
        size=size, steps=steps, coarse_steps=coarse_steps, optimizer=optimizer, lr=lr, content_weight=content_weight,
        style_weight=style_weight, tv_weight=tv_weight,
        content_layers=_layers(content_layers, _DEFAULTS.content_layers)[0],
        style_layers=names, style_layer_weights=layer_weights, style_blend=_floats(style_blend, "--style-blend"),
        style_scale=style_scale, init=init, preserve_color=preserve_color, multiscale=multiscale,
        min_scale=min_scale, pooling=pooling, vgg=vgg, vgg_weights=vgg_weights,
        loss_normalisation=loss_normalisation, seed=seed, device=device, precision=precision,
        save_every=save_every, temporal_weight=temporal_weight, frame_steps=frame_steps, flow=flow,
        mask_feather=mask_feather, mask_seed=mask_seed,
    )
    inputs = [content, *styles] + ([Path(init)] if init not in INITS else []) + ([Path(mask)] if mask else [])
    if not is_video_path(content):  # a video's output is checked by gatys_video
        images.check_output(output, protect=inputs)
    with ProgressPrinter(quiet=quiet) as progress:
        summary = stylize_files(content, styles, output, config, callback=progress, max_pixels=max_pixels,
                                mask=mask)
    if json_summary:
        print(json.dumps(summary, indent=2))


@app.command(cls=_Command)
@user_errors
def demo(
    output: Annotated[Path, typer.Option("--output", "-o",
                                         help="Where to write the stylised sample.")] = Path("demo.png"),
    size: Annotated[int, typer.Option(help="Long side in pixels.")] = 256,
    steps: Annotated[int, typer.Option(help="Optimiser steps.")] = 100,
    vgg_weights: Annotated[str | None, typer.Option(
        metavar=_VGG_WEIGHTS, help=_VGG_WEIGHTS_HELP,
        show_default="$PAINTERLY_VGG_WEIGHTS, else imagenet if it can be had, else random")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help=_QUIET_HELP)] = False,
) -> None:
    """Stylise the built-in sample photo with the built-in sample painting: a first look, offline too."""
    from . import images, pixels, samples
    from .pipeline import stylize_and_save
    from .progress import ProgressPrinter

    images.check_output(output)
    config = StylizeConfig(size=size, steps=steps, vgg_weights=vgg_weights or _demo_weights(quiet))
    content = pixels.to_tensor(samples.landscape())
    style = pixels.to_tensor(samples.swirl_painting())
    with ProgressPrinter(quiet=quiet) as progress:
        stylize_and_save(content, [style], output, config, callback=progress,
                         sources={"content": "painterly sample landscape", "styles": ["painterly sample swirl"]})
    if not quiet:
        print(f"wrote {output}", file=sys.stderr)


def _demo_weights(quiet: bool) -> str | None:
    """The demo always produces a picture: $PAINTERLY_VGG_WEIGHTS when set (None: the library reads it, and
    warns if it says random), else ImageNet weights if they can be had, else random (saying so)."""
    from . import weights
    from .progress import ProgressPrinter

    if os.environ.get(weights.WEIGHTS_ENV):
        return None
    spec = weights.spec_for("vgg19")
    if weights.cached_path(spec).exists():
        return "imagenet"
    try:
        with ProgressPrinter(quiet=quiet) as progress:
            weights.download(spec, callback=progress)
        return "imagenet"
    except weights.WeightsUnavailable as error:
        _warn(f"{error}")
        _warn("the demo goes on with random VGG weights: expect colours and coarse texture, not a real painting")
        return "random"


@app.command(cls=_Command)
@user_errors
def train(
    style: Annotated[Path, typer.Argument(
        help="The painting to learn; for --arch adain or adain-light, a folder of paintings (searched recursively).",
        show_default=False)],
    data: Annotated[Path, typer.Option(help="Folder of training photos (searched recursively).", show_default=False)],
    output: Annotated[Path, typer.Option("--output", "-o", help="Model file (.safetensors).")],
    resume: Annotated[bool, typer.Option("--resume", help="Continue from OUTPUT.ckpt.")] = False,
    overwrite: Annotated[bool, typer.Option(
        "--overwrite", help="Delete the earlier run's model, checkpoint, metrics log and previews at OUTPUT and "
                            "start again (without it or --resume, such an output is refused).")] = False,
    size: Annotated[int, typer.Option(help="Side of the random square crops.")] = _TRAIN.size,
    style_size: Annotated[int | None, typer.Option(
        help="Long side of the style image (a Johnson network's one painting; AdaIN's paintings take --resize).",
        show_default="its own size")] = None,
    resize: Annotated[int | None, typer.Option(
        help="Short side the photos (and AdaIN's paintings) are scaled to before the random crop.",
        show_default=f"--size; adain: {_ADAIN_TRAIN.resize}")] = None,
    epochs: Annotated[int | None, typer.Option(
        help="Passes over the photos (unless --steps).",
        show_default=f"{_TRAIN.epochs}; adain: --steps {_ADAIN_TRAIN.steps} unless --epochs is given")] = None,
    steps: Annotated[int | None, typer.Option(help="Total optimiser steps (overrides --epochs).")] = None,
    batch_size: Annotated[int | None, typer.Option(
        help="Photos per step (per process under torchrun).",
        show_default=f"{_TRAIN.batch_size}; adain: {_ADAIN_TRAIN.batch_size}")] = None,
    lr: Annotated[float | None, typer.Option(
        help="Adam learning rate.", show_default=f"{_TRAIN.lr:g}; adain: {_ADAIN_TRAIN.lr:g}")] = None,
    lr_schedule: Annotated[str | None, typer.Option(
        metavar=_one_of(LR_SCHEDULES),
        help="cosine decays to 1 % of --lr at the last step; inverse is the AdaIN paper's --lr/(1 + 5e-5 × step).",
        show_default=f"{_TRAIN.lr_schedule}; adain: {_ADAIN_TRAIN.lr_schedule}")] = None,
    content_weight: Annotated[float, typer.Option(
        help="Weight of the content loss: how closely each photo's layout is kept.")] = _TRAIN.content_weight,
    style_weight: Annotated[float, typer.Option(
        help="Weight of the style loss: how strongly the painting's texture is taken on.")] = _TRAIN.style_weight,
    tv_weight: Annotated[float | None, typer.Option(
        help="Total-variation weight, against pixel noise (0 = off).",
        show_default=f"{_TRAIN.tv_weight:g}; adain: {_ADAIN_TRAIN.tv_weight:g}")] = None,
    temporal_weight: Annotated[float, typer.Option(
        help="Johnson networks: weight of a temporal loss against flicker on video (0 = off): each crop is "
             "also moved a little, as by a camera, with noise, and the network's output of it must match its "
             "output moved alike. Costs one more pass of the network per step (not of VGG).",
    )] = _TRAIN.temporal_weight,
    temporal_warmup: Annotated[float, typer.Option(
        help="The share of the steps, in [0, 1), trained without the temporal loss before it starts: the "
             "texture first, then its steadiness.")] = _TRAIN.temporal_warmup,
    content_layers: Annotated[str | None, typer.Option(
        help=f"VGG layers the content is compared at, comma-separated (adain: its bottleneck, "
             f"{ADAIN_BOTTLENECKS['adain']}; adain-light: {ADAIN_BOTTLENECKS['adain-light']}).",
        show_default=",".join(_TRAIN.content_layers))] = None,
    style_layers: Annotated[str | None, typer.Option(
        help=f"VGG layers the style is compared at, comma-separated, each with an optional weight (adain: "
             f"{','.join(_ADAIN_TRAIN.style_layers)}, weight 1 each).",
        show_default=",".join(_TRAIN.style_layers))] = None,
    vgg: Annotated[str | None, typer.Option(
        metavar=_one_of(VGG_ARCHS), help="The VGG network the losses are measured with (Johnson: vgg16; the AdaIN "
                                         "encoder is vgg19).",
        show_default=f"{_TRAIN.vgg}; adain: {_ADAIN_TRAIN.vgg}")] = None,
    vgg_weights: Annotated[str | None, typer.Option(
        metavar=_VGG_WEIGHTS, help=_VGG_WEIGHTS_HELP, show_default=_VGG_WEIGHTS_DEFAULT)] = None,
    arch: Annotated[str, typer.Option(
        metavar=_one_of(TRAIN_ARCHS),
        help="The network: standard is Johnson's, for one painting; light is faster and smaller; adain is "
             "Huang & Belongie's AdaIN decoder, for any painting, learnt from a folder of them; adain-light is "
             "a faster AdaIN decoder (bottleneck relu3_1, a quarter of the widths).",
    )] = _TRAIN.arch,
    antialias: Annotated[bool, typer.Option(
        "--antialias", help="Johnson networks: blur before each stride-2 conv and upsample bilinearly, so the "
                            "texture moves with the picture on video (steadier, with --temporal-weight or "
                            "without); the same parameters, recorded in the model.")] = _TRAIN.antialias,
    seed: Annotated[int, typer.Option(help=_SEED_HELP)] = _TRAIN.seed,
    device: Annotated[str, typer.Option(metavar=_one_of(DEVICES), help=_DEVICE_HELP)] = _TRAIN.device,
    workers: Annotated[int, typer.Option(help="Data-loading processes.")] = _TRAIN.workers,
    precision: Annotated[str, typer.Option(metavar=_one_of(PRECISIONS), help=_PRECISION_HELP)] = _TRAIN.precision,
    channels_last: Annotated[bool, typer.Option(
        "--channels-last", help="Channels-last memory for the networks: faster on GPUs with tensor cores.",
    )] = _TRAIN.channels_last,
    compile_networks: Annotated[bool, typer.Option(
        "--compile", help="torch.compile the networks (CUDA only; the first steps wait while it compiles).",
    )] = _TRAIN.compile,
    checkpoint_every: Annotated[int, typer.Option(help="Steps between checkpoints.")] = _TRAIN.checkpoint_every,
    checkpoint_minutes: Annotated[float, typer.Option(
        help="Also a checkpoint once this many minutes have passed since the last one (0 = off).",
    )] = _TRAIN.checkpoint_minutes,
    log_every: Annotated[int, typer.Option(help="Steps between metrics-log lines.")] = _TRAIN.log_every,
    preview_every: Annotated[int, typer.Option(
        help="Stylise a few photos every N steps (0 = off).")] = _TRAIN.preview_every,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help=_QUIET_HELP)] = False,
) -> None:
    """Train a fast style network on a folder of photos: for one painting (Johnson et al.), or an AdaIN
    decoder for any painting (--arch adain); works under torchrun."""
    from .progress import ProgressPrinter
    from .training import train as train_model

    # None: the default of the kind of network trained, filled in by TrainConfig.
    content_names = None if content_layers is None else _layers(content_layers, ())[0]
    style_names, layer_weights = (None, None) if style_layers is None else _layers(style_layers, ())
    kind_dependent: dict[str, Any] = {
        "epochs": epochs, "batch_size": batch_size, "lr": lr, "lr_schedule": lr_schedule, "tv_weight": tv_weight,
        "content_layers": content_names, "style_layers": style_names, "vgg": vgg, "resize": resize}
    config = TrainConfig(
        data=str(data), size=size, style_size=style_size, steps=steps, content_weight=content_weight,
        style_weight=style_weight, style_layer_weights=layer_weights, vgg_weights=vgg_weights, arch=arch,
        antialias=antialias, temporal_weight=temporal_weight, temporal_warmup=temporal_warmup,
        seed=seed, device=device, workers=workers, precision=precision, checkpoint_every=checkpoint_every,
        checkpoint_minutes=checkpoint_minutes, log_every=log_every, preview_every=preview_every,
        channels_last=channels_last, compile=compile_networks, **kind_dependent,
    )
    with ProgressPrinter(quiet=quiet) as progress:  # an interrupt's line says what was written (training.py)
        path = train_model(style, config, output, callback=progress, resume=resume, overwrite=overwrite)
    if not quiet and path is not None:
        print(f"wrote {path}", file=sys.stderr)


@app.command(cls=_Command)
@user_errors
def apply(
    model: Annotated[str, typer.Argument(
        help=f"A .safetensors, .onnx or pytorch/examples .pth model, or {_MODEL_NAME_HELP}", show_default=False)],
    inputs: Annotated[list[str], typer.Argument(
        help="Images, folders, videos (need `pip install 'painterly[video]'`), or - for stdin.", show_default=False)],
    output: Annotated[str, typer.Option("--output", "-o", help="A file, a folder, or - for stdout.")],
    styles: Annotated[list[str] | None, typer.Option(
        "--style", metavar="<painting|keep>",
        help="Arbitrary-style (AdaIN) models: a painting to paint with; repeat it to blend several "
        "(--style-blend), or to give one per --mask region, where 'keep' keeps the photo.",
        show_default=False)] = None,
    style_blend: Annotated[str | None, typer.Option(
        help="One weight per --style painting: 0.7,0.3.", show_default="equal weights")] = None,
    alpha: Annotated[float, typer.Option(
        help="AdaIN: 1 = the painting's style, 0 = the photo's own features (mixed in feature space).",
    )] = _APPLY.alpha,
    style_size: Annotated[int, typer.Option(
        help="AdaIN: long side each painting is resized to before it is measured; it sets the brush "
        "strokes' scale (0 = as it is).")] = _APPLY.style_size or 0,
    mask: Annotated[str | None, typer.Option(
        metavar="<image|auto:K>",
        help="An image with one flat colour per region (PNG), regions numbered in the order their colours "
        "first appear from the top-left; or auto:K, K regions found in each photo (a video: its first frame) "
        "and written beside each output as NAME.mask.png, to edit and pass back. AdaIN: the regions take the "
        "--style paintings in turn (images stylised whole, not tiled; torch backend only). Johnson: "
        "--region gives a region its own model.", show_default=False)] = None,
    region: Annotated[list[str] | None, typer.Option(
        metavar="<N=model|keep>",
        help="Johnson models with --mask: region N (counted from 1) stylised by this model (a file or "
        "catalogue name), or kept as the photo; regions not named take MODEL. Repeat for more.",
        show_default=False)] = None,
    mask_feather: Annotated[int, typer.Option(
        help="Pixels over which a --mask region's edge fades into the next (0 = hard).")] = _APPLY.mask_feather,
    mask_seed: Annotated[int, typer.Option(
        help="Seed of --mask auto:K's clustering: another seed, other regions.")] = _APPLY.mask_seed,
    strength: Annotated[float, typer.Option(help="1 = fully stylised, 0 = the original.")] = _APPLY.strength,
    preserve_color: Annotated[str | None, typer.Option(
        metavar=_one_of(FAST_COLOR_MODES), help="luminance: keep the input's colours. histogram (AdaIN models, "
        "images only): recolour each painting toward each photo before measuring it.",
        show_default="the model's colours")] = _APPLY.preserve_color,
    size: Annotated[int | None, typer.Option(
        help="Resize the long side first.", show_default="the input's size")] = _APPLY.size,
    stroke_size: Annotated[int | None, typer.Option(
        help="Paint as if the long side were N pixels, e.g. the preview's size: a large print keeps the "
        "preview's strokes, the photo's detail restored on top.", show_default="strokes of the network's own "
        "size in pixels")] = _APPLY.stroke_size,
    tile: Annotated[int | None, typer.Option(
        help="Stylise large images in N-pixel tiles (bounded memory); 0 = never.",
        show_default=f"{AUTO_TILE}-pixel tiles for images over {AUTO_TILE_ABOVE:,} pixels")] = _APPLY.tile,
    tile_overlap: Annotated[int, typer.Option(help="Overlap between tiles, blended smoothly.")] = _APPLY.tile_overlap,
    batch_size: Annotated[int, typer.Option(help="Images or frames per network call.")] = _APPLY.batch_size,
    smooth: Annotated[float, typer.Option(help="Video: temporal smoothing against flicker, 0..1.")] = _APPLY.smooth,
    stabilize: Annotated[float, typer.Option(
        help="Video: against flicker, blend each frame with the previous one moved along the optical flow, "
        "0..1 (not with --smooth); needs `pip install 'painterly[flow]'`.")] = _APPLY.stabilize,
    flow: Annotated[str, typer.Option(metavar=_one_of(FLOWS), help=_FLOW_HELP)] = _APPLY.flow,
    backend: Annotated[str, typer.Option(
        metavar=_one_of(BACKENDS), help="auto: onnx for a .onnx model, else torch; onnx needs "
        "`pip install 'painterly[onnx]'`.")] = _APPLY.backend,
    device: Annotated[str, typer.Option(metavar=_one_of(DEVICES), help=_DEVICE_HELP)] = _APPLY.device,
    precision: Annotated[str, typer.Option(
        metavar=_one_of(PRECISIONS), help=_PRECISION_HELP + " The onnx backend is fp32.")] = _APPLY.precision,
    suffix: Annotated[str | None, typer.Option(
        help="Output extension for folder outputs, e.g. .jpg.", show_default="the input's")] = None,
    max_pixels: Annotated[int | None, typer.Option(
        help="Largest input (image or video frame) accepted, in pixels.",
        show_default=_MAX_PIXELS_DEFAULT)] = _APPLY.max_pixels,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help=_QUIET_HELP)] = False,
) -> None:
    """Stylise images, folders and videos with a trained fast model, or with an arbitrary-style (AdaIN)
    model and any painting (--style)."""
    from .apply import apply_files
    from .fast import KEEP, FastStylizer
    from .progress import ProgressPrinter
    from .region_models import regions_from_options

    if style_size < 0:
        raise UsageError(f"--style-size must be 0 (as it is) or a positive number of pixels, got {style_size}")
    config = ApplyConfig(strength=strength, preserve_color=preserve_color, size=size, tile=tile,
                         tile_overlap=tile_overlap, batch_size=batch_size, backend=backend, device=device,
                         precision=precision, smooth=smooth, stabilize=stabilize, flow=flow, max_pixels=max_pixels,
                         alpha=alpha,
                         style_size=style_size or None, style_blend=_floats(style_blend, "--style-blend"),
                         mask_feather=mask_feather, mask_seed=mask_seed, stroke_size=stroke_size)
    with ProgressPrinter(quiet=quiet) as progress:
        stylizer = FastStylizer(model, config, callback=progress)  # warns of a bf16 the hardware would emulate
        if stylizer.backend == "torch":  # ONNX Runtime's threads fragment the kept heap: 3.1 GiB instead of 0.8
            keep_freed_memory()
        if region:  # Johnson: a model per mask region, each loaded once, before any photo
            if mask is None:
                raise UsageError("--region N=MODEL needs --mask: an image with one colour per region, or auto:K")
            if styles:
                raise UsageError("--region gives a Johnson model's regions their own models; --style gives an "
                                 "AdaIN model's regions paintings: not both")
            if style_blend is not None:
                raise UsageError("--style-blend blends an AdaIN model's paintings; with --region each region "
                                 "takes one model")
            stylizer = regions_from_options(stylizer, mask, region, callback=progress)
        elif styles:  # each painting read (one line naming a bad one) and measured once, before any photo
            paintings = [None if item == KEEP else stylizer.read_painting(item) for item in styles]
            stylizer = stylizer.with_styles(paintings, mask=mask)
        elif mask is not None:
            raise UsageError("--mask needs --style paintings (an AdaIN model) or --region N=MODEL (a Johnson model)")
        elif style_blend is not None:
            raise UsageError("--style-blend needs --style paintings")
        report = apply_files(stylizer, inputs, output, suffix=suffix, callback=progress)
    if report.failed:  # each was reported, naming its file, as it failed: here only how many
        done = len(report.written) + len(report.failed)
        _error(f"{len(report.failed)} of {done} input(s) failed (see above); {len(report.written)} file(s) written")
        raise typer.Exit(1)
    if not quiet and output != "-":
        print(f"wrote {len(report.written)} file(s)", file=sys.stderr)


@app.command(cls=_Command)
@user_errors
def export(
    model: Annotated[str, typer.Argument(
        help=f"A .safetensors model (Johnson or AdaIN), a pytorch/examples .pth model, or {_MODEL_NAME_HELP}",
        show_default=False)],
    output: Annotated[Path, typer.Option("--output", "-o", help="The .onnx file to write.")],
    opset: Annotated[int, typer.Option(help="ONNX opset.")] = DEFAULT_OPSET,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help=_QUIET_HELP)] = False,
) -> None:
    """Export a fast model to ONNX (checked in ONNX Runtime); needs `pip install 'painterly[onnx]'`.

    The exported model takes any image size (an AdaIN model also takes the painting, at run time), and
    its outputs are compared with PyTorch's before it is kept.
    """
    from .export import export_onnx
    from .progress import ProgressPrinter

    with ProgressPrinter(quiet=quiet) as progress:  # a catalogue name not yet pulled is pulled first
        report = export_onnx(model, output, opset=opset, callback=progress)
    print(f"wrote {report.path} (opset {report.opset}; ONNX Runtime vs PyTorch max abs difference "
          f"{report.max_abs_diff:.2g}, {report.seconds:.1f} s)")


@app.command(cls=_Command)
@user_errors
def convert(
    model: Annotated[Path, typer.Argument(
        help="A pytorch/examples fast_neural_style .pth model, or pytorch-AdaIN's decoder.pth (with --encoder).",
        show_default=False)],
    output: Annotated[Path, typer.Option("--output", "-o", help="The .safetensors file to write.")],
    encoder: Annotated[Path | None, typer.Option(
        help="pytorch-AdaIN's vgg_normalised.pth: MODEL is then its decoder.pth, and both become one "
        "arbitrary-style model file.", show_default=False)] = None,
) -> None:
    """Convert a pytorch/examples .pth model, or the published AdaIN decoder and encoder, into a painterly
    .safetensors model with metadata."""
    from .modelfile import convert_model

    print(f"wrote {convert_model(model, output, encoder=encoder)}")


@app.command(cls=_Command)
@user_errors
def card(
    model: Annotated[str, typer.Argument(
        help=f"A painterly .safetensors model (Johnson or AdaIN), or {_MODEL_NAME_HELP}", show_default=False)],
    output: Annotated[Path, typer.Option(
        "--output", "-o", help="The card to write: DIR/README.md, with the model file put in DIR too, is what the "
        "Hub shows.")],
    style_image: Annotated[Path | None, typer.Option(
        help="The painting: a thumbnail is written beside the card and shown in it.", show_default=False)] = None,
    sample: Annotated[Path | None, typer.Option(
        metavar="<photo>", help="A photo to paint with the model (an AdaIN model paints it with --style-image): the "
        "result is written beside the card and shown in it.", show_default=False)] = None,
    repo: Annotated[str | None, typer.Option(
        metavar="<owner/repo>", help="The Hub repo the model goes to, for the card's commands.",
        show_default="OWNER/REPO, to replace")] = None,
    licence: Annotated[str | None, typer.Option(
        metavar="<spdx>", help="The model's licence, e.g. MIT.",
        show_default="the licence the file records (a catalogue model's), else unknown")] = None,
) -> None:
    """Write a Hugging Face Hub model card (README.md) from a model file's metadata: the style, the training
    settings and steps, the VGG weights, the checksums, and how to use and upload it (`hf upload`)."""
    from .card import write_card
    from .progress import ProgressPrinter
    from .zoo import resolve_model

    with ProgressPrinter() as progress:  # a catalogue name not yet pulled, or an hf:// model, is downloaded first
        path = write_card(resolve_model(model, callback=progress), output, style_image=style_image, sample=sample,
                          repo=repo, licence=licence)
    print(f"wrote {path}")


@app.command(cls=_Command)
@user_errors
def serve(
    host: Annotated[str, typer.Option(
        help="Address to listen on; anything but loopback is reachable from the network.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = web.PORT,
    models: Annotated[Path | None, typer.Option(help="Folder of fast models to offer.")] = None,
    workdir: Annotated[Path | None, typer.Option(
        help="Where results go, in a painterly-web-* folder removed at shutdown.",
        show_default="the system's temp folder")] = None,
    vgg_weights: Annotated[str | None, typer.Option(
        metavar=_VGG_WEIGHTS, help="The VGG weights of the Optimize tab, as for stylize.",
        show_default=_VGG_WEIGHTS_DEFAULT)] = None,
    device: Annotated[str, typer.Option(metavar=_one_of(DEVICES), help=_DEVICE_HELP)] = "auto",
    max_upload_mb: Annotated[int, typer.Option(help="Largest upload accepted.")] = web.MAX_UPLOAD_MB,
    max_pixels: Annotated[int, typer.Option(help="Largest image accepted, in pixels.")] = web.MAX_PIXELS,
    concurrency: Annotated[int, typer.Option(
        help="Jobs running at once; the rest wait in the queue.")] = web.CONCURRENCY,
    queue_size: Annotated[int, typer.Option(help="Jobs allowed to wait.")] = web.QUEUE_SIZE,
    keep_results: Annotated[float, typer.Option(
        metavar="MINUTES", help="Remove each job's results this long after they were written.",
    )] = web.KEEP_RESULTS_MINUTES,
) -> None:
    """Start the web UI (Fast, Any painting, Optimize and Video tabs); needs `pip install 'painterly[web]'`."""
    try:
        web.serve(host=host, port=port, models=models, workdir=workdir, vgg_weights=vgg_weights, device=device,
                  max_upload_mb=max_upload_mb, max_pixels=max_pixels, concurrency=concurrency,
                  queue_size=queue_size, keep_results_minutes=keep_results)
    except KeyboardInterrupt as interrupt:  # Ctrl-C or SIGTERM is how a server stops: no error, its exit code
        print("painterly: stopped the web UI and removed its working folder", file=sys.stderr)
        raise typer.Exit(143 if isinstance(interrupt, Terminated) else 130) from None


@app.command("weights", cls=_Command)
@user_errors
def weights_command(
    download: Annotated[bool, typer.Option("--download", help="Download the weights into the cache.")] = False,
    import_file: Annotated[Path | None, typer.Option(
        "--import", help="Copy a local torchvision weights file into the cache.")] = None,
    verify: Annotated[bool, typer.Option("--verify", help="Check the hash of the cached files.")] = False,
    arch: Annotated[str, typer.Option(metavar=_one_of((*VGG_ARCHS, *FLOWS[1:], "all")), help=(
        "Which network's weights: a VGG (the losses) or a RAFT (--flow); all: the VGGs and, listed, the RAFTs."
    ))] = "all",
) -> None:
    """Show where the pretrained weights are (VGG for the losses, RAFT for --flow); download, verify or
    import them."""
    from . import flow_raft, weights  # torch-free until a file is loaded: listing the paths takes no seconds
    from .progress import ProgressPrinter

    known = (*weights.ARCHS, *flow_raft.NAMES)
    if arch != "all" and arch not in known:
        raise UsageError(f"--arch must be one of {', '.join(known)} or all; got {arch!r}")

    def spec_of(name: str) -> weights.WeightsSpec:
        return flow_raft.spec_for(name) if name in flow_raft.NAMES else weights.spec_for(name)

    if import_file is not None:
        if arch == "all":
            raise UsageError(f"--import needs --arch, one of {', '.join(known)}")
        imported = (flow_raft.import_file(import_file, arch) if arch in flow_raft.NAMES
                    else weights.import_file(import_file, arch))
        print(f"imported {import_file} as {imported}")
    if download:  # "all": the VGGs, which every Gatys run and training needs; a RAFT only when named
        for name in weights.ARCHS if arch == "all" else (arch,):
            with ProgressPrinter() as progress:
                path = weights.download(spec_of(name), callback=progress, explicit=True)
            print(f"{name}: {path}")
    for row in [*weights.status(), *flow_raft.status()]:
        if arch != "all" and row["arch"] != arch:
            continue
        state = f"cached, {row['size'] / 1e6:.0f} MB" if row["present"] else "not downloaded"
        if verify and row["present"]:
            ok = weights.verify(Path(row["path"]), spec_of(row["arch"]))
            state += ", hash OK" if ok else ", HASH MISMATCH (delete it and download again)"
        print(f"{row['arch']}: {state}\n  file: {row['path']}\n  from: {row['url']}")
    print("Other sources: --vgg-weights PATH (or $PAINTERLY_VGG_WEIGHTS) for a local .pth/.safetensors file, "
          "--vgg-weights random for offline use (much lower quality); --flow dis needs no weights.")


models_app = typer.Typer(add_completion=False, rich_markup_mode=None, no_args_is_help=False)
app.add_typer(models_app, name="models")

_MODEL_NAME = "A catalogue name (`painterly models` lists them)."


@models_app.callback(invoke_without_command=True)
@user_errors
def models_command(
    ctx: typer.Context,
    json_listing: Annotated[bool, typer.Option("--json", help="Print the listing as JSON, for scripts.")] = False,
) -> None:
    """Published models by name: the catalogue, and which are on disk.

    Without a command: each model's name, kind, size, licence and source, and whether it is pulled. A
    catalogue name works wherever a model path does (`painterly apply candy photo.jpg -o out.png`)."""
    if ctx.invoked_subcommand is not None:
        return
    from . import zoo

    rows = zoo.listing()
    if json_listing:
        print(json.dumps(rows, indent=2))
        return
    table = [["NAME", "KIND", "SIZE", "LICENCE", "SOURCE", "ON DISK"]]
    table += [[row["name"], row["kind"], _size(row["size"]), row["licence"], row["source"],
               "pulled" if row["pulled"] else "-"] for row in rows]
    print(_columns(table))
    print(f"\nPulled models are in {zoo.models_dir()} (${zoo.HOME_ENV}/models).\n"
          "`painterly models pull NAME` fetches one, `painterly models info NAME` says where it comes from.")


def _size(size: int | None) -> str:
    """Bytes for a person: 1.2 MB, 130 kB; "?" where no size is known (nothing published, nothing pulled)."""
    if size is None:
        return "?"
    return f"{size / 1e6:.1f} MB" if size >= 1e6 else f"{size / 1e3:.0f} kB"


def _columns(rows: list[list[str]]) -> str:
    """Rows of cells as a plain table, each column as wide as its widest cell."""
    widths = [max(len(row[index]) for row in rows) for index in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows)


@models_app.command("pull", cls=_Command)
@user_errors
def models_pull(
    name: Annotated[str, typer.Argument(help=_MODEL_NAME, show_default=False)],
    file: Annotated[Path | None, typer.Option(
        help="A download fetched by hand (the file the catalogue's URL serves): checked and converted "
             "instead of downloading.", show_default=False)] = None,
    force: Annotated[bool, typer.Option("--force", help="Download and convert again, even if it is on disk.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help=_QUIET_HELP)] = False,
) -> None:
    """Download, check and cache a catalogue model.

    The download's hash is checked, the model converted into a painterly model file with its provenance
    in the cache, and its path printed. Offline: $PAINTERLY_MODELS_MIRROR (a base URL serving each
    download under its file name), or --file."""
    from . import zoo
    from .progress import ProgressPrinter

    with ProgressPrinter(quiet=quiet) as progress:
        path = zoo.pull(name, file=file, force=force, callback=progress)
    print(path)


@models_app.command("info", cls=_Command)
@user_errors
def models_info(
    name: Annotated[str, typer.Argument(help=_MODEL_NAME, show_default=False)],
    json_info: Annotated[bool, typer.Option("--json", help="Print it as JSON, for scripts.")] = False,
) -> None:
    """Where a catalogue model comes from.

    Its source and licence (and where the licence was read), the painting and its credit, the training
    recipe, each download's URL and SHA-256 (published, or recorded at the first download), and the
    file on disk."""
    from . import zoo

    details = zoo.info(name)
    print(json.dumps(details, indent=2) if json_info else _provenance_text(details))


def _provenance_text(details: dict) -> str:
    """`zoo.info`'s record as `painterly models info` shows it: the model, then each download, each part's
    SHA-256 and how it is known, then the file on disk."""
    from . import zoo

    licence, source, style = details["licence"], details["source"], details["style"]
    kind = "adain: any painting, given with --style" if details["arbitrary"] else f"{details['kind']}: one style"
    lines = [f"{details['name']}: {details['title']}",
             f"  kind:     {kind}",
             f"  source:   {source['project']}, {source['url']}",
             f"  licence:  {licence['spdx']} (read in {licence['file']}; it covers {licence['covers']})"]
    if style:
        painting = style.get("title", "untitled")
        lines.append(f"  style:    {painting}, by {style.get('artist', 'unknown')}"
                     + (f"; the image: {style['image']}" if "image" in style else ""))
    recipe = dict(details["recipe"])
    if recipe:
        known = recipe.pop("known", None)
        lines.append(f"  recipe{f' (from {known})' if known else ''}:")
        lines += [f"    {key.replace('_', ' ')}: {value}" for key, value in recipe.items()]
    for download in details["downloads"]:
        lines.append(f"download {download['file']} (cited: {download['cited']})")
        lines += [f"  url:      {url}" for url in download["catalogue_urls"]]
        if download["urls"] != download["catalogue_urls"]:
            lines += [f"  mirror:   {url} (${zoo.MIRROR_ENV}: what a pull fetches)" for url in download["urls"]]
        if download["sha256"]:
            lines.append(f"  sha256:   {download['sha256']} ({zoo.PUBLISHED})")
        if download["cached"]:
            lines.append(f"  cached:   {download['cached']}")
    for part in details["parts"]:
        inside = f"{part['member']} in {part['download']}" if part["member"] else part["download"]
        known = part["sha256_source"]
        if known == zoo.RECORDED:
            known = f"{known} on {part['recorded']}" + (f", from {part['url']}" if part["url"] else "")
        lines.append(f"part {part['role']}: {inside}")
        lines.append(f"  sha256:   {part['sha256']} ({known})" if part["sha256"] else f"  sha256:   {known}")
    if details["pulled"]:
        lines.append(f"model file: {details['path']} ({_size(details['size'])})")
        if details["sha256"]:
            lines.append(f"  sha256:   {details['sha256']} (recorded when it was written, {details['written']})")
    else:
        lines.append(f"model file: not pulled (`painterly models pull {details['name']}` writes {details['path']})")
    return "\n".join(lines)


@models_app.command("remove", cls=_Command)
@user_errors
def models_remove(name: Annotated[str, typer.Argument(help=_MODEL_NAME, show_default=False)]) -> None:
    """Delete a pulled model from the cache.

    The SHA-256s recorded at its first download are kept, so a later pull is still checked against them."""
    from . import zoo

    removed = zoo.remove(name)
    print(f"removed {removed}" if removed is not None else f"{name} is not on disk ({zoo.model_path(name)})")


def main(argv: list[str] | None = None) -> None:
    """Console entry point: SIGTERM is handled as Ctrl-C is, for every command (from the main thread,
    the only one that may set a signal handler)."""
    if threading.current_thread() is not threading.main_thread():
        app(args=argv, prog_name="painterly")
        return
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        app(args=argv, prog_name="painterly")
    finally:
        signal.signal(signal.SIGTERM, previous)

