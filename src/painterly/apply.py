"""Files in, files out for fast models: what `painterly apply` calls.

Inputs are image files, folders (searched recursively; the output folder mirrors their tree)
and `-` for stdin; the output is one file, a folder, or `-` for stdout. Images stream
through: at most one batch of them is in memory. When several files are asked for, a bad one
(unreadable, over the pixel limit, or an output that cannot be written) is reported and the
rest carry on; a single named file fails loudly and writes nothing. Planning never opens a
file in a way that can fail: a bad file is found, and reported, when its turn comes.
Every output records `FastStylizer.describe()`: model, settings and input, with hashes (and, for
an arbitrary-style model, the paintings and the mask). An arbitrary-style stylizer comes with its
paintings bound (`FastStylizer.with_styles`), measured once for the whole run. With `--mask auto:K`
each photo's mask is found, written beside its output as `<stem>.mask.png` and bound for that photo
(a clip: its first frame's, written once; `region_models.py`).
Needs no torch when the model is a `.onnx` file. Images are read as 8-bit RGB and stay 8-bit
through tiling and saving (the output file is 8-bit anyway): only the tiles in flight are
float, so a large image costs about twice its 8-bit size plus one row of tiles.
"""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .atomic import cannot_write, staged
from .config import ApplyConfig
from .errors import ImageError, OutputError, UsageError
from .events import ApplyEvent, Callback, MessageEvent, StopRequested, ignore
from .fast import FastStylizer
from .images import WRITABLE_EXTENSIONS, check_output, image_files, read_array, save_image
from .provenance import describe_file
from .region_models import AutoMask, bind_found_mask
from .regions import mask_target
from .video import VIDEO_EXTENSIONS, check_stylizer, is_video, stylize_video

STDIO = "-"
_STDIN_NAME = "stdin"
_SHOWN_STDIN = "<stdin>"


@dataclass
class ApplyReport:
    """What `apply_files` did; the caller exits non-zero when anything `failed`."""

    written: list[Path] = field(default_factory=list)  # Path("-") for stdout
    failed: list[tuple[str, str]] = field(default_factory=list)  # (input, one-line reason)

    def summary(self, output: str) -> str:
        """"3 file(s) were written to out/, 1 failed": what an interrupted run leaves behind."""
        if not self.written and not self.failed:
            return "nothing was written"
        failed = f", {len(self.failed)} failed" if self.failed else ""
        return f"{len(self.written)} file(s) were written to {output}{failed}"


@dataclass(frozen=True)
class _Job:
    source: str  # the input as given; "-" is stdin
    target: Path | None  # None is stdout
    is_video: bool = False  # videos and animated GIF/WebP go through `video.stylize_video`, frame by frame


@dataclass
class _Loaded:
    job: _Job
    image: np.ndarray  # HxWx3 uint8 as read, or float32 once resized by `FastStylizer.prepare`
    input: dict  # {"file", "sha256"} for the output's metadata


def apply_files(
    stylizer: FastStylizer,
    inputs: Sequence[Path | str],
    output: Path | str,
    *,
    suffix: str | None = None,
    callback: Callback = ignore,
) -> ApplyReport:
    """Stylise image and video files with `stylizer` (and its `config`) and write the results.

    One input file and an output with an extension: that file. Several inputs or a folder:
    `output` is a folder, each result named like its input (same relative path below a
    folder input), extension kept when writable, else `suffix` (default .png); `suffix`
    given applies to all (videos and animations keep their own). `-` reads stdin or writes
    PNG to stdout. Inputs are never overwritten; every target is checked before any work.

    A callback raising `StopRequested` ends the run with what is written so far. An interrupt
    (KeyboardInterrupt, or the CLI's SIGTERM) propagates with a note saying what was written.
    """
    stylizer.check_style()  # an arbitrary-style model without a painting: refused before anything is read
    shown_output = os.fspath(output)
    jobs, strict = _plan([os.fspath(item) for item in inputs], shown_output, _check_suffix(suffix),
                         protect=stylizer.input_files())
    _check_video_settings(stylizer.config, jobs)
    if isinstance(stylizer.mask, AutoMask):  # each photo's mask is written beside its output
        _check_mask_targets(jobs, stylizer.input_files())
    for job in jobs:
        if job.is_video:  # before any file is written: a refusal midway would leave half a folder
            check_stylizer(stylizer, job.source, callback=callback)
    run = _Run(stylizer, callback=callback, strict=strict, total=len(jobs))
    try:
        run.process(jobs)
    except StopRequested:
        pass  # the caller asked to stop: what is written so far stands
    except KeyboardInterrupt as interrupt:
        interrupt.add_note(run.report.summary(shown_output))
        raise
    return run.report


