"""Atomic file replacement: the one way painterly writes an output file, and its one error boundary.

A crash, a kill -9 or Ctrl-C leaves either the old file or the complete new
one, never half of one: the data goes to a temporary file beside the target,
is flushed to disk, renamed over the target, and the folder is flushed too,
so a power cut cannot lose a file that was reported as written.

Every way a write can fail (a full disk, a read-only folder, a folder in the
way, a file in place of a parent folder) arrives here as an `OSError` and
leaves as one `OutputError` line, "PATH: cannot write (reason)", with nothing
left behind: no temporary, no folder this call created.

Only a writer killed outright (kill -9, the OOM killer, a power cut) leaves its
temporary, a hidden file that can be as large as a video. Each temporary is named
after its writer (a hash of the host name and the process id), and the first write
of a process into a folder removes the ones of writers that are plainly gone.
"""

from __future__ import annotations

import errno
import functools
import os
import re
import secrets
import socket
import stat
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from .errors import OutputError

# fsync on a folder is refused by some file systems (EINVAL, ENOTSUP); the rename is then as durable as they allow.
_FOLDER_FSYNC_UNSUPPORTED = frozenset({errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EBADF, errno.EACCES})
# A temporary's name: .TARGET.HOST-PID-RANDOM.tmpSUFFIX (HOST: 8 hex digits of the host name's CRC-32).
_TEMPORARY = re.compile(
    r"\.(?P<target>.+)\.(?P<host>[0-9a-f]{8})-(?P<pid>[0-9]{1,10})-[0-9a-f]{8}\.tmp(?P<suffix>(?:\.[^.]*)?)",
    re.DOTALL)  # a file name may hold a newline
# A leftover temporary is removed only when its writer ran on this host, no longer exists, and the file has
# not changed for this long: a process of another PID namespace (a container) that shares the folder and the
# host name may be writing it, and a live write changes its file far more often than this.
STALE_AFTER_S = 600.0
_swept: set[str] = set()  # the folders this process has swept already: once each, not at every write


def cannot_write(path: str | os.PathLike, error: BaseException | str) -> OutputError:
    """The one-line error for an output that could not be written; `error` gives the reason."""
    return OutputError(f"{os.fspath(path)}: cannot write ({_reason(error)})")


@contextmanager
def atomic_path(
    path: str | os.PathLike, *, write_errors: tuple[type[BaseException], ...] = ()
) -> Iterator[Path]:
    """Yield a temporary path beside `path` to write; it replaces `path` if the block succeeds.

    Missing parent folders are created. Any `OSError` (and any of `write_errors`,
    for writers that report a full disk otherwise) raised while creating them,
    in the block, or in the fsync and rename becomes `OutputError`; on any
    exception before the rename the temporary and the folders created here are
    removed and `path` is untouched. The temporary keeps the target's suffix, for writers that pick
    a format from it. The new file gets the mode a plain `open` would give it
    (0o666 less the umask) or, when it replaces a file, that file's mode.

    The block should only write: an `OSError` there is taken as the write failing.
    """
    path = Path(path)
    failures: tuple[type[BaseException], ...] = (OSError, *write_errors)
    created = _make_parents(path)
    _sweep_once(path.parent)
    temporary = _temporary_for(path)
    try:
        if path.is_dir():
            raise cannot_write(path, "a folder is in the way")
        yield temporary
        mode = _mode_for(path)
        with open(temporary, "rb") as written:
            os.chmod(temporary, mode)
            os.fsync(written.fileno())
        os.replace(temporary, path)
        created = []  # the file is in them now
        _fsync_folder(path.parent)
    except failures as error:
        _discard(temporary, created)
        raise cannot_write(path, error) from error
    except BaseException:
        _discard(temporary, created)
        raise


