"""Published models by name: the cache they are pulled into, the pull, and their provenance.

What there is to pull is the catalogue (`catalogue.py`, re-exported here). A pulled model is a
painterly model file in `models_dir()` (the folder the web UI lists), converted from the source's
files with its provenance in the metadata, so the file alone says where it came from. Where a source
publishes no hash, each part's SHA-256 (the `.pth` bytes, whichever URL or zip they came in) is
recorded at its first download (in `models_dir()/HASHES_FILE`) and checked on every later pull; the
model file's own SHA-256 is recorded when it is written and checked on every use (`resolve_model`).
`info` says which kind of hash each part has.

The downloads themselves are kept in `models_dir()/downloads/` under their catalogue file names, so
the four pytorch/examples models share one zip; a cached download is reused once its hash checks.

Nothing a network or a stranger's file can do leaves a half-written model or touches the cache: a
pull writes everything (downloads, the zip member it needs, the converted model, the new hash
record) into a hidden `.pull-NAME.*` folder inside `models_dir()`, checks it all, and only then
moves the files into place (`atomic.atomic_path`, undone if a later one fails). Zips are read
through `safezip` (one member, size limits, no escaping paths or links), `.pth` files only with
`weights_only` (`torchfiles`), and every failure is one `ModelFileError` line naming the model, the
URL and the way out ($PAINTERLY_MODELS_MIRROR, or `painterly models pull NAME --file PATH`).

Pulls run at once in several processes (a CLI pull beside the web UI) and threads (the web UI's),
so each model is pulled by one at a time, under its lock file `.NAME.lock` in `models_dir()`, and
the record of hashes is read, extended and written under `.recorded-sha256.json.lock`
(`locks.exclusive`): a model is downloaded once, and no pull writes back a stale record. A pull
killed mid-way leaves its staging folder; the next pull or listing removes each one whose model's
lock is free, since a pull only stages while it holds that lock.

Nothing here imports torch until a model is converted: the listing and `info` are cheap.
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from .atomic import atomic_path, cannot_write
from .catalogue import (  # noqa: F401 - the catalogue's public names stay importable from zoo
    CATALOGUE_FILE,
    KINDS,
    MODEL_NAME,
    ROLES,
    SHA256_HEX,
    Download,
    Entry,
    Part,
    catalogue,
    did_you_mean,
    entry,
    load_catalogue,
)
from .downloads import CHUNK, NETWORK_ERRORS, DownloadTooLarge, fetch, reason
from .errors import ModelFileError, OutputError, one_line, quote_short
from .events import Callback, MessageEvent, ignore
from .hub import SCHEME
from .locks import ACROSS_PROCESSES, LockBusy, exclusive
from .provenance import file_sha256
from .safezip import UnsafeZip, copy_member, has_member

MIRROR_ENV = "PAINTERLY_MODELS_MIRROR"  # a base URL serving each download under its file name
HOME_ENV = "PAINTERLY_HOME"
HASHES_FILE = "recorded-sha256.json"  # in models_dir(): sha256s recorded at first download, and of each model file
DOWNLOADS_FOLDER = "downloads"  # in models_dir(): the files the sources publish, as downloaded
HF_SCHEME = SCHEME  # hub.py parses the references; its module imports the Hub client only when used
# How each part's sha256 is known, as `info` and the provenance say it.
PUBLISHED = "published"
RECORDED = "recorded at first download"
NOT_DOWNLOADED = "not yet downloaded"

_STAGING = ".pull-"  # a pull's hidden folder in models_dir(): .pull-NAME.RANDOM
_RECORDS = ("parts", "downloads", "models")
_RECORDS_ABOUT = ("sha256s painterly recorded: of each part at its first download (where the source publishes "
                  "none), of each cached download, and of each model file when it was written; checked on "
                  "every later pull and use")


# --- the cache -----------------------------------------------------------------------------------


def models_dir() -> Path:
    """Where pulled (and the web UI's) models live: $PAINTERLY_HOME/models, else ~/.cache/painterly/models."""
    home = os.environ.get(HOME_ENV)
    return Path(home) / "models" if home else Path.home() / ".cache" / "painterly" / "models"


def model_path(name: str) -> Path:
    """Where `name` is once pulled: models_dir()/NAME.safetensors."""
    return models_dir() / f"{entry(name).name}.safetensors"


def download_path(download: Download) -> Path:
    """Where a download is kept once fetched: models_dir()/downloads/FILE."""
    return models_dir() / DOWNLOADS_FOLDER / download.name


def is_pulled(name: str) -> bool:
    """Whether `name`'s model file is in the cache."""
    return model_path(name).is_file()


def download_urls(download: Download) -> list[str]:
    """The URLs a pull tries, in order: $PAINTERLY_MODELS_MIRROR/FILE alone when the mirror is set."""
    mirror = os.environ.get(MIRROR_ENV, "").strip()
    return [f"{mirror.rstrip('/')}/{quote(download.name)}"] if mirror else list(download.urls)


# --- locks and staging folders ---------------------------------------------------------------------


def _name_lock(name: str, *, wait: bool = True) -> AbstractContextManager[None]:
    """One pull (or removal) of `name` at a time, across processes: models_dir()/.NAME.lock."""
    return exclusive(models_dir() / f".{name}.lock", wait=wait)


def _records_lock() -> AbstractContextManager[None]:
    """One reader-extender-writer of the record of sha256s at a time: models_dir()/.HASHES_FILE.lock."""
    return exclusive(models_dir() / f".{HASHES_FILE}.lock")


@contextmanager
def _in_models_dir() -> Iterator[Path]:
    """models_dir(), made if missing; the folders made for it are removed afterwards if still empty, so that
    a failed first pull leaves nothing behind."""
    root = models_dir()
    made = _missing_folders(root)
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        _remove_empty(made)
        raise cannot_write(root, error) from error
    try:
        yield root
    finally:
        _remove_empty(made)


@contextmanager
def _staging(name: str) -> Iterator[Path]:
    """A hidden folder `.pull-NAME.*` inside models_dir() for everything a pull of `name` writes before it is
    checked, removed afterwards. Made only under `name`'s lock: see `_remove_stale_staging`."""
    root = models_dir()
    try:
        folder = Path(tempfile.mkdtemp(prefix=f"{_STAGING}{name}.", dir=root))
    except OSError as error:
        raise cannot_write(root, error) from error
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _remove_stale_staging(*, holding: str | None = None) -> None:
    """Remove the staging folders that pulls killed mid-way left (kill -9, a power cut): those whose model's
    lock is free, and all of `holding`'s (the model whose lock the caller holds). Never raises. (Without
    locks across processes, a free lock says nothing: other processes' folders are left alone.)"""
    root = models_dir()
    try:
        with os.scandir(root) as items:
            found = [item for item in items if item.name.startswith(_STAGING) and item.is_dir(follow_symlinks=False)]
    except OSError:
        return
    for item in found:
        name, dot, _ = item.name[len(_STAGING):].rpartition(".")
        if not dot or not MODEL_NAME.fullmatch(name):
            continue  # not a folder a pull made
        if name == holding:
            shutil.rmtree(item.path, ignore_errors=True)
        elif ACROSS_PROCESSES:
            with suppress(LockBusy, OutputError), _name_lock(name, wait=False):
                shutil.rmtree(item.path, ignore_errors=True)  # its pull is dead: it would hold the lock


# --- pulling -------------------------------------------------------------------------------------


@dataclass
class _Fetched:
    """A download on disk for this pull: in the cache already, or staged to be kept."""

    path: Path
    url: str  # where it came from: a URL, or "local file NAME"
    sha256: str
    fresh: bool  # staged by this pull (to be kept in the cache), not read from the cache


@dataclass(frozen=True)
class _Given:
    """What a file given to `pull(file=...)` is: one of the entry's downloads, or one part itself."""

    path: Path
    download: str | None = None
    role: str | None = None


def pull(name: str, *, file: str | os.PathLike | None = None, force: bool = False, timeout: float = 30,
         callback: Callback = ignore) -> Path:
    """Download (or take from `file`, a download fetched by hand), verify, convert and cache `name`.

    Returns the model file's path. Already pulled, no `file` and not `force`: checked against the
    sha256 recorded when it was written, and returned as it is. `force` downloads again (the cached
    download is not used) and converts again; the recorded part hashes still apply. `file` is one
    of the entry's downloads (the zip, `decoder.pth`, ...) or the part itself (`candy.pth`), matched
    by its name; it is checked as a download is, and a download is kept in the cache.
    Progress goes to `callback` as DownloadEvents. Any failure (offline, a dead URL, HTTP errors, a
    wrong hash, a zip member that escapes or is too large, a file that is not the model) raises one
    ModelFileError line and leaves the cache as it was.
    """
    model = entry(name)
    target = model_path(model.name)
    if file is None and not force and target.is_file():  # the common case needs no lock
        with suppress(ModelFileError):  # a mismatch may be a pull replacing the file: checked again below
            return _checked_model(model, target)
    with _in_models_dir(), _name_lock(model.name):
        if file is None and not force and target.is_file():  # pulled while this one waited
            return _checked_model(model, target)
        _remove_stale_staging(holding=model.name)
        given = None if file is None else _given(model, Path(file))
        with _staging(model.name) as staging:
            return _pull_into(model, target, staging, given=given, force=force, timeout=timeout, callback=callback)


def _pull_into(model: Entry, target: Path, staging: Path, *, given: _Given | None, force: bool, timeout: float,
               callback: Callback) -> Path:
    records = _read_records()
    now = _now()
    fetched: dict[str, _Fetched] = {}
    part_files: dict[str, Path] = {}
    part_info: dict[str, dict] = {}
    new_parts: dict[str, dict] = {}
    labels: dict[Path, str] = {}
    used: dict[str, str] = {}
    for part in model.parts:
        download = model.download(part.download)
        staged = staging / "parts" / (part.member or part.download)
        if given is not None and given.role == part.role:
            sha256 = _copy(given.path, staged, max_size=download.max_size, written_as=target)
            url, label, published = f"local file {given.path.name}", given.path.name, False
        else:
            got = fetched.get(download.name)
            if got is None:
                got = fetched[download.name] = _obtain(model, download, staging, records, given=given, force=force,
                                                       timeout=timeout, callback=callback)
            url, published = got.url, download.sha256 is not None
            if part.member is None:
                staged, sha256, label = got.path, got.sha256, download.name
            else:
                sha256 = _extract(model, download, got, part.member, staged, written_as=target)
                label = f"{part.member} in {download.name}"
        labels[staged] = f"{label} (from {url})"
        used[part.download] = url
        part_files[part.role] = staged
        part_info[part.role], record = _checked_part(model, part, label, url, sha256, staged, records,
                                                     published=published, now=now)
        if record is not None:
            new_parts[f"{model.name}/{part.role}"] = record
    staged_model = staging / target.name
    _convert(model, part_files, staged_model, target, labels,
             model.provenance(used=used, parts=part_info, pulled=now))
    new_downloads = {name: {"sha256": got.sha256, "size": got.path.stat().st_size, "recorded": now, "url": got.url}
                     for name, got in fetched.items() if got.fresh}
    new_model = {"file": target.name, "sha256": _sha256(staged_model), "written": now}
    moves = [(got.path, download_path(model.download(name))) for name, got in fetched.items() if got.fresh]
    with _records_lock():
        records = _read_records()  # again: other models' pulls may have recorded theirs meanwhile
        records["parts"].update(new_parts)
        records["downloads"].update(new_downloads)
        records["models"][model.name] = new_model
        staged_records = staging / HASHES_FILE
        with _disk(_records_path()):
            staged_records.write_text(_records_text(records), encoding="utf-8")
        _install([*moves, (staged_model, target), (staged_records, _records_path())], staging)
    return target


def _given(model: Entry, path: Path) -> _Given:
    """Which of the entry's downloads or parts a hand-fetched file is: by its name, else the one there is."""
    if not path.is_file():
        raise ModelFileError(f"{path}: no such file (the download to pull {model.name} from)")
    by_download = [download.name for download in model.downloads if download.name == path.name]
    if by_download:
        return _Given(path, download=by_download[0])
    by_member = [part.role for part in model.parts if part.member == path.name]
    if by_member:
        return _Given(path, role=by_member[0])
    if len(model.downloads) == 1:
        download = model.downloads[0]
        members = [part for part in model.parts if part.download == download.name and part.member]
        if not members or has_member(path, members[0].member or ""):
            return _Given(path, download=download.name)
        return _Given(path, role=members[0].role)
    names = [part.member or part.download for part in model.parts]
    raise ModelFileError(f"{path}: which file of {model.name} is it? {model.name} comes in {', '.join(names)}; "
                         "give the file its published name")


def _obtain(model: Entry, download: Download, staging: Path, records: dict, *, given: _Given | None, force: bool,
            timeout: float, callback: Callback) -> _Fetched:
    """The download on disk: the given file, else the cached copy if its hash checks (and not `force`),
    else fetched from its URLs in order."""
    cached = download_path(download)
    if given is not None and given.download == download.name:
        staged = staging / DOWNLOADS_FOLDER / download.name
        sha256 = _copy(given.path, staged, max_size=download.max_size, written_as=cached)
        _check_published(model, download, staged, sha256, str(given.path))
        return _Fetched(staged, f"local file {given.path.name}", sha256, fresh=True)
    if not force and cached.is_file():
        sha256 = _sha256(cached)
        recorded = records["downloads"].get(download.name, {})
        expected = download.sha256 or recorded.get("sha256")
        if expected is None or sha256 == expected:
            return _Fetched(cached, recorded.get("url", f"the cached {cached}"), sha256, fresh=False)
        callback(MessageEvent(f"{cached}: its sha256 is not the one {'published' if download.sha256 else 'recorded'} "
                              "for it (damaged?); downloading it again", level="warning"))
    return _fetch(model, download, staging / DOWNLOADS_FOLDER / download.name, timeout=timeout, callback=callback)


def _fetch(model: Entry, download: Download, staged: Path, *, timeout: float, callback: Callback) -> _Fetched:
    """Each URL in turn until one serves the file; none: the offline line with every URL and reason."""
    cached = download_path(download)
    with _disk(cached):
        staged.parent.mkdir(parents=True, exist_ok=True)
    failures = []
    for url in download_urls(download):
        try:
            sha256 = fetch(url, staged, timeout=timeout, callback=callback, max_size=download.max_size)
        except (*NETWORK_ERRORS, DownloadTooLarge) as error:  # OSErrors too, but the network's, not the disk's
            failures.append(f"{url} ({reason(error)})")
            continue
        except OSError as error:
            raise cannot_write(cached, error) from error
        _check_published(model, download, staged, sha256, url)
        return _Fetched(staged, url, sha256, fresh=True)
    raise ModelFileError(
        f"{model.name}: could not download {download.name} from {'; '.join(failures)}. Set {MIRROR_ENV} to a "
        f"mirror that serves {download.name}, or fetch it by hand and run "
        f"`painterly models pull {model.name} --file PATH`; nothing was changed")


def _check_published(model: Entry, download: Download, path: Path, sha256: str, source: str) -> None:
    size = path.stat().st_size
    if download.size is not None and size != download.size:
        raise ModelFileError(f"{model.name}: {download.name} from {source} has {size} bytes, but {download.size} "
                             "are published; nothing was kept (a broken mirror or proxy?)")
    if download.sha256 is not None and sha256 != download.sha256:
        raise ModelFileError(f"{model.name}: {download.name} from {source} has sha256 {sha256}, but "
                             f"{download.sha256} is published; nothing was kept (a broken mirror or proxy?)")


def _extract(model: Entry, download: Download, got: _Fetched, member: str, staged: Path, *,
             written_as: Path) -> str:
    """Copy the one member of the zip whose last path segment is `member` to `staged`; its sha256. Every
    refusal of `safezip.copy_member` (the whole zip, for an escaping path or a link) is one line."""
    with _disk(written_as):
        staged.parent.mkdir(parents=True, exist_ok=True)
        out = open(staged, "wb")  # noqa: SIM115 - closed below, errors worded by _disk
    with out:
        try:
            with _disk(written_as):  # the zip's own errors are UnsafeZip: an OSError here is the disk's
                copy_member(got.path, member, out, max_size=download.max_size)
        except UnsafeZip as error:
            raise ModelFileError(f"{model.name}: {download.name} (from {got.url}) {error}; nothing was kept") \
                from None
    return _sha256(staged)


def _copy(source: Path, staged: Path, *, max_size: int, written_as: Path) -> str:
    """Copy a hand-fetched file to `staged`, stopping past `max_size` bytes; its sha256."""
    try:
        reader = open(source, "rb")  # noqa: SIM115 - closed below
    except OSError as error:
        raise ModelFileError(f"{source}: cannot read ({one_line(error)})") from None
    with reader:
        with _disk(written_as):
            staged.parent.mkdir(parents=True, exist_ok=True)
            out = open(staged, "wb")  # noqa: SIM115 - closed below
        with out:
            done = 0
            while True:
                try:
                    chunk = reader.read(min(CHUNK, max_size - done + 1))
                except OSError as error:
                    raise ModelFileError(f"{source}: cannot read ({one_line(error)})") from None
                if not chunk:
                    break
                done += len(chunk)
                if done > max_size:
                    raise ModelFileError(f"{source}: more than the {max_size} bytes the download may have; "
                                         "not the published file?")
                with _disk(written_as):
                    out.write(chunk)
    return _sha256(staged)


def _checked_part(model: Entry, part: Part, label: str, url: str, sha256: str, path: Path, records: dict, *,
                  published: bool, now: str) -> tuple[dict, dict | None]:
    """How the part's sha256 is known, and the record to add for it (None: nothing new).

    A part whose download's published sha256 was checked is PUBLISHED; otherwise its sha256 must be
    the one recorded at its first download, or is recorded now."""
    if published:
        return {"sha256": sha256, "sha256_source": PUBLISHED, "recorded": None}, None
    record = records["parts"].get(f"{model.name}/{part.role}")
    if record is None:
        new = {"sha256": sha256, "size": path.stat().st_size, "recorded": now, "url": url,
               "download": part.download, "member": part.member}
        return {"sha256": sha256, "sha256_source": RECORDED, "recorded": now}, new
    if record["sha256"] != sha256:
        raise ModelFileError(
            f"{model.name}: {label} from {url} has sha256 {sha256}, but {record['sha256']} was recorded at its "
            f"first download ({record.get('recorded', '?')}, from {record.get('url', '?')}); nothing was kept "
            "(the source changed the file, or the download was tampered with)")
    return {"sha256": sha256, "sha256_source": RECORDED, "recorded": record.get("recorded")}, None


def _convert(model: Entry, part_files: dict[str, Path], staged: Path, target: Path, labels: dict[Path, str],
             provenance: dict) -> None:
    """The parts made into one painterly model file at `staged`; a bad part is one line naming it."""
    from .modelfile import convert_model

    try:
        if model.kind == "johnson":
            convert_model(part_files["model"], staged, style=dict(model.style), provenance=provenance)
        else:
            convert_model(part_files["decoder"], staged, encoder=part_files["encoder"], provenance=provenance)
    except OutputError as error:
        raise cannot_write(target, error.__cause__ or error) from error
    except ModelFileError as error:
        text = str(error)
        for path, label in labels.items():
            text = text.replace(str(path), label)
        raise ModelFileError(f"{model.name}: {text}; nothing was kept") from None


def _checked_model(model: Entry, target: Path) -> Path:
    """The cached model file, if its sha256 is the one recorded when it was written."""
    record = _read_records()["models"].get(model.name)
    if record is None:
        raise ModelFileError(f"{target}: not written by `painterly models pull` (no sha256 recorded for it); "
                             f"run `painterly models pull {model.name} --force` to replace it")
    sha256 = _sha256(target)
    if sha256 != record["sha256"]:
        raise ModelFileError(f"{target}: sha256 {sha256}, but {record['sha256']} was recorded when it was pulled "
                             f"({record.get('written', '?')}); the file has changed since: run "
                             f"`painterly models pull {model.name} --force`")
    return target


# --- writing: staged, then moved into place --------------------------------------------------------


def _install(moves: list[tuple[Path, Path]], staging: Path) -> None:
    """Move each staged file onto its target, in order, each through `atomic_path`; if one fails, the
    ones already moved are put back as they were (old files restored, new ones removed)."""
    made = [folder for folder in dict.fromkeys(target.parent for _, target in moves) if not folder.exists()]
    done: list[tuple[Path, Path | None]] = []
    try:
        for index, (staged, target) in enumerate(moves):
            backup = None
            if target.exists():
                backup = staging / f"replaced-{index}"
                with _disk(target):
                    _keep_copy(target, backup)
            with atomic_path(target) as temporary:
                os.replace(staged, temporary)
            done.append((target, backup))
    except BaseException:
        for target, backup in reversed(done):
            with suppress(OSError):
                if backup is None:
                    target.unlink()
                else:
                    os.replace(backup, target)
        _remove_empty(made[::-1])
        raise


def _keep_copy(path: Path, backup: Path) -> None:
    """A second name for `path` (a hard link where the file system has them, else a copy)."""
    try:
        os.link(path, backup)
    except OSError:
        shutil.copy2(path, backup)


@contextmanager
def _disk(path: Path) -> Iterator[None]:
    """An OSError in the block is the disk's: one OutputError line naming `path`, as atomic_path words it."""
    try:
        yield
    except OSError as error:
        raise cannot_write(path, error) from error


def _missing_folders(folder: Path) -> list[Path]:
    """`folder` and those above it that do not exist yet, deepest first."""
    missing = []
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    return missing


def _remove_empty(folders: list[Path]) -> None:
    """Remove the folders (deepest first) that are still empty; never raises."""
    for folder in folders:
        with suppress(OSError):
            folder.rmdir()


# --- the record of sha256s -------------------------------------------------------------------------


def _records_path() -> Path:
    return models_dir() / HASHES_FILE


def _read_records() -> dict:
    """The recorded sha256s ({"parts": ..., "downloads": ..., "models": ...}), empty before the first pull."""
    path = _records_path()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {kind: {} for kind in _RECORDS}
    except (OSError, UnicodeDecodeError) as error:
        raise ModelFileError(f"{path}: cannot read ({one_line(error)})") from None
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        data = None
    problem = _records_problem(data)
    if problem:
        raise ModelFileError(f"{path}: not painterly's record of sha256s ({problem}); restore it, or delete it "
                             "(every model's next download is then taken as its first)")
    assert isinstance(data, dict)
    return {kind: dict(data.get(kind, {})) for kind in _RECORDS}


def _records_problem(data: object) -> str | None:
    if not isinstance(data, dict):
        return "not a JSON object"
    for kind in _RECORDS:
        records = data.get(kind, {})
        if not isinstance(records, dict):
            return f"{kind} is not an object"
        for key, record in records.items():
            if not isinstance(record, dict) or not isinstance(record.get("sha256"), str) \
                    or not SHA256_HEX.fullmatch(record["sha256"]):
                return f"{kind} {quote_short(key)} has no valid sha256"
    return None


def _records_text(records: dict) -> str:
    return json.dumps({"about": _RECORDS_ABOUT, **records}, indent=2, sort_keys=True) + "\n"


def _write_records(records: dict) -> None:
    with atomic_path(_records_path()) as temporary:
        temporary.write_text(_records_text(records), encoding="utf-8")


# --- removing, describing, resolving ----------------------------------------------------------------


def remove(name: str) -> Path | None:
    """Delete `name`'s model file from the cache; the path removed, or None when it was not there.
    Recorded hashes stay, so a later pull is still checked against the first download. (The
    downloads stay too, in models_dir()/downloads, for the other models they hold.)"""
    model = entry(name)
    target = model_path(model.name)
    if not models_dir().is_dir():
        return None
    with _name_lock(model.name), _records_lock():
        records = _read_records()
        removed = target.is_file()
        if removed:
            try:
                target.unlink()
            except OSError as error:
                raise OutputError(f"{target}: cannot remove ({error.strerror or error})") from None
        if model.name in records["models"]:
            del records["models"][model.name]
            _write_records(records)
    return target if removed else None


def info(name: str) -> dict:
    """Provenance as `painterly models info` shows it: the entry, the URLs, whether each sha256 is
    published or recorded at the first download (and when), and the cached file if pulled.

    JSON-able: name, title, kind, arbitrary, source {project, url}, licence {spdx, file, covers},
    style, recipe; downloads [{file, urls (those a pull tries now), catalogue_urls, sha256 (published
    or None), size, max_size, cited, cached (path or None)}]; parts [{role, download, member, sha256,
    sha256_source (PUBLISHED, RECORDED or NOT_DOWNLOADED), recorded (date or None), url (of the
    first download, or None)}]; pulled, path, size (bytes or None), sha256 and written (the model
    file's, recorded when it was written; None if not pulled).
    """
    model = entry(name)
    records = _read_records()
    target = model_path(model.name)
    downloads = []
    for download in model.downloads:
        cached = download_path(download)
        downloads.append({"file": download.name, "urls": download_urls(download),
                          "catalogue_urls": list(download.urls), "sha256": download.sha256, "size": download.size,
                          "max_size": download.max_size, "cited": download.cited,
                          "cached": str(cached) if cached.is_file() else None})
    parts = []
    for part in model.parts:
        published = model.download(part.download).sha256
        record = records["parts"].get(f"{model.name}/{part.role}")
        if published:
            known = {"sha256": published, "sha256_source": PUBLISHED, "recorded": None, "url": None}
        elif record:
            known = {"sha256": record["sha256"], "sha256_source": RECORDED, "recorded": record.get("recorded"),
                     "url": record.get("url")}
        else:
            known = {"sha256": None, "sha256_source": NOT_DOWNLOADED, "recorded": None, "url": None}
        parts.append({"role": part.role, "download": part.download, "member": part.member, **known})
    pulled = target.is_file()
    written = records["models"].get(model.name, {}) if pulled else {}
    return {
        "name": model.name, "title": model.title, "kind": model.kind, "arbitrary": model.is_arbitrary,
        "source": dict(model.source), "licence": dict(model.licence), "style": dict(model.style),
        "recipe": dict(model.recipe), "downloads": downloads, "parts": parts,
        "pulled": pulled, "path": str(target), "size": target.stat().st_size if pulled else None,
        "sha256": written.get("sha256"), "written": written.get("written"),
    }


def listing() -> list[dict]:
    """One row per entry for `painterly models`: name, kind, size (published, or the file's once
    pulled), licence, source project, pulled or not. (Also title, arbitrary and path; JSON-able.)"""
    _remove_stale_staging()
    rows = []
    for model in catalogue().values():
        target = model_path(model.name)
        pulled = target.is_file()
        published = [download.size for download in model.downloads]
        size = target.stat().st_size if pulled else (
            sum(size for size in published if size) if all(published) else None)
        rows.append({"name": model.name, "kind": model.kind, "title": model.title, "arbitrary": model.is_arbitrary,
                     "size": size, "licence": model.licence["spdx"], "source": model.source["project"],
                     "pulled": pulled, "path": str(target)})
    return rows


def is_reference(spec: str | os.PathLike) -> bool:
    """Whether `spec` names a model by catalogue name or hf:// reference rather than by a path on disk."""
    text = os.fspath(spec)
    return text.startswith(HF_SCHEME) or (text in catalogue() and not Path(text).exists())


def resolve_model(spec: str | os.PathLike, *, callback: Callback = ignore) -> Path:
    """The model file `spec` means, wherever a model path is taken (apply, export, card, the API, the
    web UI, hubconf): an existing path is itself; `hf://owner/repo[/file][@revision]` is fetched
    through `hub.resolve`; a catalogue name is its cached file, pulled first if missing (with progress
    to `callback`); anything else is a ModelFileError saying it is neither a file nor a catalogue name."""
    text = os.fspath(spec)
    if text.startswith(HF_SCHEME):
        from .hub import resolve

        return resolve(text, callback=callback)
    path = Path(text)
    if path.exists():
        return path
    if text in catalogue():
        return pull(text, callback=callback)  # checked against its recorded sha256 if already pulled
    raise ModelFileError(f"{text}: no such model file, and not a catalogue model{did_you_mean(text)}; "
                         "`painterly models` lists the catalogue")


# --- small helpers ---------------------------------------------------------------------------------


def _sha256(path: Path) -> str:
    try:
        return file_sha256(path)
    except OSError as error:
        raise ModelFileError(f"{path}: cannot read ({error.strerror or error})") from None


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


