"""Model cards for the Hugging Face Hub: a README.md written from a model file's own metadata.

The Hub shows a repo's README.md as its model card: a YAML header (licence, tags, library) that its
search and filters read, then Markdown. Everything the card says comes from the model file (the
painting, the training settings and steps, the VGG weights, the checksums, a zoo model's provenance),
so a card cannot claim what the file does not record. The pictures asked for (a thumbnail of the
painting, the model applied to a photo) go beside the card. Nothing is written until everything has
been read and computed; every write is atomic, a failed one takes back what this call wrote, and the
model and the inputs are never overwritten. Local paths are kept out: the card is meant to be published.
"""

from __future__ import annotations

import html
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from .atomic import atomic_path, same_file
from .errors import ModelFileError, PainterlyError, UsageError

CARD_SUFFIX = ".md"  # the Hub shows README.md
THUMBNAIL_NAME = "style.jpg"  # beside the card
SAMPLE_NAME = "sample.jpg"
THUMBNAIL_SIDE = 256  # long side at most: a card's picture, not the painting
SAMPLE_SIDE = 512  # a larger photo is shrunk to this before it is painted: quick on a CPU, enough to judge
PLACEHOLDER = "OWNER/REPO"  # in the commands, unless the repo is given
UNKNOWN_LICENCE = "unknown"
TAGS = ("style-transfer", "painterly")
KIND_TAGS = {"painterly-transformer": "johnson", "painterly-adain": "adain"}
LIBRARY_NAME = "painterly"
PIPELINE_TAG = "image-to-image"
HUB_CLI = "hf"  # huggingface_hub's own CLI (0.34 and later; `huggingface-cli` before)
# Settings of how a run went that do not shape the model: left out of the card's training table.
_RUN_ONLY = ("device", "workers", "checkpoint_every", "checkpoint_minutes", "log_every", "preview_every", "compile",
             "channels_last")
# Fields that may hold a path on the trainer's machine (a zoo download taken from a local file is "used"):
# only the name is shown.
_LOCAL_PATHS = ("data", "paintings", "used")
_LICENCE = re.compile(r"[A-Za-z0-9][A-Za-z0-9.+-]{0,63}")
_LABELS = {"title": "Title", "artist": "Artist", "credit": "Credit", "image": "Image", "file": "File",
           "sha256": "SHA-256", "paintings": "Paintings", "count": "Number of paintings", "size": "Size"}


def write_card(model: str | os.PathLike, output: str | os.PathLike, *, style_image: str | os.PathLike | None = None,
               sample: str | os.PathLike | None = None, repo: str | None = None, licence: str | None = None) -> Path:
    """Write a Hub model card for the painterly model file `model` to `output` (normally DIR/README.md,
    the model file going in DIR too); returns `output`.

    `style_image`: a thumbnail of the painting (at most THUMBNAIL_SIDE pixels) is written beside the card
    as THUMBNAIL_NAME and shown. `sample`: that photo painted by the model (an AdaIN model paints it with
    `style_image`) is written beside it as SAMPLE_NAME and shown. `repo` (OWNER/REPO) fills the card's
    commands; `licence` (an SPDX id) overrides the licence the file records (a zoo model's), else
    "unknown". Every failure is one line, with nothing written.
    """
    from .modelfile import FORMATS, read_metadata
    from .provenance import file_sha256

    model, output = Path(model), Path(output)
    if output.suffix.lower() != CARD_SUFFIX:
        raise UsageError(f"{output}: a model card is a Markdown file; the Hub shows DIR/README.md")
    repo_id = _repo_id(repo)
    chosen_licence = _licence(licence)
    pictures = {name: output.with_name(name) for name, given in ((THUMBNAIL_NAME, style_image), (SAMPLE_NAME, sample))
                if given is not None}
    _refuse_overwriting([output, *pictures.values()], [p for p in (model, style_image, sample) if p is not None])
    if model.suffix != ".safetensors":
        raise ModelFileError(f"{model}: a card describes a painterly .safetensors model; convert a .pth first "
                             "(`painterly convert`)")
    metadata = read_metadata(model)
    if metadata.get("format") not in FORMATS:
        raise ModelFileError(f"{model}: a safetensors file without painterly's metadata, not a painterly model")
    images: dict[str, tuple[np.ndarray, dict]] = {}
    if style_image is not None:
        images[THUMBNAIL_NAME] = _thumbnail(Path(style_image))
    if sample is not None:
        images[SAMPLE_NAME] = _sample(model, Path(sample), None if style_image is None else Path(style_image))
    text = card_text(metadata, model_name=model.name, file_sha256=file_sha256(model), repo=repo_id,
                     licence=chosen_licence, pictures=tuple(images))
    _write_all(output, text, {pictures[name]: image for name, image in images.items()})
    return output