# --- planning: which input goes where ---------------------------------------------------------


def _plan(inputs: list[str], output: str, suffix: str | None, *,
          protect: Sequence[str] = ()) -> tuple[list[_Job], bool]:
    """The jobs, and whether they are strict: one named input file raises on error instead of reporting."""
    if not inputs:
        raise UsageError("no inputs given")
    one_file = len(inputs) == 1 and not Path(inputs[0]).is_dir()
    if output == STDIO:
        if not one_file:
            raise UsageError("-o - writes one image to stdout; give exactly one input file (or -)")
        if inputs[0] != STDIO and is_video(inputs[0]):  # stdout takes one PNG: a clip is refused before any work
            raise UsageError(f"{inputs[0]}: -o - writes one image to stdout; a video or animation is written "
                             f"to a file: give -o FILE{Path(inputs[0]).suffix}")
        return [_Job(inputs[0], None)], True
    if one_file and _names_a_file(output):
        source = inputs[0]
        jobs = [_Job(source, Path(output), source != STDIO and is_video(source))]
    else:
        jobs = list(_folder_jobs(inputs, _output_folder(output), suffix))
    _check_targets(jobs, protect)
    return jobs, one_file


def _names_a_file(output: str) -> bool:
    """"out.png" names a file; "out", "out/" and an existing folder name a folder."""
    return bool(Path(output).suffix) and not output.endswith(("/", os.sep)) and not Path(output).is_dir()


def _output_folder(output: str) -> Path:
    folder = Path(output)
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"{output}: is a file; several inputs or a folder are written into a folder")
    if not folder.exists() and folder.suffix.lower() in WRITABLE_EXTENSIONS:
        raise UsageError(f"-o {output}: several inputs or a folder are written into a folder, not one image")
    return folder


def _folder_jobs(inputs: list[str], folder: Path, suffix: str | None) -> Iterator[_Job]:
    """One job per image; a folder input's files keep their path relative to that folder."""
    for item in inputs:
        if item == STDIO:
            yield _Job(item, folder / f"{_STDIN_NAME}{suffix or '.png'}")
        elif Path(item).is_dir():
            for file in image_files(item, also=VIDEO_EXTENSIONS):
                yield _named_job(os.fspath(file), folder, file.relative_to(item), suffix)
        else:
            yield _named_job(item, folder, Path(Path(item).name), suffix)


def _named_job(source: str, folder: Path, relative: Path, suffix: str | None) -> _Job:
    """The input's name with `suffix`, else its own extension if writable, else .png; videos keep theirs."""
    video = is_video(source)  # never raises: an unreadable file is found out when it is read
    if video:
        return _Job(source, folder / relative, True)
    keep = relative.suffix if relative.suffix.lower() in WRITABLE_EXTENSIONS else ".png"
    return _Job(source, folder / relative.with_suffix(suffix or keep))


def _check_suffix(suffix: str | None) -> str | None:
    if suffix is None:
        return None
    suffix = suffix if suffix.startswith(".") else f".{suffix}"
    if suffix.lower() not in WRITABLE_EXTENSIONS:
        raise UsageError(f"cannot write {suffix} files; use one of {', '.join(WRITABLE_EXTENSIONS)}")
    return suffix


