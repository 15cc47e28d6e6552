"""Atomic file replacement: the one way painterly writes an output file.

A crash, a kill -9 or Ctrl-C leaves either the old file or the complete new
one, never half of one: the data goes to a temporary file beside the target,
is flushed to disk, and is renamed over the target.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path` to write; it replaces `path` if the block succeeds.

    On any exception the temporary file is removed and `path` is untouched.
    Missing parent folders are created. The temporary keeps the target's
    suffix, for writers that pick a format from it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp{path.suffix}")
    try:
        yield temporary
        with open(temporary, "rb") as written:
            os.fsync(written.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)  # gone already after a successful rename


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Same inode when both exist (catches hard links), else the same resolved path.

    Used to refuse writing an output over one of the inputs.
    """
    try:
        return os.path.samefile(a, b)
    except OSError:
        return Path(a).resolve() == Path(b).resolve()
