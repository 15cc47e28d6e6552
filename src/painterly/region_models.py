"""Johnson networks by region (issue 13): each region of a mask stylised by its own fast model, or kept.

`FastStylizer.with_regions(mask, models)` binds one model (or None: keep the photo) per region of a
`regions.RegionMask`; the stylizer it returns goes through `stylize`, `stylize_batch`, `apply_files`
and videos unchanged. Each model stylises the whole image with its own padding and tiling (so memory
stays bounded as for one model), and the outputs are blended by the mask's feathered weights:
out = Σ_k w_k · model_k(photo), keep regions taking the photo itself. The sum is accumulated one model
at a time, so a batch costs one float32 accumulator per image plus one model's outputs, never K of
them; regions with the same model run it once, and a model whose regions are empty at an image's size
is not run. Strength and `preserve_color` are per pixel, so each model applying them before the blend
equals applying them after. With `--stroke-size` each model paints at the working size and the
outputs are blended at full size, the feathering scaled to span what it spans in the preview (at the
working size, as an AdaIN model's regions are feathered there): the print's seams are the preview's.

`--mask auto:K` (`AutoMask`) finds K regions in each photo (`regions.auto_mask`), for Johnson regions
and AdaIN paintings alike: `apply_files` writes each photo's mask beside its output as
`<output stem>.mask.png` (for the user to edit and pass back as --mask) and records its SHA-256; a
clip takes its first frame's mask for every frame (`AutoMask.once`), written once.
"""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from . import strokes
from .config import MASK_SEED
from .errors import UsageError
from .events import Callback, ignore
from .pixels import to_float32, to_uint8
from .provenance import describe_file
from .regions import KEEP, RegionMask, load_mask, mask_target, parse_mask_spec, shown_mask, write_mask

if TYPE_CHECKING:
    from .config import ApplyConfig
    from .fast import FastStylizer

_REGION_SPEC = re.compile(r"^\s*(\d+)\s*=(.+)$")


@dataclass(frozen=True)
class AutoMask:
    """`--mask auto:K`: a mask not yet found; each photo's is `regions.auto_mask(photo, K, seed=seed)`.

    `once()` gives one that keeps the first photo's mask for every later one (a clip's frames) and, given
    where, writes it there as soon as it is found (into `staged`, when given, an `atomic.staged`
    temporary that becomes `written` once the clip is). Its record (`describe`) is then one dict that the
    writing completes with the file's SHA-256 and the regions' colours, as an image's auto mask records
    them: a clip's settings hold that dict and are serialised only once its first frame is painted."""

    regions: int
    seed: int = MASK_SEED
    written: str | None = None  # where the mask is written, for the record
    staged: str | None = None  # where it is written meanwhile, if not there
    _kept: list[RegionMask] | None = field(default=None, compare=False, repr=False)
    _record: dict | None = field(default=None, compare=False, repr=False)  # once(): the one record, completed

    @property
    def count(self) -> int:
        return self.regions

    @property
    def source(self) -> dict:
        return {} if self.written is None else {"file": self.written}

    def once(self, written: str | os.PathLike | None = None, staged: str | os.PathLike | None = None) -> AutoMask:
        return replace(self, written=None if written is None else os.fspath(written),
                       staged=None if staged is None else os.fspath(staged), _kept=[], _record={})

    def describe(self, feather: int) -> dict:
        record = {**self.source, "auto": self.regions, "seed": self.seed, "feather": feather}
        if self._record is None:
            return record
        self._record.update({key: value for key, value in record.items() if key not in self._record})
        return self._record

    def for_image(self, image: np.ndarray) -> RegionMask:
        from .regions import auto_mask

        if self._kept:
            return self._kept[0]
        mask = auto_mask(image, self.regions, seed=self.seed)
        if self._kept is not None:
            if self.written is not None:  # written now, so the clip's record can name its SHA-256
                path = write_mask(mask, self.staged or self.written)
                assert self._record is not None
                self._record.update({**describe_file(path), "file": self.written,
                                     "regions": mask.describe(0)["regions"]})
            self._kept.append(mask)
        return mask


Mask = RegionMask | AutoMask


