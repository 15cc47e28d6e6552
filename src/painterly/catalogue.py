"""The model zoo's catalogue: which published models there are, where their files are, and what is
known of them.

The catalogue is data (`catalogue.toml`, inside the package), not code: for each model its kind, the
files a source publishes (URLs, size and SHA-256 where published, a size limit), the parts a model
is made of (a zip member matched by its last path segment, or a whole file), the licence and where
it was read, the painting and the training recipe as far as they are known. Every field is checked
when the file is read, so a bad entry is one ModelFileError line naming the file and the entry, not
a KeyError in the middle of a pull. No torch, no network: `zoo` does the pulling.
"""

from __future__ import annotations

import difflib
import functools
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import NoReturn
from urllib.parse import urlparse

from . import __version__
from .errors import ModelFileError, one_line, quote_short

CATALOGUE_FILE = "catalogue.toml"
KINDS = ("johnson", "adain")
ROLES = {"johnson": ("model",), "adain": ("decoder", "encoder")}
MODEL_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")  # a model name: also its file name in the cache
SHA256_HEX = re.compile(r"[0-9a-f]{64}")  # a SHA-256 as the catalogue (and the zoo's records) write it

_FILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")  # a download's or member's name: no folders


@dataclass(frozen=True)
class Download:
    """One file a source publishes: where to fetch it and how to check it."""

    name: str  # its file name: what a mirror serves it as, and its name in the download cache
    urls: tuple[str, ...]  # tried in order
    max_size: int  # bytes: no more is read, published size or not
    sha256: str | None = None  # published by the source; None: nothing published for the file as a whole
    size: int | None = None  # published size in bytes, if any
    cited: str = ""  # the source file that links the URL


@dataclass(frozen=True)
class Part:
    """What a model is made of: the Johnson network, or an AdaIN decoder and its encoder."""

    role: str  # one of ROLES[kind]
    download: str  # the Download.name it comes in
    member: str | None = None  # inside a zip: the member's last path segment (exactly one must match)


@dataclass(frozen=True)
class Entry:
    """One catalogue model, as `catalogue.toml` describes it (checked when read)."""

    name: str
    kind: str  # one of KINDS
    title: str
    parts: tuple[Part, ...]
    downloads: tuple[Download, ...]  # the ones its parts name
    licence: dict  # spdx, file (where it was read), covers
    source: dict  # project, url
    style: dict = field(default_factory=dict)  # title, artist, image (johnson only)
    recipe: dict = field(default_factory=dict)  # as far as known; "known" says from where

    @property
    def is_arbitrary(self) -> bool:
        """An arbitrary-style (AdaIN) model: it paints with a painting given at run time."""
        return self.kind == "adain"

    def download(self, name: str) -> Download:
        """The download called `name` among this entry's."""
        return next(download for download in self.downloads if download.name == name)

    def provenance(self, *, used: Mapping[str, str] | None = None, parts: Mapping[str, Mapping] | None = None,
                   pulled: str | None = None) -> dict:
        """What a pulled model file records about where it came from (JSON-able).

        `used`: download name -> the URL (or local file) it was taken from; `parts`: role -> the
        part's sha256, how it is known (PUBLISHED or RECORDED) and when it was recorded; `pulled`:
        the date. Without them, the catalogue's side alone.
        """
        used, parts = used or {}, parts or {}
        return {
            "catalogue": self.name,
            "title": self.title,
            "kind": self.kind,
            "source": dict(self.source),
            "licence": dict(self.licence),
            "style": dict(self.style),
            "recipe": dict(self.recipe),
            "downloads": [{"file": download.name, "urls": list(download.urls), "used": used.get(download.name),
                           "sha256": download.sha256, "size": download.size, "cited": download.cited}
                          for download in self.downloads],
            "parts": [{"role": part.role, "download": part.download, "member": part.member,
                       **dict(parts.get(part.role, {}))} for part in self.parts],
            "painterly_version": __version__,
            "pulled": pulled,
        }


# --- reading it ----------------------------------------------------------------------------------