def card_text(metadata: dict, *, model_name: str, file_sha256: str, repo: str | None = None,
              licence: str | None = None, pictures: tuple[str, ...] = ()) -> str:
    """The card for a model file's (checked) metadata: YAML front matter, then Markdown sections."""
    recorded = metadata.get("provenance")
    provenance: dict = recorded if isinstance(recorded, dict) else {}
    kind = KIND_TAGS.get(str(metadata.get("format")), "johnson")
    licence = licence or _recorded_licence(provenance)
    title = str(provenance.get("title") or (repo.split("/")[1] if repo else Path(model_name).stem))
    sections = [
        _front_matter(licence, kind),
        f"# {_text(title)}\n\n{_introduction(kind)}",
        _style_section(metadata.get("style") or {}, kind, THUMBNAIL_NAME in pictures),
        *([f"## A sample\n\n![A photo painted by this model]({SAMPLE_NAME})"] if SAMPLE_NAME in pictures else []),
        _use_section(repo or PLACEHOLDER, kind, placeholder=repo is None),
        _training_section(metadata),
        *([_provenance_section(provenance)] if provenance else []),
        *([_listing_section("Converted from", metadata["converted_from"])]
          if isinstance(metadata.get("converted_from"), dict) else []),
        _files_section(metadata, model_name, file_sha256, licence),
        _upload_section(repo or PLACEHOLDER, model_name, pictures),
    ]
    return "\n\n".join(sections) + "\n"


def _front_matter(licence: str, kind: str) -> str:
    """The Hub's metadata block; every value is a checked identifier, so none needs quoting."""
    tags = "".join(f"- {tag}\n" for tag in (*TAGS, kind))
    return (f"---\nlicense: {licence}\nlibrary_name: {LIBRARY_NAME}\npipeline_tag: {PIPELINE_TAG}\n"
            f"tags:\n{tags}---")


def _introduction(kind: str) -> str:
    if kind == "adain":
        return ("An arbitrary-style network (AdaIN, Huang & Belongie 2017) for painterly: it paints a photo in the "
                "style of any painting given with it, in one pass.")
    return ("A fast style-transfer network (Johnson et al. 2016) for painterly: it paints any photo in the one "
            "style it learned, in one pass.")


def _style_section(style: dict, kind: str, thumbnail: bool) -> str:
    lines = ["## The style", ""]
    if kind == "adain":
        lines += ["Any painting, given with `--style` when the model is applied.", ""]
    shown = {_LABELS.get(key, key): _public(key, value) for key, value in style.items() if key != "size"}
    if shown:
        lines += [f"- {label}: {_value(value)}" for label, value in shown.items()]
    elif kind != "adain":
        lines.append("The model file does not record its painting.")
    if thumbnail:
        lines += ["", f"![The style image]({THUMBNAIL_NAME})"]
    return "\n".join(lines).rstrip()


def _use_section(repo: str, kind: str, *, placeholder: bool) -> str:
    style = " --style painting.jpg" if kind == "adain" else ""
    note = f"\n\nReplace {PLACEHOLDER} with the repo this card is uploaded to." if placeholder else ""
    return ("## How to use it\n\n```bash\npip install 'painterly[hub]'\n"
            f"painterly apply hf://{repo} photo.jpg{style} -o photo_painted.png\n```{note}")