def mask_request(spec: str | os.PathLike | np.ndarray | Mask, *, max_pixels: int | None = None,
                 seed: int = MASK_SEED) -> Mask:
    """A front end's or the API's mask: "auto:K" stays a request until a photo comes; a file is read now."""
    if isinstance(spec, (RegionMask, AutoMask)):
        return spec
    if isinstance(spec, str) and (regions := parse_mask_spec(spec)) is not None:
        return AutoMask(regions, seed)
    return load_mask(spec, max_pixels=max_pixels, seed=seed)


def mask_for(mask: Mask, image: np.ndarray) -> RegionMask:
    """The regions an image (as prepared for the network) is stylised with."""
    return mask.for_image(image) if isinstance(mask, AutoMask) else mask


def check_count(mask: Mask, count: int, what: str) -> None:
    if mask.count != count:
        source = {"auto": mask.regions, **mask.source} if isinstance(mask, AutoMask) else mask.source
        raise UsageError(f"{shown_mask(source)} has {mask.count} regions and {count} {what}")


def bind_found_mask(stylizer: FastStylizer, image: np.ndarray, target: Path, *, staged: Path | None = None,
                    protect: Sequence[str | os.PathLike] = ()) -> FastStylizer:
    """An auto-mask stylizer with this photo's mask found, written beside `target` (into `staged`, when
    given: an `atomic.staged` temporary that becomes the mask once the output is written) and bound (its
    file and SHA-256 recorded)."""
    auto = stylizer.mask
    assert isinstance(auto, AutoMask)
    found = auto.for_image(image)
    path = write_mask(found, staged or mask_target(target), protect=protect)
    recorded = RegionMask(found.labels, found.colors, {**describe_file(path), "file": os.fspath(mask_target(target)),
                                                       "auto": auto.regions, "seed": auto.seed})
    return stylizer.with_mask(recorded)


# --- region models ----------------------------------------------------------------------------


