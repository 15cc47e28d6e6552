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

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from . import __version__, images, pixels, regions
from .atomic import staged
from .config import INITS, StylizeConfig
from .errors import NumericalError, UsageError
from .events import Callback, DoneEvent, Event, MessageEvent, StepEvent, ignore
from .optimize import check_region_styles, stylize
from .provenance import describe_file
from .regions import KEEP, RegionMask, mask_target

StrPath = str | os.PathLike[str]
MaskSpec = StrPath | np.ndarray | RegionMask  # regions.load_mask's: a file, "auto:K", labels, a mask


def settings_for(config: StylizeConfig, *, content: StrPath | None = None, styles: Sequence[StrPath] = (),
                 mask: RegionMask | None = None) -> dict:
    """The settings record a Gatys output stores, as the CLI writes it: painterly's version, the method,
    `config.to_dict()` under "config", and the name and SHA-256 of each input file given (and of the
    init image, when `config.init` names one; a `keep` style stays "keep"), and the mask's
    `describe` under "mask". Pass it to `save_image(..., settings=...)`."""
    return _settings(config, _sources(config, content, styles, mask))


def stylize_files(
    content: StrPath,
    styles: Sequence[StrPath],
    output: StrPath,
    config: StylizeConfig,
    *,
    callback: Callback = ignore,
    max_pixels: int | None = None,
    mask: MaskSpec | None = None,
) -> dict:
    """Stylise image files into `output`; returns the summary stored in its metadata.

    With `mask` (a mask file, "auto:K", a label array or a RegionMask: `regions.load_mask`), styles[k]
    paints region k and a style "keep" keeps the photo there. An "auto:K" mask is found from the photo
    (seeded by `config.mask_seed`) and written beside the output as `<output stem>.mask.png` with the
    output (`atomic.staged`: a run that fails, is interrupted or is killed leaves an earlier one as it
    was), never over an input; the file is named in the settings.

    A video `content` (`gatys_video.is_video_path`) is stylised frame by frame into the video `output`
    (`gatys_video.stylize_video_files`, whose summary this returns); not with a mask."""
    from .gatys_video import is_video_path, stylize_video_files  # it builds on this module

    if is_video_path(content):
        if mask is not None:
            raise UsageError(f"{os.fspath(content)}: --mask paints the regions of a photo; a video's frames "
                             f"move under a fixed mask (painterly apply --mask does that, with an AdaIN model's "
                             f"--style or a model's --region per region)")
        return stylize_video_files(content, styles, output, config, callback=callback, max_pixels=max_pixels)
    if config.flow != "dis":
        raise UsageError(f"{os.fspath(content)}: flow {config.flow} is the motion a video's frames follow; an image "
                         f"has none")
    paintings = [None if _is_keep(path) else Path(path) for path in styles]
    inputs = [Path(content), *(path for path in paintings if path is not None)]
    if isinstance(mask, (str, os.PathLike)) and regions.parse_mask_spec(os.fspath(mask)) is None:
        inputs.append(Path(mask))
    content_image = images.load_image(inputs[0], max_pixels=max_pixels)
    region_mask = None if mask is None else regions.load_mask(
        mask, pixels.to_array(content_image), max_pixels=max_pixels, seed=config.mask_seed)
    check_region_styles(paintings, region_mask, config)
    style_images = [None if path is None else images.load_image(path, max_pixels=max_pixels) for path in paintings]
    init_image = None
    if config.init not in INITS:  # StylizeConfig has checked that it is a file
        init = Path(config.init)
        init_image = images.load_image(init, max_pixels=max_pixels)
        inputs.append(init)
    if region_mask is None or "auto" not in region_mask.source:
        return stylize_and_save(content_image, style_images, output, config, callback=callback,
                                sources=_sources(config, content, styles, region_mask), protect=inputs,
                                init_image=init_image, mask=region_mask)
    # the new mask in place only with its output, as in apply: a failed or killed run leaves an earlier one
    with staged(mask_target(output)) as mask_file:
        region_mask = _write_auto_mask(region_mask, Path(output), inputs, mask_file)
        summary = stylize_and_save(content_image, style_images, output, config, callback=callback,
                                   sources=_sources(config, content, styles, region_mask), protect=inputs,
                                   init_image=init_image, mask=region_mask)
    callback(MessageEvent(f"wrote the {region_mask.count} regions found to {region_mask.source['file']}: "
                          f"edit it and pass it back as --mask to change them"))
    return summary


def _is_keep(path: StrPath) -> bool:
    return os.fspath(path) == KEEP


def _write_auto_mask(mask: RegionMask, output: Path, protect: Sequence[Path], staged_file: Path) -> RegionMask:
    """The found mask written into `staged_file`, which becomes `<output stem>.mask.png` (for the user to
    edit) with the output; the mask, now with that file and its SHA-256."""
    path = mask_target(output)
    images.check_output(output, protect=protect)  # a bad output is refused before the mask is written
    images.check_output(path, protect=[*protect, output])
    regions.write_mask(mask, staged_file)
    return dataclasses.replace(mask, source={**mask.source, **describe_file(staged_file), "file": os.fspath(path)})


def stylize_and_save(
    content: torch.Tensor,
    styles: Sequence[torch.Tensor | None],
    output: StrPath,
    config: StylizeConfig,
    *,
    callback: Callback = ignore,
    sources: dict | None = None,
    protect: Sequence[Path] = (),
    init_image: torch.Tensor | None = None,
    mask: RegionMask | None = None,
) -> dict:
    """Stylise tensors and write the result atomically, settings included; `init_image` and `mask` as for
    `stylize`."""
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
        result = stylize(content, styles, config, init_image=init_image, callback=relay, mask=mask)
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


def _sources(config: StylizeConfig, content: StrPath | None, styles: Sequence[StrPath],
             mask: RegionMask | None = None) -> dict:
    """Each input file's name and SHA-256, under "content", "styles" and "init"; the mask's record."""
    sources: dict = {}
    if content is not None:
        sources["content"] = describe_file(content)
    if styles:
        sources["styles"] = [KEEP if _is_keep(path) else describe_file(path) for path in styles]
    if config.init not in INITS:
        sources["init"] = describe_file(config.init)
    if mask is not None:
        sources["mask"] = mask.describe(config.mask_feather)
    return sources


def _settings(config: StylizeConfig, sources: dict | None) -> dict:
    return {"painterly": __version__, "method": "gatys", "config": config.to_dict(), **(sources or {})}
