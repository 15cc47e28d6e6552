"""The web UI's mask editor: regions painted, loaded from a file or found automatically over the photo,
and a style chosen for each; shared by the Optimize (Gatys), Fast (Johnson) and Any painting (AdaIN) tabs.

The editor is Gradio's `ImageEditor` with the photo as its background and a fixed brush of
`len(BRUSH)` colours. Its layers become a label mask: **region 1 is whatever is left unpainted**
(erased counts as unpainted) and region k+1 is the k-th brush colour, so the page holds up to
`len(REGION_NAMES)` regions. A pixel counts as painted where a layer's alpha is at least
`PAINTED_ALPHA` (a stroke's antialiased rim is half in, half out), and takes the brush colour nearest
to its own; a later layer covers an earlier one.

A mask file loaded into the editor, or an automatic mask (`regions.auto_mask`), is shown in the
editor's background: the photo with region k+1 tinted in the k-th brush colour (region 1 as it is),
because Gradio 6.31's editor draws the layers a server sets only until the first stroke and then
drops them. Its labels are kept by the page (a `gr.State`, the `loaded` argument of the handlers) and
the strokes painted after loading override them where painted (`mask_labels`); the eraser takes back
strokes, not the loaded regions. The brush then has the mask's colours only and the region choices
are the mask's regions; a new photo (or clearing the editor) gives back all six.

At run time the drawing is written into the job's folder as a mask PNG (the unpainted rest white),
read back with `regions.read_mask` like any mask file (so the settings record its SHA-256 and its
regions in the file's order), and offered for download. Each region's choice is a painting number
("1", …) or a model name, or `KEEP`. Importing this module needs no Gradio; the layout functions
import it themselves.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from .config import MASK_SEED
from .errors import UsageError
from .images import read_array, save_image
from .regions import KEEP, PALETTE, RegionMask, auto_mask, read_mask

if TYPE_CHECKING:
    import gradio

BRUSH: tuple[tuple[int, int, int], ...] = PALETTE[:5]  # auto_mask's colours too, so its regions look the same
REGION_NAMES = ("unpainted", "red", "green", "blue", "yellow", "orange")  # region 1, then each brush colour
UNPAINTED = (255, 255, 255)  # the unpainted rest's colour in the mask file written
PAINTED_ALPHA = 128
TINT = 0.55  # how much of its brush colour a loaded mask's region shows over the photo in the editor
MASK_FILE = "mask.png"  # the drawing as written into a job's folder
AUTO_REGIONS = 3  # the automatic mask's number of regions until the user changes it
HELP = (
    "Paint over the photo with the brush: each colour is a region, and what you leave unpainted is one more "
    "(region 1). Choose a style for each region below; regions you did not paint are ignored. Or load a mask "
    "file (one flat colour per region: its region 1 shows as the photo, the next tinted in the brush's colours), "
    "or let **Find regions** split the photo by colour and position; then paint over either with its colours "
    "(the eraser takes back strokes; a new photo starts again). An empty drawing styles the whole photo. The "
    "mask as used is offered for download (use it with `--mask` on the command line)."
)


def _hex(colour: tuple[int, int, int]) -> str:
    return "#{:02x}{:02x}{:02x}".format(*colour)


# --- the drawing and the label mask (no Gradio) ----------------------------------------------------


def drawn_labels(value: dict | None) -> np.ndarray | None:
    """The editor's layers as HxW uint8 labels (0 unpainted, k the k-th brush colour); None when nothing is painted."""
    layers = [np.asarray(layer) for layer in (value or {}).get("layers") or [] if layer is not None]
    if not layers:
        return None
    shape = layers[0].shape[:2]
    labels = np.zeros(shape, dtype=np.uint8)
    brush = np.asarray(BRUSH, dtype=np.int32)
    for layer in layers:
        if layer.ndim != 3 or layer.shape[2] != 4 or layer.shape[:2] != shape:
            raise UsageError(f"the mask drawing's layers must be RGBA images of one size, got {layer.shape}")
        painted = layer[..., 3] >= PAINTED_ALPHA
        colours = layer[painted][:, :3].astype(np.int32)
        best = np.full(len(colours), np.iinfo(np.int32).max, dtype=np.int32)
        nearest = np.zeros(len(colours), dtype=np.uint8)
        for index, colour in enumerate(brush, start=1):  # one colour at a time: no N x colours array
            distance = ((colours - colour) ** 2).sum(axis=1)
            closer = distance < best
            best[closer], nearest[closer] = distance[closer], index
        labels[painted] = nearest
    return labels if labels.any() else None


