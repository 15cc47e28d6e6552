"""Models shared on the Hugging Face Hub: `hf://owner/repo[/path/in/repo][@revision]` to a file on disk.

Everything goes through the `huggingface_hub` client (the optional `[hub]` extra): its cache
($HF_HOME, $HF_HUB_CACHE), its offline mode ($HF_HUB_OFFLINE) and its tokens ($HF_TOKEN, `hf auth
login`), none of which painterly reads itself. A repo is listed first (one request, which fails at
once when the Hub cannot be reached, and then the client's cache is used instead); the client then
downloads the file, its own progress bars replaced by DownloadEvents to `callback`.

Loading stays safe: only `.safetensors` and `.onnx` files are taken from the Hub, a pickle
(`.pth`, `.bin`, `.ckpt`...) is refused before any request, and a downloaded `.safetensors` must
start with a safetensors header before anything else reads it. Every failure (a bad reference, a
repo, revision or file that is not there, a gated repo, no network and nothing cached) is one
ModelFileError line naming the reference and the way out.
"""

from __future__ import annotations

import json
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ModelFileError
from .events import Callback, DownloadEvent, ignore

SCHEME = "hf://"
MODEL_SUFFIXES = (".safetensors", ".onnx")  # what painterly takes from the Hub, in order of preference
PICKLE_SUFFIXES = (".pth", ".pt", ".bin", ".pkl", ".pickle", ".ckpt", ".model")
INSTALL_HINT = "pip install 'painterly[hub]'"
LOGIN_HINT = "log in with `hf auth login` (or set HF_TOKEN)"
DEFAULT_REVISION = "main"  # the Hub's default branch, as the client assumes it
MAX_HEADER_BYTES = 100_000_000  # safetensors' own limit on its JSON header
_LISTED = 8  # file names a message lists before "and N more"

# The Hub's rules for owner and repo names: letters, digits, "-", "_", "."; no "--" or ".."; not
# starting or ending with "-" or "."; at most 96 characters.
_NAME = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_.-]{0,94}[A-Za-z0-9_])?")
_SEGMENT = re.compile(r"[^/\\\x00-\x1f\x7f]{1,255}")  # one part of a path in a repo
_REVISION_SEGMENT = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,254}")  # main, v1.0, refs/pr/3, a commit hash


@dataclass(frozen=True)
class HubReference:
    """A parsed `hf://` reference: which repo, which file in it (None: its one model), which revision."""

    repo_id: str
    path: str | None = None
    revision: str | None = None

    def __str__(self) -> str:
        path = f"/{self.path}" if self.path else ""
        revision = f"@{self.revision}" if self.revision else ""
        return f"{SCHEME}{self.repo_id}{path}{revision}"

    @property
    def ref(self) -> str:
        """The revision asked for, the Hub's default branch when none was."""
        return self.revision or DEFAULT_REVISION


def parse(reference: str) -> HubReference:
    """`hf://owner/repo[/path/in/repo][@revision]`, checked strictly: owner and repo as the Hub allows
    them, no empty, `.` or `..` part, a revision of branch/tag/commit characters; a named file must be
    a .safetensors or .onnx model (a pickle is refused here, before any request)."""
    if not reference.startswith(SCHEME):
        raise ModelFileError(f"{_shown(reference)}: not an hf:// reference; write hf://OWNER/REPO[/FILE][@REVISION]")
    body, at, revision = reference[len(SCHEME):].partition("@")
    parts = body.split("/")
    if len(parts) < 2 or not all(parts):
        raise _malformed(reference, "it needs an owner and a repo, with no empty part")
    owner, name, *inside = parts
    for what, value in (("owner", owner), ("repo name", name)):
        if not _NAME.fullmatch(value) or "--" in value or ".." in value or value.endswith(".git"):
            raise _malformed(reference, f"{_shown(value)} is not a valid Hub {what} (letters, digits, '-', '_' "
                                        "and '.', at most 96, not starting or ending with '-' or '.')")
    if any(segment in (".", "..") or not _SEGMENT.fullmatch(segment) for segment in inside):
        raise _malformed(reference, "the path in the repo has a '.', '..' or unprintable part")
    if at and (not revision or ".." in revision or not all(
            _REVISION_SEGMENT.fullmatch(segment) for segment in revision.split("/"))):
        raise _malformed(reference, "the revision after '@' must be a branch, tag or commit")
    parsed = HubReference(f"{owner}/{name}", "/".join(inside) or None, revision or None)
    if parsed.path is not None:
        _check_suffix(parsed, parsed.path)
    return parsed