def load_catalogue(path: str | os.PathLike) -> dict[str, Entry]:
    """Every entry of a catalogue file by name, each field checked; a problem is one ModelFileError
    line naming the file and the entry."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise ModelFileError(f"{path}: cannot read the model catalogue ({error.strerror or error})") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise ModelFileError(f"{path}: not a valid model catalogue ({one_line(error)})") from None
    check = _Check(path)
    check.fields(data, "the catalogue", required=("downloads", "models"))
    downloads = {name: _download_entry(check, name, table)
                 for name, table in check.tables(data["downloads"], "[downloads]").items()}
    return {name: _model_entry(check, name, table, downloads)
            for name, table in check.tables(data["models"], "[models]").items()}


@functools.cache
def _package_catalogue() -> dict[str, Entry]:
    """The package's catalogue, read once: the one place every lookup reads it from (tests put theirs here)."""
    with resources.as_file(resources.files("painterly") / CATALOGUE_FILE) as path:
        return load_catalogue(path)


def catalogue() -> dict[str, Entry]:
    """Every catalogue entry by name, read from the package's CATALOGUE_FILE once and checked."""
    return dict(_package_catalogue())


def entry(name: str) -> Entry:
    """The entry called `name`, or a ModelFileError naming it and the closest names."""
    entries = catalogue()
    if name in entries:
        return entries[name]
    raise ModelFileError(f"{name!r} is not a catalogue model{did_you_mean(name)}; `painterly models` lists them")


def did_you_mean(name: str) -> str:
    """' (did you mean X or Y?)' naming the catalogue names close to `name`, or '' when none is."""
    close = difflib.get_close_matches(name, list(catalogue()), n=3, cutoff=0.6)
    return f" (did you mean {' or '.join(close)}?)" if close else ""


class _Check:
    """The checks of a catalogue file's fields; a failure names the file and where in it."""

    def __init__(self, path: Path):
        self.path = path

    def fail(self, where: str, problem: str) -> NoReturn:
        raise ModelFileError(f"{self.path}: {where}: {problem}")

    def fields(self, value: object, where: str, *, required: tuple[str, ...],
               optional: tuple[str, ...] = ()) -> dict:
        if not isinstance(value, dict):
            self.fail(where, f"must be a table, not {quote_short(value)}")
        unknown = [key for key in value if key not in (*required, *optional)]
        if unknown:
            self.fail(where, f"unknown field {quote_short(unknown[0])}; known: {', '.join((*required, *optional))}")
        missing = [key for key in required if key not in value]
        if missing:
            self.fail(where, f"missing {', '.join(missing)}")
        return value

    def tables(self, value: object, where: str) -> dict[str, dict]:
        if not isinstance(value, dict) or not value:
            self.fail(where, "must hold at least one table")
        for name, table in value.items():
            if not isinstance(table, dict):
                self.fail(f"{where[:-1]}.{quote_short(name)}]", f"must be a table, not {quote_short(table)}")
        return value

    def text(self, value: object, where: str) -> str:
        if not isinstance(value, str) or not value.strip():
            self.fail(where, f"must be text, not {quote_short(value)}")
        return value

    def url(self, value: object, where: str) -> str:
        parsed = urlparse(self.text(value, where))
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            self.fail(where, f"must be an http(s) URL, not {quote_short(value)}")
        return str(value)

    def size(self, value: object, where: str) -> int:
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            self.fail(where, f"must be a whole number of bytes above 0, not {quote_short(value)}")
        return value

    def texts(self, value: object, where: str, *, required: tuple[str, ...], optional: tuple[str, ...] = ()
              ) -> dict[str, str]:
        table = self.fields(value, where, required=required, optional=optional)
        return {key: self.text(item, f"{where} {key}") for key, item in table.items()}