@dataclass(frozen=True)
class RegionModels:
    """The mask and one plain (region-free) Johnson stylizer, or None for keep, per region."""

    mask: Mask
    models: tuple[FastStylizer | None, ...]

    def with_config(self, config: ApplyConfig) -> RegionModels:
        configured: dict[int, FastStylizer] = {}  # a model shared by several regions stays shared
        for model in self.models:
            if model is not None and id(model) not in configured:
                configured[id(model)] = model.with_config(config)
        return RegionModels(self.mask, tuple(None if m is None else configured[id(m)] for m in self.models))

    def with_mask(self, mask: Mask) -> RegionModels:
        check_count(mask, len(self.models), "region models")
        return RegionModels(mask, self.models)

    def input_files(self) -> list[str]:
        """The mask's and the models' files: an output must never overwrite them."""
        files = [str(model.model_path) for model in self.models if model is not None]
        if isinstance(self.mask.source.get("file"), str):
            files.append(self.mask.source["file"])
        return files

    def describe(self, feather: int) -> dict:
        """The mask and each region's model (file, SHA-256, style as the main model is recorded), in the
        mask's order, numbered from 1 as `--region` counts."""
        entries: list[dict] = []
        for number, model in enumerate(self.models, start=1):
            entries.append({"region": number, "keep": True} if model is None
                           else {"region": number, **model.describe()["model"]})
        return {"mask": self.mask.describe(feather), "region_models": entries}

    def stylize_batch(self, owner: FastStylizer, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Σ_k w_k · model_k(image) for each image, one model's outputs in memory at a time."""
        arrays = [owner.prepare(image) for image in images]
        weights = [self._weights(array, owner.config) for array in arrays]
        blended = [np.zeros(array.shape, dtype=np.float32) for array in arrays]
        for model, regions in self._groups():
            shares = [weights[index][regions].sum(axis=0) for index in range(len(arrays))]
            chosen = [index for index, share in enumerate(shares) if share.any()]
            if not chosen:
                continue
            sources = [arrays[index] for index in chosen]
            outputs = [to_float32(array) for array in sources] if model is None else model.stylize_batch(sources)
            for index, output in zip(chosen, outputs):
                blended[index] += shares[index][..., None] * to_float32(output)
            del outputs
        return [to_uint8(result) if np.asarray(image).dtype == np.uint8 else result
                for image, result in zip(images, blended)]

    def _weights(self, array: np.ndarray, config: ApplyConfig) -> np.ndarray:
        """The mask's weights at the image's size; with --stroke-size feathered over as much of the picture
        as `mask_feather` working-size pixels, as in the preview."""
        height, width = array.shape[:2]
        feather = strokes.at_full_size(config.mask_feather, height, width, config.stroke_size)
        return mask_for(self.mask, array).weights(height, width, feather)

    def _groups(self) -> list[tuple[FastStylizer | None, list[int]]]:
        """Each distinct model (None: keep) with the regions it paints."""
        groups: dict[int, tuple[FastStylizer | None, list[int]]] = {}
        for region, model in enumerate(self.models):
            groups.setdefault(id(model), (model, []))[1].append(region)
        return list(groups.values())


def bind_regions(owner: FastStylizer, mask: str | os.PathLike | np.ndarray | Mask,
                 models: Sequence[FastStylizer | str | os.PathLike | None], *,
                 callback: Callback = ignore) -> FastStylizer:
    """`FastStylizer.with_regions`: `owner` with models[k] (a stylizer, a model file or name, or None to
    keep the photo) painting region k of `mask`; every model takes `owner`'s settings."""
    from .fast import FastStylizer
    from .zoo import resolve_model

    _check_johnson(owner)
    region_mask = mask_request(mask, max_pixels=owner.config.max_pixels, seed=owner.config.mask_seed)
    models = list(models)
    check_count(region_mask, len(models), "models given: give one model (or None, keep) per region, in the "
                "order their colours first appear from the top-left")
    if all(model is None or isinstance(model, str) and model == KEEP for model in models):
        raise UsageError(f"every region of the mask is {KEEP!r}: there is nothing to paint")
    plain = copy.copy(owner)
    plain._regions = None
    loaded: dict[str, FastStylizer] = {os.path.realpath(owner.model_path): plain}
    chosen: list[FastStylizer | None] = []
    for model in models:
        if model is None or isinstance(model, str) and model == KEEP:
            chosen.append(None)
            continue
        if isinstance(model, FastStylizer):  # with owner's settings, one file is one model: run once
            key = os.path.realpath(model.model_path)
            if key not in loaded:
                _check_johnson(model)
                region_free = model.with_config(owner.config)
                region_free._regions = None
                loaded[key] = region_free
        else:
            key = os.path.realpath(resolve_model(model, callback=callback))
            if key not in loaded:
                loaded[key] = _check_johnson(FastStylizer(key, owner.config, callback=callback))
        chosen.append(loaded[key])
    other = copy.copy(owner)
    other._regions = RegionModels(region_mask, tuple(chosen))
    return other


def _check_johnson(stylizer: FastStylizer) -> FastStylizer:
    if stylizer.is_arbitrary:
        raise UsageError(f"{stylizer.model_path}: --region gives a region a Johnson model; an arbitrary-style "
                         "(AdaIN) model takes one --style painting per --mask region instead")
    return stylizer


# --- the command line: --region N=MODEL|keep ----------------------------------------------------


def parse_regions(specs: Sequence[str]) -> dict[int, str]:
    """`--region N=MODEL` / `N=keep` options as {N (from 1): model or KEEP}: a bad or repeated N is one line."""
    chosen: dict[int, str] = {}
    for spec in specs:
        match = _REGION_SPEC.match(spec)
        if match is None or not match.group(2).strip():
            raise UsageError(f"--region {spec[:60]}: expected N=MODEL or N={KEEP}, N the region's number "
                             "counted from 1 in the mask's order")
        number, model = int(match.group(1)), match.group(2).strip()
        if number in chosen:
            raise UsageError(f"--region {number} is given twice ({chosen[number]} and {model})")
        chosen[number] = model
    return chosen


def regions_from_options(stylizer: FastStylizer, mask: str, specs: Sequence[str], *,
                         callback: Callback = ignore) -> FastStylizer:
    """`apply MODEL --mask M --region N=MODEL…`: the regions not named take the positional model."""
    chosen = parse_regions(specs)
    _check_johnson(stylizer)
    region_mask = mask_request(mask, max_pixels=stylizer.config.max_pixels, seed=stylizer.config.mask_seed)
    for number in chosen:
        if not 1 <= number <= region_mask.count:
            shown = region_mask.source.get("file", f"--mask {mask}")
            raise UsageError(f"--region {number}: {shown} has {region_mask.count} regions, numbered 1 to "
                             f"{region_mask.count} in the order their colours first appear from the top-left")
    models: list[FastStylizer | str | None] = [stylizer] * region_mask.count
    for number, model in chosen.items():
        models[number - 1] = None if model == KEEP else model
    return stylizer.with_regions(region_mask, models, callback=callback)
