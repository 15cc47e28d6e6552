"""What the web UI's buttons do: each calls the public API and shows a user's mistake as a message.

Imported only by `web.build_app`, once it has made sure that Gradio is installed. A
`PainterlyError` becomes a `gr.Error` with its one line, which stays in the page until the user
closes it (a message that fades leaves only the outputs' red "Error" badges behind); anything
else is a bug, which Gradio reports as a bare "Error" while the traceback stays in the server log.
Results are named after what made them (`tubingen_starry_night.png`), as their downloads are.
The catalogue's published models (`zoo`) are offered by name beside the model files found, and pulled
the first time one is chosen, with the download's progress in the page.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import gradio as gr
import numpy as np

from . import pixels, zoo
from .apply import apply_files
from .config import ApplyConfig, StylizeConfig
from .errors import PainterlyError, UsageError
from .events import (
    Callback,
    DoneEvent,
    DownloadEvent,
    Event,
    MessageEvent,
    StepEvent,
    StopRequested,
    VideoProgressEvent,
    ignore,
)
from .fast import KEEP, FastStylizer, Style
from .modelfile import is_arbitrary, read_metadata
from .pipeline import stylize_files
from .regions import read_mask
from .web_files import Workspace, download_name
from .web_regions import (
    DrawnMask,
    LastMasks,
    default_model,
    followed,
    model_choices,
    model_order,
    painting_order,
    save_drawing,
)

MODEL_SUFFIXES = (".safetensors", ".onnx", ".pth")
FAST = "fast"  # a model of one style (Johnson et al.): the Fast and Video tabs
ARBITRARY = "arbitrary"  # a model that takes any painting at run time (AdaIN): the Any painting tab
_KIND_TEXT = {FAST: "is a fast model of one style", ARBITRARY: "is an arbitrary-style model that needs a painting"}
_KIND_TAB = {FAST: "Fast", ARBITRARY: "Any painting"}
_ZOO_KINDS = {"johnson": FAST, "adain": ARBITRARY}  # a catalogue entry's kind -> the tabs that take it
LIVE_UPDATES = 20  # about this many intermediate images per optimisation, whatever its length


@contextmanager
def shown_in_page(*uploads: str) -> Iterator[None]:
    """Turn a user's mistake into a message in the page instead of a failed request."""
    try:
        yield
    except PainterlyError as error:
        raise _page_error(_as_uploaded(str(error), uploads)) from None


def _page_error(message: str) -> gr.Error:
    """A user's mistake, shown in the page until closed; it needs no traceback in the server log."""
    return gr.Error(message, duration=None, print_exception=False)


def _as_uploaded(message: str, uploads: Iterable[str]) -> str:
    """`message` naming each upload by its file name, as the user knows it, not by its path on the server."""
    for path in uploads:
        message = message.replace(path, Path(path).name)
    return message