def _download_entry(check: _Check, name: str, table: dict) -> Download:
    where = f'[downloads."{name}"]' if _FILE_NAME.fullmatch(name) else f"[downloads.{quote_short(name)}]"
    if not _FILE_NAME.fullmatch(name):
        check.fail(where, "a download's name is a plain file name (letters, digits, '.', '_', '-')")
    check.fields(table, where, required=("urls", "max_size"), optional=("sha256", "size", "cited"))
    urls = table["urls"]
    if not isinstance(urls, list) or not urls:
        check.fail(where, f"urls must be a list of at least one URL, not {quote_short(urls)}")
    max_size = check.size(table["max_size"], f"{where} max_size")
    sha256 = table.get("sha256")
    if sha256 is not None and (not isinstance(sha256, str) or not SHA256_HEX.fullmatch(sha256)):
        check.fail(where, f"sha256 must be 64 lower-case hex digits, not {quote_short(sha256)}")
    size = table.get("size")
    if size is not None and check.size(size, f"{where} size") > max_size:
        check.fail(where, f"size {size} is over max_size {max_size}")
    return Download(name=name, urls=tuple(check.url(url, f"{where} urls") for url in urls), max_size=max_size,
                    sha256=sha256, size=size, cited=check.text(table.get("cited", "-"), f"{where} cited"))


def _model_entry(check: _Check, name: str, table: dict, downloads: dict[str, Download]) -> Entry:
    where = f"[models.{name}]" if MODEL_NAME.fullmatch(name) else f"[models.{quote_short(name)}]"
    if not MODEL_NAME.fullmatch(name):
        check.fail(where, "a model name is lower-case letters, digits, '.', '_' and '-' (it names its file)")
    check.fields(table, where, required=("kind", "title", "parts", "licence", "source"),
                 optional=("style", "recipe"))
    kind = table["kind"]
    if kind not in KINDS:
        check.fail(where, f"kind must be one of {', '.join(KINDS)}, not {quote_short(kind)}")
    raw_parts = table["parts"]
    if not isinstance(raw_parts, list) or not raw_parts:
        check.fail(where, f"parts must be a list of tables, not {quote_short(raw_parts)}")
    parts = tuple(_part(check, f"{where} parts[{index}]", raw, kind, downloads) for index, raw in enumerate(raw_parts))
    roles = [part.role for part in parts]
    if sorted(roles) != sorted(ROLES[kind]):
        check.fail(where, f"a {kind} model's parts are {', '.join(ROLES[kind])}, once each, not {', '.join(roles)}")
    style = table.get("style", {})
    if style and kind != "johnson":
        check.fail(where, "only a johnson model has a style (an AdaIN model takes the painting at run time)")
    recipe = table.get("recipe", {})
    if not isinstance(recipe, dict):
        check.fail(f"{where} recipe", f"must be a table, not {quote_short(recipe)}")
    for key, value in recipe.items():
        if not isinstance(value, (str, int, float)):
            check.fail(f"{where} recipe", f"{key} must be text or a number, not {quote_short(value)}")
    return Entry(
        name=name, kind=kind, title=check.text(table["title"], f"{where} title"), parts=parts,
        downloads=tuple(downloads[download] for download in dict.fromkeys(part.download for part in parts)),
        licence=check.texts(table["licence"], f"{where} licence", required=("spdx", "file", "covers")),
        source={**check.texts(table["source"], f"{where} source", required=("project", "url")),
                "url": check.url(table["source"].get("url"), f"{where} source url")},
        style=check.texts(style, f"{where} style", required=(), optional=("title", "artist", "image")),
        recipe=dict(recipe),
    )


def _part(check: _Check, where: str, raw: object, kind: str, downloads: dict[str, Download]) -> Part:
    table = check.fields(raw, where, required=("role", "download"), optional=("member",))
    if table["role"] not in ROLES[kind]:
        check.fail(where, f"role must be one of {', '.join(ROLES[kind])} for a {kind} model, "
                          f"not {quote_short(table['role'])}")
    if not isinstance(table["download"], str) or table["download"] not in downloads:
        check.fail(where, f"download {quote_short(table['download'])} is not one of the [downloads] tables "
                          f"({', '.join(downloads)})")
    member = table.get("member")
    if member is not None and (not isinstance(member, str) or not _FILE_NAME.fullmatch(member)):
        check.fail(where, "member must be a plain file name (its last path segment in the zip), "
                          f"not {quote_short(member)}")
    return Part(role=table["role"], download=table["download"], member=member)