def _training_section(metadata: dict) -> str:
    training = metadata.get("training") or {}
    steps = metadata.get("steps", 0)
    if not training:
        return ("## Training\n\nNot trained by painterly: the file records no training settings"
                + (" (see where it came from, below)." if metadata.get("provenance") else "."))
    rows = [(key, _public(key, value)) for key, value in training.items() if key not in _RUN_ONLY]
    table = "\n".join(f"| {_text(key)} | {_value(value)} |" for key, value in rows)
    return (f"## Training\n\n{steps} steps, with these settings:\n\n| setting | value |\n| --- | --- |\n{table}\n\n"
            f"VGG weights of the loss network: {_vgg_weights(training)}.")


def _vgg_weights(training: dict) -> str:
    network = _text(str(training.get("vgg") or "VGG"))
    source = training.get("vgg_weights")
    if source is None:
        return (f"{network}, the default weights ($PAINTERLY_VGG_WEIGHTS if it was set, else torchvision's ImageNet "
                "weights; the file records the setting, not the file)")
    if str(source).lower() == "imagenet":
        return f"{network}, torchvision's ImageNet weights"
    if str(source).lower() == "random":
        return f"{network}, seeded random weights (not ImageNet's: a test model, far below a real one)"
    return f"{network}, a local weights file, {_text(Path(str(source)).name)}"


def _provenance_section(provenance: dict) -> str:
    return _listing_section("Where it came from", {key: value for key, value in provenance.items() if key != "title"})


def _listing_section(heading: str, record: dict) -> str:
    return f"## {heading}\n\n" + "\n".join(_bullets(record, 0))


def _bullets(record: Any, depth: int) -> list[str]:
    """A nested record (a zoo model's provenance) as nested Markdown bullets."""
    indent = "  " * depth
    lines: list[str] = []
    items = record.items() if isinstance(record, dict) else enumerate(record, 1)
    for key, value in items:
        label = _text(str(key))
        if isinstance(value, dict) or (isinstance(value, list) and any(isinstance(v, (dict, list)) for v in value)):
            lines.append(f"{indent}- {label}:")
            lines += _bullets(value, depth + 1)
        else:
            lines.append(f"{indent}- {label}: {_value(_public(str(key), value))}")
    return lines


def _public(key: str, value: Any) -> Any:
    """A field that may name a local path, reduced to the file or folder name; URLs and the rest as they are."""
    if key in _LOCAL_PATHS and isinstance(value, str) and value and "://" not in value:
        return Path(value).name
    return value


def _files_section(metadata: dict, model_name: str, sha256: str, licence: str) -> str:
    architecture = metadata.get("architecture") or {}
    checksum = metadata.get("tensors_sha256") or "not recorded"
    rows = [("file", f"`{_text(model_name)}`"), ("SHA-256 of the file", f"`{sha256}`"),
            ("SHA-256 of the tensors (checked on every load)", f"`{_text(checksum)}`"),
            ("format", f"{_text(metadata.get('format'))} {_text(metadata.get('format_version', ''))}".strip()),
            ("architecture", ", ".join(f"{_text(k)} {_value(v)}" for k, v in architecture.items()) or "not recorded"),
            ("written by", f"painterly {_text(metadata.get('painterly_version', 'unknown'))}"),
            ("licence", _text(licence))]
    return "## The file\n\n| | |\n| --- | --- |\n" + "\n".join(f"| {key} | {value} |" for key, value in rows)


def _upload_section(repo: str, model_name: str, pictures: tuple[str, ...]) -> str:
    files = ", ".join([f"`{_text(model_name)}`", *(f"`{name}`" for name in pictures)])
    return ("## Uploading it\n\nWith the Hub's own CLI (from `pip install 'painterly[hub]'`), from a folder that "
            f"holds this README.md and {files}:\n\n"
            f"```bash\n{HUB_CLI} auth login\n{HUB_CLI} upload {repo} .\n```")


