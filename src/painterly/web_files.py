"""What the web UI writes and what it lets Gradio serve: job folders, their removal, the file-route guard.

Every result goes into a fresh job folder inside the server's working folder. Job folders older
than the `keep` age are removed when a job starts and on a timer, and the whole working folder
(which the server always creates itself) when the server shuts down. Gradio's own folder (uploads,
its copies of results) goes inside it too unless GRADIO_TEMP_DIR names one, so a stopped server
leaves nothing in the system's temporary folder.

Gradio decides what its file route serves by path only, so a file hard-linked into a served
folder would be served. `FileGuard` sits in front of Gradio's routes and serves from the working
folder only the files painterly wrote there (same device, inode and path as when written, and a
single link), from Gradio's upload folder only single-link regular files, and nothing else; it
also refuses every route that makes the server fetch a URL. Importing this module needs no Gradio.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import stat
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, MutableMapping
from contextlib import asynccontextmanager, contextmanager, suppress
from pathlib import Path
from typing import Any

from . import images, samples

# How often the timer looks for job folders past their age (a job start looks too).
CLEANUP_EVERY_S = 60
# Gradio's routes that serve a file: /gradio_api/file=PATH and the older /gradio_api/file/PATH.
_FILE_ROUTE = re.compile(r"^/+(?:gradio_api/+)?file[=/](?P<target>.*)$", re.DOTALL)
# Gradio's routes that fetch a URL for the caller: /gradio_api/proxy=URL (and file=URL, below).
_PROXY_ROUTE = re.compile(r"/proxy=", re.IGNORECASE)
# A URL scheme (http:, https:, file:, data:…); two letters at least, so that C:\ stays a path.
_URL = re.compile(r"^[a-z][a-z0-9+.-]+:", re.IGNORECASE)
NO_URLS = "painterly's web UI fetches no URLs: upload the file instead"
GRADIO_TEMP_ENV = "GRADIO_TEMP_DIR"  # where Gradio keeps uploads and its copies of results
GRADIO_FOLDER = "gradio"  # that folder inside the working folder, when painterly chooses it
NOT_SERVED = "painterly's web UI serves only the files it wrote and the files uploaded to it"
# What a download's name keeps of the names it is made from: letters, digits, "_" and "-".
_NOT_IN_NAMES = re.compile(r"[^\w-]+")
_NAME_PART = 40  # characters kept of each name, so that several paintings still make a short name

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class Workspace:
    """The working folder: one fresh job folder per job, the identity of every file written, removal by age.

    `keep_seconds` is how long a finished job's folder stays; a job still running is never removed.
    """

    def __init__(self, root: Path, *, keep_seconds: float) -> None:
        self.root = Path(root).resolve()
        self.keep_seconds = keep_seconds
        self._lock = threading.Lock()
        self._running: set[Path] = set()
        self._written: dict[tuple[int, int], Path] = {}  # (device, inode) -> the path painterly wrote
        self._gradio_folder: Path | None = None  # Gradio's folder, when painterly put it in the working folder

    def keep_gradio_files(self) -> Path:
        """Gradio's upload and cache folder: inside the working folder, so that it goes at shutdown.

        A GRADIO_TEMP_DIR the user set is theirs and kept. Gradio reads the variable when it is
        imported and when it makes its app, so this runs before `import gradio`; `close` unsets it.
        """
        given = os.environ.get(GRADIO_TEMP_ENV)
        if given:
            return Path(given).resolve()
        folder = self.root / GRADIO_FOLDER
        folder.mkdir(exist_ok=True)
        os.environ[GRADIO_TEMP_ENV] = str(folder)
        self._gradio_folder = folder
        return folder

    @contextmanager
    def job(self, kind: str) -> Iterator[Path]:
        """A new job folder for the `with` block, first removing those past their age.

        A job that fails takes its folder with it: nothing of it is served, so nothing of it is kept.
        """
        self.remove_old_jobs()
        folder = Path(tempfile.mkdtemp(prefix=f"{kind}-", dir=self.root))
        with self._lock:
            self._running.add(folder)
        try:
            yield folder
        except BaseException:
            self._remove(folder)
            raise
        finally:
            with self._lock:
                self._running.discard(folder)

    def written(self, paths: Iterable[Path | str]) -> list[str]:
        """Record files painterly has just written, so that they (and only they) may be served."""
        recorded = []
        for path in paths:
            resolved = Path(path).resolve()
            info = resolved.stat()
            with self._lock:
                self._written[(info.st_dev, info.st_ino)] = resolved
            recorded.append(str(resolved))
        return recorded

    def wrote(self, path: Path, info: os.stat_result) -> bool:
        """Whether `path` (resolved, with its `os.stat`) is a file painterly wrote, still the same file."""
        with self._lock:
            return self._written.get((info.st_dev, info.st_ino)) == path and info.st_nlink == 1

    def remove_old_jobs(self, now: float | None = None) -> list[Path]:
        """Remove the job folders last changed over `keep_seconds` ago, except running ones; returns them."""
        cutoff = (time.time() if now is None else now) - self.keep_seconds
        removed = []
        with self._lock:
            running = set(self._running)
        try:
            entries = list(os.scandir(self.root))
        except FileNotFoundError:  # already shut down
            return []
        for entry in entries:
            folder = Path(entry.path)
            try:
                old = entry.is_dir(follow_symlinks=False) and entry.stat(follow_symlinks=False).st_mtime < cutoff
            except FileNotFoundError:
                continue
            if old and folder not in running and folder != self._gradio_folder:  # Gradio ages its own files
                self._remove(folder)
                removed.append(folder)
        return removed

    def close(self) -> None:
        """Remove the whole working folder: the server made it, and nothing in it is served any more."""
        self._remove(self.root)
        if self._gradio_folder is not None and os.environ.get(GRADIO_TEMP_ENV) == str(self._gradio_folder):
            del os.environ[GRADIO_TEMP_ENV]

    def sample_painting(self) -> Path:
        """The built-in painting as a file, so that it takes the same path as an uploaded one."""
        path = self.root / "sample-swirl.png"
        with self._lock:
            if not path.exists():
                images.save_image(samples.swirl_painting(), path, settings={"source": "painterly sample swirl"})
        return path

    def _remove(self, folder: Path) -> None:
        shutil.rmtree(folder, ignore_errors=True)  # never follows a link out of the folder
        with self._lock:
            self._written = {key: path for key, path in self._written.items() if not path.is_relative_to(folder)}


def lifespan(workspace: Workspace, every_s: float = CLEANUP_EVERY_S) -> Callable[[Any], Any]:
    """A lifespan for Gradio's app (`launch(app_kwargs={"lifespan": ...})`): old jobs removed on a
    timer while the server runs, the working folder removed when it shuts down."""

    @asynccontextmanager
    async def serving(_app: Any) -> AsyncIterator[None]:
        timer = asyncio.create_task(_remove_on_schedule(workspace, every_s))
        try:
            yield
        finally:
            timer.cancel()
            with suppress(asyncio.CancelledError):
                await timer
            workspace.close()

    return serving


async def _remove_on_schedule(workspace: Workspace, every_s: float) -> None:
    while True:
        await asyncio.sleep(every_s)
        await asyncio.to_thread(workspace.remove_old_jobs)


class FileGuard:
    """ASGI middleware in front of Gradio: which files its file routes may serve, and no URL fetching.

    From the working folder only the files painterly wrote (`Workspace.wrote`), from Gradio's upload
    folder only regular files with a single link (Gradio writes them; a hard link is someone else's
    file), nothing from anywhere else. `/proxy=URL` and `file=URL` are refused before Gradio sees them.
    """

    def __init__(self, app: ASGIApp, *, workspace: Workspace, upload_folder: Path) -> None:
        self.app = app
        self.workspace = workspace
        self.upload_folder = Path(upload_folder).resolve()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        reason = self.refusal(_route_path(scope)) if scope["type"] == "http" else None
        if reason is None:
            await self.app(scope, receive, send)
            return
        body = f"{reason}\n".encode()
        await send({"type": "http.response.start", "status": 403, "headers": [
            (b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    def refusal(self, path: str) -> str | None:
        """Why a request for `path` is refused, or None to let Gradio answer it."""
        if _PROXY_ROUTE.search(path):
            return NO_URLS
        route = _FILE_ROUTE.match(path)
        if route is None:
            return None
        target = route["target"]
        if is_url(target):
            return NO_URLS
        return None if self.may_serve(target) else NOT_SERVED

    def may_serve(self, target: str) -> bool:
        """Whether the file Gradio would serve for `target` (made absolute as Gradio does) may be served."""
        try:
            path = Path(os.path.abspath(target)).resolve()
            info = path.stat()
        except (OSError, ValueError):  # missing, unreadable, or a NUL in the name
            return False
        if not stat.S_ISREG(info.st_mode):
            return False
        if path.is_relative_to(self.upload_folder):  # first: it may lie inside the working folder
            return info.st_nlink == 1
        if path.is_relative_to(self.workspace.root):
            return self.workspace.wrote(path, info)
        return False


def download_name(*parts: str, suffix: str) -> str:
    """A result's file name made of the names it came from: ('tubingen', 'starry night') -> 'tubingen_starry-night.png'.

    A browser saves a download under this name, so it says what the file is (not `result.png`)
    and holds nothing a file system may refuse: no separators, dots, spaces or control characters.
    """
    cleaned = (_NOT_IN_NAMES.sub("-", part).strip("-_")[:_NAME_PART].strip("-_") for part in parts)
    return ("_".join(part for part in cleaned if part) or "painterly") + suffix


def is_url(text: str) -> bool:
    """Whether `text` names a URL (anything with a scheme) rather than a path on this machine."""
    return _URL.match(text) is not None


def _route_path(scope: Scope) -> str:
    """The request's path below the app's root path, as Starlette's router matches it."""
    path: str = scope.get("path", "")
    root = scope.get("root_path", "")
    return path[len(root):] if root and path.startswith(root + "/") else path