def editor_layer(labels: np.ndarray) -> np.ndarray:
    """HxWx4 uint8: label 0 transparent, label k opaque in the k-th brush colour (`drawn_labels`' inverse)."""
    table = np.zeros((len(REGION_NAMES), 4), dtype=np.uint8)
    table[1:, :3] = BRUSH
    table[1:, 3] = 255
    return table[labels]


def photo_in_editor(photo: str | None, *, max_pixels: int | None = None) -> dict | None:
    """The editor's value for a new photo: the photo (upright, as the engines read it) and nothing drawn."""
    if not photo:
        return None
    rgb, _ = read_array(photo, max_pixels=max_pixels, min_side=1, dtype=np.uint8)
    return {"background": rgb, "layers": [], "composite": None}


def mask_labels(value: dict | None, loaded: np.ndarray | None) -> np.ndarray | None:
    """The labels a run uses: the `loaded` mask's (None: none loaded) with the strokes over it where painted
    (`drawn_labels`; the loaded labels resized to the strokes' size, nearest, should they differ)."""
    drawn = drawn_labels(value)
    if loaded is None:
        return drawn
    labels = np.asarray(loaded, dtype=np.uint8)
    if drawn is None:
        return labels
    if labels.shape != drawn.shape:
        labels = np.asarray(Image.fromarray(labels).resize(drawn.shape[::-1], Image.Resampling.NEAREST))
    return np.where(drawn > 0, drawn, labels)