def resolve(reference: str, *, callback: Callback = ignore) -> Path:
    """The local file `reference` names, downloaded into the Hub client's cache unless it is there.

    With no file named, the repo's one `.safetensors` file is taken, else its one `.onnx`; several or
    none is a ModelFileError listing what is there. Download progress goes to `callback` as
    DownloadEvents. When the Hub cannot be reached (or $HF_HUB_OFFLINE is set) the client's cache
    answers; a downloaded `.safetensors` is checked to be one before the path is returned.
    """
    parsed = parse(reference)
    hub = _client(parsed)
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        path = _cached(parsed, "HF_HUB_OFFLINE is set", "unset HF_HUB_OFFLINE and run this once online to cache it")
    else:
        path = _listed_and_downloaded(parsed, hub, callback)
    _check_downloaded(parsed, path)
    return path


def _listed_and_downloaded(parsed: HubReference, hub: Any, callback: Callback) -> Path:
    """The repo listed at the revision (one request: a Hub out of reach fails at once, and the cache answers
    instead, as the client does for an answer of 5xx), then the file chosen in it downloaded."""
    from huggingface_hub import constants

    try:
        info = hub.HfApi().model_info(parsed.repo_id, revision=parsed.ref)
    except _hub_errors() as error:
        status = _status(error)
        if status is None or status < 500:
            raise _explained(parsed, error) from None
        return _cached(parsed, f"the Hub answered HTTP {status}", "try again later")
    except _network_errors() as error:
        return _cached(parsed, f"cannot reach {constants.ENDPOINT} ({_first_line(error)})",
                       "connect to the internet (or check HF_ENDPOINT) and try again")
    files = [sibling.rfilename for sibling in info.siblings or ()]
    if parsed.path is not None and files and parsed.path not in files:
        raise ModelFileError(f"{parsed}: the repo has no file {_shown(parsed.path)} at {_shown(parsed.ref)} "
                             f"(its models: {_listing(_models(files)) or 'none'})")
    return _download(parsed, parsed.path or _choose(parsed, files), callback)


def parse_repo_id(text: str) -> str:
    """An `OWNER/REPO` Hub repo id (for `painterly card --repo`), checked as `parse` checks one."""
    if text.count("/") != 1:
        raise ModelFileError(f"{_shown(text)}: a Hub repo is OWNER/REPO")
    return parse(f"{SCHEME}{text}").repo_id


def _client(parsed: HubReference) -> Any:
    """The huggingface_hub module, or one line saying how to install it."""
    try:
        import huggingface_hub
    except ImportError:
        raise ModelFileError(f"{parsed}: hf:// models need the Hugging Face Hub client: {INSTALL_HINT}") from None
    return huggingface_hub


def _download(parsed: HubReference, filename: str, callback: Callback) -> Path:
    """`filename` at the reference's revision, through the client (its cache, retries and token)."""
    from huggingface_hub import hf_hub_download, hf_hub_url

    url = hf_hub_url(parsed.repo_id, filename, revision=parsed.ref)
    try:
        return Path(hf_hub_download(parsed.repo_id, filename, revision=parsed.ref,
                                    tqdm_class=_progress_bars(url, callback)))
    except _hub_errors() as error:
        raise _explained(parsed, error, filename) from None
    except _network_errors() as error:  # the download itself failed (cut off, the cache not writable)
        raise ModelFileError(f"{parsed}: downloading {filename} failed ({_first_line(error)}); nothing was "
                             "kept: try again, or set HF_HUB_CACHE to a writable folder") from None