class ModelCatalog:
    """The models the UI offers, and one loaded network per file, shared by all requests.

    A request names a model by file name or by catalogue name, and only those are accepted: no
    request can make the server open a path of its choosing. The files are the folders' model
    files; a catalogue model is offered once pulled (its file in `zoo.models_dir()` is listed under
    its name, not as a file) and pulled on first use, one download per name at a time. Each model
    is one of two kinds, told apart once per file version (a catalogue model by its entry): FAST (a
    Johnson network, one style) or ARBITRARY (AdaIN, any painting); each tab lists and takes only
    its own kind.
    """

    def __init__(self, folders: list[Path], *, device: str) -> None:
        self.folders = folders
        self.device = device
        self._loaded: dict[tuple[Path, int], FastStylizer] = {}
        self._kinds: dict[tuple[Path, int], str] = {}
        self._pulls: dict[str, threading.Lock] = {}  # catalogue name -> held while it is being pulled
        self._lock = threading.Lock()

    def names(self, kind: str | None = None) -> list[str]:
        """The listed names (file names, and the names of the catalogue models pulled), of one kind
        (FAST or ARBITRARY) when given."""
        return sorted(name for name, path in self._listing().items()
                      if kind is None or self._kind_of(name, path) == kind)

    def choices(self, kind: str | None = None) -> list[tuple[str, str]]:
        """(label, name) of each listed model, as the page's model list shows them: a file by its name, a
        pulled catalogue model by what it is and where it comes from."""
        entries = zoo.catalogue()
        return [(published_label(entries[name]) if name in entries else name, name) for name in self.names(kind)]

    def published(self, kind: str) -> list[zoo.Entry]:
        """The catalogue's models of `kind`, pulled or not, in the catalogue's order."""
        return [entry for entry in zoo.catalogue().values() if _ZOO_KINDS.get(entry.kind) == kind]

    def kind(self, name: str | None) -> str:
        """FAST or ARBITRARY, for a listed model or a catalogue model (pulled or not)."""
        return self._kind_of(name, None if name in zoo.catalogue() else self._path(name))

    def stylizer(self, name: str | None, config: ApplyConfig | None = None, *, kind: str | None = None,
                 callback: Callback = ignore) -> FastStylizer:
        """The loaded model, with `config`'s settings when given; loaded again only when its file has changed.

        With `kind`, a model of the other kind is refused with a line that names the tab it belongs
        to (a catalogue model before it is downloaded). A catalogue model is pulled first if it is
        not on disk, and checked as every use of a pulled model is (`pull`); progress goes to `callback`.
        """
        if kind is not None:
            self.check_kind(name, kind)
        path = self.pull(name or "", callback=callback) if name in zoo.catalogue() else self._path(name)
        loaded = self._load(path)
        return loaded if config is None else loaded.with_config(config)

    def check_kind(self, name: str | None, kind: str) -> None:
        """A model of the other kind than `kind` is refused with a line that names the tab it belongs to."""
        model_kind = self.kind(name)
        if model_kind != kind:
            raise UsageError(f"{name} {_KIND_TEXT[model_kind]}: choose it in the {_KIND_TAB[model_kind]} "
                             f"tab, or one of this tab's models")

    def pull(self, name: str, *, callback: Callback = ignore) -> Path:
        """The catalogue model `name`'s file: `zoo.pull`, which downloads it if it is not on disk and checks
        it if it is. Requests for one name take turns, so that two never pull it into the same file at
        once; one that waits says so to `callback` (a MessageEvent), then finds the model pulled."""
        entry = zoo.entry(name)  # an unknown name is a ModelFileError naming the closest ones
        with self._lock:
            turn = self._pulls.setdefault(entry.name, threading.Lock())
        if not turn.acquire(blocking=False):
            callback(MessageEvent(f"{entry.name}: waiting for the download another request started"))
            turn.acquire()
        try:
            return zoo.pull(entry.name, callback=callback)
        finally:
            turn.release()

    def _load(self, path: Path) -> FastStylizer:
        key = (path, path.stat().st_mtime_ns)
        with self._lock:  # two first requests for one model load it once
            if key not in self._loaded:
                self._loaded[key] = FastStylizer(path, ApplyConfig(device=self.device))
            return self._loaded[key]

    def _kind_of(self, name: str | None, path: Path | None) -> str:
        """A catalogue model's kind is its entry's (known before it is downloaded); a file's is `_kind`'s."""
        entry = zoo.catalogue().get(name or "")
        if entry is not None:
            return _ZOO_KINDS[entry.kind]
        assert path is not None  # a listed file
        return self._kind(path)

    def _kind(self, path: Path) -> str:
        """Whether `path` takes a painting at run time: from a .safetensors file's metadata (its header,
        no tensors), by loading a .onnx file (its inputs say it; the loaded model is kept for use), and
        FAST for pytorch/examples' .pth files. A file that cannot be read is FAST, so that it stays where
        it was listed before arbitrary models existed and says what is wrong with it when chosen."""
        try:
            key = (path, path.stat().st_mtime_ns)
        except OSError:
            return FAST
        with self._lock:
            known = self._kinds.get(key)
        if known is not None:
            return known
        kind = FAST
        try:
            if path.suffix.lower() == ".safetensors":
                kind = ARBITRARY if is_arbitrary(read_metadata(path)) else FAST
            elif path.suffix.lower() == ".onnx":
                kind = ARBITRARY if self._load(path).is_arbitrary else FAST
        except PainterlyError:
            pass
        with self._lock:
            self._kinds[key] = kind
        return kind

    def _path(self, name: str | None) -> Path:
        listing = self._listing()
        if name not in listing:
            what = f"unknown model {name!r}" if name else "no model chosen"
            where = ", ".join(map(str, self.folders))
            raise UsageError(f"{what}: choose one from the list (model files are looked for in {where})")
        return listing[name]

    def _listing(self) -> dict[str, Path]:
        """Name -> path: each folder's model files by file name (on equal names the earlier folder, --models,
        wins), and each pulled catalogue model by its catalogue name instead of its file name."""
        pulled = {name: zoo.model_path(name) for name in zoo.catalogue() if zoo.is_pulled(name)}
        pulled_files = {path.resolve() for path in pulled.values()}
        found: dict[str, Path] = {}
        for folder in self.folders:
            if folder.is_dir():
                for path in sorted(folder.iterdir()):
                    if (path.suffix.lower() in MODEL_SUFFIXES and not path.name.startswith(".")  # temporaries, locks
                            and path.is_file() and path.resolve() not in pulled_files):
                        found.setdefault(path.name, path)
        return {**found, **pulled}


