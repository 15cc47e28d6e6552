"""Reading one file out of a zip a stranger made, and nothing else.

A published zip is input like any other: a member may be named to land outside the folder it is
unpacked into (`../x`, `/x`, `C:x`), be a symbolic link, declare a small size and unpack to a huge
one, be encrypted or damaged. Nothing here unpacks a zip: a caller asks for the one member whose
last path segment is a name (wherever the zip's author put the folder), and gets its bytes, at most
`max_size` of them, or `UnsafeZip`. A zip with any escaping or linked member is refused as a whole,
since a tool that did unpack it would write outside its folder.

`UnsafeZip`'s message is the problem alone ("holds '../x', a path outside ..."), for the caller to
put after the file's name and what it was for. Errors from writing the bytes are the caller's: they
pass through as they are.
"""

from __future__ import annotations

import os
import re
import stat
import zipfile
import zlib
from typing import IO

from .downloads import CHUNK
from .errors import one_line, quote_short

# What a damaged member raises when read (CRC errors, bad deflate data, an unknown compression, a short file).
_UNPACK_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, ValueError, RuntimeError, OSError)


class UnsafeZip(Exception):
    """A zip (or its member) refused: not a zip, an escaping or linked member, no single match, too large."""


def escapes(member: str) -> bool:
    """Whether a member name would land outside the folder it is unpacked into."""
    name = member.replace("\\", "/")
    return name.startswith("/") or re.match(r"[A-Za-z]:", name) is not None or ".." in name.split("/")


def last_segment(member: str) -> str:
    """A member's file name: what follows its last '/' (or '\\', as some zip tools write)."""
    return member.replace("\\", "/").rsplit("/", 1)[-1]


def has_member(path: str | os.PathLike, name: str) -> bool:
    """Whether `path` is a readable zip with a member of that last path segment (a torch.save file is a zip
    too, so this tells a zip of models from a model)."""
    try:
        with zipfile.ZipFile(path) as archive:
            return any(last_segment(info.filename) == name for info in archive.infolist())
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        return False


def copy_member(path: str | os.PathLike, name: str, out: IO[bytes], *, max_size: int) -> str:
    """Write the one member of the zip at `path` whose last path segment is `name` into `out`; its full
    name in the zip.

    UnsafeZip, before a byte is written, for: not a readable zip; any member that escapes or is a
    symbolic link; more or fewer than one (non-folder) match; a match that declares more than
    `max_size` bytes or is encrypted. UnsafeZip, with part of it written, for a match that unpacks to
    more than `max_size` bytes or is damaged. `out`'s own errors pass through.
    """
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as error:
        raise UnsafeZip(f"is not a readable zip ({one_line(error)})") from None
    with archive:
        info = _only_match(archive.infolist(), name, max_size)
        try:
            source = archive.open(info)
        except _UNPACK_ERRORS as error:
            raise UnsafeZip(f"holds {quote_short(info.filename)}, which cannot be unpacked "
                            f"({one_line(error)})") from None
        with source:
            done = 0
            while True:
                try:
                    chunk = source.read(min(CHUNK, max_size - done + 1))
                except _UNPACK_ERRORS as error:
                    raise UnsafeZip(f"holds {quote_short(info.filename)}, which cannot be unpacked "
                                    f"({one_line(error)})") from None
                if not chunk:
                    return info.filename
                done += len(chunk)
                if done > max_size:
                    raise UnsafeZip(f"holds {quote_short(info.filename)}, which unpacks to more than the "
                                    f"{max_size} bytes allowed")
                out.write(chunk)


def _only_match(infos: list[zipfile.ZipInfo], name: str, max_size: int) -> zipfile.ZipInfo:
    """The one member called `name`, once the whole zip is seen to hold nothing that escapes or links."""
    for info in infos:
        if escapes(info.filename):
            raise UnsafeZip(f"holds {quote_short(info.filename)}, a path outside the folder it unpacks into; "
                            "refusing the whole file")
        if stat.S_ISLNK(info.external_attr >> 16):
            raise UnsafeZip(f"holds {quote_short(info.filename)}, a symbolic link; refusing the whole file")
    matches = [info for info in infos if not info.is_dir() and last_segment(info.filename) == name]
    if len(matches) != 1:
        raise UnsafeZip(f"has {'no member' if not matches else f'{len(matches)} members'} named {name}")
    info = matches[0]
    if info.file_size > max_size:
        raise UnsafeZip(f"holds {quote_short(info.filename)}, which declares {info.file_size} bytes, more than the "
                        f"{max_size} allowed")
    if info.flag_bits & 0x1:
        raise UnsafeZip(f"holds {quote_short(info.filename)}, which is encrypted")
    return info