def _cached(parsed: HubReference, reason: str, way_out: str) -> Path:
    """The reference's file from the client's cache alone: the Hub is not reachable or not to be asked."""
    from huggingface_hub import hf_hub_download, snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        if parsed.path is not None:
            return Path(hf_hub_download(parsed.repo_id, parsed.path, revision=parsed.ref, local_files_only=True))
        patterns = [f"*{suffix}" for suffix in MODEL_SUFFIXES]
        folder = Path(snapshot_download(parsed.repo_id, revision=parsed.ref, local_files_only=True,
                                        allow_patterns=patterns))
    except LocalEntryNotFoundError:
        folder = None
    files = [] if folder is None else sorted(
        file.relative_to(folder).as_posix() for file in folder.rglob("*") if file.is_file())
    if not any(file.lower().endswith(MODEL_SUFFIXES) for file in files):
        from huggingface_hub import constants

        raise ModelFileError(f"{parsed}: {reason}, and it is not in the Hub cache ({constants.HF_HUB_CACHE}); "
                             f"{way_out}")
    assert folder is not None
    return folder / _choose(parsed, files)


def _choose(parsed: HubReference, files: list[str]) -> str:
    """The one .safetensors file among `files`, else the one .onnx; several or none: one line listing them."""
    for suffix in MODEL_SUFFIXES:
        candidates = [file for file in files if file.lower().endswith(suffix)]
        if len(candidates) == 1:
            return candidates[0]
        if candidates:
            raise ModelFileError(f"{parsed}: the repo holds {len(candidates)} {suffix} files ({_listing(candidates)}); "
                                 f"name one: {SCHEME}{parsed.repo_id}/{candidates[0]}")
    there = f"it holds {_listing(files)}" if files else "it holds no files"
    raise ModelFileError(f"{parsed}: no .safetensors or .onnx model in the repo ({there}); painterly loads no "
                         "pickles from the Hub: convert one with `painterly convert` and share the .safetensors")


def _models(files: list[str]) -> list[str]:
    return [file for file in files if file.lower().endswith(MODEL_SUFFIXES)]


def _check_suffix(parsed: HubReference, path: str) -> None:
    suffix = Path(path).suffix.lower()
    if suffix in MODEL_SUFFIXES:
        return
    if suffix in PICKLE_SUFFIXES:
        raise ModelFileError(f"{parsed}: a {suffix} file is a pickle, which can run code when loaded; painterly "
                             "takes only .safetensors or .onnx models from the Hub (convert a .pth with "
                             "`painterly convert` and share the .safetensors)")
    raise ModelFileError(f"{parsed}: {_shown(path)} is not a model painterly takes from the Hub "
                         "(a .safetensors or .onnx file)")


def _check_downloaded(parsed: HubReference, path: Path) -> None:
    """Refuse a `.safetensors` that is not one (a pickle under that name) before anything reads it."""
    _check_suffix(parsed, path.name)
    if path.suffix.lower() != ".safetensors":
        return  # ONNX is protobuf, opened only by ONNX Runtime: no code in it to run
    problem = _safetensors_problem(path)
    if problem:
        raise ModelFileError(f"{parsed}: the Hub's {path.name} is not a safetensors file ({problem}); it was not "
                             "loaded: ask the repo's owner to upload a real .safetensors")


def _safetensors_problem(path: Path) -> str | None:
    """What is wrong with `path` as a safetensors file (8-byte header length, then a JSON object), or None."""
    try:
        with open(path, "rb") as file:
            size = os.fstat(file.fileno()).st_size
            start = file.read(8)
            if start.startswith(b"\x80") or start.startswith(b"PK\x03\x04"):
                return "it is a Python pickle" if start.startswith(b"\x80") else "it is a zip, as torch.save writes"
            length = int.from_bytes(start, "little") if len(start) == 8 else 0
            if not 2 <= length <= min(MAX_HEADER_BYTES, size - 8):
                return "no safetensors header at its start"
            header = json.loads(file.read(length))
    except OSError as error:
        return f"cannot read it: {error.strerror or error}"
    except (ValueError, RecursionError):
        return "its header is not JSON"
    return None if isinstance(header, dict) else "its header is not a JSON object"