def published_label(entry: zoo.Entry, pulled: bool | None = None) -> str:
    """A catalogue model as the page lists it: "candy — Candy, pytorch/examples", and with `pulled`
    whether it is on disk yet."""
    label = f"{entry.name} — {entry.title.split(' — ')[0]}, {entry.source['project']}"
    if pulled is None:
        return label
    return f"{label} · {'downloaded' if pulled else 'not downloaded yet'}"


def licence_line(entries: list[zoo.Entry], chosen: str | None) -> str:
    """A line of Markdown for beside the catalogue's models: the licence, source and painting of the one
    `chosen`; with none chosen, each licence and source with the models under it."""
    by_name = {entry.name: entry for entry in entries}
    if chosen in by_name:
        entry = by_name[chosen]
        licence, source, style = entry.licence, entry.source, entry.style
        painting = f"; painting: {style['title']}, {style['artist']}" if style.get("title") else ""
        return (f"**{entry.name}**: licence {licence['spdx']} ({licence['covers']}; read in {licence['file']}), "
                f"from [{source['project']}]({source['url']}){painting}. "
                f"`painterly models info {entry.name}` tells the rest.")
    groups: dict[tuple[str, str, str], list[str]] = {}
    for entry in entries:
        key = (entry.licence["spdx"], entry.source["project"], entry.source["url"])
        groups.setdefault(key, []).append(entry.name)
    listed = "; ".join(f"{', '.join(names)}: licence {spdx}, from [{project}]({url})"
                       for (spdx, project, url), names in groups.items())
    return f"Published models, downloaded the first time one is chosen: {listed}." if listed else ""


class StopSignals:
    """The runs of each browser session, so that its Stop button stops its own runs only."""

    def __init__(self) -> None:
        self._running: dict[str, set[threading.Event]] = {}
        self._lock = threading.Lock()

    @contextmanager
    def watch(self, session: str) -> Iterator[threading.Event]:
        """An event that the session's Stop button sets while the `with` block runs."""
        stop = threading.Event()
        with self._lock:
            self._running.setdefault(session, set()).add(stop)
        try:
            yield stop
        finally:
            with self._lock:
                self._running[session].discard(stop)
                if not self._running[session]:
                    del self._running[session]

    def stop(self, session: str) -> None:
        with self._lock:
            for stop in self._running.get(session, ()):
                stop.set()