def _recorded_licence(provenance: dict) -> str:
    licence = provenance.get("licence")
    spdx = licence.get("spdx") if isinstance(licence, dict) else licence
    return str(spdx).lower() if isinstance(spdx, str) and _LICENCE.fullmatch(spdx) else UNKNOWN_LICENCE


def _licence(given: str | None) -> str | None:
    """An SPDX id as the Hub writes it (lower case), checked; None: the recorded one."""
    if given is None:
        return None
    if not _LICENCE.fullmatch(given):
        raise UsageError(f"licence must be an SPDX identifier such as MIT or BSD-3-Clause, got {given!r}")
    return given.lower()


def _repo_id(repo: str | None) -> str | None:
    if repo is None:
        return None
    from .hub import parse_repo_id

    try:
        return parse_repo_id(repo)
    except ModelFileError as error:
        raise UsageError(f"--repo: {error}") from None


def _refuse_overwriting(outputs: list[Path], inputs: list[Any]) -> None:
    for output in outputs:
        for given in inputs:
            if same_file(output, given):
                raise UsageError(f"{output}: refusing to overwrite an input ({given}); write the card to another "
                                 "folder")


def _thumbnail(painting: Path) -> tuple[np.ndarray, dict]:
    from .images import read_array
    from .pixels import resize_long_side
    from .provenance import file_sha256

    image, _ = read_array(painting)
    if max(image.shape[:2]) > THUMBNAIL_SIDE:
        image = resize_long_side(image, THUMBNAIL_SIDE)
    return image, {"thumbnail_of": {"file": painting.name, "sha256": file_sha256(painting)}}


def _sample(model: Path, photo: Path, painting: Path | None) -> tuple[np.ndarray, dict]:
    """`photo` painted by `model` (at most SAMPLE_SIDE pixels long), with the settings record its file keeps."""
    from .config import ApplyConfig
    from .fast import FastStylizer
    from .images import read_array
    from .provenance import file_sha256

    image, _ = read_array(photo)
    config = ApplyConfig(size=SAMPLE_SIDE if max(image.shape[:2]) > SAMPLE_SIDE else None)
    stylizer = FastStylizer(model, config)
    if stylizer.is_arbitrary:
        if painting is None:
            raise UsageError(f"{model}: an arbitrary-style (AdaIN) model paints the sample with a painting: "
                             "give --style-image")
        stylizer = stylizer.with_styles([stylizer.read_painting(painting)])
    styled = stylizer.stylize(image)
    record = stylizer.describe(input={"file": photo.name, "sha256": file_sha256(photo)})
    record["model"]["file"] = model.name  # the trainer's path is no one else's business
    for style in record.get("styles", []):
        if isinstance(style, dict) and "file" in style:
            style["file"] = Path(str(style["file"])).name
    return styled, record


def _write_all(card: Path, text: str, pictures: dict[Path, tuple[np.ndarray, dict]]) -> None:
    """The pictures, then the card; if any write fails, the files this call created are removed again."""
    from .images import save_image

    created: list[Path] = []
    try:
        for path, (image, settings) in pictures.items():
            existed = path.exists()
            save_image(image, path, settings=settings)
            if not existed:
                created.append(path)
        with atomic_path(card) as temporary:
            temporary.write_text(text, encoding="utf-8")
    except (PainterlyError, KeyboardInterrupt):
        for path in created:
            path.unlink(missing_ok=True)
        raise


def _value(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return {True: "yes", False: "no", None: "—"}[value]
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(_value(item) for item in value) or "—"
    return _text(value)


def _text(value: object, limit: int = 300) -> str:
    """A value from a model file (a stranger's, perhaps) as Markdown: one line, no HTML, no table breaks."""
    text = " ".join(str(value).split())
    text = text if len(text) <= limit else text[:limit - 1] + "…"
    return html.escape(text, quote=False).replace("|", "\\|").replace("`", "'")