def _progress_bars(url: str, callback: Callback) -> type:
    """A tqdm class for the client that draws nothing and reports DownloadEvents instead, so progress is
    shown as every other download's (on a terminal, or as plain lines, or not at all with --quiet)."""
    from tqdm.auto import tqdm

    class DownloadEvents(tqdm):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs["disable"] = True
            super().__init__(*args, **kwargs)
            callback(DownloadEvent(url, int(self.n), self.total))

        def update(self, n: float | None = 1) -> bool | None:
            self.n += n or 0
            callback(DownloadEvent(url, int(self.n), self.total))
            return None

        def update_transfer(self, n: float | None = 1) -> None:
            """Xet downloads report network bytes here too; the file's bytes (`update`) are what counts."""

        def set_transfer_postfix_str(self, *args: Any, **kwargs: Any) -> None:
            """No bar, so no transfer rate to show."""

    return DownloadEvents


def _hub_errors() -> tuple[type[BaseException], ...]:
    """The client's errors that the Hub answered with (checked before `_network_errors`: they are OSErrors)."""
    from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError

    return HfHubHTTPError, EntryNotFoundError


def _network_errors() -> tuple[type[BaseException], ...]:
    """What the client raises when the Hub cannot be reached: OSErrors (requests' errors, OfflineModeIsEnabled)
    or, in the versions built on httpx, its transport errors."""
    errors: list[type[BaseException]] = [OSError]
    for name in ("httpx2", "httpx"):
        module = sys.modules.get(name)
        if module is not None:
            errors.append(module.TransportError)
    return tuple(errors)


def _explained(parsed: HubReference, error: BaseException, filename: str | None = None) -> ModelFileError:
    """One line for what the Hub (or the client's cache) answered."""
    from huggingface_hub import constants
    from huggingface_hub.errors import (
        EntryNotFoundError,
        GatedRepoError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    page = f"{constants.ENDPOINT}/{parsed.repo_id}"
    if isinstance(error, GatedRepoError):
        return ModelFileError(f"{parsed}: the repo is gated: accept its conditions at {page} and {LOGIN_HINT}")
    if isinstance(error, RepositoryNotFoundError):
        return ModelFileError(f"{parsed}: no such model repo on the Hub, or it is private: check the name, "
                              f"or {LOGIN_HINT}")
    if isinstance(error, RevisionNotFoundError):
        return ModelFileError(f"{parsed}: the repo has no revision {_shown(parsed.ref)}; give a branch, tag or "
                              f"commit of {page} after '@'")
    if isinstance(error, LocalEntryNotFoundError):  # the download could not reach the Hub, nothing cached
        return ModelFileError(f"{parsed}: cannot reach {constants.ENDPOINT} and {filename} is not in the Hub cache "
                              f"({constants.HF_HUB_CACHE}); connect to the internet and try again")
    if isinstance(error, EntryNotFoundError):
        return ModelFileError(f"{parsed}: the repo has no file {_shown(filename or parsed.path)} at "
                              f"{_shown(parsed.ref)}; see {page}")
    status = _status(error)
    if status in (401, 403):
        return ModelFileError(f"{parsed}: the Hub refused access (HTTP {status}); {LOGIN_HINT} with a token "
                              "that may read this repo")
    return ModelFileError(f"{parsed}: the Hub answered HTTP {status} ({_first_line(error)}); try again later")


def _status(error: BaseException) -> int | None:
    """The HTTP status the Hub answered with, if it answered."""
    status = getattr(getattr(error, "response", None), "status_code", None)
    return status if isinstance(status, int) else None


def _malformed(reference: str, why: str) -> ModelFileError:
    return ModelFileError(f"{_shown(reference)}: not a valid hf:// reference ({why}); "
                          "write hf://OWNER/REPO[/FILE][@REVISION]")


def _listing(files: list[str]) -> str:
    more = f" and {len(files) - _LISTED} more" if len(files) > _LISTED else ""
    return ", ".join(files[:_LISTED]) + more


def _first_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return " ".join(lines[0].split())[:200] if lines else type(error).__name__


def _shown(value: object) -> str:
    """A value from a user or a stranger's repo, for a message: quoted, printable, cut short."""
    text = repr(str(value))
    return text if len(text) <= 80 else f"{text[:77]}..."