def _check_targets(jobs: list[_Job], protect: Sequence[str] = ()) -> None:
    """Before any work: writable extensions, no input (nor a painting or mask in `protect`) overwritten,
    no two inputs onto one output."""
    inputs = {_resolved(job.source) for job in jobs if job.source != STDIO} | {_resolved(path) for path in protect}
    made_from: dict[Path, str] = {}
    for job in jobs:
        if job.target is None:
            continue
        if not job.is_video:  # stylize_video checks its own output types
            check_output(job.target, protect=[] if job.source == STDIO else [job.source])  # hard links too
        target = _resolved(job.target)
        if target in inputs:
            raise ImageError(f"{job.target}: refusing to overwrite an input file")
        if target in made_from:
            raise UsageError(f"{made_from[target]} and {job.source} would both be written to {job.target}")
        made_from[target] = job.source


def _check_video_settings(config: ApplyConfig, jobs: list[_Job]) -> None:
    """`smooth` and `stabilize` act between a video's frames: asked for with no video among the inputs,
    they would be ignored without a word."""
    asked = [name for name in ("smooth", "stabilize") if getattr(config, name) > 0]
    if asked and jobs and not any(job.is_video for job in jobs):
        what = f"{jobs[0].source} is not" if len(jobs) == 1 else f"none of the {len(jobs)} inputs is"
        raise UsageError(f"{asked[0]} steadies a video between its frames; {what} a video")


def _check_mask_targets(jobs: list[_Job], protect: Sequence[str]) -> None:
    """`--mask auto:K` writes `<output stem>.mask.png` beside each output: never onto an input, an output
    or another mask, and never for stdout (there is no beside)."""
    taken = {_resolved(job.source): job.source for job in jobs if job.source != STDIO}
    taken.update({_resolved(path): path for path in protect})
    taken.update({_resolved(job.target): os.fspath(job.target) for job in jobs if job.target is not None})
    for job in jobs:
        if job.target is None:
            raise UsageError("--mask auto:K writes each photo's mask beside its output; -o - has no beside: "
                             "give -o FILE")
        mask = mask_target(job.target)
        if _resolved(mask) in taken:
            raise UsageError(f"{mask}: the mask of {job.source} would overwrite {taken[_resolved(mask)]}")
        check_output(mask, protect=[])
        taken[_resolved(mask)] = os.fspath(mask)


def _resolved(path: str | Path) -> Path:
    """The real path, as far as it resolves: a symlink loop (which `Path.resolve` raises on) stays as it
    is, to be reported by name when it is read."""
    return Path(os.path.realpath(path))


# --- running: read, batch, stylise, write -----------------------------------------------------