class LiveRun:
    """A run on a worker thread whose progress events can be iterated as they come.

    Gradio streams what a generator yields, while `stylize` reports through a callback on the
    thread it runs on; a queue joins the two. Once `stop` is set the next step raises
    `StopRequested`, so the run ends and keeps its current image.
    """

    _FINISHED = object()

    def __init__(self, work: Callable[..., object], stop: threading.Event) -> None:
        self._events: queue.Queue = queue.Queue()
        self._stop = stop
        self._error: Exception | None = None
        self._thread = threading.Thread(target=self._run, args=(work,), daemon=True, name="painterly-optimize")

    def events(self) -> Iterator[Event]:
        """Start the run, yield its events, then raise its error if it failed.

        Leaving early (the page closed, the request cancelled) stops the run and waits for it.
        """
        self._thread.start()
        try:
            while (event := self._events.get()) is not self._FINISHED:
                yield event
        finally:
            self._stop.set()
            self._thread.join()
        if self._error is not None:
            raise self._error

    def _run(self, work: Callable[..., object]) -> None:
        """`work(callback=...)`; its error, if any, is kept for `events` to raise."""
        try:
            work(callback=self._report)
        except Exception as error:  # noqa: BLE001 - raised again on the thread that iterates the events
            self._error = error
        finally:
            self._events.put(self._FINISHED)

    def _report(self, event: Event) -> None:
        if isinstance(event, StepEvent):
            if self._stop.is_set():  # only a step may stop the run: it then keeps its image
                raise StopRequested
            if event.image is not None:  # the run changes its image in place: keep a copy
                event = dataclasses.replace(event, image=pixels.to_array(event.image))
        self._events.put(event)