def tinted(rgb: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """The photo (HxWx3 uint8) with label k > 0 blended `TINT` of the way to the k-th brush colour: a loaded
    mask as the editor's background shows it."""
    table = np.zeros((len(REGION_NAMES), 3), dtype=np.float32)
    table[1:] = BRUSH
    weight = np.where(labels > 0, TINT, 0.0).astype(np.float32)[..., None]
    return np.rint(rgb * (1 - weight) + table[labels] * weight).astype(np.uint8)


@dataclass(frozen=True)
class LoadedMask:
    """A mask loaded into the editor: the editor's value (the tinted photo, nothing drawn) and its labels at
    the editor's size (0 its region 1, k its region k+1), for the page to keep."""

    value: dict
    labels: np.ndarray
    count: int


def mask_in_editor(photo: str | None, mask: RegionMask, shown: str, *, max_pixels: int | None = None
                   ) -> LoadedMask:
    """`mask` over the photo (resized to it, nearest) in the editor: region 1 as the photo is, region k+1 tinted
    in the k-th brush colour (`tinted`). More regions than the page has colours is one line."""
    if mask.count > len(REGION_NAMES):
        raise UsageError(f"{shown} has {mask.count} regions and the page's editor shows {len(REGION_NAMES)} at most "
                         f"(the unpainted rest and {len(BRUSH)} colours); `painterly stylize`/`apply --mask` take "
                         f"more")
    if not photo:
        raise UsageError("upload the photo first: the mask is shown over it")
    shown_photo = photo_in_editor(photo, max_pixels=max_pixels)
    assert shown_photo is not None
    height, width = shown_photo["background"].shape[:2]
    labels = mask.labels
    if labels.shape != (height, width):
        labels = np.asarray(Image.fromarray(labels).resize((width, height), Image.Resampling.NEAREST))
    return LoadedMask({**shown_photo, "background": tinted(shown_photo["background"], labels)}, labels, mask.count)


def mask_file_in_editor(photo: str | None, mask_file: str | None, *, max_pixels: int | None = None
                        ) -> LoadedMask:
    """A mask file's regions in the editor over the photo (`mask_in_editor`)."""
    if not mask_file:
        raise UsageError("choose a mask file to load")
    mask = read_mask(mask_file, max_pixels=max_pixels)
    return mask_in_editor(photo, mask, Path(mask_file).name, max_pixels=max_pixels)


def automatic_in_editor(photo: str | None, count: float | None, *, max_pixels: int | None = None,
                        seed: int = MASK_SEED) -> LoadedMask:
    """`count` regions found in the photo (`regions.auto_mask`), in the editor over it."""
    if not photo:
        raise UsageError("upload the photo first: its regions are found from its colours")
    if count is None or int(count) != count or not 2 <= count <= len(REGION_NAMES):
        raise UsageError(f"regions to find: a whole number from 2 to {len(REGION_NAMES)}, got {count}")
    rgb, _ = read_array(photo, max_pixels=max_pixels, min_side=1, dtype=np.uint8)
    mask = auto_mask(rgb, int(count), seed=seed)
    return mask_in_editor(photo, mask, f"auto:{int(count)}", max_pixels=max_pixels)


@dataclass(frozen=True)
class DrawnMask:
    """The drawing as used: the mask file written, read back, and each of its regions' choice in its order."""

    path: Path
    mask: RegionMask
    choices: tuple[str, ...]  # per region of `mask` (the file's order): a painting number, a model name or KEEP
    names: tuple[str, ...]  # per region: "unpainted", "red"…, for messages


def save_drawing(value: dict | None, choices: Sequence[str | None], folder: Path, *,
                 loaded: np.ndarray | None = None, max_pixels: int | None = None) -> DrawnMask | None:
    """The editor's drawing (over the `loaded` mask's labels, if any: `mask_labels`) written as
    `folder`/mask.png and read back; None when nothing is painted or loaded.

    `choices` has one entry per region of the page (unpainted first, then each brush colour). Regions
    not painted are left out; a drawing of one region only, or one without a choice, is one line.
    """
    labels = mask_labels(value, loaded)
    if labels is None:
        return None
    present = [int(label) for label in np.unique(labels)]
    if len(present) < 2:
        raise UsageError(f"the mask drawing is all {REGION_NAMES[present[0]]}: paint a second colour (or leave part "
                         f"unpainted) for two regions, or clear the drawing to style the whole photo")
    for label in present:
        if label >= len(choices) or not choices[label]:
            raise UsageError(f"the {REGION_NAMES[label]} region has no style chosen: choose one, or {KEEP}")
    table = np.asarray([UNPAINTED, *BRUSH], dtype=np.uint8)
    Path(folder).mkdir(parents=True, exist_ok=True)
    path = save_image(table[labels], Path(folder) / MASK_FILE, settings={"mask": "drawn in painterly's web UI"})
    mask = read_mask(path, max_pixels=max_pixels)
    colours: list[tuple[int, ...] | None] = [tuple(int(c) for c in colour) for colour in table]
    order = [colours.index(colour) for colour in mask.colors]  # the file's regions, as the page numbers them
    return DrawnMask(path, mask, tuple(str(choices[label]) for label in order),
                     tuple(REGION_NAMES[label] for label in order))


def painting_order(drawn: DrawnMask, paintings: int) -> list[int | None]:
    """The painting (0-based; None keeps the photo) each of the mask's regions takes, from "1", "2"… or KEEP."""
    order: list[int | None] = []
    for choice, name in zip(drawn.choices, drawn.names, strict=True):
        if choice == KEEP:
            order.append(None)
        elif choice.isdigit() and 1 <= int(choice) <= paintings:
            order.append(int(choice) - 1)
        else:
            have = "no painting is" if paintings == 0 else f"{paintings} painting{'s are' if paintings > 1 else ' is'}"
            raise UsageError(f"the {name} region takes painting {choice} and {have} uploaded: choose another, "
                             f"or {KEEP}")
    if all(index is None for index in order):
        raise UsageError("every region of the mask drawing keeps the photo: choose a painting for one at least")
    return order


def model_order(drawn: DrawnMask) -> list[str | None]:
    """The model name (None keeps the photo) each of the mask's regions takes."""
    order = [None if choice == KEEP else choice for choice in drawn.choices]
    if all(name is None for name in order):
        raise UsageError("every region of the mask drawing keeps the photo: choose a model for one at least")
    return order


class LastMasks:
    """The mask file each browser session's last run in each tab used, for the tab's download box."""

    def __init__(self, *, keep: int = 256) -> None:
        self._paths: dict[tuple[str, str], Path | None] = {}
        self._keep = keep  # sessions x tabs remembered; the oldest forgotten first
        self._lock = threading.Lock()

    def record(self, session: str, tab: str, path: Path | None) -> None:
        with self._lock:
            self._paths.pop((session, tab), None)
            self._paths[(session, tab)] = path
            while len(self._paths) > self._keep:
                self._paths.pop(next(iter(self._paths)))

    def last(self, session: str, tab: str) -> str | None:
        """The path, while its job folder is still there."""
        with self._lock:
            path = self._paths.get((session, tab))
        return str(path) if path is not None and path.is_file() else None


# --- the layout --------------------------------------------------------------------------------------


@dataclass
class RegionControls:
    """The components one tab's regions are made of; `inputs` is what its handler takes, in this order."""

    tab: str
    editor: gradio.ImageEditor
    feather: gradio.Number
    choices: list[gradio.Dropdown]
    mask_file: gradio.File
    loaded: gradio.State  # the labels of the mask loaded or found (`LoadedMask.labels`), None when none is

    @property
    def inputs(self) -> list[Any]:
        return [self.editor, self.feather, *self.choices, self.loaded]

    def show_used_mask(self, run: Any, masks: LastMasks) -> None:
        """Once `run` (the tab's run event) has succeeded, the mask file it drew, if any, in the download box."""
        import gradio as gr

        def used(request: gr.Request) -> str | None:
            return masks.last(request.session_hash or "", self.tab)

        used.__annotations__["request"] = gr.Request  # Gradio finds its argument by type; a string would not do

        run.success(used, outputs=self.mask_file, api_name=f"{self.tab}_mask_used")


def painting_choices(names: Sequence[str]) -> list[tuple[str, str]]:
    """(label, value) of each region's painting list: keep the photo, then each painting by number and name."""
    return [("keep the photo", KEEP), *((f"{index}: {name}", str(index)) for index, name in enumerate(names, 1))]


def default_painting(label: int, paintings: int) -> str:
    """Unpainted keeps the photo; the k-th brush colour takes painting k (the first when there are fewer)."""
    if label == 0 or paintings == 0:
        return KEEP
    return str(label if label <= paintings else 1)


def model_choices(listed: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    """(label, value) of each region's model list in the Fast tab: keep the photo, then the listed models."""
    return [("keep the photo", KEEP), *listed]


def default_model(label: int, listed: Sequence[tuple[str, str]]) -> str:
    """Unpainted keeps the photo; each brush colour takes the first listed model (none listed: keeps)."""
    return listed[0][1] if label > 0 and listed else KEEP


def followed(options: list[tuple[str, str]], current: Sequence[str | None],
             default: Callable[[int], str]) -> list[gradio.Dropdown]:
    """Each region's dropdown given `options`: its `current` value kept while it is still one of them, else
    `default(label)` (the lists that follow the uploaded paintings, and the Fast tab's models)."""
    import gradio as gr

    values = {value for _, value in options}
    return [gr.Dropdown(choices=options, value=value if value in values else default(label))
            for label, value in enumerate(current)]


def region_controls(tab: str, *, choices: list[tuple[str, str]], defaults: Sequence[str | None],
                    feather: int, max_pixels: int, photo: Any) -> RegionControls:
    """The mask editor, its load/find buttons, a choice per region and the feather, inside an accordion.

    `photo` is the tab's photo component (a file or a list of files: the first is drawn over); a new
    photo clears the drawing. The errors of loading and finding are lines in the page."""
    import gradio as gr

    from .web_handlers import shown_in_page

    with gr.Accordion("Regions: a different style in each part of the photo (mask)", open=False,
                      elem_id=f"{tab}-regions"):
        gr.Markdown(HELP)
        editor = gr.ImageEditor(
            label="Mask", elem_id=f"{tab}-mask-editor", type="numpy", image_mode="RGBA", sources=(),
            transforms=(), format="png", layers=False, buttons=["fullscreen"], height=420,
            brush=gr.Brush(colors=[_hex(colour) for colour in BRUSH], default_color=_hex(BRUSH[0]),
                           color_mode="fixed"),
            eraser=gr.Eraser(), placeholder="Upload the photo above, then paint its regions here")
        with gr.Row():
            load = gr.UploadButton("Load a mask file", file_types=["image"], size="sm", elem_id=f"{tab}-mask-load")
            count = gr.Number(AUTO_REGIONS, label="Regions to find", precision=0, minimum=2,
                              maximum=len(REGION_NAMES), min_width=120, elem_id=f"{tab}-mask-count")
            find = gr.Button("Find regions", size="sm", elem_id=f"{tab}-mask-find")
        dropdowns = []
        for row in range(0, len(REGION_NAMES), 3):  # three to a row: room for a painting's name
            with gr.Row():
                # allow_custom_value: a run clicked before the page has the lists that follow a new upload sends
                # the old value, which Gradio would refuse as a traceback in the page even for a region the
                # drawing does not use; painting_order/model_order check the regions a mask really has.
                dropdowns += [gr.Dropdown(choices, value=defaults[label], label=f"Region {label + 1}: {name}",
                                          elem_id=f"{tab}-region-{label + 1}", min_width=140,
                                          allow_custom_value=True)
                              for label, name in enumerate(REGION_NAMES[row:row + 3], start=row)]
        with gr.Row():
            feather_box = gr.Number(feather, label="Feather (pixels)", precision=0, minimum=0, maximum=256,
                                    info="how far region edges fade into each other", elem_id=f"{tab}-feather")
            mask_file = gr.File(label="The mask as used (PNG)", interactive=False, elem_id=f"{tab}-mask-file")
    loaded = gr.State(None)

    def shown(value: dict | None, labels: np.ndarray | None, count: int, *, keep: bool = False) -> list[Any]:
        """The editor with `value` (`keep`: as it is) and the brush's colours of `count` regions, the labels
        kept, and the choices of those regions."""
        brush = gr.Brush(colors=[_hex(colour) for colour in BRUSH[:count - 1]], default_color=_hex(BRUSH[0]),
                         color_mode="fixed")
        shown_editor = gr.ImageEditor(brush=brush) if keep else gr.ImageEditor(value=value, brush=brush)  # type: ignore[arg-type]  # Gradio's EditorValue is this dict
        return [shown_editor, labels, *(gr.Dropdown(visible=label < count) for label in range(len(REGION_NAMES)))]

    def first(files: Any) -> str | None:
        if isinstance(files, list):
            files = files[0] if files else None
        return files if isinstance(files, str) else None

    def named(*paths: str | None) -> list[str]:
        return [path for path in paths if path]

    def show_photo(files: Any) -> list[Any]:
        with shown_in_page(*named(first(files))):
            return shown(photo_in_editor(first(files), max_pixels=max_pixels), None, len(REGION_NAMES))

    def show_file(files: Any, mask: str | None) -> list[Any]:
        with shown_in_page(*named(first(files), mask)):
            found = mask_file_in_editor(first(files), mask, max_pixels=max_pixels)
        return shown(found.value, found.labels, found.count)

    def show_found(files: Any, regions: float | None) -> list[Any]:
        with shown_in_page(*named(first(files))):
            found = automatic_in_editor(first(files), regions, max_pixels=max_pixels)
        return shown(found.value, found.labels, found.count)

    def cleared() -> list[Any]:
        return shown(None, None, len(REGION_NAMES), keep=True)

    outputs = [editor, loaded, *dropdowns]
    photo.change(show_photo, inputs=photo, outputs=outputs, api_visibility="private")
    load.upload(show_file, inputs=[photo, load], outputs=outputs, api_name=f"{tab}_mask_file")
    find.click(show_found, inputs=[photo, count], outputs=outputs, api_name=f"{tab}_mask_find")
    editor.clear(cleared, outputs=outputs, api_visibility="private")
    return RegionControls(tab, editor, feather_box, dropdowns, mask_file, loaded)


def follow_paintings(controls: RegionControls, paintings: Any, extra: Any = None, *, extra_name: str = "") -> None:
    """Keep each region's painting list to the uploaded paintings (and, with `extra`, a checkbox adding a
    painting last, as the Optimize tab's sample): by number and file name, each choice kept while it exists."""
    import gradio as gr

    inputs = [paintings, *([extra] if extra is not None else []), *controls.choices]

    def updated(files: Any, *rest: Any) -> list[gradio.Dropdown]:
        with_extra = bool(rest[0]) if extra is not None else False
        current = rest[1:] if extra is not None else rest
        names = [Path(path).name for path in (files or [])] + ([extra_name] if with_extra else [])
        return followed(painting_choices(names), current, lambda label: default_painting(label, len(names)))

    triggers = [paintings.change, *([extra.change] if extra is not None else [])]
    gr.on(triggers, updated, inputs=inputs, outputs=controls.choices, api_visibility="private")