@dataclass
class _Run:
    """One `apply_files` call: streams the jobs through the stylizer in batches of equal-sized images."""

    stylizer: FastStylizer
    callback: Callback
    strict: bool  # raise a file's error instead of reporting it
    total: int
    report: ApplyReport = field(default_factory=ApplyReport)

    def process(self, jobs: list[_Job]) -> None:
        batch: list[_Loaded] = []
        for job in jobs:
            if job.is_video:
                self._guarded(job, self._video)
                continue
            loaded = self._guarded(job, self._load)
            if loaded is None:
                continue
            if batch and not self._joins(batch, loaded):
                self._stylize(batch)
                batch = []
            batch.append(loaded)
        if batch:
            self._stylize(batch)

    def _joins(self, batch: list[_Loaded], loaded: _Loaded) -> bool:
        """Equal-sized images share a batch; a tiled image is a batch of tiles on its own."""
        height, width = loaded.image.shape[:2]
        return (loaded.image.shape == batch[0].image.shape and len(batch) < self.stylizer.config.batch_size
                and not self.stylizer.is_tiled(height, width))

    def _load(self, job: _Job) -> _Loaded:
        """Read, check the size `--size` makes it against the pixel limit, and resize (early: a large
        input waiting for its batch is held small)."""
        max_pixels = self.stylizer.config.max_pixels
        if job.source == STDIO:
            image, description = _read_stdin(max_pixels)
        else:
            image, description = _read_file(job.source, max_pixels)
        self.stylizer.check_size(_SHOWN_STDIN if job.source == STDIO else job.source, *image.shape[:2])
        return _Loaded(job, self.stylizer.prepare(image), description)

    def _stylize(self, batch: list[_Loaded]) -> None:
        if isinstance(self.stylizer.mask, AutoMask):  # each photo its own mask, written beside its output
            for loaded in batch:
                self._guarded(loaded.job, self._auto_masked, loaded)
            return
        styled = self.stylizer.stylize_batch([loaded.image for loaded in batch])
        for loaded, image in zip(batch, styled):
            self._guarded(loaded.job, self._write, image, loaded.input)

    def _auto_masked(self, job: _Job, loaded: _Loaded) -> None:
        """One photo with the auto mask found from it, written beside the output once the output is (which
        records its SHA-256): until then it is a temporary, so a failure, an interrupt or a kill leaves an
        earlier run's mask as it was."""
        assert job.target is not None  # _check_mask_targets refused stdout
        with staged(mask_target(job.target)) as mask:
            stylizer = bind_found_mask(self.stylizer, loaded.image, job.target, staged=mask, protect=[job.source])
            [image] = stylizer.stylize_batch([loaded.image])
            save_image(image, job.target, settings=stylizer.describe(input=loaded.input), protect=[job.source])
        self.report.written.append(job.target)
        self._finished(job)

    def _video(self, job: _Job) -> None:
        assert job.target is not None  # stdout takes one image, never a video
        stylizer = self.stylizer
        if not isinstance(stylizer.mask, AutoMask):
            stylize_video(stylizer, job.source, job.target, callback=self.callback)
        else:  # the first frame's mask for every frame, found then and put in place with the clip, as for an image
            with staged(mask_target(job.target)) as mask:
                stylizer = stylizer.with_mask(stylizer.mask.once(written=mask_target(job.target), staged=mask))
                stylize_video(stylizer, job.source, job.target, callback=self.callback)
        self.report.written.append(job.target)
        self._finished(job)

    def _write(self, job: _Job, image: np.ndarray, description: dict) -> None:
        settings = self.stylizer.describe(input=description)
        if job.target is None:
            _write_stdout(image, settings)
        else:
            save_image(image, job.target, settings=settings, protect=[job.source])
        self.report.written.append(job.target or Path(STDIO))
        self._finished(job)

    def _guarded(self, job: _Job, step: Callable[..., Any], *args: Any) -> Any:
        """`step(job, *args)`; a bad file or an output that cannot be written is reported and
        skipped, unless it was the only one named."""
        try:
            return step(job, *args)
        except (ImageError, OutputError) as error:
            if self.strict:
                raise
            self.report.failed.append((job.source, str(error)))
            self.callback(MessageEvent(str(error), level="warning"))
            self._finished(job)
            return None

    def _finished(self, job: _Job) -> None:
        done = len(self.report.written) + len(self.report.failed)
        self.callback(ApplyEvent(done=done, total=self.total, path=job.source))


def _read_file(path: str, max_pixels: int | None) -> tuple[np.ndarray, dict]:
    # min_side=1: the stylizer pads small images itself; VGG's minimum does not apply here
    image, _ = read_array(path, max_pixels=max_pixels, min_side=1, dtype=np.uint8)
    try:
        return image, describe_file(path)
    except OSError as error:  # gone or unreadable since it was decoded
        raise ImageError(f"{path}: cannot read ({error.strerror or error})") from None


def _read_stdin(max_pixels: int | None) -> tuple[np.ndarray, dict]:
    """Stdin through a temporary file (the image reader takes paths); errors name <stdin>."""
    data = sys.stdin.buffer.read()
    try:
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder, _STDIN_NAME)
            path.write_bytes(data)
            try:
                image, _ = read_array(path, max_pixels=max_pixels, min_side=1, dtype=np.uint8)
            except ImageError as error:
                raise ImageError(str(error).replace(os.fspath(path), _SHOWN_STDIN)) from None
    except OSError as error:  # no room for the temporary copy
        raise ImageError(f"{_SHOWN_STDIN}: cannot buffer the input ({error.strerror or error})") from None
    return image, {"file": STDIO, "sha256": hashlib.sha256(data).hexdigest()}


def _write_stdout(image: np.ndarray, settings: dict) -> None:
    """PNG bytes, settings included, written whole to stdout."""
    try:
        with tempfile.TemporaryDirectory() as folder:
            data = save_image(image, Path(folder, "stdout.png"), settings=settings).read_bytes()
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    except OSError as error:  # a closed pipe (`| head`), a full disk behind a redirect
        raise cannot_write("<stdout>", error) from None
