"""One writer at a time, across processes and the threads of one: an flock'd lock file.

Two training runs into one model, or a CLI pull and the web UI pulling the same model, must not
interleave their writes. `exclusive(path)` holds an flock on the lock file `path` for the block; the
kernel drops it when its process dies, so a lock left by `kill -9` never blocks anyone (and a caller
can tell a stale folder from a live one by trying its lock). The file holds the holder's process id,
for the message of whoever finds it taken, and is removed at the end while still locked: one who
opened it meanwhile finds the file gone and takes the new one instead.

Threads of one process also queue on an ordinary lock per path first, so that they wait cheaply and
are still kept apart where there is no flock (not a POSIX system: processes are then not).
"""

from __future__ import annotations

import itertools
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO

from .atomic import cannot_write
from .errors import OutputError

try:
    import fcntl
except ImportError:  # not a POSIX system
    fcntl = None  # type: ignore[assignment]

ACROSS_PROCESSES = fcntl is not None  # False: only the threads of one process are kept apart
_TRIES_WITHOUT_WAITING = 10  # files replaced under a caller that will not wait: give up after this many
_THREAD_LOCKS: dict[str, threading.Lock] = {}
_THREAD_LOCKS_LOCK = threading.Lock()


class LockBusy(Exception):
    """The lock is held by another process (or thread), and the caller would not wait."""

    def __init__(self, path: Path, holder: int | None):
        self.path, self.holder = path, holder  # holder: its process id, when the lock file says it
        super().__init__(f"{path}: held by {f'process {holder}' if holder else 'another process'}")


@contextmanager
def exclusive(path: str | os.PathLike, *, wait: bool = True) -> Iterator[None]:
    """Hold the lock file `path` (its folder must exist) for the block: wait for it, or if not `wait`
    raise LockBusy at once. A file that cannot be created is atomic's one OutputError line."""
    path = Path(path)
    thread_lock = _thread_lock(path)
    if not thread_lock.acquire(blocking=wait):
        raise LockBusy(path, os.getpid())
    try:
        handle = None if fcntl is None else _flocked(path, wait)
        try:
            yield
        finally:
            if handle is not None:
                with suppress(OSError):
                    path.unlink()  # while locked: see the module's docstring
                handle.close()  # releases the flock
    finally:
        thread_lock.release()


def _thread_lock(path: Path) -> threading.Lock:
    with _THREAD_LOCKS_LOCK:
        return _THREAD_LOCKS.setdefault(os.path.abspath(path), threading.Lock())


def _flocked(path: Path, wait: bool) -> IO[str]:
    """`path` opened and flock'd, and still the file at `path` (a holder ending removes it)."""
    for _ in itertools.count() if wait else range(_TRIES_WITHOUT_WAITING):
        try:
            handle = open(path, "a+", encoding="utf-8")  # noqa: SIM115 - held for the block
        except OSError as error:
            raise cannot_write(path, error) from None
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip()
            handle.close()
            raise LockBusy(path, int(holder) if holder.isdigit() else None) from None
        except OSError as error:  # a file system without locks
            handle.close()
            raise cannot_write(path, error) from None
        try:
            current = os.stat(path)
        except FileNotFoundError:
            current = None
        if current is not None and os.path.samestat(os.fstat(handle.fileno()), current):
            handle.seek(0)
            handle.truncate()
            handle.write(f"{os.getpid()}\n")
            handle.flush()
            return handle
        handle.close()  # locked a file its holder removed: take the one there now
    raise OutputError(f"{path}: cannot take the lock (the file keeps being replaced)")
