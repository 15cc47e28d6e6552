"""Files in, file out: the Gatys run as the CLI and the web UI use it.

Loads the inputs (the content, the styles and an init image, when `config.init`
names a file), stylises, and writes the result with the full settings in its
metadata. Nothing is written unless the run produced an image; a run whose loss
diverged writes its last good image and then re-raises.

`settings_for` is that metadata record on its own, for API users who call
`stylize` and `save_image` themselves: one format for every Gatys output, so
`read_settings(path)["config"]` reads the CLI's files and theirs alike.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import torch

from . import __version__, images
from .config import INITS, StylizeConfig
from .errors import NumericalError
from .events import Callback, DoneEvent, Event, StepEvent, ignore
from .optimize import stylize
from .provenance import describe_file

StrPath = str | os.PathLike[str]


def settings_for(config: StylizeConfig, *, content: StrPath | None = None, styles: Sequence[StrPath] = ()) -> dict:
    """The settings record a Gatys output stores, as the CLI writes it: painterly's version, the method,
    `config.to_dict()` under "config", and the name and SHA-256 of each input file given (and of the
    init image, when `config.init` names one). Pass it to `save_image(..., settings=...)`."""
    return _settings(config, _sources(config, content, styles))


def stylize_files(
    content: StrPath,
    styles: Sequence[StrPath],
    output: StrPath,
    config: StylizeConfig,
    *,
    callback: Callback = ignore,
    max_pixels: int | None = None,
) -> dict:
    """Stylise image files into `output`; returns the summary stored in its metadata.

    A video `content` (`gatys_video.is_video_path`) is stylised frame by frame into the video `output`
    (`gatys_video.stylize_video_files`, whose summary this returns)."""
    from .gatys_video import is_video_path, stylize_video_files  # it builds on this module

    if is_video_path(content):
        return stylize_video_files(content, styles, output, config, callback=callback, max_pixels=max_pixels)
    inputs = [Path(content), *(Path(path) for path in styles)]
    content_image = images.load_image(inputs[0], max_pixels=max_pixels)
    style_images = [images.load_image(path, max_pixels=max_pixels) for path in inputs[1:]]
    init_image = None
    if config.init not in INITS:  # StylizeConfig has checked that it is a file
        init = Path(config.init)
        init_image = images.load_image(init, max_pixels=max_pixels)
        inputs.append(init)
    return stylize_and_save(content_image, style_images, output, config, callback=callback,
                            sources=_sources(config, content, styles), protect=inputs, init_image=init_image)


def stylize_and_save(
    content: torch.Tensor,
    styles: Sequence[torch.Tensor],
    output: StrPath,
    config: StylizeConfig,
    *,
    callback: Callback = ignore,
    sources: dict | None = None,
    protect: Sequence[Path] = (),
    init_image: torch.Tensor | None = None,
) -> dict:
    """Stylise tensors and write the result atomically, settings included; `init_image` as for `stylize`."""
    target = Path(output)
    done: dict = {}

    def relay(event: Event) -> None:
        if isinstance(event, DoneEvent):
            done.update(steps=event.steps, seconds=round(event.seconds, 3), losses=event.losses,
                        weights=event.weights, stopped_early=event.stopped_early,
                        precision=event.precision)
        elif isinstance(event, StepEvent) and event.image is not None:
            _save_intermediate(event, target, config, sources, protect)
        callback(event)

    summary = _settings(config, sources)
    try:
        result = stylize(content, styles, config, init_image=init_image, callback=relay)
    except NumericalError as error:
        if error.image is not None:
            images.save_image(error.image, target, settings={**summary, "status": f"diverged at step {error.step}"},
                              protect=protect)
        raise
    summary.update(done, output=str(target))
    images.save_image(result, target, settings=summary, protect=protect)
    return summary


def _save_intermediate(event: StepEvent, output: Path, config: StylizeConfig, sources, protect) -> None:
    path = output.with_name(f"{output.stem}.scale{event.scale}-step{event.step:05d}{output.suffix}")
    settings = {**_settings(config, sources), "intermediate": {"scale": event.scale, "step": event.step}}
    images.save_image(event.image, path, settings=settings, protect=protect)


def _sources(config: StylizeConfig, content: StrPath | None, styles: Sequence[StrPath]) -> dict:
    """Each input file's name and SHA-256, under "content", "styles" and "init"."""
    sources: dict = {}
    if content is not None:
        sources["content"] = describe_file(content)
    if styles:
        sources["styles"] = [describe_file(path) for path in styles]
    if config.init not in INITS:
        sources["init"] = describe_file(config.init)
    return sources


def _settings(config: StylizeConfig, sources: dict | None) -> dict:
    return {"painterly": __version__, "method": "gatys", "config": config.to_dict(), **(sources or {})}