@contextmanager
def staged(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary beside `path` for a file that goes with an output and is recorded in it (an auto mask,
    with its SHA-256): whatever is written there replaces `path` only once the block has succeeded (the
    output written), so a failure, an interrupt or a kill -9 meanwhile leaves the earlier file as it was
    (a killed writer's temporary is swept later, as atomic_path's are). Nothing written there: `path` is
    left alone."""
    path = Path(path)
    _sweep_once(path.parent)
    temporary = _temporary_for(path)
    try:
        yield temporary
    except BaseException:
        with suppress(OSError):
            temporary.unlink(missing_ok=True)
        raise
    if not temporary.exists():
        return
    try:
        os.replace(temporary, path)
        _fsync_folder(path.parent)
    except OSError as error:
        with suppress(OSError):
            temporary.unlink(missing_ok=True)
        raise cannot_write(path, error) from error


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Same inode when both exist (catches hard links), else the same resolved path.

    Used to refuse writing an output over one of the inputs.
    """
    try:
        return os.path.samefile(a, b)
    except OSError:  # realpath, not Path.resolve: a symlink loop must not raise here
        return os.path.realpath(a) == os.path.realpath(b)


def temporaries_of(target: str | os.PathLike) -> list[Path]:
    """The temporaries of writes into `target` now in its folder (live writers' too: the caller knows, for
    example from a lock it holds, that none is writing)."""
    target = Path(target)
    with suppress(OSError):
        return [entry for entry in target.parent.iterdir()
                if (match := _temporary(entry.name)) and match["target"] == target.name]
    return []


def _temporary_for(path: Path) -> Path:
    """A new temporary's path for a write into `path`, named as _TEMPORARY parses it."""
    return path.with_name(f".{path.name}.{_host()}-{os.getpid()}-{secrets.token_hex(4)}.tmp{path.suffix}")


def _temporary(name: str) -> re.Match[str] | None:
    """`name` parsed as a temporary's (its suffix the target's, as atomic_path names them), else None."""
    match = _TEMPORARY.fullmatch(name)
    return match if match and match["suffix"] == Path(match["target"]).suffix else None


def _sweep_once(folder: Path) -> None:
    """Remove the temporaries in `folder` that killed writers left (see STALE_AFTER_S), the first time this
    process writes there. Never raises: a leftover that cannot be removed is left."""
    key = os.path.abspath(folder)
    if key in _swept or os.name != "posix":  # os.kill(pid, 0) would end the process on Windows
        return
    _swept.add(key)
    now = time.time()
    with suppress(OSError), os.scandir(folder) as entries:
        for entry in entries:
            match = _temporary(entry.name)
            if match is None or match["host"] != _host() or _alive(int(match["pid"])):
                continue
            with suppress(OSError):
                info = entry.stat(follow_symlinks=False)
                if stat.S_ISREG(info.st_mode) and now - info.st_mtime >= STALE_AFTER_S:
                    os.unlink(entry.path)


@functools.cache
def _host() -> str:
    return f"{zlib.crc32(socket.gethostname().encode()):08x}"


def _alive(pid: int) -> bool:
    """Whether process `pid` exists on this host (another user's counts: it may be writing)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (OSError, OverflowError):  # PermissionError: it exists; an absurd pid: not ours to judge
        return True
    return True


def _make_parents(path: Path) -> list[Path]:
    """Create the missing folders above `path`, top down; returns those created here, deepest first."""
    missing: list[Path] = []
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    created: list[Path] = []
    try:
        for folder in reversed(missing):
            try:
                folder.mkdir()
            except FileExistsError:
                if not folder.is_dir():
                    raise
                continue  # made by someone else meanwhile: not ours to remove
            created.insert(0, folder)
        if not path.parent.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR))
    except OSError as error:
        _discard(None, created)
        blocker = _file_in_the_way(path)
        raise cannot_write(path, f"{blocker} is a file, not a folder" if blocker else error) from error
    return created


def _file_in_the_way(path: Path) -> Path | None:
    """The nearest ancestor of `path` that exists but is not a folder, if any."""
    for folder in path.parents:
        if folder.exists() or folder.is_symlink():
            return None if folder.is_dir() else folder
    return None


def _mode_for(path: Path) -> int:
    """An existing file's permission bits, else what `open` would give a new file under the umask."""
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        return 0o666 & ~_umask()


def _umask() -> int:
    """The process's umask, read without changing it where Linux shows it (no window for other threads)."""
    with suppress(OSError, ValueError), open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _fsync_folder(folder: Path) -> None:
    """Flush the folder entry of a renamed file: without it a power cut can undo the rename."""
    if os.name != "posix":
        return  # Windows cannot open a folder for fsync; NTFS journals the rename
    try:
        descriptor = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError as error:
        if error.errno in _FOLDER_FSYNC_UNSUPPORTED:  # a folder we may write in but not read
            return
        raise
    try:
        os.fsync(descriptor)
    except OSError as error:
        if error.errno not in _FOLDER_FSYNC_UNSUPPORTED:
            raise
    finally:
        os.close(descriptor)


def _discard(temporary: Path | None, created: list[Path]) -> None:
    """Remove the temporary and the (empty) folders created for it; never raises."""
    if temporary is not None:
        with suppress(OSError):
            temporary.unlink(missing_ok=True)
    for folder in created:  # deepest first; rmdir leaves a folder someone else put files in
        with suppress(OSError):
            folder.rmdir()


def _reason(error: BaseException | str) -> str:
    """A short one-line reason: the OS's words for an OSError, the first line of anything else."""
    if isinstance(error, str):
        text = error
    elif isinstance(error, OSError) and error.strerror:
        text = error.strerror
    else:
        text = str(error) or type(error).__name__
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return " ".join(lines[0].split()) if lines else type(error).__name__