@dataclass
class Handlers:
    """The functions behind the buttons, with what they share: models, working folder, limits."""

    catalog: ModelCatalog
    workspace: Workspace
    vgg_weights: str | None
    device: str
    max_pixels: int
    stops: StopSignals = field(default_factory=StopSignals)
    masks: LastMasks = field(default_factory=LastMasks)  # each session's last drawn mask per tab (web_regions)

    def refresh_models(self, current: str | None, kind: str = FAST) -> gr.Dropdown:
        """Look for models (of one kind) again, keeping the choice when it is still there."""
        choices = self.catalog.choices(kind)
        names = [name for _, name in choices]
        return gr.Dropdown(choices=choices, value=current if current in names else (names[0] if names else None))

    def region_models(self, *current: str | None) -> list[gr.Dropdown]:
        """The Fast tab's region model lists looked at again, as `refresh_models` looks at its model list: each
        choice kept while it is still there, else the region's default (`web_regions.default_model`)."""
        listed = self.catalog.choices(FAST)
        return followed(model_choices(listed), current, lambda label: default_model(label, listed))

    def published_choices(self, kind: str = FAST) -> list[tuple[str, str]]:
        """(label, name) of each catalogue model of one kind, said to be downloaded or not yet as the disk is now."""
        return [(published_label(entry, zoo.is_pulled(entry.name)), entry.name)
                for entry in self.catalog.published(kind)]

    def published_models(self, current: str | None, kind: str = FAST) -> tuple[gr.Radio, str]:
        """The catalogue's models of one kind (`published_choices`), with `current` (the model list's choice)
        picked when it is one of them, and the licence line beside them."""
        choices = self.published_choices(kind)
        value = current if current in [name for _, name in choices] else None
        return gr.Radio(choices=choices, value=value), licence_line(self.catalog.published(kind), value)

    def choose_published(self, name: str | None, kind: str = FAST, progress: gr.Progress = gr.Progress()  # noqa: B008 - how Gradio injects a progress bar
                         ) -> tuple[gr.Dropdown, gr.Radio, str]:
        """A catalogue model chosen: pulled if it is not on disk (the download's progress in the page), then
        the model list's choice. A failed pull is the zoo's one line in the page, and the cache as it was."""
        if not name:
            raise _page_error("choose one of the published models")
        with shown_in_page():
            self.catalog.check_kind(name, kind)
            self.catalog.pull(name, callback=functools.partial(_show_download, progress))
        return (self.refresh_models(name, kind), *self.published_models(name, kind))

    def fast(self, uploads: list[str] | None, model: str | None, strength: float, colour: str,
             size: float | None, drawing: dict | None = None, drawn_feather: float | None = None,
             region_1: str | None = None, region_2: str | None = None, region_3: str | None = None,
             region_4: str | None = None, region_5: str | None = None, region_6: str | None = None,
             loaded: np.ndarray | None = None,
             progress: gr.Progress = gr.Progress(),  # noqa: B008 - how Gradio injects a progress bar
             request: gr.Request | None = None) -> tuple[list[str], list[str]]:
        """Stylise each upload as `painterly apply` does; the PNGs carry model, settings and input hash.
        A catalogue model not on disk is pulled first, its progress in the page. With a mask drawn in the
        page (`drawing`, over the labels of a mask `loaded` into the editor), each region takes the model named in
        `region_1`… or keeps the photo (`web_regions`)."""
        if not uploads:
            raise _page_error("upload one or more images first")
        choices = (region_1, region_2, region_3, region_4, region_5, region_6)
        with shown_in_page(*uploads), self.workspace.job("fast") as folder:
            drawn = self._drawn("fast", drawing, choices, folder, request, loaded)
            config = self._apply_config(strength, colour, size)
            if drawn is not None:
                config = config.replace(mask_feather=int(_number(drawn_feather, "feather")))
            pulled = functools.partial(_show_download, progress)
            stylizer = self.catalog.stylizer(model, config, kind=FAST, callback=pulled)
            made_by = [Path(model or "").stem]  # a listed model: checked
            if drawn is not None:
                names = model_order(drawn)
                models = [None if name is None else self.catalog.stylizer(name, kind=FAST, callback=pulled)
                          for name in names]  # each takes `stylizer`'s settings
                stylizer = stylizer.with_regions(drawn.mask, models)
                made_by = list(dict.fromkeys(Path(name).stem for name in names if name is not None))
            return self._apply(stylizer, uploads, "fast", made_by, folder=folder)

    def any_painting(self, uploads: list[str] | None, paintings: list[str] | None, model: str | None,
                     style_blend: str | None, alpha: float, colour: str, mask: str | None, regions: str | None,
                     feather: float | None, size: float | None, style_size: float | None,
                     drawing: dict | None = None, drawn_feather: float | None = None, region_1: str | None = None,
                     region_2: str | None = None, region_3: str | None = None, region_4: str | None = None,
                     region_5: str | None = None, region_6: str | None = None, loaded: np.ndarray | None = None,
                     progress: gr.Progress = gr.Progress(),  # noqa: B008 - how Gradio injects a progress bar
                     request: gr.Request | None = None) -> tuple[list[str], list[str]]:
        """Stylise each photo after the uploaded paintings with an arbitrary-style model, as `painterly apply
        MODEL PHOTO --style PAINTING...` does: blended by `style_blend`, or one painting per region of `mask`
        (`regions` says which: "2, 1, keep"; empty: in upload order), or drawn in the page's mask editor
        (`drawing`, each region's painting number or keep in `region_1`…, see `web_regions`).

        The model is loaded once (the catalog's; a catalogue model not on disk is pulled first), and each
        painting is read and measured once per request, for all its photos (with colour "histogram" it is
        recoloured toward each photo, so measured per photo, as the method needs). The PNGs carry the model,
        the settings, the photo's and each painting's SHA-256, and the mask's.
        """
        if not uploads:
            raise _page_error("upload one or more photos first")
        if not paintings:
            raise _page_error("upload one or more paintings")
        choices = (region_1, region_2, region_3, region_4, region_5, region_6)
        with shown_in_page(*uploads, *paintings, *([mask] if mask else [])), \
                self.workspace.job("any-painting") as folder:
            drawn = self._drawn("any", drawing, choices, folder, request, loaded)
            if drawn is not None and mask:
                raise UsageError("a mask file and a mask drawing: use one of them")
            blend = _blend(style_blend)
            if (mask or drawn) and blend is not None:
                raise UsageError("blend: with a mask each region takes its own painting; empty the blend field, "
                                 "or remove the mask to blend the paintings over the whole photo")
            config = self._apply_config(1.0, colour, size).replace(
                alpha=_number(alpha, "alpha"), style_size=_size(style_size), style_blend=blend)
            if mask or drawn:
                config = config.replace(mask_feather=int(_number(drawn_feather if drawn else feather, "feather")))
            stylizer = self.catalog.stylizer(model, config, kind=ARBITRARY,
                                             callback=functools.partial(_show_download, progress))
            region_mask = read_mask(mask, max_pixels=self.max_pixels) if mask else None  # checked before measuring
            order = None if region_mask is None else _region_order(regions, len(paintings), region_mask.count,
                                                                   Path(mask or "").name)
            if drawn is not None:
                region_mask, order = drawn.mask, painting_order(drawn, len(paintings))
            read = [stylizer.read_painting(path) for path in paintings]
            # Measured here, once each, however many regions take a painting; "histogram" measures per photo.
            measured: list[Style] = list(read) if config.preserve_color == "histogram" else [
                stylizer.style_statistics(painting) for painting in read]
            if order is not None:
                styles = [None if index is None else measured[index] for index in order]
                styled = stylizer.with_styles(styles, mask=region_mask)
            else:
                styled = stylizer.with_styles(measured)
            return self._apply(styled, uploads, "any-painting", [Path(path).stem for path in paintings], folder=folder)

    def _apply(self, stylizer: FastStylizer, uploads: list[str], kind: str, made_by: list[str],
               folder: Path | None = None) -> tuple[list[str], list[str]]:
        """`apply_files` into a new job folder (or `folder`, the caller's job): results named after each upload
        and `made_by` (the model, or the paintings), the library's warnings and each failed file shown once by
        its name, as uploaded."""
        notices: list[str] = []  # the library's warnings; a failed file is one of them and in the report too
        with self.workspace.job(kind) if folder is None else nullcontext(folder) as folder:
            report = apply_files(stylizer, uploads, folder, suffix=".png",
                                 callback=functools.partial(_collect_warnings, notices))
            failures = [reason for _, reason in report.failed]
            if not report.written:
                raise _page_error(_as_uploaded("; ".join(failures), uploads))
            named = [_renamed(path, download_name(path.stem, *made_by, suffix=path.suffix)) for path in report.written]
            results = self.workspace.written(named)
        for notice in [*(text for text in notices if text not in failures), *failures]:  # each once
            gr.Warning(_as_uploaded(notice, uploads))  # by its file name, not its path on the server
        return results, results

    def optimize(self, photo: str | None, paintings: list[str] | None, sample: bool, size: float, steps: float,
                 style_weight: float | None, content_weight: float | None, colour: str,
                 optimizer: str, tv_weight: float | None, style_scale: float | None, style_blend: str | None,
                 drawing: dict | None = None, drawn_feather: float | None = None, region_1: str | None = None,
                 region_2: str | None = None, region_3: str | None = None, region_4: str | None = None,
                 region_5: str | None = None, region_6: str | None = None, loaded: np.ndarray | None = None,
                 request: gr.Request | None = None) -> Iterator[tuple]:
        """Gatys optimisation as `painterly stylize` runs it, yielding the image as it forms.

        The settings are the CLI's, checked by `StylizeConfig` (and the blend's count by the run). With a
        mask drawn in the page (`drawing`), each region takes the painting numbered in `region_1`… (the
        sample last) or keeps the photo (`web_regions`).
        """
        if not photo:
            raise _page_error("upload a photo first")
        styles = [Path(path) for path in paintings or []] + ([self.workspace.sample_painting()] if sample else [])
        if not styles:
            raise _page_error("upload a painting, or tick the built-in sample painting")
        choices = (region_1, region_2, region_3, region_4, region_5, region_6)
        with shown_in_page(photo, *(paintings or [])), self.workspace.job("optimize") as folder:
            drawn = self._drawn("optimize", drawing, choices, folder, request, loaded)
            region_styles: list[str | Path] = list(styles)
            mask: dict = {}
            if drawn is not None:
                if style_blend and style_blend.strip():
                    raise UsageError("style blend: with a mask each region takes its own painting; empty the "
                                     "style blend, or clear the drawing to blend the paintings over the whole photo")
                region_styles = [KEEP if index is None else styles[index]
                                 for index in painting_order(drawn, len(styles))]
                mask = {"mask_feather": int(_number(drawn_feather, "feather"))}
            config = StylizeConfig(size=int(size), steps=int(steps), optimizer=optimizer,
                                   style_weight=_number(style_weight, "style weight"),
                                   content_weight=_number(content_weight, "content weight"),
                                   tv_weight=_number(tv_weight, "TV weight"),
                                   style_scale=_number(style_scale, "style scale"),
                                   style_blend=_blend(style_blend), preserve_color=_colour(colour),
                                   vgg_weights=self.vgg_weights, device=self.device,
                                   save_every=max(1, int(steps) // LIVE_UPDATES), **mask)
            session = (request.session_hash if request is not None else None) or ""
            with self.stops.watch(session) as stop:
                used = dict.fromkeys(Path(style).stem for style in region_styles if style != KEEP)
                output = folder / download_name(Path(photo).stem, *used, suffix=".png")
                work = functools.partial(stylize_files, Path(photo), region_styles, output, config,
                                         max_pixels=self.max_pixels, mask=None if drawn is None else drawn.path)
                yield from _shown(LiveRun(work, stop).events(), output, self.workspace)

    def stop(self, request: gr.Request) -> None:
        """Stop this session's optimisation; it keeps and shows the image it has reached."""
        self.stops.stop(request.session_hash or "")

    def video(self, clip: str | None, model: str | None, strength: float, colour: str, size: float | None,
              smooth: float, stabilize: float, flow: str = "dis",
              progress: gr.Progress = gr.Progress()) -> str:  # noqa: B008 - how Gradio injects a progress bar
        """Stylise every frame of a clip, as `painterly apply` does for videos; the sound is kept.

        The pixel limit is the library's: `max_pixels` in the config is checked on every frame. The flow
        choice sits under the Stabilise slider and is what it follows: with Stabilise at 0 it is unused
        (the page keeps its choice; the config, which would refuse it, is not given it).
        """
        if not clip:
            raise _page_error("upload a clip first")
        with shown_in_page(clip):
            from .video import stylize_video  # PyAV is an optional extra of its own

            config = self._apply_config(strength, colour, size).replace(
                smooth=smooth, stabilize=stabilize, flow=flow if stabilize > 0 else "dis")
            stylizer = self.catalog.stylizer(model, config, kind=FAST,
                                             callback=functools.partial(_show_download, progress))
            with self.workspace.job("video") as folder:
                output = folder / download_name(Path(clip).stem, Path(model or "").stem, suffix=".mp4")
                stylize_video(stylizer, Path(clip), output, callback=functools.partial(_show_video_progress, progress))
                [result] = self.workspace.written([output])
        return result

    def _drawn(self, tab: str, drawing: dict | None, choices: tuple[str | None, ...], folder: Path,
               request: gr.Request | None, loaded: np.ndarray | None = None) -> DrawnMask | None:
        """The page's mask drawing (over the `loaded` mask's labels) written into the job's `folder`/drawn
        (`web_regions.save_drawing`) and recorded as this session's last mask of `tab`, for its download box;
        None when nothing is drawn or loaded."""
        drawn = save_drawing(drawing, choices, folder / "drawn", loaded=loaded,  # apart from the results
                             max_pixels=self.max_pixels)
        if drawn is not None:
            self.workspace.written([drawn.path])
        session = (request.session_hash if request is not None else None) or ""
        self.masks.record(session, tab, None if drawn is None else drawn.path)
        return drawn

    def _apply_config(self, strength: float, colour: str, size: float | None) -> ApplyConfig:
        """The page's choices and the server's limits as the one config the fast path takes."""
        return ApplyConfig(strength=strength, preserve_color=_colour(colour), size=_size(size),
                           device=self.device, max_pixels=self.max_pixels)


def _show_warning(event: Event) -> None:
    """A library warning (a clipped pixel, a skipped stream…) as a notice in the page."""
    if isinstance(event, MessageEvent) and event.level == "warning":
        gr.Warning(event.text)


def _collect_warnings(notices: list[str], event: Event) -> None:
    if isinstance(event, MessageEvent) and event.level == "warning":
        notices.append(event.text)


def _show_video_progress(progress: gr.Progress, event: Event) -> None:
    if isinstance(event, VideoProgressEvent) and event.total_frames:
        progress((event.frames_done, event.total_frames), desc="stylising frames", unit="frames")
    else:
        _show_warning(event)


def _show_download(progress: gr.Progress, event: Event) -> None:
    """A catalogue model's pull in the page: the download's bytes, or why it waits; warnings as notices."""
    if isinstance(event, DownloadEvent):
        name = urlsplit(event.url).path.rstrip("/").rsplit("/", 1)[-1] or event.url
        progress((event.done, event.total), desc=f"downloading {name}", unit="bytes")
    elif isinstance(event, MessageEvent) and event.level != "warning":
        progress(None, desc=event.text)
    else:
        _show_warning(event)


def _shown(events: Iterator[Event], output: Path, workspace: Workspace) -> Iterator[tuple]:
    """What the page shows as a run goes: (image, status line, download), the written result last."""
    done: DoneEvent | None = None
    for event in events:
        if isinstance(event, StepEvent) and event.image is not None:
            yield event.image, _progress(event), None
        elif isinstance(event, MessageEvent):
            _show_warning(event)
        elif isinstance(event, DoneEvent):
            done = event  # the result is written after this event, so it is shown once the events end
    if done is None:  # a run that ends without raising always reports its end
        raise RuntimeError("the optimisation ended without a DoneEvent")
    ending = "stopped early, kept the image" if done.stopped_early else "finished"
    [result] = workspace.written([output])
    yield result, f"{ending}: {done.steps} steps in {done.seconds:.1f} s", result


def _progress(event: StepEvent) -> str:
    scale = f" at scale {event.scale}/{event.num_scales}" if event.num_scales > 1 else ""
    return f"step {event.step}/{event.total_steps}{scale} · loss {event.loss:.4g} · {event.elapsed:.1f} s"


def _renamed(path: Path, name: str) -> Path:
    """`path` moved to `name` in its folder, with -2, -3… when two results would take one name."""
    target, number = path.with_name(name), 1
    while target != path and target.exists():
        number += 1
        target = path.with_name(f"{Path(name).stem}-{number}{Path(name).suffix}")
    os.replace(path, target)
    return target


def _number(value: float | None, what: str) -> float:
    """A number field's value; an emptied field is the user's mistake, not a bug."""
    if value is None:
        raise UsageError(f"{what}: enter a number")
    return float(value)


def _blend(text: str | None) -> tuple[float, ...] | None:
    """'1, 2' -> (1.0, 2.0), one weight per painting; empty: equal weights."""
    if not text or not text.strip():
        return None
    try:
        return tuple(float(part) for part in text.replace(";", ",").split(",") if part.strip())
    except ValueError:
        raise UsageError(f"style blend: expected numbers separated by commas, one per painting, got {text!r}") from None


def _region_order(text: str | None, paintings: int, regions: int, mask_name: str) -> list[int | None]:
    """The painting (0-based; None keeps the photo) each mask region takes: "2, 1, keep" is 1-based; empty: in
    upload order. The mask's region count must match, so that no painting is silently left out."""
    if not text or not text.strip():
        order: list[int | None] = list(range(paintings))
        given = "paintings"
    else:
        order, given = [], "entries under Regions"
        for part in (part.strip() for part in text.replace(";", ",").split(",") if part.strip()):
            if part.lower() == KEEP:
                order.append(None)
            elif part.isdigit() and 1 <= int(part) <= paintings:
                order.append(int(part) - 1)
            else:
                numbers = "painting number 1" if paintings == 1 else f"painting numbers 1 to {paintings}"
                raise UsageError(f"regions: expected {numbers} or {KEEP!r}, separated by commas, got {part!r}")
    if len(order) != regions:
        raise UsageError(f"{mask_name} has {regions} regions (colours, in the order they first appear from the "
                         f"top-left) and {len(order)} {given}: name one painting number (or {KEEP}) per region "
                         f"under Regions, e.g. 2, 1, {KEEP}")
    return order


def _colour(choice: str) -> str | None:
    return None if choice == "none" else choice


def _size(value: float | None) -> int | None:
    """The long side to resize to; 0 or empty keeps the upload's size."""
    return int(value) if value else None
